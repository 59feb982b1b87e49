// The chat page (web/index.html), embedded in the binary at build time by
// embed_file.cmake: the server works offline and ships as one file.
#pragma once
#include <cstddef>

namespace edgekv_server {

extern const unsigned char kWebPage[];
extern const size_t kWebPageSize;

}  // namespace edgekv_server
