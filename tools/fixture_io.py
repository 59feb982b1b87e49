"""Shared helpers for the fidelity-fixture generators in tools/.

Three things live here:
  * the fixture file format (a JSON description + a raw little-endian float32
    logits file), written by write_case and read back by read_case;
  * the q/k row permutation between Hugging Face's rotate-half RoPE layout and
    llama.cpp's adjacent-pair layout used in GGUF files;
  * an independent NumPy forward pass of a llama-architecture GGUF file, written
    from the GGUF/ggml conventions (adjacent-pair RoPE on the permuted q/k rows),
    used to cross-check the Hugging Face references against the GGUF files.
"""
from __future__ import annotations

import json
import os
from typing import Any, Sequence

import numpy as np

# ----------------------------------------------------------------------------
# Fixture file format
# ----------------------------------------------------------------------------


def write_case(
    out_dir: str,
    name: str,
    *,
    description: str,
    input_ids: Sequence[int],
    n_vocab: int,
    positions: Sequence[int],
    logits: np.ndarray,
    greedy_tokens: Sequence[int],
    notes: str,
    extra: dict[str, Any] | None = None,
) -> str:
    """Writes <name>.json and <name>.f32 (row-major [len(positions)][n_vocab])."""
    logits = np.ascontiguousarray(logits, dtype="<f4")
    if logits.shape != (len(positions), n_vocab):
        raise ValueError(f"{name}: logits shape {logits.shape} != ({len(positions)}, {n_vocab})")
    if not np.all(np.isfinite(logits)):
        raise ValueError(f"{name}: logits contain non-finite values")
    os.makedirs(out_dir, exist_ok=True)
    logits_file = f"{name}.f32"
    logits.tofile(os.path.join(out_dir, logits_file))
    doc: dict[str, Any] = {
        "description": description,
        "input_ids": [int(t) for t in input_ids],
        "n_vocab": int(n_vocab),
        "positions": [int(p) for p in positions],
        "logits_file": logits_file,
        "greedy_tokens": [int(t) for t in greedy_tokens],
        "notes": notes,
    }
    if extra:
        for key, value in extra.items():
            if key in doc:
                raise ValueError(f"extra key {key!r} would overwrite a format field")
            doc[key] = value
    json_path = os.path.join(out_dir, f"{name}.json")
    # One key per line, values compact: small diffs, arrays readable at a glance.
    body = ",\n".join(f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in doc.items())
    with open(json_path, "w", encoding="utf-8") as f:
        f.write("{\n" + body + "\n}\n")
    return json_path


def read_case(json_path: str) -> tuple[dict[str, Any], np.ndarray]:
    """Reads a case back (the same way the C++ tests do) and checks its shape."""
    with open(json_path, encoding="utf-8") as f:
        doc = json.load(f)
    raw = np.fromfile(os.path.join(os.path.dirname(json_path), doc["logits_file"]), dtype="<f4")
    rows = len(doc["positions"])
    if raw.size != rows * doc["n_vocab"]:
        raise ValueError(f"{json_path}: logits file has {raw.size} floats, expected {rows * doc['n_vocab']}")
    return doc, raw.reshape(rows, doc["n_vocab"])


# ----------------------------------------------------------------------------
# q/k permutation between HF (rotate-half) and GGUF (adjacent pairs)
# ----------------------------------------------------------------------------
# HF applies RoPE to the pairs (i, i + head_dim/2) of each head; llama.cpp to
# the pairs (2i, 2i + 1). Reordering the output rows of W_q and W_k per head
# makes the two conventions compute the same attention scores.


