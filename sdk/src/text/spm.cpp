#include "text/spm.h"

#include <algorithm>
#include <cstdio>

namespace ekv {
namespace {

// Max-heap order: highest score, then leftmost.
bool lower_priority(const SpmScratch::Bigram& a, const SpmScratch::Bigram& b) {
    return a.score != b.score ? a.score < b.score : a.left > b.left;
}

uint32_t utf8_char_len(unsigned char lead) {
    if (lead < 0x80) return 1;
    if ((lead & 0xE0) == 0xC0) return 2;
    if ((lead & 0xF0) == 0xE0) return 3;
    if ((lead & 0xF8) == 0xF0) return 4;
    return 1;  // stray continuation or invalid byte: a symbol of its own
}

}  // namespace

void SpmModel::init(const Vocab* vocab, int32_t unk_id) {
    vocab_ = vocab;
    unk_id_ = unk_id;
    char name[8];
    for (int b = 0; b < 256; ++b) {
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        byte_token_[b] = vocab->find(name);
    }
}

int32_t SpmModel::lookup(std::string_view piece) const {
    int32_t id = vocab_->find(piece);
    if (id < 0) return -1;
    int32_t t = vocab_->type(id);
    // Control, byte and unused pieces are never produced by merging text.
    return (t == kTokenNormal || t == kTokenUserDefined || t == kTokenUndefined) ? id : -1;
}

void SpmModel::push_bigram(std::string_view text, SpmScratch* s, int32_t left) const {
    if (left < 0) return;
    const SpmScratch::Symbol& a = s->symbols[left];
    if (a.next < 0) return;
    const SpmScratch::Symbol& b = s->symbols[a.next];
    uint32_t len = a.len + b.len;
    int32_t id = lookup(text.substr(a.start, len));
    if (id < 0) return;
    s->heap.push_back({vocab_->score(id), left, a.next, len});
    std::push_heap(s->heap.begin(), s->heap.end(), lower_priority);
}

void SpmModel::encode(std::string_view text, SpmScratch* s, std::vector<int32_t>* out) const {
    s->symbols.clear();
    s->heap.clear();
    for (uint32_t pos = 0; pos < text.size();) {
        uint32_t len = std::min<uint32_t>(utf8_char_len(static_cast<unsigned char>(text[pos])),
                                          static_cast<uint32_t>(text.size()) - pos);
        int32_t idx = static_cast<int32_t>(s->symbols.size());
        s->symbols.push_back({pos, len, idx - 1, -1});
        if (idx > 0) s->symbols[idx - 1].next = idx;
        pos += len;
    }
    for (int32_t i = 0; i + 1 < static_cast<int32_t>(s->symbols.size()); ++i) push_bigram(text, s, i);

    while (!s->heap.empty()) {
        std::pop_heap(s->heap.begin(), s->heap.end(), lower_priority);
        SpmScratch::Bigram bg = s->heap.back();
        s->heap.pop_back();
        SpmScratch::Symbol& a = s->symbols[bg.left];
        if (a.len == 0 || a.next != bg.right) continue;
        SpmScratch::Symbol& b = s->symbols[bg.right];
        if (b.len == 0 || a.len + b.len != bg.len) continue;  // a side grew since queued
        a.len += b.len;
        b.len = 0;
        a.next = b.next;
        if (b.next >= 0) s->symbols[b.next].prev = bg.left;
        push_bigram(text, s, a.prev);
        push_bigram(text, s, bg.left);
    }

    for (int32_t i = s->symbols.empty() ? -1 : 0; i >= 0; i = s->symbols[i].next) {
        const SpmScratch::Symbol& sym = s->symbols[i];
        std::string_view piece = text.substr(sym.start, sym.len);
        int32_t id = lookup(piece);
        if (id >= 0) {
            out->push_back(id);
            continue;
        }
        // Byte fallback when every byte has a <0xAB> token, else one <unk>.
        bool all_bytes = true;
        for (unsigned char b : piece) all_bytes = all_bytes && byte_token_[b] >= 0;
        if (all_bytes) {
            for (unsigned char b : piece) out->push_back(byte_token_[b]);
        } else if (unk_id_ >= 0) {
            out->push_back(unk_id_);
        }
    }
}

}  // namespace ekv
