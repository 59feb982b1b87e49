/*
 * edgekv.h - the whole public C ABI of edgekv, an on-device LLM inference SDK.
 *
 * Usage (error handling shortened; every call returns an ekv_status):
 *
 *     ekv_model *model = NULL;
 *     ekv_model_params mp = ekv_model_default_params();
 *     if (ekv_model_load("SmolLM2-135M-Instruct.Q4_1.gguf", &mp, &model) != EKV_OK) {
 *         fprintf(stderr, "load failed: %s\n", ekv_last_error());
 *         return 1;
 *     }
 *     ekv_cache_params cp = ekv_cache_default_params();   // type = EKV_CACHE_AUTO
 *     ekv_cache *cache = NULL;
 *     ekv_cache_create(model, &cp, &cache);
 *
 *     int32_t prompt[512], n_prompt = 0, out[64];
 *     ekv_tokenize(model, "Hello", 5, 1, 0, prompt, 512, &n_prompt);
 *     ekv_generate_params gp = ekv_generate_default_params();
 *     gp.max_new_tokens = 64;
 *     ekv_generate_result res = ekv_generate_default_result();
 *     ekv_generate(model, cache, prompt, n_prompt, &gp, out, 64, &res);
 *
 *     ekv_cache_free(cache);
 *     ekv_model_free(model);
 *
 * Step-wise, with a stop any thread may request:
 *
 *     ekv_cancel *stop = NULL;
 *     ekv_cancel_create(&stop);             // ekv_cancel_trigger(stop) from a UI thread
 *     gp.cancel = stop;
 *     ekv_generator *gen = NULL;
 *     ekv_generator_create(model, cache, prompt, n_prompt, &gp, &gen);
 *     ekv_generator_event ev = ekv_generator_event_default();
 *     char text[256];
 *     while (ekv_generator_next(gen, &ev, text, sizeof text) == EKV_OK) {
 *         fputs(text, stdout);              // UTF-8 complete, never part of a stop string
 *         if (ev.type == EKV_EVENT_DONE) break;
 *     }
 *     ekv_generator_free(gen);
 *     ekv_cancel_free(stop);
 *
 * Conventions:
 *  - Opaque handles. Params/result structs start with `struct_size`; always
 *    initialise them with their ekv_*_init(&p, sizeof p) function (or the
 *    static inline ekv_*_default_*() wrappers, which compile into the
 *    caller), so that a library with larger structs never writes past an
 *    older caller's struct: the library reads and writes only the first
 *    struct_size bytes and defaults the rest.
 *  - Every fallible function returns an ekv_status. On failure a human readable
 *    message is available from ekv_last_error() (thread-local, valid until the
 *    next edgekv call on the same thread). Nothing is written to outputs on
 *    failure unless stated.
 *  - ekv_*_free(NULL) is a no-op. Strings returned as `const char*` are owned by
 *    the library and live as long as stated; buffers passed in are owned by the
 *    caller.
 *  - Threads: a loaded ekv_model is immutable and may be shared across threads:
 *    any number of caches of one model may run ekv_forward, ekv_generate,
 *    ekv_encode_audio and generators on different threads at once. On the CPU
 *    they run in parallel (each cache has its own execution stream; the worker
 *    threads go to one forward at a time and the others run on their calling
 *    thread). On Vulkan the device has one queue and stream: forwards of
 *    different caches take turns inside the library (they wait, never race).
 *    An ekv_cache (the per-conversation state) is used by one thread at a
 *    time: a call that finds it in use by another thread returns
 *    EKV_ERR_INVALID_STATE ("cache is busy") and changes nothing.
 *  - Lifetimes: caches, detokenizers and generators keep their model alive,
 *    and generators their cache: ekv_model_free / ekv_cache_free drop the
 *    caller's reference and the last object to go frees the memory, so the
 *    objects may be freed in any order (as garbage collectors do).
 *  - Stop requests: an ekv_cancel may be triggered from any thread at any
 *    moment; calls that take one return EKV_ERR_CANCELLED (the generator: an
 *    end event with EKV_STOP_CANCELLED) and leave the cache as before.
 *  - No C++ exception ever crosses this ABI; the library never aborts on bad
 *    input.
 */
#ifndef EDGEKV_H
#define EDGEKV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(EDGEKV_SHARED)
#  if defined(EDGEKV_BUILD)
#    define EKV_API __declspec(dllexport)
#  else
#    define EKV_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__)
#  define EKV_API __attribute__((visibility("default")))
#else
#  define EKV_API
#endif

/* ===================================================================== */
/*                               STABLE API                              */
/* ===================================================================== */

/* ---- Versioning ------------------------------------------------------ */

#define EKV_VERSION_MAJOR 0
#define EKV_VERSION_MINOR 1
#define EKV_VERSION_PATCH 0
/* Encoded as major*10000 + minor*100 + patch. */
#define EKV_VERSION_NUMBER (EKV_VERSION_MAJOR * 10000 + EKV_VERSION_MINOR * 100 + EKV_VERSION_PATCH)

#define EKV_STRINGIFY_(x) #x
#define EKV_STRINGIFY(x) EKV_STRINGIFY_(x)
#define EKV_VERSION_STRING \
    EKV_STRINGIFY(EKV_VERSION_MAJOR) "." EKV_STRINGIFY(EKV_VERSION_MINOR) "." EKV_STRINGIFY(EKV_VERSION_PATCH)

/* Version string of the linked library, e.g. "0.1.0". Static storage. */
EKV_API const char *ekv_version(void);
/* EKV_VERSION_NUMBER of the linked library (may differ from the header's). */
EKV_API int ekv_version_number(void);

/* ---- Status ----------------------------------------------------------- */

/* Stable numbers: never renumbered or reused. */
typedef enum ekv_status {
    EKV_OK = 0,
    EKV_ERR_INVALID_ARGUMENT = 1,  /* NULL handle, out-of-range value, bad params */
    EKV_ERR_OUT_OF_MEMORY = 2,     /* host or device allocation failed */
    EKV_ERR_IO = 3,                /* file cannot be opened, read or written */
    EKV_ERR_INVALID_FILE = 4,      /* malformed, truncated or hostile file */
    EKV_ERR_UNSUPPORTED = 5,       /* feature, type or combination not supported */
    EKV_ERR_UNSUPPORTED_ARCH = 6,  /* model architecture not supported */
    EKV_ERR_CACHE_FULL = 7,        /* a fixed-capacity cache cannot take the tokens */
    EKV_ERR_INVALID_TOKEN = 8,     /* token id outside [0, n_vocab) */
    EKV_ERR_CONTEXT_OVERFLOW = 9,  /* input longer than the cache or model allows */
    EKV_ERR_BACKEND = 10,          /* backend or device failure / not available */
    EKV_ERR_CANCELLED = 11,        /* stopped by the caller */
    EKV_ERR_MODEL_MISMATCH = 12,   /* object belongs to another model */
    EKV_ERR_INTERNAL = 13,         /* a bug in edgekv; please report */
    EKV_ERR_BUFFER_TOO_SMALL = 14, /* output buffer too small; required size reported */
    EKV_ERR_DEVICE_LOST = 15,      /* GPU device lost; free and recreate objects */
    EKV_ERR_INVALID_STATE = 16     /* call not valid in the object's current state */
} ekv_status;

