// cuda/graph.h — CUDA graphs: record the kernels a function enqueues once, then replay
// them with one launch. What it is for: a decoding step of a small model is ~270 small
// kernels whose launch cost from the host exceeds their run time on the GPU; replayed as
// one graph, the host's share goes away (serving/engine.cpp uses it for the decode step).
//
// The rules a captured function must keep (a violation makes capture() return false,
// never a wrong replay, except for the last two, which are the caller's to keep):
//   - no synchronisation and no host↔device copy (nothing that waits for the GPU);
//   - everything on the compute stream (cuda/context.h);
//   - inputs are read from, and outputs written to, the same device addresses at every
//     replay: the caller keeps the tensors the function reads alive and in place for the
//     graph's life, and changes inputs by writing into them, not by replacing them;
//   - host values baked into launches (sizes, scalars) are those of the capture;
//   - nothing else uses the device while a capture records: there is one compute stream
//     per device, so another thread's kernels would be recorded into the graph (the
//     engine captures from its one thread).
// Memory the function allocates belongs to the graph (cuda/memory.h: graph memory) and
// is returned to the cache when the Graph is destroyed.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

namespace rn::cuda {

class Graph {
public:
    explicit Graph(int device);
    ~Graph();
    Graph(const Graph&) = delete;
    Graph& operator=(const Graph&) = delete;

    // Records what f enqueues (f's kernels do NOT run: call replay() to run them). Returns
    // false with the reason in *why when capture failed (f threw, or did something a
    // capture forbids); the graph is then empty and the device ready for ordinary work.
    bool capture(const std::function<void()>& f, std::string* why);
    void replay();  // enqueues the recorded work on the compute stream
    bool ready() const { return exec_ != nullptr; }

private:
    void reset();
    int device_;
    void* graph_ = nullptr;  // cudaGraph_t
    void* exec_ = nullptr;   // cudaGraphExec_t
    uint64_t memory_ = 0;    // the allocator's id of this graph's memory
};

// true while the current device's compute stream is being captured (ops skip their
// synchronising input checks then; see ops/index.cpp)
bool stream_capturing();

}  // namespace rn::cuda
