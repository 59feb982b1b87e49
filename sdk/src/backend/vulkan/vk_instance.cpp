#include "backend/vulkan/vk_instance.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "backend/vulkan/vk_util.h"
#include "core/log.h"

namespace ekv::vk {
namespace {

constexpr const char* kValidationLayer = "VK_LAYER_KHRONOS_validation";
std::atomic<int64_t> g_validation_errors{0};

// Counts validation errors; loader messages (general type, e.g. "found no
// drivers") are printed but are not errors of edgekv's API use.
VKAPI_ATTR VkBool32 VKAPI_CALL on_debug_message(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                                                VkDebugUtilsMessageTypeFlagsEXT type,
                                                const VkDebugUtilsMessengerCallbackDataEXT* data, void*) {
    const bool validation = (type & VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT) != 0;
    if (severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT) {
        if (validation) g_validation_errors.fetch_add(1);
        log_message(EKV_LOG_ERROR, "Vulkan %s error: %s", validation ? "validation" : "loader",
                    data && data->pMessage ? data->pMessage : "");
    } else if (severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT) {
        log_message(EKV_LOG_WARN, "Vulkan validation warning: %s", data && data->pMessage ? data->pMessage : "");
    } else {
        log_message(EKV_LOG_DEBUG, "Vulkan: %s", data && data->pMessage ? data->pMessage : "");
    }
    return VK_FALSE;
}

bool has_layer(const char* name) {
    uint32_t n = 0;
    if (vkEnumerateInstanceLayerProperties(&n, nullptr) != VK_SUCCESS) return false;
    std::vector<VkLayerProperties> layers(n);
    if (vkEnumerateInstanceLayerProperties(&n, layers.data()) != VK_SUCCESS) return false;
    for (const VkLayerProperties& l : layers)
        if (std::strcmp(l.layerName, name) == 0) return true;
    return false;
}

bool has_compute_queue(VkPhysicalDevice dev) {
    uint32_t n = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(dev, &n, nullptr);
    std::vector<VkQueueFamilyProperties> fams(n);
    vkGetPhysicalDeviceQueueFamilyProperties(dev, &n, fams.data());
    for (const VkQueueFamilyProperties& f : fams)
        if (f.queueFlags & VK_QUEUE_COMPUTE_BIT) return true;
    return false;
}

const char* device_type_name(VkPhysicalDeviceType t) {
    switch (t) {
        case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete GPU";
        case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated GPU";
        case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual GPU";
        case VK_PHYSICAL_DEVICE_TYPE_CPU: return "CPU (software)";
        default: return "other";
    }
}

}  // namespace

bool validation_requested() {
    const char* v = std::getenv("EKV_VULKAN_VALIDATION");
    return v && std::strcmp(v, "0") != 0 && v[0] != '\0';
}

int64_t validation_error_count() { return g_validation_errors.load(); }

Instance::~Instance() {
    if (messenger_ != VK_NULL_HANDLE) {
        auto destroy = reinterpret_cast<PFN_vkDestroyDebugUtilsMessengerEXT>(
            vkGetInstanceProcAddr(instance_, "vkDestroyDebugUtilsMessengerEXT"));
        if (destroy) destroy(instance_, messenger_, nullptr);
    }
    if (instance_ != VK_NULL_HANDLE) vkDestroyInstance(instance_, nullptr);
}

Status Instance::init() {
    VkApplicationInfo app{};
    app.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO;
    app.pApplicationName = "edgekv";
    app.pEngineName = "edgekv";
    app.apiVersion = VK_API_VERSION_1_1;

    const bool validate = validation_requested();
    std::vector<const char*> layers, extensions;
    if (validate) {
        if (!has_layer(kValidationLayer))
            return Error(EKV_ERR_BACKEND,
                         "EKV_VULKAN_VALIDATION is set but %s is not installed (Debian: vulkan-validationlayers)",
                         kValidationLayer);
        layers.push_back(kValidationLayer);
        extensions.push_back(VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
    }
    VkDebugUtilsMessengerCreateInfoEXT dbg{};
    dbg.sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT;
    dbg.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
    dbg.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                      VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT;
    dbg.pfnUserCallback = on_debug_message;

    VkInstanceCreateInfo ci{};
    ci.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO;
    ci.pApplicationInfo = &app;
    ci.enabledLayerCount = static_cast<uint32_t>(layers.size());
    ci.ppEnabledLayerNames = layers.data();
    ci.enabledExtensionCount = static_cast<uint32_t>(extensions.size());
    ci.ppEnabledExtensionNames = extensions.data();
    if (validate) ci.pNext = &dbg;  // also catches errors of instance creation itself
    VkResult r = vkCreateInstance(&ci, nullptr, &instance_);
    if (r == VK_ERROR_INCOMPATIBLE_DRIVER)
        return Error(EKV_ERR_BACKEND, "no Vulkan driver found (vkCreateInstance: VK_ERROR_INCOMPATIBLE_DRIVER)");
    if (r != VK_SUCCESS) {
        instance_ = VK_NULL_HANDLE;
        Status st = vk_status(r, "vkCreateInstance");
        return Status(st.code() == EKV_ERR_OUT_OF_MEMORY ? st.code() : EKV_ERR_BACKEND, st.message());
    }
    if (validate) {
        auto create = reinterpret_cast<PFN_vkCreateDebugUtilsMessengerEXT>(
            vkGetInstanceProcAddr(instance_, "vkCreateDebugUtilsMessengerEXT"));
        if (!create || create(instance_, &dbg, nullptr, &messenger_) != VK_SUCCESS)
            return Error(EKV_ERR_BACKEND, "cannot install the Vulkan validation messenger");
    }

    uint32_t n = 0;
    r = vkEnumeratePhysicalDevices(instance_, &n, nullptr);
    if (r != VK_SUCCESS) return vk_status(r, "vkEnumeratePhysicalDevices");
    std::vector<VkPhysicalDevice> all(n);
    r = vkEnumeratePhysicalDevices(instance_, &n, all.data());
    if (r != VK_SUCCESS && r != VK_INCOMPLETE) return vk_status(r, "vkEnumeratePhysicalDevices");
    all.resize(n);
    for (VkPhysicalDevice d : all) {
        VkPhysicalDeviceProperties props;
        vkGetPhysicalDeviceProperties(d, &props);
        // The backend needs Vulkan 1.1 and a compute queue.
        if (props.apiVersion >= VK_API_VERSION_1_1 && has_compute_queue(d)) devices_.push_back(d);
    }
    return Status::Ok();
}

bool has_device_extension(VkPhysicalDevice dev, const char* name) {
    uint32_t n = 0;
    if (vkEnumerateDeviceExtensionProperties(dev, nullptr, &n, nullptr) != VK_SUCCESS) return false;
    std::vector<VkExtensionProperties> exts(n);
    if (vkEnumerateDeviceExtensionProperties(dev, nullptr, &n, exts.data()) != VK_SUCCESS) return false;
    for (const VkExtensionProperties& e : exts)
        if (std::strcmp(e.extensionName, name) == 0) return true;
    return false;
}

bool is_software_device(VkPhysicalDevice dev) {
    VkPhysicalDeviceProperties props;
    vkGetPhysicalDeviceProperties(dev, &props);
    return props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
}

DeviceDescription describe_device(VkPhysicalDevice dev, int32_t index) {
    VkPhysicalDeviceProperties props;
    vkGetPhysicalDeviceProperties(dev, &props);
    VkPhysicalDeviceMemoryProperties mem;
    vkGetPhysicalDeviceMemoryProperties(dev, &mem);
    DeviceDescription d;
    d.kind = EKV_BACKEND_VULKAN;
    d.index = index;
    d.name = std::string(props.deviceName) + " (" + device_type_name(props.deviceType) + ", Vulkan " +
             std::to_string(VK_API_VERSION_MAJOR(props.apiVersion)) + "." +
             std::to_string(VK_API_VERSION_MINOR(props.apiVersion)) + ")";
    uint64_t local = 0;
    for (uint32_t h = 0; h < mem.memoryHeapCount; ++h)
        if (mem.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) local += mem.memoryHeaps[h].size;
    d.memory_bytes = local;
    d.free_bytes = local;
    if (has_device_extension(dev, VK_EXT_MEMORY_BUDGET_EXTENSION_NAME)) {
        VkPhysicalDeviceMemoryBudgetPropertiesEXT budget{};
        budget.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT;
        VkPhysicalDeviceMemoryProperties2 mem2{};
        mem2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2;
        mem2.pNext = &budget;
        vkGetPhysicalDeviceMemoryProperties2(dev, &mem2);
        uint64_t free_local = 0;
        for (uint32_t h = 0; h < mem.memoryHeapCount; ++h)
            if ((mem.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) && budget.heapBudget[h] > budget.heapUsage[h])
                free_local += budget.heapBudget[h] - budget.heapUsage[h];
        d.free_bytes = free_local;
    }
    bool all_local_visible = true, any_local = false;
    for (uint32_t i = 0; i < mem.memoryTypeCount; ++i) {
        const VkMemoryPropertyFlags f = mem.memoryTypes[i].propertyFlags;
        if (!(f & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT)) continue;
        any_local = true;
        if (!(f & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT)) all_local_visible = false;
    }
    d.unified_memory = props.deviceType != VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU && any_local && all_local_visible;
    d.n_threads = 0;
    return d;
}

Status list_devices(std::vector<DeviceDescription>* out, std::vector<bool>* software) {
    out->clear();
    if (software) software->clear();
    Instance inst;
    EKV_TRY(inst.init());
    for (size_t i = 0; i < inst.devices().size(); ++i) {
        out->push_back(describe_device(inst.devices()[i], static_cast<int32_t>(i)));
        if (software) software->push_back(is_software_device(inst.devices()[i]));
    }
    return Status::Ok();
}

Status select_device(const Instance& inst, int32_t index, int32_t* out) {
    const int32_t n = static_cast<int32_t>(inst.devices().size());
    if (n == 0) return Error(EKV_ERR_BACKEND, "no Vulkan device with Vulkan 1.1 and a compute queue");
    const char* want = std::getenv("EKV_VULKAN_DEVICE");
    if (want && want[0] != '\0') {
        char* end = nullptr;
        const long as_index = std::strtol(want, &end, 10);
        if (end && *end == '\0') {
            index = static_cast<int32_t>(as_index);
        } else {
            for (int32_t i = 0; i < n; ++i) {
                VkPhysicalDeviceProperties props;
                vkGetPhysicalDeviceProperties(inst.devices()[static_cast<size_t>(i)], &props);
                if (std::strstr(props.deviceName, want)) {
                    *out = i;
                    return Status::Ok();
                }
            }
            return Error(EKV_ERR_BACKEND, "EKV_VULKAN_DEVICE='%s' matches none of the %d Vulkan devices", want, n);
        }
    }
    if (index < 0 || index >= n)
        return Error(EKV_ERR_INVALID_ARGUMENT, "Vulkan has no device %d (it has %d)", index, n);
    *out = index;
    return Status::Ok();
}

}  // namespace ekv::vk
