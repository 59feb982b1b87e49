#include "backend/cpu/cpu_backend.h"

#include <unistd.h>
#if !defined(_WIN32)
#include <sys/mman.h>
#endif

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <new>

#include "backend/cpu/cpu_attention.h"
#include "backend/cpu/matmul.h"
#include "core/fault_injection.h"
#include "core/fp16.h"
#include "core/kivi.h"
#include "core/quant.h"
#include "core/tensor_ref.h"

namespace ekv {
namespace {

// Element-wise ops below this many elements run on the calling thread: waking
// the pool costs more than the work for a single decoded token.
constexpr int64_t kParallelThreshold = 1 << 15;

// exp(t) within 2 ulp for -87 <= t <= 88 (below, about 1.6e-38; the caller
// handles t > 88). Branch-free Cephes-style
// range reduction and polynomial, so loops over it vectorize (std::exp does
// not).
inline float exp_poly(float t) {
    t = t > -87.0f ? t : -87.0f;  // NaN too: the caller's x carries it through
    t = t < 88.0f ? t : 88.0f;
    const float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
    const float n = (t * 1.44269504088896341f + magic) - magic;
    const float r = (t - n * 0.693359375f) + n * 2.12194440e-4f;  // t - n ln2, ln2 in two parts
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n, n in [-126, 127]
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

// Gemma's tanh GELU, 0.5 x (1 + tanh(z)) = x / (1 + exp(-2 z)), times u.
// Past z = -44 exp overflows: 1 + inf gives x / inf = 0, as tanh = -1 does.
inline float gelu_tanh_times(float x, float u) {
    const float z2 = -1.5957691216057308f * (x + 0.044715f * x * x * x);  // -2 sqrt(2 / pi) (...)
    float e = exp_poly(z2);
    e = z2 > 88.0f ? __builtin_inff() : e;
    return x / (1.0f + e) * u;
}

#if defined(__SSE2__)
// The same operations on 4 lanes (SSE2 is baseline on x86-64; GCC does not
// vectorize the selects above without -fno-trapping-math): the same bits as
// gelu_tanh_times. MAXPS/MINPS return their second operand for NaN, as the
// scalar selects do.
inline __m128 exp_poly4(__m128 t) {
    t = _mm_min_ps(_mm_max_ps(t, _mm_set1_ps(-87.0f)), _mm_set1_ps(88.0f));
    const __m128 magic = _mm_set1_ps(12582912.0f);
    const __m128 n = _mm_sub_ps(_mm_add_ps(_mm_mul_ps(t, _mm_set1_ps(1.44269504088896341f)), magic), magic);
    const __m128 r = _mm_add_ps(_mm_sub_ps(t, _mm_mul_ps(n, _mm_set1_ps(0.693359375f))),
                                _mm_mul_ps(n, _mm_set1_ps(2.12194440e-4f)));
    __m128 p = _mm_set1_ps(1.9875691500e-4f);
    p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.3981999507e-3f));
    p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(8.3334519073e-3f));
    p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(4.1665795894e-2f));
    p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.6666665459e-1f));
    p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(5.0000001201e-1f));
    p = _mm_add_ps(_mm_add_ps(_mm_mul_ps(_mm_mul_ps(p, r), r), r), _mm_set1_ps(1.0f));
    const __m128i bits = _mm_slli_epi32(_mm_add_epi32(_mm_cvttps_epi32(n), _mm_set1_epi32(127)), 23);
    return _mm_mul_ps(p, _mm_castsi128_ps(bits));
}

inline __m128 gelu_tanh_times4(__m128 x, __m128 u) {
    const __m128 cube = _mm_mul_ps(_mm_mul_ps(_mm_mul_ps(_mm_set1_ps(0.044715f), x), x), x);
    const __m128 z2 = _mm_mul_ps(_mm_set1_ps(-1.5957691216057308f), _mm_add_ps(x, cube));
    const __m128 over = _mm_cmpgt_ps(z2, _mm_set1_ps(88.0f));
    const __m128 e = _mm_or_ps(_mm_and_ps(over, _mm_set1_ps(__builtin_inff())), _mm_andnot_ps(over, exp_poly4(z2)));
    return _mm_mul_ps(_mm_div_ps(x, _mm_add_ps(_mm_set1_ps(1.0f), e)), u);
}
#endif