/* Short constant description of a status ("invalid argument"). Never NULL. */
EKV_API const char *ekv_status_string(ekv_status status);

/* Details of the last failure on this thread ("" if none). Owned by the
 * library, valid until the next edgekv call on this thread. */
EKV_API const char *ekv_last_error(void);

/* ---- Log ------------------------------------------------------------------ */

typedef enum ekv_log_level {
    EKV_LOG_ERROR = 0,
    EKV_LOG_WARN = 1,
    EKV_LOG_INFO = 2,
    EKV_LOG_DEBUG = 3
} ekv_log_level;

/* Receives every message the library would print (driver and Vulkan
 * validation messages included), one complete line without newline. Called
 * from whichever thread produced it, one call at a time. */
typedef void (*ekv_log_callback)(ekv_log_level level, const char *message, void *user_data);

/* Sets the process-wide log callback (NULL restores the default: warnings
 * and errors to stderr). With a callback set the library writes nothing to
 * stderr. */
EKV_API void ekv_log_set_callback(ekv_log_callback callback, void *user_data);

/* ---- Backends and devices ----------------------------------------------- */

typedef enum ekv_backend_kind {
    EKV_BACKEND_AUTO = 0,   /* best available: CUDA, then Vulkan, then CPU */
    EKV_BACKEND_CPU = 1,
    EKV_BACKEND_VULKAN = 2,
    EKV_BACKEND_CUDA = 3
} ekv_backend_kind;

/* Name of a backend kind ("cpu", "vulkan", "cuda", "auto"). Static storage. */
EKV_API const char *ekv_backend_name(ekv_backend_kind kind);
/* Parses "auto", "cpu", "vulkan" or "cuda". */
EKV_API ekv_status ekv_backend_from_name(const char *name, ekv_backend_kind *out);
/* 1 if this build has the backend and it found at least one device, else 0. */
EKV_API int ekv_backend_available(ekv_backend_kind kind);

typedef struct ekv_device_info {
    size_t struct_size;
    ekv_backend_kind backend;
    int32_t index;
    char name[256];                /* e.g. "AMD Ryzen 7 (8 threads)" */
    uint64_t device_memory_bytes;  /* memory local to the device (RAM for CPU) */
    int32_t unified_memory;        /* 1 if host and device share memory (UMA) */
    int32_t n_threads;             /* CPU: worker threads used by default */
    /* ---- fields after this line were added after v1 ---- */
    /* Of device_memory_bytes, what can still be allocated now: the CPU's
     * MemAvailable; on Vulkan the heaps' budget minus their use
     * (VK_EXT_memory_budget), or their size where the driver lacks it. */
    uint64_t device_memory_free_bytes;
} ekv_device_info;

/* Initialises *info for a caller whose struct has `size` bytes (sizeof). */
EKV_API ekv_status ekv_device_info_init(ekv_device_info *info, size_t size);
/* Number of devices of a backend (0 if the backend is not built). */
EKV_API ekv_status ekv_device_count(ekv_backend_kind kind, int32_t *out_count);
/* Describes device `index` of `kind`; `out` must come from ekv_device_info_default(). */
EKV_API ekv_status ekv_device_get_info(ekv_backend_kind kind, int32_t index, ekv_device_info *out);

/* ---- Stop requests -------------------------------------------------------- */

/* A stop request shared between the thread that runs a long call and any
 * other thread. Triggering is sticky until ekv_cancel_reset: a call started
 * with a triggered request returns EKV_ERR_CANCELLED at once. Polled between
 * layers and chunks of a prefill (where the cache can be rewound exactly:
 * not inside a sliding-window or sink cache whose ring would overwrite
 * tokens it still needs, nor a Mamba state; there it is polled before the
 * call starts and between tokens), between tokens of a generation, between
 * encoder layers and during model load. Reference counted: whatever holds
 * it (a cache it is attached to) keeps it alive. */
typedef struct ekv_cancel ekv_cancel;
EKV_API ekv_status ekv_cancel_create(ekv_cancel **out);
/* Requests the stop. Any thread, any moment; never blocks. NULL is a no-op. */
EKV_API void ekv_cancel_trigger(ekv_cancel *cancel);
/* Clears the request so the object can be used for another call. */
EKV_API void ekv_cancel_reset(ekv_cancel *cancel);
/* 1 if triggered (and not reset since), else 0 (also for NULL). */
EKV_API int ekv_cancel_is_triggered(const ekv_cancel *cancel);
/* Drops the caller's reference. NULL is a no-op. */
EKV_API void ekv_cancel_free(ekv_cancel *cancel);

/* ---- Models --------------------------------------------------------------- */

typedef struct ekv_model ekv_model;

/* Model load progress in [0, 1]. Return nonzero to continue, 0 to stop the
 * load (it then returns EKV_ERR_CANCELLED). */
typedef int (*ekv_progress_callback)(float progress, void *user_data);

typedef struct ekv_model_params {
    size_t struct_size;
    ekv_backend_kind backend; /* default EKV_BACKEND_AUTO */
    int32_t device_index;     /* default 0 */
    int32_t n_threads;        /* CPU threads; 0 = number of cores (default) */
    /* Activations inside quantized matmuls: 0 (default) keeps them f32, so
     * results equal HF transformers on the dequantized weights; 1 quantizes
     * them to 8 bits per block: faster, logits about 1% of their spread
     * away from HF (not llama.cpp's numerics either: its greedy tokens agree
     * less with these than with the f32 default). */
    int32_t int8_activations;
    /* ---- fields after this line were added after v1 ---- */
    ekv_cancel *cancel;              /* optional: stops the load (EKV_ERR_CANCELLED) */
    ekv_progress_callback progress;  /* optional: called as weights load */
    void *progress_user_data;
    /* GPU backends: submit a decode step's recorded commands again when they
     * equal the previous step's (CUDA: run repeating steps as CUDA graphs):
     * -1 default (on), 0 off, 1 on. The variable EKV_VULKAN_REPLAY
     * (EKV_CUDA_GRAPHS on CUDA), when set, overrides it. */
    int32_t replay;
    /* Vulkan: f16 accumulation in matmuls on devices with shaderFloat16:
     * -1 default (off), 0 off, 1 on; EKV_VULKAN_F16_ACCUMULATE overrides. */
    int32_t f16_accumulate;
    /* The memory the application can give this model in all, in bytes; 0 =
     * none (default). Weights whose bytes in the file alone exceed it are
     * refused (EKV_ERR_OUT_OF_MEMORY, the message says both numbers) before
     * a backend starts or anything reaches device memory. Caches have their
     * own budget (ekv_cache_params.memory_budget_bytes): what is left of this
     * one after the weights (ekv_model_info.weight_bytes) is yours to share
     * out among them. */
    uint64_t memory_budget_bytes;
} ekv_model_params;

