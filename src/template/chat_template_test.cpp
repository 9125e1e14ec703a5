// Chat templates rendered byte-for-byte as Jinja2 renders them: tests/data/chat_templates/
// expected.json (written by make_expected.py with Jinja2 configured as transformers does) holds
// model and unit templates on several conversations and error cases. Also model-directory
// lookup, the fallback template, error messages and robustness to truncated templates.
#include "template/chat_template.h"

#include <gtest/gtest.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/error.h"
#include "core/file_util.h"

namespace {

using mamba::tmpl::ChatTemplate;
using ojson = nlohmann::ordered_json;

const std::string kDataDir = std::string(MAMBACPP_SOURCE_DIR) + "/tests/data/chat_templates";

const ojson& expected_file() {
  static const ojson file = ojson::parse(mamba::read_file(kDataDir + "/expected.json"));
  return file;
}

const ojson& expected_cases() {
  return expected_file()["cases"];
}

// Jinja2 rendered strftime_now on the day in "made_on"; the expected text is moved to today's
// date in the one format the templates use ("%d %b %Y"), so the comparison holds on any day.
std::string format_day(const std::tm& day) {
  char buf[64];
  return std::string(buf, std::strftime(buf, sizeof buf, "%d %b %Y", &day));
}

std::string dated_today(std::string expected) {
  std::tm made{};
  const std::string on = expected_file()["made_on"].get<std::string>();
  if (!strptime(on.c_str(), "%Y-%m-%d", &made)) ADD_FAILURE() << "expected.json: made_on \"" << on << "\"";
  const std::time_t now = std::time(nullptr);
  std::tm today{};
  localtime_r(&now, &today);
  const std::string from = format_day(made), to = format_day(today);
  for (size_t at = expected.find(from); from != to && at != std::string::npos;
       at = expected.find(from, at + to.size()))
    expected.replace(at, from.size(), to);
  return expected;
}

std::string case_source(const ojson& c) {
  if (c.contains("source")) return c["source"].get<std::string>();
  return mamba::read_file(kDataDir + "/" + c["template"].get<std::string>());
}

bool one_line(const std::string& s) {
  return !s.empty() && s.find('\n') == std::string::npos;
}

std::string render_ordered(const ChatTemplate& t, const ojson& c) {
  return t.render_ordered(c["messages"], c["add_generation_prompt"].get<bool>(), "<s>", "</s>", c["extra"]);
}

std::string render_sorted(const ChatTemplate& t, const ojson& c) {
  nlohmann::json messages = nlohmann::json::parse(c["messages"].dump());
  nlohmann::json extra = nlohmann::json::parse(c["extra"].dump());
  return t.render(messages, c["add_generation_prompt"].get<bool>(), "<s>", "</s>", extra);
}

TEST(ChatTemplate, MatchesJinja2) {
  int rendered = 0;
  for (const auto& c : expected_cases()) {
    const std::string name = c["name"].get<std::string>();
    if (c.contains("error")) continue;
    SCOPED_TRACE(name);
    ChatTemplate t = ChatTemplate::parse(case_source(c), name);
    std::string expected = c["expected"].get<std::string>();
    try {
      // (Computed again after rendering, in case the day turned in between.)
      std::string ordered = render_ordered(t, c), sorted = render_sorted(t, c);
      std::string want = dated_today(expected);
      std::string want_sorted =
          dated_today(c.contains("expected_sorted") ? c["expected_sorted"].get<std::string>() : expected);
      if (ordered != want || sorted != want_sorted) {
        ordered = render_ordered(t, c), sorted = render_sorted(t, c);
        want = dated_today(expected);
        want_sorted =
            dated_today(c.contains("expected_sorted") ? c["expected_sorted"].get<std::string>() : expected);
      }
      EXPECT_EQ(ordered, want);
      EXPECT_EQ(sorted, want_sorted);
    } catch (const mamba::Error& e) {
      ADD_FAILURE() << "threw: " << e.what();
    }
    ++rendered;
  }
  EXPECT_GE(rendered, 140);
}

TEST(ChatTemplate, ErrorsAsJinja2) {
  int errors = 0;
  for (const auto& c : expected_cases()) {
    if (!c.contains("error")) continue;
    const std::string name = c["name"].get<std::string>();
    const std::string py_error = c["error"].get<std::string>();
    SCOPED_TRACE(name + " (Jinja2: " + py_error + ")");
    const std::string source = case_source(c);
    ++errors;
    try {
      ChatTemplate t = ChatTemplate::parse(source, "chat_template");
      // Jinja2 finds unknown tests only at render time; everything else it rejects at parse
      // time is rejected here at parse time too.
      EXPECT_NE(c["error_phase"], "parse") << "parsed a template Jinja2 rejects";
      render_ordered(t, c);
      ADD_FAILURE() << "rendered without error";
    } catch (const mamba::Error& e) {
      std::string what = e.what();
      EXPECT_TRUE(one_line(what)) << what;
      EXPECT_EQ(what.rfind("chat_template:", 0), 0u) << what;
      if (source.find(py_error) != std::string::npos) {
        EXPECT_NE(what.find(py_error), std::string::npos) << what;
      }
    }
  }
  EXPECT_GE(errors, 30);
}

TEST(ChatTemplate, ParseErrorsNameLineAndColumn) {
  try {
    ChatTemplate::parse("line one\n{% if x %}\n  {{ x | nope }}\n{% endif %}", "tmpl");
    FAIL() << "no error";
  } catch (const mamba::Error& e) {
    EXPECT_EQ(e.code(), mamba::ErrorCode::parse);
    EXPECT_EQ(std::string(e.what()), "tmpl:3:10: no filter named 'nope'");
  }
  try {
    ChatTemplate::parse("{% for m in messages %}", "tmpl");
    FAIL() << "no error";
  } catch (const mamba::Error& e) {
    EXPECT_NE(std::string(e.what()).find("expected 'else' or 'endfor'"), std::string::npos) << e.what();
  }
}

TEST(ChatTemplate, RaiseExceptionMessage) {
  ChatTemplate t = ChatTemplate::parse("{{ raise_exception('Roles must alternate\\nsecond line') }}");
  try {
    t.render(nlohmann::json::array(), false, "", "");
    FAIL() << "no error";
  } catch (const mamba::Error& e) {
    EXPECT_EQ(e.code(), mamba::ErrorCode::invalid_argument);
    EXPECT_EQ(std::string(e.what()), "chat_template: Roles must alternate second line");
  }
}

// Every prefix of every template must parse or fail with mamba::Error, and render or fail the
// same way: never crash, hang or throw anything else.
TEST(ChatTemplate, TruncationsNeverCrash) {
  ojson messages = ojson::parse(R"([{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
      {"role": "assistant", "content": "a", "tool_calls": [{"id": "call12345", "function": {"name": "f", "arguments": {"x": 1}}}]},
      {"role": "tool", "tool_call_id": "call12345", "content": "r"}, {"role": "user", "content": "u2"}])");
  ojson extra = {
      {"data", {{"name", "n"}, {"letters", {"a", "b"}}, {"nums", {1, 2}}, {"users", ojson::array()}}}};
  size_t parsed = 0, rendered = 0, total = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(kDataDir)) {
    if (entry.path().extension() != ".jinja") continue;
    std::string source = mamba::read_file(entry.path().string());
    for (size_t n = 0; n <= source.size(); ++n) {
      ++total;
      try {
        ChatTemplate t = ChatTemplate::parse(source.substr(0, n));
        ++parsed;
        t.render_ordered(messages, n % 2 == 0, "<s>", "</s>", extra);
        ++rendered;
      } catch (const mamba::Error& e) {
        EXPECT_TRUE(one_line(e.what())) << e.what();
      }
    }
  }
  EXPECT_GT(total, 10000u);
  EXPECT_GT(parsed, 100u);
  EXPECT_GT(rendered, 50u);
}

