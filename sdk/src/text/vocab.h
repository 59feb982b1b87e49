// Token table shared by the tokenizer models: text, score and type per id,
// with an allocation-free text -> id lookup.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ekv {

// tokenizer.ggml.token_type values (as llama.cpp and the GGUF spec number them).
enum TokenType : int32_t {
    kTokenUndefined = 0,
    kTokenNormal = 1,
    kTokenUnknown = 2,
    kTokenControl = 3,
    kTokenUserDefined = 4,
    kTokenUnused = 5,
    kTokenByte = 6,
};

class Vocab {
public:
    // Takes the tokens by id; types/scores may be empty (then normal / 0).
    void assign(std::vector<std::string> texts, std::vector<int32_t> types,
                std::vector<float> scores);

    int32_t size() const { return static_cast<int32_t>(texts_.size()); }
    bool valid(int32_t id) const { return id >= 0 && id < size(); }
    const std::string& text(int32_t id) const { return texts_[id]; }
    int32_t type(int32_t id) const { return types_[id]; }
    float score(int32_t id) const { return scores_[id]; }

    // Lowest id whose text is exactly `text`, or -1.
    int32_t find(std::string_view text) const;

private:
    std::vector<std::string> texts_;
    std::vector<int32_t> types_;
    std::vector<float> scores_;
    std::vector<int32_t> slots_;  // open addressing over ids; -1 = empty
    uint64_t mask_ = 0;
};

uint64_t hash_bytes(std::string_view s);

}  // namespace ekv
