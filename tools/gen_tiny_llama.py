#!/usr/bin/env python3
"""Generates the tiny random Llama fixtures in tests/fixtures/tiny_llama/.

Outputs (all deterministic for a given seed and pinned package versions):
  hf/                      HF directory: config.json, model.safetensors (f32),
                           tokenizer.json, tokenizer_config.json (ChatML template)
  tiny_llama_f32.gguf      the same weights as GGUF (llama.cpp conventions)
  tiny_llama_f16.gguf      2-D weights F16, norms F32
  tiny_llama_q8_0.gguf     2-D weights Q8_0, norms F32
  ref_f32 / ref_f16 / ref_q8_0 (.json + .f32)
                           HF transformers logits and greedy tokens for each
                           variant, computed with the weights each file holds.

Usage: /work/venv-tools/bin/python tools/gen_tiny_llama.py [--out DIR] [--seed N]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_io  # noqa: E402

CORPUS = "/usr/share/common-licenses/GPL-3"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2
BOS, EOS, PAD = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
VOCAB_SIZE = 384
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
ARCH = dict(
    num_hidden_layers=2,
    hidden_size=64,
    intermediate_size=160,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=256,
    rope_theta=10000.0,
    rms_norm_eps=1e-5,
)
PROMPT_TEXT = "The GNU General Public License is a free, copyleft license"
N_PROMPT = 12
N_NEW = 16
CHUNK_SPLIT = 7  # the chunked-prefill check feeds 7 then 5 prompt tokens
# Standard deviations of the random init: large enough that logits are far
# from uniform (greedy decoding then produces varied tokens, not a constant).
STD_EMBED, STD_LINEAR, STD_NORM = 1.0, 0.2, 0.1


# ----------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------


def train_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    with open(CORPUS, encoding="utf-8") as f:
        lines = f.read().splitlines(keepends=True)
    tok.train_from_iterator(lines, trainer)
    vocab = tok.get_vocab()
    if sorted(vocab.values()) != list(range(VOCAB_SIZE)):
        raise RuntimeError(f"tokenizer vocab is not 0..{VOCAB_SIZE - 1}")
    for i, s in enumerate(SPECIAL_TOKENS):
        if vocab[s] != i:
            raise RuntimeError(f"special token {s} has id {vocab[s]}, expected {i}")
    return tok


def save_tokenizer(tok, hf_dir: str) -> None:
    tok.save(os.path.join(hf_dir, "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "unk_token": PAD,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": ARCH["max_position_embeddings"],
        "chat_template": CHATML_TEMPLATE,
    }
    with open(os.path.join(hf_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
        f.write("\n")


def tokenizer_tables(tok):
    """(tokens by id, token types, merges as 'a b' strings) for GGUF."""
    import gguf

    vocab = tok.get_vocab()
    tokens = [None] * len(vocab)
    for s, i in vocab.items():
        tokens[i] = s
    types = [
        int(gguf.TokenType.CONTROL if s in SPECIAL_TOKENS else gguf.TokenType.NORMAL) for s in tokens
    ]
    merges = json.loads(tok.to_str())["model"]["merges"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
    return tokens, types, merges


# ----------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------


def hf_config():
    from transformers import LlamaConfig

    a = ARCH
    return LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=a["hidden_size"],
        intermediate_size=a["intermediate_size"],
        num_hidden_layers=a["num_hidden_layers"],
        num_attention_heads=a["num_attention_heads"],
        num_key_value_heads=a["num_key_value_heads"],
        head_dim=a["head_dim"],
        max_position_embeddings=a["max_position_embeddings"],
        rope_parameters={"rope_type": "default", "rope_theta": a["rope_theta"]},
        rms_norm_eps=a["rms_norm_eps"],
        tie_word_embeddings=False,
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        dtype="float32",
    )


def new_model(state: dict[str, np.ndarray] | None = None):
    import torch
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(hf_config()).to(torch.float32)
    model.config._attn_implementation = "eager"
    if state is not None:
        sd = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in state.items()}
        missing, unexpected = model.load_state_dict(sd, strict=False)
        missing = [m for m in missing if "rotary_emb" not in m]
        if missing or unexpected:
            raise RuntimeError(f"state dict mismatch: missing={missing} unexpected={unexpected}")
    model.eval()
    return model


def random_state(model, seed: int) -> dict[str, np.ndarray]:
    """Random weights from NumPy's PCG64 (stable across library versions)."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, p in sorted(model.state_dict().items()):
        shape = tuple(p.shape)
        if name.endswith("norm.weight"):  # not all-ones, so a skipped norm weight shows
            w = 1.0 + STD_NORM * rng.standard_normal(shape)
        elif name == "model.embed_tokens.weight":
            w = STD_EMBED * rng.standard_normal(shape)
        else:
            w = STD_LINEAR * rng.standard_normal(shape)
        state[name] = w.astype(np.float32)
    return state


