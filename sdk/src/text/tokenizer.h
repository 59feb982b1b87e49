// Text <-> token ids for a model, built from GGUF tokenizer metadata
// (tokenizer_json.h translates Hugging Face tokenizer.json into the same
// keys). Supported: "gpt2" byte-level BPE with the "gpt2"/"default",
// "smollm" and "llama-bpe" pre-tokenizers, and "llama" SentencePiece-style
// BPE with scores and byte fallback. Immutable after creation, so one
// Tokenizer may serve many threads.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/metadata.h"
#include "core/status.h"
#include "text/bpe.h"
#include "text/pretokenizer.h"
#include "text/spm.h"
#include "text/text_range.h"
#include "text/vocab.h"

namespace ekv {

class Tokenizer {
public:
    Tokenizer() = default;
    // Members point into each other (the models into the vocab): no copies.
    Tokenizer(const Tokenizer&) = delete;
    Tokenizer& operator=(const Tokenizer&) = delete;

    // Reads tokenizer.ggml.* and tokenizer.chat_template. A tokenizer model
    // or pre-tokenizer other than the supported ones is EKV_ERR_UNSUPPORTED;
    // inconsistent metadata is EKV_ERR_INVALID_FILE.
    static Status from_metadata(const Metadata& meta, std::unique_ptr<Tokenizer>* out);

    int32_t n_vocab() const { return vocab_.size(); }

    // Replaces *out with the ids of `text` (any bytes; invalid UTF-8 is
    // encoded byte-wise). add_special: BOS/EOS where the model's
    // add_bos_token/add_eos_token say so. parse_special: the text of control
    // tokens ("<|im_start|>") becomes that token; user-defined tokens always
    // match.
    Status encode(std::string_view text, bool add_special, bool parse_special,
                  std::vector<int32_t>* out) const;
    // As encode(text, add_special, parse_special = true), except that control
    // tokens are not read inside the `literal` byte ranges (ascending,
    // disjoint) nor across their edges: a rendered chat's message contents,
    // where "<|im_end|>" typed by a user stays text. Bad ranges:
    // EKV_ERR_INVALID_ARGUMENT.
    Status encode_with_literals(std::string_view text, bool add_special, const std::vector<TextRange>& literal,
                                std::vector<int32_t>* out) const;

    // Raw bytes of one token (may be part of a UTF-8 character). special =
    // false renders control tokens as "". Invalid id: EKV_ERR_INVALID_TOKEN.
    Status token_to_piece(int32_t id, bool special, std::string* out) const;
    // Same bytes without copying: a view into the tokenizer (valid for its
    // lifetime); empty for invalid ids. For per-token hot paths.
    std::string_view piece_view(int32_t id, bool special) const;

    // Replaces *out with the text of ids: valid UTF-8 (U+FFFD for broken
    // sequences, as Hugging Face decodes). skip_special drops control tokens.
    // SentencePiece models lose the leading space the prefix rule added.
    Status decode(const int32_t* ids, size_t n, bool skip_special, std::string* out) const;

    int32_t bos() const { return bos_; }  // -1 if none
    int32_t eos() const { return eos_; }
    int32_t eot() const { return eot_; }
    int32_t pad() const { return pad_; }
    int32_t unk() const { return unk_; }
    bool add_bos() const { return add_bos_; }

    // End of generation: eos, eot and end-of-turn control tokens such as
    // <|im_end|>, <|eot_id|>, <end_of_turn>.
    bool is_eog(int32_t id) const;
    // Control (and unknown) tokens: rendered only on request, skipped by
    // decode(skip_special).
    bool is_special(int32_t id) const;

    const std::string& chat_template() const { return chat_template_; }
    const Vocab& vocab() const { return vocab_; }

private:
    enum class Model { ByteLevelBpe, SentencePiece };
    struct Fragment {
        uint32_t begin, end;  // raw text bytes, when token < 0
        int32_t token;        // a matched special token, else -1
    };

    Status load(const Metadata& meta);
    Status load_special_ids(const Metadata& meta);
    void build_pieces();
    void build_special_matcher();
    Status encode(std::string_view text, bool add_special, bool parse_special, const std::vector<TextRange>* literal,
                  std::vector<int32_t>* out) const;
    void split_specials(std::string_view text, bool parse_special, const std::vector<TextRange>* literal,
                        std::vector<Fragment>* out) const;
    void encode_fragment(std::string_view text, bool space_prefix, std::vector<int32_t>* out,
                         PreTokenizerScratch* pre, std::vector<TextSpan>* spans, BpeScratch* bpe,
                         SpmScratch* spm, std::string* escaped) const;

    Model model_ = Model::ByteLevelBpe;
    PreTokenizerKind pre_ = PreTokenizerKind::Gpt2;
    Vocab vocab_;
    BpeModel bpe_;
    SpmModel spm_;
    std::vector<std::string> pieces_;      // decoded bytes of each token
    std::vector<uint8_t> flags_;           // kFlag* bits per token
    std::vector<int32_t> special_by_byte_[256];  // matchable tokens by first byte, longest first
    int32_t bos_ = -1, eos_ = -1, eot_ = -1, pad_ = -1, unk_ = -1;
    bool add_bos_ = false, add_eos_ = false, add_space_prefix_ = false;
    std::string chat_template_;
};

}  // namespace ekv
