#!/usr/bin/env python3
"""edgekv against llama.cpp on the same GGUF files, same protocol, same machine.

Numbers, not assertions. For each model and thread count it measures

  * prefill: PREFILL synthetic tokens in one call (llama.cpp: n_batch =
    n_ubatch = PREFILL), tokens/s;
  * decode at depth D: D tokens prefilled, then N_DECODE single-token steps,
    tokens/s of the steps only;

for edgekv's KV storages (f16, KIVI-4, KIVI-2) and llama.cpp's KV types (f16,
q8_0, q4_0; flash attention on, which llama.cpp needs for a quantized V).
Both sides get the same token ids (edgekv bench's synthetic prompt). Rounds
are interleaved (edgekv, llama.cpp, edgekv, ...) so a slow patch of the
machine hits both; the best of the rounds is kept. llama.cpp's own timers
(llama_perf_context) time its side; edgekv's bench times its own.

  tools/bench_vs_llamacpp.sh            (installs llama-cpp-python, builds edgekv)
  tools/bench_vs_llamacpp.py --edgekv build/cpu/samples/edgekv \
      --model smollm2=PATH --model gemma3=PATH --threads 1,2 --depths 512,4096
"""
import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time

EDGEKV_KV = {"f16": [], "kivi8": ["--nbits", "8"], "kivi4": ["--nbits", "4"], "kivi2": ["--nbits", "2"]}
# ggml type ids (ggml.h): F16 = 1, Q4_0 = 2, Q8_0 = 8.
LLAMA_KV = {"f16": 1, "q8_0": 8, "q4_0": 2}


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def synthetic_tokens(n, n_vocab):
    """The prompt `edgekv bench` uses (samples/cli/cmd_bench.cpp)."""
    base = 256 if n_vocab > 512 else 0
    span = n_vocab - base
    return [base + (i * 7919 + 13) % span for i in range(n)]


def run_edgekv(exe, model, threads, ctx, n_decode, kv, int8):
    cmd = [exe, "bench", "--model", model, "--ctx", str(ctx), "--n-decode", str(n_decode), "--reps", "1",
           "--threads", str(threads), "--backend", "cpu", "--json"] + EDGEKV_KV[kv]
    if int8:
        cmd.append("--int8-activations")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    d = json.loads(out)
    return d["prefill_tokens_per_s"], d["decode_tokens_per_s"], d


