// Hugging Face tokenizer.json (+ tokenizer_config.json, chat_template.jinja)
// translated into the GGUF tokenizer.* metadata keys, so that
// Tokenizer::from_metadata serves both model formats.
#pragma once
#include <string>

#include "core/status.h"
#include "core/metadata.h"

namespace ekv {

// Reads dir/tokenizer.json and, when present, dir/tokenizer_config.json and
// dir/chat_template.jinja; sets tokenizer.ggml.{model, pre, tokens,
// token_type, merges, bos/eos/padding/unknown_token_id, add_bos_token,
// add_eos_token, add_space_prefix} and tokenizer.chat_template in *meta.
// Byte-level BPE only: the pre-tokenizer must be one Tokenizer implements
// ("gpt2", "smollm", "llama-bpe"); anything else is EKV_ERR_UNSUPPORTED
// naming what was found. A missing tokenizer.json is EKV_ERR_IO.
Status tokenizer_json_to_metadata(const std::string& dir, Metadata* meta);

// Same from the files' contents (config_json / chat_template may be empty);
// used by the function above and by tests.
Status tokenizer_json_text_to_metadata(const std::string& tokenizer_json,
                                       const std::string& config_json,
                                       const std::string& chat_template, Metadata* meta);

}  // namespace ekv
