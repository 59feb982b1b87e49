// The by-value initialisers of the first header (v1), still exported for
// applications built against it: each returns exactly the v1 layout, which
// is a prefix of today's struct (fields are only ever appended). Current
// headers compile their own static inline versions instead.
#include <cstddef>

#include "api/api_internal.h"

using namespace ekv;

namespace {

// The v1 sizes: today's structs up to their last v1 field.
#define EKV_V1_LAYOUT(type, last_field)                                                   \
    constexpr size_t kV1Size_##type = offsetof(type, last_field) + sizeof(type::last_field); \
    struct V1_##type {                                                                     \
        alignas(type) unsigned char bytes[(kV1Size_##type + alignof(type) - 1) / alignof(type) * alignof(type)]; \
    };

EKV_V1_LAYOUT(ekv_device_info, n_threads)
EKV_V1_LAYOUT(ekv_model_params, int8_activations)
EKV_V1_LAYOUT(ekv_model_info, n_recurrent_layers)
EKV_V1_LAYOUT(ekv_backend_stats, record_ns)
EKV_V1_LAYOUT(ekv_cache_params, offload)
EKV_V1_LAYOUT(ekv_cache_stats, tokens_held)
EKV_V1_LAYOUT(ekv_generate_params, user_data)
EKV_V1_LAYOUT(ekv_generate_result, stop_reason)

// The sizes a v1 application saw (LP64; tests/abi checks them against the
// frozen v1 header).
static_assert(sizeof(V1_ekv_device_info) == 288, "v1 ekv_device_info");
static_assert(sizeof(V1_ekv_model_params) == 24, "v1 ekv_model_params");
static_assert(sizeof(V1_ekv_model_info) == 528, "v1 ekv_model_info");
static_assert(sizeof(V1_ekv_backend_stats) == 32, "v1 ekv_backend_stats");
static_assert(sizeof(V1_ekv_cache_params) == 48, "v1 ekv_cache_params");
static_assert(sizeof(V1_ekv_cache_stats) == 64, "v1 ekv_cache_stats");
static_assert(sizeof(V1_ekv_generate_params) == 104, "v1 ekv_generate_params");
static_assert(sizeof(V1_ekv_generate_result) == 56, "v1 ekv_generate_result");

template <class Old, class New>
Old v1_of(const New& current, size_t v1_size) {
    Old old{};
    std::memcpy(old.bytes, &current, v1_size);
    const size_t size = sizeof(Old);  // struct_size: the v1 sizeof
    std::memcpy(old.bytes, &size, sizeof size);
    return old;
}

}  // namespace

#define EKV_V1_EXPORT(type, name, defaults)                                  \
    extern "C" EKV_API V1_##type name(void) {                                \
        return v1_of<V1_##type>(defaults, kV1Size_##type);                   \
    }

EKV_V1_EXPORT(ekv_device_info, ekv_device_info_default, api::zeroed_struct<ekv_device_info>())
EKV_V1_EXPORT(ekv_model_params, ekv_model_default_params, api::model_params_defaults())
EKV_V1_EXPORT(ekv_model_info, ekv_model_info_default, api::zeroed_struct<ekv_model_info>())
EKV_V1_EXPORT(ekv_backend_stats, ekv_backend_stats_default, api::zeroed_struct<ekv_backend_stats>())
EKV_V1_EXPORT(ekv_cache_params, ekv_cache_default_params, api::cache_params_defaults())
EKV_V1_EXPORT(ekv_cache_stats, ekv_cache_stats_default, api::zeroed_struct<ekv_cache_stats>())
EKV_V1_EXPORT(ekv_generate_params, ekv_generate_default_params, api::generate_params_defaults())
EKV_V1_EXPORT(ekv_generate_result, ekv_generate_default_result, api::zeroed_struct<ekv_generate_result>())
