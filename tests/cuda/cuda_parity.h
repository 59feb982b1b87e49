// Fixture of the CUDA parity tests (backend/device_parity.h): the CUDA
// backend against the CPU backend. No CUDA device is a failure, not a skip:
// these tests only build with EDGEKV_CUDA=ON and run (label cuda_device) on
// machines with an NVIDIA GPU, never in CI.
#pragma once
#include "backend/device_parity.h"

namespace ekv_cuda_test {

using namespace ekv;
using namespace ekv_parity;

class CudaParity : public DeviceParity<EKV_BACKEND_CUDA> {};

}  // namespace ekv_cuda_test
