// Ring caches keep a bounded token history (issue 18): a sink or
// sliding-window ring keeps its sinks' ids and the newest ones it can still
// crop back to, and folds the rest into a digest (cache/token_history.h). On
// the tiny Llama: the id list stays flat over 20,000 tokens; a chat that
// continues a folded ring reuses all of it and computes what a fresh ring
// computes; a prompt that departs in a folded position reuses only the sinks;
// saved files (version 3, and version 2 with the whole id list) load and
// continue; files whose history does not add up are refused. Also: a second
// crop cannot reach ring rows the first one's tokens already overwrote.
#include <cstring>

#include "api/api_internal.h"
#include "core/hash.h"
#include "model/cache_family_util.h"

using namespace ekv_test;

namespace {

constexpr int32_t kWindow = 32, kSinks = 4;
constexpr int32_t kMaxChunk = 128;  // the Llama's forward chunk: the ring keeps a chunk of slack
// What a ring's id list may hold: the sinks and twice the ring's reach
// (window + a chunk), whatever the number of tokens.
constexpr size_t kIdBytesBound = sizeof(int32_t) * (kSinks + 2 * (kWindow + kMaxChunk));

const ekv::Cache& internal(const ekv_cache* c) { return c->session->cache(); }

CacheSpec sink_spec() {
    CacheSpec s;
    s.type = EKV_CACHE_SINK;
    s.window = kWindow;
    s.sinks = kSinks;
    s.name = "sink";
    return s;
}

class RingTokenHistory : public ::testing::Test {
protected:
    void SetUp() override {
        model_ = load_model(fixtures_dir() + "/tiny_llama/tiny_llama_f32.gguf");
        ASSERT_TRUE(model_);
        nv_ = n_vocab(model_.get());
        for (int i = 0; i < 1000; ++i) stream_.push_back(3 + (i * 89 + i / 7) % (nv_ - 3));
    }
    // Greedy generation of up to n tokens after `prompt`.
    std::vector<int32_t> generate(ekv_cache* c, const std::vector<int32_t>& prompt, int32_t n,
                                  ekv_generate_result* r) {
        ekv_generate_params gp = ekv_generate_default_params();
        gp.max_new_tokens = n;
        gp.stop_at_eos = 0;
        std::vector<int32_t> out(static_cast<size_t>(n));
        *r = ekv_generate_default_result();
        EXPECT_EQ(ekv_generate(model_.get(), c, prompt.data(), static_cast<int32_t>(prompt.size()), &gp, out.data(), n,
                               r),
                  EKV_OK)
            << ekv_last_error();
        out.resize(static_cast<size_t>(r->n_generated));
        return out;
    }
    // Logits of one more token (the cache takes it).
    std::vector<float> probe(ekv_cache* c) {
        const int32_t tok = 7;
        std::vector<float> logits(static_cast<size_t>(nv_));
        EXPECT_EQ(ekv_forward(model_.get(), c, &tok, 1, nullptr, EKV_LOGITS_LAST, logits.data(), logits.size()), EKV_OK)
            << ekv_last_error();
        return logits;
    }
    // The probe's logits on a fresh cache of `spec` fed `seq` from scratch.
    std::vector<float> fresh_probe(const CacheSpec& spec, const std::vector<int32_t>& seq) {
        CachePtr c = make(model_.get(), spec);
        feed(model_.get(), c.get(), seq, 0, seq.size(), 100);
        return probe(c.get());
    }
    // What the cache holds after a generation: the prompt and every
    // generated token but the last (never fed).
    static std::vector<int32_t> held_after(std::vector<int32_t> prompt, const std::vector<int32_t>& out) {
        prompt.insert(prompt.end(), out.begin(), out.end() - 1);
        return prompt;
    }
    CachePtr clone(ekv_cache* c) {
        ekv_cache* raw = nullptr;
        EXPECT_EQ(ekv_cache_clone(c, &raw), EKV_OK) << ekv_last_error();
        return CachePtr(raw);
    }
    std::vector<uint8_t> save(ekv_cache* c) {
        size_t size = 0;
        EXPECT_EQ(ekv_cache_save_to_memory(c, nullptr, 0, &size), EKV_ERR_BUFFER_TOO_SMALL);
        std::vector<uint8_t> bytes(size);
        EXPECT_EQ(ekv_cache_save_to_memory(c, bytes.data(), bytes.size(), &size), EKV_OK) << ekv_last_error();
        return bytes;
    }
    ekv_status load(const std::vector<uint8_t>& bytes, CachePtr* out) {
        ekv_cache* raw = nullptr;
        const ekv_status st = ekv_cache_load_from_memory(model_.get(), bytes.data(), bytes.size(), &raw);
        out->reset(raw);
        return st;
    }
    int32_t seq_len(const ekv_cache* c) { return stats_of(c).seq_len; }

