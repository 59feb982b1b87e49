// The HTTP side of edgekv serve: OpenAI-compatible routes over a
// ChatService, the embedded chat page, errors as OpenAI-shaped JSON.
// cpp-httplib stays inside http_server.cpp.
#pragma once
#include <memory>
#include <string>

#include "chat_service.h"

namespace edgekv_server {

struct HttpConfig {
    std::string host = "127.0.0.1";
    int port = 8080;  // 0: any free port
    size_t max_body_bytes = 8u << 20;
    int read_timeout_s = 30;
    int threads = 0;  // connection threads; 0: parallel + queue + 8
};

class HttpServer {
public:
    HttpServer(ChatService& service, const HttpConfig& config);
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    // Binds the listening socket; false with *error when it cannot.
    bool bind(std::string* error);
    int port() const;
    // Serves until stop() (from any thread).
    bool serve();
    // Stops accepting, asks running generations to stop, and returns at once.
    void stop();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace edgekv_server
