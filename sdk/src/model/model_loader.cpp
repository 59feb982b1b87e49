#include <sys/stat.h>

#include <new>

#include "core/hash.h"
#include "core/log.h"
#include "model/model.h"

namespace ekv {

Status create_llama(const ModelFile& file, Backend& backend, std::unique_ptr<Architecture>* out);
Status create_gemma(const ModelFile& file, Backend& backend, int version, std::unique_ptr<Architecture>* out);
Status create_mamba(const ModelFile& file, Backend& backend, std::unique_ptr<Architecture>* out);
Status create_jamba(const ModelFile& file, Backend& backend, std::unique_ptr<Architecture>* out);
Status create_whisper(const ModelFile& file, Backend& backend, std::unique_ptr<Architecture>* out);

Status create_architecture(const ModelFile& file, Backend& backend, std::unique_ptr<Architecture>* out) {
    std::string arch;
    if (!file.meta.get_string("general.architecture", &arch))
        return Error(EKV_ERR_INVALID_FILE, "missing metadata general.architecture");
    if (arch == "llama" || arch == "mistral") return create_llama(file, backend, out);
    if (arch == "gemma2") return create_gemma(file, backend, 2, out);
    if (arch == "gemma3") return create_gemma(file, backend, 3, out);
    if (arch == "mamba") return create_mamba(file, backend, out);
    if (arch == "jamba") return create_jamba(file, backend, out);
    if (arch == "whisper") return create_whisper(file, backend, out);
    return Error(EKV_ERR_UNSUPPORTED_ARCH, "model architecture '%s' is not supported (supported: %s)", arch.c_str(),
                 "llama, mistral, gemma2, gemma3, mamba, jamba, whisper");
}

uint64_t model_fingerprint(const ModelFile& file) {
    Fnv1a64 h;
    std::string arch;
    file.meta.get_string("general.architecture", &arch);
    h.add_string(arch);
    // Names, shapes and a sample of every tensor's bytes: cheap, and two
    // models (or two quantizations of one) never share all of them.
    constexpr size_t kSample = 64;
    for (const TensorRef& t : file.tensors()) {
        h.add_string(t.name);
        h.add_value(static_cast<uint32_t>(t.type));
        for (int64_t ne : t.ne) h.add_value(ne);
        const size_t head = t.nbytes < kSample ? t.nbytes : kSample;
        h.add(t.data, head);
        if (t.nbytes > kSample) h.add(t.data + t.nbytes - kSample, kSample);
    }
    return h.value();
}

Status load_model(const std::string& path, ekv_backend_kind backend, const BackendOptions& options,
                  std::unique_ptr<Model>* out, LoadMonitor* monitor) {
    ModelFile file;
    struct stat st;
    if (stat(path.c_str(), &st) != 0) return Error(EKV_ERR_IO, "cannot open %s: no such file or directory", path.c_str());
    if (S_ISDIR(st.st_mode)) {
        EKV_TRY(load_hf_directory(path, &file));
    } else {
        EKV_TRY(load_gguf_file(path, &file));
    }
    return build_model(std::move(file), backend, options, out, monitor);
}

Status build_model(ModelFile file, ekv_backend_kind backend, const BackendOptions& options,
                   std::unique_ptr<Model>* out, LoadMonitor* monitor) {
    std::unique_ptr<Model> m(new (std::nothrow) Model());
    if (!m) return Error(EKV_ERR_OUT_OF_MEMORY, "cannot allocate model");
    m->file = std::move(file);
    const std::string& path = m->file.path;
    uint64_t weight_bytes = 0;
    for (const TensorRef& t : m->file.tensors()) weight_bytes += t.nbytes;
    if (monitor) {
        // Checked from the file's tensor sizes, before any backend or device
        // memory exists.
        if (monitor->memory_budget_bytes > 0 && weight_bytes > monitor->memory_budget_bytes)
            return Error(EKV_ERR_OUT_OF_MEMORY,
                         "%s: the weights alone take %llu bytes (%.1f MiB), more than the memory budget of %llu bytes "
                         "(%.1f MiB)",
                         path.c_str(), static_cast<unsigned long long>(weight_bytes),
                         static_cast<double>(weight_bytes) / (1 << 20),
                         static_cast<unsigned long long>(monitor->memory_budget_bytes),
                         static_cast<double>(monitor->memory_budget_bytes) / (1 << 20));
        monitor->total_bytes += weight_bytes;
        EKV_TRY(monitor->step(0));
    }
    EKV_TRY(create_backend(backend, options, &m->backend));
    m->file.monitor = monitor;
    const Status built = create_architecture(m->file, *m->backend, &m->arch);
    m->file.monitor = nullptr;
    EKV_TRY(built);
    m->fingerprint = model_fingerprint(m->file);
    if (m->file.meta.has("tokenizer.ggml.model")) {
        EKV_TRY(Tokenizer::from_metadata(m->file.meta, &m->tokenizer));
        if (m->tokenizer->n_vocab() > m->info().n_vocab)
            return Error(EKV_ERR_INVALID_FILE, "tokenizer has %d tokens but the model only %d embeddings",
                         m->tokenizer->n_vocab(), m->info().n_vocab);
    }
    log_message(EKV_LOG_INFO, "loaded %s: %s, %d layers, %.1f MB of weights, on %s", path.c_str(),
                m->info().architecture.c_str(), m->info().n_layers, static_cast<double>(m->info().weight_bytes) / 1e6,
                m->backend->device().name.c_str());
    *out = std::move(m);
    return Status::Ok();
}

}  // namespace ekv
