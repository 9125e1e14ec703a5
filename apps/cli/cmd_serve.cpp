// `mambacpp serve`: the OpenAI-compatible server (<mambacpp/server.h>) on one model. SIGTERM or
// SIGINT stops accepting, lets in-flight requests finish (up to 30 s), and exits 0.
#include <mambacpp/server.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include "commands.h"
#include "flags.h"
#include "generation_flags.h"

namespace mambacpp::cli {

namespace {

struct ServeArgs {
  ServerOptions server;
  std::string tokenizer, device = "cpu", dtype = "f32";
  int threads = 0;
  bool mmap = false;
};

// Set by SIGTERM / SIGINT, whichever thread takes it; the watcher thread acts on it.
std::atomic<int> g_signal{0};
void on_signal(int signo) {
  g_signal = signo;
}

int run_serve(ServeArgs& a) {
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a client that hangs up is noticed by the failed write

  check_dtype_device(a.dtype, a.device);
  if (const std::string dir = resolve_model(a.server.model_dir); dir != a.server.model_dir) {
    if (a.server.model_name.empty())  // a checkpoint ROOT: named after it, not after step_N
      a.server.model_name = std::filesystem::path(a.server.model_dir).lexically_normal().filename().string();
    a.server.model_dir = dir;
  }
  set_num_threads(a.threads);
  Model model = Model::load(a.server.model_dir, {.gguf_mapped = a.mmap});
  model.to(parse_device(a.device));
  model.set_matmul_dtype(matmul_dtype(a.dtype));
  std::shared_ptr<const Tokenizer> tokenizer = open_tokenizer(a.server.model_dir, a.tokenizer);
  Server server(model, tokenizer, a.server);
  server.bind();

  std::atomic<bool> done{false};
  std::thread watcher([&] {
    while (!done.load()) {
      if (g_signal.load() != 0) {
        server.shutdown();
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  server.run();
  done = true;
  watcher.join();
  return 0;
}

}  // namespace

Runner add_serve(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  ServerOptions& s = a->server;
  app.add_option("-m,--model", s.model_dir, "model directory (config.json, *.safetensors, tokenizer.json)")
      ->required();
  app.add_option(
      "--tokenizer", a->tokenizer,
      "tokenizer.json to use, or 'byte' (default: MODEL/tokenizer.json if present, else 'byte' for a "
      "model trained with --task text)");
  app.add_option("--alias", s.model_name, "model id in /v1/models and requests (default: the folder's name)");
  app.add_option("--host", s.host, "address to listen on")->capture_default_str();
  app.add_option("--port", s.port, "port to listen on; 0: any free port")
      ->capture_default_str()
      ->check(int_range(0, 65535));
  app.add_option("--parallel", s.parallel, "slots: requests decoded together")
      ->capture_default_str()
      ->check(int_range(1, 4096));
  app.add_option("--queue", s.max_queue, "requests waiting for a slot before 429")
      ->capture_default_str()
      ->check(int_range(0));
  app.add_option("--cache-mib", s.cache_mib, "prefix-state cache budget in MiB; 0: off")
      ->capture_default_str()
      ->check(int_range(0));
  app.add_option("--cache-host-mib", s.cache_host_mib,
                 "GPU models: host memory in MiB for cached states that leave --cache-mib (they are copied "
                 "back on a hit); 0: none")
      ->capture_default_str()
      ->check(int_range(0, int64_t(1) << 24));
  app.add_option("--cache-every", s.cache_every, "also snapshot long prompts every N tokens")
      ->capture_default_str()
      ->check(int_range(0));
  app.add_option("--api-key", s.api_key, "require 'Authorization: Bearer KEY' on /v1/");
  app.add_option("--ctx-size", s.ctx_size, "maximum prompt + completion tokens per request; 0: unlimited")
      ->capture_default_str()
      ->check(int_range(0));
  app.add_option("--prefill-chunk", s.prefill_chunk, "tokens per prefill pass (and per scheduler step)")
      ->capture_default_str()
      ->check(int_range(1));
  add_threads_option(app, a->threads);
  add_mmap_flag(app, a->mmap);
  add_device_option(app, a->device, "cpu or cuda")->capture_default_str();
  add_dtype_option(app, a->dtype);
  return [a]() { return run_serve(*a); };
}

}  // namespace mambacpp::cli
