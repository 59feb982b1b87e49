#include "text/tokenizer.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "text/unicode.h"
#include "text/utf8_stream.h"

namespace ekv {
namespace {

enum : uint8_t {
    kFlagSpecial = 1,         // control / unknown: hidden unless asked for
    kFlagEog = 2,             // ends generation
    kFlagMatchAlways = 4,     // user-defined: its text always becomes the token
    kFlagMatchIfSpecial = 8,  // control: its text becomes the token with parse_special
};

constexpr char kSpaceMarker[] = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

// Texts of end-of-turn tokens across chat model families.
const char* const kEndOfTurnTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<end_of_turn>", "<|end|>", "<|eom_id|>", "<|endoftext|>", "<EOT>",
};

// Control or user-defined: how converters type marker tokens.
bool is_marker_type(int32_t type) { return type == kTokenControl || type == kTokenUserDefined; }

const MetaValue* find_array(const Metadata& meta, const char* key) {
    const MetaValue* v = meta.find(key);
    return (v && v->type == MetaType::ARRAY) ? v : nullptr;
}

// "<0xAB>" -> 0xAB; false if the text is not a byte token.
bool parse_byte_token(const std::string& text, uint8_t* byte) {
    if (text.size() != 6 || text.compare(0, 3, "<0x") != 0 || text[5] != '>') return false;
    unsigned v = 0;
    for (int i = 3; i < 5; ++i) {
        char c = text[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else return false;
    }
    *byte = static_cast<uint8_t>(v);
    return true;
}

void replace_all(std::string* s, std::string_view from, std::string_view to) {
    std::string out;
    out.reserve(s->size());
    size_t pos = 0;
    for (size_t hit; (hit = s->find(from.data(), pos, from.size())) != std::string::npos;) {
        out.append(*s, pos, hit - pos);
        out.append(to.data(), to.size());
        pos = hit + from.size();
    }
    out.append(*s, pos, std::string::npos);
    s->swap(out);
}

}  // namespace

Status Tokenizer::from_metadata(const Metadata& meta, std::unique_ptr<Tokenizer>* out) {
    if (!out) return Error(EKV_ERR_INVALID_ARGUMENT, "Tokenizer::from_metadata: out is null");
    std::unique_ptr<Tokenizer> tok(new Tokenizer());
    EKV_TRY(tok->load(meta));
    *out = std::move(tok);
    return Status::Ok();
}

Status Tokenizer::load(const Metadata& meta) {
    std::string model;
    if (!meta.get_string("tokenizer.ggml.model", &model)) {
        return Error(EKV_ERR_UNSUPPORTED, "model file has no tokenizer (tokenizer.ggml.model missing)");
    }
    if (model == "gpt2") {
        model_ = Model::ByteLevelBpe;
    } else if (model == "llama") {
        model_ = Model::SentencePiece;
    } else {
        return Error(EKV_ERR_UNSUPPORTED,
                     "tokenizer model \"%s\" is not supported (supported: gpt2, llama)", model.c_str());
    }

    const MetaValue* tokens = find_array(meta, "tokenizer.ggml.tokens");
    if (!tokens || tokens->elem_type != MetaType::STRING || tokens->strs.empty()) {
        return Error(EKV_ERR_INVALID_FILE, "tokenizer.ggml.tokens missing or not an array of strings");
    }
    const size_t n = tokens->strs.size();
    if (n > static_cast<size_t>(INT32_MAX)) {
        return Error(EKV_ERR_INVALID_FILE, "tokenizer.ggml.tokens has too many entries (%zu)", n);
    }
    std::vector<int32_t> types;
    if (const MetaValue* tv = meta.find("tokenizer.ggml.token_type")) {
        if (tv->type != MetaType::ARRAY || tv->ints.size() != n) {
            return Error(EKV_ERR_INVALID_FILE,
                         "tokenizer.ggml.token_type must be %zu integers (has %zu entries)", n,
                         tv->array_size());
        }
        types.reserve(n);
        for (int64_t t : tv->ints) types.push_back(static_cast<int32_t>(t));
    }
    std::vector<float> scores;
    if (const MetaValue* sv = meta.find("tokenizer.ggml.scores")) {
        if (sv->type != MetaType::ARRAY || sv->floats.size() != n) {
            return Error(EKV_ERR_INVALID_FILE,
                         "tokenizer.ggml.scores must be %zu floats (has %zu entries)", n,
                         sv->array_size());
        }
        scores.reserve(n);
        // NaN would break the merge queue's ordering: rank it last instead.
        for (double f : sv->floats) scores.push_back(std::isnan(f) ? -INFINITY : static_cast<float>(f));
    }
    vocab_.assign(tokens->strs, std::move(types), std::move(scores));
    EKV_TRY(load_special_ids(meta));

    const bool spm = model_ == Model::SentencePiece;
    add_bos_ = spm;  // defaults as llama.cpp: SentencePiece models start with BOS
    add_space_prefix_ = spm;
    bool flag;
    if (meta.get_bool("tokenizer.ggml.add_bos_token", &flag)) add_bos_ = flag;
    if (meta.get_bool("tokenizer.ggml.add_eos_token", &flag)) add_eos_ = flag;
    if (meta.get_bool("tokenizer.ggml.add_space_prefix", &flag)) add_space_prefix_ = flag;
    meta.get_string("tokenizer.chat_template", &chat_template_);

    if (spm) {
        spm_.init(&vocab_, unk_);
    } else {
        std::string pre = "default";
        meta.get_string("tokenizer.ggml.pre", &pre);
        if (!pre_tokenizer_from_name(pre, &pre_)) {
            return Error(EKV_ERR_UNSUPPORTED,
                         "pre-tokenizer \"%s\" is not supported (supported: gpt2, default, smollm, "
                         "llama-bpe)",
                         pre.c_str());
        }
        const MetaValue* merges = find_array(meta, "tokenizer.ggml.merges");
        if (!merges || merges->elem_type != MetaType::STRING) {
            return Error(EKV_ERR_INVALID_FILE, "gpt2 tokenizer without tokenizer.ggml.merges");
        }
        // Llama 3 tokenizers take a word that is a whole token as is.
        EKV_TRY(bpe_.init(&vocab_, merges->strs, pre_ == PreTokenizerKind::Llama3));
    }
    build_pieces();
    build_special_matcher();
    return Status::Ok();
}

Status Tokenizer::load_special_ids(const Metadata& meta) {
    struct Slot {
        const char* key;
        int32_t* id;
    } slots[] = {
        {"tokenizer.ggml.bos_token_id", &bos_},     {"tokenizer.ggml.eos_token_id", &eos_},
        {"tokenizer.ggml.eot_token_id", &eot_},     {"tokenizer.ggml.padding_token_id", &pad_},
        {"tokenizer.ggml.unknown_token_id", &unk_},
    };
    for (const Slot& s : slots) {
        int64_t v;
        *s.id = -1;
        if (!meta.get_int(s.key, &v)) continue;
        if (v < 0 || v >= vocab_.size()) {
            return Error(EKV_ERR_INVALID_FILE, "%s = %lld is outside the vocabulary (%d tokens)",
                         s.key, static_cast<long long>(v), vocab_.size());
        }
        *s.id = static_cast<int32_t>(v);
    }
    if (eot_ < 0) {
        // No explicit end-of-turn id: take the family's end-of-turn control token.
        for (const char* text : kEndOfTurnTexts) {
            int32_t id = vocab_.find(text);
            if (id >= 0 && is_marker_type(vocab_.type(id)) && std::strcmp(text, "<|endoftext|>") != 0) {
                eot_ = id;
                break;
            }
        }
    }
    return Status::Ok();
}

void Tokenizer::build_pieces() {
    const int32_t n = vocab_.size();
    pieces_.assign(n, std::string());
    flags_.assign(n, 0);
    for (int32_t id = 0; id < n; ++id) {
        const std::string& text = vocab_.text(id);
        const int32_t type = vocab_.type(id);
        std::string& piece = pieces_[id];
        if (type == kTokenControl || type == kTokenUnknown) {
            flags_[id] |= kFlagSpecial | kFlagMatchIfSpecial;
            piece = text;
        } else if (type == kTokenUserDefined) {
            flags_[id] |= kFlagMatchAlways;
            piece = text;  // added tokens are stored as plain text
        } else if (model_ == Model::SentencePiece) {
            uint8_t byte;
            if (type == kTokenByte && parse_byte_token(text, &byte)) {
                piece.assign(1, static_cast<char>(byte));
            } else {
                piece = text;
                replace_all(&piece, kSpaceMarker, " ");
            }
        } else {
            // Byte-level: map the alphabet back to bytes; a token with a
            // character outside the alphabet is rendered as its text (as the
            // Hugging Face ByteLevel decoder does).
            bool mapped = true;
            for (size_t pos = 0; pos < text.size() && mapped;) {
                uint32_t cp;
                pos += unicode::decode_utf8(text, pos, &cp);
                uint8_t b;
                mapped = unicode::codepoint_to_byte(cp, &b);
                if (mapped) piece.push_back(static_cast<char>(b));
            }
            if (!mapped) piece = text;
        }
    }
    for (int32_t id : {bos_, eos_, eot_, pad_, unk_}) {
        if (id >= 0) flags_[id] |= kFlagSpecial | kFlagMatchIfSpecial;
    }
    for (int32_t id : {eos_, eot_}) {
        if (id >= 0) flags_[id] |= kFlagEog;
    }
    // End-of-turn markers end generation and behave as control tokens even
    // where a converter typed them user-defined (as llama.cpp treats them).
    for (const char* text : kEndOfTurnTexts) {
        int32_t id = vocab_.find(text);
        if (id >= 0 && is_marker_type(vocab_.type(id))) {
            flags_[id] = (flags_[id] & ~kFlagMatchAlways) | kFlagSpecial | kFlagMatchIfSpecial | kFlagEog;
        }
    }
}

void Tokenizer::build_special_matcher() {
    for (auto& list : special_by_byte_) list.clear();
    for (int32_t id = 0; id < vocab_.size(); ++id) {
        if (!(flags_[id] & (kFlagMatchAlways | kFlagMatchIfSpecial))) continue;
        const std::string& text = vocab_.text(id);
        if (text.empty()) continue;
        special_by_byte_[static_cast<unsigned char>(text[0])].push_back(id);
    }
    for (auto& list : special_by_byte_) {
        // Longest first, so that the first hit at a position is the longest.
        std::stable_sort(list.begin(), list.end(), [&](int32_t a, int32_t b) {
            return vocab_.text(a).size() > vocab_.text(b).size();
        });
    }
}

void Tokenizer::split_specials(std::string_view text, bool parse_special, const std::vector<TextRange>* literal,
                               std::vector<Fragment>* out) const {
    const uint8_t wanted = parse_special ? (kFlagMatchAlways | kFlagMatchIfSpecial) : kFlagMatchAlways;
    size_t raw_begin = 0;
    size_t pos = 0;
    size_t next_literal = 0;  // the first literal range not wholly before pos
    while (pos < text.size()) {
        // Inside a literal range only the always-matching tokens count, and a
        // control token may not reach into one.
        while (literal && next_literal < literal->size() && (*literal)[next_literal].end <= pos) ++next_literal;
        const bool in_literal =
            literal && next_literal < literal->size() && (*literal)[next_literal].begin <= pos;
        const size_t room = !literal || next_literal >= literal->size() || in_literal
                                ? text.size() - pos
                                : (*literal)[next_literal].begin - pos;
        int32_t hit = -1;
        for (int32_t id : special_by_byte_[static_cast<unsigned char>(text[pos])]) {
            if (!(flags_[id] & wanted)) continue;
            const bool control_only = !(flags_[id] & kFlagMatchAlways);
            if (in_literal && control_only) continue;
            const std::string& t = vocab_.text(id);
            if (control_only && t.size() > room) continue;
            if (text.size() - pos >= t.size() && std::memcmp(text.data() + pos, t.data(), t.size()) == 0) {
                hit = id;
                break;
            }
        }
        if (hit < 0) {
            ++pos;
            continue;
        }
        if (pos > raw_begin) {
            out->push_back({static_cast<uint32_t>(raw_begin), static_cast<uint32_t>(pos), -1});
        }
        out->push_back({0, 0, hit});
        pos += vocab_.text(hit).size();
        raw_begin = pos;
    }
    if (raw_begin < text.size()) {
        out->push_back({static_cast<uint32_t>(raw_begin), static_cast<uint32_t>(text.size()), -1});
    }
}

void Tokenizer::encode_fragment(std::string_view text, bool space_prefix, std::vector<int32_t>* out,
                                PreTokenizerScratch* pre, std::vector<TextSpan>* spans,
                                BpeScratch* bpe, SpmScratch* spm, std::string* escaped) const {
    if (model_ == Model::ByteLevelBpe) {
        spans->clear();
        pre_tokenize(pre_, text, pre, spans);
        for (const TextSpan& s : *spans) {
            bpe_.encode_word(text.substr(s.begin, s.end - s.begin), bpe, out);
        }
        return;
    }
    escaped->clear();
    if (space_prefix) escaped->append(kSpaceMarker);
    for (char c : text) {
        if (c == ' ') {
            escaped->append(kSpaceMarker);
        } else {
            escaped->push_back(c);
        }
    }
    spm_.encode(*escaped, spm, out);
}

Status Tokenizer::encode(std::string_view text, bool add_special, bool parse_special,
                         std::vector<int32_t>* out) const {
    return encode(text, add_special, parse_special, nullptr, out);
}

Status Tokenizer::encode_with_literals(std::string_view text, bool add_special, const std::vector<TextRange>& literal,
                                       std::vector<int32_t>* out) const {
    for (size_t i = 0; i < literal.size(); ++i) {
        if (literal[i].begin > literal[i].end || literal[i].end > text.size() ||
            (i > 0 && literal[i].begin < literal[i - 1].end))
            return Error(EKV_ERR_INVALID_ARGUMENT, "encode: literal ranges must be ascending, disjoint and in the text");
    }
    return encode(text, add_special, true, &literal, out);
}

Status Tokenizer::encode(std::string_view text, bool add_special, bool parse_special,
                         const std::vector<TextRange>* literal, std::vector<int32_t>* out) const {
    if (!out) return Error(EKV_ERR_INVALID_ARGUMENT, "encode: out is null");
    // SentencePiece escaping can grow text 3x; keep offsets in 32 bits.
    if (text.size() > (static_cast<size_t>(UINT32_MAX) / 4)) {
        return Error(EKV_ERR_INVALID_ARGUMENT, "text of %zu bytes is too long to tokenize", text.size());
    }
    out->clear();
    if (add_special && add_bos_ && bos_ >= 0) out->push_back(bos_);

    std::vector<Fragment> fragments;
    split_specials(text, parse_special, literal, &fragments);
    PreTokenizerScratch pre;
    std::vector<TextSpan> spans;
    BpeScratch bpe;
    SpmScratch spm;
    std::string escaped;
    bool after_special = true;  // SentencePiece prefixes a space at the start and after specials
    for (const Fragment& f : fragments) {
        if (f.token >= 0) {
            out->push_back(f.token);
            after_special = true;
            continue;
        }
        encode_fragment(text.substr(f.begin, f.end - f.begin), add_space_prefix_ && after_special,
                        out, &pre, &spans, &bpe, &spm, &escaped);
        after_special = false;
    }
    if (add_special && add_eos_ && eos_ >= 0) out->push_back(eos_);
    return Status::Ok();
}

std::string_view Tokenizer::piece_view(int32_t id, bool special) const {
    if (!vocab_.valid(id)) return {};
    if (!special && (flags_[id] & kFlagSpecial)) return {};
    return pieces_[id];
}

Status Tokenizer::token_to_piece(int32_t id, bool special, std::string* out) const {
    if (!out) return Error(EKV_ERR_INVALID_ARGUMENT, "token_to_piece: out is null");
    if (!vocab_.valid(id)) {
        return Error(EKV_ERR_INVALID_TOKEN, "token %d is outside the vocabulary [0, %d)", id, n_vocab());
    }
    std::string_view piece = piece_view(id, special);
    out->assign(piece.data(), piece.size());
    return Status::Ok();
}

Status Tokenizer::decode(const int32_t* ids, size_t n, bool skip_special, std::string* out) const {
    if (!out || (!ids && n > 0)) return Error(EKV_ERR_INVALID_ARGUMENT, "decode: null pointer");
    for (size_t i = 0; i < n; ++i) {
        if (!vocab_.valid(ids[i])) {
            return Error(EKV_ERR_INVALID_TOKEN, "token %d at index %zu is outside the vocabulary [0, %d)",
                         ids[i], i, n_vocab());
        }
    }
    std::string bytes;
    bool first = true;
    for (size_t i = 0; i < n; ++i) {
        const int32_t id = ids[i];
        if (skip_special && (flags_[id] & kFlagSpecial)) continue;
        std::string_view piece = pieces_[id];
        // HF's Metaspace decoder drops the prefix space of the first token.
        if (first && model_ == Model::SentencePiece && add_space_prefix_ &&
            !(flags_[id] & kFlagSpecial) && !piece.empty() && piece[0] == ' ') {
            piece.remove_prefix(1);
        }
        first = false;
        bytes.append(piece.data(), piece.size());
    }
    out->clear();
    utf8_sanitize(bytes, out);
    return Status::Ok();
}

bool Tokenizer::is_eog(int32_t id) const { return vocab_.valid(id) && (flags_[id] & kFlagEog); }

bool Tokenizer::is_special(int32_t id) const {
    return vocab_.valid(id) && (flags_[id] & kFlagSpecial);
}

}  // namespace ekv
