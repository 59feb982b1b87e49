// Strict RFC 8259 JSON reader. Recursive descent over a string_view with an
// explicit depth limit, so hostile nesting cannot overflow the stack, and a
// document size limit, so a hostile file cannot make us build a huge tree.
#include "core/json.h"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <new>
#include <system_error>

namespace ekv::json {
namespace {

constexpr int kMaxDepth = 256;
// Parsed values cost ~100 bytes each and can be as small as 2 bytes of text,
// so the document size bounds the memory a hostile file can make us use.
constexpr size_t kMaxDocumentBytes = size_t(512) << 20;

class Parser {
public:
    explicit Parser(std::string_view text) : text_(text) {}

    Status parse_document(Value* out) {
        skip_space();
        EKV_TRY(parse_value(out, 0));
        skip_space();
        if (pos_ != text_.size()) return fail("unexpected content after the JSON value");
        return Status::Ok();
    }

private:
    std::string_view text_;
    size_t pos_ = 0;

    // Error at the current position, with 1-based line and column (in bytes).
    Status fail(const char* what) const {
        size_t line = 1, col = 1;
        const size_t end = std::min(pos_, text_.size());
        for (size_t i = 0; i < end; ++i) {
            if (text_[i] == '\n') {
                ++line;
                col = 1;
            } else {
                ++col;
            }
        }
        return Error(EKV_ERR_INVALID_FILE, "JSON: %s at line %zu, column %zu", what, line, col);
    }

    bool at_end() const { return pos_ >= text_.size(); }
    char peek() const { return text_[pos_]; }

    void skip_space() {
        while (!at_end()) {
            const char c = peek();
            if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
            ++pos_;
        }
    }

    bool consume_literal(std::string_view word) {
        if (text_.substr(pos_, word.size()) != word) return false;
        pos_ += word.size();
        return true;
    }

    Status parse_value(Value* out, int depth) {
        if (at_end()) return fail("unexpected end of input, expected a value");
        switch (peek()) {
            case '{': return parse_object(out, depth + 1);
            case '[': return parse_array(out, depth + 1);
            case '"':
                out->type = Value::Type::String;
                return parse_string(&out->str);
            case 't':
                if (!consume_literal("true")) return fail("invalid literal");
                out->type = Value::Type::Bool;
                out->b = true;
                return Status::Ok();
            case 'f':
                if (!consume_literal("false")) return fail("invalid literal");
                out->type = Value::Type::Bool;
                out->b = false;
                return Status::Ok();
            case 'n':
                if (!consume_literal("null")) return fail("invalid literal");
                out->type = Value::Type::Null;
                return Status::Ok();
            default:
                if (peek() == '-' || (peek() >= '0' && peek() <= '9')) return parse_number(out);
                return fail("unexpected character, expected a value");
        }
    }

    Status parse_array(Value* out, int depth) {
        if (depth > kMaxDepth) return fail("nesting deeper than 256 levels");
        out->type = Value::Type::Array;
        ++pos_;  // '['
        skip_space();
        if (!at_end() && peek() == ']') {
            ++pos_;
            return Status::Ok();
        }
        for (;;) {
            out->arr.emplace_back();
            EKV_TRY(parse_value(&out->arr.back(), depth));
            skip_space();
            if (at_end()) return fail("unexpected end of input inside an array");
            if (peek() == ',') {
                ++pos_;
                skip_space();
                continue;
            }
            if (peek() == ']') {
                ++pos_;
                return Status::Ok();
            }
            return fail("expected ',' or ']' in an array");
        }
    }

    Status parse_object(Value* out, int depth) {
        if (depth > kMaxDepth) return fail("nesting deeper than 256 levels");
        out->type = Value::Type::Object;
        const size_t start = pos_;
        ++pos_;  // '{'
        skip_space();
        if (!at_end() && peek() == '}') {
            ++pos_;
            return Status::Ok();
        }
        for (;;) {
            if (at_end() || peek() != '"') return fail("expected a string key in an object");
            out->obj.emplace_back();
            EKV_TRY(parse_string(&out->obj.back().first));
            skip_space();
            if (at_end() || peek() != ':') return fail("expected ':' after an object key");
            ++pos_;
            skip_space();
            EKV_TRY(parse_value(&out->obj.back().second, depth));
            skip_space();
            if (at_end()) return fail("unexpected end of input inside an object");
            if (peek() == ',') {
                ++pos_;
                skip_space();
                continue;
            }
            if (peek() == '}') {
                ++pos_;
                break;
            }
            return fail("expected ',' or '}' in an object");
        }
        return check_unique_keys(*out, start);
    }

