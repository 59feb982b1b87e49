#!/usr/bin/env python3
"""The tables of tools/cuda_bench.sh, from what it wrote to its output folder.

  edgekv.jsonl     one line per `edgekv bench --json` run, tagged with shape,
                   type, kv, depth and graphs (1 on, 0 off)
  llama.jsonl      llama-bench -o jsonl lines, tagged with shape and type
  bandwidth.json   the GPU's device-to-device copy (bytes read + written / s);
                   absent on the CPU, where edgekv's own read probe is used

The bandwidth floor of a decode step is the bytes it must read (the weights a
step touches + the live KV, averaged over the decode steps) over the measured
bandwidth: no decode is faster. edgekv reports its bytes; llama.cpp's are the
same weights plus its KV type's bytes for the same tokens.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_synthetic_llama import SHAPES  # noqa: E402

# Bytes per KV element of llama.cpp's cache types (ggml block sizes).
LLAMA_KV_BYTES = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
PAIRS = [("f16", "f16"), ("kivi4", "q8_0"), ("kivi4", "q4_0"), ("kivi2", "q4_0")]


def read_jsonl(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def edgekv_bytes_per_token(r: dict) -> float:
    if r.get("decode_bytes_per_token"):
        return float(r["decode_bytes_per_token"])
    decoded = (r["n_decode"] // 2) * r["kv_bytes_per_token"]
    return float(r["decode_weight_bytes"] + max(0, r["kv_used_bytes"] - decoded))


def llama_bytes_per_token(shape: str, kv: str, depth: int, n_gen: int, weight_bytes: int) -> float:
    hidden, layers, heads, kv_heads, *_ = SHAPES[shape]
    kv_dim = hidden // heads * kv_heads
    tokens = depth + n_gen / 2  # the mean live KV over the decode steps
    return weight_bytes + tokens * layers * 2 * kv_dim * LLAMA_KV_BYTES[kv]


def fmt(x: float | None, spec: str = ".1f") -> str:
    return "—" if x is None else format(x, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="tools/cuda_bench.sh's output folder")
    ap.add_argument("--backend", default="cuda")
    a = ap.parse_args()

    ekv = read_jsonl(os.path.join(a.out, "edgekv.jsonl"))
    llama = read_jsonl(os.path.join(a.out, "llama.jsonl"))
    bw_path = os.path.join(a.out, "bandwidth.json")
    gpu_bw = None
    if os.path.exists(bw_path):
        with open(bw_path) as f:
            gpu_bw = json.load(f)["copy_bytes_per_s"]

    e = {(r["shape"], r["type"], r["kv"], r["depth"], r["graphs"]): r["result"] for r in ekv}
    # llama.cpp: (shape, type, kv, depth, "pp"/"tg") -> tok/s
    l = {}
    for r in llama:
        kind = "pp" if r["n_prompt"] > 0 else "tg"
        l[(r["shape"], r["type"], r["type_k"], r["n_depth"], kind)] = r["avg_ts"]
    models = sorted({(k[0], k[1]) for k in e} | {(k[0], k[1]) for k in l},
                    key=lambda m: (list(SHAPES).index(m[0]), m[1]))
    depths = sorted({k[3] for k in e} | {k[3] for k in l if k[4] == "tg" and k[3] > 0})

    def bandwidth(r: dict) -> float | None:
        return gpu_bw if gpu_bw else r.get("read_bandwidth_bytes_per_s")

    if gpu_bw:
        print(f"GPU copy bandwidth (read + written): {gpu_bw / 1e9:.0f} GB/s")
    device = next((r["result"]["device"] for r in ekv), "?")
    print(f"edgekv on {device}, backend {a.backend}\n")
    print("Decode (tok/s after DEPTH prefilled tokens; floor = bytes read per token / bandwidth)\n")
    print("| model | weights | depth | edgekv KV | edgekv tok/s | llama.cpp KV | llama.cpp tok/s | ratio "
          "| edgekv floor tok/s | edgekv % of floor | llama.cpp % of floor |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for shape, qtype in models:
        for depth in depths:
            rows = [(ek, lk, 1) for ek, lk in PAIRS] + [("f16", "f16", 0)]
            for ek, lk, graphs in rows:
                r = e.get((shape, qtype, ek, depth, graphs))
                lt = l.get((shape, qtype, lk, depth, "tg"))
                if r is None and (lt is None or graphs == 0):
                    continue
                et = r["decode_tokens_per_s"] if r else None
                bw = bandwidth(r) if r else gpu_bw
                floor = bw / edgekv_bytes_per_token(r) if r and bw else None
                lfrac = None
                ref = r or e.get((shape, qtype, "f16", depth, 1))
                if lt and ref and bw:
                    lfloor = bw / llama_bytes_per_token(shape, lk, depth, ref["n_decode"], ref["decode_weight_bytes"])
                    lfrac = 100 * lt / lfloor
                label = ek + (", graphs off" if graphs == 0 else "")
                print(f"| {shape} | {qtype} | {depth} | {label} | {fmt(et, '.1f')} | {lk} | {fmt(lt, '.1f')} | "
                      f"{fmt(et / lt if et and lt else None, '.2f')} | {fmt(floor, '.0f')} | "
                      f"{fmt(100 * et / floor if et and floor else None, '.0f')} | {fmt(lfrac, '.0f')} |")
    print("\nPrefill (tok/s, one forward of the prompt from an empty f16 cache; llama.cpp pp512)\n")
    print("| model | weights | prompt | edgekv tok/s | edgekv graphs off | llama.cpp tok/s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for shape, qtype in models:
        d = 512 if (shape, qtype, "f16", 512, 1) in e else (depths[0] if depths else 512)
        r, r0 = e.get((shape, qtype, "f16", d, 1)), e.get((shape, qtype, "f16", d, 0))
        lp = l.get((shape, qtype, "f16", 0, "pp"))
        ep = r["prefill_tokens_per_s"] if r else None
        print(f"| {shape} | {qtype} | {d} | {fmt(ep)} | {fmt(r0['prefill_tokens_per_s'] if r0 else None)} | "
              f"{fmt(lp)} | {fmt(ep / lp if ep and lp else None, '.2f')} |")
    host = [(k, v) for k, v in e.items() if k[2] == "f16host"]
    if host:
        print("\nKV in host memory (offloaded cache, each layer copied to the device one layer ahead) against "
              "the same f16 KV on the device: decode tok/s\n")
        print("| model | weights | depth | device KV | host KV | host / device |")
        print("|---|---|---|---|---|---|")
        for (shape, qtype, _, depth, graphs), r in sorted(host, key=lambda kv: (kv[0][0], kv[0][1], kv[0][3])):
            dev = e.get((shape, qtype, "f16", depth, graphs))
            ht, dt = r["decode_tokens_per_s"], dev["decode_tokens_per_s"] if dev else None
            print(f"| {shape} | {qtype} | {depth} | {fmt(dt, '.1f')} | {fmt(ht, '.1f')} | "
                  f"{fmt(ht / dt if ht and dt else None, '.2f')} |")
    replays = [(k, v["decode_replayed_submissions"], v["decode_submissions"]) for k, v in e.items() if k[4] == 1]
    if a.backend == "cuda" and replays:
        print("\nCUDA graphs: decode submissions replayed / all, per run: " +
              ", ".join(f"{k[0]} {k[1]} {k[2]} d{k[3]} {rp}/{n}" for k, rp, n in replays))
    return 0


if __name__ == "__main__":
    sys.exit(main())
