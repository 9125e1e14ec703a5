// Chat prompt rendering (see chat_prompt.h).
#include "server/chat_prompt.h"

#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "core/error.h"
#include "core/json_guard.h"
#include "io/gguf.h"
#include "runtime/gguf_tokenizer.h"

#if MAMBACPP_HAVE_CHAT_TEMPLATE
#include "template/chat_template.h"
#endif

namespace mamba::server {
namespace {

// bos_token / eos_token of tokenizer_config.json: a string or {"content": ...}.
std::string special_token(const nlohmann::json& config, const char* name) {
  auto it = config.find(name);
  if (it == config.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return (*it)["content"].get<std::string>();
  return "";
}

nlohmann::json tokenizer_config(const std::string& dir) {
  std::ifstream in(std::filesystem::path(dir) / "tokenizer_config.json");
  if (!in) return nlohmann::json::object();
  std::ostringstream text;
  text << in.rdbuf();
  check_json_depth(text.str(), (std::filesystem::path(dir) / "tokenizer_config.json").string());
  nlohmann::json config = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  return config.is_object() ? config : nlohmann::json::object();
}

}  // namespace

struct ChatPrompt::Impl {
  std::string bos, eos;
#if MAMBACPP_HAVE_CHAT_TEMPLATE
  std::optional<tmpl::ChatTemplate> chat_template;
#endif
};

ChatPrompt::ChatPrompt(const std::string& model_dir) : impl_(std::make_unique<Impl>()) {
  const nlohmann::json config = tokenizer_config(model_dir);
  impl_->bos = special_token(config, "bos_token");
  impl_->eos = special_token(config, "eos_token");
#if MAMBACPP_HAVE_CHAT_TEMPLATE
  if (model_dir.ends_with(".gguf")) {  // a GGUF carries its template and special tokens itself
    const io::GgufFile g = io::GgufFile::open(model_dir);
    const runtime::GgufVocabInfo info = runtime::gguf_vocab_info(g);
    if (!info.chat_template.empty())
      impl_->chat_template =
          tmpl::ChatTemplate::parse(info.chat_template, model_dir + " (tokenizer.chat_template)");
    if (auto text = runtime::gguf_tokenizer_json(g)) {
      const auto tok = tok::Tokenizer::from_json_text(*text, model_dir);
      if (info.bos) impl_->bos = tok->token_text(*info.bos);
      if (info.eos) impl_->eos = tok->token_text(*info.eos);
    }
  } else {
    impl_->chat_template = tmpl::ChatTemplate::from_model_dir(model_dir);
  }
  source_ = impl_->chat_template ? "model" : "fallback";
  if (!impl_->chat_template) impl_->chat_template = tmpl::ChatTemplate::fallback();
#else
  source_ = "built-in fallback (no template engine in this build)";
#endif
}

ChatPrompt::~ChatPrompt() = default;

std::string ChatPrompt::render(const nlohmann::json& messages, const nlohmann::json& extra) const {
#if MAMBACPP_HAVE_CHAT_TEMPLATE
  return impl_->chat_template->render(messages, /*add_generation_prompt=*/true, impl_->bos, impl_->eos,
                                      extra);
#else
  (void)extra;
  std::string text = impl_->bos;
  for (const auto& m : messages)
    text +=
        "<|" + m["role"].get<std::string>() + "|>\n" + m["content"].get<std::string>() + impl_->eos + "\n";
  return text + "<|assistant|>\n";
#endif
}

}  // namespace mamba::server