@contextlib.contextmanager
def stderr_silenced():
    """llama.cpp logs every load and context to stderr; the rounds' lines are enough."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class LlamaCpp:
    """The parts of llama.cpp's C API (through llama-cpp-python) a benchmark needs."""

    def __init__(self):
        import llama_cpp  # noqa: deferred so --help works without it

        self.lib = llama_cpp
        llama_cpp.llama_backend_init()
        self.models = {}

    def model(self, path):
        if path not in self.models:
            mp = self.lib.llama_model_default_params()
            m = self.lib.llama_model_load_from_file(path.encode(), mp)
            if not m:
                raise RuntimeError(f"llama.cpp could not load {path}")
            self.models[path] = m
        return self.models[path]

    def run(self, path, threads, ctx, n_decode, kv):
        lib = self.lib
        m = self.model(path)
        n_vocab = lib.llama_vocab_n_tokens(lib.llama_model_get_vocab(m))
        cp = lib.llama_context_default_params()
        cp.n_ctx = ctx + n_decode + 16
        cp.n_batch = cp.n_ubatch = min(ctx, 512)
        cp.n_threads = cp.n_threads_batch = threads
        cp.type_k = cp.type_v = LLAMA_KV[kv]
        if hasattr(cp, "flash_attn_type"):
            cp.flash_attn_type = 1  # LLAMA_FLASH_ATTN_TYPE_ENABLED
        else:
            cp.flash_attn = True
        cp.no_perf = False
        c = lib.llama_init_from_model(m, cp)
        if not c:
            raise RuntimeError(f"llama.cpp could not create a context ({kv} KV)")
        try:
            toks = synthetic_tokens(ctx + n_decode, n_vocab)
            # Warm-up (touches the mapped weights), then a clean context.
            self._decode(c, toks[:8])
            lib.llama_memory_clear(lib.llama_get_memory(c), True)
            lib.llama_perf_context_reset(c)
            t0 = time.perf_counter()
            for start in range(0, ctx, cp.n_batch):
                self._decode(c, toks[start:min(ctx, start + cp.n_batch)])
            t1 = time.perf_counter()
            for i in range(n_decode):
                self._decode(c, [toks[ctx + i]])
            t2 = time.perf_counter()
            perf = lib.llama_perf_context(c)
            # llama.cpp's timers; wall time as a cross-check when they are off.
            prefill = perf.n_p_eval / (perf.t_p_eval_ms / 1e3) if perf.t_p_eval_ms > 0 else ctx / (t1 - t0)
            decode = perf.n_eval / (perf.t_eval_ms / 1e3) if perf.t_eval_ms > 0 and n_decode else (
                n_decode / (t2 - t1) if n_decode else 0.0)
            return prefill, decode
        finally:
            lib.llama_free(c)

    def _decode(self, c, toks):
        arr = (self.lib.llama_token * len(toks))(*toks)
        rc = self.lib.llama_decode(c, self.lib.llama_batch_get_one(arr, len(toks)))
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--edgekv", required=True, help="path of the edgekv CLI")
    ap.add_argument("--model", action="append", required=True, help="NAME=PATH of a GGUF file (repeatable)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--depths", default="512,4096", help="decode depths")
    ap.add_argument("--n-decode", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--edgekv-kv", default="f16,kivi4,kivi2")
    ap.add_argument("--llama-kv", default="f16,q8_0,q4_0")
    ap.add_argument("--deep-kv-only", action="store_true",
                    help="at depths above --prefill, run only KIVI-4/q4_0 besides f16 (saves time)")
    ap.add_argument("--int8-activations", action="store_true", help="edgekv with 8-bit activations")
    ap.add_argument("--json", help="also write every measurement here")
    a = ap.parse_args()

    models = [m.split("=", 1) for m in a.model]
    threads = [int(t) for t in a.threads.split(",")]
    depths = [int(d) for d in a.depths.split(",")]
    ekv_kvs = a.edgekv_kv.split(",")
    llama_kvs = a.llama_kv.split(",")
    llama = LlamaCpp()
    ver = getattr(llama.lib, "__version__", "?")
    print(f"# {cpu_name()}, {os.cpu_count()} logical CPUs; llama-cpp-python {ver}; "
          f"edgekv {'8-bit' if a.int8_activations else 'f32'} activations; best of {a.rounds} interleaved rounds\n")

    # (model, threads, depth, side, kv) -> best (prefill, decode)
    best = {}
    for rnd in range(a.rounds):
        for name, path in models:
            for t in threads:
                for depth in depths:
                    ctx = depth
                    kvs_e, kvs_l = ekv_kvs, llama_kvs
                    if depth != a.prefill and a.deep_kv_only:
                        kvs_e = [k for k in ekv_kvs if k in ("f16", "kivi4")]
                        kvs_l = [k for k in llama_kvs if k in ("f16", "q4_0")]
                    for side, kvs in (("edgekv", kvs_e), ("llama.cpp", kvs_l)):
                        for kv in kvs:
                            if side == "edgekv":
                                p, d, _ = run_edgekv(a.edgekv, path, t, ctx, a.n_decode, kv, a.int8_activations)
                            else:
                                with stderr_silenced():
                                    p, d = llama.run(path, t, ctx, a.n_decode, kv)
                            key = (name, t, depth, side, kv)
                            old = best.get(key, (0.0, 0.0))
                            best[key] = (max(old[0], p), max(old[1], d))
                            print(f"round {rnd + 1}: {name} t={t} depth={depth} {side:9s} {kv:5s} "
                                  f"prefill {p:8.1f} decode {d:7.2f} tok/s", file=sys.stderr, flush=True)

    print("| model | threads | edgekv prefill tok/s | llama.cpp prefill tok/s | ratio |")
    print("|---|---|---|---|---|")
    pdepth = a.prefill if a.prefill in depths else depths[0]
    for name, _ in models:
        for t in threads:
            e = best.get((name, t, pdepth, "edgekv", "f16"), (0, 0))[0]
            l = best.get((name, t, pdepth, "llama.cpp", "f16"), (0, 0))[0]
            print(f"| {name} | {t} | {e:.1f} | {l:.1f} | {e / l if l else 0:.2f}x |")
    print()
    print("| model | threads | depth | edgekv KV | decode tok/s | llama.cpp KV | decode tok/s | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    pairs = [("f16", "f16"), ("kivi8", "q8_0"), ("kivi4", "q8_0"), ("kivi4", "q4_0"), ("kivi2", "q4_0")]
    for name, _ in models:
        for t in threads:
            for depth in depths:
                for ek, lk in pairs:
                    e = best.get((name, t, depth, "edgekv", ek))
                    l = best.get((name, t, depth, "llama.cpp", lk))
                    if e and l:
                        print(f"| {name} | {t} | {depth} | {ek} | {e[1]:.2f} | {lk} | {l[1]:.2f} | "
                              f"{e[1] / l[1] if l[1] else 0:.2f}x |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump([{"model": k[0], "threads": k[1], "depth": k[2], "side": k[3], "kv": k[4],
                        "prefill_tokens_per_s": v[0], "decode_tokens_per_s": v[1]} for k, v in best.items()],
                      f, indent=1)


if __name__ == "__main__":
    main()
