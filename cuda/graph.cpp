// cuda/graph.cpp — cuda::Graph (see cuda/graph.h): stream capture in relaxed mode, so that
// the caching allocator may still cudaMalloc while a capture records.
#include "cuda/graph.h"

#include <cuda_runtime.h>

#include "core/error.h"
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/memory.h"

namespace rn::cuda {

Graph::Graph(int device) : device_(device) {}

Graph::~Graph() { reset(); }

void Graph::reset() {
    if (exec_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
    if (graph_) cudaGraphDestroy(static_cast<cudaGraph_t>(graph_));
    exec_ = graph_ = nullptr;
    if (memory_) {
        // the graph's kernels may still be running: let them finish before its blocks are
        // handed to anyone else
        cudaStreamSynchronize(stream(device_));
        release_graph_memory(device_, memory_);
        memory_ = 0;
    }
}

bool Graph::capture(const std::function<void()>& f, std::string* why) {
    reset();
    RN_CUDA_CHECK(cudaSetDevice(device_));
    cudaStream_t s = stream(device_);
    memory_ = begin_graph_memory(device_);
    std::string error;
    cudaGraph_t g = nullptr;
    cudaError_t err = cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed);
    if (err == cudaSuccess) {
        try {
            f();
        } catch (const std::exception& e) {
            error = e.what();
        } catch (...) {
            error = "the captured function threw a non-standard exception";
        }
        err = cudaStreamEndCapture(s, &g);  // ends it whatever happened inside
        if (error.empty() && err != cudaSuccess) error = std::string("capture failed: ") + cudaGetErrorString(err);
    } else {
        error = std::string("cudaStreamBeginCapture: ") + cudaGetErrorString(err);
    }
    end_graph_memory(device_);
    graph_ = g;
    if (error.empty()) {
        cudaGraphExec_t exec = nullptr;
        err = cudaGraphInstantiate(&exec, g, 0);
        if (err == cudaSuccess) exec_ = exec;
        else error = std::string("cudaGraphInstantiate: ") + cudaGetErrorString(err);
    }
    if (!error.empty()) {
        cudaGetLastError();  // a failed capture leaves a sticky error: clear it for the eager path
        reset();
        if (why) *why = error;
        return false;
    }
    return true;
}

void Graph::replay() {
    RN_CHECK(exec_ != nullptr, "cuda::Graph::replay: nothing captured");
    RN_CUDA_CHECK(cudaSetDevice(device_));
    RN_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), stream(device_)));
}

bool stream_capturing() {
    cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(stream(), &st) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    return st != cudaStreamCaptureStatusNone;
}

}  // namespace rn::cuda