def gguf_tensor_plan(state: dict[str, np.ndarray]):
    """(gguf name, HF name, permute heads or 0) for every tensor."""
    n_head, n_head_kv = ARCH["num_attention_heads"], ARCH["num_key_value_heads"]
    plan = [
        ("token_embd.weight", "model.embed_tokens.weight", 0),
        ("output_norm.weight", "model.norm.weight", 0),
        ("output.weight", "lm_head.weight", 0),
    ]
    per_layer = [
        ("attn_norm", "input_layernorm", 0),
        ("attn_q", "self_attn.q_proj", n_head),
        ("attn_k", "self_attn.k_proj", n_head_kv),
        ("attn_v", "self_attn.v_proj", 0),
        ("attn_output", "self_attn.o_proj", 0),
        ("ffn_norm", "post_attention_layernorm", 0),
        ("ffn_gate", "mlp.gate_proj", 0),
        ("ffn_up", "mlp.up_proj", 0),
        ("ffn_down", "mlp.down_proj", 0),
    ]
    for il in range(ARCH["num_hidden_layers"]):
        for g, h, perm in per_layer:
            plan.append((f"blk.{il}.{g}.weight", f"model.layers.{il}.{h}.weight", perm))
    if sorted(h for _, h, _ in plan) != sorted(state):
        raise RuntimeError("GGUF tensor plan does not cover the HF state dict exactly")
    return plan


# ----------------------------------------------------------------------------
# GGUF writing and reading back
# ----------------------------------------------------------------------------


def write_gguf(path: str, variant: str, state, tok) -> None:
    import gguf

    qtype = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
             "q8_0": gguf.GGMLQuantizationType.Q8_0}[variant]
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[variant]
    a = ARCH
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_name(f"edgekv tiny random llama ({variant})")
    w.add_file_type(int(file_type))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_block_count(a["num_hidden_layers"])
    w.add_context_length(a["max_position_embeddings"])
    w.add_embedding_length(a["hidden_size"])
    w.add_feed_forward_length(a["intermediate_size"])
    w.add_head_count(a["num_attention_heads"])
    w.add_head_count_kv(a["num_key_value_heads"])
    w.add_rope_freq_base(a["rope_theta"])
    w.add_layer_norm_rms_eps(a["rms_norm_eps"])
    w.add_rope_dimension_count(a["head_dim"])
    w.add_vocab_size(VOCAB_SIZE)
    tokens, types, merges = tokenizer_tables(tok)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(SPECIAL_TOKENS.index(BOS))
    w.add_eos_token_id(SPECIAL_TOKENS.index(EOS))
    w.add_unk_token_id(SPECIAL_TOKENS.index(PAD))
    w.add_pad_token_id(SPECIAL_TOKENS.index(PAD))
    w.add_add_bos_token(False)
    w.add_add_space_prefix(False)
    w.add_chat_template(CHATML_TEMPLATE)

    for gname, hname, heads in gguf_tensor_plan(state):
        t = state[hname]
        if heads:
            t = fixture_io.permute_qk_for_gguf(t, heads)
        t = np.ascontiguousarray(t, dtype=np.float32)
        if t.ndim == 1 or qtype == gguf.GGMLQuantizationType.F32:
            w.add_tensor(gname, t)
        elif qtype == gguf.GGMLQuantizationType.F16:
            w.add_tensor(gname, t.astype(np.float16))
        else:
            w.add_tensor(gname, gguf.quants.quantize(t, qtype), raw_dtype=qtype)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def state_from_gguf(path: str, state_like) -> dict[str, np.ndarray]:
    """The weights a GGUF file holds, dequantized and back in HF layout."""
    import gguf

    reader = gguf.GGUFReader(path)
    by_name = {t.name: t for t in reader.tensors}
    out = {}
    for gname, hname, heads in gguf_tensor_plan(state_like):
        t = by_name[gname]
        arr = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
        arr = np.asarray(arr, dtype=np.float32).reshape(state_like[hname].shape)
        if heads:
            arr = fixture_io.unpermute_qk_from_gguf(arr, heads)
        out[hname] = arr
    return out


