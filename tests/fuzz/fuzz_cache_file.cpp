// Fuzz target: bytes -> ekv_cache_load_from_memory for the caches of the
// tiny Llama, Gemma 3 (hybrid), Jamba (hybrid Mamba) and Mamba fixtures,
// loaded once per process.
//
// Input: one mode byte, then a cache file.
//   bit 0 set:  the file's last 8 bytes are replaced by the FNV-1a checksum
//               of the bytes before them (as cache_file.cpp computes it), so
//               mutations get past the checksum into the body parsers;
//   bit 0 clear: the bytes as they are (checksum, truncation, trailing bytes).
//   The model is the one whose fingerprint the file's header names; when
//   none does, models[(mode >> 1) % n] (the model-mismatch path).
// Invariants:
//   - a refusal is a documented status with a message, *out stays NULL, and
//     the model's other caches are untouched (a witness cache keeps its
//     seq_len and its next-token logits);
//   - a loaded cache saves again, that file loads, saves to the same bytes,
//     and both copies give the same status, seq_len and (bitwise) logits for
//     one more token; the forward succeeds unless the cache is full or the
//     sequence too long.
// Seeds: EKV_FUZZ_WRITE_SEEDS=DIR fuzz_cache_file -runs=1 writes real saved
// caches of each type (see kSeedCaches) into DIR and exits; the committed
// corpus/cache_file/ was made that way (see tests/fuzz/CMakeLists.txt). Most
// seeds there are format version 2 (still loaded); the *_folded ones and the
// *_v3 copies of the composite caches are version 3.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/hash.h"
#include "edgekv.h"

namespace {

constexpr int32_t kProbeToken = 3;  // in every fixture's vocabulary
constexpr size_t kFingerprintOffset = 16;  // magic[8], version, kind, fingerprint

struct FuzzModel {
    FuzzModel(const char* n, const char* f) : name(n), file(f) {}
    const char* name;
    const char* file;  // under EKV_FUZZ_FIXTURES_DIR
    ekv_model* model = nullptr;
    int32_t n_vocab = 0;
    uint64_t fingerprint = 0;
    ekv_cache* witness = nullptr;  // a few tokens in; must never change
    int32_t witness_len = 0;
    std::vector<float> witness_logits;  // of kProbeToken after the witness
};

FuzzModel g_models[] = {
    {"llama", "tiny_llama/tiny_llama_f32.gguf"},
    {"gemma3", "tiny_gemma3/tiny_gemma3_f32.gguf"},
    {"jamba", "tiny_jamba/tiny_jamba_f32.gguf"},
    {"mamba", "tiny_mamba/tiny_mamba_f32.gguf"},
};
constexpr size_t kNumModels = sizeof g_models / sizeof g_models[0];

[[noreturn]] void die(const char* what, const char* detail) {
    std::fprintf(stderr, "fuzz_cache_file: %s: %s\n", what, detail);
    std::abort();
}

void check_refusal(ekv_status st) {
    if (st == EKV_OK || st == EKV_ERR_INTERNAL || ekv_last_error()[0] == '\0') {
        std::fprintf(stderr, "fuzz_cache_file: bad refusal %d: %s\n", static_cast<int>(st), ekv_last_error());
        __builtin_trap();
    }
}

std::vector<int32_t> prompt(int32_t n, int32_t n_vocab) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (int32_t i = 0; i < n; ++i) t[static_cast<size_t>(i)] = (i * 7 + 1) % n_vocab;
    return t;
}

// Logits of kProbeToken appended to a copy of `cache` (the cache stays).
ekv_status probe_logits(const FuzzModel& fm, ekv_cache* cache, std::vector<float>* logits) {
    ekv_cache* copy = nullptr;
    ekv_status st = ekv_cache_clone(cache, &copy);
    if (st != EKV_OK) return st;
    logits->assign(static_cast<size_t>(fm.n_vocab), 0.f);
    st = ekv_forward(fm.model, copy, &kProbeToken, 1, nullptr, EKV_LOGITS_LAST, logits->data(), logits->size());
    ekv_cache_free(copy);
    return st;
}

std::vector<uint8_t> save(ekv_cache* cache) {
    size_t size = 0;
    if (ekv_cache_save_to_memory(cache, nullptr, 0, &size) != EKV_ERR_BUFFER_TOO_SMALL) __builtin_trap();
    std::vector<uint8_t> bytes(size);
    size_t written = 0;
    if (ekv_cache_save_to_memory(cache, bytes.data(), bytes.size(), &written) != EKV_OK || written != size)
        __builtin_trap();
    return bytes;
}

