#!/usr/bin/env python3
"""Generates the tiny random Mamba fixtures in tests/fixtures/tiny_mamba/.

Outputs (deterministic for a given seed and the pinned package versions):
  tiny_mamba_f32.gguf   a tiny random MambaForCausalLM (f32, tied embeddings,
                        no tokenizer: ids are bytes) in llama.cpp's GGUF
                        conventions for "mamba" (below)
  ref_f32.json/.f32     HF transformers logits and greedy tokens

GGUF conventions (llama.cpp's, read back by transformers' GGUF loader, which
is the spec here: integrations/ggml.py "mamba" and MambaTensorProcessor):
  mamba.{context_length, embedding_length, block_count, vocab_size,
         ssm.conv_kernel, ssm.inner_size, ssm.state_size, ssm.time_step_rank,
         attention.layer_norm_rms_epsilon}
  token_embd.weight [n_embd, n_vocab]    output_norm.weight [n_embd]
  output.weight (absent: tied to token_embd)
  blk.N.attn_norm.weight [n_embd]        blk.N.ssm_in.weight [n_embd, 2*d_inner]
  blk.N.ssm_conv1d.weight [d_conv, d_inner] (HF conv1d.weight [d_inner, 1, d_conv] squeezed)
  blk.N.ssm_conv1d.bias [d_inner]        blk.N.ssm_x.weight [d_inner, dt_rank + 2*d_state]
  blk.N.ssm_dt.weight [dt_rank, d_inner] blk.N.ssm_dt.bias [d_inner]
  blk.N.ssm_a [d_state, d_inner] = -exp(A_log)   blk.N.ssm_d [d_inner]
  blk.N.ssm_out.weight [d_inner, n_embd]
(shapes in GGUF ne order: ne[0] is the row length).

Self-checks: transformers loading the GGUF file reproduces the reference
logits, and an independent NumPy recurrence over the GGUF tensors (one token
at a time, the way edgekv decodes) agrees with HF's full-sequence scan.

Usage: /work/venv-tools/bin/python tools/gen_tiny_mamba.py [--out DIR] [--seed N]
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_io  # noqa: E402

VOCAB_SIZE = 256  # token id = byte value: no tokenizer needed
ARCH = dict(hidden_size=64, num_hidden_layers=2, state_size=16, conv_kernel=4, expand=2,
            layer_norm_epsilon=1e-5, max_position_embeddings=512)
PROMPT_TEXT = "The GNU General Public License"
N_PROMPT = 12
N_NEW = 16
GGUF_NAME = "tiny_mamba_f32.gguf"
STD_EMBED, STD_LINEAR, STD_CONV, STD_NORM = 1.0, 0.2, 0.3, 0.1


def hf_config():
    from transformers import MambaConfig

    a = ARCH
    return MambaConfig(
        vocab_size=VOCAB_SIZE, hidden_size=a["hidden_size"], state_size=a["state_size"],
        num_hidden_layers=a["num_hidden_layers"], layer_norm_epsilon=a["layer_norm_epsilon"],
        expand=a["expand"], conv_kernel=a["conv_kernel"], use_bias=False, use_conv_bias=True,
        time_step_rank="auto", tie_word_embeddings=True, use_mambapy=False, use_associative_scan=False,
        pad_token_id=0, bos_token_id=0, eos_token_id=0, dtype="float32",
    )


def new_model(state=None):
    import torch
    from transformers import MambaForCausalLM

    model = MambaForCausalLM(hf_config()).to(torch.float32)
    if state is not None:
        sd = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in state.items()}
        missing, unexpected = model.load_state_dict(sd, strict=False)
        missing = [m for m in missing if m != "lm_head.weight"]  # tied
        if missing or unexpected:
            raise RuntimeError(f"state dict mismatch: missing={missing} unexpected={unexpected}")
    model.eval()
    return model


def random_state(model, seed: int) -> dict[str, np.ndarray]:
    """Random weights from NumPy's PCG64, in ranges a trained Mamba has: A in
    [-8, -0.5] and dt biases whose softplus lies in [0.01, 0.5], so the state
    remembers several tokens and the scan matters."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, p in sorted(model.state_dict().items()):
        shape = tuple(p.shape)
        if name == "lm_head.weight":
            continue  # tied to the embeddings
        if name.endswith("norm.weight") or name.endswith("norm_f.weight"):
            w = 1.0 + STD_NORM * rng.standard_normal(shape)
        elif name.endswith("embeddings.weight"):
            w = STD_EMBED * rng.standard_normal(shape)
        elif name.endswith("A_log"):
            w = np.log(rng.uniform(0.5, 8.0, shape))
        elif name.endswith("mixer.D"):
            w = 1.0 + 0.3 * rng.standard_normal(shape)
        elif name.endswith("dt_proj.bias"):
            dt = np.exp(rng.uniform(np.log(0.01), np.log(0.5), shape))
            w = dt + np.log(-np.expm1(-dt))  # inverse softplus
        elif "conv1d" in name:
            w = STD_CONV * rng.standard_normal(shape)
        else:
            w = STD_LINEAR * rng.standard_normal(shape)
        state[name] = w.astype(np.float32)
    return state


