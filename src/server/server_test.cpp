// The server end to end on 127.0.0.1: each endpoint, SSE framing, errors and auth; 32 concurrent
// greedy streams each equal to Session::generate alone; cache hits equal to misses, on a pure-SSM
// fixture (stacked batch decode) and on the hybrid one (attention KV, per-slot decode). The
// fixture models have no tokenizer.json: text goes through a ByteTokenizer (ids 0..255 fit their
// 300-entry vocabularies), token ids through `prompt: [ids]` and the `return_tokens` extension.
#include "server/server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "core/file_util.h"
#include "models/config.h"
#include "runtime/model_files.h"
#include "runtime/session.h"
#include "testing.h"

namespace mamba::server {
namespace {

using json = nlohmann::json;

// A server on an ephemeral port, run on its own thread, its log lines kept.
class TestServer {
public:
  TestServer(const models::Model& model, std::shared_ptr<const tok::Tokenizer> tokenizer,
             ServerOptions options) {
    options.host = "127.0.0.1";
    options.port = 0;
    options.log = [this](const std::string& line) {
      std::lock_guard lock(mutex_);
      log_.push_back(line);
    };
    server_ = std::make_unique<Server>(model, std::move(tokenizer), std::move(options));
    port_ = server_->bind();
    thread_ = std::thread([this] { server_->run(); });
  }
  ~TestServer() { stop(); }
  void stop() {
    if (!thread_.joinable()) return;
    server_->shutdown();
    thread_.join();
  }
  int port() const { return port_; }
  Server& server() { return *server_; }
  std::vector<std::string> log() {
    std::lock_guard lock(mutex_);
    return log_;
  }
  std::unique_ptr<httplib::Client> client(const std::string& api_key = "") const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
    c->set_read_timeout(60, 0);
    if (!api_key.empty()) c->set_bearer_token_auth(api_key.c_str());
    return c;
  }

private:
  std::unique_ptr<Server> server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mutex_;
  std::vector<std::string> log_;
};

// The events of a server-sent-event body: the payload of each "data: " line; every event must
// be one data line followed by a blank line.
std::vector<std::string> sse_events(const std::string& body) {
  std::vector<std::string> events;
  size_t at = 0;
  while (at < body.size()) {
    const size_t end = body.find("\n\n", at);
    EXPECT_NE(end, std::string::npos) << "unterminated event at byte " << at;
    if (end == std::string::npos) break;
    const std::string event = body.substr(at, end - at);
    EXPECT_EQ(event.rfind("data: ", 0), 0u) << event;
    EXPECT_EQ(event.find('\n'), std::string::npos) << event;
    events.push_back(event.substr(6));
    at = end + 2;
  }
  return events;
}

struct Completion {
  std::vector<int32_t> tokens;
  std::string text, finish_reason;
  int64_t cached = -1, prompt_tokens = -1, completion_tokens = -1;
};

// Reads a non-streaming response or a stream's chunks into one Completion.
Completion completion_of(const httplib::Result& res, bool stream) {
  Completion c;
  EXPECT_TRUE(res) << httplib::to_string(res.error());
  if (!res) return c;
  EXPECT_EQ(res->status, 200) << res->body;
  if (!stream) {
    const json body = json::parse(res->body);
    const json& choice = body["choices"][0];
    c.text = choice.contains("message") ? choice["message"]["content"].get<std::string>()
                                        : choice["text"].get<std::string>();
    if (choice.contains("token_ids")) c.tokens = choice["token_ids"].get<std::vector<int32_t>>();
    c.finish_reason = choice["finish_reason"].get<std::string>();
    c.prompt_tokens = body["usage"]["prompt_tokens"];
    c.completion_tokens = body["usage"]["completion_tokens"];
    c.cached = body["usage"]["prompt_tokens_details"]["cached_tokens"];
    return c;
  }
  const std::vector<std::string> events = sse_events(res->body);
  EXPECT_FALSE(events.empty());
  if (events.empty()) return c;
  EXPECT_EQ(events.back(), "[DONE]");
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    const json chunk = json::parse(events[i]);
    if (chunk.contains("usage")) {
      c.prompt_tokens = chunk["usage"]["prompt_tokens"];
      c.completion_tokens = chunk["usage"]["completion_tokens"];
      c.cached = chunk["usage"]["prompt_tokens_details"]["cached_tokens"];
      continue;
    }
    const json& choice = chunk["choices"][0];
    if (choice.contains("delta")) {
      if (choice["delta"].contains("content")) c.text += choice["delta"]["content"].get<std::string>();
    } else {
      c.text += choice["text"].get<std::string>();
    }
    if (choice.contains("token_ids"))
      for (int32_t t : choice["token_ids"].get<std::vector<int32_t>>()) c.tokens.push_back(t);
    if (!choice["finish_reason"].is_null()) c.finish_reason = choice["finish_reason"];
  }
  return c;
}

