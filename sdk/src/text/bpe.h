// Byte-level BPE (GPT-2 family): a pre-token's bytes become byte-alphabet
// symbols that are merged pairwise by merge rank, lowest rank first and
// leftmost first among equal ranks, as Hugging Face tokenizers does.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "text/vocab.h"

namespace ekv {

// Per-call working memory, reused across the words of one encode().
struct BpeScratch {
    struct Symbol {
        int32_t id;
        int32_t prev;
        int32_t next;
    };
    struct Candidate {
        int32_t rank;
        int32_t pos;    // index of the left symbol
        int32_t left;   // ids expected at pos / next(pos); stale entries are skipped
        int32_t right;
    };
    std::vector<Symbol> symbols;
    std::vector<Candidate> heap;
    std::string mapped;  // word in the byte alphabet (ignore_merges lookups)
};

class BpeModel {
public:
    // merges: "left right" in byte-alphabet text, by rank. Merges naming
    // tokens the vocab lacks are skipped (they could never apply).
    // ignore_merges: a word that is a whole token is taken as is.
    Status init(const Vocab* vocab, const std::vector<std::string>& merges, bool ignore_merges);

    // Appends the ids of one pre-token given as raw bytes.
    void encode_word(std::string_view bytes, BpeScratch* scratch, std::vector<int32_t>* out) const;

    size_t n_merges() const { return n_merges_; }

private:
    struct MergeSlot {
        uint64_t key;  // (left << 32) | right; kEmpty when unused
        int32_t rank;
        int32_t result;
    };
    static constexpr uint64_t kEmpty = ~0ull;

    const MergeSlot* find_merge(int32_t left, int32_t right) const;
    void push_candidate(BpeScratch* s, int32_t pos) const;

    const Vocab* vocab_ = nullptr;
    int32_t byte_token_[256];  // id of each byte's alphabet character, -1 if absent
    std::vector<MergeSlot> merges_;
    uint64_t mask_ = 0;
    size_t n_merges_ = 0;
    bool ignore_merges_ = false;
};

}  // namespace ekv
