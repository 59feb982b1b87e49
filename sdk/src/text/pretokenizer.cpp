#include "text/pretokenizer.h"

#include "text/unicode.h"

namespace ekv {
namespace {

using unicode::kClassLetter;
using unicode::kClassNumber;
using unicode::kClassWhitespace;

// View of a decoded fragment; matchers never look at or past `end`, which is
// how regex lookahead behaves when a previous pre-tokenizer split the text.
struct Cursor {
    const uint32_t* cp;
    const uint8_t* cls;
    size_t end;

    bool letter(size_t i) const { return i < end && (cls[i] & kClassLetter); }
    bool number(size_t i) const { return i < end && (cls[i] & kClassNumber); }
    bool space(size_t i) const { return i < end && (cls[i] & kClassWhitespace); }
    // [^\s\p{L}\p{N}]
    bool other(size_t i) const { return i < end && cls[i] == 0; }
    bool newline(size_t i) const { return i < end && (cp[i] == '\r' || cp[i] == '\n'); }
    uint32_t at(size_t i) const { return i < end ? cp[i] : 0; }

    size_t skip_letters(size_t i) const {
        while (letter(i)) ++i;
        return i;
    }
    size_t skip_numbers(size_t i) const {
        while (number(i)) ++i;
        return i;
    }
    size_t skip_others(size_t i) const {
        while (other(i)) ++i;
        return i;
    }
    size_t skip_spaces(size_t i) const {
        while (space(i)) ++i;
        return i;
    }
};

// Simple case folding restricted to what (?i:'s|'t|'re|'ve|'m|'ll|'d) can
// meet: ASCII, and U+017F LATIN SMALL LETTER LONG S, which folds to 's'.
uint32_t fold_case(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    return c == 0x17F ? 's' : c;
}

// 's|'t|'re|'ve|'m|'ll|'d at i (which holds an apostrophe); returns the end
// index or 0 when none matches.
size_t match_contraction(const Cursor& c, size_t i, bool ignore_case) {
    auto fold = [&](size_t k) { return ignore_case ? fold_case(c.at(k)) : c.at(k); };
    uint32_t a = fold(i + 1);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    uint32_t b = fold(i + 2);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    return 0;
}

// \s+(?!\S)|\s+ at i (a whitespace code point): the whole run when it ends
// the text, else the run minus its last code point (which then prefixes the
// next word), else that single code point.
size_t match_trailing_space(const Cursor& c, size_t i) {
    size_t run_end = c.skip_spaces(i);
    if (run_end == c.end) return run_end;
    if (run_end - i >= 2) return run_end - 1;
    return run_end;
}

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
size_t match_gpt2(const Cursor& c, size_t i) {
    if (c.at(i) == '\'') {
        if (size_t e = match_contraction(c, i, false)) return e;
    }
    size_t body = (c.at(i) == ' ') ? i + 1 : i;  // the optional leading space
    if (c.letter(body)) return c.skip_letters(body);
    if (c.number(body)) return c.skip_numbers(body);
    if (c.other(body)) return c.skip_others(body);
    if (c.space(i)) return match_trailing_space(c, i);
    return i + 1;  // unreachable: every code point has a class or none
}

// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
size_t match_llama3(const Cursor& c, size_t i) {
    if (c.at(i) == '\'') {
        if (size_t e = match_contraction(c, i, true)) return e;
    }
    // One optional non-letter, non-digit, non-newline prefix, then letters.
    if (!c.newline(i) && !c.letter(i) && !c.number(i) && c.letter(i + 1)) {
        return c.skip_letters(i + 1);
    }
    if (c.letter(i)) return c.skip_letters(i);
    if (c.number(i)) {
        size_t e = i + 1;
        while (e < i + 3 && c.number(e)) ++e;
        return e;
    }
    size_t body = (c.at(i) == ' ') ? i + 1 : i;
    if (c.other(body)) {
        size_t e = c.skip_others(body);
        while (c.newline(e)) ++e;
        return e;
    }
    if (c.space(i)) {
        // \s*[\r\n]+ : up to and including the last newline of the run.
        size_t run_end = c.skip_spaces(i);
        for (size_t k = run_end; k > i; --k) {
            if (c.newline(k - 1)) return k;
        }
        return match_trailing_space(c, i);
    }
    return i + 1;
}

void decode(std::string_view text, PreTokenizerScratch* s) {
    s->cps.clear();
    s->cls.clear();
    s->offsets.clear();
    size_t pos = 0;
    while (pos < text.size()) {
        uint32_t cp;
        size_t len = unicode::decode_utf8(text, pos, &cp);
        s->cps.push_back(cp);
        // An invalid byte is "other" punctuation-like, whatever it decodes to.
        s->cls.push_back(len == 1 && cp == unicode::kInvalidCodepoint ? 0 : unicode::classify(cp));
        s->offsets.push_back(static_cast<uint32_t>(pos));
        pos += len;
    }
    s->offsets.push_back(static_cast<uint32_t>(text.size()));
}

template <typename Matcher>
void split_range(const PreTokenizerScratch& s, size_t begin, size_t end, Matcher match,
                 std::vector<TextSpan>* spans) {
    Cursor c{s.cps.data(), s.cls.data(), end};
    size_t i = begin;
    while (i < end) {
        size_t e = match(c, i);
        if (e <= i) e = i + 1;  // guarantee progress
        spans->push_back({s.offsets[i], s.offsets[e]});
        i = e;
    }
}

}  // namespace

bool pre_tokenizer_from_name(std::string_view name, PreTokenizerKind* out) {
    if (name == "gpt2" || name == "default") {
        *out = PreTokenizerKind::Gpt2;
    } else if (name == "smollm") {
        *out = PreTokenizerKind::SmolLM;
    } else if (name == "llama-bpe" || name == "llama3") {
        *out = PreTokenizerKind::Llama3;
    } else {
        return false;
    }
    return true;
}

void pre_tokenize(PreTokenizerKind kind, std::string_view text, PreTokenizerScratch* scratch,
                  std::vector<TextSpan>* spans) {
    decode(text, scratch);
    const size_t n = scratch->cps.size();
    switch (kind) {
        case PreTokenizerKind::Gpt2:
            split_range(*scratch, 0, n, match_gpt2, spans);
            break;
        case PreTokenizerKind::Llama3:
            split_range(*scratch, 0, n, match_llama3, spans);
            break;
        case PreTokenizerKind::SmolLM: {
            // Digits(individual_digits=True) first: each \p{N} is its own
            // piece, and the GPT-2 regex runs on the text between them.
            size_t piece = 0;
            for (size_t i = 0; i <= n; ++i) {
                if (i < n && !(scratch->cls[i] & kClassNumber)) continue;
                split_range(*scratch, piece, i, match_gpt2, spans);
                if (i < n) spans->push_back({scratch->offsets[i], scratch->offsets[i + 1]});
                piece = i + 1;
            }
            break;
        }
    }
}

}  // namespace ekv
