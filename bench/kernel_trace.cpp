// Device time per kernel of any CUDA program, through CUPTI's activity API: a library the CUDA
// driver loads at start-up (CUDA_INJECTION64_PATH=/path/libkernel_trace.so), so it measures binaries
// it was never linked into, e.g. the before and after binaries of a refactor side by side. At exit it
// prints one line per kernel name: launches, total and mean device time, and grid x block, split
// into launches from CUDA graphs (graph replays, e.g. a captured decode step) and the rest.
//
//   scripts/kernel_trace.sh /tmp/libkernel_trace.so     (g++ -shared ... -lcupti)
//   CUDA_INJECTION64_PATH=$PWD/libkernel_trace.so KERNEL_TRACE_OUT=trace.txt mambacpp bench ...
//
// KERNEL_TRACE_OUT: the report's file (default: standard error). The records are flushed every
// 100 ms and the file rewritten each time, so a process that ends with _exit (mambacpp bench runs
// each model in a forked child) still leaves its report, less its last 100 ms; a process that ran
// no kernel writes nothing. Not part of the build: a measuring tool for a GPU machine, kept beside
// the benchmarks.
#include <cuda.h>
#include <cupti.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace {

struct KernelStats {
  uint64_t launches = 0, total_ns = 0;
  std::string shape;  // grid x block of the last launch
};

std::mutex mutex;
std::map<std::string, KernelStats> in_graphs, eager;  // by kernel name
uint64_t dropped = 0;

// Graph-launched kernels one by one: a graph launch's kernels share the launch's correlation id,
// so the idle time before each kernel (after the previous one of its launch ended) can be told.
struct GraphKernel {
  uint32_t launch;
  uint64_t start, end;
  std::string name;
};
std::vector<GraphKernel> graph_kernels;

// Each instantiated graph's nodes by type ("kernel 194, memcpy 0, ..."); the first one's DOT file
// (KERNEL_TRACE_OUT.dot) shows its edges, programmatic ones included.
std::vector<std::string> graphs;

void describe_graph(CUgraph graph) {
  size_t n = 0;
  if (cuGraphGetNodes(graph, nullptr, &n) != CUDA_SUCCESS) return;
  std::vector<CUgraphNode> nodes(n);
  if (cuGraphGetNodes(graph, nodes.data(), &n) != CUDA_SUCCESS) return;
  static const char* kNames[] = {"kernel",    "memcpy",     "memset",    "host",       "graph",
                                 "empty",     "wait_event", "event_rec", "sema_sig",   "sema_wait",
                                 "mem_alloc", "mem_free",   "batch_mem", "conditional"};
  std::map<int, int> by_type;
  for (CUgraphNode node : nodes) {
    CUgraphNodeType t;
    if (cuGraphNodeGetType(node, &t) == CUDA_SUCCESS) ++by_type[static_cast<int>(t)];
  }
  std::string line = std::to_string(n) + " nodes:";
  for (const auto& [t, c] : by_type)
    line += std::string(" ") + (t >= 0 && t < 14 ? kNames[t] : "other") + " " + std::to_string(c);
  std::lock_guard<std::mutex> lock(mutex);
  if (graphs.empty())
    if (const char* path = std::getenv("KERNEL_TRACE_OUT"))
      cuGraphDebugDotPrint(graph, (std::string(path) + ".dot").c_str(), CU_GRAPH_DEBUG_DOT_FLAGS_VERBOSE);
  graphs.push_back(line);
}

void CUPTIAPI on_runtime_api(void*, CUpti_CallbackDomain, CUpti_CallbackId cbid, const void* data) {
  const auto* cb = static_cast<const CUpti_CallbackData*>(data);
  if (cb->callbackSite != CUPTI_API_EXIT ||
      cbid != CUPTI_RUNTIME_TRACE_CBID_cudaGraphInstantiateWithFlags_v11040)
    return;
  describe_graph(reinterpret_cast<CUgraph>(
      static_cast<const cudaGraphInstantiateWithFlags_v11040_params*>(cb->functionParams)->graph));
}

constexpr size_t kBufferBytes = 8 << 20;

void print_table(FILE* out, const char* title, const std::map<std::string, KernelStats>& stats) {
  std::vector<std::pair<std::string, KernelStats>> rows(stats.begin(), stats.end());
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.second.total_ns > b.second.total_ns; });
  uint64_t total = 0;
  for (const auto& [name, s] : rows) total += s.total_ns;
  std::fprintf(out, "%s: %.3f ms of kernels\n", title, static_cast<double>(total) * 1e-6);
  std::fprintf(out, "%10s %12s %10s  %-30s %s\n", "launches", "total us", "mean us", "grid * block",
               "kernel");
  for (const auto& [name, s] : rows)
    std::fprintf(out, "%10llu %12.1f %10.2f  %-30s %.160s\n", static_cast<unsigned long long>(s.launches),
                 static_cast<double>(s.total_ns) * 1e-3,
                 static_cast<double>(s.total_ns) * 1e-3 / static_cast<double>(s.launches), s.shape.c_str(),
                 name.c_str());
}