    ModelPtr model_;
    int32_t nv_ = 0;
    std::vector<int32_t> stream_;
};

TEST_F(RingTokenHistory, SinkRingIdListStaysFlatOver20000Tokens) {
    CachePtr c = make(model_.get(), sink_spec());
    std::vector<int32_t> chunk;
    std::vector<float> logits(static_cast<size_t>(nv_));
    size_t at_1000 = 0, most = 0;
    for (int32_t fed = 0; fed < 20000; fed += 100) {
        chunk.clear();
        for (int32_t i = 0; i < 100; ++i) chunk.push_back(stream_[static_cast<size_t>(fed + i) % stream_.size()]);
        ASSERT_EQ(ekv_forward(model_.get(), c.get(), chunk.data(), 100, nullptr, EKV_LOGITS_LAST, logits.data(),
                              logits.size()),
                  EKV_OK)
            << ekv_last_error();
        const size_t bytes = internal(c.get()).token_id_bytes();
        most = std::max(most, bytes);
        if (fed + 100 == 1000) at_1000 = bytes;
    }
    const ekv_cache_stats st = stats_of(c.get());
    EXPECT_EQ(st.seq_len, 20000) << "positions keep counting";
    EXPECT_EQ(st.tokens_forwarded, 20000u);
    EXPECT_EQ(st.tokens_held, kWindow);
    EXPECT_LE(most, kIdBytesBound);
    EXPECT_EQ(internal(c.get()).token_id_bytes(), at_1000) << "the id list grew after 1,000 tokens";
    EXPECT_EQ(internal(c.get()).tokens().size(), 20000) << "the history still accounts for every token";
    EXPECT_GT(internal(c.get()).tokens().folded(), 0);

    // The accessor measures the list: a dynamic cache keeps every id.
    CacheSpec dynamic;
    dynamic.name = "dynamic";
    CachePtr d = make(model_.get(), dynamic);
    feed(model_.get(), d.get(), stream_, 0, 1000, 100);
    EXPECT_GE(internal(d.get()).token_id_bytes(), 1000 * sizeof(int32_t));
    EXPECT_EQ(internal(d.get()).tokens().folded(), 0);
}

TEST_F(RingTokenHistory, ChatOnAFoldedSinkRingReusesTheWholeHistory) {
    const CacheSpec spec = sink_spec();
    CachePtr c = make(model_.get(), spec);
    const std::vector<int32_t> prompt1(stream_.begin(), stream_.begin() + 400);
    ekv_generate_result r = ekv_generate_default_result();
    const std::vector<int32_t> out1 = generate(c.get(), prompt1, 8, &r);
    ASSERT_EQ(out1.size(), 8u);
    const int32_t old_len = seq_len(c.get());
    ASSERT_EQ(old_len, 407);
    ASSERT_GT(internal(c.get()).tokens().folded(), 0) << "the ring must have folded for this test";

    // Turn two: the whole history plus a new turn. Everything is reused and
    // the state is the one a fresh ring reaches on the same tokens.
    std::vector<int32_t> prompt2 = held_after(prompt1, out1);
    prompt2.push_back(out1.back());
    prompt2.insert(prompt2.end(), stream_.begin() + 500, stream_.begin() + 510);
    CachePtr twin = clone(c.get());  // for the departing prompts below
    const std::vector<int32_t> out2 = generate(c.get(), prompt2, 4, &r);
    EXPECT_EQ(r.n_prompt_reused, old_len);
    EXPECT_EQ(r.n_prompt_forwarded, static_cast<int32_t>(prompt2.size()) - old_len);
    const std::vector<float> want = fresh_probe(spec, held_after(prompt2, out2));
    EXPECT_LT(normalized_max_error(probe(c.get()).data(), want.data(), nv_), 1e-4);

    ASSERT_GT(internal(twin.get()).tokens().folded() + kSinks, 101) << "positions 50, 51 and 100 must be folded";
    // Departing in a folded position (after the sinks): the digest differs,
    // so only the sinks are reused; the rest is recomputed, correctly.
    std::vector<int32_t> departs = prompt2;
    departs[100] = departs[100] == 5 ? 6 : 5;
    std::vector<int32_t> swapped = prompt2;  // same ids, another order
    std::swap(swapped[50], swapped[51]);
    ASSERT_NE(swapped[50], swapped[51]);
    for (const std::vector<int32_t>* p : {&departs, &swapped}) {
        CachePtr t = clone(twin.get());
        const std::vector<int32_t> out = generate(t.get(), *p, 4, &r);
        EXPECT_EQ(r.n_prompt_reused, kSinks);
        EXPECT_EQ(r.n_prompt_forwarded, static_cast<int32_t>(p->size()) - kSinks);
        const std::vector<float> expect = fresh_probe(spec, held_after(*p, out));
        EXPECT_LT(normalized_max_error(probe(t.get()).data(), expect.data(), nv_), 1e-4);
    }
    // Departing in a held position near the end: reused up to it (a crop).
    std::vector<int32_t> late = prompt2;
    late[static_cast<size_t>(old_len - 3)] = late[static_cast<size_t>(old_len - 3)] == 5 ? 6 : 5;
    {
        CachePtr t = clone(twin.get());
        const std::vector<int32_t> out = generate(t.get(), late, 4, &r);
        EXPECT_EQ(r.n_prompt_reused, old_len - 3);
        const std::vector<float> expect = fresh_probe(spec, held_after(late, out));
        EXPECT_LT(normalized_max_error(probe(t.get()).data(), expect.data(), nv_), 1e-4);
    }
    // A sliding window has no sinks: departing in a folded position reuses nothing.
    CacheSpec window;
    window.type = EKV_CACHE_SLIDING_WINDOW;
    window.window = kWindow;
    window.name = "sliding_window";
    CachePtr w = make(model_.get(), window);
    const std::vector<int32_t> wout = generate(w.get(), prompt1, 8, &r);
    ASSERT_GT(internal(w.get()).tokens().folded(), 0);
    std::vector<int32_t> wprompt = held_after(prompt1, wout);
    wprompt.push_back(wout.back());
    wprompt.insert(wprompt.end(), stream_.begin() + 500, stream_.begin() + 510);
    wprompt[2] = wprompt[2] == 5 ? 6 : 5;
    const std::vector<int32_t> wout2 = generate(w.get(), wprompt, 4, &r);
    EXPECT_EQ(r.n_prompt_reused, 0);
    const std::vector<float> wexpect = fresh_probe(window, held_after(wprompt, wout2));
    EXPECT_LT(normalized_max_error(probe(w.get()).data(), wexpect.data(), nv_), 1e-4);
}

// Version 3 KV body: FileHeader (24 bytes), KvBodyHeader (104), then the
// history (folded, digest, stored_body, stored_q: 24) and the ids.
constexpr size_t kVersionAt = 8, kLenAt = 24 + 60, kNTokensAt = 24 + 88, kHistoryAt = 24 + 104;
constexpr size_t kHistoryBytes = 24, kIdsAt = kHistoryAt + kHistoryBytes;

template <class T>
T get(const std::vector<uint8_t>& b, size_t at) {
    T v;
    std::memcpy(&v, b.data() + at, sizeof v);
    return v;
}
template <class T>
void put(std::vector<uint8_t>* b, size_t at, T v) {
    std::memcpy(b->data() + at, &v, sizeof v);
}
void fix_checksum(std::vector<uint8_t>* b) {
    ekv::Fnv1a64 sum;
    sum.add(b->data(), b->size() - 8);
    put(b, b->size() - 8, sum.value());
}

// The same state in the version-2 layout: no history, every id.
std::vector<uint8_t> as_version2(const std::vector<uint8_t>& v3, const std::vector<int32_t>& all_ids) {
    const uint64_t kept = get<uint64_t>(v3, kNTokensAt);
    std::vector<uint8_t> v2(v3.begin(), v3.begin() + kHistoryAt);
    put<uint32_t>(&v2, kVersionAt, 2);
    put<uint64_t>(&v2, kNTokensAt, all_ids.size());
    const uint8_t* ids = reinterpret_cast<const uint8_t*>(all_ids.data());
    v2.insert(v2.end(), ids, ids + all_ids.size() * sizeof(int32_t));
    v2.insert(v2.end(), v3.begin() + static_cast<long>(kIdsAt + kept * sizeof(int32_t)), v3.end());
    fix_checksum(&v2);
    return v2;
}

TEST_F(RingTokenHistory, FoldedRingSavesLoadsAndContinuesAndVersion2FilesStillLoad) {
    CachePtr c = make(model_.get(), sink_spec());
    const std::vector<int32_t> prompt1(stream_.begin(), stream_.begin() + 400);
    ekv_generate_result r = ekv_generate_default_result();
    const std::vector<int32_t> out1 = generate(c.get(), prompt1, 8, &r);
    const int32_t old_len = seq_len(c.get());
    const std::vector<int32_t> history = held_after(prompt1, out1);
    ASSERT_EQ(static_cast<int32_t>(history.size()), old_len);

    const std::vector<uint8_t> v3 = save(c.get());
    ASSERT_GT(v3.size(), kIdsAt);
    // The layout the version-2 conversion below relies on.
    ASSERT_EQ(get<uint32_t>(v3, kVersionAt), 3u);
    ASSERT_EQ(get<int32_t>(v3, kLenAt), old_len);
    const uint64_t folded = get<uint64_t>(v3, kHistoryAt);
    ASSERT_GT(folded, 0u);
    ASSERT_EQ(get<uint64_t>(v3, kNTokensAt) + folded, static_cast<uint64_t>(old_len));
    ASSERT_EQ(get<int32_t>(v3, kIdsAt), history[0]) << "the sinks' ids come first";

    std::vector<int32_t> prompt2 = history;
    prompt2.push_back(out1.back());
    prompt2.insert(prompt2.end(), stream_.begin() + 600, stream_.begin() + 612);
    CachePtr original = clone(c.get());
    const std::vector<int32_t> want_out = generate(original.get(), prompt2, 4, &r);
    ASSERT_EQ(r.n_prompt_reused, old_len);
    const std::vector<float> want = probe(original.get());

    CachePtr from_v3, from_v2;
    ASSERT_EQ(load(v3, &from_v3), EKV_OK) << ekv_last_error();
    ASSERT_EQ(load(as_version2(v3, history), &from_v2), EKV_OK) << ekv_last_error();
    for (ekv_cache* loaded : {from_v3.get(), from_v2.get()}) {
        EXPECT_EQ(seq_len(loaded), old_len);
        EXPECT_GT(internal(loaded).tokens().folded(), 0) << "a version-2 ring folds on load";
        EXPECT_LE(internal(loaded).token_id_bytes(), kIdBytesBound);
        const std::vector<int32_t> out = generate(loaded, prompt2, 4, &r);
        EXPECT_EQ(r.n_prompt_reused, old_len) << "the loaded ring continues the conversation";
        EXPECT_EQ(out, want_out);
        const std::vector<float> got = probe(loaded);
        EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0) << "not the same state";
    }
    // A re-saved file is version 3 and loads to the same bytes again.
    const std::vector<uint8_t> again = save(from_v2.get());
    EXPECT_EQ(get<uint32_t>(again, kVersionAt), 3u);
    CachePtr reloaded;
    ASSERT_EQ(load(again, &reloaded), EKV_OK) << ekv_last_error();
    EXPECT_EQ(save(reloaded.get()), again);
}