def permute_qk_for_gguf(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF row order -> GGUF row order. w has torch shape [n_head*head_dim, n_in]."""
    rows = w.shape[0]
    half = rows // n_head // 2
    return w.reshape(n_head, 2, half, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_qk_from_gguf(w: np.ndarray, n_head: int) -> np.ndarray:
    """GGUF row order -> HF row order (inverse of permute_qk_for_gguf)."""
    rows = w.shape[0]
    half = rows // n_head // 2
    return w.reshape(n_head, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# ----------------------------------------------------------------------------
# Independent NumPy forward pass of a llama GGUF file
# ----------------------------------------------------------------------------


def _field_value(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None:
        raise KeyError(f"GGUF key {key} missing")
    return field.contents()


def _dequantized(reader: Any, name: str) -> np.ndarray | None:
    """A tensor as float32 in torch order ([rows][cols]), or None if absent."""
    import gguf

    for t in reader.tensors:
        if t.name == name:
            out = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
            return np.asarray(out, dtype=np.float32).reshape([int(d) for d in reversed(t.shape)])
    return None


def _rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    x64 = x.astype(np.float64)
    scale = 1.0 / np.sqrt(np.mean(x64 * x64, axis=-1, keepdims=True) + eps)
    return (x64 * scale).astype(np.float32) * weight


def _rope_adjacent_pairs(x: np.ndarray, base: float, n_rot: int) -> np.ndarray:
    """ggml 'normal' RoPE: rotates (x[2i], x[2i+1]) by pos * base^(-2i/n_rot).

    x: [T, n_head, head_dim], positions 0..T-1.
    """
    t_len = x.shape[0]
    inv_freq = base ** (-np.arange(0, n_rot, 2, dtype=np.float64) / n_rot)
    angles = np.arange(t_len, dtype=np.float64)[:, None] * inv_freq[None, :]
    cos = np.cos(angles)[:, None, :]
    sin = np.sin(angles)[:, None, :]
    out = x.astype(np.float64).copy()
    even = out[..., 0:n_rot:2].copy()
    odd = out[..., 1:n_rot:2].copy()
    out[..., 0:n_rot:2] = even * cos - odd * sin
    out[..., 1:n_rot:2] = even * sin + odd * cos
    return out.astype(np.float32)


def gguf_llama_logits(gguf_path: str, token_ids: Sequence[int]) -> np.ndarray:
    """Logits [T][n_vocab] for token_ids at positions 0..T-1 (one causal pass).

    Reads the weights straight from the GGUF file (dequantized with gguf-py) and
    follows llama.cpp's conventions, without ever un-permuting q/k. Agreement
    with the HF reference therefore checks the permutation on both sides.
    """
    import gguf

    reader = gguf.GGUFReader(gguf_path)
    arch = _field_value(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"{gguf_path}: architecture {arch}, expected llama")
    n_layer = int(_field_value(reader, "llama.block_count"))
    n_head = int(_field_value(reader, "llama.attention.head_count"))
    n_head_kv = int(_field_value(reader, "llama.attention.head_count_kv"))
    n_embd = int(_field_value(reader, "llama.embedding_length"))
    eps = float(_field_value(reader, "llama.attention.layer_norm_rms_epsilon"))
    base = float(_field_value(reader, "llama.rope.freq_base"))
    head_dim = n_embd // n_head
    n_rot = int(_field_value(reader, "llama.rope.dimension_count"))

    ids = np.asarray(token_ids, dtype=np.int64)
    t_len = len(ids)
    embd = _dequantized(reader, "token_embd.weight")
    x = embd[ids].astype(np.float32)
    causal = np.triu(np.full((t_len, t_len), -np.inf, dtype=np.float32), k=1)
    group = n_head // n_head_kv

    for il in range(n_layer):
        def w(kind: str) -> np.ndarray:
            return _dequantized(reader, f"blk.{il}.{kind}.weight")

        h = _rms_norm(x, w("attn_norm"), eps)
        q = (h @ w("attn_q").T).reshape(t_len, n_head, head_dim)
        k = (h @ w("attn_k").T).reshape(t_len, n_head_kv, head_dim)
        v = (h @ w("attn_v").T).reshape(t_len, n_head_kv, head_dim)
        q = _rope_adjacent_pairs(q, base, n_rot)
        k = _rope_adjacent_pairs(k, base, n_rot)
        heads = np.empty((t_len, n_head, head_dim), dtype=np.float32)
        for hh in range(n_head):
            kv = hh // group
            scores = (q[:, hh, :] @ k[:, kv, :].T) / np.sqrt(head_dim) + causal
            scores = scores - scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            heads[:, hh, :] = probs @ v[:, kv, :]
        x = x + heads.reshape(t_len, n_head * head_dim) @ w("attn_output").T

        h = _rms_norm(x, w("ffn_norm"), eps)
        gate = h @ w("ffn_gate").T
        up = h @ w("ffn_up").T
        silu = gate / (1.0 + np.exp(-gate))
        x = x + (silu * up) @ w("ffn_down").T

    x = _rms_norm(x, _dequantized(reader, "output_norm.weight"), eps)
    out_w = _dequantized(reader, "output.weight")
    if out_w is None:  # tied embeddings
        out_w = embd
    return (x @ out_w.T).astype(np.float32)


# ----------------------------------------------------------------------------
# Hugging Face greedy reference
# ----------------------------------------------------------------------------


def hf_greedy_reference(model: Any, input_ids: Sequence[int], n_new: int) -> dict[str, Any]:
    """Greedy generation with HF generate (do_sample=False, use_cache=True).

    End-of-sequence tokens do not stop it (the C++ tests run a fixed number of
    steps; this clears the model's generation_config EOS), so exactly n_new
    tokens come back. Returns:
      tokens:      the n_new generated ids;
      step_logits: [n_new][n_vocab] raw logits of each step (step 0 = last
                   prompt position, step i = position len(input_ids)-1+i);
      prompt_logits: [len(input_ids)][n_vocab] from one forward of the prompt;
      margins:     top1 - top2 logit gap of each step (small = fragile argmax).
    """
    import torch

    disable_eos_stopping(model)
    ids = torch.tensor([list(input_ids)], dtype=torch.long)
    with torch.no_grad():
        prompt_logits = model(ids, use_cache=False).logits[0].float().numpy()
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=n_new,
            min_new_tokens=0,
            do_sample=False,
            use_cache=True,
            eos_token_id=None,
            pad_token_id=0,
            return_dict_in_generate=True,
            output_logits=True,
        )
    tokens = out.sequences[0, len(input_ids):].tolist()
    if len(tokens) != n_new:
        raise RuntimeError(f"generate returned {len(tokens)} tokens, expected {n_new}")
    step_logits = torch.cat([l.float() for l in out.logits], dim=0).numpy()
    if not np.array_equal(step_logits.argmax(axis=-1), np.asarray(tokens)):
        raise RuntimeError("generated tokens are not the argmax of the step logits")
    top2 = np.sort(step_logits, axis=-1)[:, -2:]
    return {
        "tokens": tokens,
        "step_logits": step_logits,
        "prompt_logits": prompt_logits,
        "margins": (top2[:, 1] - top2[:, 0]).tolist(),
    }


def disable_eos_stopping(model: Any) -> None:
    """Makes generate ignore end-of-sequence tokens (kwargs alone do not)."""
    model.generation_config.eos_token_id = None
    model.generation_config.forced_eos_token_id = None
