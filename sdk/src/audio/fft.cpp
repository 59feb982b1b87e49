#include "audio/fft.h"

#include <cmath>

namespace ekv {
namespace {

// Plain complex product: std::complex's operator* handles NaN/inf cases
// through a library call (C99 Annex G), ten times slower here.
inline std::complex<double> mul(std::complex<double> a, std::complex<double> b) {
    return {a.real() * b.real() - a.imag() * b.imag(), a.real() * b.imag() + a.imag() * b.real()};
}

}  // namespace

Fft::Fft(int32_t n) : n_(n > 0 ? n : 1) {
    int32_t rest = n_;
    for (int32_t p = 2; p * p <= rest; ++p) {
        while (rest % p == 0) {
            factors_.push_back(p);
            rest /= p;
        }
    }
    if (rest > 1) factors_.push_back(rest);
    twiddle_.resize(static_cast<size_t>(n_));
    for (int32_t j = 0; j < n_; ++j) {
        const double angle = -2.0 * M_PI * static_cast<double>(j) / static_cast<double>(n_);
        twiddle_[static_cast<size_t>(j)] = {std::cos(angle), std::sin(angle)};
    }
    int32_t largest = 1;
    for (int32_t p : factors_) largest = p > largest ? p : largest;
    scratch_.resize(static_cast<size_t>(largest));
}

void Fft::forward(const std::complex<double>* in, std::complex<double>* out) { transform(in, 1, out, n_, 0); }

// Decimation in time: the n inputs (stride apart) split into p interleaved
// sub-sequences whose DFTs (length m = n / p) land in out[r * m ..], then
// one p-point butterfly per k combines them with the twiddles.
void Fft::transform(const std::complex<double>* in, int32_t stride, std::complex<double>* out, int32_t n,
                    size_t factor_index) {
    if (n == 1) {
        out[0] = in[0];
        return;
    }
    const int32_t p = factors_[factor_index];
    const int32_t m = n / p;
    for (int32_t r = 0; r < p; ++r) transform(in + r * stride, stride * p, out + r * m, m, factor_index + 1);
    const int32_t tw_step = n_ / n;  // w_n^j = twiddle_[j * tw_step]
    const int32_t root_step = n_ / p;  // w_p^j = twiddle_[j * root_step]
    std::complex<double>* x = scratch_.data();
    for (int32_t k = 0; k < m; ++k) {
        x[0] = out[k];
        for (int32_t r = 1; r < p; ++r) x[r] = mul(out[r * m + k], twiddle_[static_cast<size_t>(r * k * tw_step)]);
        if (p == 2) {
            out[k] = x[0] + x[1];
            out[m + k] = x[0] - x[1];
            continue;
        }
        for (int32_t q = 0; q < p; ++q) {
            std::complex<double> sum = x[0];
            for (int32_t r = 1; r < p; ++r) sum += mul(x[r], twiddle_[static_cast<size_t>((r * q) % p * root_step)]);
            out[q * m + k] = sum;
        }
    }
}

}  // namespace ekv
