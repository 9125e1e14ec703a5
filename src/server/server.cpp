// The HTTP side of `mambacpp serve` (see server.h): routes, authentication, request validation,
// tokenization, and the responses (JSON or server-sent events) built from scheduler jobs.
#include "server/server.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <random>
#include <thread>

#include "core/error.h"
#include "runtime/model_files.h"
#include "server/chat_prompt.h"
#include "server/openai.h"
#include "server/scheduler.h"

namespace mamba::server {
namespace {

int64_t unix_time() {
  return static_cast<int64_t>(std::time(nullptr));
}

void log_stderr(const std::string& line) {
  char stamp[32];
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
  std::fprintf(stderr, "%s %s\n", stamp, line.c_str());
}

// Generated text may hold invalid UTF-8 (a byte-level model's bytes): U+FFFD replaces it.
std::string dump(const json& body) {
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(dump(body), "application/json");
}

std::string sse(const json& chunk) {
  return "data: " + dump(chunk) + "\n\n";
}

const char* status_message(int status) {
  switch (status) {
    case 400:
      return "Bad request";
    case 404:
      return "Not found";
    case 405:
      return "Method not allowed";
    case 413:
      return "Request body too large";
    case 414:
      return "Request URI too long";
    default:
      return "Request failed";
  }
}

}  // namespace

struct Server::Impl {
  const models::Model& model;
  std::shared_ptr<const tok::Tokenizer> tokenizer;
  ServerOptions options;
  Metrics metrics;
  std::unique_ptr<ChatPrompt> chat;
  std::vector<int32_t> eos_ids;
  std::unique_ptr<Scheduler> scheduler;
  httplib::Server http;
  socket_t listen_socket = -1;
  std::atomic<int> in_flight{0};  // generation requests not yet answered in full
  std::atomic<bool> draining{false};
  std::atomic<uint64_t> next_id{0};
  std::string id_prefix;
  int64_t started = unix_time();

  Impl(const models::Model& m, std::shared_ptr<const tok::Tokenizer> t, ServerOptions o)
      : model(m), tokenizer(std::move(t)), options(std::move(o)) {
    if (!options.log) options.log = log_stderr;
    if (options.model_name.empty())
      options.model_name = std::filesystem::path(options.model_dir).lexically_normal().filename().string();
    if (options.model_name.empty())
      options.model_name =
          std::filesystem::path(options.model_dir).lexically_normal().parent_path().filename().string();
    if (options.model_name.empty()) options.model_name = "mambacpp";
    chat = std::make_unique<ChatPrompt>(options.model_dir);
    eos_ids = runtime::eos_token_ids(options.model_dir, tokenizer.get());
    char prefix[16];
    std::snprintf(prefix, sizeof prefix, "%08x", static_cast<unsigned>(std::random_device{}()));
    id_prefix = prefix;
    scheduler =
        std::make_unique<Scheduler>(model, tokenizer.get(),
                                    SchedulerOptions{.slots = options.parallel,
                                                     .max_queue = options.max_queue,
                                                     .prefill_chunk = options.prefill_chunk,
                                                     .cache_bytes = options.cache_mib << 20,
                                                     .cache_spill_bytes = options.cache_host_mib << 20,
                                                     .cache_every = options.cache_every,
                                                     .history_limit = 64,
                                                     .log = options.log},
                                    metrics);
    routes();
  }

  std::string new_id(Endpoint endpoint) {
    char suffix[24];
    std::snprintf(suffix, sizeof suffix, "%06llu", static_cast<unsigned long long>(next_id++));
    return (endpoint == Endpoint::chat_completions ? "chatcmpl-" : "cmpl-") + id_prefix + suffix;
  }

