// The public ChatTemplate (tokenizer.h) over template/chat_template.
#include "template/chat_template.h"

#include <nlohmann/json.hpp>
#include <utility>

#include "internal.h"

namespace mambacpp {

struct ChatTemplate::Impl {
  mamba::tmpl::ChatTemplate tmpl;
};

ChatTemplate::ChatTemplate(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(const ChatTemplate& other) : impl_(std::make_unique<Impl>(*other.impl_)) {}
ChatTemplate& ChatTemplate::operator=(const ChatTemplate& other) {
  *impl_ = *other.impl_;
  return *this;
}
std::optional<ChatTemplate> ChatTemplate::from_model_dir(const std::string& dir) {
  return guard([&]() -> std::optional<ChatTemplate> {
    std::optional<mamba::tmpl::ChatTemplate> t = mamba::tmpl::ChatTemplate::from_model_dir(dir);
    if (!t) return std::nullopt;
    return ChatTemplate(std::make_unique<Impl>(Impl{std::move(*t)}));
  });
}
ChatTemplate ChatTemplate::parse(const std::string& source, const std::string& name) {
  return guard([&] {
    return ChatTemplate(std::make_unique<Impl>(Impl{mamba::tmpl::ChatTemplate::parse(source, name)}));
  });
}
ChatTemplate ChatTemplate::fallback() {
  return ChatTemplate(std::make_unique<Impl>(Impl{mamba::tmpl::ChatTemplate::fallback()}));
}
std::string ChatTemplate::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                 const std::string& bos_token, const std::string& eos_token) const {
  nlohmann::json list = nlohmann::json::array();
  for (const ChatMessage& m : messages) list.push_back({{"role", m.role}, {"content", m.content}});
  return guard([&] { return impl_->tmpl.render(list, add_generation_prompt, bos_token, eos_token); });
}

}  // namespace mambacpp
