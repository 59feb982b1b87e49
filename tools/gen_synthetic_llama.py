#!/usr/bin/env python3
"""Writes a Llama-architecture GGUF of a named shape with random weights.

For speed benchmarks where a real model cannot travel (the device tool carries
64 MiB): the file has Llama 3.x 1B/3B/8B shapes, llama.cpp's tensor names and
metadata, and random but valid quantized blocks (finite, small scales), so
edgekv and llama.cpp both load it and read the same bytes per token as the
real model of that shape and type.

  q4_0    every matrix Q4_0 (token_embd too), output Q6_K (as llama-quantize)
  q4_k_m  Q4_K, with Q6_K for output and for attn_v / ffn_down on the layers
          llama.cpp's Q4_K_M mix gives more bits (first and last eighth,
          every third between)

Norms are f32. The vocabulary is SentencePiece-style: <unk>, <s>, </s>, the
256 byte tokens, then filler pieces. Only numpy is needed (the device's
python3 has it); tensors are written in chunks, never whole in memory.

  python3 tools/gen_synthetic_llama.py --shape 1b --type q4_k_m --out /tmp/1b.gguf
"""
from __future__ import annotations

import argparse
import struct
import sys
import time

import numpy as np

SHAPES = {
    # hidden, layers, heads, kv heads, ff, vocab, context
    "tiny": (256, 2, 4, 2, 512, 512, 16384),
    "small": (1024, 8, 8, 2, 2816, 32000, 131072),  # ~155M parameters
    "1b": (2048, 16, 32, 8, 8192, 128256, 131072),
    "3b": (3072, 28, 24, 8, 8192, 128256, 131072),
    "8b": (4096, 32, 32, 8, 14336, 128256, 131072),
}
ROPE_THETA = 500000.0
RMS_EPS = 1e-5
ALIGN = 32

# ggml types: id, elements per block, bytes per block.
F32, Q4_0, Q4_K, Q6_K = "f32", "q4_0", "q4_k", "q6_k"
GGML = {F32: (0, 1, 4), Q4_0: (2, 32, 18), Q4_K: (12, 256, 144), Q6_K: (14, 256, 210)}
FILE_TYPE = {"q4_0": 2, "q4_k_m": 15}  # LLAMA_FTYPE_MOSTLY_Q4_0, _Q4_K_M

# GGUF metadata value types.
T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR = 4, 5, 6, 7, 8, 9
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_BYTE = 1, 2, 3, 6


# ----------------------------------------------------------------------------
# Metadata
# ----------------------------------------------------------------------------