TEST_F(RingTokenHistory, FilesWhoseHistoryDoesNotAddUpAreRefused) {
    CachePtr ring = make(model_.get(), sink_spec());
    feed(model_.get(), ring.get(), stream_, 0, 500, 100);
    const std::vector<uint8_t> good = save(ring.get());
    ASSERT_GT(get<uint64_t>(good, kHistoryAt), 0u);
    CachePtr out;
    ASSERT_EQ(load(good, &out), EKV_OK) << ekv_last_error();
    auto refused = [&](std::vector<uint8_t> bad, const char* what) {
        fix_checksum(&bad);
        CachePtr c;
        EXPECT_EQ(load(bad, &c), EKV_ERR_INVALID_FILE) << what;
        EXPECT_FALSE(c) << what;
        EXPECT_NE(std::strlen(ekv_last_error()), 0u) << what;
    };
    std::vector<uint8_t> b = good;
    put<uint64_t>(&b, kHistoryAt, get<uint64_t>(good, kHistoryAt) + 1);  // folded + kept != len
    refused(b, "counts that do not add up");
    b = good;
    put<uint64_t>(&b, kHistoryAt, get<uint64_t>(good, kHistoryAt) + 1000);  // folded > len
    refused(b, "more folded than consumed");
    b = good;
    put<int32_t>(&b, kHistoryAt + 16, 10);  // rows written end behind the length
    refused(b, "rows behind the length");

    // A cache that keeps every id never folds: a file saying so is refused.
    CacheSpec dynamic;
    dynamic.name = "dynamic";
    CachePtr d = make(model_.get(), dynamic);
    feed(model_.get(), d.get(), stream_, 0, 20, 20);
    std::vector<uint8_t> dyn = save(d.get());
    ASSERT_EQ(get<uint64_t>(dyn, kHistoryAt), 0u);
    // 1 id folded, 19 kept: the counts add up, the cache type forbids it.
    std::vector<uint8_t> folded_dyn(dyn.begin(), dyn.begin() + kIdsAt);
    put<uint64_t>(&folded_dyn, kHistoryAt, 1);
    put<uint64_t>(&folded_dyn, kHistoryAt + 8, 12345);
    put<uint64_t>(&folded_dyn, kNTokensAt, 19);
    folded_dyn.insert(folded_dyn.end(), dyn.begin() + kIdsAt + 4, dyn.end());
    refused(folded_dyn, "a dynamic cache with folded ids");
    b = dyn;
    put<uint64_t>(&b, kHistoryAt + 8, 99);  // a digest of nothing folded
    refused(b, "a digest without folded ids");
}

