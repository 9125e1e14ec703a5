// The OpenAI wire format: request bodies of /v1/completions and /v1/chat/completions validated
// into a CompletionRequest (a RequestError with the HTTP status and OpenAI's error fields
// otherwise), and the response objects and stream chunks built from a job's output.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "sampling/sampler.h"

namespace mamba::server {

using json = nlohmann::json;

// An OpenAI-style error: {"error": {"message", "type", "param", "code"}} with an HTTP status.
struct RequestError : std::runtime_error {
  RequestError(int http_status, const std::string& message, std::string error_type = "invalid_request_error",
               std::string error_param = "", std::string error_code = "")
      : std::runtime_error(message),
        status(http_status),
        type(std::move(error_type)),
        param(std::move(error_param)),
        code(std::move(error_code)) {}
  int status;
  std::string type, param, code;
};
json error_body(const std::string& message, const std::string& type, const std::string& param = "",
                const std::string& code = "");
json error_body(const RequestError& e);

enum class Endpoint { completions, chat_completions };

struct CompletionRequest {
  Endpoint endpoint = Endpoint::completions;
  std::string model;  // empty: not given
  // Completions: the prompt as text, or as token ids (`prompt: [1, 2, 3]`).
  std::optional<std::string> prompt_text;
  std::vector<int32_t> prompt_ids;
  json messages;  // chat: validated array of {role, content}; content flattened to a string
  bool stream = false, include_usage = false;
  bool return_tokens = false;  // extension: choices[].token_ids
  sampling::SamplingParams sampling;
  std::optional<int64_t> max_tokens;
  std::vector<std::string> stop;
  bool ignore_eos = false;                // extension
  json template_kwargs = json::object();  // chat_template_kwargs (extension, as vLLM)
};

// Throws RequestError (400) naming the field for a wrong type or value.
CompletionRequest parse_completion_request(const json& body, Endpoint endpoint);
// The raw HTTP body -> a validated request: nesting depth checked before parsing (nlohmann
// recurses per level), then JSON, then parse_completion_request. RequestError (400) otherwise.
CompletionRequest parse_request_body(const std::string& body, Endpoint endpoint);

// Response pieces. `id`, `created` and `model` repeat in every chunk of one stream.
struct ResponseHeader {
  std::string id, model;
  int64_t created = 0;
};
struct Usage {
  int64_t prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
};
json usage_json(const Usage& usage);
json completion_response(const ResponseHeader& h, Endpoint endpoint, const std::string& text,
                         const std::vector<int32_t>* tokens, const char* finish_reason, const Usage& usage);
// One stream chunk: text (chat: delta content), `finish_reason` null when nullptr. Chat's first
// chunk carries delta.role (`role_chunk`).
json stream_chunk(const ResponseHeader& h, Endpoint endpoint, const std::string& text,
                  const std::vector<int32_t>* tokens, const char* finish_reason, bool role_chunk = false);
// The last chunk of stream_options.include_usage: empty choices and the usage.
json usage_chunk(const ResponseHeader& h, Endpoint endpoint, const Usage& usage);

}  // namespace mamba::server
