// Stand-in for libFuzzer's main, so that gcc (and any build without
// -fsanitize=fuzzer) fuzzes too. Links with one fuzz target.
//
//   fuzz_gguf [-runs=N] [-max_total_time=S] [-seed=N] [-max_len=N] PATH...
//
// Flags are spelled as libFuzzer's so one command line serves both builds.
// It replays every file under each PATH (files or directories), then mutates
// them deterministically (seeded PRNG): bit flips, bytes set to 0/0xff/0x7f/
// 0x80, truncations, large u64/u32 values written or inserted at random
// offsets, chunk copies and erasures. It stops after N mutated runs or S
// seconds, whichever comes first (defaults: 100000 runs, 60 s). A crashing
// input (sanitizer report, trap, or fatal signal) is saved as
// ./fuzz-crash.bin before the process dies.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include <csignal>
#include <fcntl.h>
#include <unistd.h>

// The sanitizer runtime (only linked in sanitizer builds) can tell us when it
// is about to report and die.
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EKV_FUZZ_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(EKV_FUZZ_ASAN)
#include <sanitizer/common_interface_defs.h>
#define EKV_HAVE_DEATH_CALLBACK 1
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

// The input being run, for the crash handlers.
const uint8_t* volatile g_current = nullptr;
volatile size_t g_current_size = 0;

