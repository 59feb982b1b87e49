// edgekv's CUDA emulator, the kernel executor (tests only; see
// include/cuda_runtime_api.h and cuda_emu_runtime.cpp). Each block runs its
// threads as fibers on the calling thread, switched by a few lines of
// assembly (x86-64; the ucontext calls would make a system call per switch).
// __syncthreads and warp shuffles switch fibers; a barrier some live thread
// never reaches (divergence, a shuffle with an exited lane) and a launch
// configuration a GPU refuses are launch failures. Under ASan the switches
// are announced (__sanitizer_start/finish_switch_fiber).
// EKV_CUDA_EMU_REVERSE=1 runs blocks and threads in the opposite order.
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <new>
#include <vector>

#include "cuda_emu_internal.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CUDA_EMU_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define CUDA_EMU_ASAN 1
#endif
#if defined(CUDA_EMU_ASAN)
#include <sanitizer/common_interface_defs.h>
#endif

#if !defined(__x86_64__)
#error "the CUDA emulator's fiber switch is written for x86-64"
#endif

// Saves the callee-saved registers on the current stack, stores the stack
// pointer in *from, and resumes the fiber whose stack pointer is `to`.
extern "C" void cuda_emu_switch(void** from, void* to);
asm(R"(
.text
.globl cuda_emu_switch
.type cuda_emu_switch,@function
cuda_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
.size cuda_emu_switch,.-cuda_emu_switch
.section .note.GNU-stack,"",@progbits
.text
)");

