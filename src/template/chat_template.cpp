// ChatTemplate: parse once, render per request (see chat_template.h).
#include "template/chat_template.h"

#include "core/error.h"
#include "core/file_util.h"
#include "core/json_guard.h"
#include "template/interp.h"
#include "template/parser.h"

namespace mamba::tmpl {

namespace {

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

template <class Json>
Value variables(const Json& messages, bool add_generation_prompt, const std::string& bos_token,
                const std::string& eos_token, const Json& extra) {
  if (!extra.is_object() && !extra.is_null())
    throw_error(ErrorCode::invalid_argument, "chat template: extra variables must be a JSON object");
  Value vars = Value::make_dict();
  vars.dict->set("messages", from_json(messages));
  vars.dict->set("tools", Value::none());
  vars.dict->set("documents", Value::none());
  vars.dict->set("add_generation_prompt", Value::boolean(add_generation_prompt));
  vars.dict->set("bos_token", Value::string(bos_token));
  vars.dict->set("eos_token", Value::string(eos_token));
  if (extra.is_object())
    for (auto it = extra.begin(); it != extra.end(); ++it) vars.dict->set(it.key(), from_json(it.value()));
  return vars;
}

std::string run(const Program& program, const std::string& name, const Value& vars) {
  try {
    return render_program(program, name, vars);
  } catch (const RaisedError& e) {
    throw Error(ErrorCode::invalid_argument, one_line(name + ": " + e.what()));
  } catch (const TemplateError& e) {
    throw Error(ErrorCode::invalid_argument, one_line(e.what()));
  }
}

}  // namespace

ChatTemplate ChatTemplate::parse(const std::string& source, const std::string& name) {
  ChatTemplate t;
  t.name_ = name;
  t.source_ = source;
  t.program_ = std::make_shared<const Program>(parse_template(source, name));
  return t;
}

std::string ChatTemplate::render(const nlohmann::json& messages, bool add_generation_prompt,
                                 const std::string& bos_token, const std::string& eos_token,
                                 const nlohmann::json& extra) const {
  return run(*program_, name_, variables(messages, add_generation_prompt, bos_token, eos_token, extra));
}

std::string ChatTemplate::render_ordered(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                         const std::string& bos_token, const std::string& eos_token,
                                         const nlohmann::ordered_json& extra) const {
  return run(*program_, name_, variables(messages, add_generation_prompt, bos_token, eos_token, extra));
}

std::optional<ChatTemplate> ChatTemplate::from_model_dir(const std::string& dir) {
  std::string config_path = path_join(dir, "tokenizer_config.json");
  if (file_exists(config_path)) {
    nlohmann::json config;
    try {
      const std::string text = read_file(config_path);
      check_json_depth(text, config_path);
      config = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      throw_error(ErrorCode::parse, config_path, ": ", e.what());
    }
    if (config.is_object() && config.contains("chat_template")) {
      const auto& t = config["chat_template"];
      std::string name = config_path + " (chat_template)";
      if (t.is_string()) return parse(t.get<std::string>(), name);
      if (t.is_array()) {
        for (const auto& entry : t)
          if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") &&
              entry["template"].is_string())
            return parse(entry["template"].get<std::string>(), name);
        throw_error(ErrorCode::parse, config_path,
                    ": chat_template is a list without a template named 'default'");
      }
      if (!t.is_null())
        throw_error(ErrorCode::parse, config_path, ": chat_template must be a string or a list");
    }
  }
  std::string jinja_path = path_join(dir, "chat_template.jinja");
  if (file_exists(jinja_path)) return parse(read_file(jinja_path), jinja_path);
  return std::nullopt;
}

ChatTemplate ChatTemplate::fallback() {
  static const char* const kSource =
      "{% for message in messages %}"
      "{{ '<|' ~ message['role'] ~ '|>\\n' }}"
      "{% if message['content'] is string %}{{ message['content'] }}"
      "{% elif message['content'] is iterable %}"
      "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% "
      "endfor %}"
      "{% endif %}"
      "{{ '\\n' }}"
      "{% endfor %}"
      "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}";
  return parse(kSource, "fallback_chat_template");
}

}  // namespace mamba::tmpl
