#include "chat_service.h"

#include <chrono>
#include <random>

namespace edgekv_server {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double rate(double n, double seconds) { return seconds > 0 ? n / seconds : 0; }

ekv_status tokenize(const ekv_model* model, const std::string& text, bool add_special, bool parse_special,
                    std::vector<int32_t>* tokens) {
    tokens->assign(text.size() + 16, 0);
    int32_t n = 0;
    ekv_status st = ekv_tokenize(model, text.data(), text.size(), add_special, parse_special, tokens->data(),
                                 static_cast<int32_t>(tokens->size()), &n);
    if (st == EKV_ERR_BUFFER_TOO_SMALL && n > static_cast<int32_t>(tokens->size())) {
        tokens->assign(static_cast<size_t>(n), 0);
        st = ekv_tokenize(model, text.data(), text.size(), add_special, parse_special, tokens->data(), n, &n);
    }
    tokens->resize(st == EKV_OK ? static_cast<size_t>(n) : 0);
    return st;
}

bool is_ring(ekv_cache_type t) { return t == EKV_CACHE_SLIDING_WINDOW || t == EKV_CACHE_SINK; }

}  // namespace

const char* stop_reason_name(ekv_stop_reason reason) {
    switch (reason) {
        case EKV_STOP_MAX_TOKENS: return "max_tokens";
        case EKV_STOP_EOS: return "eos";
        case EKV_STOP_TOKEN: return "stop_token";
        case EKV_STOP_STRING: return "stop_string";
        case EKV_STOP_CANCELLED: return "cancelled";
        case EKV_STOP_CACHE_FULL: return "cache_full";
        case EKV_STOP_ERROR: return "error";
        case EKV_STOP_NONE: break;
    }
    return "none";
}

const char* finish_reason_of(ekv_stop_reason reason) {
    return reason == EKV_STOP_MAX_TOKENS || reason == EKV_STOP_CACHE_FULL ? "length" : "stop";
}

class Job {
public:
    std::string id;
    Clock::time_point start = Clock::now();
    std::vector<int32_t> prompt;
    Admission::Slot slot;
    Conversation conv;
    Reuse reuse = Reuse::kFresh;
    ekv_cache_type cache_type = EKV_CACHE_AUTO;
    int32_t max_tokens = 0;
    ekv_generate_params params = ekv_generate_default_params();
    std::vector<std::string> stop_storage;
    std::vector<const char*> stop_ptrs;
    ekv_cancel* cancel = nullptr;
    ChatService* service = nullptr;  // where `cancel` is registered under `id`
    ConversationStore* store = nullptr;
    bool keep_cache = true;  // false after a failure: the cache is freed, not stored

    // A refused request gives back the conversation it took; a cache made
    // for it holds nothing worth keeping and is freed. A job dropped
    // without run() (a stream whose headers could not be sent) must not
    // leave its freed stop request for cancel() / cancel_all() to trigger.
    ~Job() {
        if (conv.cache) {
            if (keep_cache && store && !conv.tokens.empty()) {
                store->checkin(std::move(conv));
            } else {
                ekv_cache_free(conv.cache);
            }
        }
        if (service && cancel) service->forget_cancel(id, cancel);
        ekv_cancel_free(cancel);
    }
};

void JobDeleter::operator()(Job* job) const { delete job; }

ChatService::ChatService(ekv_model* model, const ModelDescription& description, const ServiceConfig& config)
    : model_(ekv_model_retain(model)),
      description_(description),
      config_(config),
      admission_(config.parallel, config.queue),
      store_(config.max_conversations, config.conversation_bytes) {}

ChatService::~ChatService() {
    store_.clear();
    ekv_model_free(model_);
}