namespace cuda_emu {

thread_local const ThreadCoords* t_coords = nullptr;

namespace {

// ---- fibers -----------------------------------------------------------------

constexpr size_t kStackBytes = size_t(256) << 10;
constexpr size_t kSlotBytes = 16;

struct Stack {
    void* base = nullptr;  // the guard page
    size_t bytes = 0;
    void* bottom() const { return static_cast<char*>(base) + page(); }
    void* top() const { return static_cast<char*>(base) + bytes; }
    static size_t page() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }
};

// Stacks are kept for the next block (mmap per fiber would dominate).
std::deque<Stack>& stack_pool() {  // a deque: fibers keep pointers into it
    static std::deque<Stack> pool;
    return pool;
}

const Stack* stack_for(size_t i) {
    auto& pool = stack_pool();
    while (pool.size() <= i) {
        Stack s;
        s.bytes = kStackBytes + Stack::page();
        s.base = mmap(nullptr, s.bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (s.base == MAP_FAILED) return nullptr;
        mprotect(s.base, Stack::page(), PROT_NONE);  // an overflow faults instead of corrupting
        pool.push_back(s);
    }
    return &pool[i];
}

enum class FiberState { Ready, AtBlockBarrier, AtWarpBarrier, Done };

struct Fiber {
    void* sp = nullptr;
    const Stack* stack = nullptr;
    ThreadCoords coords{};
    FiberState state = FiberState::Ready;
    int warp = 0, lane = 0;
    uint64_t shuffles = 0;  // shuffles done: partners must be at the same one
    bool collective = false;  // waiting at a barrier every lane of the warp must reach
    alignas(16) unsigned char slot[kSlotBytes];
};

void free_shared(unsigned char* p) { ::operator delete[](p, std::align_val_t(128)); }

struct BlockRun {
    std::vector<Fiber> fibers;
    const std::function<void()>* body = nullptr;
    Fiber* current = nullptr;
    void* scheduler_sp = nullptr;
    // 128-byte aligned like a GPU's (wmma wants 32), exactly the launch's
    // size so ASan sees a read past its end.
    std::unique_ptr<unsigned char[], void (*)(unsigned char*)> dynamic_shared{nullptr, free_shared};
    const char* fault = nullptr;  // set by a fiber: the block is abandoned
#if defined(CUDA_EMU_ASAN)
    const void* scheduler_stack_bottom = nullptr;
    size_t scheduler_stack_size = 0;
#endif
};

thread_local BlockRun* t_block = nullptr;

// Fiber -> scheduler. `finished`: the fiber never runs again.
void yield_to_scheduler(bool finished) {
    BlockRun& b = *t_block;
    Fiber& f = *b.current;
#if defined(CUDA_EMU_ASAN)
    void* fake = nullptr;
    __sanitizer_start_switch_fiber(finished ? nullptr : &fake, b.scheduler_stack_bottom, b.scheduler_stack_size);
    cuda_emu_switch(&f.sp, b.scheduler_sp);
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
    (void)finished;
    cuda_emu_switch(&f.sp, b.scheduler_sp);
#endif
}

[[noreturn]] void fiber_main() {
    BlockRun& b = *t_block;
#if defined(CUDA_EMU_ASAN)
    __sanitizer_finish_switch_fiber(nullptr, &b.scheduler_stack_bottom, &b.scheduler_stack_size);
#endif
    (*b.body)();
    b.current->state = FiberState::Done;
    yield_to_scheduler(true);
    __builtin_unreachable();
}

void prepare(Fiber& f) {
    // The switch pops six registers and returns into fiber_main, which then
    // sees the stack alignment of a called function.
    auto* top = static_cast<uintptr_t*>(f.stack->top());
    top -= 8;
    for (int i = 0; i < 6; ++i) top[i] = 0;
    top[6] = reinterpret_cast<uintptr_t>(&fiber_main);
    top[7] = 0;
    f.sp = top;
}

void resume(BlockRun& b, Fiber& f) {
    b.current = &f;
    t_coords = &f.coords;
#if defined(CUDA_EMU_ASAN)
    void* fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, f.stack->bottom(), kStackBytes);
    cuda_emu_switch(&b.scheduler_sp, f.sp);
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
    cuda_emu_switch(&b.scheduler_sp, f.sp);
#endif
    t_coords = nullptr;
}

// EKV_CUDA_EMU_REVERSE=1: blocks, and threads between barriers, run last to
// first. A kernel whose result depends on that order reads what another
// thread writes without a barrier (or another block's writes): a race a
// GPU may or may not show.
bool reversed_order() {
    static const bool reversed = [] {
        const char* v = std::getenv("EKV_CUDA_EMU_REVERSE");
        return v && *v && *v != '0';
    }();
    return reversed;
}

// Runs one block to completion; false (and a report) on a fault.
bool run_block(BlockRun& b, const char* kernel_name) {
    const size_t n = b.fibers.size();
    size_t live = n;
    for (size_t i = 0; i < n; ++i) prepare(b.fibers[i]);
    while (live > 0) {
        bool ran = false;
        for (size_t k = 0; k < n; ++k) {
            Fiber& f = b.fibers[reversed_order() ? n - 1 - k : k];
            if (f.state != FiberState::Ready) continue;
            ran = true;
            resume(b, f);
            if (b.fault) {
                report("kernel %s, block (%u,%u,%u), thread (%u,%u,%u): %s", kernel_name, f.coords.block.x,
                       f.coords.block.y, f.coords.block.z, f.coords.thread.x, f.coords.thread.y, f.coords.thread.z,
                       b.fault);
                return false;
            }
            if (f.state == FiberState::Done) --live;
        }
        if (live == 0) break;
        size_t at_block = 0;
        for (const Fiber& f : b.fibers) at_block += f.state == FiberState::AtBlockBarrier;
        if (at_block == live) {
            for (Fiber& f : b.fibers)
                if (f.state == FiberState::AtBlockBarrier) f.state = FiberState::Ready;
            continue;
        }
        bool released = false;
        for (size_t w0 = 0; w0 < n; w0 += 32) {
            const size_t w1 = w0 + 32 < n ? w0 + 32 : n;
            size_t lanes = 0, waiting = 0;
            for (size_t i = w0; i < w1; ++i) {
                lanes += b.fibers[i].state != FiberState::Done;
                waiting += b.fibers[i].state == FiberState::AtWarpBarrier;
            }
            if (waiting > 0 && waiting == lanes) {
                bool collective = false;
                for (size_t i = w0; i < w1; ++i) collective = collective || b.fibers[i].collective;
                if (collective && lanes < w1 - w0) {
                    report("kernel %s, block (%u,%u,%u), warp %zu: a warp-wide operation (wmma) that a lane of "
                           "the warp exited before reaching",
                           kernel_name, b.fibers[w0].coords.block.x, b.fibers[w0].coords.block.y,
                           b.fibers[w0].coords.block.z, w0 / 32);
                    return false;
                }
                for (size_t i = w0; i < w1; ++i)
                    if (b.fibers[i].state == FiberState::AtWarpBarrier) b.fibers[i].state = FiberState::Ready;
                released = true;
            }
        }
        if (!released && !ran) {
            const Fiber* stuck = nullptr;
            for (const Fiber& f : b.fibers)
                if (f.state != FiberState::Done) stuck = &f;
            report("kernel %s, block (%u,%u,%u): threads wait at barriers that can never complete "
                   "(__syncthreads or a warp shuffle not reached by every live thread; e.g. thread %u)",
                   kernel_name, stuck->coords.block.x, stuck->coords.block.y, stuck->coords.block.z,
                   stuck->coords.thread.x);
            return false;
        }
    }
    return true;
}

void fiber_fault(const char* why) {
    t_block->fault = why;
    yield_to_scheduler(false);  // never resumed
}

}  // namespace

namespace {
std::atomic<long> g_fault_countdown{-1};
}  // namespace

void inject_kernel_fault(long after) { g_fault_countdown.store(after); }