TEST(ChatTemplate, Fallback) {
  nlohmann::json messages = nlohmann::json::parse(R"([{"role": "system", "content": "Be nice."},
      {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image"}, {"type": "text", "text": "!"}]}])");
  ChatTemplate t = ChatTemplate::fallback();
  EXPECT_EQ(t.render(messages, true, "<s>", "</s>"), "<|system|>\nBe nice.\n<|user|>\nHi!\n<|assistant|>\n");
  EXPECT_EQ(t.render(messages, false, "<s>", "</s>"), "<|system|>\nBe nice.\n<|user|>\nHi!\n");
}

TEST(ChatTemplate, StrftimeNow) {
  ChatTemplate t = ChatTemplate::parse("{{ strftime_now('%Y-%m-%d') }}|{{ strftime_now is defined }}");
  std::string out = t.render(nlohmann::json::array(), false, "", "");
  std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d", &local);
  EXPECT_EQ(out, std::string(buf) + "|True");
}

TEST(ChatTemplate, ExtraOverridesDefaults) {
  ChatTemplate t = ChatTemplate::parse(
      "{{ tools is none }} {{ documents is none }} {{ tools | length if tools }} {{ custom }}");
  EXPECT_EQ(t.render(nlohmann::json::array(), false, "", ""), "True True  ");
  EXPECT_EQ(t.render(nlohmann::json::array(), false, "", "", {{"tools", {1, 2}}, {"custom", "x"}}),
            "False True 2 x");
}

TEST(ChatTemplate, ConcurrentRenders) {
  ChatTemplate t = ChatTemplate::parse(mamba::read_file(kDataDir + "/chatml_qwen_tools.jinja"));
  nlohmann::json messages = nlohmann::json::parse(R"([{"role": "user", "content": "hi"}])");
  const std::string expected = t.render(messages, true, "", "");
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int k = 0; k < 4; ++k)
    threads.emplace_back([&, k] {
      for (int r = 0; r < 200; ++r) ok[k] += t.render(messages, true, "", "") == expected;
    });
  for (auto& th : threads) th.join();
  for (int k = 0; k < 4; ++k) EXPECT_EQ(ok[k], 200);
}

