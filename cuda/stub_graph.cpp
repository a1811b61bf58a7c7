// cuda/stub_graph.cpp — cuda::Graph without CUDA: capture() says why it cannot.
#include "cuda/graph.h"

#include "core/error.h"
#include "cuda/memory.h"

namespace rn::cuda {

Graph::Graph(int device) : device_(device) {}
Graph::~Graph() = default;
void Graph::reset() {}
bool Graph::capture(const std::function<void()>&, std::string* why) {
    if (why) *why = "retnet.cpp was built without CUDA";
    return false;
}
void Graph::replay() { RN_FAIL("cuda::Graph::replay: retnet.cpp was built without CUDA"); }
bool stream_capturing() { return false; }
uint64_t begin_graph_memory(int) { return 0; }
void end_graph_memory(int) {}
void release_graph_memory(int, uint64_t) {}

}  // namespace rn::cuda
