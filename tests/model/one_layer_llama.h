// A 1-layer copy of the tiny Llama (tests/fixtures/tiny_llama/hf with only
// layer 0): with one layer a token's keys and values depend only on the token
// and its position, so a window or sink cache must give exactly the logits of
// a fresh forward over the tokens it keeps, placed at the in-cache positions
// (StreamingLLM's definition). Shared by the cache-family and ring tests.
#pragma once
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <string>

#include "model/cache_family_util.h"

namespace ekv_test {

// Rewrites a safetensors file without the tensors of layers other than 0.
inline bool write_first_layer_only(const std::string& from, const std::string& to) {
    const std::vector<uint8_t> in = read_bytes(from);
    if (in.size() < 8) return false;
    uint64_t header_len = 0;
    std::memcpy(&header_len, in.data(), 8);
    ekv::json::Value header;
    if (8 + header_len > in.size() ||
        !ekv::json::parse(std::string(in.begin() + 8, in.begin() + 8 + static_cast<long>(header_len)), &header).ok())
        return false;
    std::string json = "{";
    std::vector<uint8_t> data;
    for (const auto& [name, t] : header.obj) {
        if (name == "__metadata__" || (name.rfind("model.layers.", 0) == 0 && name.rfind("model.layers.0.", 0) != 0))
            continue;
        const auto& off = t.get("data_offsets")->arr;
        const size_t b = 8 + header_len + static_cast<size_t>(off[0].num), e = 8 + header_len + static_cast<size_t>(off[1].num);
        std::string shape;
        for (const auto& d : t.get("shape")->arr) shape += (shape.empty() ? "" : ",") + std::to_string(static_cast<long>(d.num));
        json += (json.size() > 1 ? "," : "") + std::string("\"") + name + "\":{\"dtype\":\"" + t.get("dtype")->str +
                "\",\"shape\":[" + shape + "],\"data_offsets\":[" + std::to_string(data.size()) + "," +
                std::to_string(data.size() + (e - b)) + "]}";
        data.insert(data.end(), in.begin() + static_cast<long>(b), in.begin() + static_cast<long>(e));
    }
    json += "}";
    while (json.size() % 8) json += ' ';
    std::vector<uint8_t> out(8);
    const uint64_t n = json.size();
    std::memcpy(out.data(), &n, 8);
    out.insert(out.end(), json.begin(), json.end());
    out.insert(out.end(), data.begin(), data.end());
    write_bytes(to, out);
    return true;
}

// Writes the 1-layer model directory into `dir` and loads it.
inline ModelPtr load_one_layer_llama(TempDir& dir) {
    const std::string src = fixtures_dir() + "/tiny_llama/hf";
    std::ifstream in(src + "/config.json");
    std::string cfg((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string layers = "\"num_hidden_layers\": 2";
    const size_t at = cfg.find(layers);
    EXPECT_NE(at, std::string::npos);
    if (at == std::string::npos) return nullptr;
    cfg.replace(at, layers.size(), "\"num_hidden_layers\": 1");
    std::ofstream(dir.file("config.json")) << cfg;
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
        char abs[4096];
        const bool found = realpath((src + "/" + f).c_str(), abs) != nullptr;
        EXPECT_TRUE(found) << f;
        if (!found || symlink(abs, dir.file(f).c_str()) != 0) return nullptr;
    }
    if (!write_first_layer_only(src + "/model.safetensors", dir.file("model.safetensors"))) return nullptr;
    return load_model(dir.path());
}

}  // namespace ekv_test
