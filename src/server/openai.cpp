// OpenAI request validation and response objects (see openai.h). Field names, defaults and
// ranges follow OpenAI's API reference; top_k, min_p, repeat_penalty and repeat_last_n as
// llama.cpp's server names them.
#include "server/openai.h"

#include <cmath>
#include <limits>

#include "core/json_guard.h"

namespace mamba::server {
namespace {

[[noreturn]] void bad_field(const std::string& field, const std::string& what) {
  throw RequestError(400, "'" + field + "': " + what, "invalid_request_error", field);
}

const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  return (it == body.end() || it->is_null()) ? nullptr : &*it;
}

std::optional<double> number_field(const json& body, const char* name, double lo, double hi) {
  const json* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_number()) bad_field(name, "expected a number, found " + std::string(v->type_name()));
  const double x = v->get<double>();
  if (!(x >= lo && x <= hi))
    bad_field(name, "expected a number in [" + json(lo).dump() + ", " + json(hi).dump() + "], found " +
                        json_excerpt(*v));
  return x;
}

std::optional<int64_t> integer_field(const json& body, const char* name, int64_t lo, int64_t hi) {
  const json* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_number_integer() && !(v->is_number_float() && std::floor(v->get<double>()) == v->get<double>()))
    bad_field(name, "expected an integer, found " + json_excerpt(*v));
  const double x = v->get<double>();
  if (!(x >= static_cast<double>(lo) && x <= static_cast<double>(hi)))
    bad_field(name, "expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                        "], found " + json_excerpt(*v));
  return v->is_number_integer() ? v->get<int64_t>() : static_cast<int64_t>(x);
}

std::optional<bool> bool_field(const json& body, const char* name) {
  const json* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) bad_field(name, "expected a boolean, found " + json_excerpt(*v));
  return v->get<bool>();
}

// Chat content: a string, or an array of parts of which only {"type": "text"} are supported.
std::string content_text(const json& content, size_t index) {
  const std::string where = "messages[" + std::to_string(index) + "].content";
  if (content.is_string()) return content.get<std::string>();
  if (content.is_null()) return "";
  if (!content.is_array()) bad_field(where, "expected a string or an array of content parts");
  std::string text;
  for (const json& part : content) {
    if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
        !part["text"].is_string())
      bad_field(where, "only text content parts ({\"type\": \"text\", \"text\": ...}) are supported");
    text += part["text"].get<std::string>();
  }
  return text;
}

json validated_messages(const json& body) {
  const json* messages = field(body, "messages");
  if (!messages) bad_field("messages", "required");
  if (!messages->is_array())
    bad_field("messages", "expected an array, found " + std::string(messages->type_name()));
  if (messages->empty()) bad_field("messages", "expected at least one message, found an empty array");
  json out = json::array();
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& m = (*messages)[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) bad_field(where, "expected an object");
    if (!m.contains("role") || !m["role"].is_string()) bad_field(where + ".role", "expected a string");
    json message = m;  // tool calls and other fields pass through to the template
    message["content"] = content_text(m.contains("content") ? m["content"] : json(), i);
    out.push_back(std::move(message));
  }
  return out;
}

std::vector<int32_t> token_ids(const json& array, const char* name) {
  std::vector<int32_t> ids;
  for (const json& t : array) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 ||
        t.get<int64_t>() > std::numeric_limits<int32_t>::max())
      bad_field(name, "expected a string or an array of token ids, found " + json_excerpt(t));
    ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
  return ids;
}

}  // namespace

json error_body(const std::string& message, const std::string& type, const std::string& param,
                const std::string& code) {
  return {{"error",
           {{"message", message},
            {"type", type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code.empty() ? json(nullptr) : json(code)}}}};
}

json error_body(const RequestError& e) {
  return error_body(e.what(), e.type, e.param, e.code);
}

