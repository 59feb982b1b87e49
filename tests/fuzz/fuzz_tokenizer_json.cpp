// Fuzz target: a hostile tokenizer.json all the way to a working tokenizer —
// translation to GGUF tokenizer metadata, tokenizer construction, then an
// encode/decode round on a fixed text.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "model/model_file.h"
#include "text/tokenizer.h"
#include "text/tokenizer_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string json(reinterpret_cast<const char*>(data), size);
    ekv::Metadata meta;
    if (!ekv::tokenizer_json_text_to_metadata(json, "", "", &meta).ok()) return 0;
    std::unique_ptr<ekv::Tokenizer> tok;
    if (!ekv::Tokenizer::from_metadata(meta, &tok).ok()) return 0;
    std::vector<int32_t> ids;
    if (!tok->encode("Hello, world! 123 <|im_start|>\xc3\xa9\xe2\x82", true, true, &ids).ok()) return 0;
    for (int32_t id : ids)
        if (id < 0 || id >= tok->n_vocab()) __builtin_trap();
    std::string text;
    tok->decode(ids.data(), ids.size(), false, &text);
    return 0;
}
