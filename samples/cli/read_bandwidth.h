// How fast this machine streams memory into the cores: the ceiling a decode
// step, which reads every weight and the live KV once, cannot beat.
#pragma once

#include <cstddef>

namespace edgekv_cli {

// Bytes per second `threads` threads read from a buffer of `bytes` (far
// larger than the last-level cache), each summing its own slice; the best of
// `passes` timed passes. 0 when the buffer cannot be allocated.
double measure_read_bandwidth(int threads, size_t bytes, int passes);

}  // namespace edgekv_cli
