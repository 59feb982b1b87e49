#!/usr/bin/env python3
"""Writes tests/fixtures/kivi/kivi_reference.bin: an independent NumPy KIVI
reference (arXiv 2402.02750) for the quantized KV cache.

One attention layer (4 query heads over 2 KV heads, head_dim 16) consumes 40
tokens in a fixed schedule of forwards (prefill chunks, single decode steps,
a final chunk). K, V and Q are random, rounded to f16 (the cache's
full-precision residual is f16). For 2, 4 and 8 bits the script replays what
a KIVI cache holds when each forward runs and computes causal attention:

  * keys: per channel over groups of G consecutive tokens; values: per token
    over groups of G channels; asymmetric: scale = f16((max - min) / qmax),
    minimum = f16(min), code = floor((x - minimum) / scale + 0.5) clamped to
    [0, qmax] (0 where the scale is 0), dequantized code * scale + minimum,
    all in float32 like the C++ quantizer;
  * residual: a forward starting at sequence length L sees the first
    q(L) = max(q before, floor((L - R) / G) * G) tokens quantized (whole
    groups that aged past the newest R tokens) and the rest in f16.

This follows the KIVI paper's grouping as edgekv documents it (README "KIVI",
sdk/src/core/kivi.h). HF's QuantizedCache (quanto/HQQ backends) instead
re-quantizes its whole history whenever the residual fills, so it is not
the model here. Attention is float64 over the dequantized values; the C++
test (tests/unit/test_kivi_cache_reference.cpp) drives the library's KvCache
and CPU attention with the same inputs and schedule.

File format (little-endian):
    char[4]  magic "EKVK"
    u32      version (1)
    u32      n_heads, n_kv_heads, head_dim, group, residual, n_tokens
    u32      n_forwards, then u32[n_forwards] forward sizes (sum n_tokens)
    u32      n_cases, then per case u32 nbits
    u32      q_final: tokens quantized after the last forward
    f16      K[n_tokens][n_kv_heads * head_dim], V (same), Q[n_tokens][n_heads * head_dim]
    f32      out_f16[n_tokens][n_heads * head_dim]: attention with no quantization
    per case:
      f32    out[n_tokens][n_heads * head_dim]
      f32    k_deq[q_final][n_kv_heads * head_dim], v_deq (same)

Usage: PYTHONPATH=<numpy> python3 tools/gen_kivi_reference.py [out_dir]
Deterministic: re-running reproduces the committed file byte for byte.
"""
import os
import struct
import sys

import numpy as np

SEED = 20250219
N_HEADS, N_KV_HEADS, HEAD_DIM = 4, 2, 16
GROUP, RESIDUAL = 8, 8
SCHEDULE = [8, 8, 4] + [1] * 12 + [8]  # 40 tokens; the KV cache's max_chunk is 8
BITS = [2, 4, 8]
F32 = np.float32


def make_inputs(rng):
    n = sum(SCHEDULE)
    kvw = N_KV_HEADS * HEAD_DIM
    # Keys: per-channel offsets and a few outlier channels (what per-channel
    # ranges are for), one constant channel (scale 0: every code 0).
    chan_scale = np.ones(kvw, F32)
    chan_scale[[3, 20, 29]] = 8.0
    k = rng.standard_normal((n, kvw)).astype(F32) * chan_scale + np.linspace(-1.5, 1.5, kvw, dtype=F32)
    k[:, 5] = 0.375
    v = rng.standard_normal((n, kvw)).astype(F32)
    v[:, 17] *= 6.0  # an outlier inside one value group
    q = rng.standard_normal((n, N_HEADS * HEAD_DIM)).astype(F32)
    return (x.astype(np.float16) for x in (k, v, q))


def quantize(x, nbits):
    """Quantize -> dequantize along axis 0 of x (a group), per column: the
    range of each column is its own. float32 throughout, as the C++ code."""
    qmax = F32((1 << nbits) - 1)
    lo = x.min(axis=0)
    hi = x.max(axis=0)
    scale = ((hi - lo) / qmax).astype(np.float16).astype(F32)
    mn = lo.astype(np.float16).astype(F32)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(scale > 0, (x - mn) / np.where(scale > 0, scale, F32(1)), F32(0)).astype(F32)
    v = np.clip(v, F32(0), qmax)
    code = np.floor(v + F32(0.5)).astype(F32)
    return (code * scale).astype(F32) + mn