  void routes() {
    const int threads = options.http_threads > 0 ? options.http_threads
                                                 : std::min(options.parallel + options.max_queue + 8, 1024);
    http.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
    http.set_payload_max_length(options.max_body_bytes);
    // cpp-httplib 0.11 listens with a backlog of 5: a burst of connections overflows it and
    // clients see their connection reset. Remember the socket to listen again with a deep one.
    http.set_socket_options([this](socket_t sock) {
      int yes = 1;
      setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
      listen_socket = sock;
    });
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      return authorize(req, res) ? httplib::Server::HandlerResponse::Unhandled
                                 : httplib::Server::HandlerResponse::Handled;
    });
    http.set_error_handler(httplib::Server::HandlerWithResponse(
        [this](const httplib::Request& req, httplib::Response& res) -> httplib::Server::HandlerResponse {
          metrics.requests_rejected++;  // every status >= 400 passes here
          if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
          std::string message = status_message(res.status);
          if (res.status == 404) message = "Unknown endpoint: " + req.method + " " + req.path;
          if (res.status == 413)
            message =
                "The request body is over the limit of " + std::to_string(options.max_body_bytes) + " bytes";
          res.set_content(dump(error_body(message, "invalid_request_error")), "application/json");
          return httplib::Server::HandlerResponse::Handled;
        }));
    http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string message = "internal error";
      try {
        if (ep) std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        message = e.what();
      } catch (...) {
      }
      send_json(res, 500, error_body(message, "server_error"));
    });

    http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      if (draining)
        send_json(res, 503, {{"status", "shutting down"}});
      else
        send_json(res, 200, {{"status", "ok"}});
    });
    auto models = [this](const httplib::Request&, httplib::Response& res) {
      send_json(res, 200,
                {{"object", "list"},
                 {"data", json::array({{{"id", options.model_name},
                                        {"object", "model"},
                                        {"created", started},
                                        {"owned_by", "mambacpp"}}})}});
    };
    http.Get("/v1/models", models);
    http.Get("/models", models);
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics.render(scheduler->gauges()), "text/plain; version=0.0.4; charset=utf-8");
    });
    for (const char* path : {"/v1/completions", "/completions"})
      http.Post(path, [this](const httplib::Request& req, httplib::Response& res) {
        generate(req, res, Endpoint::completions);
      });
    for (const char* path : {"/v1/chat/completions", "/chat/completions"})
      http.Post(path, [this](const httplib::Request& req, httplib::Response& res) {
        generate(req, res, Endpoint::chat_completions);
      });
  }

  // Checks the API key on everything but /health and /metrics; answers 401 itself.
  bool authorize(const httplib::Request& req, httplib::Response& res) {
    if (options.api_key.empty() || req.path == "/health" || req.path == "/metrics") return true;
    const std::string header = req.get_header_value("Authorization");
    if (header == "Bearer " + options.api_key) return true;
    send_json(
        res, 401,
        error_body(header.empty() ? "You didn't provide an API key. Pass it as 'Authorization: Bearer KEY'."
                                  : "Incorrect API key provided.",
                   "invalid_request_error", "", "invalid_api_key"));
    return false;
  }

  // The prompt's token ids, after the checks that need them.
  std::vector<int32_t> prompt_tokens(const CompletionRequest& r) {
    std::vector<int32_t> ids;
    if (r.endpoint == Endpoint::chat_completions) {
      if (!tokenizer)
        throw RequestError(400, "chat completions need a tokenizer: " + options.model_dir +
                                    "/tokenizer.json not found (use /v1/completions with token ids)");
      std::string text;
      try {
        text = chat->render(r.messages, r.template_kwargs);
      } catch (const Error& e) {
        throw RequestError(400, std::string("chat template: ") + e.what(), "invalid_request_error",
                           "messages");
      }
      ids = tokenizer->encode(text);
    } else if (r.prompt_text) {
      if (!tokenizer)
        throw RequestError(400,
                           "a text prompt needs a tokenizer: " + options.model_dir +
                               "/tokenizer.json not found (send the prompt as token ids)",
                           "invalid_request_error", "prompt");
      if (auto bos = tokenizer->bos_id()) ids.push_back(*bos);
      const std::vector<int32_t> body = tokenizer->encode(*r.prompt_text);
      ids.insert(ids.end(), body.begin(), body.end());
    } else {
      ids = r.prompt_ids;
      const int64_t vocab = model.config().vocab_size;
      for (size_t i = 0; i < ids.size(); ++i)
        if (ids[i] >= vocab)
          throw RequestError(400,
                             "prompt[" + std::to_string(i) + "]: token id " + std::to_string(ids[i]) +
                                 " is outside the vocabulary [0, " + std::to_string(vocab) + ")",
                             "invalid_request_error", "prompt");
    }
    if (ids.empty()) throw RequestError(400, "the prompt is empty", "invalid_request_error", "prompt");
    const int64_t n = static_cast<int64_t>(ids.size());
    if (options.ctx_size > 0 && n > options.ctx_size)
      throw RequestError(400,
                         "This model's maximum context length is " + std::to_string(options.ctx_size) +
                             " tokens. However, your prompt resulted in " + std::to_string(n) + " tokens.",
                         "invalid_request_error",
                         r.endpoint == Endpoint::chat_completions ? "messages" : "prompt",
                         "context_length_exceeded");
    return ids;
  }

  JobSpec job_spec(const CompletionRequest& r, std::vector<int32_t> prompt) {
    JobSpec spec;
    spec.id = new_id(r.endpoint);
    const int64_t room = options.ctx_size > 0 ? options.ctx_size - static_cast<int64_t>(prompt.size())
                                              : std::numeric_limits<int32_t>::max();
    const int64_t fallback = r.endpoint == Endpoint::completions ? options.default_max_tokens : room;
    spec.max_tokens = std::min(r.max_tokens.value_or(fallback), room);
    spec.prompt = std::move(prompt);
    spec.sampling = r.sampling;
    try {
      sampling::validate(spec.sampling);
    } catch (const Error& e) {
      throw RequestError(400, e.what());
    }
    if (!r.ignore_eos) spec.stop.eos_ids = eos_ids;
    if (!r.stop.empty() && !tokenizer)
      throw RequestError(400, "'stop' needs a tokenizer: " + options.model_dir + "/tokenizer.json not found",
                         "invalid_request_error", "stop");
    spec.stop.stop_strings = r.stop;
    return spec;
  }

  void generate(const httplib::Request& req, httplib::Response& res, Endpoint endpoint) {
    (endpoint == Endpoint::chat_completions ? metrics.requests_chat : metrics.requests_completions)++;
    std::shared_ptr<Job> job;
    CompletionRequest r;
    try {
      if (draining) throw RequestError(503, "The server is shutting down", "server_error");
      r = parse_request_body(req.body, endpoint);
      if (!r.model.empty() && r.model != options.model_name)
        throw RequestError(404, "The model '" + r.model + "' does not exist", "invalid_request_error",
                           "model", "model_not_found");
      job = std::make_shared<Job>(job_spec(r, prompt_tokens(r)));
      switch (scheduler->submit(job)) {
        case Scheduler::Admission::accepted:
          break;
        case Scheduler::Admission::queue_full:
          res.set_header("Retry-After", "1");
          throw RequestError(429, "Too many requests: every slot is busy and the queue is full; retry later",
                             "rate_limit_error", "", "rate_limit_exceeded");
        case Scheduler::Admission::shutting_down:
          throw RequestError(503, "The server is shutting down", "server_error");
      }
    } catch (const RequestError& e) {
      send_json(res, e.status, error_body(e));
      return;
    } catch (const Error& e) {  // tokenizer: text that is not valid UTF-8, ...
      send_json(res, 400, error_body(e.what(), "invalid_request_error"));
      return;
    }
    const ResponseHeader header{job->spec().id, options.model_name, unix_time()};
    ++in_flight;
    if (!r.stream) {
      std::string text;
      std::vector<int32_t> tokens;
      JobOutput out;
      do {
        out = job->take(std::chrono::milliseconds(1000));
        text += out.text;
        tokens.insert(tokens.end(), out.tokens.begin(), out.tokens.end());
      } while (!out.finished);
      if (out.reason == FinishReason::error || out.reason == FinishReason::cancelled)
        send_json(res, 500,
                  error_body("generation failed: " + (out.error.empty() ? "cancelled" : out.error),
                             "server_error"));
      else
        send_json(res, 200,
                  completion_response(header, endpoint, text, r.return_tokens ? &tokens : nullptr,
                                      finish_reason_name(out.reason),
                                      {out.prompt_tokens, out.completion_tokens, out.cached_tokens}));
      --in_flight;
      return;
    }
    struct StreamState {
      bool role_sent = false, finished = false;
    };
    auto state = std::make_shared<StreamState>();
    const bool chat_stream = endpoint == Endpoint::chat_completions;
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, job, state, header, endpoint, chat_stream, include_usage = r.include_usage,
         return_tokens = r.return_tokens](size_t, httplib::DataSink& sink) {
          auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
          if (chat_stream && !state->role_sent) {
            state->role_sent = true;
            if (!write(sse(stream_chunk(header, endpoint, "", nullptr, nullptr, /*role_chunk=*/true)))) {
              job->cancel();
              return false;
            }
          }
          const JobOutput out = job->take(std::chrono::milliseconds(250));
          bool ok = true;
          if (!out.tokens.empty())
            ok = write(sse(
                stream_chunk(header, endpoint, out.text, return_tokens ? &out.tokens : nullptr, nullptr)));
          if (ok && out.finished) {
            state->finished = true;
            if (out.reason == FinishReason::error || out.reason == FinishReason::cancelled) {
              ok = write(sse(error_body("generation failed: " + (out.error.empty() ? "cancelled" : out.error),
                                        "server_error")));
            } else {
              ok = write(sse(stream_chunk(header, endpoint, "", nullptr, finish_reason_name(out.reason))));
              if (ok && include_usage)
                ok = write(sse(usage_chunk(header, endpoint,
                                           {out.prompt_tokens, out.completion_tokens, out.cached_tokens})));
            }
            if (ok) ok = write("data: [DONE]\n\n");
            if (ok) sink.done();
          }
          if (!ok) job->cancel();  // the client went away: the slot is freed at the next step
          return ok;
        },
        [this, job, state](bool success) {
          if (!success || !state->finished) job->cancel();
          --in_flight;
        });
  }
};