void load_models() {
    ekv_model_params p = ekv_model_default_params();
    p.backend = EKV_BACKEND_CPU;
    p.n_threads = 1;
    for (FuzzModel& fm : g_models) {
        const std::string path = std::string(EKV_FUZZ_FIXTURES_DIR) + "/" + fm.file;
        if (ekv_model_load(path.c_str(), &p, &fm.model) != EKV_OK) die(path.c_str(), ekv_last_error());
        ekv_model_info info = ekv_model_info_default();
        if (ekv_model_get_info(fm.model, &info) != EKV_OK) die(fm.name, ekv_last_error());
        fm.n_vocab = info.n_vocab;
        ekv_cache_params cp = ekv_cache_default_params();
        if (ekv_cache_create(fm.model, &cp, &fm.witness) != EKV_OK) die(fm.name, ekv_last_error());
        const std::vector<int32_t> toks = prompt(3, fm.n_vocab);
        std::vector<float> logits(static_cast<size_t>(fm.n_vocab));
        if (ekv_forward(fm.model, fm.witness, toks.data(), 3, nullptr, EKV_LOGITS_LAST, logits.data(), logits.size()) !=
                EKV_OK ||
            ekv_cache_seq_len(fm.witness, &fm.witness_len) != EKV_OK ||
            probe_logits(fm, fm.witness, &fm.witness_logits) != EKV_OK)
            die(fm.name, ekv_last_error());
        const std::vector<uint8_t> file = save(fm.witness);
        std::memcpy(&fm.fingerprint, file.data() + kFingerprintOffset, sizeof fm.fingerprint);
    }
}

// ---- seed writer -----------------------------------------------------------

struct SeedCache {
    size_t model;
    const char* name;
    ekv_cache_type type;
    ekv_kv_dtype dtype;
    int32_t tokens;
    int32_t max_cache_len, window, sinks, nbits, group, residual;
    ekv_placement placement;
    int32_t crop_to = -1;  // a cropped cache: stores larger than its state
};

// Every generic type on the Llama (rings and KIVI past their window, so the
// ring offsets and quantized groups are in the file) plus each model's
// natural composite cache.
const SeedCache kSeedCaches[] = {
    {0, "llama_dynamic_f16", EKV_CACHE_DYNAMIC, EKV_KV_F16, 5, 0, 0, 0, 0, 0, 0, EKV_PLACEMENT_DEVICE},
    {0, "llama_dynamic_empty", EKV_CACHE_DYNAMIC, EKV_KV_F16, 0, 0, 0, 0, 0, 0, 0, EKV_PLACEMENT_DEVICE},
    {0, "llama_dynamic_f32", EKV_CACHE_DYNAMIC, EKV_KV_F32, 4, 0, 0, 0, 0, 0, 0, EKV_PLACEMENT_DEVICE},
    {0, "llama_static", EKV_CACHE_STATIC, EKV_KV_F16, 6, 8, 0, 0, 0, 0, 0, EKV_PLACEMENT_DEVICE},
    {0, "llama_offloaded", EKV_CACHE_OFFLOADED, EKV_KV_F16, 4, 0, 0, 0, 0, 0, 0, EKV_PLACEMENT_HOST},
    {0, "llama_offloaded_static", EKV_CACHE_OFFLOADED_STATIC, EKV_KV_F16, 3, 4, 0, 0, 0, 0, 0, EKV_PLACEMENT_HOST},
    {0, "llama_sliding", EKV_CACHE_SLIDING_WINDOW, EKV_KV_F16, 9, 0, 4, 0, 0, 0, 0, EKV_PLACEMENT_DEVICE},
    {0, "llama_sink", EKV_CACHE_SINK, EKV_KV_F16, 9, 0, 5, 2, 0, 0, 0, EKV_PLACEMENT_DEVICE},
    {0, "llama_kivi4", EKV_CACHE_QUANTIZED, EKV_KV_KIVI, 13, 0, 0, 0, 4, 4, 4, EKV_PLACEMENT_DEVICE},
    {0, "llama_kivi2", EKV_CACHE_QUANTIZED, EKV_KV_KIVI, 11, 0, 0, 0, 2, 8, 8, EKV_PLACEMENT_DEVICE},
    {0, "llama_sink_kivi", EKV_CACHE_SINK, EKV_KV_KIVI, 14, 0, 10, 2, 4, 4, 4, EKV_PLACEMENT_DEVICE},
    {0, "llama_dynamic_cropped", EKV_CACHE_DYNAMIC, EKV_KV_F16, 6, 0, 0, 0, 0, 0, 0, EKV_PLACEMENT_DEVICE, 2},
    {0, "llama_kivi4_cropped", EKV_CACHE_QUANTIZED, EKV_KV_KIVI, 13, 0, 0, 0, 4, 4, 4, EKV_PLACEMENT_DEVICE, 9},
    // Rings long enough to fold their token ids (version 3's history), one
    // cropped after (its rows were written past its length).
    {0, "llama_sliding_folded", EKV_CACHE_SLIDING_WINDOW, EKV_KV_F16, 300, 0, 4, 0, 0, 0, 0, EKV_PLACEMENT_DEVICE},
    {0, "llama_sink_folded_cropped", EKV_CACHE_SINK, EKV_KV_F16, 300, 0, 5, 2, 0, 0, 0, EKV_PLACEMENT_DEVICE, 298},
    {0, "llama_sink_kivi_folded", EKV_CACHE_SINK, EKV_KV_KIVI, 320, 0, 10, 2, 4, 4, 4, EKV_PLACEMENT_DEVICE},
    {1, "gemma3_hybrid", EKV_CACHE_AUTO, EKV_KV_F16, 10, 16, 0, 0, 0, 0, 0, EKV_PLACEMENT_DEVICE},
    {2, "jamba_hybrid_mamba", EKV_CACHE_AUTO, EKV_KV_F16, 4, 0, 0, 0, 0, 0, 0, EKV_PLACEMENT_DEVICE},
    {3, "mamba", EKV_CACHE_AUTO, EKV_KV_F16, 3, 0, 0, 0, 0, 0, 0, EKV_PLACEMENT_DEVICE},
};

