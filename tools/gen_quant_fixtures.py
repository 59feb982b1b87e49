#!/usr/bin/env python3
"""Writes the quantization fixtures under tests/fixtures/quant/.

gguf-py (the GGUF reference implementation in Python) is the oracle: for each
format we store raw block bytes and the f32 values gguf-py dequantizes them
to. For the formats gguf-py can quantize, the source floats are stored too, so
the C++ reference quantizers are checked byte for byte. For the K-quants
(gguf-py only dequantizes them) the blocks are random but valid bytes.

File format (little-endian), one file per type, <type name>.bin:
    char[4]  magic "EKVQ"
    u32      version (1)
    u32      GGUF type id
    u32      n      element count
    u32      nbytes block bytes
    u32      flags  bit 0: source floats present
    f32[n]   source floats (if flag bit 0)
    u8[nbytes] block bytes
    f32[n]   expected dequantized values

Usage: /work/venv-tools/bin/python tools/gen_quant_fixtures.py [out_dir]
"""
import os
import struct
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

SEED = 20240611
QUANTIZABLE = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]
K_QUANTS = [T.Q4_K, T.Q5_K, T.Q6_K]


def write_fixture(path, qtype, src, raw, expected):
    raw = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1)
    expected = np.ascontiguousarray(expected, dtype=np.float32).reshape(-1)
    flags = 1 if src is not None else 0
    with open(path, "wb") as f:
        f.write(b"EKVQ")
        f.write(struct.pack("<5I", 1, int(qtype), expected.size, raw.size, flags))
        if src is not None:
            f.write(np.ascontiguousarray(src, dtype="<f4").tobytes())
        f.write(raw.tobytes())
        f.write(expected.astype("<f4").tobytes())


def source_floats(rng, n):
    """Random values with a few awkward blocks: constant, zero, one outlier."""
    x = rng.standard_normal(n).astype(np.float32) * rng.uniform(0.01, 2.0)
    x[32:64] = 0.0            # all-zero block: d == 0
    x[64:96] = 0.75           # constant block
    x[100] = 40.0             # outlier dominates its block's scale
    x[130] = -40.0
    return x


def half_bits(rng, n, lo, hi, signed=False):
    v = rng.uniform(lo, hi, n).astype(np.float32)
    if signed:
        v *= rng.choice([-1.0, 1.0], n).astype(np.float32)
    return v.astype(np.float16).view(np.uint8).reshape(n, 2)


def random_k_blocks(rng, qtype, n_blocks):
    """Random block bytes with finite, sensibly sized half scales."""
    _, type_size = quants.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, (n_blocks, type_size), dtype=np.uint8)
    if qtype in (T.Q4_K, T.Q5_K):
        raw[:, 0:2] = half_bits(rng, n_blocks, 1e-4, 5e-2, signed=True)   # d
        raw[:, 2:4] = half_bits(rng, n_blocks, 1e-4, 5e-2, signed=True)   # dmin
    else:  # Q6_K: d is the last field
        raw[:, type_size - 2:type_size] = half_bits(rng, n_blocks, 1e-4, 5e-2, signed=True)
    return raw


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "quant")
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(SEED)

    # Plain types: every special value class (subnormals, inf, nan, -0).
    f32 = rng.standard_normal(256).astype(np.float32)
    write_fixture(os.path.join(out_dir, "f32.bin"), T.F32, None, f32.view(np.uint8), f32)

    f16_bits = rng.integers(0, 1 << 16, 256, dtype=np.uint16)
    f16_bits[:8] = [0x0000, 0x8000, 0x0001, 0x83ff, 0x7c00, 0xfc00, 0x7e01, 0x3c00]
    f16_vals = f16_bits.view(np.float16).astype(np.float32)
    write_fixture(os.path.join(out_dir, "f16.bin"), T.F16, None, f16_bits.view(np.uint8), f16_vals)

    bf16_bits = rng.integers(0, 1 << 16, 256, dtype=np.uint16)
    bf16_bits[:8] = [0x0000, 0x8000, 0x0001, 0x807f, 0x7f80, 0xff80, 0x7fc1, 0x3f80]
    bf16_raw = bf16_bits.view(np.uint8)
    bf16_vals = quants.dequantize(bf16_raw, T.BF16).reshape(-1)
    write_fixture(os.path.join(out_dir, "bf16.bin"), T.BF16, None, bf16_raw, bf16_vals)

    for qtype in QUANTIZABLE:
        src = source_floats(rng, 256)
        raw = quants.quantize(src.reshape(1, -1), qtype)
        expected = quants.dequantize(raw, qtype).reshape(-1)
        write_fixture(os.path.join(out_dir, qtype.name.lower() + ".bin"), qtype, src, raw, expected)

    for qtype in K_QUANTS:
        raw = random_k_blocks(rng, qtype, 4)
        expected = quants.dequantize(raw.reshape(1, -1), qtype).reshape(-1)
        write_fixture(os.path.join(out_dir, qtype.name.lower() + ".bin"), qtype, None, raw, expected)

    print("wrote fixtures to", os.path.normpath(out_dir))


if __name__ == "__main__":
    main()
