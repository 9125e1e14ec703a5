// mambacpp public API, the server part: the OpenAI-compatible HTTP server (`mambacpp serve`) over
// one loaded model: continuous batching over `parallel` slots, a prefix-state cache.
//
//   mambacpp::ServerOptions options;                       // host, port, slots, cache, API key
//   mambacpp::Server server(model, tokenizer, options);    // tokenizer: may be null
//   server.bind(); server.run();                           // shutdown() from another thread
#pragma once
#include <mambacpp/model.h>
#include <mambacpp/tokenizer.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace mambacpp {

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
  int64_t prefill_chunk = 512;                      // tokens per prefill pass (and per scheduler step)
  std::string api_key;                              // non-empty: "Authorization: Bearer KEY" on /v1/
  int64_t ctx_size = 65536;                         // prompt + completion tokens per request; 0: unlimited
  int64_t default_max_tokens = 16;                  // completions without max_tokens
  size_t max_body_bytes = 8u << 20;                 // larger bodies: 413
  int http_threads = 0;                             // 0: parallel + max_queue + 8
  std::chrono::milliseconds shutdown_grace{30000};  // in-flight requests may finish this long
  std::function<void(const std::string&)> log;      // request and startup lines; null: stderr
};

class Server {
public:
  // `model` must outlive the server.
  Server(const Model& model, std::shared_ptr<const Tokenizer> tokenizer, const ServerOptions& options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int bind();       // listens; returns the port
  void run();       // serves until shutdown()
  void shutdown();  // from any thread: stop accepting, let in-flight requests finish

  struct Impl;

private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace mambacpp
