"""End-to-end test of `edgekv serve` with the official `openai` Python client.

Starts `edgekv serve` on free loopback ports and checks, through the client a user would point at
it: models, a plain and a streamed chat completion (the same greedy text), a legacy completion, a
3-turn chat whose turns 2 and 3 reuse the conversation's cache, OpenAI-shaped errors (malformed
JSON, an unknown field, a huge max_tokens, a prompt over the cache, 404/405), a client that
disconnects mid-stream (generation stops, the server stays healthy), one that gives up on a
non-streamed answer (its generation stops too), 8 concurrent streaming clients
each getting the answer it gets alone, 503 when every slot and queue place is taken, and a clean
shutdown. Prints time to first token, decode rates and reuse counts; writes a transcript.

    PYTHONPATH=.edgekv-cache/pypi-server python3 tests/server/openai_client_test.py \\
        --edgekv build/cpu/samples/edgekv --model SmolLM2.gguf --artifacts OUT_DIR

Needs the pinned `openai` package (tools/server_test_requirements.txt); missing is a failure.
"""
import argparse
import http.client
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from server_harness import Failure, Server, check, get_json, set_prefix, step, wait_for

set_prefix("openai_client_test")

QUESTIONS = [
    "What is the capital of France?",
    "Name three colors.",
    "What is 2 plus 2?",
    "Write a haiku about rain.",
    "What do bees make?",
    "Name a large ocean.",
    "What is the opposite of hot?",
    "Say something about the moon.",
]


class Transcript:
    def __init__(self, path):
        self.f = open(path, "w", encoding="utf-8")

    def add(self, title, obj):
        self.f.write(f"## {title}\n{obj if isinstance(obj, str) else json.dumps(obj, indent=2)}\n\n")
        self.f.flush()


def post_raw(url, path, body, timeout=30):
    """POSTs raw bytes; returns (status, parsed JSON or None, headers)."""
    req = urllib.request.Request(url + path, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read()), r.headers
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw), e.headers
        except ValueError:
            raise Failure(f"{path}: HTTP {e.code} with a body that is not JSON: {raw[:200]!r}")


def check_error(status, body, want_status, what):
    check(status == want_status, f"{what}: HTTP {status}, expected {want_status}: {body}")
    err = (body or {}).get("error")
    check(isinstance(err, dict) and err.get("message") and err.get("type"),
          f"{what}: not an OpenAI error object: {body}")
    step(f"{what}: {status} {err['message'][:100]!r}")
    return err


def stream_chat(client, model, messages, max_tokens, **extra):
    """Streams one chat completion; returns (text, finish_reason, edgekv, usage, ttft_s, seconds)."""
    t0 = time.monotonic()
    ttft = None
    text, finish, edgekv, usage = "", None, None, None
    stream = client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens, temperature=0,
                                            stream=True, stream_options={"include_usage": True}, **extra)
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta and c.delta.content:
                if ttft is None:
                    ttft = time.monotonic() - t0
                text += c.delta.content
            if c.finish_reason:
                finish = c.finish_reason
                edgekv = (chunk.model_extra or {}).get("edgekv")
    return text, finish, edgekv, usage, ttft, time.monotonic() - t0


def test_basics(client, openai, model_id, transcript):
    models = client.models.list()
    ids = [m.id for m in models.data]
    check(ids == [model_id], f"/v1/models lists {ids}, expected [{model_id!r}]")
    step(f"models: {ids}")

    messages = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
    plain = client.chat.completions.create(model=model_id, messages=messages, max_tokens=40, temperature=0)
    answer = plain.choices[0].message.content
    check(plain.object == "chat.completion" and answer, f"empty chat completion: {plain}")
    check(plain.choices[0].finish_reason in ("stop", "length"), f"finish_reason {plain.choices[0].finish_reason}")
    check("Paris" in answer, f"SmolLM2 should know the capital of France: {answer!r}")
    u = plain.usage
    check(u.prompt_tokens > 0 and u.completion_tokens > 0 and u.total_tokens == u.prompt_tokens + u.completion_tokens,
          f"usage {u}")
    ek = plain.model_extra.get("edgekv")
    check(ek and ek["prompt_tokens_computed"] + ek["prompt_tokens_reused"] == u.prompt_tokens, f"edgekv field {ek}")
    transcript.add("non-streamed chat completion", plain.model_dump())
    step(f"chat: {answer!r} ({u.completion_tokens} tokens, {plain.choices[0].finish_reason})")

    text, finish, edgekv, usage, ttft, _ = stream_chat(client, model_id, messages, 40)
    check(text == answer, f"streamed text differs from the non-streamed one:\n  {text!r}\n  {answer!r}")
    check(finish == plain.choices[0].finish_reason, f"streamed finish_reason {finish}")
    check(usage is not None and usage.completion_tokens == u.completion_tokens, f"streamed usage {usage}")
    check(edgekv is not None and edgekv["prompt_tokens_reused"] > 0,
          f"the same prompt again should reuse its cache: {edgekv}")
    step(f"streamed the same text; TTFT {ttft * 1000:.0f} ms, reused {edgekv['prompt_tokens_reused']} prompt tokens")

    comp = client.completions.create(model=model_id, prompt="Once upon a time", max_tokens=16, temperature=0)
    check(comp.object == "text_completion" and comp.choices[0].text, f"completion: {comp}")
    transcript.add("legacy completion", comp.model_dump())
    step(f"completion: {comp.choices[0].text!r}")


