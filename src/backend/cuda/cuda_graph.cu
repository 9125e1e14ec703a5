// CUDA graphs of the bound context's stream: capture in relaxed mode (the caching allocator may
// still reach cudaMalloc for a block size it has not cached yet), private allocator pool per
// graph, one instantiation, replays on the same stream (ordered with every eager op).
#include "backend/cuda/cuda_context.h"
#include "core/error.h"

namespace mamba::cuda {

struct Graph {
  cudaStream_t stream = nullptr;  // the capture's and the replays' stream
  int pool = 0;
  bool capturing = false;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
};

Graph* begin_graph_capture() {
  cudaStream_t s = stream();
  auto* g = new Graph();
  g->stream = s;
  g->pool = begin_pool_capture(s);
  const cudaError_t err = cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed);
  if (err != cudaSuccess) {
    end_pool_capture(s);
    release_pool(g->pool);
    delete g;
    CUDA_CHECK(err);
  }
  g->capturing = true;
  return g;
}

void end_graph_capture(Graph* g) {
  MAMBA_CHECK(g && g->capturing, "end_graph_capture without an open capture");
  const cudaError_t err = cudaStreamEndCapture(g->stream, &g->graph);
  g->capturing = false;
  end_pool_capture(g->stream);
  CUDA_CHECK(err);
  // cuBLAS may allocate its workspace inside the capture (stream-ordered allocation nodes); a
  // relaunch frees what the previous launch left allocated.
  CUDA_CHECK(cudaGraphInstantiateWithFlags(&g->exec, g->graph, cudaGraphInstantiateFlagAutoFreeOnLaunch));
}

void replay_graph(Graph* g) {
  MAMBA_CHECK(g && g->exec, "replay of a graph that was not captured");
  CUDA_CHECK(cudaGraphLaunch(g->exec, g->stream));
}

void release_graph(Graph* g) {
  if (!g) return;
  if (g->capturing) {  // an op threw during the capture: end it and drop what was recorded
    cudaGraph_t partial = nullptr;
    const cudaError_t err = cudaStreamEndCapture(g->stream, &partial);
    if (err != cudaSuccess) (void)cudaGetLastError();
    if (partial) (void)cudaGraphDestroy(partial);
    end_pool_capture(g->stream);
  }
  if (g->exec) CUDA_CHECK(cudaGraphExecDestroy(g->exec));
  if (g->graph) CUDA_CHECK(cudaGraphDestroy(g->graph));
  release_pool(g->pool);
  delete g;
}

}  // namespace mamba::cuda
