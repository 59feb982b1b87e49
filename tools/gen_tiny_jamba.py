#!/usr/bin/env python3
"""Generates the tiny random Jamba fixtures in tests/fixtures/tiny_jamba/.

Outputs (deterministic for a given seed and the pinned package versions):
  tiny_jamba_f32.gguf   a tiny random JambaForCausalLM (f32, no tokenizer: ids
                        are bytes) with all four kinds of layer:
                        0 Mamba + dense FFN, 1 attention + MoE, 2 Mamba +
                        dense FFN, 3 attention + dense FFN, 4 Mamba + MoE
                        (4 experts, top-2)
  ref_f32.json/.f32     HF transformers logits and greedy tokens

GGUF conventions: llama.cpp's "jamba" (its convert_hf_to_gguf.py JambaModel
and gguf-py's MODEL_ARCH.JAMBA tensor list); transformers has no GGUF loader
for Jamba, so an independent NumPy forward over the GGUF tensors checks them.
  jamba.{block_count, context_length, embedding_length, feed_forward_length,
         attention.head_count, attention.head_count_kv (array, one per layer:
         0 marks a Mamba layer), attention.layer_norm_rms_epsilon,
         ssm.conv_kernel, ssm.inner_size, ssm.state_size, ssm.time_step_rank,
         expert_count, expert_used_count}
  token_embd.weight, output_norm.weight (final_layernorm), output.weight
  blk.N.attn_norm.weight (input_layernorm), blk.N.ffn_norm.weight (pre_ff_layernorm)
  attention layers: blk.N.attn_{q,k,v,output}.weight (no RoPE: rows as in HF)
  Mamba layers: as tools/gen_tiny_mamba.py (ssm_in, ssm_conv1d.{weight,bias},
         ssm_x, ssm_dt.{weight,bias}, ssm_a = -exp(A_log), ssm_d, ssm_out) plus
         blk.N.ssm_dt_norm.weight [dt_rank], ssm_b_norm.weight [d_state],
         ssm_c_norm.weight [d_state]
  dense FFN: blk.N.ffn_{gate,up,down}.weight
  MoE FFN: blk.N.ffn_gate_inp.weight [n_embd, n_expert] (router),
         blk.N.ffn_{gate,up}_exps.weight [n_embd, n_ff, n_expert],
         blk.N.ffn_down_exps.weight [n_ff, n_embd, n_expert]
(shapes in GGUF ne order: ne[0] is the row length). The router is HF's: softmax
over the experts, the top-k probabilities used as weights without
renormalization.

Usage: /work/venv-tools/bin/python tools/gen_tiny_jamba.py [--out DIR] [--seed N]
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_io  # noqa: E402

VOCAB_SIZE = 256  # token id = byte value: no tokenizer needed
ARCH = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=5, num_attention_heads=2,
            num_key_value_heads=1, num_experts=4, num_experts_per_tok=2, expert_layer_period=3,
            expert_layer_offset=1, attn_layer_period=2, attn_layer_offset=1, mamba_d_state=8,
            mamba_d_conv=4, mamba_expand=2, rms_norm_eps=1e-6, max_position_embeddings=512)
PROMPT_TEXT = "The GNU General Public License"
N_PROMPT = 12
N_NEW = 16
GGUF_NAME = "tiny_jamba_f32.gguf"
STD_EMBED, STD_LINEAR, STD_CONV, STD_NORM, STD_ROUTER, STD_HEAD = 1.0, 0.25, 0.3, 0.1, 0.3, 0.8


def hf_config():
    from transformers import JambaConfig

    return JambaConfig(vocab_size=VOCAB_SIZE, tie_word_embeddings=False, use_mambapy=False,
                       use_associative_scan=False, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                       dtype="float32", **ARCH)


def new_model(state=None):
    import torch
    from transformers import JambaForCausalLM

    model = JambaForCausalLM(hf_config()).to(torch.float32)
    model.config._attn_implementation = "eager"
    if state is not None:
        sd = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in state.items()}
        missing, unexpected = model.load_state_dict(sd, strict=False)
        if missing or unexpected:
            raise RuntimeError(f"state dict mismatch: missing={missing} unexpected={unexpected}")
    model.eval()
    return model


def random_state(model, seed: int) -> dict[str, np.ndarray]:
    """Random weights from NumPy's PCG64 in a trained model's ranges (as in
    gen_tiny_mamba.py); router logits of std ~1.7, so that both selected
    experts weigh in."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, p in sorted(model.state_dict().items()):
        shape = tuple(p.shape)
        if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
            w = 1.0 + STD_NORM * rng.standard_normal(shape)
        elif name == "model.embed_tokens.weight":
            w = STD_EMBED * rng.standard_normal(shape)
        elif name.endswith("A_log"):
            w = np.log(rng.uniform(0.5, 8.0, shape))
        elif name.endswith("mamba.D"):
            w = 1.0 + 0.3 * rng.standard_normal(shape)
        elif name.endswith("dt_proj.bias"):
            dt = np.exp(rng.uniform(np.log(0.01), np.log(0.5), shape))
            w = dt + np.log(-np.expm1(-dt))  # inverse softplus
        elif "conv1d" in name:
            w = STD_CONV * rng.standard_normal(shape)
        elif name.endswith("router.weight"):
            w = STD_ROUTER * rng.standard_normal(shape)
        elif name == "lm_head.weight":
            w = STD_HEAD * rng.standard_normal(shape)
        else:
            w = STD_LINEAR * rng.standard_normal(shape)
        state[name] = w.astype(np.float32)
    return state


