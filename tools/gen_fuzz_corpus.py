#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/*).

Small valid inputs that reach deep into each parser, so that mutations
start from files the parser accepts:
  gguf/         GGUF v3 (and one patched to v2) written with gguf-py
  safetensors/  safetensors files written with the safetensors package
  json/         config.json / tokenizer.json / header-like documents

Usage: /work/venv-tools/bin/python tools/gen_fuzz_corpus.py [out_dir]
Every file stays under 4 KB. Output is deterministic.
"""
import json
import os
import sys

import numpy as np
import gguf
from safetensors.numpy import save as save_safetensors

MAX_BYTES = 4096


def write_gguf(path, build, alignment=None, version=None):
    w = gguf.GGUFWriter(path, "llama")
    if alignment is not None:
        w.add_custom_alignment(alignment)
    build(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if version is not None:  # v2 and v3 share the layout; only the number differs
        with open(path, "r+b") as f:
            f.seek(4)
            f.write(int(version).to_bytes(4, "little"))


def ramp(n, scale=0.01):
    return (np.arange(n, dtype=np.float32) * scale - 0.3).astype(np.float32)


def minimal(w):
    w.add_block_count(1)
    w.add_tensor("output_norm.weight", ramp(4))


def llama_like(w):
    w.add_name("fuzz-seed")
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(32)
    w.add_feed_forward_length(64)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(["<s>", "</s>", "a", "b", "\u0120the"])
    w.add_token_types([3, 3, 1, 1, 1])
    w.add_token_merges(["a b", "\u0120 t"])
    w.add_bos_token_id(0)
    w.add_eos_token_id(1)
    w.add_tensor("output_norm.weight", ramp(32))
    w.add_tensor("blk.0.attn_norm.weight", ramp(32, 0.02))
    w.add_tensor("blk.0.attn_v.weight", ramp(32 * 2).reshape(2, 32).astype(np.float16))
    q8 = gguf.quants.quantize(ramp(32 * 2).reshape(2, 32), gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("blk.0.attn_q.weight", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    q41 = gguf.quants.quantize(ramp(32 * 2, 0.05).reshape(2, 32), gguf.GGMLQuantizationType.Q4_1)
    w.add_tensor("blk.0.ffn_up.weight", q41, raw_dtype=gguf.GGMLQuantizationType.Q4_1)


def all_value_types(w):
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -5)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4000000000)
    w.add_int32("t.i32", -123456)
    w.add_uint64("t.u64", 1 << 40)
    w.add_int64("t.i64", -(1 << 50))
    w.add_float32("t.f32", 0.5)
    w.add_float64("t.f64", 2.5)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "h\u00e9llo")
    w.add_array("t.arr_i32", [1, -2, 3])
    w.add_array("t.arr_f32", [0.25, -1.5])
    w.add_array("t.arr_str", ["x", "", "yz"])
    w.add_array("t.arr_bool", [True, False])


def kquants(w):
    w.add_block_count(1)
    # gguf-py cannot quantize K-quants; any bytes make valid blocks for a parser.
    for name, qtype in (("blk.0.ffn_down.weight", gguf.GGMLQuantizationType.Q4_K),
                        ("blk.0.ffn_gate.weight", gguf.GGMLQuantizationType.Q6_K)):
        block_bytes = gguf.GGML_QUANT_SIZES[qtype][1]
        raw = (np.arange(block_bytes, dtype=np.uint32) * 37 % 251).astype(np.uint8).reshape(1, block_bytes)
        w.add_tensor(name, raw, raw_dtype=qtype)
    w.add_tensor("token_embd.weight", ramp(8 * 2).reshape(2, 8).astype(np.float32))


def gen_gguf(out):
    os.makedirs(out, exist_ok=True)
    write_gguf(f"{out}/minimal_v3.gguf", minimal)
    write_gguf(f"{out}/minimal_v2.gguf", minimal, version=2)
    write_gguf(f"{out}/llama_like.gguf", llama_like)
    write_gguf(f"{out}/align64.gguf", minimal, alignment=64)
    write_gguf(f"{out}/all_value_types.gguf", all_value_types)
    write_gguf(f"{out}/kquants.gguf", kquants)


def gen_safetensors(out):
    os.makedirs(out, exist_ok=True)
    tensors = {
        "model.embed_tokens.weight": ramp(6 * 8).reshape(6, 8),
        "model.layers.0.self_attn.q_proj.weight": ramp(8 * 8).reshape(8, 8).astype(np.float16),
        "model.norm.weight": ramp(8),
        "model.rotary_emb.inv_freq": np.arange(2, dtype=np.int64),
    }
    with open(f"{out}/small.safetensors", "wb") as f:
        f.write(save_safetensors(tensors, metadata={"format": "pt"}))
    with open(f"{out}/empty.safetensors", "wb") as f:
        f.write(save_safetensors({}))


def gen_json(out):
    os.makedirs(out, exist_ok=True)
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
        "num_hidden_layers": 2, "rms_norm_eps": 1e-05, "eos_token_id": [1, 2], "pad_token_id": None,
        "rope_parameters": {"rope_theta": 10000.0, "rope_type": "llama3", "factor": 8.0},
        "tie_word_embeddings": False,
    }
    docs = {
        "config.json": json.dumps(config, indent=2),
        "tokenizer_like.json": json.dumps({
            "version": "1.0", "added_tokens": [{"id": 0, "content": "<|endoftext|>", "special": True}],
            "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "\u0120the": 2}, "merges": [["a", "b"]]},
        }, ensure_ascii=False),
        "escapes.json": '["\\u00e9\\ud83d\\ude00\\n\\t\\"\\\\\\/", "\u00e9\U0001F600", -0.0, 1e-400, 12.5e+3]',
        "nested.json": "[" * 40 + "{}" + "]" * 40,
        "header.json": '{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}',
    }
    for name, text in docs.items():
        with open(f"{out}/{name}", "w", encoding="utf-8") as f:
            f.write(text)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fuzz", "corpus")
    gen_gguf(os.path.join(root, "gguf"))
    gen_safetensors(os.path.join(root, "safetensors"))
    gen_json(os.path.join(root, "json"))
    for sub in ("gguf", "safetensors", "json"):
        for name in sorted(os.listdir(os.path.join(root, sub))):
            size = os.path.getsize(os.path.join(root, sub, name))
            assert size < MAX_BYTES, f"{sub}/{name} is {size} bytes"
            print(f"{sub}/{name}: {size} bytes")


if __name__ == "__main__":
    main()
