// What one conversation needs to run on a model: an execution stream of the
// model's backend, the cache, and the architecture's workspace on that
// stream. Sessions of one model run on different threads at once; on a
// backend without per-cache streams (Backend::create_stream leaves none) a
// session runs on the model's backend itself and every use takes
// Model::exclusive, so those forwards take turns instead of racing.
#pragma once
#include <memory>
#include <mutex>
#include <string>

#include "cache/cache.h"
#include "model/model.h"

namespace ekv {

class Session {
public:
    // A new cache of `config` (resolved against the model already).
    static Status create(const Model& model, const CacheConfig& config, std::unique_ptr<Session>* out);
    // The model's natural cache with default parameters (use_cache=False).
    static Status create_default(const Model& model, std::unique_ptr<Session>* out);
    // A cache read from a file (or stream) written by Cache::save.
    static Status load(const Model& model, const CacheFile& file, std::unique_ptr<Session>* out);
    // A deep copy on a stream of its own. Call with this session in use()
    // (the lock is recursive: the copy may share it).
    Status clone(std::unique_ptr<Session>* out) const;
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // Held around every use of cache(), ws() and backend(): a no-op lock
    // with a stream of its own, else the model's backend.
    std::unique_lock<std::recursive_mutex> use() const;

    const Model& model() const { return *model_; }
    Backend& backend() const { return stream_ ? *stream_ : *model_->backend; }
    Cache& cache() const { return *cache_; }
    Workspace& ws() const { return *ws_; }

private:
    explicit Session(const Model& model) : model_(&model) {}
    // Creates the stream (if the backend has them); then `make` builds the
    // cache on backend(), and the workspace follows.
    template <class Make>
    static Status build(const Model& model, Make&& make, std::unique_ptr<Session>* out);

    const Model* model_;
    std::unique_ptr<Backend> stream_;  // declared first: freed after the cache and workspace
    std::unique_ptr<Cache> cache_;
    std::unique_ptr<Workspace> ws_;
};

}  // namespace ekv
