// Stop strings over streamed text: text is released only once it can no
// longer be the start of a stop string, so a consumer never sees any part of
// a stop string, and nothing after the first match is ever released.
#pragma once
#include <string>
#include <vector>

namespace ekv {

class StopStringFilter {
public:
    explicit StopStringFilter(std::vector<std::string> stops);
    bool empty() const { return stops_.empty(); }
    // Appends complete UTF-8 text; writes what is now safe to release to
    // *released (appended). True when a stop string occurred: *released then
    // ends just before it and the filter holds nothing more.
    bool push(const std::string& text, std::string* released);
    // End of stream without a match: releases what was held.
    void flush(std::string* released);
    void reset() { held_.clear(); }

private:
    std::vector<std::string> stops_;
    std::string held_;  // released text never ends with a proper prefix of a stop string; this does
};

}  // namespace ekv