void write_seed(const std::string& dir, const std::string& name, uint8_t mode, const std::vector<uint8_t>& file) {
    const std::string path = dir + "/" + name + ".bin";
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) die("cannot write", path.c_str());
    std::fputc(mode, f);
    std::fwrite(file.data(), 1, file.size(), f);
    if (std::fclose(f) != 0) die("cannot write", path.c_str());
}

[[noreturn]] void write_seeds(const std::string& dir) {
    for (const SeedCache& s : kSeedCaches) {
        const FuzzModel& fm = g_models[s.model];
        ekv_cache_params cp = ekv_cache_default_params();
        cp.type = s.type;
        cp.dtype = s.dtype;
        if (s.max_cache_len) cp.max_cache_len = s.max_cache_len;
        if (s.window) cp.window_length = s.window;
        if (s.sinks) cp.num_sink_tokens = s.sinks;
        if (s.nbits) cp.nbits = s.nbits;
        if (s.group) cp.q_group_size = s.group;
        if (s.residual) cp.residual_length = s.residual;
        cp.offload = s.placement;
        ekv_cache* cache = nullptr;
        if (ekv_cache_create(fm.model, &cp, &cache) != EKV_OK) die(s.name, ekv_last_error());
        if (s.tokens > 0) {
            const std::vector<int32_t> toks = prompt(s.tokens, fm.n_vocab);
            std::vector<float> logits(static_cast<size_t>(fm.n_vocab));
            if (ekv_forward(fm.model, cache, toks.data(), s.tokens, nullptr, EKV_LOGITS_LAST, logits.data(),
                            logits.size()) != EKV_OK)
                die(s.name, ekv_last_error());
        }
        if (s.crop_to >= 0 && ekv_cache_crop(cache, s.crop_to) != EKV_OK) die(s.name, ekv_last_error());
        const std::vector<uint8_t> file = save(cache);
        write_seed(dir, s.name, 1, file);
        if (s.model == 0 && s.type == EKV_CACHE_DYNAMIC && s.tokens > 0 && s.dtype == EKV_KV_F16)
            write_seed(dir, std::string(s.name) + "_raw", 0, file);  // the checksum path as saved
        ekv_cache_free(cache);
    }
    std::fprintf(stderr, "fuzz_cache_file: wrote %zu seeds to %s\n", sizeof kSeedCaches / sizeof kSeedCaches[0],
                 dir.c_str());
    std::_Exit(0);  // libFuzzer reports exit() from a target as a crash
}

// ---- the checks ------------------------------------------------------------

