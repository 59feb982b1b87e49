#include "peer_watch.h"

#include <cerrno>

#include <poll.h>
#include <sys/socket.h>

namespace edgekv_server {

bool peer_has_closed(int fd) {
    if (fd < 0) return false;
    pollfd p{fd, POLLIN, 0};
    int ready = 0;
    do {
        ready = ::poll(&p, 1, 0);
    } while (ready < 0 && errno == EINTR);
    if (ready <= 0) return false;  // nothing to read: the client is waiting
    if (p.revents & (POLLERR | POLLNVAL)) return true;
    // Readable: EOF (0), a reset (error) or bytes of a next request (> 0).
    // POLLHUP alone is not enough on every system; the peek settles it.
    char byte = 0;
    ssize_t n = 0;
    do {
        n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n > 0) return false;
    if (n == 0) return true;
    return errno != EAGAIN && errno != EWOULDBLOCK;
}

bool PeerWatch::still_connected() {
    if (gone_ || fd_ < 0) return !gone_;
    const auto now = std::chrono::steady_clock::now();
    const bool due = checks_ == 0 || ++calls_since_check_ >= kTokensBetweenChecks ||
                     now - last_check_ >= kTimeBetweenChecks;
    if (!due) return true;
    calls_since_check_ = 0;
    last_check_ = now;
    ++checks_;
    gone_ = peer_has_closed(fd_);
    return !gone_;
}

}  // namespace edgekv_server
