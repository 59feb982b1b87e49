// Op-by-op parity cases shared by the device backends' tests (Vulkan, CUDA):
// the device backend against the CPU backend on the same bytes, for every
// weight format and a spread of shapes (odd widths, buffer offsets at half
// words, batches across the matmul token tile). A backend's suite derives
// `class XOps : public OpsParityCases<XParity>` and calls each case from a
// TEST_F of its own (so the test names stay per backend).
#pragma once
#include <algorithm>

#include "backend/device_parity.h"
#include "model/model_file.h"

namespace ekv_parity {

const DType kWeightTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                              DType::Q5_1, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};

// A width of whole blocks of t near `want`.
inline int64_t cols_for(DType t, int64_t want) {
    const int64_t bs = dtype_traits(t).block_size;
    return std::max<int64_t>(bs, want / bs * bs);
}

// Fixture: a DeviceParity<Kind> (or a class derived from one).
template <class Fixture>
class OpsParityCases : public Fixture {
protected:
    using Fixture::buffers_;
    using Fixture::cpu_;
    using Fixture::dev_;
    using Fixture::download;
    using Fixture::download_f32;
    using Fixture::upload;
    using Fixture::upload_f32;
    using Fixture::zeros;

    void read_and_copy_bytes_round_trip() {
        std::mt19937 rng(1);
        std::vector<float> v = random_floats(300, rng);
        Tensor a = upload_f32(*dev_, 3, 100, v, 12);
        EXPECT_EQ(download_f32(*dev_, a), v);
        // Device -> host-placed buffer -> back to device at another offset.
        std::unique_ptr<Buffer> host, dev;
        ASSERT_TRUE(dev_->alloc(1200, Placement::Host, &host).ok());
        ASSERT_TRUE(dev_->alloc(1300, Placement::Device, &dev).ok());
        dev_->copy_bytes(*a.buffer, a.offset, *host, 0, 1200);
        dev_->copy_bytes(*host, 0, *dev, 100, 1200);
        Tensor b = a;
        b.buffer = dev.get();
        b.offset = 100;
        b.data = nullptr;
        EXPECT_EQ(download_f32(*dev_, b), v);
        buffers_.push_back(std::move(host));
        buffers_.push_back(std::move(dev));
    }

    void get_rows_every_format() {
        std::mt19937 rng(2);
        for (DType t : kWeightTypes) {
            SCOPED_TRACE(dtype_name(t));
            const int64_t cols = cols_for(t, t == DType::F32 || t == DType::F16 ? 50 : 512);
            const int64_t rows = 13;
            std::vector<uint8_t> w = random_weight(t, rows, cols, rng);
            const int32_t ids[] = {0, 12, 5, 5, 7};
            Tensor tc = upload(*cpu_, t, rows, cols, w.data());
            // Half-word offset (F32: one word): blocks are read in place at any even address.
            Tensor tv = upload(*dev_, t, rows, cols, w.data(), t == DType::F32 ? 4 : 2);
            Tensor oc = zeros(*cpu_, DType::F32, 5, cols), ov = zeros(*dev_, DType::F32, 5, cols, 4);
            cpu_->get_rows(tc, ids, 5, oc);
            dev_->get_rows(tv, ids, 5, ov);
            EXPECT_EQ(download_f32(*dev_, ov), download_f32(*cpu_, oc));  // exact: same float expressions
        }
    }