std::vector<int32_t> random_prompt(std::mt19937& rng, int n) {
  std::uniform_int_distribution<int32_t> id(3, 255);
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (int32_t& t : p) t = id(rng);
  return p;
}

httplib::Result post(httplib::Client& client, const std::string& path, const json& body) {
  return client.Post(path, body.dump(), "application/json");
}

class ServerTest : public ::testing::Test {
protected:
  void SetUp() override {
    auto root = testing::fixtures_dir();
    if (!root) GTEST_SKIP() << "fixtures not found: set MAMBACPP_FIXTURES or provide ../shared/fixtures";
    dir_ = path_join(*root, "hf-mamba2");
    model_ = std::make_unique<models::Model>(models::Model::load(dir_));
    tokenizer_ = std::make_shared<tok::ByteTokenizer>();
  }

  ServerOptions options(int parallel = 4) const {
    ServerOptions o;
    o.model_dir = dir_;
    o.model_name = "test-model";
    o.parallel = parallel;
    o.prefill_chunk = 16;
    o.cache_every = 32;
    return o;
  }

  // What Session::generate alone gives: greedy, the server's default eos ids.
  std::vector<int32_t> reference(const models::Model& model, const std::string& dir,
                                 const std::vector<int32_t>& prompt, int64_t max_tokens) const {
    runtime::Session session(model, {.prefill_chunk = 16});
    sampling::Sampler sampler({.temperature = 0.0f}, static_cast<int32_t>(model.config().vocab_size));
    runtime::GenerateParams params{.max_tokens = max_tokens};
    params.stop.eos_ids = runtime::eos_token_ids(dir, tokenizer_.get());
    return session.generate(prompt, params, sampler).tokens;
  }

  std::string dir_;
  std::unique_ptr<models::Model> model_;
  std::shared_ptr<const tok::Tokenizer> tokenizer_;
};

TEST_F(ServerTest, HealthModelsMetrics) {
  TestServer server(*model_, tokenizer_, options());
  auto client = server.client();
  auto health = client->Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(json::parse(health->body)["status"], "ok");
  auto models = client->Get("/v1/models");
  ASSERT_TRUE(models);
  const json list = json::parse(models->body);
  EXPECT_EQ(list["object"], "list");
  EXPECT_EQ(list["data"][0]["id"], "test-model");
  EXPECT_EQ(list["data"][0]["object"], "model");
  ASSERT_TRUE(
      post(*client, "/v1/completions", {{"prompt", {5, 6, 7}}, {"max_tokens", 3}, {"temperature", 0}}));
  auto metrics = client->Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  for (const char* line : {"mambacpp_requests_total{endpoint=\"completions\"} 1", "mambacpp_queue_depth 0",
                           "mambacpp_active_slots 0", "mambacpp_cache_misses_total 1",
                           "mambacpp_time_to_first_token_seconds_count 1",
                           "mambacpp_inter_token_seconds_bucket{le=\"+Inf\"}", "mambacpp_cache_bytes "})
    EXPECT_NE(metrics->body.find(line), std::string::npos) << line << "\n" << metrics->body;
  // One log line per request: id, tokens in/out, cached, TTFT, tokens/s.
  bool logged = false;
  for (const std::string& line : server.log())
    logged |= line.find("cmpl-") == 0 && line.find("prompt 3 tokens (cached 0)") != std::string::npos &&
              line.find("ttft") != std::string::npos && line.find("tok/s") != std::string::npos;
  EXPECT_TRUE(logged);
}

