// Chat templates rendered byte-for-byte as Jinja2 renders them (expected.json is written by
// tests/data/chat_templates/make_expected.py), error messages, and robustness to truncation.
#include "template/chat_template.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace {

using mamba::tmpl::ChatTemplate;

std::string render_simple(const std::string& source, const nlohmann::json& extra = nlohmann::json::object()) {
  nlohmann::json messages = nlohmann::json::array({{{"role", "user"}, {"content", "Hi"}}});
  return ChatTemplate::parse(source).render(messages, true, "<s>", "</s>", extra);
}

TEST(ChatTemplate, Basics) {
  EXPECT_EQ(render_simple("{% for m in messages %}[{{ m.role }}]{{ m['content'] }}{% endfor %}"), "[user]Hi");
  EXPECT_EQ(render_simple("{{ bos_token }}{% if add_generation_prompt %}A{% endif %}"), "<s>A");
}

}  // namespace