/* Initialises *params (defaults) for a caller whose struct has `size` bytes. */
EKV_API ekv_status ekv_model_params_init(ekv_model_params *params, size_t size);

/* Loads a model from a GGUF file (v2/v3, memory-mapped) or from a Hugging Face
 * model directory (config.json + *.safetensors + tokenizer.json).
 * On success *out owns the model; release it with ekv_model_free(). */
EKV_API ekv_status ekv_model_load(const char *path, const ekv_model_params *params, ekv_model **out);
/* Loads a GGUF model from memory. The bytes must stay valid and unchanged
 * until the model and every object made from it are freed. Nothing is copied
 * when the buffer starts on a multiple of the file's alignment (32 bytes
 * unless general.alignment says otherwise); otherwise tensors not aligned for
 * their type are copied, and a warning goes to the log. */
EKV_API ekv_status ekv_model_load_from_memory(const void *data, size_t size, const ekv_model_params *params,
                                              ekv_model **out);
/* Loads a GGUF model from bytes [offset, offset + length) of an open file
 * descriptor (an Android asset's AAsset_openFileDescriptor64), mapped
 * read-only; the descriptor may be closed once this returns. An offset that
 * is not a multiple of the file's alignment works, at the cost of copying
 * the tensors it misaligns (store assets page-aligned: zipalign -p). */
EKV_API ekv_status ekv_model_load_from_fd(int fd, uint64_t offset, uint64_t length, const ekv_model_params *params,
                                          ekv_model **out);
/* Adds a reference to a model (free it with ekv_model_free): for code that
 * keeps a model it did not load, e.g. one from ekv_cache_get_model. */
EKV_API ekv_model *ekv_model_retain(ekv_model *model);
/* Drops the caller's reference to a model. Caches, detokenizers and
 * generators made from it keep it alive; the last to go frees it. NULL is a
 * no-op. */
EKV_API void ekv_model_free(ekv_model *model);

typedef enum ekv_cache_type {
    EKV_CACHE_AUTO = 0,            /* the model's natural cache */
    EKV_CACHE_DYNAMIC = 1,
    EKV_CACHE_STATIC = 2,
    EKV_CACHE_OFFLOADED = 3,
    EKV_CACHE_OFFLOADED_STATIC = 4,
    EKV_CACHE_QUANTIZED = 5,
    EKV_CACHE_SLIDING_WINDOW = 6,
    EKV_CACHE_SINK = 7,
    EKV_CACHE_HYBRID = 8,
    EKV_CACHE_MAMBA = 9,
    EKV_CACHE_HYBRID_MAMBA = 10,
    EKV_CACHE_ENCODER_DECODER = 11
} ekv_cache_type;

typedef struct ekv_model_info {
    size_t struct_size;
    char architecture[64];     /* "llama", ... */
    char name[128];            /* general.name, may be empty */
    int32_t n_layers;
    int32_t n_heads;
    int32_t n_kv_heads;
    int32_t head_dim;
    int32_t n_embd;
    int32_t n_ff;
    int32_t context_length;    /* trained context length */
    int32_t n_vocab;
    uint64_t n_params;
    uint64_t weight_bytes;     /* bytes of weights as stored (quantized) */
    ekv_backend_kind backend;  /* backend the model runs on */
    char device[256];          /* device name */
    ekv_cache_type natural_cache; /* what EKV_CACHE_AUTO resolves to */
    /* The layer mix the caches follow (0 when a model has none of a kind). */
    int32_t n_sliding_layers;     /* local sliding-window attention layers (Gemma) */
    int32_t sliding_window;       /* their window in positions */
    int32_t n_recurrent_layers;   /* Mamba layers: a fixed-size state, no KV */
    /* Weight bytes one decode step reads: every matrix once, the token
     * embedding table as one row unless it is also the output head, only the
     * active experts of a mixture-of-experts layer, Whisper's decoder. With
     * ekv_cache_stats.used_bytes it gives the bytes a step must stream from
     * memory (what `edgekv bench` divides the read bandwidth by). */
    uint64_t decode_weight_bytes;
} ekv_model_info;

EKV_API ekv_status ekv_model_info_init(ekv_model_info *info, size_t size);
EKV_API ekv_status ekv_model_get_info(const ekv_model *model, ekv_model_info *out);

/* Work the model's backend submitted to its device (zeros on the CPU
 * backend). On Vulkan a forward is one submission; when its commands equal
 * the previous forward's (a decode step over a static-shape cache: static,
 * sliding_window, sink, offloaded_static) the command buffer recorded then is
 * submitted again instead of being recorded anew, the per-step values read
 * from a buffer. EKV_VULKAN_REPLAY=0 turns replay off (for comparison).
 * On CUDA a submission is a synchronized step; a step whose kernel launches
 * repeat an earlier step's runs as a CUDA graph (replayed, or updated in
 * place when only addresses moved): replayed_submissions counts those graph
 * launches and record_ns the host time spent capturing and updating graphs.
 * EKV_CUDA_GRAPHS=0 turns graphs off. */
typedef struct ekv_backend_stats {
    size_t struct_size;
    uint64_t submissions;           /* command buffers submitted */
    uint64_t replayed_submissions;  /* of which replayed without recording */
    uint64_t record_ns;             /* host time spent recording them */
} ekv_backend_stats;

EKV_API ekv_status ekv_backend_stats_init(ekv_backend_stats *stats, size_t size);
EKV_API ekv_status ekv_model_get_backend_stats(const ekv_model *model, ekv_backend_stats *out);

/* Copies the string metadata value `key` (e.g. "general.name") into buf
 * (NUL-terminated). *out_len (optional) receives the length without NUL; if
 * cap is too small EKV_ERR_BUFFER_TOO_SMALL is returned with *out_len set. */
EKV_API ekv_status ekv_model_meta_string(const ekv_model *model, const char *key, char *buf,
                                         size_t cap, size_t *out_len);
/* Number of metadata keys, and key `index` (in sorted order, 0 <= index <
 * count) copied as ekv_model_meta_string does. */
EKV_API ekv_status ekv_model_meta_count(const ekv_model *model, int32_t *out);
EKV_API ekv_status ekv_model_meta_key(const ekv_model *model, int32_t index, char *buf, size_t cap,
                                      size_t *out_len);

/* ---- KV caches ------------------------------------------------------------- */

typedef struct ekv_cache ekv_cache;

/* Name of a cache type as in Hugging Face ("dynamic", "offloaded_static", ...). */
EKV_API const char *ekv_cache_type_name(ekv_cache_type type);
/* Parses a cache type name; also accepts "auto". */
EKV_API ekv_status ekv_cache_type_from_name(const char *name, ekv_cache_type *out);

