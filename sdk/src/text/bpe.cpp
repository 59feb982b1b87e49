#include "text/bpe.h"

#include <algorithm>

#include "text/unicode.h"

namespace ekv {
namespace {

uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

uint64_t mix(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
}

// Min-heap order: lowest rank, then leftmost position.
bool later(const BpeScratch::Candidate& a, const BpeScratch::Candidate& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
}

}  // namespace

Status BpeModel::init(const Vocab* vocab, const std::vector<std::string>& merges,
                      bool ignore_merges) {
    vocab_ = vocab;
    ignore_merges_ = ignore_merges;
    std::string ch;
    for (int b = 0; b < 256; ++b) {
        ch.clear();
        unicode::append_utf8(unicode::byte_to_codepoint(static_cast<uint8_t>(b)), &ch);
        byte_token_[b] = vocab->find(ch);
    }

    size_t cap = 16;
    while (cap < merges.size() * 2) cap <<= 1;
    merges_.assign(cap, MergeSlot{kEmpty, 0, 0});
    mask_ = cap - 1;
    n_merges_ = 0;
    std::string joined;
    for (size_t rank = 0; rank < merges.size(); ++rank) {
        const std::string& m = merges[rank];
        // The separator is the first space not at position 0: the byte
        // alphabet has no space, but be lenient with odd files.
        size_t sp = m.find(' ', 1);
        if (sp == std::string::npos || sp + 1 >= m.size()) {
            return Error(EKV_ERR_INVALID_FILE, "tokenizer merge %zu (\"%s\") is not \"left right\"",
                         rank, m.c_str());
        }
        std::string_view left(m.data(), sp), right(m.data() + sp + 1, m.size() - sp - 1);
        int32_t l = vocab->find(left), r = vocab->find(right);
        joined.assign(left.data(), left.size());
        joined.append(right.data(), right.size());
        int32_t result = vocab->find(joined);
        if (l < 0 || r < 0 || result < 0) continue;
        uint64_t key = pair_key(l, r);
        uint64_t h = mix(key) & mask_;
        while (merges_[h].key != kEmpty && merges_[h].key != key) h = (h + 1) & mask_;
        if (merges_[h].key == key) continue;  // duplicate: the lower rank wins
        merges_[h] = MergeSlot{key, static_cast<int32_t>(rank), result};
        ++n_merges_;
    }
    return Status::Ok();
}

const BpeModel::MergeSlot* BpeModel::find_merge(int32_t left, int32_t right) const {
    uint64_t key = pair_key(left, right);
    uint64_t h = mix(key) & mask_;
    while (merges_[h].key != kEmpty) {
        if (merges_[h].key == key) return &merges_[h];
        h = (h + 1) & mask_;
    }
    return nullptr;
}

void BpeModel::push_candidate(BpeScratch* s, int32_t pos) const {
    if (pos < 0) return;
    const BpeScratch::Symbol& a = s->symbols[pos];
    if (a.next < 0) return;
    const BpeScratch::Symbol& b = s->symbols[a.next];
    if (a.id < 0 || b.id < 0) return;
    const MergeSlot* m = find_merge(a.id, b.id);
    if (!m) return;
    s->heap.push_back({m->rank, pos, a.id, b.id});
    std::push_heap(s->heap.begin(), s->heap.end(), later);
}

void BpeModel::encode_word(std::string_view bytes, BpeScratch* s, std::vector<int32_t>* out) const {
    if (bytes.empty()) return;
    if (ignore_merges_) {
        // A word that is a whole token is taken as is (Llama 3 tokenizers).
        s->mapped.clear();
        for (unsigned char b : bytes) unicode::append_utf8(unicode::byte_to_codepoint(b), &s->mapped);
        int32_t id = vocab_->find(s->mapped);
        if (id >= 0) {
            out->push_back(id);
            return;
        }
    }
    // A byte the vocab cannot spell is dropped before merging, so its
    // neighbours become adjacent: Hugging Face's BPE without an unk_token
    // (byte-level vocabularies often lack bytes that never occur in UTF-8).
    s->symbols.clear();
    for (unsigned char b : bytes) {
        const int32_t id = byte_token_[b];
        if (id < 0) continue;
        const int32_t i = static_cast<int32_t>(s->symbols.size());
        s->symbols.push_back({id, i - 1, -1});
        if (i > 0) s->symbols[i - 1].next = i;
    }
    const int32_t n = static_cast<int32_t>(s->symbols.size());
    if (n == 0) return;
    s->heap.clear();
    for (int32_t i = 0; i + 1 < n; ++i) push_candidate(s, i);

    while (!s->heap.empty()) {
        std::pop_heap(s->heap.begin(), s->heap.end(), later);
        BpeScratch::Candidate c = s->heap.back();
        s->heap.pop_back();
        BpeScratch::Symbol& a = s->symbols[c.pos];
        if (a.id != c.left || a.next < 0) continue;  // left symbol changed or was absorbed
        BpeScratch::Symbol& b = s->symbols[a.next];
        if (b.id != c.right) continue;
        const MergeSlot* m = find_merge(a.id, b.id);
        a.id = m->result;
        int32_t gone = a.next;
        a.next = b.next;
        if (b.next >= 0) s->symbols[b.next].prev = c.pos;
        s->symbols[gone].id = -2;  // dead: never matches a candidate again
        s->symbols[gone].next = -1;
        push_candidate(s, a.prev);
        push_candidate(s, c.pos);
    }
    for (int32_t i = 0; i >= 0; i = s->symbols[i].next) out->push_back(s->symbols[i].id);
}

}  // namespace ekv
