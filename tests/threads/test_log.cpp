// The log callback receives what the library would print, and with it set
// nothing goes to stderr.
#include <mutex>

#include "threads/thread_test_util.h"

namespace ekv_test {
namespace {

struct Collected {
    std::mutex mu;
    std::vector<std::pair<ekv_log_level, std::string>> lines;
};

void collect(ekv_log_level level, const char* message, void* user_data) {
    Collected* c = static_cast<Collected*>(user_data);
    std::lock_guard<std::mutex> lock(c->mu);
    c->lines.emplace_back(level, message);
}

TEST(Log, CallbackGetsTheLoadMessageAndStderrNothing) {
    Collected got;
    ekv_log_set_callback(collect, &got);
    testing::internal::CaptureStderr();
    { ModelPtr model = load_model(tiny_llama_path(), 1); }
    const std::string err = testing::internal::GetCapturedStderr();
    ekv_log_set_callback(nullptr, nullptr);
    EXPECT_EQ(err, "");
    ASSERT_FALSE(got.lines.empty());
    EXPECT_EQ(got.lines[0].first, EKV_LOG_INFO);
    EXPECT_NE(got.lines[0].second.find("llama"), std::string::npos) << got.lines[0].second;
    EXPECT_NE(got.lines[0].second.find("tiny_llama_f32.gguf"), std::string::npos) << got.lines[0].second;
    // Restored: later loads no longer reach the old callback.
    const size_t n = got.lines.size();
    { ModelPtr model = load_model(tiny_llama_path(), 1); }
    EXPECT_EQ(got.lines.size(), n);
}

}  // namespace
}  // namespace ekv_test