    void matmul_every_format_and_batch() {
        std::mt19937 rng(3);
        struct Shape {
            int64_t rows, cols, tokens;
        };
        const Shape shapes[] = {{7, 256, 1}, {33, 512, 3}, {19, 256, 9}};
        for (DType t : kWeightTypes) {
            for (const Shape& s : shapes) {
                const int64_t cols = cols_for(t, s.cols + (dtype_traits(t).block_size == 1 ? 8 : 0));
                SCOPED_TRACE(std::string(dtype_name(t)) + " " + std::to_string(s.rows) + "x" + std::to_string(cols) +
                             " tokens " + std::to_string(s.tokens));
                std::vector<uint8_t> w = random_weight(t, s.rows, cols, rng);
                std::vector<float> x = random_floats(static_cast<size_t>(s.tokens * cols), rng);
                Tensor wc = upload(*cpu_, t, s.rows, cols, w.data());
                Tensor wv = upload(*dev_, t, s.rows, cols, w.data(), t == DType::F32 ? 8 : 6);
                Tensor xc = upload_f32(*cpu_, s.tokens, cols, x), xv = upload_f32(*dev_, s.tokens, cols, x, 16);
                Tensor oc = zeros(*cpu_, DType::F32, s.tokens, s.rows), ov = zeros(*dev_, DType::F32, s.tokens, s.rows);
                cpu_->matmul(wc, xc, oc);
                dev_->matmul(wv, xv, ov);
                EXPECT_LT(normalized_error(download_f32(*dev_, ov), download_f32(*cpu_, oc)), 1e-4);
            }
        }
    }

    // More output rows than one grid dimension holds (65535 blocks).
    void matmul_many_rows() {
        std::mt19937 rng(4);
        const int64_t rows = 65600, cols = 32;  // more row groups than one dispatch dimension holds with 64 lanes
        std::vector<uint8_t> w = random_weight(DType::Q8_0, rows, cols, rng);
        std::vector<float> x = random_floats(cols, rng);
        Tensor wc = upload(*cpu_, DType::Q8_0, rows, cols, w.data());
        Tensor wv = upload(*dev_, DType::Q8_0, rows, cols, w.data());
        Tensor xc = upload_f32(*cpu_, 1, cols, x), xv = upload_f32(*dev_, 1, cols, x);
        Tensor oc = zeros(*cpu_, DType::F32, 1, rows), ov = zeros(*dev_, DType::F32, 1, rows);
        cpu_->matmul(wc, xc, oc);
        dev_->matmul(wv, xv, ov);
        EXPECT_LT(normalized_error(download_f32(*dev_, ov), download_f32(*cpu_, oc)), 1e-4);
    }

    void load_weight_keeps_the_file_format() {
        std::mt19937 rng(5);
        const int64_t rows = 9, cols = 256;
        std::vector<uint8_t> w = random_weight(DType::Q4_K, rows, cols, rng);
        TensorRef ref;
        ref.name = "test.weight";
        ref.type = DType::Q4_K;
        ref.n_dims = 2;
        ref.ne[0] = cols;
        ref.ne[1] = rows;
        ref.data = w.data();
        ref.nbytes = w.size();
        Tensor t;
        std::unique_ptr<Buffer> owner;
        ASSERT_TRUE(dev_->load_weight(ref, &t, &owner).ok());
        EXPECT_EQ(t.type, DType::Q4_K);
        EXPECT_EQ(owner->size(), w.size());  // quantized bytes, no f32 copy
        EXPECT_EQ(download(*dev_, t), w);
        ref.type = DType::Q8_K;  // an activation format: not a weight type
        EXPECT_EQ(dev_->load_weight(ref, &t, &owner).code(), EKV_ERR_UNSUPPORTED);
        ref.type = DType::Q4_K;
        ref.nbytes = w.size() - 1;  // truncated data
        EXPECT_EQ(dev_->load_weight(ref, &t, &owner).code(), EKV_ERR_INVALID_FILE);
    }

    void rms_norm_and_in_place() {
        std::mt19937 rng(6);
        for (int64_t cols : {576, 37}) {
            std::vector<float> x = random_floats(static_cast<size_t>(3 * cols), rng, -3.f, 3.f);
            std::vector<float> w = random_floats(static_cast<size_t>(cols), rng);
            Tensor xc = upload_f32(*cpu_, 3, cols, x), xv = upload_f32(*dev_, 3, cols, x, 8);
            Tensor wc = upload_f32(*cpu_, 1, cols, w), wv = upload_f32(*dev_, 1, cols, w);
            Tensor oc = zeros(*cpu_, DType::F32, 3, cols), ov = zeros(*dev_, DType::F32, 3, cols);
            cpu_->rms_norm(xc, wc, 1e-5f, oc);
            dev_->rms_norm(xv, wv, 1e-5f, ov);
            EXPECT_LT(normalized_error(download_f32(*dev_, ov), download_f32(*cpu_, oc)), 1e-5) << cols;
            dev_->rms_norm(xv, wv, 1e-5f, xv);  // in place
            EXPECT_LT(normalized_error(download_f32(*dev_, xv), download_f32(*cpu_, oc)), 1e-5) << cols;
        }
    }

