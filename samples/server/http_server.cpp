#include "http_server.h"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <random>

#include <poll.h>
#include <sys/socket.h>

#include <httplib.h>

#include "peer_watch.h"
#include "response.h"
#include "web_page.h"

namespace edgekv_server {
namespace {

constexpr const char* kJson = "application/json";

void send_error(httplib::Response& res, const ApiError& e) {
    res.status = e.http_status;
    if (e.http_status == 503) res.set_header("Retry-After", "1");
    res.set_content(error_body(e), kJson);
}

ApiError not_found(const std::string& path) {
    return ApiError{404, "invalid_request_error", "no route " + path, "", "unknown_url"};
}

void log_client_gone(const std::string& id, const GenerationReport& report) {
    std::fprintf(stderr, "edgekv serve: %s: the client closed the connection; generation stopped after %d tokens\n",
                 id.c_str(), report.completion_tokens);
}

// The socket of the connection whose request this thread is handling, for
// handlers that must notice the client leaving (cpp-httplib 0.11 tells a
// handler nothing about its connection).
thread_local int t_connection_socket = -1;

// httplib::Server serving each connection itself, so it can record the
// socket: the same keep-alive loop as httplib's own (at most
// keep_alive_max_count_ requests, the next awaited keep_alive_timeout_sec_),
// built on the protected process_request() of cpp-httplib 0.11's API.
class ConnectionAwareServer : public httplib::Server {
private:
    bool process_and_close_socket(socket_t sock) override {
        t_connection_socket = sock;
        bool ok = false;
        for (size_t left = keep_alive_max_count_; left > 0 && next_request_arrives(sock); --left) {
            bool closed = false;
            ok = httplib::detail::process_client_socket(
                sock, read_timeout_sec_, read_timeout_usec_, write_timeout_sec_, write_timeout_usec_,
                [&](httplib::Stream& strm) { return process_request(strm, left == 1, closed, nullptr); });
            if (!ok || closed) break;
        }
        t_connection_socket = -1;
        ::shutdown(sock, SHUT_RDWR);
        httplib::detail::close_socket(sock);
        return ok;
    }

    // Readable (a request, EOF or an error for process_request to meet)
    // within the keep-alive timeout; a stopped server ends the wait.
    bool next_request_arrives(socket_t sock) const {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(keep_alive_timeout_sec_);
        while (svr_sock_ != INVALID_SOCKET) {
            pollfd p{sock, POLLIN, 0};
            const int ready = ::poll(&p, 1, 50);
            if (ready > 0) return true;
            if (ready < 0 && errno != EINTR) return false;
            if (std::chrono::steady_clock::now() >= deadline) return false;
        }
        return false;
    }
};

}  // namespace

struct HttpServer::Impl {
    ChatService& service;
    HttpConfig config;
    ConnectionAwareServer server;
    int port = -1;
    std::mutex id_mu;
    std::mt19937_64 id_rng{std::random_device{}()};

    Impl(ChatService& s, const HttpConfig& c) : service(s), config(c) {}

    std::string new_id(const char* prefix) {
        std::lock_guard<std::mutex> lock(id_mu);
        char buf[48];
        std::snprintf(buf, sizeof buf, "%s-%016llx%08llx", prefix, static_cast<unsigned long long>(id_rng()),
                      static_cast<unsigned long long>(id_rng() & 0xffffffffu));
        return buf;
    }

    void routes();
    void completion(Endpoint endpoint, const httplib::Request& req, httplib::Response& res);
    void cancel(const httplib::Request& req, httplib::Response& res);
};

void HttpServer::Impl::routes() {
    server.Get("/", [](const httplib::Request&, httplib::Response& res) {
        res.set_header("Cache-Control", "no-cache");
        res.set_content(reinterpret_cast<const char*>(kWebPage), kWebPageSize, "text/html; charset=utf-8");
    });
    server.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
        res.set_content(health_body(service), kJson);
    });
    server.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
        res.set_content(models_body(service.model(), static_cast<int64_t>(std::time(nullptr))), kJson);
    });
    server.Get("/edgekv/v1/info", [this](const httplib::Request&, httplib::Response& res) {
        res.set_content(info_body(service), kJson);
    });
    server.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
        completion(Endpoint::kChat, req, res);
    });
    server.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
        completion(Endpoint::kCompletion, req, res);
    });
    server.Post("/edgekv/v1/cancel", [this](const httplib::Request& req, httplib::Response& res) { cancel(req, res); });
    // Known paths with the wrong method: 405, not 404.
    for (const char* path : {"/v1/chat/completions", "/v1/completions", "/edgekv/v1/cancel"}) {
        server.Get(path, [](const httplib::Request& req, httplib::Response& res) {
            res.set_header("Allow", "POST");
            send_error(res, ApiError{405, "invalid_request_error", req.method + " is not allowed on " + req.path +
                                                                       " (use POST)",
                                     "", "method_not_allowed"});
        });
    }
    // httplib's own refusals (unknown path, body too large) get an OpenAI body.
    server.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return;
        if (res.status == 404) {
            send_error(res, not_found(req.path));
        } else if (res.status == 413) {
            send_error(res, ApiError{413, "invalid_request_error", "the request body is too large", "",
                                     "request_too_large"});
        } else {
            send_error(res, ApiError{res.status, "invalid_request_error", "the request could not be served", "", ""});
        }
    });
    server.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown exception";
        try {
            std::rethrow_exception(ep);
        } catch (const std::exception& e) {
            what = e.what();
        } catch (...) {
        }
        send_error(res, ApiError{500, "server_error", "internal error: " + what, "", ""});
    });
}