def layer_kinds():
    cfg = hf_config()
    return list(zip(cfg.layers_block_type, [n > 1 for n in cfg.layers_num_experts]))


def gguf_tensors(state):
    """(gguf name, array in the GGUF layout) for every HF tensor."""
    ff = ARCH["intermediate_size"]
    out = [("token_embd.weight", state["model.embed_tokens.weight"]),
           ("output_norm.weight", state["model.final_layernorm.weight"]),
           ("output.weight", state["lm_head.weight"])]
    for il, (kind, moe) in enumerate(layer_kinds()):
        p, h = f"blk.{il}.", f"model.layers.{il}."
        out += [(p + "attn_norm.weight", state[h + "input_layernorm.weight"]),
                (p + "ffn_norm.weight", state[h + "pre_ff_layernorm.weight"])]
        if kind == "attention":
            for g, n in (("attn_q", "q_proj"), ("attn_k", "k_proj"), ("attn_v", "v_proj"), ("attn_output", "o_proj")):
                out.append((p + g + ".weight", state[h + f"self_attn.{n}.weight"]))
        else:
            m = h + "mamba."
            out += [
                (p + "ssm_in.weight", state[m + "in_proj.weight"]),
                (p + "ssm_conv1d.weight", state[m + "conv1d.weight"][:, 0, :]),
                (p + "ssm_conv1d.bias", state[m + "conv1d.bias"]),
                (p + "ssm_x.weight", state[m + "x_proj.weight"]),
                (p + "ssm_dt.weight", state[m + "dt_proj.weight"]),
                (p + "ssm_dt.bias", state[m + "dt_proj.bias"]),
                (p + "ssm_dt_norm.weight", state[m + "dt_layernorm.weight"]),
                (p + "ssm_a", -np.exp(state[m + "A_log"])),
                (p + "ssm_b_norm.weight", state[m + "b_layernorm.weight"]),
                (p + "ssm_c_norm.weight", state[m + "c_layernorm.weight"]),
                (p + "ssm_d", state[m + "D"]),
                (p + "ssm_out.weight", state[m + "out_proj.weight"]),
            ]
        f = h + "feed_forward."
        if moe:
            gate_up = state[f + "experts.gate_up_proj"]  # [E, 2*ff, n_embd]: gate rows, then up rows
            out += [(p + "ffn_gate_inp.weight", state[f + "router.weight"]),
                    (p + "ffn_gate_exps.weight", gate_up[:, :ff, :]),
                    (p + "ffn_up_exps.weight", gate_up[:, ff:, :]),
                    (p + "ffn_down_exps.weight", state[f + "experts.down_proj"])]
        else:
            out += [(p + "ffn_gate.weight", state[f + "gate_proj.weight"]),
                    (p + "ffn_up.weight", state[f + "up_proj.weight"]),
                    (p + "ffn_down.weight", state[f + "down_proj.weight"])]
    n_hf = sum(2 if k.endswith("gate_up_proj") else 1 for k in state)  # gate_up splits in two
    if len(out) != n_hf:
        raise RuntimeError("GGUF tensor plan does not cover the HF state dict exactly")
    return out