bool run_grid(const char* name, dim3 grid, dim3 block, size_t shared_bytes, const std::function<void()>& body) {
    if (g_fault_countdown.load() >= 0 && g_fault_countdown.fetch_sub(1) == 0) {
        report("kernel %s: injected fault", name);
        return false;
    }
    const size_t n = static_cast<size_t>(block.x) * block.y * block.z;
    BlockRun b;
    b.body = &body;
    b.fibers.resize(n);
    for (size_t i = 0; i < n; ++i) {
        b.fibers[i].stack = stack_for(i);
        if (!b.fibers[i].stack) {
            report("cannot map fiber stacks");
            return false;
        }
    }
    BlockRun* outer = t_block;
    t_block = &b;
    bool ok = true;
    const uint64_t n_blocks = uint64_t(grid.x) * grid.y * grid.z;
    for (uint64_t k = 0; ok && k < n_blocks; ++k) {
        const uint64_t linear = reversed_order() ? n_blocks - 1 - k : k;
        const unsigned bx = static_cast<unsigned>(linear % grid.x);
        const unsigned by = static_cast<unsigned>(linear / grid.x % grid.y);
        const unsigned bz = static_cast<unsigned>(linear / grid.x / grid.y);
        b.dynamic_shared.reset(static_cast<unsigned char*>(::operator new[](shared_bytes ? shared_bytes : 1,
                                                                             std::align_val_t(128))));
        std::memset(b.dynamic_shared.get(), 0xFF, shared_bytes);
        size_t i = 0;
        for (unsigned tz = 0; tz < block.z; ++tz)
            for (unsigned ty = 0; ty < block.y; ++ty)
                for (unsigned tx = 0; tx < block.x; ++tx, ++i) {
                    Fiber& f = b.fibers[i];
                    f.coords = ThreadCoords{{tx, ty, tz}, {bx, by, bz}, block, grid};
                    f.state = FiberState::Ready;
                    f.warp = static_cast<int>(i / 32);
                    f.lane = static_cast<int>(i % 32);
                    f.shuffles = 0;
                    f.collective = false;
                }
        ok = run_block(b, name);
    }
    t_block = outer;
    return ok;
}

// ---- kernel-side entry points ---------------------------------------------------

void sync_block() {
    Fiber& f = *t_block->current;
    f.state = FiberState::AtBlockBarrier;
    yield_to_scheduler(false);
}

void shuffle_xor(unsigned mask, const void* value, void* out, size_t bytes, int lane_mask, int width) {
    BlockRun& b = *t_block;
    Fiber& f = *b.current;
    if (mask != 0xffffffffu || width != 32 || lane_mask < 0 || lane_mask >= 32) {
        fiber_fault("__shfl_xor_sync with a partial mask or width (not emulated)");
        return;
    }
    std::memcpy(f.slot, value, bytes);
    const uint64_t my = ++f.shuffles;
    f.state = FiberState::AtWarpBarrier;
    yield_to_scheduler(false);
    const size_t partner = static_cast<size_t>(f.warp) * 32 + static_cast<size_t>(f.lane ^ lane_mask);
    if (partner >= b.fibers.size() || b.fibers[partner].shuffles != my ||
        b.fibers[partner].state == FiberState::Done) {
        fiber_fault("__shfl_xor_sync reads a lane that is not in the same shuffle (exited, or missing)");
        return;
    }
    std::memcpy(out, b.fibers[partner].slot, bytes);
    f.state = FiberState::AtWarpBarrier;  // nobody overwrites its slot before every lane has read
    yield_to_scheduler(false);
}

void sync_warp(unsigned mask) {
    if (mask != 0xffffffffu) {
        fiber_fault("__syncwarp with a partial mask (not emulated)");
        return;
    }
    t_block->current->state = FiberState::AtWarpBarrier;
    yield_to_scheduler(false);
}

void device_fault(const char* why) { fiber_fault(why); }

void warp_collective() {
    Fiber& f = *t_block->current;
    f.state = FiberState::AtWarpBarrier;
    f.collective = true;  // the scheduler refuses to release it with a lane exited
    yield_to_scheduler(false);
    f.collective = false;
}

void* dynamic_shared_memory() { return t_block->dynamic_shared.get(); }

cudaError_t launch_kernel(const char* name, const void* kernel, dim3 grid, dim3 block, size_t shared_bytes,
                          cudaStream_t stream, std::function<void()> body) {
    Lock lock(api_mutex());
    const unsigned long long threads = 1ull * block.x * block.y * block.z;
    if (threads == 0 || threads > kMaxBlockThreads || block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
        grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535 || shared_bytes > kMaxDynamicShared) {
        report("launch of kernel %s refused: grid (%u,%u,%u), block (%u,%u,%u), %zu bytes of dynamic shared memory",
               name, grid.x, grid.y, grid.z, block.x, block.y, block.z, shared_bytes);
        return fail(cudaErrorInvalidConfiguration);
    }
    Node node;
    node.kind = NodeKind::Kernel;
    node.kernel = kernel;
    node.run = [name, grid, block, shared_bytes, body = std::move(body)]() {
        return run_grid(name, grid, block, shared_bytes, body);
    };
    return submit(stream, std::move(node));
}

}  // namespace cuda_emu
