#!/usr/bin/env python3
"""Generates the tiny random Whisper fixtures in tests/fixtures/tiny_whisper/.

Outputs (deterministic for a given seed and pinned package versions):
  speech.wav          2.5 s of tones, a chirp and noise: 16 kHz, 16-bit mono
  tiny_whisper.gguf   a random WhisperForConditionalGeneration (d_model 64,
                      2 + 2 layers, 4 heads, 80 mel bins, 1500 audio positions,
                      64 text positions, 256 tokens): 2-D weights F16, biases
                      and norms F32, in edgekv's GGUF naming (below)
  mel_ref.json        HF WhisperFeatureExtractor on speech.wav (80 and 128 bins):
                      chosen frames in full, every frame's mean over the bins
  ref_decode.json/.f32
                      decoder logits (fixture_io format) for a fixed decoder
                      prompt: the prompt in one prefill, then greedy steps with
                      HF's EncoderDecoderCache, on the F16-rounded weights;
                      extra: cross-attention K/V rows of the encoder output

GGUF naming (general.architecture = "whisper"); cols = in features:
  whisper.embedding_length                     d_model
  whisper.attention.layer_norm_epsilon         LayerNorm epsilon
  whisper.encoder.{block_count, attention.head_count, feed_forward_length,
                   context_length (audio positions, 1500), mel_bins}
  whisper.decoder.{block_count, attention.head_count, feed_forward_length,
                   context_length (text positions, 448 in the real models)}
  whisper.decoder_start_token_id               (informational)
  enc.conv1.weight [d_model rows, n_mel*3 cols]  torch [out, in, k] flattened
  enc.conv1.bias, enc.conv2.weight [d_model, d_model*3], enc.conv2.bias
  enc.position_embd.weight [audio positions, d_model]  optional: absent means
                      Whisper's sinusoids (what HF initialises and never trains)
  enc.blk.N.{attn_norm, attn_q, attn_k (no bias), attn_v, attn_output,
             ffn_norm, ffn_up (fc1), ffn_down (fc2)}.{weight, bias}
  enc.output_norm.{weight, bias}
  dec.token_embd.weight, dec.position_embd.weight
  dec.blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output,
             cross_attn_norm, cross_attn_q, cross_attn_k, cross_attn_v,
             cross_attn_output, ffn_norm, ffn_up, ffn_down}.{weight, bias}
  dec.output_norm.{weight, bias}
  output.weight       optional (absent: tied to dec.token_embd, as Whisper)

Usage: /work/venv-tools/bin/python tools/gen_tiny_whisper.py [--out DIR] [--seed N]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import wave

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_io  # noqa: E402

SAMPLE_RATE = 16000
AUDIO_SECONDS = 2.5
ARCH = dict(
    vocab_size=256,
    d_model=64,
    encoder_layers=2,
    decoder_layers=2,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    encoder_ffn_dim=256,
    decoder_ffn_dim=256,
    num_mel_bins=80,
    max_source_positions=1500,  # 3000 mel frames: the real front end
    max_target_positions=64,
    decoder_start_token_id=250,
    bos_token_id=250,
    eos_token_id=251,
    pad_token_id=251,
    activation_function="gelu",
    scale_embedding=False,
)
DECODER_PROMPT = [250, 5, 17, 42]
N_NEW = 8
# Mel frames stored in full: the first ones (reflect padding), the voiced
# middle and end, the edge of the zero padding and the silent tail.
MEL_FRAMES = [0, 1, 2, 50, 100, 200, 249, 250, 251, 260, 1500, 2999]
# Random init: far from uniform logits so greedy decoding varies.
# Tied embeddings make a random decoder repeat its input token; small
# embeddings and large layer outputs give a varied greedy sequence.
STD_EMBED, STD_POS, STD_NORM, STD_BIAS, LINEAR_GAIN = 0.3, 0.3, 0.1, 0.1, 3.0


def synthetic_speech(seed: int) -> np.ndarray:
    """Tones with a syllable-like envelope, a chirp and noise, as int16."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SAMPLE_RATE * AUDIO_SECONDS)) / SAMPLE_RATE
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
    x = 0.30 * np.sin(2 * np.pi * 220 * t) * envelope
    x += 0.15 * np.sin(2 * np.pi * 1250 * t + 0.3) * (t > 0.8)
    x += 0.10 * np.sin(2 * np.pi * (300 * t + 900 * t * t))  # chirp 300 -> 4800 Hz
    x += 0.03 * rng.standard_normal(t.size)
    return np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)


