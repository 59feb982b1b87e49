// The server's engine side, independent of HTTP: turns a parsed request
// into prompt tokens, admits it (bounded parallel + queue), picks the
// conversation cache to continue, runs the generator and reports what
// happened in the numbers the edgekv response field carries.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "admission.h"
#include "api_error.h"
#include "conversation_store.h"
#include "edgekv.h"
#include "request.h"

namespace edgekv_server {

struct ServiceConfig {
    ekv_cache_params default_cache = ekv_cache_default_params();  // for requests without "cache"
    float default_temperature = 0.7f;
    int32_t max_tokens_limit = 4096;  // most tokens one request may ask for
    int32_t parallel = 4;             // generations at once
    int32_t queue = 16;               // requests waiting for one
    int32_t max_conversations = 16;
    uint64_t conversation_bytes = 512ull << 20;
};

// What the model is, for /v1/models, /health and every response.
struct ModelDescription {
    std::string id;       // the name clients see
    std::string device;
    std::string backend;  // cpu, vulkan, cuda
    std::string architecture;
    std::string natural_cache;
    int32_t context_length = 0;
    int32_t n_vocab = 0;
};

// The numbers of one finished generation.
struct GenerationReport {
    std::string text;  // everything sent (for non-streamed responses)
    int32_t prompt_tokens = 0;
    int32_t completion_tokens = 0;
    int32_t prompt_reused = 0;
    int32_t prompt_computed = 0;
    double time_to_first_token_ms = 0;
    double prefill_tokens_per_s = 0;
    double decode_tokens_per_s = 0;
    std::string cache_type;
    uint64_t kv_bytes = 0;
    uint64_t kv_bytes_used = 0;
    int32_t cache_tokens_held = 0;
    ekv_stop_reason stop_reason = EKV_STOP_NONE;
    std::string finish_reason;  // OpenAI's: stop or length
    StoreStats store;
};

// One admitted request between prepare() and run(): it holds its
// generation slot and its conversation cache, both given back when it goes.
class Job;
struct JobDeleter {
    void operator()(Job* job) const;
};
using JobPtr = std::unique_ptr<Job, JobDeleter>;

class ChatService {
public:
    ChatService(ekv_model* model, const ModelDescription& description, const ServiceConfig& config);
    ~ChatService();

    const ModelDescription& model() const { return description_; }
    const ServiceConfig& config() const { return config_; }

    // Renders and tokenizes the prompt, waits for a slot (503 when the
    // queue is full), takes the conversation cache and checks the prompt
    // and max_tokens against it (413 / 400). `id` names the response (for
    // cancel()).
    bool prepare(const CompletionRequest& request, const std::string& id, JobPtr* job,
                 ApiError* error);
    // Generates. on_text receives each piece of text as it is released; it
    // returns false when the client is gone, which stops the generation.
    // False with *error when the library failed (text may have been sent).
    bool run(Job& job, const std::function<bool(const std::string&)>& on_text, GenerationReport* report,
             ApiError* error);
    // Stops the generation of response `id` (also during its prefill).
    bool cancel(const std::string& id);
    // Stops every running generation (server shutdown).
    void cancel_all();

    int32_t active() const { return admission_.active(); }
    int32_t waiting() const { return admission_.waiting(); }
    StoreStats store_stats() const { return store_.stats(); }

private:
    bool prompt_tokens(const CompletionRequest& request, std::vector<int32_t>* tokens, ApiError* error) const;
    bool check_limits(const CompletionRequest& request, Job& job, ApiError* error) const;

    ekv_model* model_;  // one reference, owned
    ModelDescription description_;
    ServiceConfig config_;
    Admission admission_;
    ConversationStore store_;
    mutable std::mutex cancels_mu_;
    std::map<std::string, ekv_cancel*> cancels_;  // running jobs by response id
};

const char* finish_reason_of(ekv_stop_reason reason);
const char* stop_reason_name(ekv_stop_reason reason);

}  // namespace edgekv_server
