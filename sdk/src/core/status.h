// Internal status type: every fallible function in the core returns a Status.
// The API layer turns it into an ekv_status plus the thread-local message.
#pragma once
#include <string>
#include "edgekv.h"

namespace ekv {

class Status {
public:
    Status() = default;
    Status(ekv_status code, std::string message) : code_(code), message_(std::move(message)) {}
    static Status Ok() { return Status(); }

    bool ok() const { return code_ == EKV_OK; }
    ekv_status code() const { return code_; }
    const std::string& message() const { return message_; }

private:
    ekv_status code_ = EKV_OK;
    std::string message_;
};

// printf-style constructor: Error(EKV_ERR_INVALID_FILE, "tensor %s past end", name)
Status Error(ekv_status code, const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

}  // namespace ekv

// Propagate a failed Status to the caller.
#define EKV_TRY(expr)                              \
    do {                                           \
        ::ekv::Status ekv_try_status_ = (expr);    \
        if (!ekv_try_status_.ok()) return ekv_try_status_; \
    } while (0)