    // Both pair conventions: adjacent (Llama GGUF) and NeoX (i, i + rope_dim/2).
    void rope_full_and_partial() {
        std::mt19937 rng(7);
        const int n_heads = 3, head_dim = 64, tokens = 4;
        const int32_t positions[tokens] = {0, 1, 977, 5000};
        EXPECT_TRUE(dev_->supports_op(BackendOp::RopeNeox));
        struct Case {
            bool neox;
            int rope_dim;
            float factor;
        };
        std::vector<Case> cases;
        for (bool neox : {false, true})
            for (int rope_dim : {64, 32})
                for (float factor : {1.0f, 1.25f}) cases.push_back({neox, rope_dim, factor});
        for (const Case& c : cases) {
            SCOPED_TRACE(std::string(c.neox ? "neox " : "adjacent ") + std::to_string(c.rope_dim) + " " +
                         std::to_string(c.factor));
            std::vector<float> inv_freq(static_cast<size_t>(c.rope_dim / 2));
            for (size_t i = 0; i < inv_freq.size(); ++i)
                inv_freq[i] = std::pow(10000.f, -2.f * static_cast<float>(i) / static_cast<float>(c.rope_dim));
            RopeParams p;
            p.n_heads = n_heads;
            p.head_dim = head_dim;
            p.rope_dim = c.rope_dim;
            p.inv_freq = inv_freq.data();
            p.attn_factor = c.factor;
            p.neox = c.neox;
            std::vector<float> x = random_floats(static_cast<size_t>(tokens * n_heads * head_dim), rng);
            Tensor xc = upload_f32(*cpu_, tokens, n_heads * head_dim, x);
            Tensor xv = upload_f32(*dev_, tokens, n_heads * head_dim, x, 4);
            cpu_->rope(xc, positions, p);
            dev_->rope(xv, positions, p);
            EXPECT_LT(normalized_error(download_f32(*dev_, xv), download_f32(*cpu_, xc)), 1e-6);
        }
    }

    void copy_rows_to_f16_and_f32() {
        std::mt19937 rng(8);
        for (DType dt : {DType::F16, DType::F32}) {
            for (int64_t cols : {192, 7}) {  // 7: F16 rows share 32-bit words with their neighbours
                SCOPED_TRACE(std::string(dtype_name(dt)) + " cols " + std::to_string(cols));
                std::vector<float> src = random_floats(static_cast<size_t>(5 * cols), rng, -70000.f, 70000.f);
                src[1] = 1e-6f;  // an f16 subnormal
                src[2] = -0.f;
                Tensor sc = upload_f32(*cpu_, 5, cols, src), sv = upload_f32(*dev_, 5, cols, src);
                Tensor dc = zeros(*cpu_, dt, 11, cols), dv = zeros(*dev_, dt, 11, cols, dt == DType::F16 ? 2 : 4);
                cpu_->copy_rows(sc, dc, 3);
                dev_->copy_rows(sv, dv, 3);
                cpu_->copy_rows(sc.row_range(1, 2), dc, 9);
                dev_->copy_rows(sv.row_range(1, 2), dv, 9);
                EXPECT_EQ(download(*dev_, dv), download(*cpu_, dc));  // f16 rounding is bit exact
            }
        }
    }