bool ChatService::prompt_tokens(const CompletionRequest& request, std::vector<int32_t>* tokens,
                                ApiError* error) const {
    ekv_status st = EKV_OK;
    if (request.endpoint == Endpoint::kChat) {
        std::vector<ekv_chat_message> msgs;
        size_t guess = 256;
        for (const ChatMessage& m : request.messages) {
            msgs.push_back(ekv_chat_message{m.role.c_str(), m.content.c_str()});
            guess += m.content.size() + m.role.size() + 32;
        }
        // The template's own markers become control tokens; what the client
        // sent (roles, contents) stays text even when it spells one.
        tokens->assign(guess, 0);
        int32_t n = 0;
        st = ekv_chat_tokenize(model_, nullptr, msgs.data(), msgs.size(), 1, tokens->data(),
                               static_cast<int32_t>(tokens->size()), &n);
        if (st == EKV_ERR_BUFFER_TOO_SMALL && n > static_cast<int32_t>(tokens->size())) {
            tokens->assign(static_cast<size_t>(n), 0);
            st = ekv_chat_tokenize(model_, nullptr, msgs.data(), msgs.size(), 1, tokens->data(), n, &n);
        }
        tokens->resize(st == EKV_OK ? static_cast<size_t>(n) : 0);
    } else {
        st = tokenize(model_, request.prompt, true, false, tokens);
    }
    if (st != EKV_OK) {
        *error = library_failure(st, "tokenizing the prompt");
        return false;
    }
    if (tokens->empty()) {
        *error = bad_request("the prompt is empty", request.endpoint == Endpoint::kChat ? "messages" : "prompt");
        return false;
    }
    return true;
}

bool ChatService::prepare(const CompletionRequest& request, const std::string& id, JobPtr* out,
                          ApiError* error) {
    JobPtr job(new Job());
    job->id = id;
    job->store = &store_;
    if (!prompt_tokens(request, &job->prompt, error)) return false;
    if (request.max_tokens && *request.max_tokens > config_.max_tokens_limit) {
        *error = bad_request("max_tokens is too large: " + std::to_string(*request.max_tokens) +
                                 ". This server allows at most " + std::to_string(config_.max_tokens_limit) +
                                 " completion tokens (edgekv serve --max-tokens-limit).",
                             "max_tokens", "invalid_value");
        return false;
    }

    job->slot = admission_.enter();
    if (!job->slot.held()) {
        *error = ApiError{503, "server_error",
                          "the server is busy: " + std::to_string(config_.parallel) + " generations are running and " +
                              std::to_string(config_.queue) + " requests are waiting; retry shortly",
                          "", "server_busy"};
        return false;
    }

    const ekv_cache_params& cp = request.has_cache ? request.cache : config_.default_cache;
    const std::string key = cache_key(cp);
    job->reuse = store_.checkout(key, job->prompt, &job->conv);
    if (!job->conv.cache) {
        ekv_cache* cache = nullptr;
        const ekv_status st = ekv_cache_create(model_, &cp, &cache);
        if (st != EKV_OK) {
            *error = library_failure(st, "creating the cache");
            if (error->http_status == 413) error->http_status = 400;
            error->param = "cache";
            return false;
        }
        job->conv.cache = cache;
        job->conv.key = key;
        job->conv.tokens.clear();
    }
    if (!check_limits(request, *job, error)) return false;

    ekv_generate_params& gp = job->params;
    gp.max_new_tokens = job->max_tokens;
    gp.temperature = request.temperature.value_or(config_.default_temperature);
    gp.top_p = request.top_p.value_or(1.0f);
    if (request.top_k) gp.top_k = *request.top_k;
    if (request.min_p) gp.min_p = *request.min_p;
    if (request.repetition_penalty) gp.repetition_penalty = *request.repetition_penalty;
    gp.seed = request.seed ? *request.seed : std::random_device{}();
    gp.stop_at_eos = request.ignore_eos ? 0 : 1;
    job->stop_storage = request.stop;
    for (const std::string& s : job->stop_storage) job->stop_ptrs.push_back(s.c_str());
    gp.stop_strings = job->stop_ptrs.empty() ? nullptr : job->stop_ptrs.data();
    gp.n_stop_strings = static_cast<int32_t>(job->stop_ptrs.size());
    if (ekv_cancel_create(&job->cancel) != EKV_OK) {
        *error = library_failure(EKV_ERR_OUT_OF_MEMORY, "creating a stop request");
        return false;
    }
    gp.cancel = job->cancel;
    {
        std::lock_guard<std::mutex> lock(cancels_mu_);
        cancels_[id] = job->cancel;
    }
    job->service = this;
    *out = std::move(job);
    return true;
}

