#include "core/log.h"

#include <cstdarg>
#include <cstdio>
#include <mutex>

namespace ekv {
namespace {

// Set rarely, read on every message: a mutex keeps the (callback, user
// data) pair consistent and makes the callback's calls sequential.
std::mutex g_log_mutex;
ekv_log_callback g_callback = nullptr;
void* g_user_data = nullptr;

}  // namespace

void log_message(ekv_log_level level, const char* fmt, ...) {
    char text[1024];
    va_list args;
    va_start(args, fmt);
    std::vsnprintf(text, sizeof text, fmt, args);
    va_end(args);
    std::lock_guard<std::mutex> lock(g_log_mutex);
    if (g_callback) {
        g_callback(level, text, g_user_data);
    } else if (level <= EKV_LOG_WARN) {
        std::fprintf(stderr, "edgekv: %s\n", text);
    }
}

}  // namespace ekv

extern "C" void ekv_log_set_callback(ekv_log_callback callback, void* user_data) {
    std::lock_guard<std::mutex> lock(ekv::g_log_mutex);
    ekv::g_callback = callback;
    ekv::g_user_data = user_data;
}