/* The storage-format axis of every cache type. */
typedef enum ekv_kv_dtype {
    EKV_KV_F16 = 0,  /* default, as HF's caches in half precision */
    EKV_KV_F32 = 1,
    /* KIVI quantization (nbits, q_group_size, residual_length) on any type:
     * a quantized sliding_window, sink, static or offloaded cache. The
     * residual of the newest tokens is F16. EKV_CACHE_QUANTIZED is a dynamic
     * cache with this storage. */
    EKV_KV_KIVI = 2
} ekv_kv_dtype;

/* The placement axis: where the KV lives. */
typedef enum ekv_placement {
    EKV_PLACEMENT_DEVICE = 0,  /* device memory (the offloaded types default to HOST) */
    EKV_PLACEMENT_HOST = 1,    /* host memory; on a device with its own memory each
                                * layer is prefetched into a device double buffer
                                * while the previous layer computes; a unified-memory
                                * device (and the CPU) reads it in place */
    EKV_PLACEMENT_UNIFIED = 2  /* host memory the device reads in place (zero copy);
                                * refused on a device without unified memory */
} ekv_placement;

typedef struct ekv_cache_params {
    size_t struct_size;
    ekv_cache_type type;     /* retention: default EKV_CACHE_AUTO */
    int32_t max_cache_len;   /* fixed-capacity caches; 0 = model context length */
    ekv_kv_dtype dtype;      /* storage format; default F16 */
    /* Parameters named after Hugging Face's; ignored by types that do not
     * use them. */
    int32_t window_length;   /* sliding_window / sink: tokens held, sinks included;
                              * must exceed num_sink_tokens */
    int32_t num_sink_tokens; /* sink: first tokens pinned (StreamingLLM; default 4) */
    int32_t nbits;           /* KIVI: 2, 4 or 8 (default 4) */
    int32_t q_group_size;    /* KIVI: tokens per key group and channels per value
                              * group; divides head_dim and residual_length (default 64) */
    int32_t residual_length; /* KIVI: newest tokens kept in full precision (default 128) */
    ekv_placement offload;   /* placement (see ekv_placement) */
    /* ---- fields after this line were added after v1 ---- */
    /* Most bytes the cache may take, device and host together, as
     * ekv_cache_stats reports them (KV, KIVI scales, staging buffers, a
     * Whisper input's cross-attention KV; not the 4 bytes a token of its id
     * list nor the forward's scratch); 0 = none (default).
     *  - With EKV_CACHE_AUTO the cache is planned (see ekv_cache_plan) for a
     *    context of max_cache_len tokens (0: the model's context length):
     *    type, storage, window and placement are chosen, those fields are
     *    ignored, and the choice is what ekv_cache_get_params reports.
     *  - A cache whose fixed part exceeds it (a static cache at its
     *    capacity, a ring at its window, a Mamba state) is refused with
     *    EKV_ERR_OUT_OF_MEMORY and both numbers.
     *  - Growing caches grow up to it: a forward that would need more fails
     *    with EKV_ERR_OUT_OF_MEMORY and leaves the cache as it was. While a
     *    growing cache reallocates, its old buffers live until copied.
     * Cache files do not record it: a loaded cache has none. */
    uint64_t memory_budget_bytes;
} ekv_cache_params;

EKV_API ekv_status ekv_cache_params_init(ekv_cache_params *params, size_t size);

/* Creates an empty cache for `model`. Cache types not available yet for this
 * build or model return EKV_ERR_UNSUPPORTED with a message naming the reason.
 * EKV_CACHE_AUTO with a memory_budget_bytes creates what ekv_cache_plan
 * chooses (EKV_ERR_OUT_OF_MEMORY with the numbers when nothing fits).
 * On success *out owns the cache; free with ekv_cache_free(). The cache keeps
 * its model alive. */
EKV_API ekv_status ekv_cache_create(ekv_model *model, const ekv_cache_params *params, ekv_cache **out);
/* Drops the caller's reference (a generator on the cache keeps it alive).
 * NULL is a no-op. Not while another thread is inside a call on it. */
EKV_API void ekv_cache_free(ekv_cache *cache);
/* The model the cache belongs to (borrowed: valid while the cache lives;
 * ekv_model_retain it to keep it longer). */
EKV_API ekv_status ekv_cache_get_model(const ekv_cache *cache, ekv_model **out);
/* Attaches a stop request (NULL detaches) that ekv_forward, ekv_generate,
 * generators and ekv_encode_audio on this cache honour besides their own.
 * The cache holds a reference to it. Not while the cache is busy
 * (EKV_ERR_INVALID_STATE): attach it before the calls it should stop. */
EKV_API ekv_status ekv_cache_set_cancel(ekv_cache *cache, ekv_cancel *cancel);

/* The read-only queries below (type, seq_len, capacity, params, stats) may
 * be called at any time, also while another thread uses the cache: they
 * report the state after its last finished call or generator step. */

/* The resolved type (never EKV_CACHE_AUTO). */
EKV_API ekv_status ekv_cache_get_type(const ekv_cache *cache, ekv_cache_type *out);
/* Tokens consumed so far, i.e. the position of the next token (HF
 * get_seq_length). Rings (sliding_window, sink) keep counting past their
 * window; see ekv_cache_stats.tokens_held for what they still hold. */
EKV_API ekv_status ekv_cache_seq_len(const ekv_cache *cache, int32_t *out);
/* Maximum tokens it holds at once: max_cache_len for static types, the window
 * for rings, -1 when unbounded (HF get_max_cache_shape). */
EKV_API ekv_status ekv_cache_capacity(const ekv_cache *cache, int32_t *out);
/* The configuration the cache was made with, resolved: its type (never
 * AUTO), storage, placement and the HF-named parameters in effect. */
EKV_API ekv_status ekv_cache_get_params(const ekv_cache *cache, ekv_cache_params *out);

typedef struct ekv_cache_stats {
    size_t struct_size;
    int32_t seq_len;            /* tokens consumed (see ekv_cache_seq_len) */
    int32_t capacity;           /* see ekv_cache_capacity */
    uint64_t device_bytes;      /* bytes allocated in device memory (KV, staging) */
    uint64_t host_bytes;        /* bytes allocated in host or unified memory */
    uint64_t used_bytes;        /* bytes holding live tokens */
    uint64_t bytes_per_token;   /* what one more token costs across all layers
                                 * (KIVI: codes plus scales, residual excluded) */
    uint64_t tokens_forwarded;  /* total tokens computed through this cache */
    int32_t tokens_held;        /* tokens whose keys/values are still held */
} ekv_cache_stats;

EKV_API ekv_status ekv_cache_stats_init(ekv_cache_stats *stats, size_t size);
EKV_API ekv_status ekv_cache_get_stats(const ekv_cache *cache, ekv_cache_stats *out);

/* ---- Cache planning ------------------------------------------------------ */