// Buffers from this size on are fresh anonymous mappings: the kernel hands
// out zero pages only when they are first written, so a cache sized for the
// whole context costs no memory until tokens arrive (zero-filling it here
// would touch every page at creation, a spike that kills apps on phones).
constexpr size_t kMappedBufferBytes = size_t(256) << 10;

class HostBuffer final : public Buffer {
public:
    HostBuffer(void* p, size_t n, size_t mapped_len, Placement pl)
        : p_(p), n_(n), mapped_len_(mapped_len), placement_(pl) {}
    ~HostBuffer() override { release(p_, mapped_len_); }
    size_t size() const override { return n_; }
    Placement placement() const override { return placement_; }
    void* host() override { return p_; }

    // Zeroed memory of `rounded` bytes, 64-byte aligned; *mapped_len is the
    // mapping's length, 0 for heap memory.
    static void* acquire(size_t rounded, size_t* mapped_len) {
        *mapped_len = 0;
        if (fault::host_allocation_fails()) return nullptr;  // as if mmap/aligned_alloc had failed
#if !defined(_WIN32)
        if (rounded >= kMappedBufferBytes) {
            void* p = mmap(nullptr, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED) return nullptr;
            *mapped_len = rounded;
            return p;
        }
#endif
        void* p = rounded ? std::aligned_alloc(64, rounded) : nullptr;
        if (p) std::memset(p, 0, rounded);
        return p;
    }
    static void release(void* p, size_t mapped_len) {
#if !defined(_WIN32)
        if (mapped_len) {
            munmap(p, mapped_len);
            return;
        }
#endif
        std::free(p);
    }

private:
    void* p_;
    size_t n_;
    size_t mapped_len_;
    Placement placement_;
};

std::string cpu_model_name() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("model name", 0) == 0) {
            const size_t c = line.find(':');
            if (c != std::string::npos) return line.substr(c + 2);
        }
    }
    return "CPU";
}

template <class F>
void for_rows(ThreadPool& pool, int64_t rows, int64_t cols, F&& f) {
    if (rows * cols < kParallelThreshold || rows == 1) {
        f(0L, static_cast<long>(rows));
    } else {
        pool.parallel_for(static_cast<long>(rows), f);
    }
}

bool kivi_src_ok(const Tensor& src, int64_t first_row, int64_t n_rows) {
    return src.data && (src.type == DType::F16 || src.type == DType::F32) && first_row >= 0 && n_rows >= 0 &&
           first_row + n_rows <= src.rows;
}

// What the kernel could still give without swapping (MemAvailable), 0 when unknown.
uint64_t available_memory_bytes() {
    std::ifstream in("/proc/meminfo");
    std::string key;
    uint64_t kib = 0;
    std::string unit;
    while (in >> key >> kib >> unit)
        if (key == "MemAvailable:") return kib * 1024;
    return 0;
}

}  // namespace

DeviceDescription cpu_device_description(int32_t n_threads) {
    DeviceDescription d;
    d.kind = EKV_BACKEND_CPU;
    d.index = 0;
    d.n_threads = n_threads > 0 ? n_threads : ThreadPool::default_threads();
    d.name = cpu_model_name() + " (" + std::to_string(d.n_threads) + " threads, " + cpu::matmul_isa() + ")";
    const long pages = sysconf(_SC_PHYS_PAGES);
    const long page = sysconf(_SC_PAGESIZE);
    d.memory_bytes = pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) : 0;
    d.free_bytes = available_memory_bytes();
    if (d.free_bytes == 0 || d.free_bytes > d.memory_bytes) d.free_bytes = d.memory_bytes;
    d.unified_memory = true;
    return d;
}

CpuBackend::CpuBackend(int32_t n_threads, bool int8_activations)
    : device_(cpu_device_description(n_threads)),
      shared_pool_(std::make_shared<ThreadPool>(device_.n_threads)),
      pool_(*shared_pool_),
      precision_(int8_activations ? cpu::ActivationPrecision::Int8 : cpu::ActivationPrecision::F32) {}