// Non-ring caches hold at most their capacity (static) or the model's
// trained context; rings hold a window and may run on.
bool ChatService::check_limits(const CompletionRequest& request, Job& job, ApiError* error) const {
    ekv_cache_get_type(job.conv.cache, &job.cache_type);
    int32_t capacity = -1;
    ekv_cache_capacity(job.conv.cache, &capacity);
    const int32_t n_prompt = static_cast<int32_t>(job.prompt.size());
    int32_t room = config_.max_tokens_limit;
    if (!is_ring(job.cache_type)) {
        const int32_t limit = capacity > 0 ? capacity : description_.context_length;
        if (limit > 0 && n_prompt >= limit) {
            *error = ApiError{413, "invalid_request_error",
                              "the prompt is " + std::to_string(n_prompt) + " tokens; the " +
                                  ekv_cache_type_name(job.cache_type) + " cache holds at most " +
                                  std::to_string(limit) + " (prompt and completion together)",
                              request.endpoint == Endpoint::kChat ? "messages" : "prompt",
                              "context_length_exceeded"};
            return false;
        }
        if (limit > 0) room = std::min(room, limit - n_prompt);
    }
    if (request.max_tokens && *request.max_tokens > room) {
        *error = bad_request("max_tokens is too large: " + std::to_string(*request.max_tokens) + ". The " +
                                 ekv_cache_type_name(job.cache_type) + " cache has room for " + std::to_string(room) +
                                 " completion tokens after the " + std::to_string(n_prompt) + "-token prompt.",
                             "max_tokens", "context_length_exceeded");
        return false;
    }
    job.max_tokens = request.max_tokens ? *request.max_tokens : room;
    return true;
}