    void silu_mul_and_add() {
        std::mt19937 rng(9);
        const int64_t rows = 3, cols = 1536 + 5;
        std::vector<float> a = random_floats(static_cast<size_t>(rows * cols), rng, -8.f, 8.f);
        std::vector<float> b = random_floats(static_cast<size_t>(rows * cols), rng, -2.f, 2.f);
        Tensor ac = upload_f32(*cpu_, rows, cols, a), av = upload_f32(*dev_, rows, cols, a);
        Tensor bc = upload_f32(*cpu_, rows, cols, b), bv = upload_f32(*dev_, rows, cols, b, 4);
        Tensor oc = zeros(*cpu_, DType::F32, rows, cols), ov = zeros(*dev_, DType::F32, rows, cols);
        cpu_->silu_mul(ac, bc, oc);
        dev_->silu_mul(av, bv, ov);
        EXPECT_LT(normalized_error(download_f32(*dev_, ov), download_f32(*cpu_, oc)), 1e-5);
        cpu_->add(ac, bc, ac);  // in place, as the residual stream
        dev_->add(av, bv, av);
        EXPECT_EQ(download_f32(*dev_, av), download_f32(*cpu_, ac));
    }

    // Gemma's GeGLU (in place, as the model runs it) over a range that reaches
    // both tails of the tanh, and the embedding scale.
    void gelu_mul_and_scale() {
        EXPECT_TRUE(dev_->supports_op(BackendOp::GeluMul) && dev_->supports_op(BackendOp::Scale));
        std::mt19937 rng(14);
        const int64_t rows = 3, cols = 2048 + 7;
        std::vector<float> g = random_floats(static_cast<size_t>(rows * cols), rng, -6.f, 6.f);
        std::vector<float> u = random_floats(static_cast<size_t>(rows * cols), rng, -2.f, 2.f);
        const float tails[] = {-1e30f, -300.f, -20.f, -1e-4f, 0.f, 1e-4f, 20.f, 300.f, 1e30f};
        // u stays small: finite products.
        for (size_t i = 0; i < sizeof tails / sizeof tails[0]; ++i) g[7 * i] = tails[i];
        Tensor gc = upload_f32(*cpu_, rows, cols, g), gv = upload_f32(*dev_, rows, cols, g, 4);
        Tensor uc = upload_f32(*cpu_, rows, cols, u), uv = upload_f32(*dev_, rows, cols, u, 8);
        cpu_->gelu_mul(gc, uc, gc);
        dev_->gelu_mul(gv, uv, gv);
        std::vector<float> want = download_f32(*cpu_, gc), got = download_f32(*dev_, gv);
        // The 1e30 entry dominates the RMS; check it exactly, the rest relatively.
        EXPECT_EQ(got[7 * 8], want[7 * 8]);
        EXPECT_EQ(got[0], 0.f);
        got[7 * 8] = want[7 * 8] = 0.f;
        EXPECT_LT(normalized_error(got, want), 1e-5);

        std::vector<float> x = random_floats(static_cast<size_t>(rows * cols), rng, -3.f, 3.f);
        Tensor xc = upload_f32(*cpu_, rows, cols, x), xv = upload_f32(*dev_, rows, cols, x, 12);
        Tensor oc = zeros(*cpu_, DType::F32, rows, cols), ov = zeros(*dev_, DType::F32, rows, cols);
        cpu_->scale(xc, 25.298221f, oc);
        dev_->scale(xv, 25.298221f, ov);
        EXPECT_EQ(download_f32(*dev_, ov), download_f32(*cpu_, oc));  // one rounded product
        cpu_->scale(xc, -0.5f, xc);  // in place, as Gemma scales its embeddings
        dev_->scale(xv, -0.5f, xv);
        EXPECT_EQ(download_f32(*dev_, xv), download_f32(*cpu_, xc));
    }