def test_three_turns(client, model_id, transcript):
    messages = [{"role": "system", "content": "You are a helpful assistant. Keep answers short."}]
    rows = []
    prev_prompt = 0
    for turn, question in enumerate(["Tell me about the sun.", "How hot is it?", "And the moon?"], 1):
        messages.append({"role": "user", "content": question})
        text, finish, ek, usage, ttft, secs = stream_chat(client, model_id, messages, 48)
        check(text and ek, f"turn {turn}: no answer")
        if turn > 1:
            check(ek["prompt_tokens_reused"] >= prev_prompt,
                  f"turn {turn} reused {ek['prompt_tokens_reused']} prompt tokens, expected at least the previous "
                  f"prompt's {prev_prompt}")
        prev_prompt = usage.prompt_tokens
        messages.append({"role": "assistant", "content": text})
        rows.append((turn, usage.prompt_tokens, ek["prompt_tokens_reused"], ek["prompt_tokens_computed"],
                     usage.completion_tokens, ttft * 1000, ek["prefill_tokens_per_s"], ek["decode_tokens_per_s"],
                     ek["kv_bytes"]))
        transcript.add(f"turn {turn}: user", question)
        transcript.add(f"turn {turn}: assistant ({finish})", text)
        transcript.add(f"turn {turn}: edgekv", ek)
    table = ["turn  prompt  reused  computed  completion  TTFT ms  prefill tok/s  decode tok/s  KV bytes"]
    for r in rows:
        table.append(f"{r[0]:>4}  {r[1]:>6}  {r[2]:>6}  {r[3]:>8}  {r[4]:>10}  {r[5]:>7.0f}  {r[6]:>13.1f}  "
                     f"{r[7]:>12.1f}  {r[8]}")
    print("\n".join(table), flush=True)
    transcript.add("3-turn chat (client-measured TTFT)", "\n".join(table))


def test_errors(client, openai, url, model_id):
    check_error(*post_raw(url, "/v1/chat/completions", b'{"messages": [')[:2], 400, "malformed JSON")
    check_error(*post_raw(url, "/v1/chat/completions", b"\xff\xfe")[:2], 400, "a body that is not UTF-8")
    status, body, _ = post_raw(url, "/v1/nothing", b"{}")
    check_error(status, body, 404, "unknown path")
    try:
        urllib.request.urlopen(url + "/v1/chat/completions", timeout=10)
        raise Failure("GET /v1/chat/completions should be refused")
    except urllib.error.HTTPError as e:
        check_error(e.code, json.loads(e.read()), 405, "GET on a POST route")

    msg = [{"role": "user", "content": "hi"}]
    cases = [
        ("an unknown field", 400, dict(extra_body={"frobnicate": True}), "frobnicate"),
        ("a huge max_tokens", 400, dict(max_tokens=10**9), "max_tokens"),
        ("temperature out of range", 400, dict(temperature=7), "temperature"),
        ("an unknown cache type", 400, dict(extra_body={"cache": {"type": "paged"}}), "paged"),
        ("a cache the model cannot use", 400, dict(extra_body={"cache": {"type": "mamba"}}), "cache"),
    ]
    for what, want, kwargs, mention in cases:
        try:
            client.chat.completions.create(model=model_id, messages=msg, **kwargs)
            raise Failure(f"{what}: accepted")
        except openai.APIStatusError as e:
            check(e.status_code == want, f"{what}: HTTP {e.status_code}, expected {want}: {e}")
            check(mention in str(e), f"{what}: the message does not mention {mention!r}: {e}")
            step(f"{what}: {e.status_code} {str(e)[:110]!r}")
    long_msg = [{"role": "user", "content": "Please summarise this text. " + "The quick brown fox jumps. " * 20}]
    try:
        client.chat.completions.create(model=model_id, messages=long_msg, max_tokens=8,
                                       extra_body={"cache": {"type": "static", "max_cache_len": 64}})
        raise Failure("a prompt over a 64-token static cache was accepted")
    except openai.APIStatusError as e:
        check(e.status_code == 413, f"prompt over the cache: HTTP {e.status_code}, expected 413: {e}")
        step(f"prompt over the cache: 413 {str(e)[:110]!r}")