bool ChatService::run(Job& job, const std::function<bool(const std::string&)>& on_text, GenerationReport* report,
                      ApiError* error, const std::function<bool()>& client_present) {
    *report = GenerationReport{};
    bool client_gone = false;
    // A client that left while queued costs no prefill: the triggered stop
    // request ends the generation before its first forward pass.
    auto stop_if_gone = [&] {
        if (!client_gone && client_present && !client_present()) {
            client_gone = true;
            ekv_cancel_trigger(job.cancel);
        }
    };
    stop_if_gone();
    ekv_generator* gen = nullptr;
    ekv_status st = ekv_generator_create(model_, job.conv.cache, job.prompt.data(),
                                         static_cast<int32_t>(job.prompt.size()), &job.params, &gen);
    std::vector<int32_t> generated;
    bool first_text = true;
    std::string text(256, '\0');
    while (st == EKV_OK) {
        ekv_generator_event ev = ekv_generator_event_default();
        st = ekv_generator_next(gen, &ev, &text[0], text.size());
        if (st == EKV_ERR_BUFFER_TOO_SMALL) {  // the event waits for a bigger buffer
            text.assign(ev.text_len + 1, '\0');
            st = EKV_OK;
            continue;
        }
        if (st != EKV_OK) break;
        if (ev.type == EKV_EVENT_TOKEN) {
            generated.push_back(ev.token);
            stop_if_gone();
        }
        if (first_text && (ev.text_len > 0 || ev.type == EKV_EVENT_DONE)) {
            report->time_to_first_token_ms = ms_since(job.start);
            first_text = false;
        }
        if (ev.text_len > 0) {
            const std::string piece(text.data(), ev.text_len);
            report->text += piece;
            if (!client_gone && !on_text(piece)) {
                client_gone = true;  // stop computing for nobody
                ekv_cancel_trigger(job.cancel);
            }
        }
        if (ev.type == EKV_EVENT_DONE) break;
    }
    ekv_generate_result res = ekv_generate_default_result();
    if (gen) ekv_generator_get_result(gen, &res);
    const std::string failure = st != EKV_OK ? ekv_last_error() : "";
    ekv_generator_free(gen);  // the cache is free again
    forget_cancel(job.id, job.cancel);
    {
        std::lock_guard<std::mutex> lock(cancels_mu_);
        ++counters_.generations;
        if (client_gone) ++counters_.client_gone;
        counters_.completion_tokens += res.n_generated;
    }

    // The cache holds the prompt and the generated tokens up to its seq_len.
    int32_t seq_len = 0;
    ekv_cache_seq_len(job.conv.cache, &seq_len);
    job.conv.tokens = job.prompt;
    job.conv.prompt_len = job.prompt.size();
    job.conv.tokens.insert(job.conv.tokens.end(), generated.begin(), generated.end());
    if (seq_len >= 0 && static_cast<size_t>(seq_len) < job.conv.tokens.size()) job.conv.tokens.resize(seq_len);

    ekv_cache_stats cs = ekv_cache_stats_default();
    ekv_cache_get_stats(job.conv.cache, &cs);
    report->prompt_tokens = res.n_prompt_tokens;
    report->completion_tokens = res.n_generated;
    report->prompt_reused = res.n_prompt_reused;
    report->prompt_computed = res.n_prompt_forwarded;
    report->prefill_tokens_per_s = rate(res.n_prompt_forwarded, res.prefill_seconds);
    report->decode_tokens_per_s = rate(res.n_generated > 1 ? res.n_generated - 1 : 0, res.decode_seconds);
    report->cache_type = ekv_cache_type_name(job.cache_type);
    report->kv_bytes = cs.host_bytes + cs.device_bytes;
    report->kv_bytes_used = cs.used_bytes;
    report->cache_tokens_held = cs.tokens_held;
    report->stop_reason = res.stop_reason;
    report->finish_reason = finish_reason_of(res.stop_reason);
    report->client_gone = client_gone;
    if (st != EKV_OK) {
        job.keep_cache = false;
        *error = ApiError{500, "server_error", std::string("generation failed: ") + ekv_status_string(st) +
                                                   (failure.empty() ? "" : ": " + failure),
                          "", ""};
        if (st == EKV_ERR_OUT_OF_MEMORY) error->http_status = 507;
        report->store = store_.stats();
        return false;
    }
    // Stored now, so the report counts it (eviction may free it at once).
    // A generation stopped before its prompt went in holds nothing to
    // continue: the job frees that cache when it goes.
    if (!job.conv.tokens.empty()) {
        store_.checkin(std::move(job.conv));
        job.conv = Conversation{};
    }
    report->store = store_.stats();
    return true;
}

ServiceCounters ChatService::counters() const {
    std::lock_guard<std::mutex> lock(cancels_mu_);
    return counters_;
}

void ChatService::forget_cancel(const std::string& id, const ekv_cancel* cancel) {
    std::lock_guard<std::mutex> lock(cancels_mu_);
    auto it = cancels_.find(id);
    if (it != cancels_.end() && it->second == cancel) cancels_.erase(it);
}

bool ChatService::cancel(const std::string& id) {
    std::lock_guard<std::mutex> lock(cancels_mu_);
    auto it = cancels_.find(id);
    if (it == cancels_.end()) return false;
    ekv_cancel_trigger(it->second);
    return true;
}

void ChatService::cancel_all() {
    std::lock_guard<std::mutex> lock(cancels_mu_);
    for (auto& kv : cancels_) ekv_cancel_trigger(kv.second);
}

}  // namespace edgekv_server
