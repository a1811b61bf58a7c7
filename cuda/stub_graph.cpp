// cuda/stub_graph.cpp — cuda::Graph in a build without CUDA (as the other cuda/stub*.cpp):
// capture() always fails, saying why, so callers run their work eagerly; replay() is an
// error; graph memory has nothing to track.
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