def test_disconnect(url, model_id):
    """A client that goes away mid-stream: the generation stops and the server stays healthy."""
    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    body = {"model": model_id, "messages": [{"role": "user", "content": "Write a very long story."}],
            "max_tokens": 2000, "temperature": 0, "stream": True,
            "cache": {"type": "sink", "window_length": 128, "num_sink_tokens": 4}}
    conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    check(resp.status == 200 and resp.getheader("Content-Type", "").startswith("text/event-stream"),
          f"stream: HTTP {resp.status} {resp.getheader('Content-Type')}")
    events = 0
    while events < 6:
        line = resp.fp.readline()
        check(line, "the stream ended before the client left")
        if line.startswith(b"data: "):
            events += 1
    active = get_json(url + "/health")[1]["active"]
    check(active == 1, f"/health says {active} generations run mid-stream, expected 1")
    conn.sock.close()  # gone without a word
    conn.close()
    t0 = time.monotonic()
    wait_for("the abandoned generation to stop", lambda: get_json(url + "/health")[1]["active"] == 0, 15)
    step(f"client left mid-stream: generation stopped {time.monotonic() - t0:.1f} s later, server healthy")


def test_disconnect_unstreamed(openai, server, model_id):
    """A non-streamed request whose client gives up (the openai client's own timeout closes the
    connection): the server stops that generation long before max_tokens, by its own counters."""
    before = get_json(server.url + "/edgekv/v1/info")[1]["generations"]
    impatient = openai.OpenAI(base_url=server.url + "/v1", api_key="not-needed", max_retries=0, timeout=1.5)
    max_tokens = 2000
    t0 = time.monotonic()
    try:
        impatient.chat.completions.create(
            model=model_id, messages=[{"role": "user", "content": "Write a very long story."}],
            max_tokens=max_tokens, temperature=0,
            extra_body={"ignore_eos": True, "cache": {"type": "sink", "window_length": 128, "num_sink_tokens": 4}})
        raise Failure(f"{max_tokens} tokens came back within the client's 1.5 s timeout; the test needs longer")
    except openai.APITimeoutError:
        pass
    after = wait_for("the abandoned generation to finish",
                     lambda: (lambda g: g if g["finished"] > before["finished"] else None)(
                         get_json(server.url + "/edgekv/v1/info")[1]["generations"]), 60)
    generated = after["completion_tokens"] - before["completion_tokens"]
    check(after["client_gone"] == before["client_gone"] + 1,
          f"the server did not count the timed-out client as gone: {before} -> {after}")
    check(generated < max_tokens // 2, f"the abandoned generation ran on to {generated} of {max_tokens} tokens")
    wait_for("the server's log line about the vanished client",
             lambda: any("the client closed the connection" in line for line in server.tail), 10)
    step(f"non-streamed client gave up after {time.monotonic() - t0:.1f} s: generation stopped at "
         f"{generated} of {max_tokens} tokens")


def test_concurrent_clients(client, openai, url, model_id, transcript):
    """8 streaming clients at once on a server without conversation reuse: each gets the text it gets
    alone. With 4 slots and 4 queue places taken, a 9th request is turned away with 503."""
    def ask(q, max_tokens=24):
        return [{"role": "user", "content": q}], max_tokens

    alone = {}
    t0 = time.monotonic()
    for q in QUESTIONS:
        msgs, n = ask(q)
        alone[q] = stream_chat(client, model_id, msgs, n)[0]
    serial_s = time.monotonic() - t0

    results, errors = {}, []
    started = threading.Barrier(len(QUESTIONS) + 1)

    def worker(q):
        try:
            started.wait()
            msgs, n = ask(q)
            results[q] = stream_chat(client, model_id, msgs, n)
        except Exception as e:  # reported below
            errors.append(f"{q}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker, args=(q,)) for q in QUESTIONS]
    for t in threads:
        t.start()
    started.wait()
    t0 = time.monotonic()
    # Every slot and queue place taken: one more is turned away at once.
    wait_for("8 requests admitted (4 running, 4 queued)",
             lambda: (lambda h: h["active"] == 4 and h["queued"] == 4)(get_json(url + "/health")[1]), 30, 0.02)
    status, body, headers = post_raw(url, "/v1/chat/completions",
                                     json.dumps({"messages": [{"role": "user", "content": "one more"}]}).encode())
    check_error(status, body, 503, "a 9th request while 8 are admitted")
    check(headers.get("Retry-After"), "503 without Retry-After")
    for t in threads:
        t.join(120)
    wall = time.monotonic() - t0
    check(not errors, "concurrent clients failed:\n  " + "\n  ".join(errors))
    total_tokens = 0
    for q in QUESTIONS:
        text, finish, ek, usage, ttft, _ = results[q]
        check(text == alone[q], f"client asking {q!r} got another answer than alone:\n  {text!r}\n  {alone[q]!r}")
        total_tokens += usage.completion_tokens
    ttfts = sorted(r[4] for r in results.values())
    summary = (f"8 concurrent streaming clients: {total_tokens} tokens in {wall:.1f} s = {total_tokens / wall:.1f} "
               f"tok/s aggregate (one by one: {serial_s:.1f} s); TTFT min {ttfts[0] * 1000:.0f} ms, "
               f"max {ttfts[-1] * 1000:.0f} ms; every answer equals the one given alone")
    step(summary)
    transcript.add("8 concurrent clients", summary)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--edgekv", required=True, help="path to the edgekv binary")
    p.add_argument("--model", required=True, help="SmolLM2 GGUF to serve")
    p.add_argument("--artifacts", required=True, help="folder for the transcript and the server logs")
    args = p.parse_args()
    artifacts = Path(args.artifacts)
    artifacts.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    servers = []
    try:
        try:
            import openai
        except ImportError as e:
            raise Failure(f"the openai package is missing ({e}); tools/setup_deps.sh installs it, "
                          "PYTHONPATH must point at .edgekv-cache/pypi-server")
        check(os.access(args.edgekv, os.X_OK), f"edgekv binary not found: {args.edgekv}")
        check(os.path.isfile(args.model), f"model not found: {args.model}")
        step(f"openai {openai.__version__}")
        transcript = Transcript(artifacts / "openai_transcript.md")
        model_id = Path(args.model).name.removesuffix(".gguf")

        server = Server(args.edgekv, args.model, artifacts, 60, log_name="server_openai.log")
        servers.append(server)
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="not-needed", max_retries=0, timeout=120)
        test_basics(client, openai, model_id, transcript)
        test_three_turns(client, model_id, transcript)
        test_errors(client, openai, server.url, model_id)
        test_disconnect(server.url, model_id)
        test_disconnect_unstreamed(openai, server, model_id)
        test_basics_again = client.chat.completions.create(
            model=model_id, messages=[{"role": "user", "content": "Say OK."}], max_tokens=4, temperature=0)
        check(test_basics_again.choices[0].message.content, "the server no longer answers after the tests")

        busy = Server(args.edgekv, args.model, artifacts, 60,
                      ["--max-conversations", "0", "--parallel", "4", "--queue", "4"], "server_concurrent.log")
        servers.append(busy)
        busy_client = openai.OpenAI(base_url=busy.url + "/v1", api_key="not-needed", max_retries=0, timeout=120)
        test_concurrent_clients(busy_client, openai, busy.url, model_id, transcript)

        for s in servers:
            s.proc.terminate()
            code = s.proc.wait(20)
            check(code == 0, f"edgekv serve exited with {code} on SIGTERM, expected a clean 0")
        step("both servers shut down cleanly on SIGTERM")
    except Failure as e:
        print(f"[openai_client_test] FAIL: {e}", file=sys.stderr, flush=True)
        for s in servers:
            print("[openai_client_test] server log tail:\n  " + "\n  ".join(s.tail), file=sys.stderr)
        return 1
    except Exception as e:
        print(f"[openai_client_test] FAIL: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        for s in servers:
            s.stop()
    step(f"PASS in {time.monotonic() - t0:.1f} s; transcript in {artifacts / 'openai_transcript.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