# ----------------------------------------------------------------------------
# References
# ----------------------------------------------------------------------------


def chunked_prefill_diff(model, input_ids, full_logits) -> float:
    """Max |diff| between one-pass prompt logits and a 7 + 5 chunked prefill."""
    import torch
    from transformers import DynamicCache

    ids = torch.tensor([input_ids], dtype=torch.long)
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        first = model(ids[:, :CHUNK_SPLIT], past_key_values=cache, use_cache=True,
                      cache_position=torch.arange(0, CHUNK_SPLIT)).logits[0]
        second = model(ids[:, CHUNK_SPLIT:], past_key_values=cache, use_cache=True,
                       cache_position=torch.arange(CHUNK_SPLIT, len(input_ids))).logits[0]
    chunked = torch.cat([first, second]).numpy()
    return float(np.abs(chunked - full_logits).max())


def write_reference(out_dir, variant, model, input_ids, prompt_text, gguf_name, extra_note):
    ref = fixture_io.hf_greedy_reference(model, input_ids, N_NEW)
    n_prompt = len(input_ids)
    step0_diff = float(np.abs(ref["step_logits"][0] - ref["prompt_logits"][-1]).max())
    if step0_diff > 1e-4:
        raise RuntimeError(f"{variant}: cached and uncached last-prompt logits differ by {step0_diff}")
    logits = np.concatenate([ref["prompt_logits"], ref["step_logits"][1:]])
    positions = list(range(n_prompt + N_NEW - 1))
    chunk_diff = chunked_prefill_diff(model, input_ids, ref["prompt_logits"])
    if chunk_diff > 1e-4:
        raise RuntimeError(f"{variant}: chunked prefill differs by {chunk_diff}")
    files = [gguf_name] + (["hf/ (config.json + model.safetensors)"] if variant == "f32" else [])
    notes = (
        f"HF transformers LlamaForCausalLM, float32, eager attention, CPU. {extra_note} "
        f"Sequence = input_ids ({n_prompt} prompt tokens) followed by greedy_tokens; the row for "
        f"position p holds the logits after consuming sequence[0..p] (they predict sequence[p+1]). "
        f"Positions 0..{n_prompt - 1}: one causal forward of the prompt. Positions "
        f"{n_prompt}..{n_prompt + N_NEW - 2}: the decode steps of HF generate (do_sample=False, "
        f"use_cache=True, DynamicCache), feeding greedy_tokens[0..{N_NEW - 2}]; the last greedy "
        f"token is never fed. Its step-0 logits equal the prompt's last row within {step0_diff:.1e}. "
        f"greedy_tokens = {N_NEW} tokens, argmax of each step, EOS does not stop generation. "
        f"Chunked-prefill check: feeding the prompt as {CHUNK_SPLIT} + {n_prompt - CHUNK_SPLIT} "
        f"tokens through a DynamicCache (cache_position 0..{CHUNK_SPLIT - 1}, then "
        f"{CHUNK_SPLIT}..{n_prompt - 1}) gives the same prompt logits (max |diff| {chunk_diff:.1e}), "
        f"so no separate file is stored: compare a chunked prefill against positions 0..{n_prompt - 1}."
    )
    fixture_io.write_case(
        out_dir, f"ref_{variant}",
        description=f"tiny random llama, {variant} weights: prompt and greedy-decode logits",
        input_ids=input_ids, n_vocab=VOCAB_SIZE, positions=positions, logits=logits,
        greedy_tokens=ref["tokens"], notes=notes,
        extra={"prompt_text": prompt_text, "model_files": files,
               "greedy_margins": [round(m, 4) for m in ref["margins"]]},
    )
    return ref, logits, positions


