// Size-safe initialisers of the public structs: ekv_*_init(&s, sizeof s)
// writes the caller's struct_size bytes, never more.
#include "api/api_internal.h"

using namespace ekv;

namespace ekv::api {

ekv_model_params model_params_defaults() {
    ekv_model_params p = zeroed_struct<ekv_model_params>();
    p.backend = EKV_BACKEND_AUTO;
    p.replay = -1;
    p.f16_accumulate = -1;
    return p;
}

ekv_cache_params cache_params_defaults() { return default_cache_params(); }

ekv_generate_params generate_params_defaults() {
    ekv_generate_params p = zeroed_struct<ekv_generate_params>();
    p.max_new_tokens = 128;
    p.top_p = 1.f;
    p.repetition_penalty = 1.f;
    p.repetition_last_n = 64;
    p.stop_at_eos = 1;
    p.use_cache = 1;
    return p;
}

}  // namespace ekv::api

extern "C" {

ekv_status ekv_model_params_init(ekv_model_params* p, size_t size) {
    return api::guarded([&] { return api::init_struct(p, size, api::model_params_defaults(), "params"); });
}
ekv_status ekv_cache_params_init(ekv_cache_params* p, size_t size) {
    return api::guarded([&] { return api::init_struct(p, size, api::cache_params_defaults(), "params"); });
}
ekv_status ekv_generate_params_init(ekv_generate_params* p, size_t size) {
    return api::guarded([&] { return api::init_struct(p, size, api::generate_params_defaults(), "params"); });
}
ekv_status ekv_forward_params_init(ekv_forward_params* p, size_t size) {
    return api::guarded([&] { return api::init_struct(p, size, api::zeroed_struct<ekv_forward_params>(), "params"); });
}
ekv_status ekv_generate_result_init(ekv_generate_result* r, size_t size) {
    return api::guarded([&] { return api::init_struct(r, size, api::zeroed_struct<ekv_generate_result>(), "result"); });
}
ekv_status ekv_device_info_init(ekv_device_info* d, size_t size) {
    return api::guarded([&] { return api::init_struct(d, size, api::zeroed_struct<ekv_device_info>(), "info"); });
}
ekv_status ekv_model_info_init(ekv_model_info* i, size_t size) {
    return api::guarded([&] { return api::init_struct(i, size, api::zeroed_struct<ekv_model_info>(), "info"); });
}
ekv_status ekv_backend_stats_init(ekv_backend_stats* s, size_t size) {
    return api::guarded([&] { return api::init_struct(s, size, api::zeroed_struct<ekv_backend_stats>(), "stats"); });
}
ekv_status ekv_cache_stats_init(ekv_cache_stats* s, size_t size) {
    return api::guarded([&] { return api::init_struct(s, size, api::zeroed_struct<ekv_cache_stats>(), "stats"); });
}
ekv_status ekv_generator_event_init(ekv_generator_event* e, size_t size) {
    return api::guarded([&] {
        ekv_generator_event d = api::zeroed_struct<ekv_generator_event>();
        d.token = -1;
        return api::init_struct(e, size, d, "event");
    });
}

}  // extern "C"
