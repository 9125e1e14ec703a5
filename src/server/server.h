// `mambacpp serve`: an OpenAI-compatible HTTP server (cpp-httplib) over one shared model.
//
//   POST /v1/completions, /v1/chat/completions   non-streaming, or "stream": true as server-sent
//                                                events in OpenAI's chunk format ending in [DONE]
//   GET  /v1/models, /health, /metrics (Prometheus text)
//
// Generation runs on the Scheduler's thread (continuous batching over --parallel slots, a
// prefix-state cache); HTTP threads parse, tokenize, queue and stream. Bad input gets an
// OpenAI-style error body and status, never takes the server down.
//
//   Server server(model, tokenizer, {.model_dir = dir, .port = 0});
//   int port = server.bind();          // 0: an ephemeral port, returned
//   std::thread t([&] { server.run(); });
//   ...; server.shutdown();  t.join();  // stop accepting, finish in-flight requests
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "models/model.h"
#include "server/metrics.h"
#include "tokenizer/tokenizer.h"

namespace mamba::server {

struct ServerOptions {
  std::string model_dir;   // eos ids, chat template, tokenizer_config.json
  std::string model_name;  // the id of /v1/models; empty: the folder's name
  std::string host = "127.0.0.1";
  int port = 8080;                                  // 0: any free port (bind() returns it)
  int parallel = 4;                                 // slots decoding together
  int max_queue = 64;                               // requests waiting for a slot; beyond: 429
  int64_t cache_mib = 256;                          // prefix-state cache; 0: off
  int64_t cache_host_mib = 2048;                    // device models: host memory for states leaving it
  int64_t cache_every = 2048;                       // snapshot long prompts every this many tokens
  int64_t prefill_chunk = 512;                      // tokens per prefill pass (and per scheduler iteration)
  std::string api_key;                              // non-empty: "Authorization: Bearer KEY" required on /v1/
  int64_t ctx_size = 65536;                         // prompt + completion tokens per request; 0: unlimited
  int64_t default_max_tokens = 16;                  // completions without max_tokens (OpenAI's default)
  size_t max_body_bytes = 8u << 20;                 // larger bodies: 413
  int http_threads = 0;                             // 0: parallel + max_queue + 8
  std::chrono::milliseconds shutdown_grace{30000};  // in-flight requests may finish this long
  std::function<void(const std::string&)> log;      // request and startup lines; null: stderr
};

class Server {
public:
  // `model` and `tokenizer` (may be null: token ids in and out only) outlive the server.
  Server(const models::Model& model, std::shared_ptr<const tok::Tokenizer> tokenizer, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds host:port; returns the port. Throws Error (io) when the address is taken.
  int bind();
  // Serves until shutdown(). Call after bind().
  void run();
  // From another thread: refuse new requests (503), let queued and running ones finish (up to
  // shutdown_grace, then cancel them), then stop listening; run() returns.
  void shutdown();

  const Metrics& metrics() const;

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mamba::server
