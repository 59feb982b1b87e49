// Model loading and information.
#include <cstdio>
#include <cstring>
#include <iterator>

#include "api/api_internal.h"

using namespace ekv;

extern "C" {

}  // extern "C"

namespace {

// Validates the params, then builds a model from whatever `read` produces
// (a path, memory, a descriptor), with progress and stop requests.
template <class Read>
Status load_with(const ekv_model_params* params, ekv_model** out, Read&& read) {
    EKV_CHECK_HANDLE(out, "out");
    *out = nullptr;
    ekv_model_params p;
    EKV_TRY(api::read_params(params, api::model_params_defaults(), "params", &p));
    const int backend = api::enum_int(p.backend);
    if (backend < EKV_BACKEND_AUTO || backend > EKV_BACKEND_CUDA)
        return Error(EKV_ERR_INVALID_ARGUMENT, "unknown backend kind %d", backend);
    if (p.n_threads < 0 || p.n_threads > 1024)
        return Error(EKV_ERR_INVALID_ARGUMENT, "n_threads %d is out of range [0, 1024]", p.n_threads);
    std::unique_ptr<ekv_model> m(new ekv_model());
    BackendOptions bo;
    bo.device_index = p.device_index;
    bo.n_threads = p.n_threads;
    bo.int8_activations = p.int8_activations != 0;
    if (p.replay < -1 || p.replay > 1 || p.f16_accumulate < -1 || p.f16_accumulate > 1)
        return Error(EKV_ERR_INVALID_ARGUMENT, "replay %d / f16_accumulate %d: expected -1, 0 or 1", p.replay,
                     p.f16_accumulate);
    bo.replay = p.replay;
    bo.f16_accumulate = p.f16_accumulate;
    LoadMonitor monitor;
    monitor.cancel = p.cancel ? &p.cancel->flag : nullptr;
    monitor.callback = p.progress;
    monitor.user_data = p.progress_user_data;
    monitor.memory_budget_bytes = p.memory_budget_bytes;
    EKV_TRY(read(p.backend, bo, &m->model, &monitor));
    *out = m.release();
    return Status::Ok();
}

}  // namespace

extern "C" {

ekv_status ekv_model_load(const char* path, const ekv_model_params* params, ekv_model** out) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(path, "path");
        return load_with(params, out, [&](ekv_backend_kind kind, const BackendOptions& bo, std::unique_ptr<Model>* m,
                                          LoadMonitor* monitor) { return load_model(path, kind, bo, m, monitor); });
    });
}

ekv_status ekv_model_load_from_memory(const void* data, size_t size, const ekv_model_params* params,
                                      ekv_model** out) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(data, "data");
        return load_with(params, out, [&](ekv_backend_kind kind, const BackendOptions& bo, std::unique_ptr<Model>* m,
                                          LoadMonitor* monitor) -> Status {
            ModelFile file;
            EKV_TRY(load_gguf_memory(data, size, &file));
            file.path = "GGUF in memory";
            return build_model(std::move(file), kind, bo, m, monitor);
        });
    });
}

ekv_status ekv_model_load_from_fd(int fd, uint64_t offset, uint64_t length, const ekv_model_params* params,
                                  ekv_model** out) {
    return api::guarded([&]() -> Status {
        if (fd < 0) return Error(EKV_ERR_INVALID_ARGUMENT, "fd %d is not a descriptor", fd);
        return load_with(params, out, [&](ekv_backend_kind kind, const BackendOptions& bo, std::unique_ptr<Model>* m,
                                          LoadMonitor* monitor) -> Status {
            ModelFile file;
            EKV_TRY(load_gguf_fd(fd, offset, length, &file));
            return build_model(std::move(file), kind, bo, m, monitor);
        });
    });
}

void ekv_model_free(ekv_model* model) { api::release(model); }

ekv_model* ekv_model_retain(ekv_model* model) {
    api::retain(model);
    return model;
}

ekv_status ekv_model_get_info(const ekv_model* model, ekv_model_info* out) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(model, "model");
        EKV_TRY(api::check_params(out, 0, "out"));
        const Model& m = *model->model;
        const ModelInfo& mi = m.info();
        ekv_model_info i = api::zeroed_struct<ekv_model_info>();
        std::snprintf(i.architecture, sizeof i.architecture, "%s", mi.architecture.c_str());
        std::snprintf(i.name, sizeof i.name, "%s", mi.name.c_str());
        i.n_layers = mi.n_layers;
        i.n_heads = mi.n_heads;
        i.n_kv_heads = mi.n_kv_heads;
        i.head_dim = mi.head_dim;
        i.n_embd = mi.n_embd;
        i.n_ff = mi.n_ff;
        i.context_length = mi.context_length;
        i.n_vocab = mi.n_vocab;
        i.n_params = mi.n_params;
        i.weight_bytes = mi.weight_bytes;
        i.backend = m.backend->device().kind;
        std::snprintf(i.device, sizeof i.device, "%s", m.backend->device().name.c_str());
        i.natural_cache = m.arch->natural_cache();
        const CacheShape shape = m.arch->cache_shape();
        i.n_sliding_layers = shape.count(LayerKind::SlidingAttention);
        i.sliding_window = i.n_sliding_layers > 0 ? shape.sliding_window : 0;
        i.n_recurrent_layers = shape.count(LayerKind::Recurrent);
        i.decode_weight_bytes = mi.decode_weight_bytes;
        api::write_struct(out, i);
        return Status::Ok();
    });
}

ekv_status ekv_model_get_backend_stats(const ekv_model* model, ekv_backend_stats* out) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(model, "model");
        EKV_TRY(api::check_params(out, sizeof(ekv_backend_stats), "out"));
        BackendStats bs;
        {
            std::lock_guard<std::recursive_mutex> lock(model->model->exclusive);
            bs = model->model->backend->stats();
        }
        ekv_backend_stats s = api::zeroed_struct<ekv_backend_stats>();
        s.submissions = bs.submissions;
        s.replayed_submissions = bs.replayed_submissions;
        s.record_ns = bs.record_ns;
        api::write_struct(out, s);
        return Status::Ok();
    });
}

ekv_status ekv_model_meta_count(const ekv_model* model, int32_t* out) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(model, "model");
        EKV_CHECK_HANDLE(out, "out");
        *out = static_cast<int32_t>(model->model->file.meta.all().size());
        return Status::Ok();
    });
}

ekv_status ekv_model_meta_key(const ekv_model* model, int32_t index, char* buf, size_t cap, size_t* out_len) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(model, "model");
        const auto& all = model->model->file.meta.all();
        if (index < 0 || static_cast<size_t>(index) >= all.size())
            return Error(EKV_ERR_INVALID_ARGUMENT, "metadata index %d is outside [0, %zu)", index, all.size());
        auto it = all.begin();
        std::advance(it, index);
        return api::copy_out(it->first, buf, cap, out_len);
    });
}

ekv_status ekv_model_meta_string(const ekv_model* model, const char* key, char* buf, size_t cap, size_t* out_len) {
    return api::guarded([&]() -> Status {
        EKV_CHECK_HANDLE(model, "model");
        EKV_CHECK_HANDLE(key, "key");
        std::string v;
        if (!model->model->file.meta.get_string(key, &v))
            return Error(EKV_ERR_INVALID_ARGUMENT, "the model has no string metadata '%s'", key);
        return api::copy_out(v, buf, cap, out_len);
    });
}

}  // extern "C"
