#!/usr/bin/env python3
"""Writes the seed corpora of fuzz_model_load and fuzz_tokenize_roundtrip.

corpus/model_load/: whole models small enough to mutate quickly, that load:
  tiny_llama_e8.gguf   Llama, 1 layer, n_embd 8, f16 weights, the tiny Llama's
                       byte-level BPE (384 tokens, merges, ChatML template)
  tiny_gemma3_e8.gguf  Gemma 3, 6 layers (5 sliding, window 4), f16 weights, the
                       tiny Gemma 3's SentencePiece vocabulary (scores, bytes)
corpus/tokenize_roundtrip/: texts for the tiny Llama's tokenizer (accents,
  CJK, emoji, RTL, ChatML markers, whitespace runs, invalid UTF-8).

Usage (gguf-py and numpy, e.g. from tools/setup_deps.sh's pypi-tools):
  PYTHONPATH=.edgekv-cache/pypi-tools python3 tests/fuzz/gen_model_text_corpus.py
Deterministic; every model stays under 40 KB.
"""
import os

import gguf
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures")
MAX_BYTES = 40 * 1024


def field(reader, key):
    f = reader.fields.get(key)
    return None if f is None else f.contents()


def copy_tokenizer(w, src):
    """The source GGUF's tokenizer.* keys, unchanged."""
    r = gguf.GGUFReader(src)
    w.add_tokenizer_model(field(r, "tokenizer.ggml.model"))
    w.add_tokenizer_pre(field(r, "tokenizer.ggml.pre"))
    w.add_token_list(field(r, "tokenizer.ggml.tokens"))
    w.add_token_types(field(r, "tokenizer.ggml.token_type"))
    if field(r, "tokenizer.ggml.scores") is not None:
        w.add_token_scores(field(r, "tokenizer.ggml.scores"))
    if field(r, "tokenizer.ggml.merges") is not None:
        w.add_token_merges(field(r, "tokenizer.ggml.merges"))
    w.add_bos_token_id(field(r, "tokenizer.ggml.bos_token_id"))
    w.add_eos_token_id(field(r, "tokenizer.ggml.eos_token_id"))
    w.add_unk_token_id(field(r, "tokenizer.ggml.unknown_token_id"))
    w.add_pad_token_id(field(r, "tokenizer.ggml.padding_token_id"))
    w.add_add_bos_token(bool(field(r, "tokenizer.ggml.add_bos_token")))
    w.add_add_space_prefix(bool(field(r, "tokenizer.ggml.add_space_prefix")))
    template = field(r, "tokenizer.chat_template")
    if template:
        w.add_chat_template(template)
    return len(field(r, "tokenizer.ggml.tokens"))


def weights(rng, rows, cols, dtype):
    return (rng.standard_normal((rows, cols)) * 0.3).astype(dtype)


def norm(n):
    return (1.0 + 0.01 * np.arange(n)).astype(np.float32)


def finish(w, path):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    size = os.path.getsize(path)
    if size > MAX_BYTES:
        raise RuntimeError(f"{path}: {size} bytes, over {MAX_BYTES}")
    print(f"{path}: {size} bytes")


def tiny_llama(path):
    e, h, kv, hd, f = 8, 2, 1, 4, 16
    rng = np.random.default_rng(1)
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_name("fuzz seed llama")
    w.add_block_count(1)
    w.add_context_length(32)
    w.add_embedding_length(e)
    w.add_feed_forward_length(f)
    w.add_head_count(h)
    w.add_head_count_kv(kv)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(hd)
    v = copy_tokenizer(w, os.path.join(FIXTURES, "tiny_llama", "tiny_llama_f32.gguf"))
    w.add_vocab_size(v)
    f16 = np.float16
    w.add_tensor("token_embd.weight", weights(rng, v, e, f16))
    w.add_tensor("output_norm.weight", norm(e))
    w.add_tensor("output.weight", weights(rng, v, e, f16))
    w.add_tensor("blk.0.attn_norm.weight", norm(e))
    w.add_tensor("blk.0.attn_q.weight", weights(rng, h * hd, e, f16))
    w.add_tensor("blk.0.attn_k.weight", weights(rng, kv * hd, e, f16))
    w.add_tensor("blk.0.attn_v.weight", weights(rng, kv * hd, e, f16))
    w.add_tensor("blk.0.attn_output.weight", weights(rng, e, h * hd, f16))
    w.add_tensor("blk.0.ffn_norm.weight", norm(e))
    w.add_tensor("blk.0.ffn_gate.weight", weights(rng, f, e, f16))
    w.add_tensor("blk.0.ffn_up.weight", weights(rng, f, e, f16))
    w.add_tensor("blk.0.ffn_down.weight", weights(rng, e, f, f16))
    finish(w, path)