// A crop lowers the length but not what the ring's rows were overwritten
// with: a second crop back past the rows the first one's tokens overwrote is
// refused (on the cache, its clone and its saved copy), and a legal one
// continues like a fresh cache.
TEST_F(RingTokenHistory, SecondCropCannotReachRowsOverwrittenBeforeTheFirst) {
    CacheSpec window;
    window.type = EKV_CACHE_SLIDING_WINDOW;
    window.window = 8;
    window.name = "sliding_window 8";
    CacheSpec kivi;
    kivi.type = EKV_CACHE_QUANTIZED;
    kivi.dtype = EKV_KV_KIVI;
    kivi.group = 4;
    kivi.residual = 4;
    kivi.name = "quantized, residual ring";
    struct Case {
        CacheSpec spec;
        int32_t fed, first, refused, legal;
    };
    // window 8: the ring's 134 rows hold tokens [fed - 134, fed); a query at
    // p needs [p - 7, p). KIVI (groups of 4, residual 4): its 136 full-
    // precision rows hold [fed - 136, fed); a crop to p needs [p / 4 * 4, p).
    const Case cases[] = {{window, 250, 240, 115, 235}, {kivi, 300, 290, 157, 285}};
    for (const Case& k : cases) {
        CachePtr c = make(model_.get(), k.spec);
        feed(model_.get(), c.get(), stream_, 0, static_cast<size_t>(k.fed), 100);
        ASSERT_EQ(ekv_cache_crop(c.get(), k.first), EKV_OK) << k.spec.name << ": " << ekv_last_error();
        CachePtr copy = clone(c.get()), loaded;
        ASSERT_EQ(load(save(c.get()), &loaded), EKV_OK) << ekv_last_error();
        for (ekv_cache* x : {c.get(), copy.get(), loaded.get()}) {
            EXPECT_EQ(ekv_cache_crop(x, k.refused), EKV_ERR_INVALID_STATE) << k.spec.name;
            EXPECT_EQ(seq_len(x), k.first) << k.spec.name;
            ASSERT_EQ(ekv_cache_crop(x, k.legal), EKV_OK) << k.spec.name << ": " << ekv_last_error();
            const std::vector<float> got = feed(model_.get(), x, stream_, static_cast<size_t>(k.legal), 10, 10);
            // The same tokens cropped once, straight to `legal` (KIVI keeps
            // quantized what a crop keeps, so not a fresh cache).
            CachePtr once = make(model_.get(), k.spec);
            feed(model_.get(), once.get(), stream_, 0, static_cast<size_t>(k.fed), 100);
            ASSERT_EQ(ekv_cache_crop(once.get(), k.legal), EKV_OK) << ekv_last_error();
            const std::vector<float> want =
                feed(model_.get(), once.get(), stream_, static_cast<size_t>(k.legal), 10, 10);
            EXPECT_LT(max_row_error(got, want, nv_), 1e-6) << k.spec.name;
        }
    }
}

}  // namespace
