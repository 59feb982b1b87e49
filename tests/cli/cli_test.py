"""The `edgekv` CLI from the outside: documented exit codes (0 ok, 1 library
error, 2 bad arguments) and every subcommand's --json output on the tiny
Llama fixture, parsed and checked for its keys and for values that a wrong
implementation would get wrong (HF's greedy tokens, token counts, stop
reasons, perplexity bookkeeping, the cache a budget buys). `edgekv serve` has its own tests.

    python3 tests/cli/cli_test.py --edgekv build/cpu/samples/cli/edgekv --fixtures tests/fixtures

Python 3 stdlib only. Prints each case; exits 1 with the failures listed.
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time

# tools/gen_tiny_llama.py's ARCH and tokenizer.
TINY = dict(architecture="llama", n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16, n_embd=64, n_ff=160,
            context_length=256, n_vocab=384)
# K and V, f16 (the default kv dtype), every layer's kv heads.
KV_BYTES_PER_TOKEN = 2 * TINY["n_layers"] * TINY["n_kv_heads"] * TINY["head_dim"] * 2
EOG_IDS = {0, 2}  # <|endoftext|>, <|im_end|>
IM_START, IM_END = 1, 2
STOP_REASONS = {"max_tokens", "eos", "stop_token", "stop_string", "cancelled", "cache_full"}
# Text for perplexity: a few lines of the GPL preamble (the tokenizer's corpus).
PPL_TEXT = ("The GNU General Public License is a free, copyleft license for software and other kinds of works.\n"
            "The licenses for most software and other practical works are designed to take away your freedom "
            "to share and change the works. By contrast, the GNU General Public License is intended to "
            "guarantee your freedom to share and change all versions of a program.\n")


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


class Cli:
    def __init__(self, exe, model):
        self.exe, self.model = exe, model

    def run(self, args, want_rc):
        """Runs edgekv with args; fails unless it exits with want_rc."""
        cmd = [self.exe] + args
        p = subprocess.run(cmd, capture_output=True, timeout=120)
        out = p.stdout.decode("utf-8", "strict")
        err = p.stderr.decode("utf-8", "replace")
        check(p.returncode == want_rc,
              f"`{' '.join(cmd)}` exited {p.returncode}, expected {want_rc}\nstdout: {out[-2000:]}\n"
              f"stderr: {err[-2000:]}")
        return out, err

    def json(self, sub, args, want_rc=0, model=True):
        """One subcommand with --json: stdout must be exactly one JSON object."""
        full = [sub] + (["--model", self.model, "--backend", "cpu"] if model else []) + args
        if model and sub != "tokenize":  # tokenize takes no --threads
            full += ["--threads", "2"]
        out, _ = self.run(full + ["--json"], want_rc)
        check(out.endswith("\n") and out.count("\n") == 1, f"{sub}: stdout is not one line: {out!r}")
        try:
            doc = json.loads(out)
        except ValueError as e:
            raise Failure(f"{sub}: stdout is not JSON ({e}): {out!r}")
        check(isinstance(doc, dict), f"{sub}: JSON is not an object: {out!r}")
        return doc


def has_keys(doc, keys, what):
    missing = [k for k in keys if k not in doc]
    check(not missing, f"{what}: keys {missing} missing from {sorted(doc)}")


def positive(doc, keys, what):
    for k in keys:
        v = doc[k]
        check(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0,
              f"{what}: {k} = {v!r}, expected a positive number")


def ids_in_vocab(ids, what):
    check(all(isinstance(t, int) and 0 <= t < TINY["n_vocab"] for t in ids), f"{what}: ids out of range: {ids}")


# ---------------------------------------------------------------- exit codes

def case_exit_codes(cli, ctx):
    out, err = cli.run([], 2)
    check("usage: edgekv" in err and out == "", "no arguments: usage not on stderr")
    cli.run(["--bogus-flag"], 2)
    cli.run(["frobnicate"], 2)
    for sub in ("generate", "perplexity", "bench", "bench-chats", "tokenize", "info", "devices", "plan"):
        _, err = cli.run([sub, "--bogus-flag"], 2)
        check("unknown option '--bogus-flag'" in err, f"{sub} --bogus-flag: stderr does not name it: {err!r}")
        out, _ = cli.run([sub, "--help"], 0)
        check("--json" in out, f"{sub} --help: no option table on stdout")
    out, _ = cli.run(["--help"], 0)
    check("usage: edgekv" in out and "Exit codes: 0 ok, 1 library error, 2 bad arguments" in out,
          "--help: usage or exit codes not on stdout")
    out, _ = cli.run(["--version"], 0)
    check(out.startswith("edgekv "), f"--version: {out!r}")
    ctx["version"] = out.split()[1]
    # Missing or bad values are usage errors (2), never library errors.
    cli.run(["generate", "--model", cli.model], 2)  # --prompt is required
    cli.run(["generate", "--prompt", "x"], 2)  # --model is required
    cli.run(["generate", "--model", cli.model, "--prompt", "x", "--max-new-tokens", "-1"], 2)
    cli.run(["generate", "--model", cli.model, "--prompt", "x", "--max-new-tokens"], 2)
    cli.run(["generate", "--model", cli.model, "--prompt", "x", "--temperature", "abc"], 2)
    cli.run(["generate", "--model", cli.model, "--prompt", "x", "--backend", "abacus"], 2)
    cli.run(["tokenize", "--model", cli.model, "--prompt", "x", "stray"], 2)
    cli.run(["perplexity", "--model", cli.model], 2)  # --file is required


def case_missing_model(cli, ctx):
    missing = os.path.join(ctx["tmp"], "no_such_model.gguf")
    for sub, extra in (("generate", ["--prompt", "hi"]), ("info", []), ("tokenize", ["--prompt", "hi"]),
                       ("bench", ["--ctx", "4", "--n-decode", "1"])):
        cli.run([sub, "--model", missing] + extra, 1)
        doc = Cli(cli.exe, missing).json(sub, extra, want_rc=1)
        has_keys(doc, ["error", "status", "status_code"], f"{sub} on a missing model")
        check(missing in doc["error"] and doc["status_code"] != 0, f"{sub}: error does not name the file: {doc}")
    # A file that exists but is not a GGUF: a library error too.
    junk = os.path.join(ctx["tmp"], "junk.gguf")
    with open(junk, "wb") as f:
        f.write(b"not a model at all" * 10)
    doc = Cli(cli.exe, junk).json("info", [], want_rc=1)
    check(doc["status_code"] != 0 and doc["status"], f"info on junk: {doc}")
    doc = cli.json("perplexity", ["--file", os.path.join(ctx["tmp"], "no_such.txt")], want_rc=1)
    has_keys(doc, ["error", "status"], "perplexity on a missing text file")


# --------------------------------------------------------------- subcommands

def case_info(cli, ctx):
    doc = cli.json("info", [])
    has_keys(doc, ["architecture", "name", "n_layers", "n_heads", "n_kv_heads", "head_dim", "n_embd", "n_ff",
                   "context_length", "n_vocab", "n_params", "weight_bytes", "backend", "device", "natural_cache",
                   "n_sliding_layers", "sliding_window", "n_recurrent_layers", "version"], "info")
    for k, v in TINY.items():
        check(doc[k] == v, f"info: {k} = {doc[k]!r}, expected {v!r}")
    e, f, v, h, kv, hd, n = (TINY[k] for k in ("n_embd", "n_ff", "n_vocab", "n_heads", "n_kv_heads", "head_dim",
                                                "n_layers"))
    # Untied embeddings + output, final norm, per layer: 2 norms, q/k/v/o, gate/up/down.
    params = 2 * v * e + e + n * (2 * e + e * h * hd + 2 * e * kv * hd + h * hd * e + 3 * e * f)
    check(doc["n_params"] == params, f"info: n_params = {doc['n_params']}, expected {params}")
    check(doc["weight_bytes"] == 4 * params, f"info: weight_bytes = {doc['weight_bytes']} for f32 weights")
    # A decode step reads one row of the (untied) embedding table.
    check(doc["decode_weight_bytes"] == 4 * (params - v * e + e),
          f"info: decode_weight_bytes = {doc['decode_weight_bytes']}, expected {4 * (params - v * e + e)}")
    check(doc["backend"] == "cpu" and doc["device"], f"info: backend/device {doc['backend']!r} {doc['device']!r}")
    check(doc["n_sliding_layers"] == 0 and doc["n_recurrent_layers"] == 0, "info: a plain Llama has no "
          "sliding or recurrent layers")
    check(doc["version"] == ctx["version"], f"info: version {doc['version']} != --version {ctx['version']}")
    check(doc["natural_cache"] == "dynamic", f"info: natural_cache {doc['natural_cache']!r}")


def case_devices(cli, ctx):
    doc = cli.json("devices", [], model=False)
    has_keys(doc, ["version", "backends", "devices"], "devices")
    names = [b["backend"] for b in doc["backends"]]
    check(names == ["cpu", "vulkan", "cuda"], f"devices: backends {names}")
    for b in doc["backends"]:
        has_keys(b, ["backend", "available", "n_devices"], "devices.backends[]")
        listed = [d for d in doc["devices"] if d["backend"] == b["backend"]]
        check(b["n_devices"] == len(listed), f"devices: {b['backend']} says {b['n_devices']}, lists {len(listed)}")
        check([d["index"] for d in listed] == list(range(len(listed))), f"devices: {b['backend']} indices")
    cpu = doc["backends"][0]
    check(cpu["available"] is True and cpu["n_devices"] >= 1, f"devices: CPU backend {cpu}")
    for d in doc["devices"]:
        has_keys(d, ["backend", "index", "name", "device_memory_bytes", "unified_memory", "n_threads"], "device")
        check(isinstance(d["unified_memory"], bool) and d["name"], f"devices: {d}")
    cpu_dev = [d for d in doc["devices"] if d["backend"] == "cpu"][0]
    check(cpu_dev["n_threads"] >= 1, f"devices: CPU threads {cpu_dev['n_threads']}")
    check(doc["version"] == ctx["version"], "devices: version differs from --version")


def case_tokenize(cli, ctx):
    ref = ctx["ref"]
    doc = cli.json("tokenize", ["--prompt", ref["prompt_text"], "--no-special"])
    has_keys(doc, ["n_tokens", "ids", "pieces"], "tokenize")
    check(doc["ids"] == ref["input_ids"], f"tokenize: ids {doc['ids']} != HF's {ref['input_ids']}")
    check(doc["n_tokens"] == len(doc["ids"]) == len(doc["pieces"]), "tokenize: counts differ")
    check("".join(doc["pieces"]) == ref["prompt_text"], f"tokenize: pieces {doc['pieces']} do not spell the text")
    check("text" not in doc, "tokenize: text is only for --chat")
    # Non-ASCII: ids in range, and whole characters rebuild the text.
    text = "caf\u00e9 \u00fcber na\u00efve"  # 2-byte characters only
    doc = cli.json("tokenize", ["--prompt", text])
    ids_in_vocab(doc["ids"], "tokenize (accents)")
    check(doc["n_tokens"] == len(doc["ids"]) > 0, "tokenize (accents): no ids")
    emoji = cli.json("tokenize", ["--prompt", "\U0001F600 \u4e2d\u6587"])
    ids_in_vocab(emoji["ids"], "tokenize (emoji, CJK)")
    # --chat: the template's control tokens become the special ids.
    doc = cli.json("tokenize", ["--prompt", "Hi", "--chat", "--system", "Be brief."])
    has_keys(doc, ["text"], "tokenize --chat")
    check(doc["text"] == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
          "<|im_start|>assistant\n", f"tokenize --chat: text {doc['text']!r}")
    ids_in_vocab(doc["ids"], "tokenize --chat")
    check(doc["ids"][0] == IM_START and doc["ids"].count(IM_START) == 3 and doc["ids"].count(IM_END) == 2,
          f"tokenize --chat: control tokens not parsed: {doc['ids']}")
    # The same text as a plain prompt keeps the markers as text.
    plain = cli.json("tokenize", ["--prompt", doc["text"]])
    check(IM_START not in plain["ids"] and IM_END not in plain["ids"], "tokenize: plain text parsed specials")


def check_generate_doc(doc, what):
    has_keys(doc, ["tokens", "text", "prompt_tokens", "prompt_reused", "prompt_forwarded", "n_generated",
                   "n_forwarded", "prefill_seconds", "decode_seconds", "prefill_tokens_per_s",
                   "decode_tokens_per_s", "kv_bytes", "cache", "device", "backend", "stop_reason", "model"], what)
    check(doc["n_generated"] == len(doc["tokens"]), f"{what}: n_generated {doc['n_generated']} != "
          f"{len(doc['tokens'])} tokens")
    ids_in_vocab(doc["tokens"], what)
    check(doc["prompt_reused"] + doc["prompt_forwarded"] == doc["prompt_tokens"], f"{what}: prompt counts")
    check(doc["stop_reason"] in STOP_REASONS, f"{what}: stop_reason {doc['stop_reason']!r}")
    check(doc["backend"] == "cpu", f"{what}: backend {doc['backend']}")


def case_generate(cli, ctx):
    ref = ctx["ref"]
    greedy = ref["greedy_tokens"]
    n = len(greedy)
    args = ["--prompt", ref["prompt_text"], "--max-new-tokens", str(n)]
    doc = cli.json("generate", args + ["--ignore-eos"])
    check_generate_doc(doc, "generate")
    check(doc["tokens"] == greedy, f"generate: tokens {doc['tokens']} != HF's greedy {greedy}")
    check(doc["stop_reason"] == "max_tokens" and doc["n_generated"] == n, f"generate: {doc['stop_reason']}")
    check(doc["prompt_tokens"] == len(ref["input_ids"]) == doc["prompt_forwarded"], "generate: prompt tokens")
    # Every token but the last generated one went through the model.
    fed = len(ref["input_ids"]) + n - 1
    check(doc["n_forwarded"] == fed, f"generate: n_forwarded {doc['n_forwarded']}, expected {fed}")
    check(doc["cache"] == "dynamic" and doc["cache_seq_len"] == fed, f"generate: cache {doc['cache']} "
          f"seq_len {doc.get('cache_seq_len')}, expected dynamic holding {fed}")
    check(doc["kv_bytes"] == doc["kv_used_bytes"] == fed * KV_BYTES_PER_TOKEN == fed * doc["kv_bytes_per_token"],
          f"generate: kv bytes {doc['kv_used_bytes']} for {fed} tokens of {doc['kv_bytes_per_token']} B")
    positive(doc, ["prefill_tokens_per_s", "decode_tokens_per_s"], "generate")
    ctx["greedy_text"] = doc["text"]

    # Stopping at EOS is on by default: HF's greedy run has no EOG token, so
    # it runs to the limit; otherwise it must have stopped at one.
    doc = cli.json("generate", args)
    check_generate_doc(doc, "generate (eos on)")
    if any(t in EOG_IDS for t in greedy):
        check(doc["stop_reason"] == "eos" and doc["tokens"][-1] in EOG_IDS, f"generate: {doc}")
    else:
        check(doc["tokens"] == greedy and doc["stop_reason"] == "max_tokens", f"generate (eos on): {doc}")

    # Without a cache: the same tokens, recomputing every step.
    doc = cli.json("generate", args + ["--no-cache", "--ignore-eos"])
    check(doc["tokens"] == greedy and doc["cache"] == "none", f"generate --no-cache: {doc['tokens']}")

    # A stop string from the middle of the greedy text ends generation early.
    text = ctx["greedy_text"]
    m = re.search(r"[A-Za-z]{3}", text[1:])  # ASCII: no replacement characters
    check(m is not None, f"generate: no ASCII word in the greedy text {text!r}")
    stop = m.group(0)
    doc = cli.json("generate", args + ["--stop", stop, "--ignore-eos"])
    check_generate_doc(doc, "generate --stop")
    check(doc["stop_reason"] == "stop_string" and doc["n_generated"] < n, f"generate --stop {stop!r}: "
          f"{doc['stop_reason']} after {doc['n_generated']}")
    check(doc["tokens"] == greedy[:doc["n_generated"]], "generate --stop: not a prefix of the greedy run")

    # A one-token budget, and a static cache of exactly prompt + budget.
    doc = cli.json("generate", ["--prompt", ref["prompt_text"], "--max-new-tokens", "1"])
    check(doc["tokens"] == greedy[:1] and doc["stop_reason"] == "max_tokens", f"generate 1 token: {doc}")
    cap = len(ref["input_ids"]) + n
    doc = cli.json("generate", args + ["--ignore-eos", "--cache", "static", "--max-cache-len", str(cap)])
    check(doc["tokens"] == greedy and doc["cache"] == "static" and doc["cache_capacity"] == cap,
          f"generate static cache: {doc}")

    # Chat: the rendered prompt ends in the assistant header; any stop is stated.
    doc = cli.json("generate", ["--prompt", "Hello", "--chat", "--max-new-tokens", "6"])
    check_generate_doc(doc, "generate --chat")
    if doc["stop_reason"] == "max_tokens":
        check(doc["n_generated"] == 6, "generate --chat: max_tokens before the limit")
    else:
        check(doc["stop_reason"] == "eos" and doc["tokens"][-1] in EOG_IDS and doc["n_generated"] <= 6,
              f"generate --chat: {doc['stop_reason']} {doc['tokens']}")


def expected_scored(n_tokens, ctx_len):
    """Tokens the windowed perplexity scores: all but each window's first."""
    scored = windows = 0
    start = 0
    while start + 2 <= n_tokens:
        scored += min(n_tokens, start + ctx_len) - start - 1
        windows += 1
        start += ctx_len
    return scored, windows