// Async-signal-safe: only open/write/close.
void save_current_input() {
    const uint8_t* data = g_current;
    if (!data) return;
    const int fd = ::open("fuzz-crash.bin", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return;
    size_t done = 0;
    while (done < g_current_size) {
        const ssize_t n = ::write(fd, data + done, g_current_size - done);
        if (n <= 0) break;
        done += static_cast<size_t>(n);
    }
    ::close(fd);
    static const char msg[] = "fuzz_main: crashing input saved to fuzz-crash.bin\n";
    (void)!::write(2, msg, sizeof msg - 1);
}

void on_fatal_signal(int sig) {
    save_current_input();
    std::signal(sig, SIG_DFL);
    std::raise(sig);
}

void install_crash_handlers() {
#if defined(EKV_HAVE_DEATH_CALLBACK)
    __sanitizer_set_death_callback(save_current_input);  // sanitizer reports
#else
    // Without a sanitizer runtime nobody else handles these.
    std::signal(SIGSEGV, on_fatal_signal);
    std::signal(SIGBUS, on_fatal_signal);
#endif
    std::signal(SIGILL, on_fatal_signal);  // __builtin_trap in the targets
    std::signal(SIGABRT, on_fatal_signal);
    std::signal(SIGFPE, on_fatal_signal);
}

// Runs one input from an exact-size heap copy, so reads past its end are
// caught by AddressSanitizer.
void run_one(const Bytes& input) {
    std::unique_ptr<uint8_t[]> copy(new uint8_t[input.empty() ? 1 : input.size()]);
    if (!input.empty()) std::memcpy(copy.get(), input.data(), input.size());
    g_current = copy.get();
    g_current_size = input.size();
    LLVMFuzzerTestOneInput(copy.get(), input.size());
    g_current = nullptr;
}

class Rng {  // splitmix64: tiny, fast, deterministic
public:
    explicit Rng(uint64_t seed) : state_(seed) {}
    uint64_t next() {
        uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    size_t below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(next() % n); }

private:
    uint64_t state_;
};

uint64_t interesting_u64(Rng& rng, size_t input_size) {
    const uint64_t values[] = {
        ~0ull, 1ull << 63, (1ull << 63) - 1, 1ull << 32, (1ull << 32) - 1, 1ull << 31, 1ull << 40,
        1ull << 62, 0, 1, 2, 4, 5, 8, 32, 255, 256, 4096, input_size, input_size + 1, input_size - 8,
    };
    return values[rng.below(std::size(values))];
}

uint32_t interesting_u32(Rng& rng) {
    const uint32_t values[] = {0, 1, 2, 3, 4, 5, 8, 9, 10, 12, 13, 14, 24, 30, 31, 99, 0x7fffffffu, 0x80000000u, 0xffffffffu};
    return values[rng.below(std::size(values))];
}

void mutate(Bytes& b, Rng& rng, size_t max_len) {
    const int n_mutations = 1 + static_cast<int>(rng.below(4));
    for (int m = 0; m < n_mutations; ++m) {
        switch (rng.below(9)) {
            case 0:  // bit flip
                if (!b.empty()) b[rng.below(b.size())] ^= static_cast<uint8_t>(1u << rng.below(8));
                break;
            case 1: {  // byte set to a boundary value
                static const uint8_t kBytes[] = {0x00, 0xff, 0x7f, 0x80};
                if (!b.empty()) b[rng.below(b.size())] = kBytes[rng.below(4)];
                break;
            }
            case 2:  // truncation
                b.resize(rng.below(b.size() + 1));
                break;
            case 3: {  // large u64 written over existing bytes (fields keep their places)
                if (b.size() < 8) break;
                const uint64_t v = interesting_u64(rng, b.size());
                std::memcpy(b.data() + rng.below(b.size() - 7), &v, 8);
                break;
            }
            case 4: {  // large u64 inserted
                const uint64_t v = interesting_u64(rng, b.size());
                uint8_t raw[8];
                std::memcpy(raw, &v, 8);
                const size_t at = rng.below(b.size() + 1);
                b.insert(b.begin() + static_cast<ptrdiff_t>(at), raw, raw + 8);
                break;
            }
            case 5: {  // u32 (types, n_dims, versions) written at a 4-aligned offset
                if (b.size() < 4) break;
                const uint32_t v = interesting_u32(rng);
                std::memcpy(b.data() + (rng.below(b.size() - 3) & ~size_t(3)), &v, 4);
                break;
            }
            case 6: {  // copy a chunk elsewhere (duplicates names and keys)
                if (b.size() < 2) break;
                const size_t from = rng.below(b.size());
                const size_t len = 1 + rng.below(std::min<size_t>(64, b.size() - from));
                const Bytes chunk(b.begin() + static_cast<ptrdiff_t>(from), b.begin() + static_cast<ptrdiff_t>(from + len));
                const size_t to = rng.below(b.size() + 1);
                b.insert(b.begin() + static_cast<ptrdiff_t>(to), chunk.begin(), chunk.end());
                break;
            }
            case 7: {  // erase a chunk
                if (b.empty()) break;
                const size_t from = rng.below(b.size());
                const size_t len = 1 + rng.below(std::min<size_t>(32, b.size() - from));
                b.erase(b.begin() + static_cast<ptrdiff_t>(from), b.begin() + static_cast<ptrdiff_t>(from + len));
                break;
            }
            default:  // random byte
                if (!b.empty()) b[rng.below(b.size())] = static_cast<uint8_t>(rng.next());
                break;
        }
    }
    if (b.size() > max_len) b.resize(max_len);
}

bool read_file(const fs::path& p, Bytes* out) {
    std::ifstream f(p, std::ios::binary);
    if (!f) return false;
    out->assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    return true;
}

bool parse_flag(const char* arg, const char* name, unsigned long long* out) {
    const size_t n = std::strlen(name);
    if (std::strncmp(arg, name, n) != 0 || arg[n] != '=') return false;
    *out = std::strtoull(arg + n + 1, nullptr, 10);
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    unsigned long long runs = 100000, max_time = 60, seed = 1, max_len = 1 << 16;
    std::vector<Bytes> corpus;
    for (int i = 1; i < argc; ++i) {
        const char* a = argv[i];
        if (parse_flag(a, "-runs", &runs) || parse_flag(a, "-max_total_time", &max_time) ||
            parse_flag(a, "-seed", &seed) || parse_flag(a, "-max_len", &max_len)) {
            continue;
        }
        if (a[0] == '-') {
            std::fprintf(stderr, "fuzz_main: ignoring unknown flag %s\n", a);
            continue;
        }
        std::error_code ec;
        std::vector<fs::path> files;
        if (fs::is_directory(a, ec)) {
            for (const auto& e : fs::directory_iterator(a, ec)) {
                if (e.is_regular_file(ec)) files.push_back(e.path());
            }
            std::sort(files.begin(), files.end());  // deterministic order
        } else {
            files.push_back(a);
        }
        for (const fs::path& p : files) {
            Bytes b;
            if (!read_file(p, &b)) {
                std::fprintf(stderr, "fuzz_main: cannot read %s\n", p.string().c_str());
                return 2;
            }
            corpus.push_back(std::move(b));
        }
    }
    install_crash_handlers();

    for (const Bytes& b : corpus) run_one(b);
    std::fprintf(stderr, "fuzz_main: replayed %zu corpus inputs\n", corpus.size());
    if (corpus.empty()) corpus.push_back(Bytes());

    Rng rng(seed);
    const auto start = std::chrono::steady_clock::now();
    uint64_t done = 0;
    for (; done < runs; ++done) {
        if ((done & 255) == 0) {
            const auto elapsed = std::chrono::steady_clock::now() - start;
            if (elapsed >= std::chrono::seconds(max_time)) break;
        }
        Bytes b = corpus[rng.below(corpus.size())];
        mutate(b, rng, static_cast<size_t>(max_len));
        run_one(b);
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr, "fuzz_main: %llu mutated runs in %.1f s (%.0f exec/s), seed %llu, no crash\n",
                 static_cast<unsigned long long>(done), secs, secs > 0 ? done / secs : 0.0, seed);
    return 0;
}
