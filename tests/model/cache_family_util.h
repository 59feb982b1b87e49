// Shared by the cache-family tests: a cache spec on the axes, feeding token
// streams in chunks, and logit comparisons.
#pragma once
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "model/test_util.h"

namespace ekv_test {

struct CacheSpec {
    ekv_cache_type type = EKV_CACHE_DYNAMIC;
    ekv_kv_dtype dtype = EKV_KV_F32;
    int32_t max_len = 0;
    int32_t window = 0;
    int32_t sinks = 0;
    int32_t nbits = 4;
    int32_t group = 8;
    int32_t residual = 16;
    ekv_placement offload = EKV_PLACEMENT_DEVICE;
    std::string name;  // for messages
};

inline ekv_status try_make(ekv_model* m, const CacheSpec& s, CachePtr* out) {
    ekv_cache_params p = ekv_cache_default_params();
    p.type = s.type;
    p.dtype = s.dtype;
    p.max_cache_len = s.max_len;
    p.window_length = s.window;
    p.num_sink_tokens = s.sinks;
    p.nbits = s.nbits;
    p.q_group_size = s.group;
    p.residual_length = s.residual;
    p.offload = s.offload;
    ekv_cache* c = nullptr;
    const ekv_status st = ekv_cache_create(m, &p, &c);
    out->reset(c);
    return st;
}

inline CachePtr make(ekv_model* m, const CacheSpec& s) {
    CachePtr c;
    EXPECT_EQ(try_make(m, s, &c), EKV_OK) << s.name << ": " << ekv_last_error();
    return c;
}

// Feeds tokens[first, first + n) in forwards of `chunk` tokens; returns the
// logits of every fed token, [n][n_vocab].
inline std::vector<float> feed(ekv_model* m, ekv_cache* c, const std::vector<int32_t>& tokens, size_t first, size_t n,
                               size_t chunk) {
    const int32_t nv = n_vocab(m);
    std::vector<float> all(n * static_cast<size_t>(nv));
    for (size_t s = 0; s < n; s += chunk) {
        const size_t k = std::min(chunk, n - s);
        const ekv_status st = ekv_forward(m, c, tokens.data() + first + s, static_cast<int32_t>(k), nullptr,
                                          EKV_LOGITS_ALL, all.data() + s * nv, k * static_cast<size_t>(nv));
        EXPECT_EQ(st, EKV_OK) << ekv_last_error();
        if (st != EKV_OK) break;
    }
    return all;
}

// Largest normalized row error between two [rows][n_vocab] logit blocks.
inline double max_row_error(const std::vector<float>& got, const std::vector<float>& want, int32_t nv,
                            size_t first_row = 0) {
    double worst = 0;
    for (size_t r = first_row; r * nv < want.size() && r * nv < got.size(); ++r)
        worst = std::fmax(worst, normalized_max_error(got.data() + r * nv, want.data() + r * nv, nv));
    return worst;
}

inline ekv_cache_stats stats_of(const ekv_cache* c) {
    ekv_cache_stats s = ekv_cache_stats_default();
    EXPECT_EQ(ekv_cache_get_stats(c, &s), EKV_OK);
    return s;
}

// A scratch directory removed with its files at the end of the test.
class TempDir {
public:
    TempDir() {
        char tmpl[] = "/tmp/ekv_test_XXXXXX";
        const char* d = mkdtemp(tmpl);
        path_ = d ? d : "/tmp";
    }
    ~TempDir() {
        for (const std::string& f : files_) std::remove(f.c_str());
        rmdir(path_.c_str());
    }
    std::string file(const std::string& name) {
        files_.push_back(path_ + "/" + name);
        return files_.back();
    }
    const std::string& path() const { return path_; }

private:
    std::string path_;
    std::vector<std::string> files_;
};

inline std::vector<uint8_t> read_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

}  // namespace ekv_test