/* A configuration sized for a context, without allocating anything. Its
 * bytes are what ekv_cache_stats (device_bytes, host_bytes) reports for the
 * cache ekv_cache_create makes from it once it holds context_tokens tokens
 * fed in one forward (a prefill). A growing cache fed a token at a time
 * allocates ahead, by up to half again, but never past its budget. */
typedef struct ekv_cache_plan_result {
    size_t struct_size;
    /* The configuration (ekv_cache_plan's `config` output holds it whole). */
    ekv_cache_type type;           /* never EKV_CACHE_AUTO */
    ekv_kv_dtype dtype;
    int32_t nbits;                 /* KIVI bits; 0 for F16/F32 storage */
    int32_t window_length;         /* sliding_window / sink window, hybrid: the
                                    * model's; 0 otherwise */
    int32_t num_sink_tokens;       /* sink; 0 otherwise */
    int32_t max_cache_len;         /* fixed capacity; 0 when unbounded */
    ekv_placement offload;
    /* Sizes. */
    int32_t context_tokens;        /* the context it was sized for */
    int32_t tokens_held;           /* of those, still held at the end (a ring
                                    * keeps its window; ekv_cache_stats.tokens_held) */
    int32_t capacity;              /* as ekv_cache_capacity: -1 when unbounded */
    int32_t max_tokens;            /* longest sequence it takes: a fixed
                                    * capacity, or as far as the budget lets it
                                    * grow; -1 when unlimited (rings, no budget) */
    uint64_t device_bytes;         /* at context_tokens */
    uint64_t host_bytes;
    uint64_t capacity_device_bytes; /* full: at the capacity, or for unbounded */
    uint64_t capacity_host_bytes;   /* caches at the model's context length */
    uint64_t budget_bytes;         /* params.memory_budget_bytes (0: none) */
    int32_t fits;                  /* 1 when it takes context_tokens tokens
                                    * within the budget (and its capacity) */
    /* The choice among the candidates ekv_cache_plan considered. */
    int32_t n_candidates;
    int32_t candidate_index;       /* this configuration's index, or -1 */
    int32_t chosen_index;          /* the chosen candidate's, -1 when none fits */
    char reason[320];              /* why it was chosen, or why it does not fit */
} ekv_cache_plan_result;

EKV_API ekv_status ekv_cache_plan_result_init(ekv_cache_plan_result *result, size_t size);

/* Plans a cache for `model` and a context of context_tokens (> 0) tokens;
 * allocates nothing.
 *  - params->type EKV_CACHE_AUTO with params->memory_budget_bytes > 0
 *    chooses, retention first and precision second:
 *      1. the model's natural cache (ekv_model_info.natural_cache) in F16,
 *         if it holds the whole context within the budget;
 *      2. else the same with KIVI storage, 8 then 4 then 2 bits (dynamic
 *         becomes `quantized`; a hybrid or encoder-decoder cache keeps its
 *         type): the first whose bytes fit;
 *      3. else a sink cache of num_sink_tokens (default 4) sinks with the
 *         longest window that fits (at least min(128, context - 1) tokens,
 *         shorter than the context), at whichever storage of F16, KIVI 8,
 *         4, 2 bits reaches the longest window (the most precise of
 *         equals). Not for models whose layers keep state besides KV
 *         (Mamba, Jamba): nothing fits there.
 *    Rings and KIVI's full-precision residual keep room for a forward
 *    chunk, so at short contexts F16 can be the smallest option.
 *    q_group_size, residual_length and num_sink_tokens are used as given;
 *    type, dtype, nbits, window_length, max_cache_len and offload are
 *    chosen. Placement: device memory, except on a GPU with its own memory
 *    whose free memory (when the model loaded, less its weights) cannot
 *    hold the cache: host (offloaded; the budget then counts the device
 *    double buffer too). On the CPU and unified memory device is host.
 *    When nothing fits, EKV_ERR_OUT_OF_MEMORY; *out still describes the
 *    smallest candidate (fits = 0, chosen_index = -1) and the message says
 *    its bytes against the budget.
 *  - Any other params (an explicit type, or no budget): sizes exactly that
 *    configuration (AUTO: the natural cache) as ekv_cache_create would make
 *    it, one candidate; fits says whether it takes the context within the
 *    budget; EKV_OK either way. Bad params fail as in ekv_cache_create.
 * `config` (optional, may be NULL; initialised with ekv_cache_params_init)
 * receives the chosen configuration, resolved, ready for ekv_cache_create
 * (budget included); written on EKV_OK only. */
EKV_API ekv_status ekv_cache_plan(const ekv_model *model, const ekv_cache_params *params, int32_t context_tokens,
                                  ekv_cache_params *config, ekv_cache_plan_result *out);
/* Candidate `index` (0 <= index < n_candidates) of the same plan, chosen or
 * not, with its bytes and whether it fits: the alternatives to show a user.
 * `config` as in ekv_cache_plan (written even when it does not fit). */
EKV_API ekv_status ekv_cache_plan_candidate(const ekv_model *model, const ekv_cache_params *params,
                                            int32_t context_tokens, int32_t index, ekv_cache_params *config,
                                            ekv_cache_plan_result *out);
/* Drops every token; keeps the allocation. */
EKV_API ekv_status ekv_cache_reset(ekv_cache *cache);
/* Keeps the first `new_len` tokens (HF crop). new_len > seq_len is an error;
 * a ring (sliding_window, sink) or KIVI cache that no longer holds what the
 * shorter sequence needs refuses with EKV_ERR_INVALID_STATE. */
EKV_API ekv_status ekv_cache_crop(ekv_cache *cache, int32_t new_len);
/* Deep copy for prefix reuse: prefill a shared prompt once, clone per request.
 * *out owns the new cache. */
EKV_API ekv_status ekv_cache_clone(const ekv_cache *cache, ekv_cache **out);
/* Writes the cache to `path`: a versioned, checksummed file that records its
 * configuration and the model it belongs to. Written to a temporary file in
 * the same folder, synced and renamed over `path`: a process killed while
 * saving leaves the old file or the new one, never a torn one. */
EKV_API ekv_status ekv_cache_save(const ekv_cache *cache, const char *path);
/* Reads a file written by ekv_cache_save into a new cache (same type and
 * parameters) owned by *out. A file that is truncated, corrupted, of another
 * format version or written for another model is refused
 * (EKV_ERR_INVALID_FILE, EKV_ERR_UNSUPPORTED for another version,
 * EKV_ERR_MODEL_MISMATCH for another model) and *out stays NULL. */
EKV_API ekv_status ekv_cache_load(ekv_model *model, const char *path, ekv_cache **out);
/* The same file's bytes in memory: ekv_cache_save_to_memory writes them to
 * buf[cap] (EKV_ERR_BUFFER_TOO_SMALL with *out_len set when cap is short;
 * a NULL buf asks for the size), ekv_cache_load_from_memory reads them
 * (copied: the buffer may go once it returns). */
EKV_API ekv_status ekv_cache_save_to_memory(const ekv_cache *cache, void *buf, size_t cap, size_t *out_len);
EKV_API ekv_status ekv_cache_load_from_memory(ekv_model *model, const void *data, size_t size, ekv_cache **out);

