// SentencePiece-style BPE ("llama" tokenizer model): UTF-8 characters are
// merged pairwise, always taking the adjacent pair whose concatenation is
// the highest-scoring token; characters the vocab lacks fall back to
// <0xAB> byte tokens.
#pragma once
#include <cstdint>
#include <string_view>
#include <vector>

#include "text/vocab.h"

namespace ekv {

struct SpmScratch {
    struct Symbol {
        uint32_t start;  // byte offset into the text
        uint32_t len;    // 0 once merged into its left neighbour
        int32_t prev;
        int32_t next;
    };
    struct Bigram {
        float score;
        int32_t left;
        int32_t right;
        uint32_t len;  // combined length when queued; a mismatch means stale
    };
    std::vector<Symbol> symbols;
    std::vector<Bigram> heap;
};

class SpmModel {
public:
    void init(const Vocab* vocab, int32_t unk_id);
    // `text` must already have spaces escaped to U+2581.
    void encode(std::string_view text, SpmScratch* scratch, std::vector<int32_t>* out) const;

private:
    int32_t lookup(std::string_view piece) const;  // mergeable tokens only
    void push_bigram(std::string_view text, SpmScratch* s, int32_t left) const;

    const Vocab* vocab_ = nullptr;
    int32_t byte_token_[256];
    int32_t unk_id_ = -1;
};

}  // namespace ekv
