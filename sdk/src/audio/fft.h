// A small mixed-radix FFT (any length; fast for lengths with small prime
// factors, such as Whisper's 400 = 2^4 * 5^2). Double precision: the
// spectrogram it feeds must match a float32 reference to well under its
// rounding.
#pragma once
#include <complex>
#include <cstdint>
#include <vector>

namespace ekv {

class Fft {
public:
    explicit Fft(int32_t n);
    int32_t size() const { return n_; }
    // out[k] = sum_j in[j] * exp(-2 pi i j k / n), k in [0, n). Not thread-safe
    // (uses the plan's scratch).
    void forward(const std::complex<double>* in, std::complex<double>* out);

private:
    void transform(const std::complex<double>* in, int32_t stride, std::complex<double>* out, int32_t n,
                   size_t factor_index);

    int32_t n_;
    std::vector<int32_t> factors_;                // prime factors, smallest first
    std::vector<std::complex<double>> twiddle_;   // exp(-2 pi i j / n), j in [0, n)
    std::vector<std::complex<double>> scratch_;   // one butterfly's inputs
};

}  // namespace ekv