/* ---- Forward --------------------------------------------------------------- */

typedef enum ekv_logits_mode {
    EKV_LOGITS_LAST = 0, /* logits of the last input token: n_vocab floats */
    EKV_LOGITS_ALL = 1   /* logits of every input token: n_tokens * n_vocab floats */
} ekv_logits_mode;

/* Runs the model on `n_tokens` tokens and writes logits.
 *  cache:          the cache to read and extend; NULL means use_cache=False
 *                  (the tokens are the whole sequence, positions 0..n-1).
 *  cache_position: NULL continues at the cache's seq_len. Otherwise n_tokens
 *                  ascending, consecutive positions starting at p <= seq_len,
 *                  as HF's cache_position; p < seq_len first crops the cache
 *                  to p (the tokens are rewritten).
 *  logits:         caller-owned, logits_len floats (see ekv_logits_mode).
 * Fails without touching the cache on invalid tokens, positions, or when a
 * fixed-capacity cache cannot take the tokens (EKV_ERR_CACHE_FULL). */
EKV_API ekv_status ekv_forward(ekv_model *model, ekv_cache *cache, const int32_t *tokens,
                               int32_t n_tokens, const int32_t *cache_position,
                               ekv_logits_mode mode, float *logits, size_t logits_len);

/* Options of one ekv_forward_ex call. Initialise with ekv_forward_params_init
 * (or ekv_forward_default_params()): fields may be appended later. */
typedef struct ekv_forward_params {
    size_t struct_size;
    /* Optional stop request of this call alone (default NULL). It and the
     * request attached to the cache (ekv_cache_set_cancel) both stop the
     * call: either one triggered before or during it returns
     * EKV_ERR_CANCELLED with the cache as it was before the call. Borrowed
     * for the call only: never attached to the cache nor kept after the
     * call returns. Honoured without a cache too. */
    ekv_cancel *cancel;
} ekv_forward_params;

EKV_API ekv_status ekv_forward_params_init(ekv_forward_params *params, size_t size);

/* ekv_forward with per-call options, so that a binding can stop one call
 * without touching the stop request an application attached to the cache.
 * params NULL behaves as ekv_forward (which is this call with NULL). A
 * smaller (older) struct gets the defaults for the fields it lacks, a larger
 * (newer) one is read up to the fields this library knows; a struct_size
 * under sizeof(size_t) or over 1 MiB is EKV_ERR_INVALID_ARGUMENT, with the
 * cache untouched. */
EKV_API ekv_status ekv_forward_ex(ekv_model *model, ekv_cache *cache, const int32_t *tokens,
                                  int32_t n_tokens, const int32_t *cache_position,
                                  ekv_logits_mode mode, float *logits, size_t logits_len,
                                  const ekv_forward_params *params);

/* ---- Generation ------------------------------------------------------------ */

/* Called for every generated token with its text piece (UTF-8 complete: bytes
 * of an unfinished character are held back until the character completes;
 * text that may be the start of a stop string is held back until it cannot,
 * and a stop string is never passed). Text still held at the end is passed
 * in one more call with token -1. Return nonzero to continue, 0 to cancel. */
typedef int (*ekv_token_callback)(int32_t token, const char *piece, size_t piece_len, void *user_data);

typedef enum ekv_stop_reason {
    EKV_STOP_NONE = 0,
    EKV_STOP_MAX_TOKENS = 1,  /* max_new_tokens reached */
    EKV_STOP_EOS = 2,         /* an end-of-generation token of the model */
    EKV_STOP_TOKEN = 3,       /* one of stop_tokens */
    EKV_STOP_STRING = 4,      /* one of stop_strings appeared in the text */
    EKV_STOP_CANCELLED = 5,   /* the callback returned 0, or a stop request (ekv_cancel) */
    EKV_STOP_CACHE_FULL = 6,  /* a fixed-capacity cache filled up */
    EKV_STOP_ERROR = 7        /* a call failed; its status says why */
} ekv_stop_reason;

typedef struct ekv_generate_params {
    size_t struct_size;
    int32_t max_new_tokens;      /* default 128 */
    float temperature;           /* 0 = greedy (default 0) */
    int32_t top_k;               /* 0 = off */
    float top_p;                 /* 1 = off */
    float min_p;                 /* 0 = off */
    float repetition_penalty;    /* 1 = off (HF/CTRL semantics) */
    int32_t repetition_last_n;   /* tokens considered; 0 = whole context (default 64) */
    uint64_t seed;               /* sampling seed (default 0) */
    int32_t stop_at_eos;         /* stop at the model's end-of-generation tokens (default 1) */
    const int32_t *stop_tokens;  /* extra stop tokens (caller-owned), may be NULL */
    int32_t n_stop_tokens;
    const char *const *stop_strings; /* stop strings (caller-owned), may be NULL */
    int32_t n_stop_strings;
    int32_t use_cache;           /* 0 recomputes the whole sequence every step (default 1) */
    ekv_token_callback on_token; /* optional streaming callback */
    void *user_data;
    /* ---- fields after this line were added after v1 ---- */
    ekv_cancel *cancel;          /* optional stop request (see ekv_cancel) */
} ekv_generate_params;

EKV_API ekv_status ekv_generate_params_init(ekv_generate_params *params, size_t size);

typedef struct ekv_generate_result {
    size_t struct_size;
    int32_t n_generated;         /* tokens written to out_tokens */
    int32_t n_prompt_tokens;     /* prompt length */
    int32_t n_prompt_reused;     /* prompt tokens found in the cache (not recomputed) */
    int32_t n_prompt_forwarded;  /* prompt tokens computed */
    int64_t n_forwarded;         /* every token run through the model */
    double prefill_seconds;
    double decode_seconds;
    ekv_stop_reason stop_reason;
} ekv_generate_result;

EKV_API ekv_status ekv_generate_result_init(ekv_generate_result *result, size_t size);

/* Generates after `prompt`. With a cache, the prompt is matched against the
 * tokens the cache already holds (multi-turn reuse): only the new suffix is
 * computed; a diverging cache is cropped at the first difference. The
 * generated tokens end up in the cache too, except the last one. cache may be
 * NULL only with use_cache = 0. out_tokens (caller-owned, out_capacity) gets
 * the generated ids; generation stops when it is full. A loop over an
 * ekv_generator. A stop request returns EKV_ERR_CANCELLED (the callback
 * returning 0 returns EKV_OK); on any failure *result still says how many
 * tokens were produced and why it stopped. */
EKV_API ekv_status ekv_generate(ekv_model *model, ekv_cache *cache, const int32_t *prompt,
                                int32_t n_prompt, const ekv_generate_params *params,
                                int32_t *out_tokens, int32_t out_capacity,
                                ekv_generate_result *result);

/* Step-wise generation: one event per ekv_generator_next. */
typedef struct ekv_generator ekv_generator;