    // Gemma-style attention: soft-capped scores over a view with a pinned sink
    // segment whose query re-rotation uses NeoX pairs (full and partial RoPE),
    // a ring past one 64-key block, and a sliding window; a NaN cap is refused.
    void softcapped_attention_with_neox_pinned_segment() {
        EXPECT_TRUE(dev_->supports_op(BackendOp::AttentionSoftcap));
        struct Seg {
            int32_t n_tokens, first_pos, skip;
            bool pinned;
        };
        struct Case {
            const char* name;
            DType type;
            int n_heads, n_kv_heads, head_dim, rope_dim;
            float scale, softcap;
            std::vector<Seg> segs;
            int32_t window, pinned_query_pos;
            std::vector<int32_t> q_pos;
        };
        const std::vector<Case> cases = {
            {"gemma3_270m_shape_f16", DType::F16, 4, 1, 256, 256, 0.0625f, 2.f,
             {{4, 0, 0, true}, {70, 40, 3, false}}, 32, 36, {109, 100}},
            {"partial_rope_f32", DType::F32, 4, 2, 64, 32, 1.f, 5.f, {{4, 0, 0, true}, {20, 4, 0, false}}, 0, 10,
             {23, 20, 12, 8}},
        };
        std::mt19937 rng(15);
        for (const Case& c : cases) {
            SCOPED_TRACE(c.name);
            const int64_t kv_width = static_cast<int64_t>(c.n_kv_heads) * c.head_dim;
            const int64_t q_width = static_cast<int64_t>(c.n_heads) * c.head_dim;
            const int64_t n_q = static_cast<int64_t>(c.q_pos.size());
            std::vector<float> inv_freq(static_cast<size_t>(c.rope_dim / 2));
            for (size_t i = 0; i < inv_freq.size(); ++i)
                inv_freq[i] = std::pow(10000.f, -2.f * static_cast<float>(i) / static_cast<float>(c.rope_dim));
            RopeParams rope;
            rope.n_heads = c.n_kv_heads;
            rope.head_dim = c.head_dim;
            rope.rope_dim = c.rope_dim;
            rope.inv_freq = inv_freq.data();
            rope.neox = true;
            AttentionParams p;
            p.n_heads = c.n_heads;
            p.n_kv_heads = c.n_kv_heads;
            p.head_dim = c.head_dim;
            p.scale = c.scale;
            p.rope = &rope;
            p.softcap = c.softcap;

            KvView view_c, view_v;
            view_c.n_segments = view_v.n_segments = static_cast<int>(c.segs.size());
            view_c.window = view_v.window = c.window;
            view_c.pinned_query_pos = view_v.pinned_query_pos = c.pinned_query_pos;
            for (size_t s = 0; s < c.segs.size(); ++s) {
                const int64_t rows = c.segs[s].skip + c.segs[s].n_tokens;
                std::vector<uint8_t> kv[2];
                for (std::vector<uint8_t>& bytes : kv) {
                    const std::vector<float> f = random_floats(static_cast<size_t>(rows * kv_width), rng, -2.f, 2.f);
                    bytes.resize(f.size() * (c.type == DType::F16 ? 2 : 4));
                    for (size_t i = 0; i < f.size(); ++i) {
                        if (c.type == DType::F16) {
                            const uint16_t h = f32_to_f16(f[i]);
                            std::memcpy(bytes.data() + 2 * i, &h, 2);
                        } else {
                            std::memcpy(bytes.data() + 4 * i, &f[i], 4);
                        }
                    }
                }
                for (KvView* view : {&view_c, &view_v}) {
                    Backend& b = view == &view_c ? *cpu_ : *dev_;
                    KvSegment& seg = view->seg[s];
                    seg.k = upload(b, c.type, rows, kv_width, kv[0].data());
                    seg.v = upload(b, c.type, rows, kv_width, kv[1].data());
                    seg.n_tokens = c.segs[s].n_tokens;
                    seg.first_pos = c.segs[s].first_pos;
                    seg.skip = c.segs[s].skip;
                    seg.pinned = c.segs[s].pinned;
                }
            }
            std::vector<float> q = random_floats(static_cast<size_t>(n_q * q_width), rng, -2.f, 2.f);
            Tensor qc = upload_f32(*cpu_, n_q, q_width, q), qv = upload_f32(*dev_, n_q, q_width, q, 8);
            Tensor oc = zeros(*cpu_, DType::F32, n_q, q_width), ov = zeros(*dev_, DType::F32, n_q, q_width);
            cpu_->attention(qc, c.q_pos.data(), view_c, p, oc);
            dev_->attention(qv, c.q_pos.data(), view_v, p, ov);
            const std::vector<float> want = download_f32(*cpu_, oc);
            EXPECT_LT(normalized_error(download_f32(*dev_, ov), want), 1e-4);

            // The case is sensitive to both features: without the cap, or with
            // adjacent pairs in the re-rotation, the CPU's answer moves well
            // past the tolerance.
            AttentionParams uncapped = p;
            uncapped.softcap = 0.f;
            cpu_->attention(qc, c.q_pos.data(), view_c, uncapped, oc);
            EXPECT_GT(normalized_error(download_f32(*cpu_, oc), want), 1e-2);
            RopeParams adjacent = rope;
            adjacent.neox = false;
            AttentionParams adjacent_pairs = p;
            adjacent_pairs.rope = &adjacent;
            cpu_->attention(qc, c.q_pos.data(), view_c, adjacent_pairs, oc);
            EXPECT_GT(normalized_error(download_f32(*cpu_, oc), want), 1e-3);
        }
        AttentionParams bad;
        bad.n_heads = bad.n_kv_heads = 1;
        bad.head_dim = 64;
        bad.softcap = NAN;
        Tensor q = zeros(*dev_, DType::F32, 1, 64), o = zeros(*dev_, DType::F32, 1, 64);
        const int32_t pos = 0;
        dev_->attention(q, &pos, KvView{}, bad, o);
        EXPECT_EQ(dev_->take_error().code(), EKV_ERR_INVALID_ARGUMENT);

    }