// The logits cost a clone and a forward: they are checked after loads that
// ran forwards of their own (a refused load leaves nothing behind to run,
// and AddressSanitizer watches its writes).
void check_witness(const FuzzModel& fm, bool with_logits) {
    int32_t len = -1;
    if (ekv_cache_seq_len(fm.witness, &len) != EKV_OK || len != fm.witness_len) __builtin_trap();
    if (!with_logits) return;
    std::vector<float> logits;
    if (probe_logits(fm, fm.witness, &logits) != EKV_OK) __builtin_trap();
    if (std::memcmp(logits.data(), fm.witness_logits.data(), logits.size() * sizeof(float)) != 0) __builtin_trap();
}

// One more token on a loaded cache: the status, and the logits when it ran.
ekv_status step(const FuzzModel& fm, ekv_cache* cache, std::vector<float>* logits) {
    int32_t before = -1, after = -1;
    if (ekv_cache_seq_len(cache, &before) != EKV_OK || before < 0) __builtin_trap();
    logits->assign(static_cast<size_t>(fm.n_vocab), 0.f);
    const ekv_status st =
        ekv_forward(fm.model, cache, &kProbeToken, 1, nullptr, EKV_LOGITS_LAST, logits->data(), logits->size());
    if (ekv_cache_seq_len(cache, &after) != EKV_OK) __builtin_trap();
    if (st == EKV_OK) {
        if (after != before + 1) __builtin_trap();
        return st;
    }
    // A loaded cache takes another token unless it is full or too long.
    if (st != EKV_ERR_CACHE_FULL && st != EKV_ERR_CONTEXT_OVERFLOW) __builtin_trap();
    check_refusal(st);
    if (after != before) __builtin_trap();  // a refused forward changes nothing
    return st;
}

void check_loaded(const FuzzModel& fm, ekv_cache* loaded) {
    const std::vector<uint8_t> again = save(loaded);
    ekv_cache* reloaded = nullptr;
    if (ekv_cache_load_from_memory(fm.model, again.data(), again.size(), &reloaded) != EKV_OK) __builtin_trap();
    if (save(reloaded) != again) __builtin_trap();
    int32_t len_a = -1, len_b = -2;
    if (ekv_cache_seq_len(loaded, &len_a) != EKV_OK || ekv_cache_seq_len(reloaded, &len_b) != EKV_OK ||
        len_a != len_b)
        __builtin_trap();
    std::vector<float> la, lb;
    const ekv_status sa = step(fm, loaded, &la), sb = step(fm, reloaded, &lb);
    if (sa != sb) __builtin_trap();
    if (sa == EKV_OK && std::memcmp(la.data(), lb.data(), la.size() * sizeof(float)) != 0) __builtin_trap();
    ekv_cache_free(reloaded);
}

void drop_log(ekv_log_level, const char*, void*) {}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const bool ready = [] {
        ekv_log_set_callback(drop_log, nullptr);
        load_models();
        const char* seeds = std::getenv("EKV_FUZZ_WRITE_SEEDS");
        if (seeds && seeds[0]) write_seeds(seeds);
        return true;
    }();
    (void)ready;
    if (size < 1) return 0;
    const uint8_t mode = data[0];
    std::vector<uint8_t> file(data + 1, data + size);
    if ((mode & 1) && file.size() >= 8) {
        ekv::Fnv1a64 sum;
        sum.add(file.data(), file.size() - 8);
        const uint64_t v = sum.value();
        std::memcpy(file.data() + file.size() - 8, &v, sizeof v);
    }
    size_t pick = (mode >> 1) % kNumModels;
    if (file.size() >= kFingerprintOffset + 8) {
        uint64_t fp = 0;
        std::memcpy(&fp, file.data() + kFingerprintOffset, sizeof fp);
        for (size_t i = 0; i < kNumModels; ++i)
            if (g_models[i].fingerprint == fp) pick = i;
    }
    const FuzzModel& fm = g_models[pick];

    ekv_cache* loaded = reinterpret_cast<ekv_cache*>(&loaded);  // must be reset to NULL on failure
    // An empty buffer is refused as such; data() of an empty vector may be NULL.
    const uint8_t empty = 0;
    const ekv_status st =
        ekv_cache_load_from_memory(fm.model, file.empty() ? &empty : file.data(), file.size(), &loaded);
    if (st != EKV_OK) {
        if (loaded) __builtin_trap();
        check_refusal(st);
    } else {
        if (!loaded) __builtin_trap();
        check_loaded(fm, loaded);
        ekv_cache_free(loaded);
    }
    check_witness(fm, st == EKV_OK);
    return 0;
}