    // RFC 8259 leaves duplicate names undefined; we refuse them so that two
    // readers can never disagree about what a file says.
    Status check_unique_keys(const Value& obj, size_t object_start) {
        if (obj.obj.size() < 2) return Status::Ok();
        std::vector<const std::string*> keys;
        keys.reserve(obj.obj.size());
        for (const auto& kv : obj.obj) keys.push_back(&kv.first);
        std::sort(keys.begin(), keys.end(),
                  [](const std::string* a, const std::string* b) { return *a < *b; });
        for (size_t i = 1; i < keys.size(); ++i) {
            if (*keys[i] == *keys[i - 1]) {
                pos_ = object_start;
                std::string msg = "duplicate object key \"" + keys[i]->substr(0, 200) + "\"";
                return fail(msg.c_str());
            }
        }
        return Status::Ok();
    }

    static int hex_digit(char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    }

    // Reads the 4 hex digits of a \u escape (pos_ just after the 'u').
    Status read_hex4(uint32_t* out) {
        if (text_.size() - pos_ < 4) return fail("truncated \\u escape");
        uint32_t v = 0;
        for (int i = 0; i < 4; ++i) {
            const int d = hex_digit(text_[pos_ + i]);
            if (d < 0) return fail("invalid hex digit in \\u escape");
            v = (v << 4) | static_cast<uint32_t>(d);
        }
        pos_ += 4;
        *out = v;
        return Status::Ok();
    }

    static void append_utf8(uint32_t cp, std::string* s) {
        if (cp < 0x80) {
            s->push_back(static_cast<char>(cp));
        } else if (cp < 0x800) {
            s->push_back(static_cast<char>(0xC0 | (cp >> 6)));
            s->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
        } else if (cp < 0x10000) {
            s->push_back(static_cast<char>(0xE0 | (cp >> 12)));
            s->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
            s->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
        } else {
            s->push_back(static_cast<char>(0xF0 | (cp >> 18)));
            s->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
            s->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
            s->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
        }
    }

    // \uXXXX, possibly the high half of a surrogate pair (pos_ at the 'u').
    Status parse_unicode_escape(std::string* s) {
        ++pos_;  // 'u'
        uint32_t cp = 0;
        EKV_TRY(read_hex4(&cp));
        if (cp >= 0xDC00 && cp <= 0xDFFF) return fail("unpaired low surrogate in \\u escape");
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (text_.substr(pos_, 2) != "\\u") return fail("unpaired high surrogate in \\u escape");
            pos_ += 2;
            uint32_t low = 0;
            EKV_TRY(read_hex4(&low));
            if (low < 0xDC00 || low > 0xDFFF) return fail("high surrogate not followed by a low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        }
        append_utf8(cp, s);
        return Status::Ok();
    }

    // Length of a well-formed UTF-8 sequence starting at pos_ (lead byte
    // >= 0x80), or 0 if malformed (overlong, surrogate, > U+10FFFF, truncated).
    size_t utf8_sequence_length() const {
        const auto byte = [&](size_t i) { return static_cast<uint8_t>(text_[pos_ + i]); };
        const size_t left = text_.size() - pos_;
        const uint8_t b0 = byte(0);
        const auto cont = [&](size_t i) { return i < left && (byte(i) & 0xC0) == 0x80; };
        if (b0 >= 0xC2 && b0 <= 0xDF) return cont(1) ? 2 : 0;
        if (b0 >= 0xE0 && b0 <= 0xEF) {
            if (!cont(1) || !cont(2)) return 0;
            const uint8_t b1 = byte(1);
            if (b0 == 0xE0 && b1 < 0xA0) return 0;  // overlong
            if (b0 == 0xED && b1 >= 0xA0) return 0;  // UTF-16 surrogate
            return 3;
        }
        if (b0 >= 0xF0 && b0 <= 0xF4) {
            if (!cont(1) || !cont(2) || !cont(3)) return 0;
            const uint8_t b1 = byte(1);
            if (b0 == 0xF0 && b1 < 0x90) return 0;  // overlong
            if (b0 == 0xF4 && b1 >= 0x90) return 0;  // above U+10FFFF
            return 4;
        }
        return 0;
    }

    Status parse_string(std::string* s) {
        ++pos_;  // opening quote
        for (;;) {
            // Copy the run of plain ASCII characters in one go.
            size_t run = pos_;
            while (run < text_.size()) {
                const auto c = static_cast<unsigned char>(text_[run]);
                if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) break;
                ++run;
            }
            s->append(text_.data() + pos_, run - pos_);
            pos_ = run;
            if (at_end()) return fail("unterminated string");
            const auto c = static_cast<unsigned char>(peek());
            if (c == '"') {
                ++pos_;
                return Status::Ok();
            }
            if (c < 0x20) return fail("unescaped control character in string");
            if (c >= 0x80) {
                const size_t n = utf8_sequence_length();
                if (n == 0) return fail("invalid UTF-8 in string");
                s->append(text_.data() + pos_, n);
                pos_ += n;
                continue;
            }
            // Backslash escape.
            ++pos_;
            if (at_end()) return fail("unterminated escape in string");
            switch (peek()) {
                case '"': s->push_back('"'); break;
                case '\\': s->push_back('\\'); break;
                case '/': s->push_back('/'); break;
                case 'b': s->push_back('\b'); break;
                case 'f': s->push_back('\f'); break;
                case 'n': s->push_back('\n'); break;
                case 'r': s->push_back('\r'); break;
                case 't': s->push_back('\t'); break;
                case 'u':
                    EKV_TRY(parse_unicode_escape(s));
                    continue;  // parse_unicode_escape moved pos_ already
                default: return fail("invalid escape in string");
            }
            ++pos_;
        }
    }