TEST_F(ServerTest, CompletionTextStreamAndNot) {
  TestServer server(*model_, tokenizer_, options());
  auto client = server.client();
  const json request = {{"model", "test-model"},
                        {"prompt", "Hello, Mamba"},
                        {"max_tokens", 12},
                        {"temperature", 0},
                        {"return_tokens", true}};
  const Completion whole = completion_of(post(*client, "/v1/completions", request), false);
  json streaming = request;
  streaming["stream"] = true;
  streaming["stream_options"] = {{"include_usage", true}};
  const Completion streamed = completion_of(post(*client, "/v1/completions", streaming), true);
  EXPECT_EQ(streamed.tokens, whole.tokens);
  EXPECT_EQ(streamed.text, whole.text);
  EXPECT_EQ(streamed.finish_reason, whole.finish_reason);
  EXPECT_EQ(whole.prompt_tokens, 12);
  EXPECT_EQ(streamed.completion_tokens, static_cast<int64_t>(whole.tokens.size()));
  EXPECT_EQ(streamed.cached, 12);  // the same prompt again: resumed from the cache
  // The same text as Session::generate with the tokenizer.
  runtime::Session session(*model_);
  sampling::Sampler sampler({.temperature = 0.0f}, static_cast<int32_t>(model_->config().vocab_size));
  runtime::GenerateParams params{.max_tokens = 12};
  params.stop.eos_ids = runtime::eos_token_ids(dir_, tokenizer_.get());
  const auto ref = session.generate(tokenizer_->encode("Hello, Mamba"), params, sampler, tokenizer_.get());
  EXPECT_EQ(whole.tokens, ref.tokens);
  EXPECT_EQ(whole.text, ref.text);
  EXPECT_EQ(whole.finish_reason, ref.reason == runtime::StopReason::length ? "length" : "stop");
}

TEST_F(ServerTest, StopStringEndsWithStop) {
  TestServer server(*model_, tokenizer_, options());
  auto client = server.client();
  const json request = {{"prompt", "abc"}, {"max_tokens", 24}, {"temperature", 0}, {"ignore_eos", true}};
  const Completion free = completion_of(post(*client, "/v1/completions", request), false);
  // The stop string: the text's second UTF-8 character.
  auto char_end = [&](size_t at) {
    do ++at;
    while (at < free.text.size() && (static_cast<unsigned char>(free.text[at]) & 0xC0) == 0x80);
    return at;
  };
  const size_t second = char_end(0);
  ASSERT_LT(second, free.text.size()) << free.text;
  const std::string stop = free.text.substr(second, char_end(second) - second);
  json stopping = request;
  stopping["stop"] = {stop, "never-generated"};
  const Completion stopped = completion_of(post(*client, "/v1/completions", stopping), false);
  EXPECT_EQ(stopped.finish_reason, "stop");
  EXPECT_EQ(stopped.text, free.text.substr(0, free.text.find(stop)));
}