CpuBackend::CpuBackend(const CpuBackend& parent, std::shared_ptr<ThreadPool> pool)
    : device_(parent.device_), shared_pool_(std::move(pool)), pool_(*shared_pool_), precision_(parent.precision_) {}

Status CpuBackend::create_stream(std::unique_ptr<Backend>* out) {
    std::unique_ptr<CpuBackend> s(new (std::nothrow) CpuBackend(*this, shared_pool_));
    if (!s) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate a CPU stream");
    if (scratch_k_ > 0) EKV_TRY(s->reserve_scratch(scratch_k_, scratch_tokens_));
    *out = std::move(s);
    return Status::Ok();
}

Status CpuBackend::alloc(size_t bytes, Placement placement, std::unique_ptr<Buffer>* out) {
    const size_t rounded = (bytes + 63) / 64 * 64;
    size_t mapped_len = 0;
    void* p = HostBuffer::acquire(rounded, &mapped_len);
    if (rounded && !p) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes of host memory", bytes);
    out->reset(new (std::nothrow) HostBuffer(p, bytes, mapped_len, placement));
    if (!*out) {
        HostBuffer::release(p, mapped_len);
        return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate buffer object");
    }
    return Status::Ok();
}

bool CpuBackend::supports_weight(DType type) const {
    return type == DType::F32 || cpu::matmul_supported(type);
}

Status CpuBackend::load_weight(const TensorRef& src, Tensor* out, std::unique_ptr<Buffer>* owner) {
    if (!supports_weight(src.type))
        return Error(EKV_ERR_UNSUPPORTED, "tensor %s: type %s is not supported by the CPU backend", src.name.c_str(),
                     dtype_name(src.type));
    owner->reset();
    Tensor t;
    t.type = src.type;
    t.cols = src.ne[0];
    t.rows = src.n_elements() / src.ne[0];
    t.row_bytes = dtype_row_bytes(src.type, src.ne[0]);
    t.data = const_cast<uint8_t*>(src.data);  // read-only mapping; the ops never write weights
    *out = t;
    return Status::Ok();
}

Status CpuBackend::reserve_scratch(int64_t k_max, int32_t n_tokens) {
    if (k_max <= scratch_k_ && n_tokens <= scratch_tokens_) return Status::Ok();
    static const DType kTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                                   DType::Q5_1, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};
    size_t need = 0;
    for (DType t : kTypes) {
        if (!cpu::matmul_supported(t)) continue;
        const size_t n = cpu::matmul_scratch_bytes(t, k_max, n_tokens, precision_);
        if (n > need) need = n;
    }
    try {
        matmul_scratch_.assign(need + 64, 0);
    } catch (const std::bad_alloc&) {
        return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes of matmul scratch", need);
    }
    scratch_k_ = k_max;
    scratch_tokens_ = n_tokens;
    return Status::Ok();
}

void CpuBackend::get_rows(const Tensor& table, const int32_t* ids, int32_t n, Tensor& out) {
    for (int32_t i = 0; i < n; ++i) {
        const uint8_t* row = static_cast<const uint8_t*>(table.data) + static_cast<size_t>(ids[i]) * table.row_bytes;
        dequantize_row(table.type, row, out.ptr<float>(i), table.cols);
    }
}

void CpuBackend::rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
    const int64_t n = x.cols;
    const float* w = weight.ptr<float>();
    for_rows(pool_, x.rows, n, [&](long b, long e) {
        for (long r = b; r < e; ++r) {
            const float* xr = x.ptr<float>(r);
            float* o = out.ptr<float>(r);
            double ss = 0.0;
            for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(xr[i]) * xr[i];
            const float scale = 1.0f / std::sqrt(static_cast<float>(ss / n) + eps);
            for (int64_t i = 0; i < n; ++i) o[i] = xr[i] * scale * w[i];
        }
    });
}

