// mambacpp public API: tokenizers (HF tokenizer.json, a GGUF's vocabulary, or one token per byte),
// the end-of-sequence ids of a model folder, and chat templates (a model's Jinja2 template,
// rendered as transformers' apply_chat_template renders it).
#pragma once
#include <mambacpp/common.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mambacpp {

class Tokenizer {
public:
  ~Tokenizer();
  std::vector<int32_t> encode(std::string_view text) const;  // no BOS / EOS added
  std::string decode(const std::vector<int32_t>& ids) const;
  std::string token_text(int32_t id) const;
  int32_t vocab_size() const;
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;

  // Ids 0..255 are the bytes (models trained with `mambacpp train --task text`).
  static std::shared_ptr<const Tokenizer> byte_level();
  static std::shared_ptr<const Tokenizer> from_file(const std::string& path);  // a tokenizer.json

  struct Impl;
  const Impl& impl() const { return *impl_; }
  explicit Tokenizer(std::unique_ptr<Impl> impl);

private:
  std::unique_ptr<Impl> impl_;
};

// `path` when given ("byte", a tokenizer.json), else MODEL_DIR/tokenizer.json or a .gguf's own
// vocabulary; null when none applies.
std::shared_ptr<const Tokenizer> load_tokenizer(const std::string& model_dir, const std::string& path = "");
// The end-of-sequence ids of a model folder (config.json, generation_config.json) and tokenizer.
std::vector<int32_t> eos_token_ids(const std::string& model_dir, const Tokenizer* tokenizer);

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

class ChatTemplate {
public:
  // The folder's template (tokenizer_config.json's chat_template, or chat_template.jinja); none:
  // nullopt. Error for a template that does not parse.
  static std::optional<ChatTemplate> from_model_dir(const std::string& dir);
  static ChatTemplate parse(const std::string& source, const std::string& name = "chat_template");
  static ChatTemplate fallback();  // a plain role format, for models without a template
  ~ChatTemplate();
  ChatTemplate(const ChatTemplate& other);
  ChatTemplate& operator=(const ChatTemplate& other);

  // The prompt text of `messages`; add_generation_prompt opens the assistant's turn.
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                     const std::string& bos_token = "", const std::string& eos_token = "") const;

  struct Impl;

private:
  explicit ChatTemplate(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mambacpp
