// An error as the OpenAI API reports it: an HTTP status and a JSON body
// {"error": {"message", "type", "param", "code"}}. Every failure the server
// can meet maps to one of these; nothing else ever reaches a client.
#pragma once
#include <string>

#include "edgekv.h"

namespace edgekv_server {

struct ApiError {
    int http_status = 500;
    std::string type;     // "invalid_request_error", "server_error", ...
    std::string message;
    std::string param;    // the request field at fault, or empty
    std::string code;     // machine-readable reason, or empty
};

inline ApiError bad_request(std::string message, std::string param = "", std::string code = "") {
    return ApiError{400, "invalid_request_error", std::move(message), std::move(param), std::move(code)};
}

// A library status after a call made for a request: invalid arguments and
// unsupported combinations are the client's fault (400), a full cache is
// 413, running out of memory 507 and anything else 500; the message carries
// ekv_last_error() so the client learns why.
inline ApiError library_failure(ekv_status status, const std::string& what) {
    const std::string details = ekv_last_error();
    std::string message = what + ": " + ekv_status_string(status) + (details.empty() ? "" : ": " + details);
    switch (status) {
        case EKV_ERR_INVALID_ARGUMENT:
        case EKV_ERR_UNSUPPORTED:
            return ApiError{400, "invalid_request_error", std::move(message), "", "unsupported"};
        case EKV_ERR_INVALID_TOKEN:
            return ApiError{400, "invalid_request_error", std::move(message), "", "invalid_token"};
        case EKV_ERR_CACHE_FULL:
        case EKV_ERR_CONTEXT_OVERFLOW:
            return ApiError{413, "invalid_request_error", std::move(message), "", "context_length_exceeded"};
        case EKV_ERR_OUT_OF_MEMORY:
            return ApiError{507, "server_error", std::move(message), "", "out_of_memory"};
        default:
            return ApiError{500, "server_error", std::move(message), "", ""};
    }
}

}  // namespace edgekv_server