def write_gguf(path: str, state) -> None:
    import gguf

    cfg = hf_config()
    w = gguf.GGUFWriter(path, arch="jamba")
    w.add_name("edgekv tiny random jamba (f32)")
    w.add_file_type(int(gguf.LlamaFileType.ALL_F32))
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv([cfg.num_key_value_heads if k == "attention" else 0 for k, _ in layer_kinds()])
    w.add_ssm_conv_kernel(cfg.mamba_d_conv)
    w.add_ssm_inner_size(cfg.mamba_expand * cfg.hidden_size)
    w.add_ssm_state_size(cfg.mamba_d_state)
    w.add_ssm_time_step_rank(cfg.mamba_dt_rank)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_expert_count(cfg.num_experts)
    w.add_expert_used_count(cfg.num_experts_per_tok)
    w.add_vocab_size(VOCAB_SIZE)
    for name, arr in gguf_tensors(state):
        w.add_tensor(name, np.ascontiguousarray(arr, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def numpy_logits(path: str, ids) -> np.ndarray:
    """Logits of every position from the GGUF tensors alone, one token at a
    time: a KV list per attention layer, conv window and SSM state per Mamba
    layer, HF's top-k router (no HF code involved)."""
    import gguf

    r = gguf.GGUFReader(path)
    t = {x.name: np.asarray(x.data, dtype=np.float64) for x in r.tensors}
    f = {k: r.fields[k].contents() for k in r.fields}
    eps = float(f["jamba.attention.layer_norm_rms_epsilon"])
    n_head = int(f["jamba.attention.head_count"])
    kv_heads = list(f["jamba.attention.head_count_kv"])
    top_k = int(f["jamba.expert_used_count"])
    n_layer = len(kv_heads)
    n_embd = t["token_embd.weight"].shape[1]
    head_dim = n_embd // n_head
    d_conv = int(f["jamba.ssm.conv_kernel"])
    dt_rank = int(f["jamba.ssm.time_step_rank"])
    d_state = int(f["jamba.ssm.state_size"])

    def rms(x, w):
        return x / np.sqrt(np.mean(x * x) + eps) * w

    def silu(x):
        return x / (1.0 + np.exp(-x))

    def ffn(p, h):
        if p + "ffn_gate_inp.weight" in t:
            logits = t[p + "ffn_gate_inp.weight"] @ h
            probs = np.exp(logits - logits.max())
            probs /= probs.sum()
            out = np.zeros_like(h)
            for e in np.argsort(-probs)[:top_k]:
                g = t[p + "ffn_gate_exps.weight"][e] @ h
                u = t[p + "ffn_up_exps.weight"][e] @ h
                out += probs[e] * (t[p + "ffn_down_exps.weight"][e] @ (silu(g) * u))
            return out
        return t[p + "ffn_down.weight"] @ (silu(t[p + "ffn_gate.weight"] @ h) * (t[p + "ffn_up.weight"] @ h))

    keys = [[] for _ in range(n_layer)]
    vals = [[] for _ in range(n_layer)]
    conv = [None] * n_layer
    ssm = [None] * n_layer
    rows = []
    for tok in ids:
        x = t["token_embd.weight"][tok].copy()
        for il in range(n_layer):
            p = f"blk.{il}."
            h = rms(x, t[p + "attn_norm.weight"])
            if kv_heads[il] > 0:
                group = n_head // kv_heads[il]
                q = (t[p + "attn_q.weight"] @ h).reshape(n_head, head_dim)
                keys[il].append((t[p + "attn_k.weight"] @ h).reshape(kv_heads[il], head_dim))
                vals[il].append((t[p + "attn_v.weight"] @ h).reshape(kv_heads[il], head_dim))
                k_all, v_all = np.stack(keys[il]), np.stack(vals[il])  # [T, kv, hd]
                att = np.empty((n_head, head_dim))
                for hh in range(n_head):
                    s = k_all[:, hh // group, :] @ q[hh] / np.sqrt(head_dim)
                    w = np.exp(s - s.max())
                    att[hh] = (w / w.sum()) @ v_all[:, hh // group, :]
                x = x + t[p + "attn_output.weight"] @ att.reshape(-1)
            else:
                d_inner = t[p + "ssm_a"].shape[0]
                if conv[il] is None:
                    conv[il] = np.zeros((d_conv - 1, d_inner))
                    ssm[il] = np.zeros((d_inner, d_state))
                xz = t[p + "ssm_in.weight"] @ h
                xi, z = xz[:d_inner], xz[d_inner:]
                window = np.vstack([conv[il], xi[None, :]])
                conv[il] = window[1:]
                xc = silu(np.sum(window.T * t[p + "ssm_conv1d.weight"], axis=1) + t[p + "ssm_conv1d.bias"])
                dbc = t[p + "ssm_x.weight"] @ xc
                dt = rms(dbc[:dt_rank], t[p + "ssm_dt_norm.weight"])
                b = rms(dbc[dt_rank:dt_rank + d_state], t[p + "ssm_b_norm.weight"])
                c = rms(dbc[dt_rank + d_state:], t[p + "ssm_c_norm.weight"])
                delta = np.logaddexp(0.0, t[p + "ssm_dt.weight"] @ dt + t[p + "ssm_dt.bias"])
                ssm[il] = np.exp(delta[:, None] * t[p + "ssm_a"]) * ssm[il] + (delta * xc)[:, None] * b[None, :]
                y = ssm[il] @ c + t[p + "ssm_d"] * xc
                x = x + t[p + "ssm_out.weight"] @ (y * silu(z))
            x = x + ffn(p, rms(x, t[p + "ffn_norm.weight"]))
        rows.append(t["output.weight"] @ rms(x, t["output_norm.weight"]))
    return np.asarray(rows, dtype=np.float32)


def reference(model, input_ids):
    """HF's greedy reference plus the smallest gap between the k-th and the
    (k+1)-th router logit over every routed token (prompt and decode): what
    decides the expert choice."""
    import torch

    gaps = []
    k = ARCH["num_experts_per_tok"]

    def hook(_module, _inputs, output):
        top = torch.sort(output[0].float(), dim=-1, descending=True).values
        gaps.append(float((top[:, k - 1] - top[:, k]).min()))

    handles = [m.register_forward_hook(hook) for n, m in model.named_modules() if n.endswith("feed_forward.router")]
    try:
        ref = fixture_io.hf_greedy_reference(model, input_ids, N_NEW)
    finally:
        for h in handles:
            h.remove()
    ref["router_gap"] = min(gaps)
    return ref


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "tiny_jamba"))
    # Seed 30 (checked with --search-seeds 40): smallest greedy top1-top2
    # margin ~0.19 and smallest 2nd-vs-3rd router logit gap ~0.057, both far
    # above f32 rounding (~1e-6), so neither a greedy token nor an expert
    # choice can flip between implementations.
    parser.add_argument("--seed", type=int, default=30)
    parser.add_argument("--search-seeds", type=int, default=0,
                        help="print the greedy margin and router gap of seeds 0..N-1 and exit")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)  # deterministic summation order on CPU
    input_ids = list(PROMPT_TEXT.encode("ascii")[:N_PROMPT])
    if args.search_seeds:
        for seed in range(args.search_seeds):
            ref = reference(new_model(random_state(new_model(), seed)), input_ids)
            print(f"seed {seed}: min margin {min(ref['margins']):.4f} router gap {ref['router_gap']:.4f} "
                  f"tokens {ref['tokens']}")
        return 0

    out_dir = os.path.abspath(args.out)
    os.makedirs(out_dir, exist_ok=True)
    state = random_state(new_model(), args.seed)
    model = new_model(state)
    gguf_path = os.path.join(out_dir, GGUF_NAME)
    write_gguf(gguf_path, state)

    ref = reference(model, input_ids)
    step0_diff = float(np.abs(ref["step_logits"][0] - ref["prompt_logits"][-1]).max())
    if step0_diff > 1e-4:
        raise RuntimeError(f"cached and uncached last-prompt logits differ by {step0_diff}")
    logits = np.concatenate([ref["prompt_logits"], ref["step_logits"][1:]])
    positions = list(range(N_PROMPT + N_NEW - 1))
    sequence = input_ids + ref["tokens"]
    np_diff = float(np.abs(numpy_logits(gguf_path, sequence[:-1]) - logits).max())
    if np_diff > 1e-3:
        raise RuntimeError(f"NumPy forward over the GGUF tensors differs from HF by {np_diff}")

    kinds = ", ".join(f"{i}: {k}{' + MoE' if moe else ''}" for i, (k, moe) in enumerate(layer_kinds()))
    notes = (
        f"HF transformers JambaForCausalLM (eager attention, slow-path Mamba scan), float32, CPU. "
        f"Layers {kinds}; {ARCH['num_experts']} experts, top-{ARCH['num_experts_per_tok']}. Token ids are "
        f"bytes (vocab 256, no tokenizer in the GGUF). Sequence = input_ids ({N_PROMPT} prompt tokens) "
        f"followed by greedy_tokens; the row for position p holds the logits after consuming "
        f"sequence[0..p]. Positions 0..{N_PROMPT - 1}: one forward of the prompt (use_cache=False). "
        f"Positions {N_PROMPT}..{N_PROMPT + N_NEW - 2}: the decode steps of HF generate (do_sample=False, "
        f"use_cache=True), feeding greedy_tokens[0..{N_NEW - 2}]. Step-0 logits equal the prompt's last "
        f"row within {step0_diff:.1e}. An independent NumPy token-by-token forward over the GGUF tensors "
        f"agrees within {np_diff:.1e}. Smallest gap between the 2nd and 3rd router logit of any "
        f"routed token: {ref['router_gap']:.3f} (a small gap would make the expert choice fragile). HF's "
        f"slow path restarts the scan from a zero state for a multi-token call, so no chunked reference "
        f"is stored: a chunked prefill must reproduce positions 0..{N_PROMPT - 1}."
    )
    fixture_io.write_case(
        out_dir, "ref_f32",
        description="tiny random jamba (attention + Mamba + MoE), f32 weights: prompt and greedy-decode logits",
        input_ids=input_ids, n_vocab=VOCAB_SIZE, positions=positions, logits=logits,
        greedy_tokens=ref["tokens"], notes=notes,
        extra={"prompt_text": bytes(input_ids).decode("ascii"), "model_files": [GGUF_NAME], "seed": args.seed,
               "router_gap": round(ref["router_gap"], 4),
               "greedy_margins": [round(m, 4) for m in ref["margins"]]},
    )
    print(f"greedy={ref['tokens']} min margin={min(ref['margins']):.3f} router gap={ref['router_gap']:.3f} "
          f"numpy max|diff|={np_diff:.2e} logit std={logits.std():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