CompletionRequest parse_request_body(const std::string& body, Endpoint endpoint) {
  if (json_nesting_depth(body) > kMaxJsonDepth)
    throw RequestError(400,
                       "the request body is nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  const json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded())
    throw RequestError(
        400,
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
        "using your HTTP library correctly. The OpenAI API expects a JSON payload.)");
  return parse_completion_request(parsed, endpoint);
}

CompletionRequest parse_completion_request(const json& body, Endpoint endpoint) {
  if (!body.is_object()) throw RequestError(400, "the request body must be a JSON object");
  CompletionRequest r;
  r.endpoint = endpoint;
  if (const json* model = field(body, "model")) {
    if (!model->is_string()) bad_field("model", "expected a string");
    r.model = model->get<std::string>();
  }
  if (endpoint == Endpoint::chat_completions) {
    r.messages = validated_messages(body);
  } else {
    const json* prompt = field(body, "prompt");
    if (!prompt) bad_field("prompt", "required");
    if (prompt->is_string()) {
      r.prompt_text = prompt->get<std::string>();
    } else if (prompt->is_array() && prompt->size() == 1 && (*prompt)[0].is_string()) {
      r.prompt_text = (*prompt)[0].get<std::string>();
    } else if (prompt->is_array() && prompt->size() == 1 && (*prompt)[0].is_array()) {
      r.prompt_ids = token_ids((*prompt)[0], "prompt");
    } else if (prompt->is_array() && (prompt->empty() || (*prompt)[0].is_number())) {
      r.prompt_ids = token_ids(*prompt, "prompt");
    } else {
      bad_field("prompt", "expected a string or an array of token ids (one prompt per request)");
    }
    if (!r.prompt_text && r.prompt_ids.empty())
      bad_field("prompt", "expected at least one token, found none");
    if (auto echo = bool_field(body, "echo"); echo && *echo) bad_field("echo", "not supported");
    if (auto n = integer_field(body, "best_of", 1, 1)) (void)n;
  }
  r.stream = bool_field(body, "stream").value_or(false);
  if (const json* options = field(body, "stream_options")) {
    if (!options->is_object()) bad_field("stream_options", "expected an object");
    if (!r.stream) bad_field("stream_options", "only allowed when 'stream' is true");
    r.include_usage = bool_field(*options, "include_usage").value_or(false);
  }
  r.return_tokens = bool_field(body, "return_tokens").value_or(false);
  r.ignore_eos = bool_field(body, "ignore_eos").value_or(false);
  if (integer_field(body, "n", 1, 1)) {
  }
  if (const json* logprobs = field(body, "logprobs");
      logprobs && !(logprobs->is_boolean() && !logprobs->get<bool>()))
    bad_field("logprobs", "not supported");

  sampling::SamplingParams& s = r.sampling;
  s.temperature = static_cast<float>(number_field(body, "temperature", 0.0, 2.0).value_or(1.0));
  s.top_p = static_cast<float>(number_field(body, "top_p", 0.0, 1.0).value_or(1.0));
  s.top_k =
      static_cast<int>(integer_field(body, "top_k", -1, std::numeric_limits<int32_t>::max()).value_or(0));
  s.min_p = static_cast<float>(number_field(body, "min_p", 0.0, 1.0).value_or(0.0));
  s.presence_penalty = static_cast<float>(number_field(body, "presence_penalty", -2.0, 2.0).value_or(0.0));
  s.frequency_penalty = static_cast<float>(number_field(body, "frequency_penalty", -2.0, 2.0).value_or(0.0));
  s.repetition_penalty = static_cast<float>(number_field(body, "repeat_penalty", 1e-6, 100.0).value_or(1.0));
  s.penalty_last_n = static_cast<int>(integer_field(body, "repeat_last_n", -1, 1 << 20).value_or(64));
  if (auto seed = integer_field(body, "seed", std::numeric_limits<int64_t>::min(),
                                std::numeric_limits<int64_t>::max()))
    s.seed = static_cast<uint64_t>(*seed);
  else
    s.seed = std::random_device{}();

  const auto max_tokens = integer_field(body, "max_tokens", 0, std::numeric_limits<int32_t>::max());
  const auto max_completion =
      integer_field(body, "max_completion_tokens", 0, std::numeric_limits<int32_t>::max());
  r.max_tokens = max_completion ? max_completion : max_tokens;

  if (const json* stop = field(body, "stop")) {
    if (stop->is_string()) {
      r.stop.push_back(stop->get<std::string>());
    } else if (stop->is_array()) {
      for (const json& s_ : *stop) {
        if (!s_.is_string())
          bad_field("stop", "expected a string or an array of strings, found " + json_excerpt(s_));
        r.stop.push_back(s_.get<std::string>());
      }
    } else {
      bad_field("stop", "expected a string or an array of strings, found " + std::string(stop->type_name()));
    }
  }
  if (const json* kwargs = field(body, "chat_template_kwargs")) {
    if (!kwargs->is_object()) bad_field("chat_template_kwargs", "expected an object");
    r.template_kwargs = *kwargs;
  }
  return r;
}

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

json completion_response(const ResponseHeader& h, Endpoint endpoint, const std::string& text,
                         const std::vector<int32_t>* tokens, const char* finish_reason, const Usage& usage) {
  json choice;
  if (endpoint == Endpoint::chat_completions) {
    choice = {{"index", 0},
              {"message", {{"role", "assistant"}, {"content", text}}},
              {"logprobs", nullptr},
              {"finish_reason", finish_reason}};
  } else {
    choice = {{"text", text}, {"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish_reason}};
  }
  if (tokens) choice["token_ids"] = *tokens;
  return {{"id", h.id},
          {"object", endpoint == Endpoint::chat_completions ? "chat.completion" : "text_completion"},
          {"created", h.created},
          {"model", h.model},
          {"system_fingerprint", "mambacpp"},
          {"choices", json::array({choice})},
          {"usage", usage_json(usage)}};
}

json stream_chunk(const ResponseHeader& h, Endpoint endpoint, const std::string& text,
                  const std::vector<int32_t>* tokens, const char* finish_reason, bool role_chunk) {
  json choice;
  const json reason = finish_reason ? json(finish_reason) : json(nullptr);
  if (endpoint == Endpoint::chat_completions) {
    json delta = json::object();
    if (role_chunk) {
      delta["role"] = "assistant";
      delta["content"] = "";
    } else if (!finish_reason || !text.empty()) {
      delta["content"] = text;
    }
    choice = {{"index", 0}, {"delta", delta}, {"logprobs", nullptr}, {"finish_reason", reason}};
  } else {
    choice = {{"text", text}, {"index", 0}, {"logprobs", nullptr}, {"finish_reason", reason}};
  }
  if (tokens) choice["token_ids"] = *tokens;
  return {{"id", h.id},
          {"object", endpoint == Endpoint::chat_completions ? "chat.completion.chunk" : "text_completion"},
          {"created", h.created},
          {"model", h.model},
          {"system_fingerprint", "mambacpp"},
          {"choices", json::array({choice})}};
}

json usage_chunk(const ResponseHeader& h, Endpoint endpoint, const Usage& usage) {
  return {{"id", h.id},
          {"object", endpoint == Endpoint::chat_completions ? "chat.completion.chunk" : "text_completion"},
          {"created", h.created},
          {"model", h.model},
          {"system_fingerprint", "mambacpp"},
          {"choices", json::array()},
          {"usage", usage_json(usage)}};
}

}  // namespace mamba::server