def dequantized(k, v, n_quant, nbits):
    """The first n_quant tokens (whole groups) as the cache holds them."""
    kq = np.empty((n_quant, k.shape[1]), F32)
    vq = np.empty((n_quant, v.shape[1]), F32)
    for g0 in range(0, n_quant, GROUP):
        kq[g0:g0 + GROUP] = quantize(k[g0:g0 + GROUP], nbits)  # per channel over G tokens
    for t in range(n_quant):
        row = v[t].reshape(-1, GROUP).T  # columns = channel groups of one token
        vq[t] = quantize(row, nbits).T.reshape(-1)
    return kq, vq


def attention(q_rows, positions, k, v):
    """Causal GQA attention in float64; key i sits at position i."""
    out = np.zeros((len(positions), N_HEADS * HEAD_DIM))
    per_kv = N_HEADS // N_KV_HEADS
    for r, p in enumerate(positions):
        for h in range(N_HEADS):
            kh = h // per_kv
            qh = q_rows[r, h * HEAD_DIM:(h + 1) * HEAD_DIM].astype(np.float64)
            keys = k[:p + 1, kh * HEAD_DIM:(kh + 1) * HEAD_DIM].astype(np.float64)
            vals = v[:p + 1, kh * HEAD_DIM:(kh + 1) * HEAD_DIM].astype(np.float64)
            s = keys @ qh / np.sqrt(HEAD_DIM)
            w = np.exp(s - s.max())
            out[r, h * HEAD_DIM:(h + 1) * HEAD_DIM] = (w / w.sum()) @ vals
    return out.astype(F32)


def replay(k16, v16, q16, nbits):
    """Runs the schedule; returns every token's output and the final quantized prefix."""
    k, v, q = (x.astype(F32) for x in (k16, v16, q16))
    out = np.zeros((len(k), N_HEADS * HEAD_DIM), F32)
    n_quant, start = 0, 0
    for n in SCHEDULE:
        if nbits:
            n_quant = max(n_quant, max(0, (start - RESIDUAL) // GROUP * GROUP))
        end = start + n
        kq, vq = dequantized(k, v, n_quant, nbits) if n_quant else (k[:0], v[:0])
        keys = np.concatenate([kq, k[n_quant:end]])
        vals = np.concatenate([vq, v[n_quant:end]])
        out[start:end] = attention(q[start:end], range(start, end), keys, vals)
        start = end
    return out, n_quant


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "kivi")
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(SEED)
    k16, v16, q16 = make_inputs(rng)
    exact, _ = replay(k16, v16, q16, 0)
    cases = []
    q_final = None
    for nbits in BITS:
        out, n_quant = replay(k16, v16, q16, nbits)
        q_final = n_quant
        kq, vq = dequantized(k16.astype(F32), v16.astype(F32), n_quant, nbits)
        err = np.abs(out - exact).max() / np.sqrt((exact.astype(np.float64) ** 2).mean())
        print(f"{nbits}-bit: {n_quant} tokens quantized, attention output differs from f16 by {err:.3e} "
              f"(max, relative to the output RMS)")
        cases.append((out, kq, vq))
    path = os.path.join(out_dir, "kivi_reference.bin")
    with open(path, "wb") as f:
        f.write(b"EKVK")
        f.write(struct.pack("<7I", 1, N_HEADS, N_KV_HEADS, HEAD_DIM, GROUP, RESIDUAL, sum(SCHEDULE)))
        f.write(struct.pack(f"<I{len(SCHEDULE)}I", len(SCHEDULE), *SCHEDULE))
        f.write(struct.pack(f"<I{len(BITS)}I", len(BITS), *BITS))
        f.write(struct.pack("<I", q_final))
        for x in (k16, v16, q16):
            f.write(x.astype("<f2").tobytes())
        f.write(exact.astype("<f4").tobytes())
        for out, kq, vq in cases:
            for x in (out, kq, vq):
                f.write(x.astype("<f4").tobytes())
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
