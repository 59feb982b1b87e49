#!/usr/bin/env python3
"""Writes the seed corpora of fuzz_wav and fuzz_chat_template.

corpus/wav/: small RIFF/WAVE files the reader accepts (PCM16 mono/stereo,
  float32, WAVE_FORMAT_EXTENSIBLE, LIST/fact chunks, odd-sized chunks with
  their pad byte, other rates) and ones it refuses (8/24-bit, mu-law, data
  before fmt, truncated, a RIFF size past the end).
corpus/chat_template/: one flag byte (bit 0 add_generation_prompt, bits 1-2
  the family: 0 from the template, 1 chatml, 2 llama3, 3 gemma), then
  template \\0 role \\0 content \\0 ... (see fuzz_chat_template.cpp). The
  templates: the tiny Llama's and SmolLM2's (read from their GGUFs; SmolLM2
  only when EKV_SMOLLM2_GGUF names it) and Llama 3 / Gemma style templates.

Usage (gguf-py, e.g. from tools/setup_deps.sh's pypi-tools):
  PYTHONPATH=.edgekv-cache/pypi-tools EKV_SMOLLM2_GGUF=... \\
      python3 tests/fuzz/gen_wav_chat_corpus.py
Deterministic; every file stays under 4 KB.
"""
import math
import os
import struct

import gguf

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
FIXTURES = os.path.join(HERE, "..", "fixtures")
MAX_BYTES = 4096


# ---- WAV ---------------------------------------------------------------------

def chunk(tag, body):
    pad = b"\0" if len(body) % 2 else b""
    return tag + struct.pack("<I", len(body)) + body + pad


def riff(*chunks, riff_size=None):
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body) if riff_size is None else riff_size) + body


def fmt(tag, channels, rate, bits, extensible=False):
    align = channels * bits // 8
    body = struct.pack("<HHIIHH", 0xFFFE if extensible else tag, channels, rate, rate * align, align, bits)
    if extensible:  # cbSize, valid bits, channel mask, sub-format GUID
        body += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", tag) + bytes(14)
    return chunk(b"fmt ", body)


def tone(n, channels=1):
    return [[math.sin(0.05 * i * (c + 1)) * 0.6 for c in range(channels)] for i in range(n)]


def pcm16(frames):
    return b"".join(struct.pack("<h", max(-32768, min(32767, round(v * 32767)))) for f in frames for v in f)


def float32(frames):
    return b"".join(struct.pack("<f", v) for f in frames for v in f)


def gen_wav(out):
    mono, stereo = tone(200), tone(120, 2)
    files = {
        "pcm16_mono_16k.wav": riff(fmt(1, 1, 16000, 16), chunk(b"data", pcm16(mono))),
        "pcm16_stereo_16k.wav": riff(fmt(1, 2, 16000, 16), chunk(b"data", pcm16(stereo))),
        "float32_mono_16k.wav": riff(fmt(3, 1, 16000, 32), chunk(b"data", float32(mono))),
        "float32_stereo_44k.wav": riff(fmt(3, 2, 44100, 32), chunk(b"fact", struct.pack("<I", 120)),
                                       chunk(b"data", float32(stereo))),
        "float32_loud.wav": riff(fmt(3, 1, 16000, 32), chunk(b"data", float32([[1.5], [-2.0], [1e30], [0.0]]))),
        "pcm16_mono_8k.wav": riff(fmt(1, 1, 8000, 16), chunk(b"data", pcm16(mono[:50]))),
        "extensible_pcm16.wav": riff(fmt(1, 1, 16000, 16, extensible=True), chunk(b"data", pcm16(mono[:64]))),
        "extensible_float.wav": riff(fmt(3, 2, 16000, 32, extensible=True), chunk(b"data", float32(stereo[:32]))),
        "list_odd_chunks.wav": riff(fmt(1, 1, 16000, 16), chunk(b"LIST", b"INFOISFT\x05\0\0\0edgek"),
                                    chunk(b"junk", b"xyz"), chunk(b"data", pcm16(mono[:40]))),
        "chunk_after_data.wav": riff(fmt(1, 1, 16000, 16), chunk(b"data", pcm16(mono[:30])),
                                     chunk(b"LIST", b"INFO")),
        "empty_data.wav": riff(fmt(1, 1, 16000, 16), chunk(b"data", b"")),
        "odd_data_bytes.wav": riff(fmt(1, 1, 16000, 16), chunk(b"data", pcm16(mono[:10]) + b"\x01")),
        "pcm8_mono.wav": riff(fmt(1, 1, 16000, 8), chunk(b"data", bytes(range(0, 256, 3)))),
        "pcm24_mono.wav": riff(fmt(1, 1, 16000, 24), chunk(b"data", bytes(60))),
        "mulaw.wav": riff(fmt(7, 1, 8000, 8), chunk(b"data", bytes(range(64)))),
        "data_before_fmt.wav": riff(chunk(b"data", pcm16(mono[:20])), fmt(1, 1, 16000, 16)),
        "two_fmt.wav": riff(fmt(1, 1, 16000, 16), fmt(3, 1, 16000, 32), chunk(b"data", pcm16(mono[:20]))),
        "no_data.wav": riff(fmt(1, 1, 16000, 16), chunk(b"LIST", b"INFO")),
    }
    whole = riff(fmt(1, 1, 16000, 16), chunk(b"data", pcm16(mono[:100])))
    files["truncated_mid_data.wav"] = whole[:len(whole) - 37]
    files["riff_size_too_big.wav"] = riff(fmt(1, 1, 16000, 16), chunk(b"data", pcm16(mono[:20])), riff_size=4096)
    files["data_size_too_big.wav"] = riff(fmt(1, 1, 16000, 16), b"data" + struct.pack("<I", 1 << 20) +
                                          pcm16(mono[:20]))
    write_all(out, files)


