#include "generate/session.h"

#include <new>

namespace ekv {

template <class Make>
Status Session::build(const Model& model, Make&& make, std::unique_ptr<Session>* out) {
    std::unique_ptr<Session> s(new (std::nothrow) Session(model));
    if (!s) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate a session");
    EKV_TRY(model.backend->create_stream(&s->stream_));
    std::unique_lock<std::recursive_mutex> lock = s->use();
    EKV_TRY(make(s->backend(), &s->cache_));
    EKV_TRY(model.arch->create_workspace(s->backend(), &s->ws_));
    if (lock.owns_lock()) lock.unlock();
    *out = std::move(s);
    return Status::Ok();
}

Status Session::create(const Model& model, const CacheConfig& config, std::unique_ptr<Session>* out) {
    return build(
        model,
        [&](Backend& be, std::unique_ptr<Cache>* cache) { return create_cache(config, model.cache_shape(), be, cache); },
        out);
}

Status Session::create_default(const Model& model, std::unique_ptr<Session>* out) {
    CacheConfig cc;
    EKV_TRY(default_cache_config(model.arch->natural_cache(), model.cache_shape(), *model.backend, &cc));
    return create(model, cc, out);
}

Status Session::load(const Model& model, const CacheFile& file, std::unique_ptr<Session>* out) {
    return build(
        model,
        [&](Backend& be, std::unique_ptr<Cache>* cache) -> Status {
            EKV_TRY(load_cache(file, model.cache_shape(), be, cache));
            return model.arch->check_cache((*cache)->type());
        },
        out);
}

Status Session::clone(std::unique_ptr<Session>* out) const {
    // The caller holds this session's use(); a shared backend is already
    // locked by it, so the copy is built under that same lock.
    std::unique_ptr<Session> s(new (std::nothrow) Session(*model_));
    if (!s) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate a session");
    EKV_TRY(model_->backend->create_stream(&s->stream_));
    EKV_TRY(cache_->clone(s->backend(), &s->cache_));
    EKV_TRY(model_->arch->create_workspace(s->backend(), &s->ws_));
    *out = std::move(s);
    return Status::Ok();
}

Session::~Session() {
    // Freeing device buffers touches the shared command stream too.
    std::unique_lock<std::recursive_mutex> lock = use();
    ws_.reset();
    cache_.reset();
}

std::unique_lock<std::recursive_mutex> Session::use() const {
    return stream_ ? std::unique_lock<std::recursive_mutex>() : std::unique_lock<std::recursive_mutex>(model_->exclusive);
}

}  // namespace ekv
