// A step's commands as data, and whether a recorded form of an earlier step
// can run it: the backend-neutral half of replaying a decode step (CUDA
// graphs; the same question Vulkan's command-buffer replay answers).
//
// A device backend logs each command it would launch as an op id (the
// kernel launcher) followed by the bytes of every argument. Two steps whose
// logs are equal launch the same work with the same arguments, so a
// recording of one runs the other exactly; two steps with the same op ids
// but other arguments (a cache row that moved, a buffer that grew) have the
// same shape of work, so a recording can be updated in place instead of
// made anew. Per-step values the kernels read from memory (token ids,
// positions, RoPE tables) are not in the log: only their addresses are.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace ekv {

class CommandLog {
public:
    void clear();
    // Starts a command: `op` identifies what it launches.
    void begin(uint64_t op);
    // Appends argument bytes to the current command.
    void append(const void* data, size_t bytes);
    template <class T>
    void append_value(const T& v) {
        append(&v, sizeof v);
    }

    size_t size() const { return ops_.size(); }
    bool empty() const { return ops_.empty(); }
    const std::vector<uint64_t>& ops() const { return ops_; }
    const std::vector<uint8_t>& bytes() const { return bytes_; }
    // Same commands with the same arguments.
    bool same_as(const CommandLog& o) const { return ops_ == o.ops_ && bytes_ == o.bytes_; }
    // Same commands in the same order, whatever their arguments.
    bool same_ops_as(const CommandLog& o) const { return ops_ == o.ops_; }
    // A hash of the op ids (same_ops_as implies equal hashes).
    uint64_t ops_hash() const;
    // A hash of the ops and their arguments (same_as implies equal hashes).
    uint64_t hash() const;

private:
    std::vector<uint64_t> ops_;
    std::vector<uint8_t> bytes_;  // each command: its op id, then its arguments
};

enum class ReplayAction {
    Direct,  // first sight of this shape of step: launch it directly
    Record,  // seen before, no recording of its shape: record into `slot`
    Update,  // `slot` holds a recording of the same ops: re-record, update it
    Replay,  // `slot` holds a recording of exactly these commands: run it
};

struct ReplayDecision {
    ReplayAction action = ReplayAction::Direct;
    int slot = -1;
};

// Up to `slots` recordings, each of a distinct op sequence (so a KIVI group
// boundary's step or a ring's wrap-around step keep their own recording next
// to the common step's), the least recently used replaced. A shape of step
// is recorded the second time it is seen (the `history` most recent shapes
// run directly are remembered), so a one-off step (a prompt) records nothing.
//
// Without `update_in_place` a shape is the whole log, arguments included:
// there is no Update, a step with new arguments is recorded in a slot of its
// own on its second sight. For a backend whose re-recording costs what a new
// recording does (Vulkan command buffers), so two steps taking turns (two
// caches decoded together) keep a recording each rather than overwriting
// one; a step whose arguments change every time is never recorded.
class ReplayCache {
public:
    explicit ReplayCache(int slots = 4, int history = 16, bool update_in_place = true);

    // What to do with the step in `log`. Replay and Update mark the slot used.
    ReplayDecision decide(const CommandLog& log);
    // The recording in `slot` now runs `log` (after a Record or Update).
    void store(int slot, const CommandLog& log);
    // The slot's recording is gone (it failed, or the backend dropped it).
    void drop(int slot);
    void clear();

    int slots() const { return static_cast<int>(slots_.size()); }
    bool holds(int slot) const { return slot >= 0 && slot < slots() && slots_[slot].used; }

private:
    struct Slot {
        bool used = false;
        CommandLog log;
        uint64_t last_use = 0;
    };
    std::vector<Slot> slots_;
    std::vector<uint64_t> seen_;  // shape hashes of recent directly run steps, oldest first
    size_t history_;
    bool update_in_place_;
    uint64_t clock_ = 0;
};

}  // namespace ekv