def write_wav(path: str, samples: np.ndarray) -> None:
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(samples.astype("<i2").tobytes())


def mel_reference(pcm: np.ndarray) -> dict:
    from transformers import WhisperFeatureExtractor

    out = {}
    for n_mel in (80, 128):
        fe = WhisperFeatureExtractor(feature_size=n_mel)
        feats = fe(pcm, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features[0]
        assert feats.shape == (n_mel, 3000), feats.shape
        out[str(n_mel)] = {
            "frames": MEL_FRAMES,
            "values": [[float(v) for v in feats[:, f]] for f in MEL_FRAMES],
            "frame_means": [round(float(v), 7) for v in feats.mean(axis=0)],
            "max": float(feats.max()),
            "min": float(feats.min()),
        }
    return out


def new_model():
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(WhisperConfig(**ARCH)).eval()
    return model


def randomize(model, seed: int) -> None:
    """Seeded init with F16-rounded matrices (the GGUF stores them as F16)."""
    import torch

    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "model.encoder.embed_positions.weight":
                continue  # Whisper's sinusoids, rebuilt by edgekv
            if name.endswith("layer_norm.weight"):
                v = 1.0 + STD_NORM * rng.standard_normal(p.shape)
            elif name.endswith(".bias"):
                v = STD_BIAS * rng.standard_normal(p.shape)
            elif "embed_tokens" in name:
                v = STD_EMBED * rng.standard_normal(p.shape)
            elif "embed_positions" in name:
                v = STD_POS * rng.standard_normal(p.shape)
            else:  # linear and conv weights
                fan_in = int(np.prod(p.shape[1:]))
                v = LINEAR_GAIN / np.sqrt(fan_in) * rng.standard_normal(p.shape)
            if p.dim() >= 2:
                v = v.astype(np.float16)
            p.copy_(torch.from_numpy(v.astype(np.float32)))


def gguf_name(hf: str) -> str | None:
    """HF parameter name -> edgekv GGUF name (None: not stored)."""
    parts = hf.split(".")
    if hf == "model.encoder.embed_positions.weight" or hf == "proj_out.weight":
        return None
    simple = {
        "model.encoder.conv1": "enc.conv1",
        "model.encoder.conv2": "enc.conv2",
        "model.encoder.layer_norm": "enc.output_norm",
        "model.decoder.layer_norm": "dec.output_norm",
        "model.decoder.embed_tokens": "dec.token_embd",
        "model.decoder.embed_positions": "dec.position_embd",
    }
    stem, leaf = ".".join(parts[:-1]), parts[-1]
    if stem in simple:
        return f"{simple[stem]}.{leaf}"
    side = {"encoder": "enc", "decoder": "dec"}[parts[1]]
    layer = parts[3]
    module = ".".join(parts[4:-1])
    names = {
        "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v", "self_attn.out_proj": "attn_output",
        "self_attn_layer_norm": "attn_norm",
        "encoder_attn.q_proj": "cross_attn_q", "encoder_attn.k_proj": "cross_attn_k",
        "encoder_attn.v_proj": "cross_attn_v", "encoder_attn.out_proj": "cross_attn_output",
        "encoder_attn_layer_norm": "cross_attn_norm",
        "final_layer_norm": "ffn_norm", "fc1": "ffn_up", "fc2": "ffn_down",
    }
    return f"{side}.blk.{layer}.{names[module]}.{leaf}"


def write_gguf(path: str, model) -> None:
    import gguf

    cfg = model.config
    w = gguf.GGUFWriter(path, arch="whisper")
    w.add_name("tiny-random-whisper")
    w.add_uint32("whisper.embedding_length", cfg.d_model)
    w.add_float32("whisper.attention.layer_norm_epsilon", 1e-5)
    w.add_uint32("whisper.decoder_start_token_id", cfg.decoder_start_token_id)
    for side, prefix in (("encoder", "encoder_"), ("decoder", "decoder_")):
        w.add_uint32(f"whisper.{side}.block_count", getattr(cfg, f"{side}_layers"))
        w.add_uint32(f"whisper.{side}.attention.head_count", getattr(cfg, f"{prefix}attention_heads"))
        w.add_uint32(f"whisper.{side}.feed_forward_length", getattr(cfg, f"{prefix}ffn_dim"))
    w.add_uint32("whisper.encoder.context_length", cfg.max_source_positions)
    w.add_uint32("whisper.encoder.mel_bins", cfg.num_mel_bins)
    w.add_uint32("whisper.decoder.context_length", cfg.max_target_positions)
    for name, p in model.named_parameters():
        gname = gguf_name(name)
        if gname is None:
            continue
        t = p.detach().float().numpy()
        if t.ndim == 3:  # conv [out, in, k] -> [out, in * k]
            t = t.reshape(t.shape[0], -1)
        w.add_tensor(gname, t.astype(np.float16) if t.ndim == 2 else t.astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def decode_reference(model, features: np.ndarray) -> dict:
    """Prefill of DECODER_PROMPT, then N_NEW greedy steps with EncoderDecoderCache."""
    import torch
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    feats = torch.from_numpy(features)[None]
    with torch.no_grad():
        enc = model.model.encoder(feats).last_hidden_state
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        ids = torch.tensor([DECODER_PROMPT])
        rows, tokens = [], []
        out = model(encoder_outputs=(enc,), decoder_input_ids=ids, past_key_values=cache, use_cache=True)
        rows.extend(out.logits[0].float().numpy())
        for step in range(N_NEW):
            nxt = int(out.logits[0, -1].argmax())
            tokens.append(nxt)
            if step + 1 == N_NEW:
                break
            out = model(encoder_outputs=(enc,), decoder_input_ids=torch.tensor([[nxt]]),
                        past_key_values=out.past_key_values, use_cache=True)
            rows.append(out.logits[0, -1].float().numpy())
        # One uncached pass over the whole sequence must agree.
        seq = torch.tensor([DECODER_PROMPT + tokens[:-1]])
        full = model(encoder_outputs=(enc,), decoder_input_ids=seq, use_cache=False).logits[0].numpy()
        logits = np.stack(rows)
        drift = float(np.abs(full - logits).max())
        assert drift < 1e-4, drift
        cross = {}
        for layer, kind in ((0, "k"), (1, "v")):
            attn = model.model.decoder.layers[layer].encoder_attn
            proj = attn.k_proj if kind == "k" else attn.v_proj
            kv = proj(enc)[0].numpy()
            cross[f"layer{layer}_{kind}"] = {str(r): [float(x) for x in kv[r]] for r in (0, 1, 700, 1499)}
        top2 = np.sort(logits, axis=-1)[:, -2:]
    return {
        "tokens": tokens,
        "logits": logits,
        "encoder_mean": float(enc.mean()),
        "encoder_std": float(enc.std()),
        "cross": cross,
        "margins": [round(float(m), 4) for m in top2[:, 1] - top2[:, 0]],
        "cache_drift": drift,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "tiny_whisper"))
    ap.add_argument("--seed", type=int, default=99)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    pcm16 = synthetic_speech(args.seed)
    write_wav(os.path.join(args.out, "speech.wav"), pcm16)
    pcm = (pcm16.astype(np.float32) / 32768.0).astype(np.float32)  # what a WAV reader returns
    mel = mel_reference(pcm)
    with open(os.path.join(args.out, "mel_ref.json"), "w", encoding="utf-8") as f:
        json.dump({"description": "HF WhisperFeatureExtractor(feature_size=n) on speech.wav / 32768",
                   "n_samples": int(pcm.size), **mel}, f, separators=(",", ":"))

    from transformers import WhisperFeatureExtractor

    features = WhisperFeatureExtractor(feature_size=80)(pcm, sampling_rate=SAMPLE_RATE,
                                                        return_tensors="np").input_features[0]
    model = new_model()
    randomize(model, args.seed)
    write_gguf(os.path.join(args.out, "tiny_whisper.gguf"), model)
    ref = decode_reference(model, features.astype(np.float32))
    n_pos = len(DECODER_PROMPT) + N_NEW - 1
    fixture_io.write_case(
        args.out, "ref_decode",
        description="tiny random Whisper: decoder logits over speech.wav's encoder output",
        input_ids=DECODER_PROMPT,
        n_vocab=ARCH["vocab_size"],
        positions=list(range(n_pos)),
        logits=ref["logits"],
        greedy_tokens=ref["tokens"],
        notes=("prefill of input_ids (all rows), then greedy steps with EncoderDecoderCache; "
               "weights F16-rounded as in tiny_whisper.gguf, activations f32; "
               f"uncached pass agrees to {ref['cache_drift']:.2e}"),
        extra={"encoder_mean": ref["encoder_mean"], "encoder_std": ref["encoder_std"],
               "margins": ref["margins"], "cross_kv_rows": ref["cross"]},
    )
    total = sum(os.path.getsize(os.path.join(args.out, n)) for n in os.listdir(args.out))
    print(f"tokens {ref['tokens']} margins {ref['margins']}; fixtures {total / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