def gguf_tensors(state):
    """(gguf name, array in the GGUF layout) for every HF tensor."""
    out = [("token_embd.weight", state["backbone.embeddings.weight"]),
           ("output_norm.weight", state["backbone.norm_f.weight"])]
    for il in range(ARCH["num_hidden_layers"]):
        p, m = f"blk.{il}.", f"backbone.layers.{il}."
        out += [
            (p + "attn_norm.weight", state[m + "norm.weight"]),
            (p + "ssm_in.weight", state[m + "mixer.in_proj.weight"]),
            (p + "ssm_conv1d.weight", state[m + "mixer.conv1d.weight"][:, 0, :]),
            (p + "ssm_conv1d.bias", state[m + "mixer.conv1d.bias"]),
            (p + "ssm_x.weight", state[m + "mixer.x_proj.weight"]),
            (p + "ssm_dt.weight", state[m + "mixer.dt_proj.weight"]),
            (p + "ssm_dt.bias", state[m + "mixer.dt_proj.bias"]),
            (p + "ssm_a", -np.exp(state[m + "mixer.A_log"])),
            (p + "ssm_d", state[m + "mixer.D"]),
            (p + "ssm_out.weight", state[m + "mixer.out_proj.weight"]),
        ]
    if len(out) != len(state):
        raise RuntimeError("GGUF tensor plan does not cover the HF state dict exactly")
    return out


