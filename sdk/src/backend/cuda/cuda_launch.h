// CudaBackend::launch: how an op hands its kernel launch to the backend.
// With graphs off it is the plain launch (then the launch error check);
// with graphs on the launch is queued for synchronize() and logged as the
// launcher's address followed by every argument's bytes (field by field for
// the structs, so padding never makes equal launches differ). Equal logs are
// equal launches, which is what lets a recorded graph stand in for them.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>
#include <tuple>
#include <type_traits>

#include "backend/cuda/cuda_backend.h"
#include "kernels.h"

namespace ekv {
namespace cuda_detail {

// Scalars, enums and pointers (device addresses: the values behind them are
// not part of the log). Another struct needs its own overload below.
template <class T>
void log_arg(CommandLog& log, const T& v) {
    static_assert(std::is_scalar<T>::value, "kernel argument type without a log_arg overload");
    log.append_value(v);
}
inline void log_arg(CommandLog& log, const cuda::WeightRef& w) {
    log.append_value(w.data);
    log.append_value(w.type);
    log.append_value(w.rows);
    log.append_value(w.cols);
    log.append_value(w.row_bytes);
}
inline void log_arg(CommandLog& log, const cuda::Rows& r) {
    log.append_value(r.data);
    log.append_value(r.rows);
    log.append_value(r.cols);
    log.append_value(r.stride);
}
inline void log_arg(CommandLog& log, const cuda::ConstRows& r) {
    log.append_value(r.data);
    log.append_value(r.rows);
    log.append_value(r.cols);
    log.append_value(r.stride);
}
inline void log_arg(CommandLog& log, const cuda::AttnShape& a) {
    log.append_value(a.n_heads);
    log.append_value(a.n_kv_heads);
    log.append_value(a.head_dim);
    log.append_value(a.kv_width);
    log.append_value(a.scale);
    log.append_value(a.softcap);
    log.append_value(a.rope_dim);
    log.append_value(a.neox);
}

}  // namespace cuda_detail

template <class... P>
void CudaBackend::launch(const char* op, void (*fn)(CUstream_st*, P...), typename std::decay<P>::type... args) {
    if (!graphs_) {
        fn(stream_, args...);
        check_launch(op);
        return;
    }
    log_.begin(static_cast<uint64_t>(reinterpret_cast<uintptr_t>(fn)));
    (cuda_detail::log_arg(log_, args), ...);
    defer(op, [fn, saved = std::make_tuple(args...)](CUstream_st* s) {
        std::apply([&](const auto&... a) { fn(s, a...); }, saved);
        return static_cast<int>(cudaGetLastError());
    });
}

}  // namespace ekv
