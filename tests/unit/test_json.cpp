// Strict JSON reader: valid documents, every error class, limits.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "core/json.h"

namespace {

using ekv::json::Value;

Value parse_ok(const std::string& text) {
    Value v;
    ekv::Status st = ekv::json::parse(text, &v);
    EXPECT_TRUE(st.ok()) << "input: " << text << "\nerror: " << st.message();
    return v;
}

ekv::Status parse_status(const std::string& text) {
    Value v;
    return ekv::json::parse(text, &v);
}

void expect_invalid(const std::string& text) {
    ekv::Status st = parse_status(text);
    EXPECT_EQ(st.code(), EKV_ERR_INVALID_FILE) << "input accepted: " << text;
    EXPECT_NE(st.message().find("line"), std::string::npos) << st.message();
}

TEST(Json, Scalars) {
    EXPECT_TRUE(parse_ok("null").is_null());
    Value t = parse_ok(" true ");
    ASSERT_TRUE(t.is_bool());
    EXPECT_TRUE(t.b);
    Value f = parse_ok("false");
    ASSERT_TRUE(f.is_bool());
    EXPECT_FALSE(f.b);
    Value s = parse_ok("\"hi\"");
    ASSERT_TRUE(s.is_string());
    EXPECT_EQ(s.str, "hi");
}

TEST(Json, Numbers) {
    struct Case { const char* text; double value; };
    const Case cases[] = {
        {"0", 0.0},        {"-0", -0.0},          {"42", 42.0},        {"-17", -17.0},
        {"3.25", 3.25},    {"1e3", 1000.0},       {"1E+2", 100.0},     {"2.5e-3", 0.0025},
        {"1e-400", 0.0},   {"0.1", 0.1},          {"10000000000", 1e10},
        {"1.0000000000000002", 1.0000000000000002},
    };
    for (const Case& c : cases) {
        Value v = parse_ok(c.text);
        ASSERT_TRUE(v.is_number()) << c.text;
        EXPECT_DOUBLE_EQ(v.num, c.value) << c.text;
    }
    EXPECT_TRUE(std::signbit(parse_ok("-0").num));
}

TEST(Json, InvalidNumbers) {
    for (const char* bad : {"01", "-", "+1", ".5", "1.", "1e", "1e+", "0x10", "--1", "1.5.2", "NaN",
                            "Infinity", "-Infinity", "1e400", "-1e999", "00"}) {
        expect_invalid(bad);
    }
}

TEST(Json, StringEscapes) {
    Value v = parse_ok(R"("a\"b\\c\/d\b\f\n\r\t")");
    EXPECT_EQ(v.str, std::string("a\"b\\c/d\b\f\n\r\t"));
    EXPECT_EQ(parse_ok(R"("\u0041\u00e9\u20AC")").str, "A\xC3\xA9\xE2\x82\xAC");
    EXPECT_EQ(parse_ok(R"("\u0000")").str, std::string("\0", 1));
    // U+1F600 as a surrogate pair -> 4-byte UTF-8.
    EXPECT_EQ(parse_ok(R"("\ud83d\ude00")").str, "\xF0\x9F\x98\x80");
    // Raw UTF-8 passes through unchanged.
    EXPECT_EQ(parse_ok("\"\xC4\xA0hello \xF0\x9F\x98\x80\"").str, "\xC4\xA0hello \xF0\x9F\x98\x80");
}

TEST(Json, InvalidStrings) {
    for (const char* bad : {
             "\"abc",             // unterminated
             "\"a\\x\"",          // bad escape
             "\"\\u12\"",         // short \u
             "\"\\u12G4\"",       // bad hex
             "\"\\ud83d\"",       // lone high surrogate
             "\"\\ude00\"",       // lone low surrogate
             "\"\\ud83d\\u0041\"",  // high surrogate + non-surrogate
             "\"a\tb\"",          // raw control character
             "\"\xC0\x80\"",      // overlong NUL
             "\"\xED\xA0\x80\"",  // encoded surrogate
             "\"\xF5\x80\x80\x80\"",  // above U+10FFFF
             "\"\xE2\x82\"",      // truncated sequence
             "\"\x80\"",          // lone continuation byte
             "'single'",
         }) {
        expect_invalid(bad);
    }
}

TEST(Json, ArraysAndObjects) {
    Value v = parse_ok(R"({"a": [1, 2, {"b": null}], "c": {}, "d": [], "e": "x"})");
    ASSERT_TRUE(v.is_object());
    ASSERT_EQ(v.obj.size(), 4u);
    EXPECT_EQ(v.obj[0].first, "a");  // insertion order kept
    EXPECT_EQ(v.obj[3].first, "e");
    const Value* a = v.get("a");
    ASSERT_NE(a, nullptr);
    ASSERT_TRUE(a->is_array());
    ASSERT_EQ(a->arr.size(), 3u);
    EXPECT_EQ(a->arr[1].num, 2.0);
    ASSERT_NE(a->arr[2].get("b"), nullptr);
    EXPECT_TRUE(a->arr[2].get("b")->is_null());
    EXPECT_TRUE(v.get("c")->is_object());
    EXPECT_TRUE(v.get("d")->arr.empty());
    EXPECT_EQ(v.get("missing"), nullptr);
    EXPECT_EQ(a->get("a"), nullptr);  // get() on a non-object
}

TEST(Json, InvalidStructure) {
    for (const char* bad : {"", "   ", "[1,]", "[1 2]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "{1:2}",
                            "[", "{", "]", "[1}", "{\"a\":1]", "tru", "nul", "true false", "{} {}",
                            "[1]x", "/* c */ 1", "\xEF\xBB\xBF{}"}) {
        expect_invalid(bad);
    }
}

TEST(Json, DuplicateKeysRefused) {
    ekv::Status st = parse_status(R"({"a": 1, "b": 2, "a": 3})");
    EXPECT_EQ(st.code(), EKV_ERR_INVALID_FILE);
    EXPECT_NE(st.message().find("duplicate object key \"a\""), std::string::npos) << st.message();
    // Same key in different objects is fine.
    parse_ok(R"({"a": {"a": 1}, "b": {"a": 2}})");
}

TEST(Json, DepthLimit) {
    std::string ok = std::string(256, '[') + std::string(256, ']');
    parse_ok(ok);
    std::string deep = std::string(257, '[') + std::string(257, ']');
    ekv::Status st = parse_status(deep);
    EXPECT_EQ(st.code(), EKV_ERR_INVALID_FILE);
    EXPECT_NE(st.message().find("nesting"), std::string::npos) << st.message();
    // Far deeper than any stack could take recursively: still a clean error.
    std::string hostile(1000000, '[');
    EXPECT_EQ(parse_status(hostile).code(), EKV_ERR_INVALID_FILE);
    std::string objects;
    for (int i = 0; i < 300; ++i) objects += "{\"k\":";
    EXPECT_EQ(parse_status(objects).code(), EKV_ERR_INVALID_FILE);
}

TEST(Json, ErrorPositionHasLineAndColumn) {
    ekv::Status st = parse_status("{\n  \"a\": 1,\n  \"b\": tru\n}");
    EXPECT_EQ(st.code(), EKV_ERR_INVALID_FILE);
    EXPECT_NE(st.message().find("line 3, column 8"), std::string::npos) << st.message();
}

TEST(Json, OutputUntouchedOnError) {
    Value v;
    v.type = Value::Type::String;
    v.str = "keep";
    EXPECT_FALSE(ekv::json::parse("[1, 2", &v).ok());
    EXPECT_TRUE(v.is_string());
    EXPECT_EQ(v.str, "keep");
}

TEST(Json, EmbeddedNulInInputIsAnError) {
    std::string text("[1]\0", 4);
    EXPECT_EQ(parse_status(text).code(), EKV_ERR_INVALID_FILE);
    std::string in_string("\"a\0b\"", 5);
    EXPECT_EQ(parse_status(in_string).code(), EKV_ERR_INVALID_FILE);
}

TEST(Json, LargeFlatObject) {
    std::string text = "{";
    for (int i = 0; i < 20000; ++i) {
        if (i) text += ",";
        text += "\"tok" + std::to_string(i) + "\":" + std::to_string(i);
    }
    text += "}";
    Value v = parse_ok(text);
    ASSERT_EQ(v.obj.size(), 20000u);
    EXPECT_EQ(v.obj[12345].first, "tok12345");
    EXPECT_EQ(v.obj[12345].second.num, 12345.0);
}

}  // namespace
