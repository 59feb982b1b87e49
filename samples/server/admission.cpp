#include "admission.h"

namespace edgekv_server {

void Admission::Slot::release() {
    if (!owner_) return;
    {
        std::lock_guard<std::mutex> lock(owner_->mu_);
        --owner_->active_;
    }
    owner_->cv_.notify_one();
    owner_ = nullptr;
}

Admission::Slot Admission::enter() {
    std::unique_lock<std::mutex> lock(mu_);
    if (active_ < parallel_ && waiting_ == 0) {
        ++active_;
        return Slot(this);
    }
    if (waiting_ >= queue_) return Slot();
    ++waiting_;
    cv_.wait(lock, [&] { return active_ < parallel_; });
    --waiting_;
    ++active_;
    return Slot(this);
}

int32_t Admission::active() const {
    std::lock_guard<std::mutex> lock(mu_);
    return active_;
}

int32_t Admission::waiting() const {
    std::lock_guard<std::mutex> lock(mu_);
    return waiting_;
}

}  // namespace edgekv_server
