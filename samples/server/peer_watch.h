// Noticing that an HTTP client has hung up while its non-streamed answer is
// being generated: nothing is written to the socket until the answer is
// complete, so a closed connection shows only on the read side.
#pragma once
#include <chrono>
#include <cstdint>

namespace edgekv_server {

// True when the peer of connected socket `fd` has closed its side (EOF
// pending) or the connection is broken (reset, error). Bytes waiting to be
// read (a pipelined next request) mean the client is still there. Does not
// block and consumes nothing.
//
// A client that only half-closed (shutdown(SHUT_WR)) and is still reading
// looks exactly like one that closed the socket: both send just a FIN, and
// only a write could tell them apart, which a non-streamed response cannot
// make before it is complete. It counts as gone, as nginx's "client closed
// the connection" (499) does: HTTP/1.1 clients do not half-close while
// awaiting a response (curl, Python's http.client and httpx, browsers), and
// keeping generation alive for the rare one would keep every really
// vanished client's generation too.
bool peer_has_closed(int fd);

// Asks peer_has_closed() at most every kTokensBetweenChecks generated tokens
// or every kTimeBetweenChecks, whichever comes first, and at the first
// call; one poll() is about a microsecond, a token of a real model
// milliseconds, so slow models check every token and fast ones every 16.
class PeerWatch {
public:
    static constexpr int32_t kTokensBetweenChecks = 16;
    static constexpr std::chrono::milliseconds kTimeBetweenChecks{50};

    explicit PeerWatch(int fd) : fd_(fd) {}
    // Called before generating and after each token; false once the peer is
    // gone (and from then on). A watch of fd < 0 never says gone.
    bool still_connected();
    int32_t checks() const { return checks_; }

private:
    int fd_;
    bool gone_ = false;
    int32_t calls_since_check_ = 0;
    int32_t checks_ = 0;
    std::chrono::steady_clock::time_point last_check_{};
};

}  // namespace edgekv_server
