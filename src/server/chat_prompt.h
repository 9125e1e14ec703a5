// Chat messages -> prompt text: the model's Jinja chat template (tokenizer_config.json's
// `chat_template` or chat_template.jinja, rendered by template/chat_template.h) with its
// bos/eos token strings, or a plain fallback when the model has none.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace mamba::server {

class ChatPrompt {
public:
  explicit ChatPrompt(const std::string& model_dir);
  ~ChatPrompt();
  ChatPrompt(const ChatPrompt&) = delete;
  ChatPrompt& operator=(const ChatPrompt&) = delete;

  // Renders the conversation with add_generation_prompt. Throws mamba::Error for a template
  // error (raise_exception in the template included).
  std::string render(const nlohmann::json& messages, const nlohmann::json& extra) const;
  // Where the template came from ("tokenizer_config.json", "fallback", ...), for the startup log.
  const std::string& source() const { return source_; }

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string source_;
};

}  // namespace mamba::server