def case_perplexity(cli, ctx):
    path = os.path.join(ctx["tmp"], "ppl.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(PPL_TEXT)
    n_tok = cli.json("tokenize", ["--prompt", PPL_TEXT])["n_tokens"]
    check(n_tok > 40, f"perplexity text gives only {n_tok} tokens")
    keys = ["perplexity", "mean_nll", "tokens", "mode", "windows", "ctx", "batch", "seconds", "tokens_per_s",
            "cache", "peak_rss_bytes", "device", "backend"]

    doc = cli.json("perplexity", ["--file", path, "--ctx", "16"])
    has_keys(doc, keys, "perplexity")
    scored, windows = expected_scored(n_tok, 16)
    check(doc["mode"] == "windows" and doc["ctx"] == 16 and doc["batch"] == 16, f"perplexity: {doc}")
    check(doc["tokens"] == scored and doc["windows"] == windows,
          f"perplexity: {doc['tokens']} tokens in {doc['windows']} windows, expected {scored} in {windows}")
    ppl = doc["perplexity"]
    check(1.0 < ppl < 1e6 and abs(math.log(ppl) - doc["mean_nll"]) < 1e-6 * max(1.0, doc["mean_nll"]),
          f"perplexity {ppl} vs mean_nll {doc['mean_nll']}")
    positive(doc, ["seconds", "tokens_per_s", "peak_rss_bytes"], "perplexity")

    # One window over everything and one stream score the same tokens with
    # the same contexts: the same perplexity.
    whole = cli.json("perplexity", ["--file", path, "--ctx", str(n_tok)])
    stream = cli.json("perplexity", ["--file", path, "--stream", "--batch", "7"])
    check(whole["tokens"] == stream["tokens"] == n_tok - 1, f"perplexity: scored {whole['tokens']} / "
          f"{stream['tokens']}, expected {n_tok - 1}")
    check(stream["mode"] == "stream" and stream["windows"] == 1 and stream["batch"] == 7, f"stream: {stream}")
    check(abs(whole["perplexity"] - stream["perplexity"]) < 1e-4 * whole["perplexity"],
          f"perplexity: one window {whole['perplexity']} != stream {stream['perplexity']}")
    check(stream["cache_seq_len"] == n_tok, f"perplexity --stream: cache holds {stream['cache_seq_len']}")

    # --max-tokens cuts the text; fewer than 2 tokens is a usage error.
    cut = cli.json("perplexity", ["--file", path, "--max-tokens", "10", "--ctx", "16"])
    check(cut["tokens"] == 9, f"perplexity --max-tokens 10: scored {cut['tokens']}")
    cli.run(["perplexity", "--model", cli.model, "--file", path, "--max-tokens", "1"], 2)


def case_bench(cli, ctx):
    doc = cli.json("bench", ["--ctx", "16", "--n-decode", "4", "--reps", "2"])
    has_keys(doc, ["prefill_tokens_per_s", "prefill_tokens_per_s_std", "decode_tokens_per_s",
                   "decode_tokens_per_s_std", "ctx", "n_decode", "reps", "kv_bytes", "cache",
                   "decode_submissions", "decode_replayed_submissions", "decode_record_ns", "peak_rss_bytes",
                   "threads", "int8_activations", "n_params", "weight_bytes", "device", "backend", "model"], "bench")
    check((doc["ctx"], doc["n_decode"], doc["reps"], doc["threads"]) == (16, 4, 2, 2), f"bench: {doc}")
    positive(doc, ["prefill_tokens_per_s", "decode_tokens_per_s", "kv_bytes", "peak_rss_bytes", "n_params"], "bench")
    check(doc["prefill_tokens_per_s_std"] >= 0 and doc["decode_tokens_per_s_std"] >= 0, "bench: negative std")
    # The last repetition leaves the prompt and the decode steps in the cache.
    check(doc["cache_seq_len"] == 20 and doc["kv_bytes"] == doc["kv_used_bytes"], f"bench: cache {doc}")
    check(doc["kv_used_bytes"] == 20 * doc["kv_bytes_per_token"] == 20 * KV_BYTES_PER_TOKEN,
          f"bench: {doc['kv_used_bytes']} kv bytes for 20 tokens")
    check(doc["peak_rss_bytes"] > doc["weight_bytes"], "bench: peak RSS below the weights")
    check(doc["int8_activations"] is False and doc["backend"] == "cpu", f"bench: {doc}")
    # The bandwidth floor: decode weights + the decode steps' mean live KV
    # (16 + 4/2 tokens), over a measured read bandwidth.
    check(doc["decode_bytes_per_token"] == doc["decode_weight_bytes"] + 18 * KV_BYTES_PER_TOKEN,
          f"bench: {doc['decode_bytes_per_token']} bytes a token")
    check(doc["read_bandwidth_bytes_per_s"] > 1e8, f"bench: read bandwidth {doc['read_bandwidth_bytes_per_s']}")
    floor = doc["read_bandwidth_bytes_per_s"] / doc["decode_bytes_per_token"]
    check(abs(doc["bandwidth_floor_tokens_per_s"] - floor) < 1e-6 * floor, f"bench: floor {doc}")
    frac = doc["decode_tokens_per_s"] / floor
    check(abs(doc["bandwidth_fraction"] - frac) < 1e-6 * frac and 0 < frac, f"bench: fraction {doc}")
    # On the CPU nothing is submitted to a device.
    check(doc["decode_submissions"] == 0 and doc["decode_replayed_submissions"] == 0, f"bench: {doc}")


def case_bench_chats(cli, ctx):
    doc = cli.json("bench-chats", ["--chats", "3", "--ctx", "8", "--n-decode", "4"])
    has_keys(doc, ["chats", "ctx", "n_decode", "aggregate_decode_tokens_per_s", "per_chat_decode_tokens_per_s",
                   "device", "backend", "model"], "bench-chats")
    check((doc["chats"], doc["ctx"], doc["n_decode"]) == (3, 8, 4), f"bench-chats: {doc}")
    rates = doc["per_chat_decode_tokens_per_s"]
    check(len(rates) == 3 and all(isinstance(r, (int, float)) and r > 0 for r in rates), f"bench-chats: {rates}")
    agg = doc["aggregate_decode_tokens_per_s"]
    # All chats' tokens over the slowest chat's time: at most the sum of the
    # per-chat rates, at least chats x the slowest one.
    check(0 < agg <= sum(rates) * (1 + 1e-9) and agg >= 3 * min(rates) * (1 - 1e-9),
          f"bench-chats: aggregate {agg} vs per chat {rates}")
    cli.run(["bench-chats", "--model", cli.model, "--chats", "0"], 2)


PLAN_KEYS = ["index", "label", "type", "dtype", "nbits", "window_length", "num_sink_tokens", "max_cache_len",
             "offload", "tokens_held", "capacity", "max_tokens", "device_bytes", "host_bytes", "bytes",
             "capacity_bytes", "fits", "reason"]


def check_plan_doc(doc, what):
    has_keys(doc, ["model", "backend", "budget_bytes", "context_tokens", "fits", "chosen", "reason", "candidates"],
             what)
    check([c["index"] for c in doc["candidates"]] == list(range(len(doc["candidates"]))), f"{what}: indices")
    for c in doc["candidates"]:
        has_keys(c, PLAN_KEYS, f"{what}: candidate")
        check(c["bytes"] == c["device_bytes"] + c["host_bytes"], f"{what}: bytes of {c}")
        if doc["budget_bytes"]:
            check(c["fits"] == (c["bytes"] <= doc["budget_bytes"] and c["tokens_held"] > 0), f"{what}: fits of {c}")


def case_plan(cli, ctx):
    for bad in (["--budget", "lots"], ["--budget", "-5MiB"], ["--budget", "12XB"], ["--context", "0"],
                ["--context", "x"]):
        _, err = cli.run(["plan", "--model", cli.model] + bad, 2)
        check(bad[0] in err, f"plan {bad}: stderr does not name the option: {err!r}")
    # f16 K and V of 200 tokens take 256 rows (the cache grows in chunks of
    # 256 tokens): 64 KiB is exactly enough, and the natural cache is chosen.
    doc = cli.json("plan", ["--budget", "64KiB", "--context", "200"])
    check_plan_doc(doc, "plan 64KiB")
    check(doc["budget_bytes"] == 65536 and doc["context_tokens"] == 200 and doc["fits"] is True, f"plan: {doc}")
    chosen = doc["chosen"]
    has_keys(chosen, PLAN_KEYS, "plan: chosen")
    check(chosen["type"] == "dynamic" and chosen["dtype"] == "f16" and chosen["index"] == 0, f"plan: {chosen}")
    check(chosen["bytes"] == 256 * KV_BYTES_PER_TOKEN and chosen["tokens_held"] == 200, f"plan: {chosen}")
    check(doc["candidates"][0] == chosen, "plan: chosen differs from candidate 0")
    # 160 KiB holds 640 f16 tokens; KIVI in groups of 8 (the tiny head_dim is
    # 16) holds 1000: the first quantized candidate that fits is chosen.
    doc = cli.json("plan", ["--budget", "160KiB", "--context", "1000", "--q-group-size", "8",
                            "--residual-length", "16"])
    check_plan_doc(doc, "plan 160KiB")
    kinds = [(c["type"], c["dtype"], c["nbits"]) for c in doc["candidates"]]
    check(kinds[:4] == [("dynamic", "f16", 0), ("quantized", "kivi", 8), ("quantized", "kivi", 4),
                        ("quantized", "kivi", 2)], f"plan: candidates {kinds}")
    check(doc["candidates"][0]["fits"] is False and doc["candidates"][0]["max_tokens"] == 640, f"plan: {doc}")
    first_fit = next(c for c in doc["candidates"] if c["fits"])
    check(doc["chosen"] == first_fit and doc["chosen"]["type"] == "quantized", f"plan 160KiB: chose {doc['chosen']}")
    # Too small for anything: exit 1, no choice, every candidate listed.
    doc = cli.json("plan", ["--budget", "4KiB", "--context", "200"], want_rc=1)
    check_plan_doc(doc, "plan 4KiB")
    check(doc["fits"] is False and doc["chosen"] is None and doc["candidates"], f"plan 4KiB: {doc}")
    has_keys(doc, ["error", "status"], "plan 4KiB")
    check("4096 bytes" in doc["error"], f"plan 4KiB: error {doc['error']!r}")
    # An explicit cache is sized as given: a static cache of 100 tokens
    # cannot take 200 (exit 1), nor is anything else proposed.
    doc = cli.json("plan", ["--cache", "static", "--max-cache-len", "100", "--context", "200"], want_rc=1)
    check_plan_doc(doc, "plan static")
    check(len(doc["candidates"]) == 1 and doc["chosen"]["fits"] is False and doc["chosen"]["capacity"] == 100,
          f"plan static: {doc}")
    check("at most 100" in doc["chosen"]["reason"], f"plan static: reason {doc['chosen']['reason']!r}")
    # Human form: the choice, the reason and the table.
    out, _ = cli.run(["plan", "--model", cli.model, "--budget", "1.5 MiB", "--context", "200"], 0)
    check("chosen:   dynamic f16" in out and "why:" in out and "candidates" in out, f"plan: {out!r}")


CASES = [case_exit_codes, case_missing_model, case_info, case_devices, case_tokenize, case_generate,
         case_perplexity, case_bench, case_bench_chats, case_plan]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edgekv", required=True, help="the edgekv executable")
    ap.add_argument("--fixtures", required=True, help="tests/fixtures")
    a = ap.parse_args()
    model = os.path.join(a.fixtures, "tiny_llama", "tiny_llama_f32.gguf")
    for p in (a.edgekv, model):
        if not os.path.isfile(p):
            print(f"cli_test: FAIL: {p} does not exist", file=sys.stderr)
            return 1
    with open(os.path.join(a.fixtures, "tiny_llama", "ref_f32.json"), encoding="utf-8") as f:
        ref = json.load(f)
    cli = Cli(a.edgekv, model)
    failures = []
    with tempfile.TemporaryDirectory(prefix="ekv_cli_test_") as tmp:
        ctx = {"tmp": tmp, "ref": ref}
        for case in CASES:
            name = case.__name__[len("case_"):]
            t0 = time.monotonic()
            try:
                case(cli, ctx)
                print(f"cli_test: {name}: ok ({time.monotonic() - t0:.2f} s)", flush=True)
            except (Failure, subprocess.TimeoutExpired, KeyError, UnicodeDecodeError) as e:
                kind = "" if isinstance(e, Failure) else f"{type(e).__name__}: "
                print(f"cli_test: {name}: FAIL: {kind}{e}", flush=True)
                failures.append(name)
    if failures:
        print(f"cli_test: {len(failures)} of {len(CASES)} cases failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    print(f"cli_test: all {len(CASES)} cases passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
