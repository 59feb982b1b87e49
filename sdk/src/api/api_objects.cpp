// Reference counts, the busy guard of caches, and stop requests.
#include "api/api_internal.h"

using namespace ekv;

ekv_cache::~ekv_cache() {
    session.reset();  // before the model it runs on
    api::release(cancel.load());
    api::release(owner);
}

ekv_detokenizer::~ekv_detokenizer() { api::release(owner); }

ekv_generator::~ekv_generator() {
    gen.reset();
    release_cache();
    api::release(cache);
    api::release(cancel);
    api::release(model);
}

namespace ekv::api {

void retain(ekv_model* m) {
    if (m) m->refs.fetch_add(1, std::memory_order_relaxed);
}
void release(ekv_model* m) {
    if (m && m->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete m;
}
void retain(ekv_cache* c) {
    if (c) c->refs.fetch_add(1, std::memory_order_relaxed);
}
void release(ekv_cache* c) {
    if (c && c->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete c;
}
void retain(ekv_cancel* c) {
    if (c) c->refs.fetch_add(1, std::memory_order_relaxed);
}
void release(ekv_cancel* c) {
    if (c && c->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete c;
}

CacheUse::CacheUse(const ekv_cache* cache) : cache_(const_cast<ekv_cache*>(cache)) {
    if (!cache_) {
        status_ = Error(EKV_ERR_INVALID_ARGUMENT, "cache is NULL");
        return;
    }
    bool expected = false;
    if (!cache_->busy.compare_exchange_strong(expected, true, std::memory_order_acquire)) {
        status_ = Error(EKV_ERR_INVALID_STATE,
                        "cache is busy: another thread is using it, or a generator on it is not done");
        return;
    }
    owned_ = true;
    lock_ = cache_->session->use();
}

CacheUse::~CacheUse() {
    if (owned_) refresh_snapshot(cache_);  // still under the lock: nothing changes it meanwhile
    if (lock_.owns_lock()) lock_.unlock();
    if (owned_) cache_->busy.store(false, std::memory_order_release);
}

ekv_cache* wrap_cache(ekv_model* model, std::unique_ptr<Session> session) {
    std::unique_ptr<ekv_cache> c(new ekv_cache());
    c->session = std::move(session);
    c->params = public_cache_params(c->session->cache().config());
    {
        std::unique_lock<std::recursive_mutex> lock = c->session->use();
        refresh_snapshot(c.get());
    }
    retain(model);
    c->owner = model;
    return c.release();
}

void refresh_snapshot(ekv_cache* cache) {
    const Cache& c = cache->session->cache();
    CacheSnapshot s;
    s.stats = c.stats();
    s.tokens_forwarded = c.tokens_forwarded();
    s.type = c.type();
    std::lock_guard<std::mutex> lock(cache->snapshot_mu);
    cache->snapshot = s;
}

CacheSnapshot read_snapshot(const ekv_cache* cache) {
    std::lock_guard<std::mutex> lock(cache->snapshot_mu);
    return cache->snapshot;
}

CancelSet cancel_set(const ekv_cancel* call, const ekv_cache* cache) {
    CancelSet s;
    if (call) s.call = &call->flag;
    if (cache) {
        const ekv_cancel* attached = cache->cancel.load(std::memory_order_acquire);
        if (attached) s.cache = &attached->flag;
    }
    return s;
}

}  // namespace ekv::api

extern "C" {

ekv_status ekv_cancel_create(ekv_cancel** out) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(out, "out");
        *out = new ekv_cancel();
        return Status::Ok();
    });
}

void ekv_cancel_trigger(ekv_cancel* cancel) {
    if (cancel) cancel->flag.raise();
}

void ekv_cancel_reset(ekv_cancel* cancel) {
    if (cancel) cancel->flag.clear();
}

int ekv_cancel_is_triggered(const ekv_cancel* cancel) { return cancel && cancel->flag.raised() ? 1 : 0; }

void ekv_cancel_free(ekv_cancel* cancel) { api::release(cancel); }

ekv_status ekv_cache_set_cancel(ekv_cache* cache, ekv_cancel* cancel) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(cache, "cache");
        api::CacheUse use(cache);  // no running call holds the old request
        EKV_TRY(use.status());
        api::retain(cancel);
        api::release(cache->cancel.exchange(cancel, std::memory_order_acq_rel));
        return Status::Ok();
    });
}

}  // extern "C"
