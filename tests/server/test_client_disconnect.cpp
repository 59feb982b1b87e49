// A client that hangs up on a non-streamed request stops its generation:
// the socket check itself (EOF, reset, pipelined bytes, half-close), how
// often it runs, ChatService stopping on it, and the HTTP server end to end
// on real loopback sockets with the tiny Llama fixture, observed through
// the server's own counters (ServiceCounters), never through timing.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <utility>

#include "chat_service.h"
#include "http_server.h"
#include "peer_watch.h"

namespace edgekv_server {
namespace {

// ---- loopback sockets ------------------------------------------------------

struct Fd {
    int fd = -1;
    explicit Fd(int f = -1) : fd(f) {}
    Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
    Fd& operator=(Fd&& o) noexcept {
        std::swap(fd, o.fd);
        return *this;
    }
    ~Fd() { reset(); }
    void reset() {
        if (fd >= 0) ::close(fd);
        fd = -1;
    }
};

Fd connect_to(int port) {
    Fd c(::socket(AF_INET, SOCK_STREAM, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(c.fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << errno;
    return c;
}

// A connected TCP pair on loopback: {client, server side}.
std::pair<Fd, Fd> tcp_pair() {
    Fd listener(::socket(AF_INET, SOCK_STREAM, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    EXPECT_EQ(::bind(listener.fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(listener.fd, 1), 0);
    EXPECT_EQ(::getsockname(listener.fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
    Fd client = connect_to(ntohs(a.sin_port));
    Fd server(::accept(listener.fd, nullptr, nullptr));
    return {std::move(client), std::move(server)};
}

void send_all(int fd, const std::string& s) {
    size_t sent = 0;
    while (sent < s.size()) {
        const ssize_t n = ::send(fd, s.data() + sent, s.size() - sent, MSG_NOSIGNAL);
        ASSERT_GT(n, 0) << errno;
        sent += static_cast<size_t>(n);
    }
}

// Waits until `ready` holds; the bound only keeps a broken build from
// hanging, it is not what the tests check.
void wait_until(const std::function<bool()>& ready) {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!ready() && std::chrono::steady_clock::now() < give_up)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    ASSERT_TRUE(ready());
}

// ---- the socket check ------------------------------------------------------

TEST(PeerWatch, TellsAClosedPeerFromAWaitingOne) {
    {
        auto [client, server] = tcp_pair();
        EXPECT_FALSE(peer_has_closed(server.fd)) << "connected and quiet: waiting for its answer";
        send_all(client.fd, "GET /next HTTP/1.1\r\n\r\n");
        char buf[64];
        wait_until([&] { return ::recv(server.fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT) > 0; });
        EXPECT_FALSE(peer_has_closed(server.fd)) << "a pipelined request is not a hang-up";
        EXPECT_EQ(::recv(server.fd, buf, sizeof buf, MSG_PEEK), 22) << "the check consumed nothing";
        // Unread bytes ahead of the EOF hide it until they are read, as the
        // HTTP server reads a request before it generates.
        client.reset();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        EXPECT_FALSE(peer_has_closed(server.fd));
        EXPECT_EQ(::recv(server.fd, buf, sizeof buf, 0), 22);
        wait_until([&] { return peer_has_closed(server.fd); });
    }
    {
        // Half-closed: the client could still read, but cannot be told from
        // one that closed (peer_watch.h): gone.
        auto [client, server] = tcp_pair();
        ASSERT_EQ(::shutdown(client.fd, SHUT_WR), 0);
        wait_until([&] { return peer_has_closed(server.fd); });
    }
    {
        // Reset (SO_LINGER 0): the connection is broken.
        auto [client, server] = tcp_pair();
        linger l{1, 0};
        ASSERT_EQ(::setsockopt(client.fd, SOL_SOCKET, SO_LINGER, &l, sizeof l), 0);
        client.reset();
        wait_until([&] { return peer_has_closed(server.fd); });
    }
    EXPECT_FALSE(peer_has_closed(-1));
}

TEST(PeerWatch, ChecksAtTheStartThenEverySixteenTokensAtMost) {
    auto [client, server] = tcp_pair();
    PeerWatch watch(server.fd);
    EXPECT_TRUE(watch.still_connected());
    EXPECT_EQ(watch.checks(), 1) << "the first call looks";
    client.reset();
    wait_until([&] { return peer_has_closed(server.fd); });
    int calls = 0;
    while (watch.still_connected() && calls < 1000) ++calls;
    EXPECT_LT(calls, PeerWatch::kTokensBetweenChecks) << "noticed within 16 tokens of the close";
    EXPECT_LE(watch.checks(), 1 + PeerWatch::kTokensBetweenChecks);
    EXPECT_FALSE(watch.still_connected()) << "gone stays gone";

    PeerWatch closed_first(server.fd);
    EXPECT_FALSE(closed_first.still_connected()) << "a client gone before the prefill is seen at once";
    PeerWatch none(-1);
    EXPECT_TRUE(none.still_connected());
}

// ---- the tiny model behind a ChatService -----------------------------------

struct TinyModel {
    ekv_model* model = nullptr;
    TinyModel() {
        const char* dir = std::getenv("EKV_FIXTURES_DIR");
        const std::string path = std::string(dir ? dir : "tests/fixtures") + "/tiny_llama/tiny_llama_f32.gguf";
        ekv_model_params p = ekv_model_default_params();
        p.backend = EKV_BACKEND_CPU;
        p.n_threads = 1;
        EXPECT_EQ(ekv_model_load(path.c_str(), &p, &model), EKV_OK) << ekv_last_error();
    }
    ~TinyModel() { ekv_model_free(model); }
    ModelDescription describe() const {
        ekv_model_info info = ekv_model_info_default();
        EXPECT_EQ(ekv_model_get_info(model, &info), EKV_OK);
        ModelDescription d;
        d.id = "tiny";
        d.device = info.device;
        d.backend = "cpu";
        d.context_length = info.context_length;
        d.n_vocab = info.n_vocab;
        return d;
    }
};

// A request that only max_tokens ends: no end-of-text stop, and a sink
// ring has no length limit.
CompletionRequest endless(int32_t max_tokens) {
    CompletionRequest r;
    r.endpoint = Endpoint::kChat;
    r.messages = {{"user", "go on forever"}};
    r.max_tokens = max_tokens;
    r.temperature = 0.f;
    r.ignore_eos = true;
    r.has_cache = true;
    r.cache = ekv_cache_default_params();
    r.cache.type = EKV_CACHE_SINK;
    r.cache.window_length = 32;
    return r;
}

// What the tests below rely on: ignore_eos runs the tiny model to
// max_tokens, where it would otherwise stop at its end-of-text token.
TEST(ChatService, IgnoreEosRunsToMaxTokens) {
    TinyModel m;
    ChatService s(m.model, m.describe(), ServiceConfig{});
    CompletionRequest r = endless(400);
    JobPtr job;
    ApiError err;
    GenerationReport rep;
    ASSERT_TRUE(s.prepare(r, "to-the-end", &job, &err)) << err.message;
    ASSERT_TRUE(s.run(*job, [](const std::string&) { return true; }, &rep, &err)) << err.message;
    EXPECT_EQ(rep.stop_reason, EKV_STOP_MAX_TOKENS);
    EXPECT_EQ(rep.completion_tokens, 400);
    r.ignore_eos = false;
    ASSERT_TRUE(s.prepare(r, "to-eos", &job, &err)) << err.message;
    ASSERT_TRUE(s.run(*job, [](const std::string&) { return true; }, &rep, &err)) << err.message;
    EXPECT_EQ(rep.stop_reason, EKV_STOP_EOS);
    EXPECT_LT(rep.completion_tokens, 400);
}

TEST(ChatService, AClientThatLeavesStopsTheGenerationAndKeepsTheConversation) {
    TinyModel m;
    ChatService s(m.model, m.describe(), ServiceConfig{});
    JobPtr job;
    ApiError err;
    GenerationReport rep;
    ASSERT_TRUE(s.prepare(endless(400), "left-mid-way", &job, &err)) << err.message;
    int asked = 0;
    ASSERT_TRUE(s.run(*job, [](const std::string&) { return true; }, &rep, &err, [&] { return ++asked < 6; }))
        << err.message;
    job.reset();
    EXPECT_TRUE(rep.client_gone);
    EXPECT_EQ(rep.stop_reason, EKV_STOP_CANCELLED);
    EXPECT_EQ(asked, 6) << "asked before the prefill and after each token until it said no";
    EXPECT_EQ(rep.completion_tokens, 5);
    EXPECT_EQ(s.store_stats().count, 1) << "kept for a retry, as a cancelled stream's is";
    EXPECT_EQ(s.active(), 0);

    // Gone before it started: no prefill, nothing worth keeping.
    ASSERT_TRUE(s.prepare(endless(400), "left-while-queued", &job, &err)) << err.message;
    ASSERT_TRUE(s.run(*job, [](const std::string&) { return true; }, &rep, &err, [] { return false; }));
    job.reset();
    EXPECT_TRUE(rep.client_gone);
    EXPECT_EQ(rep.completion_tokens, 0);
    EXPECT_EQ(rep.prompt_computed, 0);

    const ServiceCounters n = s.counters();
    EXPECT_EQ(n.generations, 2);
    EXPECT_EQ(n.client_gone, 2);
    EXPECT_EQ(n.completion_tokens, 5);
}

// A job dropped without run() (a stream whose headers could not be sent)
// unregisters its stop request: before the fix, cancel() and the
// shutdown's cancel_all() triggered the freed one (heap corruption).
TEST(ChatService, AJobDroppedUnrunIsForgotten) {
    TinyModel m;
    ChatService s(m.model, m.describe(), ServiceConfig{});
    JobPtr job;
    ApiError err;
    ASSERT_TRUE(s.prepare(endless(8), "dropped", &job, &err)) << err.message;
    EXPECT_TRUE(s.cancel("dropped"));
    job.reset();
    EXPECT_FALSE(s.cancel("dropped"));
    s.cancel_all();
    EXPECT_EQ(s.active(), 0);
}

// ---- end to end over HTTP --------------------------------------------------

std::string post(const std::string& body) {
    return "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           "Content-Length: " +
           std::to_string(body.size()) + "\r\n\r\n" + body;
}

std::string endless_body(int32_t max_tokens) {
    return R"({"messages": [{"role": "user", "content": "go on forever"}], "temperature": 0, "ignore_eos": true, )"
           R"("max_tokens": )" +
           std::to_string(max_tokens) + R"(, "cache": {"type": "sink", "window_length": 32}})";
}

// Reads one response (headers and a Content-Length body) from fd.
std::string read_response(int fd) {
    std::string in;
    char buf[4096];
    size_t want = std::string::npos;
    while (want == std::string::npos || in.size() < want) {
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        in.append(buf, static_cast<size_t>(n));
        const size_t end = in.find("\r\n\r\n");
        const size_t cl = in.find("Content-Length: ");
        if (want == std::string::npos && end != std::string::npos && cl != std::string::npos && cl < end)
            want = end + 4 + std::stoul(in.substr(cl + 16));
    }
    return in;
}

// An HttpServer on a free loopback port, serving on its own thread.
struct RunningServer {
    HttpServer http;
    std::thread thread;
    explicit RunningServer(ChatService& s) : http(s, config()) {
        std::string error;
        EXPECT_TRUE(http.bind(&error)) << error;
        thread = std::thread([this] { http.serve(); });
    }
    ~RunningServer() {
        http.stop();
        thread.join();
    }
    static HttpConfig config() {
        HttpConfig c;
        c.port = 0;
        return c;
    }
};

// A normal request on a kept-alive connection answers in full, twice.
void expect_served_in_full(int port) {
    Fd c = connect_to(port);
    for (int i = 0; i < 2; ++i) {
        send_all(c.fd, post(endless_body(8)));
        const std::string r = read_response(c.fd);
        EXPECT_EQ(r.rfind("HTTP/1.1 200", 0), 0u) << r;
        EXPECT_NE(r.find(R"("completion_tokens":8)"), std::string::npos) << r;
        EXPECT_NE(r.find(R"("finish_reason":"length")"), std::string::npos) << r;
    }
}

TEST(HttpServerDisconnect, AClientThatClosesRightAfterSendingStopsItsGeneration) {
    TinyModel m;
    ServiceConfig cfg;
    cfg.max_tokens_limit = 100000;
    ChatService s(m.model, m.describe(), cfg);
    RunningServer server(s);
    constexpr int32_t kMaxTokens = 20000;
    {
        Fd c = connect_to(server.http.port());
        send_all(c.fd, post(endless_body(kMaxTokens)));
    }  // closed
    wait_until([&] { return s.counters().generations == 1 && s.active() == 0; });
    ServiceCounters n = s.counters();
    EXPECT_EQ(n.client_gone, 1);
    EXPECT_LT(n.completion_tokens, kMaxTokens / 4) << "stopped long before max_tokens";

    expect_served_in_full(server.http.port());
    n = s.counters();
    EXPECT_EQ(n.generations, 3);
    EXPECT_EQ(n.client_gone, 1) << "a client that waits for its answer is not taken for gone";
}

TEST(HttpServerDisconnect, AClientThatLeftWhileQueuedCostsNoPrefill) {
    TinyModel m;
    ServiceConfig cfg;
    cfg.parallel = 1;
    cfg.queue = 1;
    ChatService s(m.model, m.describe(), cfg);
    RunningServer server(s);
    JobPtr holder;  // the one generation slot, taken here
    ApiError err;
    ASSERT_TRUE(s.prepare(endless(8), "holder", &holder, &err)) << err.message;
    {
        Fd c = connect_to(server.http.port());
        send_all(c.fd, post(endless_body(2000)));
        c.reset();
        wait_until([&] { return s.waiting() == 1; });  // read whole and queued, after the close
    }
    holder.reset();
    wait_until([&] { return s.counters().generations == 1 && s.active() == 0; });
    const ServiceCounters n = s.counters();
    EXPECT_EQ(n.client_gone, 1);
    EXPECT_EQ(n.completion_tokens, 0);
    EXPECT_EQ(s.store_stats().count, 0) << "nothing went into the cache, nothing is kept";

    expect_served_in_full(server.http.port());
    EXPECT_EQ(s.counters().client_gone, 1);
}

}  // namespace
}  // namespace edgekv_server