# ---- chat templates ------------------------------------------------------------

# Written after the shapes of Meta's Llama 3 and Google's Gemma templates.
LLAMA3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}"
          "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + "
          "message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
          "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
GEMMA = ("{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n"
         "    {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n"
         "    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n"
         "    {%- set first_user_prefix = \"\" -%}\n    {%- set loop_messages = messages -%}\n{%- endif -%}\n"
         "{%- for message in loop_messages -%}\n"
         "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
         "        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
         "    {%- endif -%}\n"
         "    {%- set role = \"model\" if message['role'] == 'assistant' else message['role'] -%}\n"
         "    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n"
         "    {{ message['content'] | trim }}{{ '<end_of_turn>\\n' }}\n{%- endfor -%}\n"
         "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}\n")


def chat_template_of(path):
    f = gguf.GGUFReader(path).fields.get("tokenizer.chat_template")
    return f.contents() if f is not None else None


def chat_seed(flags, template, *messages):
    fields = [template] + [part for m in messages for part in m]
    return bytes([flags]) + b"\0".join(s.encode("utf-8", "surrogateescape") for s in fields)


def gen_chat_template(out):
    conversation = (("system", "Be brief."), ("user", "Hi there"), ("assistant", " Hello! "), ("user", "caf\u00e9 \U0001F600"))
    templates = {"tiny_llama": chat_template_of(os.path.join(FIXTURES, "tiny_llama", "tiny_llama_f32.gguf"))}
    smollm2 = os.environ.get("EKV_SMOLLM2_GGUF")
    if smollm2:
        templates["smollm2"] = chat_template_of(smollm2)
    templates["llama3"] = LLAMA3
    templates["gemma"] = GEMMA
    files = {}
    for name, t in templates.items():
        files[f"{name}.bin"] = chat_seed(1, t, *conversation)
        files[f"{name}_no_system.bin"] = chat_seed(0, t, *conversation[1:])
    files["smollm2_escapes.bin"] = chat_seed(
        1, "{{ '<|im_start|>system\\nYou are \\'quoted\\' \\\"x\\\"\\tand\\\\ more<|im_end|>\\n' }}{# '<|im_start|>system\\nnot this<|im_end|>' #}",
        ("user", "q"))
    files["unterminated_literal.bin"] = chat_seed(1, "{{ '<|im_start|>system\\nnever closed", ("user", "q"))
    files["unknown_family.bin"] = chat_seed(1, "{% for m in messages %}{{ m.content }}{% endfor %}", ("user", "q"))
    files["named_gemma_bad_roles.bin"] = chat_seed(7, "", ("user", "a"), ("user", "b"))
    files["named_llama3_spaces.bin"] = chat_seed(5, "", ("user", " \t\u3000padded\u2028\x1c "), ("tool", ""))
    files["named_chatml_empty.bin"] = chat_seed(3, "")
    files["invalid_utf8.bin"] = bytes([1]) + b"<|im_start|>\0user\0\xff\xc3(\xe2\x82\0assistant\0\xed\xa0\x80"
    write_all(out, files)


def write_all(out, files):
    os.makedirs(out, exist_ok=True)
    for name, data in sorted(files.items()):
        assert len(data) < MAX_BYTES, f"{name} is {len(data)} bytes"
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        print(f"{os.path.basename(out)}/{name}: {len(data)} bytes")


def main():
    gen_wav(os.path.join(CORPUS, "wav"))
    gen_chat_template(os.path.join(CORPUS, "chat_template"))


if __name__ == "__main__":
    main()