def _str(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _kv(key: str, vtype: int, value) -> bytes:
    head = _str(key) + struct.pack("<I", vtype)
    if vtype == T_U32:
        return head + struct.pack("<I", value)
    if vtype == T_I32:
        return head + struct.pack("<i", value)
    if vtype == T_F32:
        return head + struct.pack("<f", value)
    if vtype == T_BOOL:
        return head + struct.pack("<B", 1 if value else 0)
    if vtype == T_STR:
        return head + _str(value)
    raise ValueError(vtype)


def _array(key: str, elem_type: int, values) -> bytes:
    head = _str(key) + struct.pack("<IIQ", T_ARR, elem_type, len(values))
    if elem_type == T_STR:
        return head + b"".join(_str(v) for v in values)
    fmt = {T_I32: "<i4", T_F32: "<f4"}[elem_type]
    return head + np.asarray(values, dtype=fmt).tobytes()


def vocabulary(n_vocab: int):
    """(tokens, types, scores): <unk> <s> </s>, byte tokens, filler pieces."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_CONTROL] + [TOKEN_BYTE] * 256
    n_fill = n_vocab - len(tokens)
    if n_fill < 0:
        raise ValueError(f"vocab {n_vocab} is smaller than the {len(tokens)} fixed tokens")
    tokens += [f"\u2581t{i}" for i in range(n_fill)]
    types += [TOKEN_NORMAL] * n_fill
    scores = [0.0] * 259 + [-float(i) for i in range(n_fill)]
    return tokens, types, scores


def metadata(shape: str, qtype: str) -> list[bytes]:
    hidden, layers, heads, kv_heads, ff, vocab, ctx = SHAPES[shape]
    tokens, types, scores = vocabulary(vocab)
    p = "llama."
    return [
        _kv("general.architecture", T_STR, "llama"),
        _kv("general.name", T_STR, f"synthetic llama {shape} {qtype}"),
        _kv("general.file_type", T_U32, FILE_TYPE[qtype]),
        _kv("general.quantization_version", T_U32, 2),
        _kv("general.alignment", T_U32, ALIGN),
        _kv(p + "block_count", T_U32, layers),
        _kv(p + "context_length", T_U32, ctx),
        _kv(p + "embedding_length", T_U32, hidden),
        _kv(p + "feed_forward_length", T_U32, ff),
        _kv(p + "attention.head_count", T_U32, heads),
        _kv(p + "attention.head_count_kv", T_U32, kv_heads),
        _kv(p + "rope.freq_base", T_F32, ROPE_THETA),
        _kv(p + "rope.dimension_count", T_U32, hidden // heads),
        _kv(p + "attention.layer_norm_rms_epsilon", T_F32, RMS_EPS),
        _kv(p + "vocab_size", T_U32, vocab),
        _kv("tokenizer.ggml.model", T_STR, "llama"),
        _array("tokenizer.ggml.tokens", T_STR, tokens),
        _array("tokenizer.ggml.scores", T_F32, scores),
        _array("tokenizer.ggml.token_type", T_I32, types),
        _kv("tokenizer.ggml.unknown_token_id", T_U32, 0),
        _kv("tokenizer.ggml.bos_token_id", T_U32, 1),
        _kv("tokenizer.ggml.eos_token_id", T_U32, 2),
        _kv("tokenizer.ggml.add_bos_token", T_BOOL, True),
        _kv("tokenizer.ggml.add_eos_token", T_BOOL, False),
    ]


# ----------------------------------------------------------------------------
# Tensors
# ----------------------------------------------------------------------------


def more_bits(layer: int, n_layers: int) -> bool:
    """llama.cpp's use_more_bits: the layers Q4_K_M gives Q6_K attn_v / ffn_down."""
    return layer < n_layers // 8 or layer >= 7 * n_layers // 8 or (layer - n_layers // 8) % 3 == 2


def tensor_plan(shape: str, qtype: str):
    """[(name, [ne0, ne1] (ne0 = the row length), ggml type, weight std)]."""
    hidden, layers, heads, kv_heads, ff, vocab, _ = SHAPES[shape]
    kv_dim = hidden // heads * kv_heads
    base = Q4_0 if qtype == "q4_0" else Q4_K

    def mat(name, n_in, n_out, t=base):
        # std 1/sqrt(n_in): activations keep their scale through each matmul.
        return (name, [n_in, n_out], t, 1.0 / np.sqrt(n_in))

    plan = [("token_embd.weight", [hidden, vocab], base, 0.02)]
    for i in range(layers):
        wide = Q6_K if qtype == "q4_k_m" and more_bits(i, layers) else base
        b = f"blk.{i}."
        plan += [
            (b + "attn_norm.weight", [hidden], F32, 0.0),
            mat(b + "attn_q.weight", hidden, hidden),
            mat(b + "attn_k.weight", hidden, kv_dim),
            mat(b + "attn_v.weight", hidden, kv_dim, wide),
            mat(b + "attn_output.weight", hidden, hidden),
            (b + "ffn_norm.weight", [hidden], F32, 0.0),
            mat(b + "ffn_gate.weight", hidden, ff),
            mat(b + "ffn_up.weight", hidden, ff),
            mat(b + "ffn_down.weight", ff, hidden, wide),
        ]
    plan += [("output_norm.weight", [hidden], F32, 0.0), mat("output.weight", hidden, vocab, Q6_K)]
    return plan


def nbytes(dims, t) -> int:
    _, per_block, block_bytes = GGML[t]
    n = int(np.prod(dims))
    if dims[0] % per_block:
        raise ValueError(f"row length {dims[0]} is not a multiple of {per_block} ({t})")
    return n // per_block * block_bytes


def _f16_bytes(values: np.ndarray) -> np.ndarray:
    return values.astype("<f2").view(np.uint8).reshape(-1, 2)


def random_blocks(rng: np.random.Generator, t: str, nb: int, std: float) -> np.ndarray:
    """nb random blocks of type t, as uint8 [nb, block_bytes]; weights ~ std."""
    _, _, block_bytes = GGML[t]
    words = (nb * block_bytes + 7) // 8
    raw = rng.bit_generator.random_raw(words).view(np.uint8)[: nb * block_bytes].reshape(nb, block_bytes)
    jitter = rng.uniform(0.75, 1.25, nb).astype(np.float32)  # per-block scale spread
    if t == Q4_0:
        # d * (q - 8), q uniform in 0..15: std(q - 8) = 4.61. d's random sign
        # (llama.cpp's quantizer gives either) cancels the mean of q - 8, -0.5.
        sign = np.where(rng.random(nb) < 0.5, -1.0, 1.0).astype(np.float32)
        raw[:, 0:2] = _f16_bytes(std / 4.61 * jitter * sign)
    elif t == Q4_K:
        # Eight 32-weight groups: d * sc * q - dmin * m, sc and m 6-bit. m is
        # chosen near sc * 7.5 * d / dmin so each group is roughly centred.
        sc = rng.integers(8, 34, (nb, 8), dtype=np.int32)
        m = np.clip(np.rint(sc * 7.5 / 4.0 + rng.normal(0, 2, (nb, 8))), 0, 63).astype(np.int32)
        d = std / 100.0 * jitter  # std(sc * q) is about 100
        raw[:, 0:2] = _f16_bytes(d)
        raw[:, 2:4] = _f16_bytes(d * 4.0)
        q = np.empty((nb, 12), dtype=np.int32)
        q[:, 0:4] = sc[:, 0:4] | ((sc[:, 4:8] >> 4) << 6)
        q[:, 4:8] = m[:, 0:4] | ((m[:, 4:8] >> 4) << 6)
        q[:, 8:12] = (sc[:, 4:8] & 0xF) | ((m[:, 4:8] & 0xF) << 4)
        raw[:, 4:16] = q.astype(np.uint8)
    elif t == Q6_K:
        # ql[128] qh[64] scales[16] (int8) d: d * scale * (q - 32), q 6-bit.
        raw[:, 192:208] = rng.integers(-16, 16, (nb, 16), dtype=np.int8).view(np.uint8)
        raw[:, 208:210] = _f16_bytes(std / 171.0 * jitter)  # std(scale * (q - 32)) ~ 171
    else:
        raise ValueError(t)
    return raw


def write_gguf(path: str, shape: str, qtype: str, seed: int, chunk_bytes: int = 64 << 20) -> int:
    plan = tensor_plan(shape, qtype)
    rng = np.random.default_rng(seed)
    infos, offset = [], 0
    for name, dims, t, _ in plan:
        infos.append(_str(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims) +
                     struct.pack("<IQ", GGML[t][0], offset))
        offset += (nbytes(dims, t) + ALIGN - 1) // ALIGN * ALIGN
    meta = metadata(shape, qtype)
    head = b"GGUF" + struct.pack("<IQQ", 3, len(plan), len(meta)) + b"".join(meta) + b"".join(infos)
    head += b"\0" * (-len(head) % ALIGN)
    with open(path, "wb") as f:
        f.write(head)
        for name, dims, t, std in plan:
            size = nbytes(dims, t)
            if t == F32:
                f.write(rng.uniform(0.9, 1.1, dims[0]).astype("<f4").tobytes())
            else:
                block_bytes = GGML[t][2]
                total = size // block_bytes
                step = max(1, chunk_bytes // block_bytes)
                for first in range(0, total, step):
                    f.write(random_blocks(rng, t, min(step, total - first), std).tobytes())
            f.write(b"\0" * (-size % ALIGN))
    return len(head) + offset


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", required=True, choices=sorted(SHAPES))
    ap.add_argument("--type", required=True, choices=sorted(FILE_TYPE))
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    t0 = time.time()
    n = write_gguf(a.out, a.shape, a.type, a.seed)
    print(f"{a.out}: {a.shape} {a.type}, {n / 1e9:.3f} GB in {time.time() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