def transformers_gguf_diff(out_dir, gguf_name, sequence, positions, logits) -> float:
    """Max |diff| between the reference and transformers loading the GGUF file."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out_dir, gguf_file=gguf_name, dtype=torch.float32,
                                                 attn_implementation="eager")
    with torch.no_grad():
        out = model(torch.tensor([sequence]), use_cache=False).logits[0].numpy()
    return float(np.abs(out[positions] - logits).max())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "tiny_llama"))
    # Seed 128 was picked (seeds 1..399 tried) for the largest smallest top1-top2
    # logit margin over the 16 greedy steps of all three variants (~0.19 with
    # logits of std ~1.7), so that small numeric differences cannot flip argmax.
    parser.add_argument("--seed", type=int, default=128)
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)  # deterministic summation order on CPU
    out_dir = os.path.abspath(args.out)
    hf_dir = os.path.join(out_dir, "hf")
    if os.path.isdir(hf_dir):
        shutil.rmtree(hf_dir)
    os.makedirs(hf_dir)

    tok = train_tokenizer()
    save_tokenizer(tok, hf_dir)
    state = random_state(new_model(), args.seed)
    model = new_model(state)
    model.save_pretrained(hf_dir, safe_serialization=True)
    for fname in os.listdir(hf_dir):  # safetensors writes 0600; fixtures are plain files
        os.chmod(os.path.join(hf_dir, fname), 0o644)

    # The saved directory must load back to the same model and tokenizer.
    hf_tok = AutoTokenizer.from_pretrained(hf_dir)
    input_ids = hf_tok(PROMPT_TEXT, add_special_tokens=False).input_ids[:N_PROMPT]
    if len(input_ids) != N_PROMPT:
        raise RuntimeError(f"prompt has only {len(input_ids)} tokens")
    prompt_text = hf_tok.decode(input_ids)
    if hf_tok(prompt_text, add_special_tokens=False).input_ids != input_ids:
        raise RuntimeError("prompt_text does not re-encode to input_ids")
    chat = hf_tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                      add_generation_prompt=True)
    if chat != "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n":
        raise RuntimeError(f"unexpected chat template output {chat!r}")
    reloaded = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32, attn_implementation="eager")
    for k, v in reloaded.state_dict().items():
        if k in state and not np.array_equal(v.numpy(), state[k]):
            raise RuntimeError(f"{k} changed on the safetensors round trip")

    notes = {
        "f32": "Weights exactly as in hf/model.safetensors and tiny_llama_f32.gguf.",
        "f16": "Weights = the f16 values stored in tiny_llama_f16.gguf (2-D weights rounded to "
               "f16, norms f32), dequantized to f32 and un-permuted, loaded into the HF model.",
        "q8_0": "Weights = tiny_llama_q8_0.gguf dequantized with gguf.quants.dequantize (2-D "
                "weights Q8_0, norms f32) and q/k un-permuted, loaded into the HF model.",
    }
    print(f"prompt_text={prompt_text!r} input_ids={input_ids}")
    for variant in ("f32", "f16", "q8_0"):
        gguf_name = f"tiny_llama_{variant}.gguf"
        gguf_path = os.path.join(out_dir, gguf_name)
        write_gguf(gguf_path, variant, state, tok)
        variant_state = state_from_gguf(gguf_path, state)
        if variant == "f32" and any(not np.array_equal(variant_state[k], state[k]) for k in state):
            raise RuntimeError("f32 GGUF does not round-trip the weights exactly")
        vmodel = new_model(variant_state)
        ref, logits, positions = write_reference(out_dir, variant, vmodel, input_ids, prompt_text,
                                                 gguf_name, notes[variant])
        # Independent check of the GGUF file: a NumPy forward in llama.cpp's
        # conventions (permuted q/k, adjacent-pair RoPE) must agree with HF.
        sequence = input_ids + ref["tokens"]
        np_logits = fixture_io.gguf_llama_logits(gguf_path, sequence[:-1])[positions]
        np_diff = float(np.abs(np_logits - logits).max())
        if np_diff > 1e-3:
            raise RuntimeError(f"{variant}: NumPy GGUF forward differs from HF by {np_diff}")
        # Second independent reader: transformers' own GGUF loader.
        tf_diff = transformers_gguf_diff(out_dir, gguf_name, sequence[:-1], positions, logits)
        if tf_diff > 1e-4:
            raise RuntimeError(f"{variant}: transformers' GGUF loader differs by {tf_diff}")
        print(f"{variant}: transformers-GGUF-vs-ref max|diff|={tf_diff:.2e}")
        print(f"{variant}: greedy={ref['tokens']} text={hf_tok.decode(ref['tokens'])!r} "
              f"min margin={min(ref['margins']):.3f} numpy-vs-HF max|diff|={np_diff:.2e} "
              f"logit std={logits.std():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
