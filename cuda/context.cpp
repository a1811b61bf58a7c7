// cuda/context.cpp — lazily created per-device streams and BLAS handles (cuda/context.h).
#include "cuda/context.h"

#include <array>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "cuda/check.h"
#include "cuda/device.h"
#include "cuda/pdl.h"

namespace rn::cuda {

namespace {
constexpr int kMaxDevices = 16;
constexpr size_t kLtWorkspace = 32u << 20;  // cuBLASLt heuristics pick faster kernels with room

struct DeviceContext {
    std::once_flag once;
    cudaStream_t stream = nullptr;
    cublasHandle_t cublas = nullptr;
    cublasLtHandle_t lt = nullptr;
    void* workspace = nullptr;
    int sms = 0;
    int smem_optin = 0;  // bytes of shared memory a block may opt in to
    int major = 0;  // compute capability
};
std::array<DeviceContext, kMaxDevices> contexts;
bool tf32 = false;

#define RN_CUBLAS_CHECK(call)                                                               \
    do {                                                                                    \
        cublasStatus_t s_ = (call);                                                         \
        RN_CHECK(s_ == CUBLAS_STATUS_SUCCESS, "cuBLAS error in ", #call, ": status ", int(s_)); \
    } while (0)

DeviceContext& ctx(int device) {
    if (device < 0) device = current_device();
    RN_CHECK(device < kMaxDevices && device < device_count(), "CUDA device ", device, " does not exist (",
             device_count(), " present)");
    DeviceContext& c = contexts[size_t(device)];
    std::call_once(c.once, [&] {
        int prev = current_device();
        RN_CUDA_CHECK(cudaSetDevice(device));
        RN_CUDA_CHECK(cudaStreamCreateWithFlags(&c.stream, cudaStreamDefault));
        RN_CUBLAS_CHECK(cublasCreate(&c.cublas));
        RN_CUBLAS_CHECK(cublasSetStream(c.cublas, c.stream));
        RN_CUBLAS_CHECK(cublasLtCreate(&c.lt));
        RN_CUDA_CHECK(cudaMalloc(&c.workspace, kLtWorkspace));
        RN_CUDA_CHECK(cudaDeviceGetAttribute(&c.sms, cudaDevAttrMultiProcessorCount, device));
        RN_CUDA_CHECK(cudaDeviceGetAttribute(&c.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
        RN_CUDA_CHECK(cudaDeviceGetAttribute(&c.major, cudaDevAttrComputeCapabilityMajor, device));
        RN_CUDA_CHECK(cudaSetDevice(prev));
    });
    return c;
}
}  // namespace

int current_device() {
    int d = 0;
    RN_CUDA_CHECK(cudaGetDevice(&d));
    return d;
}
cudaStream_t stream(int device) { return ctx(device).stream; }
cublasHandle_t cublas_handle(int device) { return ctx(device).cublas; }
cublasLtHandle_t cublaslt_handle(int device) { return ctx(device).lt; }
void* cublaslt_workspace(int device, size_t* bytes) {
    *bytes = kLtWorkspace;
    return ctx(device).workspace;
}
int sm_count(int device) { return ctx(device).sms; }
size_t smem_per_block_optin(int device) { return size_t(ctx(device).smem_optin); }
void set_allow_tf32(bool on) { tf32 = on; }
bool allow_tf32() { return tf32; }

namespace {
bool pdl_from_env() {
    const char* e = std::getenv("RN_PDL");
    return !(e && std::strcmp(e, "0") == 0);
}
bool pdl_on = pdl_from_env();
thread_local int pdl_depth = 0;  // open PdlScopes on this thread (the one that launches)
}  // namespace

void set_pdl_enabled(bool on) { pdl_on = on; }
bool pdl_enabled() { return pdl_on; }
bool pdl_supported() { return ctx(-1).major >= 9; }
bool pdl_active() { return pdl_on && pdl_depth > 0 && pdl_supported(); }
PdlScope::PdlScope() { ++pdl_depth; }
PdlScope::~PdlScope() { --pdl_depth; }

}  // namespace rn::cuda