void HttpServer::Impl::completion(Endpoint endpoint, const httplib::Request& req, httplib::Response& res) {
    CompletionRequest request;
    ApiError error;
    if (!parse_request(endpoint, req.body, service.config().default_cache, &request, &error)) {
        send_error(res, error);
        return;
    }
    ResponseHead head;
    head.endpoint = endpoint;
    head.id = new_id(endpoint == Endpoint::kChat ? "chatcmpl" : "cmpl");
    head.created = static_cast<int64_t>(std::time(nullptr));
    head.model = service.model().id;

    JobPtr prepared;
    if (!service.prepare(request, head.id, &prepared, &error)) {
        send_error(res, error);
        return;
    }
    // Shared: httplib copies the content provider.
    std::shared_ptr<Job> job(std::move(prepared));
    if (!request.stream) {
        // Nothing is written until the answer is whole, so a client that
        // hung up shows only when its socket is asked (peer_watch.h).
        PeerWatch watch(t_connection_socket);
        GenerationReport report;
        const bool ok = service.run(
            *job, [](const std::string&) { return true; }, &report, &error,
            [&watch] { return watch.still_connected(); });
        job.reset();  // slot and cache back (stored for a retry) before logging
        if (report.client_gone) log_client_gone(head.id, report);
        if (!ok) {
            send_error(res, error);
            return;
        }
        res.set_content(completion_body(head, report, service.model()), kJson);
        return;
    }

    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    const bool include_usage = request.include_usage;
    ChatService* svc = &service;
    res.set_chunked_content_provider(
        "text/event-stream", [svc, head, job, include_usage](size_t, httplib::DataSink& sink) mutable {
            if (!job) return false;  // called again after the end: nothing left
            auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
            bool alive = write(sse_first_chunk(head));
            GenerationReport report;
            ApiError error;
            bool ok = true;
            if (alive) {
                ok = svc->run(
                    *job,
                    [&](const std::string& piece) {
                        alive = alive && write(sse_text_chunk(head, piece));
                        return alive;
                    },
                    &report, &error);
            }
            job.reset();  // slot and cache back before the last bytes go out
            if (report.client_gone) log_client_gone(head.id, report);
            if (!alive) return false;
            if (ok) {
                alive = write(sse_final_chunk(head, report, svc->model()));
                if (alive && include_usage) alive = write(sse_usage_chunk(head, report));
            } else {
                alive = write(sse_error(error));
            }
            if (alive) alive = write(sse_done());
            if (alive) sink.done();
            return alive;
        });
}

void HttpServer::Impl::cancel(const httplib::Request& req, httplib::Response& res) {
    std::string id;
    ApiError error;
    if (!parse_cancel_request(req.body, &id, &error)) {
        send_error(res, error);
        return;
    }
    const bool found = service.cancel(id);
    res.set_content(std::string("{\"id\": ") + quote_json(id) + ", \"cancelled\": " + (found ? "true" : "false") + "}",
                    kJson);
}

HttpServer::HttpServer(ChatService& service, const HttpConfig& config) : impl_(new Impl(service, config)) {
    Impl& s = *impl_;
    const int threads =
        config.threads > 0 ? config.threads : service.config().parallel + service.config().queue + 8;
    s.server.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
    s.server.set_payload_max_length(config.max_body_bytes);
    s.server.set_read_timeout(config.read_timeout_s, 0);
    s.server.set_keep_alive_timeout(5);
    s.routes();
}

HttpServer::~HttpServer() = default;

bool HttpServer::bind(std::string* error) {
    Impl& s = *impl_;
    if (s.config.port == 0) {
        s.port = s.server.bind_to_any_port(s.config.host);
    } else {
        s.port = s.server.bind_to_port(s.config.host, s.config.port) ? s.config.port : -1;
    }
    if (s.port <= 0) {
        *error = "cannot listen on " + s.config.host + ":" + std::to_string(s.config.port) +
                 " (address in use, or not an address of this machine)";
        return false;
    }
    return true;
}

int HttpServer::port() const { return impl_->port; }

bool HttpServer::serve() { return impl_->server.listen_after_bind(); }

void HttpServer::stop() {
    impl_->service.cancel_all();
    impl_->server.stop();
}

}  // namespace edgekv_server
