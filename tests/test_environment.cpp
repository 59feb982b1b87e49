// Points the tests at the fixtures and the real model found at configure
// time, unless the environment already says otherwise. Runs before main(), so
// every test file (and gtest's discovery run) sees the same setup.
#include <cstdlib>

namespace {
const int kEnvironmentReady = [] {
    setenv("EKV_FIXTURES_DIR", EKV_DEFAULT_FIXTURES_DIR, 0);
    if (EKV_DEFAULT_SMOLLM2_GGUF[0] != '\0') setenv("EKV_SMOLLM2_GGUF", EKV_DEFAULT_SMOLLM2_GGUF, 0);
    if (EKV_DEFAULT_GEMMA3_GGUF[0] != '\0') setenv("EKV_GEMMA3_GGUF", EKV_DEFAULT_GEMMA3_GGUF, 0);
    if (EKV_DEFAULT_WHISPER_GGUF[0] != '\0') setenv("EKV_WHISPER_GGUF", EKV_DEFAULT_WHISPER_GGUF, 0);
    return 0;
}();
}  // namespace
