// Chat templates: HF's Jinja2 `chat_template` of a model, parsed once and rendered per request
// byte-for-byte as transformers' apply_chat_template renders it (Jinja2 with trim_blocks and
// lstrip_blocks, loop controls, HF's tojson/raise_exception/strftime_now). Usage:
//   auto tmpl = mamba::tmpl::ChatTemplate::from_model_dir(dir).value_or(ChatTemplate::fallback());
//   std::string prompt = tmpl.render(messages, /*add_generation_prompt=*/true, "<s>", "</s>");
// A ChatTemplate is immutable: one may be rendered from many threads at once.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace mamba::tmpl {

struct Program;

class ChatTemplate {
public:
  // Parses once. Errors throw mamba::Error(parse) with one line "<name>:<line>:<column>: <what
  // was expected>", also for unknown filters, tests and tags.
  static ChatTemplate parse(const std::string& source, const std::string& name = "chat_template");

  // Renders with the variables messages (array of {role, content, ...}), add_generation_prompt,
  // bos_token, eos_token, tools and documents (None unless given, as HF passes them), plus
  // everything in `extra` (tools, enable_thinking, date_string, ...; overrides the others).
  // Errors (raise_exception, undefined values used as values, type errors) throw
  // mamba::Error(invalid_argument) with a one-line message naming the template location.
  // Note: nlohmann::json keeps object keys sorted, so `tojson` of tool schemas lists keys
  // alphabetically; pass nlohmann::ordered_json (render_ordered) to keep the request's order.
  std::string render(const nlohmann::json& messages, bool add_generation_prompt, const std::string& bos_token,
                     const std::string& eos_token,
                     const nlohmann::json& extra = nlohmann::json::object()) const;
  std::string render_ordered(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                             const std::string& bos_token, const std::string& eos_token,
                             const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const;

  // The template of a model directory: tokenizer_config.json's "chat_template" (a string, or a
  // list of {name, template}: the one named "default"), else the file chat_template.jinja;
  // nullopt when neither exists. Throws mamba::Error for malformed files or templates.
  static std::optional<ChatTemplate> from_model_dir(const std::string& dir);

  // For models without a template: each message as "<|role|>\ncontent\n" (text parts of a
  // list content joined), then "<|assistant|>\n" when add_generation_prompt is set.
  static ChatTemplate fallback();

  const std::string& source() const { return source_; }
  const std::string& name() const { return name_; }

private:
  ChatTemplate() = default;
  std::string name_, source_;
  std::shared_ptr<const Program> program_;
};

}  // namespace mamba::tmpl