void CpuBackend::matmul(const Tensor& w, const Tensor& x, Tensor& out) {
    // Rows of x and out are contiguous in the workspace (row_bytes == cols * 4).
    if (!w.data || !x.data || !out.data || !cpu::matmul_supported(w.type) || x.type != DType::F32 ||
        out.type != DType::F32 || x.cols != w.cols || out.cols != w.rows || out.rows != x.rows ||
        x.row_bytes != static_cast<size_t>(x.cols) * sizeof(float) ||
        out.row_bytes != static_cast<size_t>(out.cols) * sizeof(float) ||
        w.cols % dtype_traits(w.type).block_size != 0 ||
        cpu::matmul_scratch_bytes(w.type, w.cols, static_cast<int>(x.rows), precision_) > matmul_scratch_.size())
        return record_error(Error(EKV_ERR_INVALID_ARGUMENT,
                                  "CPU matmul: weights %s [%lld x %lld] cannot take %lld x %lld activations into "
                                  "%lld x %lld (or a buffer is missing / scratch too small)",
                                  dtype_name(w.type), static_cast<long long>(w.rows), static_cast<long long>(w.cols),
                                  static_cast<long long>(x.rows), static_cast<long long>(x.cols),
                                  static_cast<long long>(out.rows), static_cast<long long>(out.cols)));
    cpu::matmul(w.type, w.data, w.rows, w.cols, x.ptr<float>(), static_cast<int>(x.rows), out.ptr<float>(),
                matmul_scratch_.data(), pool_, precision_);
}

void CpuBackend::rope(Tensor& x, const int32_t* positions, const RopeParams& p) {
    const int half = p.rope_dim / 2;
    if (half <= 0 || half > 256 || !positions || !p.inv_freq || p.n_heads * p.head_dim > x.cols)
        return record_error(Error(EKV_ERR_INVALID_ARGUMENT, "CPU rope: %d rotated dims of %d heads x %d do not fit", p.rope_dim,
                                  p.n_heads, p.head_dim));
    for_rows(pool_, x.rows, x.cols, [&](long b, long e) {
        float cos_t[256], sin_t[256];
        for (long t = b; t < e; ++t) {
            // The angle in double: at positions past ~1e5 a float product
            // loses the phase of the fast-turning pairs.
            const double pos = static_cast<double>(positions[t]);
            for (int i = 0; i < half; ++i) {
                const double theta = pos * static_cast<double>(p.inv_freq[i]);
                cos_t[i] = static_cast<float>(std::cos(theta)) * p.attn_factor;
                sin_t[i] = static_cast<float>(std::sin(theta)) * p.attn_factor;
            }
            const int stride = p.neox ? 1 : 2, partner = p.neox ? half : 1;
            for (int h = 0; h < p.n_heads; ++h) {
                float* v = x.ptr<float>(t) + static_cast<size_t>(h) * p.head_dim;
                for (int i = 0; i < half; ++i) {
                    float* x0 = v + stride * i;
                    const float a = x0[0];
                    const float bb = x0[partner];
                    x0[0] = a * cos_t[i] - bb * sin_t[i];
                    x0[partner] = a * sin_t[i] + bb * cos_t[i];
                }
            }
        }
    });
}

void CpuBackend::copy_rows(const Tensor& src, Tensor& dst, int64_t dst_row) {
    const int64_t n = src.cols;
    for (int64_t r = 0; r < src.rows; ++r) {
        const float* s = src.ptr<float>(r);
        if (dst.type == DType::F16) {
            uint16_t* d = dst.ptr<uint16_t>(dst_row + r);
            for (int64_t i = 0; i < n; ++i) d[i] = f32_to_f16(s[i]);
        } else {
            std::memcpy(dst.ptr<float>(dst_row + r), s, static_cast<size_t>(n) * sizeof(float));
        }
    }
}

void CpuBackend::attention(const Tensor& q, const int32_t* q_pos, const KvView& kv, const AttentionParams& p,
                           Tensor& out) {
    if (!q_pos) return record_error(Error(EKV_ERR_INVALID_ARGUMENT, "CPU attention: no query positions"));
    Status st = cpu::check_attention(q, kv, p);
    if (!st.ok()) return record_error(std::move(st));
    cpu::attention(q, q_pos, kv, p, out, pool_);
}