    bool is_digit_at(size_t i) const { return i < text_.size() && text_[i] >= '0' && text_[i] <= '9'; }

    // Grammar: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
    Status parse_number(Value* out) {
        const size_t start = pos_;
        if (peek() == '-') ++pos_;
        if (!is_digit_at(pos_)) return fail("invalid number");
        // Decimal magnitude estimate, used only to tell overflow from underflow.
        long long magnitude = 0;
        bool seen_nonzero = false;
        if (text_[pos_] == '0') {
            ++pos_;
            if (is_digit_at(pos_)) return fail("leading zero in number");
        } else {
            while (is_digit_at(pos_)) {
                ++pos_;
                ++magnitude;
            }
            seen_nonzero = true;
        }
        if (pos_ < text_.size() && text_[pos_] == '.') {
            ++pos_;
            if (!is_digit_at(pos_)) return fail("expected a digit after the decimal point");
            while (is_digit_at(pos_)) {
                if (!seen_nonzero) {
                    if (text_[pos_] == '0') --magnitude; else seen_nonzero = true;
                }
                ++pos_;
            }
        }
        if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
            ++pos_;
            bool negative_exp = false;
            if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) {
                negative_exp = text_[pos_] == '-';
                ++pos_;
            }
            if (!is_digit_at(pos_)) return fail("expected a digit in the exponent");
            long long exp = 0;
            while (is_digit_at(pos_)) {
                if (exp < 1000000) exp = exp * 10 + (text_[pos_] - '0');
                ++pos_;
            }
            magnitude += negative_exp ? -exp : exp;
        }
        double v = 0.0;
        const char* first = text_.data() + start;
        const char* last = text_.data() + pos_;
        const auto res = std::from_chars(first, last, v);
        if (res.ec == std::errc::result_out_of_range) {
            if (magnitude > 0) return fail("number out of range");
            v = (*first == '-') ? -0.0 : 0.0;  // underflow rounds to zero
        } else if (res.ec != std::errc() || res.ptr != last) {
            return fail("invalid number");
        }
        out->type = Value::Type::Number;
        out->num = v;
        return Status::Ok();
    }
};

}  // namespace

const Value* Value::get(std::string_view key) const {
    if (type != Type::Object) return nullptr;
    for (const auto& kv : obj) {
        if (kv.first == key) return &kv.second;
    }
    return nullptr;
}

Status parse(std::string_view text, Value* out) {
    if (text.size() > kMaxDocumentBytes) {
        return Error(EKV_ERR_INVALID_FILE, "JSON: document of %zu bytes exceeds the %zu byte limit",
                     text.size(), kMaxDocumentBytes);
    }
    try {
        Value result;
        Parser parser(text);
        EKV_TRY(parser.parse_document(&result));
        *out = std::move(result);
        return Status::Ok();
    } catch (const std::bad_alloc&) {
        return Error(EKV_ERR_OUT_OF_MEMORY, "JSON: out of memory parsing a %zu byte document", text.size());
    }
}

}  // namespace ekv::json
