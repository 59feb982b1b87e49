# Turns a CUDA source into host C++ for the CUDA emulator (cmake -P, with
# -DIN=file.cu -DOUT=file.cpp): every `kernel<args><<<config>>>(` becomes
# `::cuda_emu::launch("kernel<args>", kernel<args>, config)(`, and the
# dynamic shared array `extern __shared__ [__align__(N)] T name[];` a pointer to the
# launch's dynamic shared memory, and alignas moves before __shared__
# (which becomes `static`). Everything else is compiled as written.
cmake_minimum_required(VERSION 3.25)
file(READ "${IN}" src)
set(out "")
while(TRUE)
  string(REGEX MATCH "[A-Za-z_][A-Za-z0-9_]*(<[^<>;]*>)?<<<" m "${src}")
  if(NOT m)
    break()
  endif()
  string(FIND "${src}" "${m}" p)
  string(LENGTH "${m}" mlen)
  math(EXPR name_len "${mlen} - 3")
  string(SUBSTRING "${src}" ${p} ${name_len} name)
  math(EXPR after "${p} + ${mlen}")
  string(SUBSTRING "${src}" ${after} -1 rest)
  string(FIND "${rest}" ">>>" q)
  if(q LESS 0)
    message(FATAL_ERROR "${IN}: <<< without >>>")
  endif()
  string(SUBSTRING "${rest}" 0 ${q} launch_config)
  math(EXPR q "${q} + 3")
  string(SUBSTRING "${rest}" ${q} -1 rest)
  string(SUBSTRING "${src}" 0 ${p} before)
  string(APPEND out "${before}::cuda_emu::launch(\"${name}\", ${name}, ${launch_config})")
  set(src "${rest}")
endwhile()
string(APPEND out "${src}")
# (An __align__(N) on it is dropped: the emulator's dynamic shared memory is
# 128-byte aligned.)
string(REGEX REPLACE "extern __shared__ (__align__\\([0-9]+\\) )?([A-Za-z_0-9:]+) ([A-Za-z_0-9]+)\\[\\];"
       "\\2* \\3 = ::cuda_emu::dynamic_shared<\\2>();" out "${out}")
# `__shared__ alignas(...) T x` would be `static alignas(...)`: attributes go first.
string(REGEX REPLACE "__shared__ (alignas\\((alignof\\([^()]*\\)|[^()]*)\\))" "\\1 __shared__" out "${out}")
if(out MATCHES "<<<|extern __shared__")
  message(FATAL_ERROR "${IN}: a launch or dynamic shared array the emulator transform does not understand")
endif()
file(WRITE "${OUT}.tmp" "// Generated from ${IN} by tests/cuda_emu/transform_cu.cmake\n#line 1 \"${IN}\"\n${out}")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