TEST_F(ServerTest, ChatStreamFraming) {
  TestServer server(*model_, tokenizer_, options());
  auto client = server.client();
  const json request = {
      {"model", "test-model"},
      {"messages", {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hi"}}}},
      {"max_completion_tokens", 6},
      {"temperature", 0},
      {"stream", true},
      {"stream_options", {{"include_usage", true}}}};
  auto res = post(*client, "/v1/chat/completions", request);
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/event-stream");
  const std::vector<std::string> events = sse_events(res->body);
  ASSERT_GE(events.size(), 4u);
  const json first = json::parse(events[0]);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  const std::string id = first["id"];
  EXPECT_EQ(id.rfind("chatcmpl-", 0), 0u);
  const json usage = json::parse(events[events.size() - 2]);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_GT(usage["usage"]["prompt_tokens"].get<int>(), 0);
  const json last = json::parse(events[events.size() - 3]);
  EXPECT_FALSE(last["choices"][0]["finish_reason"].is_null());
  for (size_t i = 0; i + 1 < events.size(); ++i) EXPECT_EQ(json::parse(events[i])["id"], id);
  EXPECT_EQ(events.back(), "[DONE]");
  // Non-streaming: the same content.
  json plain = request;
  plain.erase("stream");
  plain.erase("stream_options");
  auto whole = post(*client, "/v1/chat/completions", plain);
  ASSERT_TRUE(whole);
  const json body = json::parse(whole->body);
  EXPECT_EQ(body["object"], "chat.completion");
  EXPECT_EQ(body["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(body["choices"][0]["message"]["content"], completion_of(res, true).text);
}

// The model's own chat template (tokenizer_config.json) renders the prompt: a copy of the fixture
// folder with a template whose output length is known.
TEST_F(ServerTest, ChatUsesTheModelsTemplate) {
#if !MAMBACPP_HAVE_CHAT_TEMPLATE
  GTEST_SKIP() << "built without the chat-template engine (MAMBACPP_SERVER_CHAT_TEMPLATE=OFF)";
#endif
  const std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) / "serve-chat-model";
  std::filesystem::create_directories(dir);
  for (const char* file : {"config.json", "model.safetensors", "generation_config.json"})
    std::filesystem::copy_file(path_join(dir_, file), dir / file,
                               std::filesystem::copy_options::overwrite_existing);
  const json config = {
      {"bos_token", "<s>"},
      {"eos_token", {{"content", "</s>"}}},
      {"chat_template",
       "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] | trim }}{{ eos_token }}"
       "{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}"}};
  std::ofstream(dir / "tokenizer_config.json") << config.dump();
  ServerOptions o = options();
  o.model_dir = dir.string();
  TestServer server(*model_, tokenizer_, o);
  const json request = {{"messages", {{{"role", "user"}, {"content", "  Hi there "}}}}, {"max_tokens", 2}};
  const Completion c = completion_of(post(*server.client(), "/v1/chat/completions", request), false);
  const std::string rendered = "<s>[user] Hi there</s>[assistant] ";
  EXPECT_EQ(c.prompt_tokens, static_cast<int64_t>(tokenizer_->encode(rendered).size()));
}

TEST_F(ServerTest, ErrorsHaveOpenAiBodies) {
  ServerOptions o = options();
  o.ctx_size = 64;
  o.max_body_bytes = 4096;
  TestServer server(*model_, tokenizer_, o);
  auto client = server.client();
  auto expect_error = [&](const httplib::Result& res, int status, const std::string& param = "",
                          const std::string& code = "") {
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, status) << res->body;
    const json body = json::parse(res->body, nullptr, false);
    ASSERT_FALSE(body.is_discarded()) << res->body;
    ASSERT_TRUE(body.contains("error")) << res->body;
    EXPECT_TRUE(body["error"]["message"].is_string());
    EXPECT_TRUE(body["error"]["type"].is_string());
    if (!param.empty()) {
      EXPECT_EQ(body["error"]["param"], param) << res->body;
    }
    if (!code.empty()) {
      EXPECT_EQ(body["error"]["code"], code) << res->body;
    }
  };
  expect_error(client->Post("/v1/completions", "{\"prompt\": [1, 2", "application/json"), 400);
  expect_error(post(*client, "/v1/completions", {{"prompt", "x"}, {"temperature", "hot"}}), 400,
               "temperature");
  expect_error(post(*client, "/v1/completions", {{"prompt", "x"}, {"max_tokens", -1}}), 400, "max_tokens");
  expect_error(post(*client, "/v1/completions", {{"prompt", "x"}, {"stop", {1, 2}}}), 400, "stop");
  expect_error(post(*client, "/v1/completions", {{"prompt", "x"}, {"stream", "yes"}}), 400, "stream");
  expect_error(post(*client, "/v1/completions", {{"prompt", {1, 100000}}}), 400, "prompt");
  expect_error(post(*client, "/v1/completions", {{"max_tokens", 1}}), 400, "prompt");
  expect_error(post(*client, "/v1/completions", json::array({1, 2})), 400);
  expect_error(post(*client, "/v1/completions", {{"model", "gpt-4"}, {"prompt", "x"}}), 404, "model",
               "model_not_found");
  expect_error(post(*client, "/v1/chat/completions", {{"messages", json::array()}}), 400, "messages");
  expect_error(post(*client, "/v1/chat/completions", {{"messages", {{{"content", "no role"}}}}}), 400);
  expect_error(post(*client, "/v1/completions", {{"prompt", std::vector<int>(65, 7)}}), 400, "prompt",
               "context_length_exceeded");
  expect_error(post(*client, "/v1/completions", {{"prompt", std::string(5000, 'a')}}), 413);
  expect_error(client->Get("/v1/nothing"), 404);
  // Still serving.
  const Completion ok =
      completion_of(post(*client, "/v1/completions", {{"prompt", {1, 2, 3}}, {"max_tokens", 2}}), false);
  EXPECT_EQ(ok.completion_tokens,
            static_cast<int64_t>(ok.finish_reason == "length" ? 2 : ok.completion_tokens));
  // A prompt of 60 tokens leaves 4 for the completion: finish_reason length at 4.
  const Completion capped = completion_of(post(*client, "/v1/completions",
                                               {{"prompt", std::vector<int>(60, 7)},
                                                {"max_tokens", 50},
                                                {"ignore_eos", true},
                                                {"return_tokens", true}}),
                                          false);
  EXPECT_EQ(capped.tokens.size(), 4u);
  EXPECT_EQ(capped.finish_reason, "length");
}

TEST_F(ServerTest, ApiKey) {
  ServerOptions o = options();
  o.api_key = "sekret";
  TestServer server(*model_, tokenizer_, o);
  const json request = {{"prompt", {1, 2}}, {"max_tokens", 1}};
  auto anonymous = server.client();
  auto res = post(*anonymous, "/v1/completions", request);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401);
  EXPECT_EQ(json::parse(res->body)["error"]["code"], "invalid_api_key");
  EXPECT_EQ(anonymous->Get("/v1/models")->status, 401);
  EXPECT_EQ(anonymous->Get("/health")->status, 200);
  EXPECT_EQ(post(*server.client("wrong"), "/v1/completions", request)->status, 401);
  EXPECT_EQ(post(*server.client("sekret"), "/v1/completions", request)->status, 200);
}

TEST_F(ServerTest, QueueFullIs429AndDisconnectFreesTheSlot) {
  ServerOptions o = options(/*parallel=*/1);
  o.max_queue = 0;
  TestServer server(*model_, tokenizer_, o);
  // A long stream the client abandons after its first chunk.
  std::atomic<bool> got_first{false};
  std::thread streamer([&] {
    auto client = server.client();
    const json body = {
        {"prompt", {1, 2, 3}}, {"max_tokens", 1000000}, {"ignore_eos", true}, {"stream", true}};
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.body = body.dump();
    req.set_header("Content-Type", "application/json");
    req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) {
      got_first = true;
      return false;  // hang up
    };
    client->send(req);
  });
  while (!got_first) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  auto client = server.client();
  auto busy = post(*client, "/v1/completions", {{"prompt", {1, 2}}, {"max_tokens", 1}});
  streamer.join();
  ASSERT_TRUE(busy);
  // Either the stream still held the slot (429), or it was already freed.
  if (busy->status == 429) {
    EXPECT_EQ(json::parse(busy->body)["error"]["code"], "rate_limit_exceeded");
  } else {
    EXPECT_EQ(busy->status, 200);
  }
  // The abandoned stream leaves at the next step: the slot serves again.
  for (int i = 0; i < 200; ++i) {
    auto res = post(*client, "/v1/completions", {{"prompt", {1, 2}}, {"max_tokens", 1}});
    ASSERT_TRUE(res);
    if (res->status == 200) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(server.server().metrics().requests_cancelled.load(), 1u);
  EXPECT_NE(client->Get("/metrics")->body.find("mambacpp_active_slots 0"), std::string::npos);
}

// 32 concurrent greedy requests (half streaming) over 8 slots, each equal to Session::generate
// alone: on a pure-SSM model (stacked decode) and on the hybrid (attention: per-slot decode).
void expect_concurrent_equal_generate(
    const std::function<TestServer*()>& make, const models::Model& model,
    const std::function<std::vector<int32_t>(const std::vector<int32_t>&, int64_t)>& reference) {
  std::unique_ptr<TestServer> server(make());
  constexpr int kStreams = 32;
  std::mt19937 rng(7);
  std::vector<std::vector<int32_t>> prompts;
  std::vector<int64_t> lengths;
  for (int i = 0; i < kStreams; ++i) {
    prompts.push_back(random_prompt(rng, 1 + static_cast<int>(rng() % 70)));
    lengths.push_back(4 + static_cast<int64_t>(rng() % 24));
  }
  std::vector<std::future<Completion>> results;
  for (int i = 0; i < kStreams; ++i)
    results.push_back(std::async(std::launch::async, [&, i] {
      auto client = server->client();
      const bool stream = i % 2 == 0;
      json body = {
          {"prompt", prompts[i]}, {"max_tokens", lengths[i]}, {"temperature", 0}, {"return_tokens", true}};
      if (stream) body["stream"] = true;
      return completion_of(post(*client, "/v1/completions", body), stream);
    }));
  for (int i = 0; i < kStreams; ++i) {
    const Completion c = results[i].get();
    EXPECT_EQ(c.tokens, reference(prompts[i], lengths[i])) << (i % 2 == 0 ? "stream " : "request ") << i;
  }
  (void)model;
}

TEST_F(ServerTest, ConcurrentGreedyStreamsEqualGenerate) {
  for (const char* name : {"hf-mamba2", "ssm-hybrid"}) {
    SCOPED_TRACE(name);
    const std::string dir = path_join(*testing::fixtures_dir(), name);
    const models::Model model = models::Model::load(dir);
    ServerOptions o = options(8);
    o.model_dir = dir;
    expect_concurrent_equal_generate(
        [&] { return new TestServer(model, tokenizer_, o); }, model,
        [&](const std::vector<int32_t>& p, int64_t n) { return reference(model, dir, p, n); });
  }
}

// Cache hits give the tokens of misses: the same prompt again, a follow-up turn that extends
// prompt + reply, a prompt sharing only a snapshot taken inside a long prompt; and with the
// cache off.
TEST_F(ServerTest, CacheHitEqualsMiss) {
  for (const char* name : {"hf-mamba2", "ssm-hybrid"}) {
    SCOPED_TRACE(name);
    const std::string dir = path_join(*testing::fixtures_dir(), name);
    const models::Model model = models::Model::load(dir);
    for (int64_t cache_mib : {int64_t(64), int64_t(0)}) {
      ServerOptions o = options(2);
      o.model_dir = dir;
      o.cache_mib = cache_mib;
      TestServer server(model, tokenizer_, o);
      auto client = server.client();
      auto ask = [&](const std::vector<int32_t>& prompt) {
        const json body = {{"prompt", prompt},
                           {"max_tokens", 10},
                           {"temperature", 0},
                           {"return_tokens", true},
                           {"ignore_eos", true}};
        return completion_of(post(*client, "/v1/completions", body), false);
      };
      auto expected = [&](const std::vector<int32_t>& prompt) {
        runtime::Session session(model, {.prefill_chunk = 16});
        sampling::Sampler sampler({.temperature = 0.0f}, static_cast<int32_t>(model.config().vocab_size));
        return session.generate(prompt, {.max_tokens = 10}, sampler).tokens;
      };
      std::mt19937 rng(3);
      const std::vector<int32_t> prompt = random_prompt(rng, 40);
      const Completion first = ask(prompt);
      EXPECT_EQ(first.cached, 0);
      EXPECT_EQ(first.tokens, expected(prompt));
      const Completion again = ask(prompt);
      EXPECT_EQ(again.cached, cache_mib > 0 ? 40 : 0);
      EXPECT_EQ(again.tokens, first.tokens);
      // The next turn: prompt + reply + new tokens resumes after the reply.
      std::vector<int32_t> turn2 = prompt;
      turn2.insert(turn2.end(), first.tokens.begin(), first.tokens.end());
      const std::vector<int32_t> more = random_prompt(rng, 9);
      turn2.insert(turn2.end(), more.begin(), more.end());
      const Completion second = ask(turn2);
      EXPECT_EQ(second.cached, cache_mib > 0 ? 50 : 0);
      EXPECT_EQ(second.tokens, expected(turn2));
      // A long prompt is snapshotted every 32 tokens: a prompt sharing its first 70 resumes at 64.
      const std::vector<int32_t> long_prompt = random_prompt(rng, 100);
      EXPECT_EQ(ask(long_prompt).tokens, expected(long_prompt));
      std::vector<int32_t> branch(long_prompt.begin(), long_prompt.begin() + 70);
      branch.push_back(7);
      const Completion branched = ask(branch);
      EXPECT_EQ(branched.cached, cache_mib > 0 ? 64 : 0);
      EXPECT_EQ(branched.tokens, expected(branch));
    }
  }
}

TEST_F(ServerTest, ShutdownFinishesInFlightStreams) {
  TestServer server(*model_, tokenizer_, options());
  std::future<Completion> stream = std::async(std::launch::async, [&] {
    auto client = server.client();
    const json body = {{"prompt", {1, 2, 3}},
                       {"max_tokens", 300},
                       {"ignore_eos", true},
                       {"stream", true},
                       {"return_tokens", true}};
    return completion_of(post(*client, "/v1/completions", body), true);
  });
  while (server.server().metrics().requests_completions.load() == 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  server.stop();  // returns once run() has: the stream was finished first
  const Completion c = stream.get();
  EXPECT_EQ(c.tokens.size(), 300u);
  EXPECT_EQ(c.finish_reason, "length");
  EXPECT_FALSE(server.client()->Get("/health"));  // no longer listening
}

// A real client: the official `openai` npm package under Node streams a chat completion. Needs a
// model whose vocabulary covers a real tokenizer: random Mamba-2 weights sized for the
// GPT-2-style fixture tokenizer.
TEST_F(ServerTest, OpenAiNodeClient) {
  if (testing::run_cli("node", "--version").status != 0)
    GTEST_SKIP() << "node not found: the openai client test needs Node";
  if (testing::run_cli("node", "-e \"require.resolve('openai')\"").status != 0)
    GTEST_SKIP() << "the npm package 'openai' is not installed (npm install openai, or set NODE_PATH)";
  const std::string tokenizer_file =
      path_join(*testing::fixtures_dir(), "tokenizers/bpe-gpt2-style/tokenizer.json");
  std::shared_ptr<const tok::Tokenizer> tokenizer = tok::Tokenizer::from_file(tokenizer_file);
  const json config = {
      {"d_model", 64},
      {"n_layer", 2},
      {"vocab_size", tokenizer->vocab_size()},
      {"ssm_cfg", {{"layer", "Mamba2"}, {"d_state", 16}, {"headdim", 16}, {"chunk_size", 16}}}};
  const models::Model model = models::Model::random(models::parse_model_config(config, "test config"), 1);
  ServerOptions o = options();
  o.model_name = "node-model";
  o.api_key = "node-key";
  TestServer server(model, tokenizer, o);
  const testing::CliResult r =
      testing::run_cli("node", std::string(MAMBACPP_SERVER_DIR) + "/openai_client_test.cjs " +
                                   std::to_string(server.port()) + " node-model node-key");
  ASSERT_EQ(r.status, 0) << r.output;
  const json out = json::parse(r.out);
  EXPECT_EQ(out["role"], "assistant");
  EXPECT_EQ(out["text"], out["whole"]);
  EXPECT_TRUE(out["finish"] == "stop" || out["finish"] == "length") << out.dump();
  EXPECT_GT(out["usage"]["prompt_tokens"].get<int>(), 0);
  EXPECT_EQ(out["model"], "node-model");
}

}  // namespace
}  // namespace mamba::server
