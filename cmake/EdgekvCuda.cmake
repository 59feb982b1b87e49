# Enables the CUDA language for the CUDA backend (EDGEKV_CUDA=ON).
#
# nvcc: CMAKE_CUDA_COMPILER or CUDACXX when set, else nvcc on PATH or in
# /usr/local/cuda, else the PyPI toolkit tools/setup_deps.sh --cuda puts in
# the cache folder (EDGEKV_CACHE_DIR or .edgekv-cache).
#
# Architectures (EDGEKV_CUDA_ARCHITECTURES): Turing sm_75, Ampere sm_80 /
# sm_86, Jetson Orin sm_87, Ada sm_89 and Hopper sm_90 as SASS, plus sm_90
# PTX so newer GPUs JIT it. Each .cu compiles its architectures in parallel
# (nvcc --threads).
#
# The runtime is linked statically (cudart_static) and the driver library
# (libcuda) never directly: the library loads on machines without an NVIDIA
# driver, where the CUDA device count is 0.
if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
  set(_ekv_cache "$ENV{EDGEKV_CACHE_DIR}")
  if(NOT _ekv_cache)
    set(_ekv_cache "${CMAKE_CURRENT_SOURCE_DIR}/.edgekv-cache")
  endif()
  find_program(EDGEKV_NVCC nvcc PATHS /usr/local/cuda/bin "${_ekv_cache}/pypi-cuda/nvidia/cu13/bin")
  if(NOT EDGEKV_NVCC)
    message(FATAL_ERROR "EDGEKV_CUDA=ON: no nvcc found (PATH, /usr/local/cuda, ${_ekv_cache}/pypi-cuda). "
                        "Run tools/setup_deps.sh --cuda, or set CMAKE_CUDA_COMPILER.")
  endif()
  set(CMAKE_CUDA_COMPILER "${EDGEKV_NVCC}")
endif()
set(EDGEKV_CUDA_ARCHITECTURES "75-real;80-real;86-real;87-real;89-real;90" CACHE STRING
    "CUDA architectures of the CUDA backend's kernels")
set(CMAKE_CUDA_ARCHITECTURES ${EDGEKV_CUDA_ARCHITECTURES})
set(CMAKE_CUDA_HOST_COMPILER ${CMAKE_CXX_COMPILER})
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
set(CMAKE_CUDA_RUNTIME_LIBRARY Static)
enable_language(CUDA)
set(CMAKE_CUDA_FLAGS "${CMAKE_CUDA_FLAGS} --threads 0")
# Register-spill check: the decode matvec / matmul (cuda/matmul*.cu) and
# attention (cuda/attention*.cu) kernels must keep everything in registers, so
# ptxas turns a spill into an error for every SASS architecture built
# ("ptxas error: Registers are spilled to local memory in function ..."). It
# costs nothing: ptxas computes the spill counts anyway. sdk/CMakeLists.txt
# applies EDGEKV_CUDA_SPILL_CHECK_OPTIONS to those sources;
# -DEDGEKV_CUDA_SPILL_CHECK=OFF lifts it (e.g. to look at a new kernel's
# `-Xptxas=-v` numbers before fixing it).
option(EDGEKV_CUDA_SPILL_CHECK "Fail the build when ptxas spills registers in the matmul/attention kernels" ON)
set(EDGEKV_CUDA_SPILL_CHECK_OPTIONS "")
if(EDGEKV_CUDA_SPILL_CHECK)
  set(EDGEKV_CUDA_SPILL_CHECK_OPTIONS "-Xptxas=--warn-on-spills,--warning-as-error")
endif()
find_library(EDGEKV_CUDART_STATIC cudart_static HINTS ${CMAKE_CUDA_IMPLICIT_LINK_DIRECTORIES} REQUIRED)
message(STATUS "edgekv CUDA: ${CMAKE_CUDA_COMPILER} ${CMAKE_CUDA_COMPILER_VERSION}, architectures "
               "${CMAKE_CUDA_ARCHITECTURES}, runtime ${EDGEKV_CUDART_STATIC}")