typedef enum ekv_event_type {
    EKV_EVENT_TOKEN = 0,  /* a generated token and the text it released */
    EKV_EVENT_DONE = 1    /* the end: stop_reason set, text holds what was still held */
} ekv_event_type;

typedef struct ekv_generator_event {
    size_t struct_size;
    ekv_event_type type;
    int32_t token;               /* TOKEN: the id; DONE: -1 */
    size_t text_len;             /* bytes written to the text buffer (without NUL) */
    ekv_stop_reason stop_reason; /* DONE: why it ended; TOKEN: EKV_STOP_NONE */
} ekv_generator_event;

EKV_API ekv_status ekv_generator_event_init(ekv_generator_event *event, size_t size);

/* Prepares a generation after `prompt` (copied) with the semantics of
 * ekv_generate (prefix reuse, sampling, stop rules; on_token is not called).
 * Nothing is computed until the first ekv_generator_next. The generator keeps
 * the model and the cache alive; the cache may not be used by anything else
 * until the generator is done or freed (EKV_ERR_INVALID_STATE). */
EKV_API ekv_status ekv_generator_create(ekv_model *model, ekv_cache *cache, const int32_t *prompt, int32_t n_prompt,
                                        const ekv_generate_params *params, ekv_generator **out);
/* Runs to the next event (the first call does the prefill) and writes it to
 * *event and its text, NUL-terminated, to text[text_cap]. When the text does
 * not fit, EKV_ERR_BUFFER_TOO_SMALL sets event->text_len to the bytes needed
 * (without NUL) and keeps the event: the next call returns it without
 * computing anything. A stop request ends the generation with a DONE event
 * (EKV_STOP_CANCELLED) and EKV_OK. Text still held at the end (an
 * unfinished UTF-8 character max_new_tokens cut, released as U+FFFD, or text
 * held back for a stop string that did not come) goes with the last token's
 * event when that token ends the generation, else with the DONE event.
 * After the DONE event, or a failure (which returns its status and leaves
 * stop reason EKV_STOP_ERROR in the result), next returns
 * EKV_ERR_INVALID_STATE. */
EKV_API ekv_status ekv_generator_next(ekv_generator *gen, ekv_generator_event *event, char *text, size_t text_cap);
/* Counts and times so far (final after the DONE event). */
EKV_API ekv_status ekv_generator_get_result(const ekv_generator *gen, ekv_generate_result *out);
/* Frees the generator (and its references). NULL is a no-op. */
EKV_API void ekv_generator_free(ekv_generator *gen);

/* ---- Text ------------------------------------------------------------------ */

/* Tokenizes UTF-8 text. add_special: prepend BOS where the model's tokenizer
 * does. parse_special: treat special-token text ("<|im_start|>") as the token.
 * If capacity is too small, returns EKV_ERR_BUFFER_TOO_SMALL with *n_tokens
 * set to the count required. */
EKV_API ekv_status ekv_tokenize(const ekv_model *model, const char *text, size_t text_len,
                                int add_special, int parse_special, int32_t *tokens,
                                int32_t capacity, int32_t *n_tokens);

/* Bytes of one token (may be part of a UTF-8 character). special: render
 * special tokens' text, else they give "". *len receives the length. */
EKV_API ekv_status ekv_token_to_piece(const ekv_model *model, int32_t token, int special, char *buf,
                                      size_t cap, size_t *len);

/* Text of a token sequence (NUL-terminated). skip_special drops special tokens.
 * Too small a buffer (or NULL): EKV_ERR_BUFFER_TOO_SMALL with *len = the
 * text's length, without the NUL: a buffer of *len + 1 bytes fits it. */
EKV_API ekv_status ekv_detokenize(const ekv_model *model, const int32_t *tokens, int32_t n_tokens,
                                  int skip_special, char *buf, size_t cap, size_t *len);

typedef enum ekv_special_token {
    EKV_TOKEN_BOS = 0,
    EKV_TOKEN_EOS = 1,
    EKV_TOKEN_EOT = 2,  /* end of turn, for chat models that have one */
    EKV_TOKEN_PAD = 3
} ekv_special_token;

/* Id of a special token, or -1 when the model has none. */
EKV_API ekv_status ekv_token_special(const ekv_model *model, ekv_special_token which, int32_t *out);
/* 1 if the token ends generation (EOS, EOT, ...), else 0. */
EKV_API int ekv_token_is_eog(const ekv_model *model, int32_t token);

/* Streaming detokenizer: turns tokens into text pieces that never split a UTF-8
 * character. One per stream; not thread-safe. */
typedef struct ekv_detokenizer ekv_detokenizer;
EKV_API ekv_status ekv_detokenizer_create(const ekv_model *model, ekv_detokenizer **out);
EKV_API void ekv_detokenizer_free(ekv_detokenizer *detok);
/* Appends a token; writes the newly completed text to buf (NUL-terminated). */
EKV_API ekv_status ekv_detokenizer_push(ekv_detokenizer *detok, int32_t token, char *buf, size_t cap,
                                        size_t *len);
/* End of stream: writes the bytes of an unfinished character as U+FFFD (or
 * nothing) and empties the detokenizer. */
EKV_API ekv_status ekv_detokenizer_flush(ekv_detokenizer *detok, char *buf, size_t cap, size_t *len);
/* Drops held bytes: starts a new stream. */
EKV_API ekv_status ekv_detokenizer_reset(ekv_detokenizer *detok);

typedef struct ekv_chat_message {
    const char *role;     /* "system", "user" or "assistant" */
    const char *content;  /* UTF-8 */
} ekv_chat_message;

/* Renders a conversation with the model's chat template (ChatML, Llama 3 and
 * Gemma families are recognised from the model's template). template_name
 * overrides it: "chatml", "llama3", "gemma", or NULL for the model's.
 * Output as in ekv_detokenize. */
EKV_API ekv_status ekv_chat_apply_template(const ekv_model *model, const char *template_name,
                                           const ekv_chat_message *messages, size_t n_messages,
                                           int add_generation_prompt, char *buf, size_t cap,
                                           size_t *len);
/* The token ids of a conversation, as ekv_chat_apply_template renders it:
 * the template's markers become their control tokens, while roles and
 * contents stay text even when they spell one ("<|im_end|>" typed by a user
 * does not end the turn). Use this, not ekv_tokenize(..., parse_special = 1)
 * of the rendered text, for anything a user typed. Buffer as in
 * ekv_tokenize (EKV_ERR_BUFFER_TOO_SMALL with *n_tokens the count needed). */
EKV_API ekv_status ekv_chat_tokenize(const ekv_model *model, const char *template_name,
                                     const ekv_chat_message *messages, size_t n_messages,
                                     int add_generation_prompt, int32_t *tokens, int32_t capacity,
                                     int32_t *n_tokens);

/* ---- Initialisers compiled into the caller ------------------------------- */

/* By value, sized by the caller's own sizeof: safe against any library
 * version. (The library also exports functions of these names returning the
 * v1 layouts, for applications built against the first header.) */