// Per graph launch: its span (first kernel's start to last kernel's end) against the sum of its
// kernels' times, and the mean idle time before each kernel name within a launch.
void print_gaps(FILE* out) {
  std::map<uint32_t, std::vector<const GraphKernel*>> launches;
  for (const GraphKernel& k : graph_kernels) launches[k.launch].push_back(&k);
  std::map<std::string, std::pair<uint64_t, uint64_t>> idle;  // name -> (total ns, count)
  uint64_t span = 0, busy = 0, n = 0;
  for (auto& [id, ks] : launches) {
    if (ks.size() < 2) continue;
    std::sort(ks.begin(), ks.end(),
              [](const GraphKernel* a, const GraphKernel* b) { return a->start < b->start; });
    span += ks.back()->end - ks.front()->start;
    uint64_t last_end = ks.front()->start;
    for (const GraphKernel* k : ks) {
      busy += k->end - k->start;
      auto& [t, c] = idle[k->name];
      t += k->start > last_end ? k->start - last_end : 0;
      ++c;
      last_end = std::max(last_end, k->end);
    }
    ++n;
  }
  if (n == 0) return;
  std::fprintf(out, "graph launches: %llu, mean span %.1f us, mean kernel time %.1f us, mean idle %.1f us\n",
               static_cast<unsigned long long>(n), 1e-3 * static_cast<double>(span) / static_cast<double>(n),
               1e-3 * static_cast<double>(busy) / static_cast<double>(n),
               1e-3 * static_cast<double>(span - std::min(span, busy)) / static_cast<double>(n));
  std::fprintf(out, "%12s  %s\n", "idle before", "kernel (mean over its launches in graphs)");
  for (const auto& [name, tc] : idle)
    std::fprintf(out, "%9.2f us  %.160s\n",
                 1e-3 * static_cast<double>(tc.first) / static_cast<double>(tc.second), name.c_str());
}

// Rewrites the report (the mutex held).
void write_report() {
  if (in_graphs.empty() && eager.empty()) return;
  const char* path = std::getenv("KERNEL_TRACE_OUT");
  FILE* out = path ? std::fopen(path, "w") : stderr;
  if (!out) out = stderr;
  print_table(out, "kernels launched by CUDA graphs", in_graphs);
  print_table(out, "kernels launched directly", eager);
  print_gaps(out);
  for (const std::string& g : graphs) std::fprintf(out, "graph instantiated: %s\n", g.c_str());
  if (dropped) std::fprintf(out, "dropped records: %llu\n", static_cast<unsigned long long>(dropped));
  if (out != stderr) std::fclose(out);
}

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, kBufferBytes));
  *size = kBufferBytes;
  *max_records = 0;
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  CUpti_Activity* record = nullptr;
  std::lock_guard<std::mutex> lock(mutex);
  while (cuptiActivityGetNextRecord(buffer, valid, &record) == CUPTI_SUCCESS) {
    if (record->kind == CUPTI_ACTIVITY_KIND_MEMCPY || record->kind == CUPTI_ACTIVITY_KIND_MEMSET) {
      // Copies and fills as pseudo-kernels ("[memcpy 4096 B]"): in a graph each is a node too.
      const bool copy = record->kind == CUPTI_ACTIVITY_KIND_MEMCPY;
      const auto* c = reinterpret_cast<const CUpti_ActivityMemcpy6*>(record);
      const auto* f = reinterpret_cast<const CUpti_ActivityMemset4*>(record);
      const uint32_t graph = copy ? c->graphId : f->graphId;
      const uint64_t bytes = copy ? c->bytes : f->bytes, ns = copy ? c->end - c->start : f->end - f->start;
      KernelStats& s =
          (graph != 0 ? in_graphs
                      : eager)[std::string(copy ? "[memcpy " : "[memset ") + std::to_string(bytes) + " B]"];
      ++s.launches;
      s.total_ns += ns;
      continue;
    }
    if (record->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL && record->kind != CUPTI_ACTIVITY_KIND_KERNEL)
      continue;
    const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(record);
    if (k->graphId != 0)
      graph_kernels.push_back({k->correlationId, k->start, k->end, k->name ? k->name : "?"});
    KernelStats& s = (k->graphId != 0 ? in_graphs : eager)[k->name ? k->name : "?"];
    ++s.launches;
    s.total_ns += k->end - k->start;
    s.shape = std::to_string(k->gridX) + "x" + std::to_string(k->gridY) + "x" + std::to_string(k->gridZ) +
              " * " + std::to_string(k->blockX) + "x" + std::to_string(k->blockY) + " r" +
              std::to_string(k->registersPerThread) + " s" + std::to_string(k->sharedMemoryExecuted / 1024) +
              "K";
  }
  size_t n = 0;
  if (cuptiActivityGetNumDroppedRecords(nullptr, 0, &n) == CUPTI_SUCCESS) dropped += n;
  std::free(buffer);
  write_report();
}

void report() {
  cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
}

}  // namespace

extern "C" int InitializeInjection() {
  if (cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed) != CUPTI_SUCCESS ||
      cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) != CUPTI_SUCCESS ||
      cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY) != CUPTI_SUCCESS ||
      cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMSET) != CUPTI_SUCCESS) {
    std::fprintf(stderr, "kernel_trace: CUPTI activity tracing could not be enabled\n");
    return 0;
  }
  CUpti_SubscriberHandle subscriber;
  if (cuptiSubscribe(&subscriber, on_runtime_api, nullptr) == CUPTI_SUCCESS)
    cuptiEnableCallback(1, subscriber, CUPTI_CB_DOMAIN_RUNTIME_API,
                        CUPTI_RUNTIME_TRACE_CBID_cudaGraphInstantiateWithFlags_v11040);
  cuptiActivityFlushPeriod(100);
  std::fprintf(stderr, "kernel_trace: recording kernels\n");
  std::atexit(report);
  return 1;
}
