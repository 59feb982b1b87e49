// The per-call stop request of ekv_forward_ex (ekv_forward_params.cancel):
// it and the cache's attached request each stop the call, a stopped call
// leaves the cache exactly as before (as in test_cancel.cpp: same length and
// the same next logits as a cache that never saw the call), the request is
// neither attached to the cache nor kept after the call, and the params
// struct is read by its struct_size like the other versioned structs.
#include <cstring>
#include <thread>

#include "threads/thread_test_util.h"

namespace ekv_test {
namespace {

struct CancelDeleter {
    void operator()(ekv_cancel* c) const { ekv_cancel_free(c); }
};
using CancelPtr = std::unique_ptr<ekv_cancel, CancelDeleter>;

CancelPtr make_cancel() {
    ekv_cancel* c = nullptr;
    EXPECT_EQ(ekv_cancel_create(&c), EKV_OK);
    return CancelPtr(c);
}

ekv_forward_params params_with(ekv_cancel* cancel) {
    ekv_forward_params p = ekv_forward_default_params();
    p.cancel = cancel;
    return p;
}

// Runs `tokens` on `cache` (may be null) with `params` (may be null).
ekv_status forward_ex(ekv_model* m, ekv_cache* c, const std::vector<int32_t>& tokens, const ekv_forward_params* params,
                      std::vector<float>* logits = nullptr) {
    std::vector<float> scratch;
    std::vector<float>& out = logits ? *logits : scratch;
    out.assign(static_cast<size_t>(n_vocab(m)), 0.f);
    return ekv_forward_ex(m, c, tokens.data(), static_cast<int32_t>(tokens.size()), nullptr, EKV_LOGITS_LAST,
                          out.data(), out.size(), params);
}

std::vector<float> next_logits(ekv_model* m, ekv_cache* c, int32_t tok) {
    std::vector<float> logits;
    EXPECT_EQ(forward_ex(m, c, {tok}, nullptr, &logits), EKV_OK) << ekv_last_error();
    return logits;
}

int32_t seq_len(const ekv_cache* c) {
    int32_t n = -1;
    EXPECT_EQ(ekv_cache_seq_len(c, &n), EKV_OK);
    return n;
}

// Another thread stops a 2,000-token SmolLM2 prefill through the call's own
// request while the app's request stays attached to the cache, untouched.
TEST(ForwardCancel, PerCallRequestStopsALongPrefillFromAnotherThread) {
    ASSERT_FALSE(smollm2_path().empty()) << "EKV_SMOLLM2_GGUF is not set";
    ModelPtr model = load_model(smollm2_path(), 2);
    ASSERT_TRUE(model);
    CachePtr cache = make_cache(model.get(), EKV_CACHE_DYNAMIC);
    CachePtr reference = make_cache(model.get(), EKV_CACHE_DYNAMIC);
    const std::vector<int32_t> head = synthetic_prompt(16, 1000, 20000, 3);
    const std::vector<int32_t> prompt = synthetic_prompt(2000, 1000, 20000, 4);
    for (ekv_cache* c : {cache.get(), reference.get()}) ASSERT_EQ(forward_ex(model.get(), c, head, nullptr), EKV_OK);
    CancelPtr app = make_cancel();
    ASSERT_EQ(ekv_cache_set_cancel(cache.get(), app.get()), EKV_OK);

    CancelPtr stop = make_cancel();
    const ekv_forward_params p = params_with(stop.get());
    std::thread canceller([&] {
        // The whole prompt takes many seconds on two cores.
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        ekv_cancel_trigger(stop.get());
    });
    const ekv_status st = forward_ex(model.get(), cache.get(), prompt, &p);
    canceller.join();
    ASSERT_EQ(st, EKV_ERR_CANCELLED) << ekv_last_error();
    EXPECT_EQ(seq_len(cache.get()), 16);
    EXPECT_EQ(ekv_cancel_is_triggered(app.get()), 0);

    // The call's request is not kept: still triggered, it stops nothing
    // that does not pass it, and the cache goes on exactly as the reference.
    ASSERT_EQ(ekv_cancel_is_triggered(stop.get()), 1);
    EXPECT_EQ(next_logits(model.get(), cache.get(), 1234), next_logits(model.get(), reference.get(), 1234));
    // The app's request is still attached and honoured.
    ekv_cancel_trigger(app.get());
    EXPECT_EQ(forward_ex(model.get(), cache.get(), {42}, nullptr), EKV_ERR_CANCELLED);
    EXPECT_EQ(seq_len(cache.get()), 17);
}

// Either request triggered before the call stops it, with a cache (also when
// the call would first crop it) and without one; NULL params is ekv_forward.
TEST(ForwardCancel, EitherRequestStopsTheCallAndNeitherIsKept) {
    ModelPtr model = load_model(tiny_llama_path(), 2);
    ASSERT_TRUE(model);
    CachePtr cache = make_cache(model.get(), EKV_CACHE_DYNAMIC);
    CachePtr reference = make_cache(model.get(), EKV_CACHE_DYNAMIC);
    const std::vector<int32_t> head = synthetic_prompt(12, 3, 250, 7);
    const std::vector<int32_t> more = synthetic_prompt(6, 3, 250, 8);
    for (ekv_cache* c : {cache.get(), reference.get()}) ASSERT_EQ(forward_ex(model.get(), c, head, nullptr), EKV_OK);
    CancelPtr app = make_cancel();
    CancelPtr stop = make_cancel();
    ASSERT_EQ(ekv_cache_set_cancel(cache.get(), app.get()), EKV_OK);
    const ekv_forward_params p = params_with(stop.get());

    ekv_cancel_trigger(stop.get());  // the call's own
    EXPECT_EQ(forward_ex(model.get(), cache.get(), more, &p), EKV_ERR_CANCELLED);
    EXPECT_NE(std::strstr(ekv_last_error(), "cancel"), nullptr) << ekv_last_error();
    EXPECT_EQ(seq_len(cache.get()), 12);
    // A rewrite from position 4 would crop first: the crop waits for the go-ahead.
    std::vector<float> logits(static_cast<size_t>(n_vocab(model.get())));
    const int32_t positions[2] = {4, 5};
    EXPECT_EQ(ekv_forward_ex(model.get(), cache.get(), more.data(), 2, positions, EKV_LOGITS_LAST, logits.data(),
                             logits.size(), &p),
              EKV_ERR_CANCELLED);
    EXPECT_EQ(seq_len(cache.get()), 12);
    ekv_cancel_reset(stop.get());
    ekv_cancel_trigger(app.get());  // the cache's
    EXPECT_EQ(forward_ex(model.get(), cache.get(), more, &p), EKV_ERR_CANCELLED);
    EXPECT_EQ(seq_len(cache.get()), 12);
    EXPECT_EQ(ekv_cancel_is_triggered(stop.get()), 0);  // one request never raises the other
    ekv_cancel_reset(app.get());

    // Neither triggered: the same logits as ekv_forward and as NULL params.
    std::vector<float> with_params, plain(logits.size());
    ASSERT_EQ(forward_ex(model.get(), cache.get(), more, &p, &with_params), EKV_OK) << ekv_last_error();
    ASSERT_EQ(ekv_forward(model.get(), reference.get(), more.data(), static_cast<int32_t>(more.size()), nullptr,
                          EKV_LOGITS_LAST, plain.data(), plain.size()),
              EKV_OK);
    EXPECT_EQ(with_params, plain);
    EXPECT_EQ(next_logits(model.get(), cache.get(), 77), next_logits(model.get(), reference.get(), 77));

    // Not kept after the call: triggered now, it stops neither ekv_forward
    // nor ekv_generate on the cache (both honour the cache's request).
    ekv_cancel_trigger(stop.get());
    EXPECT_EQ(forward_ex(model.get(), cache.get(), {9}, nullptr), EKV_OK) << ekv_last_error();
    ekv_status gen_status = EKV_ERR_INTERNAL;
    CachePtr fresh = make_cache(model.get(), EKV_CACHE_DYNAMIC);
    ASSERT_EQ(forward_ex(model.get(), fresh.get(), head, &p), EKV_ERR_CANCELLED);
    ekv_cancel_reset(stop.get());
    ASSERT_EQ(forward_ex(model.get(), fresh.get(), head, &p), EKV_OK);
    ekv_cancel_trigger(stop.get());
    EXPECT_EQ(greedy(model.get(), fresh.get(), head, 4, &gen_status).size(), 4u);
    EXPECT_EQ(gen_status, EKV_OK) << ekv_last_error();

    // Without a cache (use_cache=False): the call's request stops it too.
    EXPECT_EQ(forward_ex(model.get(), nullptr, head, &p), EKV_ERR_CANCELLED);
    ekv_cancel_reset(stop.get());
    std::vector<float> cacheless;
    ASSERT_EQ(forward_ex(model.get(), nullptr, head, &p, &cacheless), EKV_OK) << ekv_last_error();
    CachePtr again = make_cache(model.get(), EKV_CACHE_DYNAMIC);
    std::vector<float> cached;
    ASSERT_EQ(forward_ex(model.get(), again.get(), head, nullptr, &cached), EKV_OK);
    EXPECT_LT(normalized_max_error(cacheless.data(), cached.data(), static_cast<int32_t>(cached.size())), 1e-5);
}

// struct_size is honoured as for the other params structs: an older
// (smaller) struct gets the defaults for what it lacks, a newer (larger) one
// is read up to the known fields, nonsense is refused before anything runs.
TEST(ForwardCancel, ParamsStructSizes) {
    ekv_forward_params p;
    std::memset(&p, 0xAB, sizeof p);
    ASSERT_EQ(ekv_forward_params_init(&p, sizeof p), EKV_OK);
    EXPECT_EQ(p.struct_size, sizeof p);
    EXPECT_EQ(p.cancel, nullptr);
    EXPECT_EQ(ekv_forward_params_init(nullptr, sizeof p), EKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(ekv_forward_params_init(&p, 2), EKV_ERR_INVALID_ARGUMENT);
    struct Newer {
        ekv_forward_params known;
        uint64_t later[4];
    } newer;
    std::memset(&newer, 0xAB, sizeof newer);
    ASSERT_EQ(ekv_forward_params_init(&newer.known, sizeof newer), EKV_OK);
    EXPECT_EQ(newer.known.struct_size, sizeof newer);
    EXPECT_EQ(newer.known.cancel, nullptr);
    for (uint64_t v : newer.later) EXPECT_EQ(v, 0u);  // zeroed, as the caller's size says

    ModelPtr model = load_model(tiny_llama_path(), 2);
    ASSERT_TRUE(model);
    CachePtr cache = make_cache(model.get(), EKV_CACHE_DYNAMIC);
    const std::vector<int32_t> tokens = synthetic_prompt(5, 3, 250, 9);
    CancelPtr stop = make_cancel();
    ekv_cancel_trigger(stop.get());

    // Bad sizes: refused with a message, the cache untouched.
    for (size_t bad : {size_t{0}, size_t{4}, (size_t{1} << 20) + 1}) {
        ekv_forward_params q = params_with(nullptr);
        q.struct_size = bad;
        EXPECT_EQ(forward_ex(model.get(), cache.get(), tokens, &q), EKV_ERR_INVALID_ARGUMENT) << bad;
        EXPECT_NE(std::strstr(ekv_last_error(), "struct_size"), nullptr) << ekv_last_error();
        EXPECT_EQ(seq_len(cache.get()), 0);
    }
    // An older caller whose struct ends before `cancel`: what lies past its
    // struct_size (a triggered request here) is never read.
    ekv_forward_params older = params_with(stop.get());
    older.struct_size = sizeof(size_t);
    EXPECT_EQ(forward_ex(model.get(), cache.get(), tokens, &older), EKV_OK) << ekv_last_error();
    EXPECT_EQ(seq_len(cache.get()), 5);
    // A newer caller's larger struct: its known prefix, cancel included, counts.
    newer.known.cancel = stop.get();
    std::memset(newer.later, 0xCD, sizeof newer.later);
    EXPECT_EQ(forward_ex(model.get(), cache.get(), tokens, &newer.known), EKV_ERR_CANCELLED);
    EXPECT_EQ(seq_len(cache.get()), 5);
    ekv_cancel_reset(stop.get());
    EXPECT_EQ(forward_ex(model.get(), cache.get(), tokens, &newer.known), EKV_OK) << ekv_last_error();
    EXPECT_EQ(seq_len(cache.get()), 10);
}

}  // namespace
}  // namespace ekv_test