Server::Server(const models::Model& model, std::shared_ptr<const tok::Tokenizer> tokenizer,
               ServerOptions options)
    : impl_(std::make_unique<Impl>(model, std::move(tokenizer), std::move(options))) {}

Server::~Server() {
  impl_->http.stop();
  impl_->scheduler->shutdown(std::chrono::milliseconds(0));
}

int Server::bind() {
  Impl& s = *impl_;
  int port = s.options.port;
  if (port == 0) {
    port = s.http.bind_to_any_port(s.options.host);
    if (port < 0) throw_error(ErrorCode::io, "serve: cannot bind ", s.options.host, " (any port)");
  } else if (!s.http.bind_to_port(s.options.host, port)) {
    throw_error(ErrorCode::io, "serve: cannot bind ", s.options.host, ":", port, " (address in use?)");
  }
  if (s.listen_socket >= 0) ::listen(s.listen_socket, SOMAXCONN);
  s.options.log("serve: model '" + s.options.model_name + "' on http://" + s.options.host + ":" +
                std::to_string(port) + " | " + std::to_string(s.options.parallel) + " slots, cache " +
                std::to_string(s.options.cache_mib) + " MiB, ctx " + std::to_string(s.options.ctx_size) +
                ", chat template: " + s.chat->source() +
                (s.tokenizer ? "" : ", no tokenizer (token ids only)"));
  return port;
}

void Server::run() {
  impl_->http.listen_after_bind();
}

void Server::shutdown() {
  Impl& s = *impl_;
  s.draining = true;
  s.options.log("serve: shutting down: finishing in-flight requests");
  s.scheduler->shutdown(s.options.shutdown_grace);
  // The streams write their last chunks after the scheduler finished them.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (s.in_flight.load() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  s.http.stop();
}

const Metrics& Server::metrics() const {
  return impl_->metrics;
}

}  // namespace mamba::server