void CpuBackend::silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) {
    const int64_t n = gate.cols;
    for_rows(pool_, gate.rows, n, [&](long b, long e) {
        for (long r = b; r < e; ++r) {
            const float* g = gate.ptr<float>(r);
            const float* u = up.ptr<float>(r);
            float* o = out.ptr<float>(r);
            for (int64_t i = 0; i < n; ++i) o[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
        }
    });
}

void CpuBackend::gelu_mul(const Tensor& gate, const Tensor& up, Tensor& out) {
    const int64_t n = gate.cols;
    for_rows(pool_, gate.rows, n, [&](long b, long e) {
        for (long r = b; r < e; ++r) {
            const float* g = gate.ptr<float>(r);
            const float* u = up.ptr<float>(r);
            float* o = out.ptr<float>(r);
            int64_t i = 0;
#if defined(__SSE2__)
            for (; i + 4 <= n; i += 4) {
                _mm_storeu_ps(o + i, gelu_tanh_times4(_mm_loadu_ps(g + i), _mm_loadu_ps(u + i)));
            }
#endif
            for (; i < n; ++i) o[i] = gelu_tanh_times(g[i], u[i]);
        }
    });
}

void CpuBackend::scale(const Tensor& x, float s, Tensor& out) {
    const int64_t n = x.cols;
    for_rows(pool_, x.rows, n, [&](long b, long e) {
        for (long r = b; r < e; ++r) {
            const float* xr = x.ptr<float>(r);
            float* o = out.ptr<float>(r);
            for (int64_t i = 0; i < n; ++i) o[i] = xr[i] * s;
        }
    });
}

void CpuBackend::add(const Tensor& a, const Tensor& b, Tensor& out) {
    const int64_t n = a.cols;
    for_rows(pool_, a.rows, n, [&](long rb, long re) {
        for (long r = rb; r < re; ++r) {
            const float* x = a.ptr<float>(r);
            const float* y = b.ptr<float>(r);
            float* o = out.ptr<float>(r);
            for (int64_t i = 0; i < n; ++i) o[i] = x[i] + y[i];
        }
    });
}

void CpuBackend::copy_raw(const Tensor& src, Tensor& dst, int64_t n_rows) {
    if (n_rows <= 0) return;
    std::memcpy(dst.data, src.data, static_cast<size_t>(n_rows) * src.row_bytes);
}

void CpuBackend::copy_bytes(Buffer& src, size_t src_offset, Buffer& dst, size_t dst_offset, size_t bytes) {
    uint8_t* from = static_cast<uint8_t*>(src.host());
    uint8_t* to = static_cast<uint8_t*>(dst.host());
    if (bytes == 0 || !from || !to || src_offset > src.size() || bytes > src.size() - src_offset ||
        dst_offset > dst.size() || bytes > dst.size() - dst_offset)
        return;
    std::memmove(to + dst_offset, from + src_offset, bytes);  // memmove: src and dst may be one buffer
}

void CpuBackend::kivi_quantize_keys(const Tensor& src, int64_t src_row, Tensor& dst, int64_t dst_group,
                                    const KiviParams& p) {
    const int64_t kv_width = src.cols;
    if (!kivi_src_ok(src, src_row, p.group) || !dst.data || dst_group < 0 || dst_group >= dst.rows ||
        dst.row_bytes < kivi_key_group_bytes(kv_width, p.group, p.nbits))
        return;
    kivi_quantize_key_group(src.ptr<uint8_t>(src_row), src.type == DType::F16, src.row_bytes, kv_width, p.head_dim,
                            p.group, p.nbits, dst.ptr<uint8_t>(dst_group));
}

void CpuBackend::kivi_quantize_values(const Tensor& src, int64_t src_row, int64_t n, Tensor& dst, int64_t dst_row,
                                      const KiviParams& p) {
    const int64_t kv_width = src.cols;
    if (!kivi_src_ok(src, src_row, n) || !dst.data || dst_row < 0 || dst_row + n > dst.rows || p.group <= 0 ||
        dst.row_bytes < kivi_value_row_bytes(kv_width, p.group, p.nbits))
        return;
    const bool f16 = src.type == DType::F16;
    for_rows(pool_, n, kv_width, [&](long b, long e) {
        for (long r = b; r < e; ++r)
            kivi_quantize_value_row(src.ptr<uint8_t>(src_row + r), f16, kv_width, p.head_dim, p.group, p.nbits,
                                    dst.ptr<uint8_t>(dst_row + r));
    });
}

void CpuBackend::read(const Tensor& src, void* host, size_t bytes) {
    std::memcpy(host, src.data, bytes);
}

}  // namespace ekv
