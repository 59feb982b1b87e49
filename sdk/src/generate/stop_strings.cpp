#include "generate/stop_strings.h"

#include <algorithm>

namespace ekv {

StopStringFilter::StopStringFilter(std::vector<std::string> stops) {
    for (std::string& s : stops)
        if (!s.empty()) stops_.push_back(std::move(s));
}

bool StopStringFilter::push(const std::string& text, std::string* released) {
    if (stops_.empty()) {
        released->append(text);
        return false;
    }
    held_.append(text);
    // Any match starts inside held_: what was released before cannot begin one.
    size_t first = std::string::npos;
    for (const std::string& s : stops_) first = std::min(first, held_.find(s));
    if (first != std::string::npos) {
        released->append(held_, 0, first);
        held_.clear();
        return true;
    }
    // Keep the longest tail of held_ that is a proper prefix of a stop string.
    size_t keep = 0;
    for (const std::string& s : stops_) {
        for (size_t k = std::min(s.size() - 1, held_.size()); k > keep; --k) {
            if (held_.compare(held_.size() - k, k, s, 0, k) == 0) {
                keep = k;
                break;
            }
        }
    }
    released->append(held_, 0, held_.size() - keep);
    held_.erase(0, held_.size() - keep);
    return false;
}

void StopStringFilter::flush(std::string* released) {
    released->append(held_);
    held_.clear();
}

}  // namespace ekv