class ModelDir : public ::testing::Test {
protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("mambacpp_tmpl_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void write(const std::string& name, const std::string& text) { std::ofstream(dir_ / name) << text; }
  std::filesystem::path dir_;
};

TEST_F(ModelDir, NoneWhenNoTemplate) {
  EXPECT_FALSE(ChatTemplate::from_model_dir(dir_.string()).has_value());
  write("tokenizer_config.json", R"({"bos_token": "<s>"})");
  EXPECT_FALSE(ChatTemplate::from_model_dir(dir_.string()).has_value());
}

TEST_F(ModelDir, TokenizerConfigString) {
  write("tokenizer_config.json", R"({"chat_template": "{% for m in messages %}[{{ m.role }}]{% endfor %}"})");
  write("chat_template.jinja", "ignored");
  auto t = ChatTemplate::from_model_dir(dir_.string());
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->render(nlohmann::json::parse(R"([{"role": "user", "content": "x"}])"), false, "", ""),
            "[user]");
}

TEST_F(ModelDir, TokenizerConfigListTakesDefault) {
  write(
      "tokenizer_config.json",
      R"({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]})");
  auto t = ChatTemplate::from_model_dir(dir_.string());
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->render(nlohmann::json::array(), false, "", ""), "D");
}

TEST_F(ModelDir, JinjaFile) {
  write("tokenizer_config.json", R"({"eos_token": "</s>"})");
  write("chat_template.jinja", "{{ bos_token }}{{ messages | length }}\n");
  auto t = ChatTemplate::from_model_dir(dir_.string());
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->render(nlohmann::json::array({1, 2}), false, "<s>", ""), "<s>2");
}

TEST_F(ModelDir, MalformedConfigNamesTheFile) {
  write("tokenizer_config.json", "{not json");
  try {
    ChatTemplate::from_model_dir(dir_.string());
    FAIL() << "no error";
  } catch (const mamba::Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer_config.json"), std::string::npos) << e.what();
  }
}

}  // namespace