def tiny_gemma3(path):
    e, h, kv, hd, f, n_layers = 8, 2, 1, 4, 16, 6
    rng = np.random.default_rng(2)
    w = gguf.GGUFWriter(path, arch="gemma3")
    w.add_name("fuzz seed gemma3")
    w.add_context_length(32)
    w.add_embedding_length(e)
    w.add_block_count(n_layers)
    w.add_feed_forward_length(f)
    w.add_head_count(h)
    w.add_head_count_kv(kv)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(1000000.0)
    w.add_sliding_window(4)
    v = copy_tokenizer(w, os.path.join(FIXTURES, "tiny_gemma3", "tiny_gemma3_f32.gguf"))
    f16 = np.float16  # 2-D weights (norms stay f32)
    w.add_tensor("token_embd.weight", weights(rng, v, e, f16))  # tied: no output.weight
    w.add_tensor("output_norm.weight", norm(e))
    for i in range(n_layers):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", norm(e))
        w.add_tensor(p + "attn_q.weight", weights(rng, h * hd, e, f16))
        w.add_tensor(p + "attn_k.weight", weights(rng, kv * hd, e, f16))
        w.add_tensor(p + "attn_v.weight", weights(rng, kv * hd, e, f16))
        w.add_tensor(p + "attn_output.weight", weights(rng, e, h * hd, f16))
        w.add_tensor(p + "post_attention_norm.weight", norm(e))
        w.add_tensor(p + "ffn_norm.weight", norm(e))
        w.add_tensor(p + "ffn_gate.weight", weights(rng, f, e, f16))
        w.add_tensor(p + "ffn_up.weight", weights(rng, f, e, f16))
        w.add_tensor(p + "ffn_down.weight", weights(rng, e, f, f16))
        w.add_tensor(p + "post_ffw_norm.weight", norm(e))
        w.add_tensor(p + "attn_q_norm.weight", norm(hd))
        w.add_tensor(p + "attn_k_norm.weight", norm(hd))
    finish(w, path)


TEXTS = {
    "ascii.txt": b"The GNU General Public License is a free, copyleft license.",
    "accents.txt": "caf\u00e9 na\u00efve e\u0301 \u00c5ngstr\u00f6m".encode(),
    "cjk_emoji.txt": "\u65e5\u672c\u8a9e \u4e2d\u6587 \ud55c\uad6d\uc5b4 \U0001F600 \U0001F469\u200d\U0001F467".encode(),
    "rtl.txt": "\u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd \u200f(1)\u200e".encode(),
    "chatml.txt": b"<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "whitespace.txt": b"  two\t\ttabs\n\n\nthree newlines   trailing  ",
    "invalid_utf8.txt": b"ok \x80\xc3 x \xe4\xb8 \xff\xfe \xed\xa0\x80 \xf0\x9f\x98",
    "digits_punct.txt": b"1234567890 3.14159 ... !!! ??? (a) [b] {c} 'd' \"e\"",
}


def main():
    model_dir = os.path.join(HERE, "corpus", "model_load")
    text_dir = os.path.join(HERE, "corpus", "tokenize_roundtrip")
    os.makedirs(model_dir, exist_ok=True)
    os.makedirs(text_dir, exist_ok=True)
    tiny_llama(os.path.join(model_dir, "tiny_llama_e8.gguf"))
    tiny_gemma3(os.path.join(model_dir, "tiny_gemma3_e8.gguf"))
    for name, data in TEXTS.items():
        with open(os.path.join(text_dir, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