def write_gguf(path: str, state) -> None:
    import gguf

    cfg = hf_config()
    w = gguf.GGUFWriter(path, arch="mamba")
    w.add_name("edgekv tiny random mamba (f32)")
    w.add_file_type(int(gguf.LlamaFileType.ALL_F32))
    w.add_context_length(ARCH["max_position_embeddings"])
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_vocab_size(VOCAB_SIZE)
    w.add_ssm_conv_kernel(cfg.conv_kernel)
    w.add_ssm_inner_size(cfg.intermediate_size)
    w.add_ssm_state_size(cfg.state_size)
    w.add_ssm_time_step_rank(cfg.time_step_rank)
    w.add_layer_norm_rms_eps(cfg.layer_norm_epsilon)
    for name, arr in gguf_tensors(state):
        w.add_tensor(name, np.ascontiguousarray(arr, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def numpy_recurrent_logits(path: str, ids) -> np.ndarray:
    """Logits of every position, from the GGUF tensors alone, one token at a
    time with a conv window and an SSM state (no HF code involved)."""
    import gguf

    r = gguf.GGUFReader(path)
    t = {x.name: np.asarray(x.data, dtype=np.float64) for x in r.tensors}
    eps = ARCH["layer_norm_epsilon"]
    n_layer = ARCH["num_hidden_layers"]
    d_conv = ARCH["conv_kernel"]
    d_inner, d_state = t["blk.0.ssm_a"].shape
    dt_rank = t["blk.0.ssm_dt.weight"].shape[1]

    def rms(x, w):
        return x / np.sqrt(np.mean(x * x) + eps) * w

    def silu(x):
        return x / (1.0 + np.exp(-x))

    conv = [np.zeros((d_conv - 1, d_inner)) for _ in range(n_layer)]
    ssm = [np.zeros((d_inner, d_state)) for _ in range(n_layer)]
    rows = []
    for tok in ids:
        x = t["token_embd.weight"][tok].copy()
        for il in range(n_layer):
            p = f"blk.{il}."
            xz = t[p + "ssm_in.weight"] @ rms(x, t[p + "attn_norm.weight"])
            xi, z = xz[:d_inner], xz[d_inner:]
            window = np.vstack([conv[il], xi[None, :]])  # [d_conv, d_inner], oldest first
            conv[il] = window[1:]
            xc = silu(np.sum(window.T * t[p + "ssm_conv1d.weight"], axis=1) + t[p + "ssm_conv1d.bias"])
            dbc = t[p + "ssm_x.weight"] @ xc
            dt, b, c = dbc[:dt_rank], dbc[dt_rank:dt_rank + d_state], dbc[dt_rank + d_state:]
            delta = np.logaddexp(0.0, t[p + "ssm_dt.weight"] @ dt + t[p + "ssm_dt.bias"])
            ssm[il] = np.exp(delta[:, None] * t[p + "ssm_a"]) * ssm[il] + (delta * xc)[:, None] * b[None, :]
            y = ssm[il] @ c + t[p + "ssm_d"] * xc
            x = x + t[p + "ssm_out.weight"] @ (y * silu(z))
        rows.append(t["token_embd.weight"] @ rms(x, t["output_norm.weight"]))
    return np.asarray(rows, dtype=np.float32)


def transformers_gguf_logits(out_dir: str, sequence) -> np.ndarray:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out_dir, gguf_file=GGUF_NAME, dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        return model(torch.tensor([sequence]), use_cache=False).logits[0].numpy()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "tiny_mamba"))
    # Seed 0 (checked with --search-seeds 40): a smallest top1-top2 margin of
    # ~0.79 over the 16 greedy steps, so small numeric differences cannot flip
    # argmax, and a varied continuation (the three seeds with larger margins
    # settle into one repeated token, which tests the state less).
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--search-seeds", type=int, default=0,
                        help="print the smallest greedy margin of seeds 0..N-1 and exit")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)  # deterministic summation order on CPU
    input_ids = list(PROMPT_TEXT.encode("ascii")[:N_PROMPT])
    if args.search_seeds:
        for seed in range(args.search_seeds):
            ref = fixture_io.hf_greedy_reference(new_model(random_state(new_model(), seed)), input_ids, N_NEW)
            print(f"seed {seed}: min margin {min(ref['margins']):.4f} tokens {ref['tokens']}")
        return 0

    out_dir = os.path.abspath(args.out)
    os.makedirs(out_dir, exist_ok=True)
    state = random_state(new_model(), args.seed)
    model = new_model(state)
    gguf_path = os.path.join(out_dir, GGUF_NAME)
    write_gguf(gguf_path, state)

    ref = fixture_io.hf_greedy_reference(model, input_ids, N_NEW)
    step0_diff = float(np.abs(ref["step_logits"][0] - ref["prompt_logits"][-1]).max())
    if step0_diff > 1e-4:
        raise RuntimeError(f"cached and uncached last-prompt logits differ by {step0_diff}")
    logits = np.concatenate([ref["prompt_logits"], ref["step_logits"][1:]])
    positions = list(range(N_PROMPT + N_NEW - 1))
    sequence = input_ids + ref["tokens"]

    tf_diff = float(np.abs(transformers_gguf_logits(out_dir, sequence[:-1]) - logits).max())
    if tf_diff > 1e-4:
        raise RuntimeError(f"transformers' GGUF loader differs from the reference by {tf_diff}")
    np_diff = float(np.abs(numpy_recurrent_logits(gguf_path, sequence[:-1]) - logits).max())
    if np_diff > 1e-3:
        raise RuntimeError(f"NumPy recurrence over the GGUF tensors differs from HF by {np_diff}")

    notes = (
        f"HF transformers MambaForCausalLM (slow path: sequential selective scan, no CUDA kernels), "
        f"float32, CPU, tied embeddings. Token ids are bytes (vocab 256, no tokenizer in the GGUF). "
        f"Sequence = input_ids ({N_PROMPT} prompt tokens) followed by greedy_tokens; the row for "
        f"position p holds the logits after consuming sequence[0..p] (they predict sequence[p+1]). "
        f"Positions 0..{N_PROMPT - 1}: one forward of the prompt (use_cache=False). Positions "
        f"{N_PROMPT}..{N_PROMPT + N_NEW - 2}: the decode steps of HF generate (do_sample=False, "
        f"use_cache=True, its Mamba conv/SSM state cache), feeding greedy_tokens[0..{N_NEW - 2}]; the "
        f"last greedy token is never fed. Step-0 logits equal the prompt's last row within "
        f"{step0_diff:.1e}. transformers loading {GGUF_NAME} reproduces every row within {tf_diff:.1e}; "
        f"an independent NumPy token-by-token recurrence over the GGUF tensors within {np_diff:.1e}. "
        f"HF's slow path restarts the scan from a zero state for a multi-token call, so no chunked "
        f"reference is stored: a chunked prefill must reproduce positions 0..{N_PROMPT - 1}."
    )
    fixture_io.write_case(
        out_dir, "ref_f32",
        description="tiny random mamba, f32 weights: prompt and greedy-decode logits",
        input_ids=input_ids, n_vocab=VOCAB_SIZE, positions=positions, logits=logits,
        greedy_tokens=ref["tokens"], notes=notes,
        extra={"prompt_text": bytes(input_ids).decode("ascii"), "model_files": [GGUF_NAME],
               "seed": args.seed, "greedy_margins": [round(m, 4) for m in ref["margins"]]},
    )
    print(f"greedy={ref['tokens']} min margin={min(ref['margins']):.3f} "
          f"transformers-GGUF max|diff|={tf_diff:.2e} numpy max|diff|={np_diff:.2e} logit std={logits.std():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