    void copy_raw_clones_rows() {
        std::mt19937 rng(10);
        std::vector<float> v = random_floats(6 * 64, rng);
        std::vector<uint8_t> h(v.size() * 2);
        for (size_t i = 0; i < v.size(); ++i) {
            const uint16_t x = f32_to_f16(v[i]);
            std::memcpy(h.data() + 2 * i, &x, 2);
        }
        Tensor src = upload(*dev_, DType::F16, 6, 64, h.data()), dst = zeros(*dev_, DType::F16, 6, 64, 10);
        dev_->copy_raw(src, dst, 4);
        std::vector<uint8_t> got = download(*dev_, dst);
        EXPECT_TRUE(std::equal(h.begin(), h.begin() + 4 * 128, got.begin()));
        EXPECT_TRUE(std::all_of(got.begin() + 4 * 128, got.end(), [](uint8_t b) { return b == 0; }));
    }

    // Misuse is a recorded INVALID_ARGUMENT (taken with take_error), not a crash,
    // and the backend works on.
    void bad_ops_are_reported_not_crashing() {
        std::vector<float> x(64, 1.f);
        Tensor a = upload_f32(*dev_, 1, 64, x);
        Tensor o = zeros(*dev_, DType::F32, 1, 8);
        dev_->add(a, a, o);  // out narrower than the inputs
        EXPECT_EQ(dev_->take_error().code(), EKV_ERR_INVALID_ARGUMENT);
        const int32_t bad_id = 5;
        Tensor big = zeros(*dev_, DType::F32, 1, 64);
        dev_->get_rows(a, &bad_id, 1, big);  // id past the table
        EXPECT_EQ(dev_->take_error().code(), EKV_ERR_INVALID_ARGUMENT);
        Tensor host_only = a;
        host_only.buffer = nullptr;
        dev_->silu_mul(host_only, a, big);
        EXPECT_EQ(dev_->take_error().code(), EKV_ERR_INVALID_ARGUMENT);
        Tensor kv = zeros(*dev_, DType::F32, 1, 64);
        KiviParams kp;
        kp.nbits = 4;
        kp.group = 32;
        dev_->kivi_quantize_values(kv, 0, 1, kv, 0, kp);  // no head_dim, and an F32 destination
        EXPECT_EQ(dev_->take_error().code(), EKV_ERR_INVALID_ARGUMENT);
        dev_->synchronize();
        EXPECT_TRUE(dev_->take_error().ok());
    }
};

}  // namespace ekv_parity