#ifndef EKV_BUILDING_LIBRARY
#define EKV_DEFINE_DEFAULT_(type, fn, init) \
    static inline type fn(void) {           \
        type v;                             \
        init(&v, sizeof v);                 \
        return v;                           \
    }
EKV_DEFINE_DEFAULT_(ekv_device_info, ekv_device_info_default, ekv_device_info_init)
EKV_DEFINE_DEFAULT_(ekv_model_params, ekv_model_default_params, ekv_model_params_init)
EKV_DEFINE_DEFAULT_(ekv_model_info, ekv_model_info_default, ekv_model_info_init)
EKV_DEFINE_DEFAULT_(ekv_backend_stats, ekv_backend_stats_default, ekv_backend_stats_init)
EKV_DEFINE_DEFAULT_(ekv_cache_params, ekv_cache_default_params, ekv_cache_params_init)
EKV_DEFINE_DEFAULT_(ekv_cache_stats, ekv_cache_stats_default, ekv_cache_stats_init)
EKV_DEFINE_DEFAULT_(ekv_cache_plan_result, ekv_cache_plan_result_default, ekv_cache_plan_result_init)
EKV_DEFINE_DEFAULT_(ekv_forward_params, ekv_forward_default_params, ekv_forward_params_init)
EKV_DEFINE_DEFAULT_(ekv_generate_params, ekv_generate_default_params, ekv_generate_params_init)
EKV_DEFINE_DEFAULT_(ekv_generate_result, ekv_generate_default_result, ekv_generate_result_init)
EKV_DEFINE_DEFAULT_(ekv_generator_event, ekv_generator_event_default, ekv_generator_event_init)
#undef EKV_DEFINE_DEFAULT_
#endif

/* ===================================================================== */
/*                 EXPERIMENTAL API (may change between minors)          */
/* ===================================================================== */

/* Opt in with #define EKV_EXPERIMENTAL before including this header. */
#if defined(EKV_EXPERIMENTAL) || defined(EKV_BUILDING_LIBRARY)

/* Peak resident set size of this process in bytes (0 if unknown). */
EKV_API uint64_t ekv_peak_rss_bytes(void);

/* ===================================================================== */
/*          AUDIO / ENCODER-DECODER (Whisper; experimental)              */
/* ===================================================================== */
/*
 * Speech recognition with an encoder-decoder model (general.architecture
 * "whisper"): encode 16 kHz audio into the cache, then run the decoder with
 * ekv_forward / ekv_generate on the same cache as with any model:
 *
 *     float *pcm = NULL; int32_t n = 0, rate = 0;
 *     ekv_audio_read_wav("speech.wav", &pcm, &n, &rate);
 *     ekv_cache *cache = NULL;
 *     ekv_cache_create(model, NULL, &cache);      // AUTO = encoder_decoder
 *     ekv_encode_audio(model, cache, pcm, n, rate);
 *     ekv_audio_free(pcm);
 *     ekv_generate(model, cache, decoder_prompt, n_prompt, &gp, out, cap, &res);
 *
 * The cache holds the decoder's self-attention KV (AUTO and
 * EKV_CACHE_ENCODER_DECODER mean a dynamic one; the generic types static,
 * quantized, offloaded, sliding_window, sink work too; hybrid, mamba and
 * hybrid_mamba are refused) plus the cross-attention KV of the current
 * audio, always in device memory, F32 with EKV_KV_F32 and F16 otherwise. Decoder
 * calls before an ekv_encode_audio fail with EKV_ERR_INVALID_STATE; each
 * ekv_encode_audio starts a new sequence (the decoder tokens are dropped).
 * ekv_cache_reset drops the audio too; crop, clone, save and load keep it.
 * The audio lives in the cache, so decoding without one (ekv_forward with a
 * NULL cache, ekv_generate with use_cache = 0) is refused the same way.
 */

/* Sample rate Whisper's front end takes (Hz). */
#define EKV_AUDIO_SAMPLE_RATE 16000

/* Reads a RIFF/WAVE file: 16-bit PCM or 32-bit float samples, mono (stereo is
 * averaged to mono), at EKV_AUDIO_SAMPLE_RATE. On success *out_pcm receives
 * *n_samples floats in [-1, 1] allocated by the library (free them with
 * ekv_audio_free) and *sample_rate (optional, may be NULL) the file's rate.
 * Other sample rates or sample formats: EKV_ERR_UNSUPPORTED (resample or
 * convert first); malformed or truncated files: EKV_ERR_INVALID_FILE. */
EKV_API ekv_status ekv_audio_read_wav(const char *path, float **out_pcm, int32_t *n_samples,
                                      int32_t *sample_rate);
/* Frees samples returned by ekv_audio_read_wav. NULL is a no-op. */
EKV_API void ekv_audio_free(float *pcm);

/* Number of frames of a Whisper log-mel spectrogram (30 s at a 10 ms hop). */
#define EKV_AUDIO_MEL_FRAMES 3000

/* Whisper's log-mel spectrogram of mono audio at EKV_AUDIO_SAMPLE_RATE, as
 * Hugging Face's WhisperFeatureExtractor computes it: padded with silence (or
 * cut) to 30 s, n_mel bins (80, or 128 for large-v3) by EKV_AUDIO_MEL_FRAMES
 * frames, bin-major. out (caller-owned) holds out_len floats; fewer than
 * n_mel * EKV_AUDIO_MEL_FRAMES gives EKV_ERR_BUFFER_TOO_SMALL. Another
 * sample_rate gives EKV_ERR_INVALID_ARGUMENT. */
EKV_API ekv_status ekv_audio_log_mel(const float *pcm, int32_t n_samples, int32_t sample_rate, int32_t n_mel,
                                     float *out, size_t out_len);

/* Runs the model's encoder on mono audio at EKV_AUDIO_SAMPLE_RATE (any other
 * sample_rate: EKV_ERR_INVALID_ARGUMENT) and stores the decoder's
 * cross-attention KV in `cache`, starting a new sequence. Audio past 30 s is
 * ignored (Whisper hears 30-s windows; feed longer audio window by window).
 * A model without an encoder gives EKV_ERR_UNSUPPORTED. On failure the cache
 * holds no audio (decoder calls are refused until an encode succeeds). */
EKV_API ekv_status ekv_encode_audio(ekv_model *model, ekv_cache *cache, const float *pcm, int32_t n_samples,
                                    int32_t sample_rate);
/* The same from a log-mel spectrogram computed elsewhere ([n_mel][n_frames],
 * bin-major, n_frames = EKV_AUDIO_MEL_FRAMES for Whisper). */
EKV_API ekv_status ekv_encode_mel(ekv_model *model, ekv_cache *cache, const float *mel, int32_t n_mel,
                                  int32_t n_frames);

#endif /* EKV_EXPERIMENTAL */

#ifdef __cplusplus
}
#endif

#endif /* EDGEKV_H */
