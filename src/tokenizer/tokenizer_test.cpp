// Tokenizer tests: every case of the HF fixture tokenizers (golden ids and decoded text),
// streaming decode across split characters, the byte tokenizer, added-token flags, merge
// order, and one-line errors for bad tokenizer.json files.
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "core/error.h"
#include "core/file_util.h"
#include "testing.h"

namespace mamba::tok {
namespace {

using nlohmann::json;

json read_json(const std::string& path) {
  return json::parse(read_file(path));
}

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "mamba_tok_" + std::to_string(::getpid()) + "_" + name;
}

// Writes `content` to a temp file and loads it as a tokenizer.
std::unique_ptr<Tokenizer> load_json(const json& content, const std::string& name) {
  const std::string path = temp_path(name);
  write_file_atomic(path, content.dump());
  auto tokenizer = Tokenizer::from_file(path);
  std::remove(path.c_str());
  return tokenizer;
}

std::string stream_all(const Tokenizer& tokenizer, const std::vector<int32_t>& ids) {
  StreamDecoder stream(tokenizer);
  std::string out;
  for (int32_t id : ids) out += stream.push(id);
  return out + stream.flush();
}

std::string escaped(const std::string& text) {
  return json(text).dump();
}

void check_fixture(const std::string& name) {
  MAMBA_REQUIRE_FIXTURES(dir);
  const std::string folder = dir + "/tokenizers/" + name;
  auto tokenizer = Tokenizer::from_file(folder + "/tokenizer.json");
  const json cases = read_json(folder + "/cases.json");
  ASSERT_TRUE(cases.is_array());
  size_t passed = 0;
  for (const json& c : cases) {
    const std::string text = c.at("text");
    const auto want = c.at("ids").get<std::vector<int32_t>>();
    const std::string want_text = c.at("decoded");
    const std::vector<int32_t> got = tokenizer->encode(text);
    bool ok = true;
    if (got != want) {
      ok = false;
      ADD_FAILURE() << name << ": encode(" << escaped(text) << ") = " << json(got).dump() << ", expected "
                    << json(want).dump();
    }
    if (tokenizer->decode(want) != want_text) {
      ok = false;
      ADD_FAILURE() << name << ": decode of " << escaped(text) << " gave " << escaped(tokenizer->decode(want))
                    << ", expected " << escaped(want_text);
    }
    if (stream_all(*tokenizer, want) != want_text) {
      ok = false;
      ADD_FAILURE() << name << ": streaming decode of " << escaped(text) << " differs";
    }
    passed += ok;
  }
  std::printf("%s: %zu / %zu cases pass\n", name.c_str(), passed, cases.size());
}

TEST(TokenizerFixture, Gpt2StyleEveryCase) {
  check_fixture("bpe-gpt2-style");
}
TEST(TokenizerFixture, Llama3StyleEveryCase) {
  check_fixture("bpe-llama3-style");
}
TEST(TokenizerFixture, SpmLegacyEveryCase) {
  check_fixture("spm-legacy");
}
TEST(TokenizerFixture, SpmMetaspaceEveryCase) {
  check_fixture("spm-metaspace");
}

TEST(TokenizerFixture, TokenLookupAndVocab) {
  MAMBA_REQUIRE_FIXTURES(dir);
  auto tokenizer = Tokenizer::from_file(dir + "/tokenizers/bpe-gpt2-style/tokenizer.json");
  EXPECT_EQ(tokenizer->token_id("<|endoftext|>"), 0);
  EXPECT_EQ(tokenizer->token_id("<|pad|>"), 1);
  EXPECT_EQ(tokenizer->token_id("no such token at all"), std::nullopt);
  EXPECT_EQ(tokenizer->vocab_size(), 3000);
  EXPECT_EQ(tokenizer->token_text(0), "<|endoftext|>");
  EXPECT_EQ(tokenizer->token_text(-1), "");
  EXPECT_EQ(tokenizer->token_text(3000), "");
  // Vocabulary strings are looked up as written ("Ġw" is " w").
  const auto id = tokenizer->token_id("\xC4\xA0w");
  ASSERT_TRUE(id.has_value());
  EXPECT_EQ(tokenizer->token_text(*id), " w");
  EXPECT_EQ(tokenizer->bos_id(), std::nullopt);  // no post_processor in the fixture
  EXPECT_THROW(tokenizer->encode("bad \xFF utf8"), Error);
}

TEST(TokenizerFixture, StreamingHoldsBackSplitCharacters) {
  MAMBA_REQUIRE_FIXTURES(dir);
  auto tokenizer = Tokenizer::from_file(dir + "/tokenizers/bpe-llama3-style/tokenizer.json");
  for (const std::string text :
       {"emoji 😀🚀 👩‍👩‍👧", "中文字符测试", "こんにちは世界", "naïve café"}) {
    const auto ids = tokenizer->encode(text);
    StreamDecoder stream(*tokenizer);
    std::string out;
    for (int32_t id : ids) {
      const std::string piece = stream.push(id);
      // Every piece is itself valid UTF-8: no character is ever printed half-way.
      EXPECT_EQ(ByteTokenizer().decode(ByteTokenizer().encode(piece)), piece) << escaped(text);
      EXPECT_EQ(piece.find("\xEF\xBF\xBD"), std::string::npos) << escaped(text);
      out += piece;
    }
    out += stream.flush();
    EXPECT_EQ(out, text);
  }
}

// One tokenizer shared by several threads (the word cache is the only mutable state).
TEST(TokenizerFixture, ConcurrentEncodeMatchesSerial) {
  MAMBA_REQUIRE_FIXTURES(dir);
  auto tokenizer = Tokenizer::from_file(dir + "/tokenizers/bpe-gpt2-style/tokenizer.json");
  const json cases = read_json(dir + "/tokenizers/bpe-gpt2-style/cases.json");
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 20; ++round) {
        for (const json& c : cases) {
          failures[t] +=
              tokenizer->encode(c.at("text").get<std::string>()) != c.at("ids").get<std::vector<int32_t>>();
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures, std::vector<int>(4, 0));
}

TEST(StreamDecoder, EmojiAndCjkSplitIntoBytes) {
  ByteTokenizer bytes;
  StreamDecoder stream(bytes);
  const std::string emoji = "\xF0\x9F\x98\x80";  // U+1F600
  EXPECT_EQ(stream.push(0xF0), "");
  EXPECT_EQ(stream.push(0x9F), "");
  EXPECT_EQ(stream.push(0x98), "");
  EXPECT_EQ(stream.push(0x80), emoji);
  const std::string cjk = "\xE4\xB8\xAD";  // 中
  EXPECT_EQ(stream.push(0xE4), "");
  EXPECT_EQ(stream.push(0xB8), "");
  EXPECT_EQ(stream.push(0xAD), cjk);
  EXPECT_EQ(stream.push('a'), "a");
  EXPECT_EQ(stream.flush(), "");
}

TEST(StreamDecoder, InvalidBytesBecomeReplacementCharacters) {
  const std::string fffd = "\xEF\xBF\xBD";
  ByteTokenizer bytes;
  StreamDecoder stream(bytes);
  EXPECT_EQ(stream.push(0xFF), fffd);       // never valid: emitted at once
  EXPECT_EQ(stream.push(0x80), fffd);       // stray continuation byte
  EXPECT_EQ(stream.push(0xE4), "");         // could still become a character
  EXPECT_EQ(stream.push('x'), fffd + "x");  // ... but did not
  EXPECT_EQ(stream.push(0xED), "");
  EXPECT_EQ(stream.push(0xA0), fffd + fffd);  // ED A0: a surrogate, never valid
  EXPECT_EQ(stream.push(0xF0), "");
  EXPECT_EQ(stream.push(0x9F), "");
  EXPECT_EQ(stream.flush(), fffd);  // unfinished at the end
  EXPECT_EQ(stream.flush(), "");
}

TEST(StreamDecoder, MatchesWholeDecodeOnRandomBytes) {
  ByteTokenizer bytes;
  std::mt19937 rng(7);
  // Bytes drawn mostly from UTF-8 lead/continuation ranges, to hit every edge.
  const std::vector<int> pool = {'a',  ' ',  0x80, 0x8F, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2,
                                 0xDF, 0xE0, 0xE4, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF};
  for (int trial = 0; trial < 2000; ++trial) {
    std::vector<int32_t> ids(rng() % 12);
    for (auto& id : ids) id = pool[rng() % pool.size()];
    EXPECT_EQ(stream_all(bytes, ids), bytes.decode(ids));
  }
}

TEST(ByteTokenizer, RoundTrip) {
  ByteTokenizer bytes;
  const std::string text = "héllo 世界 😀\n\t\x01";
  const auto ids = bytes.encode(text);
  ASSERT_EQ(ids.size(), text.size());
  EXPECT_EQ(ids[1], 0xC3);
  EXPECT_EQ(bytes.decode(ids), text);
  EXPECT_EQ(bytes.vocab_size(), 256);
  EXPECT_EQ(bytes.token_text(0xC3), "\xC3");
  EXPECT_EQ(bytes.token_id("A"), 65);
  EXPECT_EQ(bytes.token_id("AB"), std::nullopt);
  EXPECT_EQ(bytes.decode({0xC3}), "\xEF\xBF\xBD");  // half a character decodes lossily
  EXPECT_EQ(bytes.token_text(256), "");
}

// A tiny byte-level BPE over "a", "b", "c" to pin down merge order and model flags.
json tiny_bpe(const json& merges, bool ignore_merges = false) {
  return {{"added_tokens", json::array()},
          {"normalizer", nullptr},
          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model",
           {{"type", "BPE"},
            {"ignore_merges", ignore_merges},
            {"vocab", {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}, {"abc", 5}}},
            {"merges", merges}}}};
}

TEST(BpeTokenizer, LowestRankMergesFirst) {
  EXPECT_EQ(load_json(tiny_bpe({"a b", "b c"}), "r1.json")->encode("abc"), (std::vector<int32_t>{3, 2}));
  EXPECT_EQ(load_json(tiny_bpe({"b c", "a b"}), "r2.json")->encode("abc"), (std::vector<int32_t>{0, 4}));
  // Merges as two-element arrays mean the same.
  auto arrays =
      load_json(tiny_bpe(json::array({json::array({"b", "c"}), json::array({"a", "b"})})), "r3.json");
  EXPECT_EQ(arrays->encode("abc"), (std::vector<int32_t>{0, 4}));
  // "abc" is in the vocab but no merge reaches it; ignore_merges takes the word whole.
  EXPECT_EQ(load_json(tiny_bpe({"a b"}, true), "r4.json")->encode("abc"), (std::vector<int32_t>{5}));
  EXPECT_EQ(load_json(tiny_bpe({"a b"}, false), "r5.json")->encode("abc"), (std::vector<int32_t>{3, 2}));
}

TEST(BpeTokenizer, BosEosFromTemplateProcessing) {
  json config = tiny_bpe({"a b"});
  config["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                              {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}})},
      {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {6}}}}, {"</s>", {{"id", "</s>"}, {"ids", {7}}}}}}};
  config["added_tokens"] = json::array({{{"id", 6}, {"content", "<s>"}, {"special", true}},
                                        {{"id", 7}, {"content", "</s>"}, {"special", true}}});
  auto tokenizer = load_json(config, "bos.json");
  EXPECT_EQ(tokenizer->bos_id(), 6);
  EXPECT_EQ(tokenizer->eos_id(), 7);
  EXPECT_EQ(tokenizer->vocab_size(), 8);
  EXPECT_EQ(tokenizer->encode("<s>ab</s>"), (std::vector<int32_t>{6, 3, 7}));  // nothing added
}

TEST(BpeTokenizer, AddedTokenFlags) {
  MAMBA_REQUIRE_FIXTURES(dir);
  json config = read_json(dir + "/tokenizers/bpe-gpt2-style/tokenizer.json");
  config["added_tokens"].push_back({{"id", 3000},
                                    {"content", "<mask>"},
                                    {"special", true},
                                    {"lstrip", true},
                                    {"rstrip", true},
                                    {"normalized", false}});
  config["added_tokens"].push_back(
      {{"id", 3001}, {"content", "ony"}, {"single_word", true}, {"normalized", true}});
  auto tokenizer = load_json(config, "flags.json");
  const auto a = tokenizer->encode("a"), b = tokenizer->encode("b");
  std::vector<int32_t> want = a;
  want.push_back(3000);
  want.insert(want.end(), b.begin(), b.end());
  EXPECT_EQ(tokenizer->encode("a  <mask> b"), want);  // both spaces and the one after go
  EXPECT_EQ(tokenizer->encode("ony"), (std::vector<int32_t>{3001}));
  EXPECT_EQ(tokenizer->encode("pony").back() == 3001, false);  // inside a word: not matched
  EXPECT_EQ(tokenizer->decode({3000}), "<mask>");
}

TEST(BpeTokenizer, LongInputsStayFast) {
  MAMBA_REQUIRE_FIXTURES(dir);
  auto tokenizer = Tokenizer::from_file(dir + "/tokenizers/bpe-llama3-style/tokenizer.json");
  const json cases = read_json(dir + "/tokenizers/bpe-llama3-style/cases.json");
  std::string text;
  while (text.size() < (2u << 20)) {
    for (const json& c : cases) text += c.at("text").get<std::string>() + "\n";
  }
  const auto start = std::chrono::steady_clock::now();
  const auto ids = tokenizer->encode(text);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(tokenizer->decode(ids), text);
  std::printf("encode: %.1f MB/s (%zu bytes -> %zu tokens)\n", text.size() / seconds / 1e6, text.size(),
              ids.size());
  // One huge word and one huge run of spaces: no quadratic blow-up, no regex stack overflow.
  const std::string word(1 << 20, 'a'), spaces(1 << 20, ' ');
  EXPECT_EQ(tokenizer->decode(tokenizer->encode(word)), word);
  EXPECT_EQ(tokenizer->decode(tokenizer->encode(spaces + "x")), spaces + "x");
}

// Error messages: one line, naming the file and the problem.
void expect_error(const std::string& content, const std::string& name, ErrorCode code,
                  const std::string& needle) {
  const std::string path = temp_path(name);
  write_file_atomic(path, content);
  try {
    Tokenizer::from_file(path);
    ADD_FAILURE() << name << ": no error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_EQ(e.code(), code) << message;
    EXPECT_NE(message.find(path), std::string::npos) << message;
    EXPECT_NE(message.find(needle), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
  std::remove(path.c_str());
}

TEST(TokenizerErrors, BadFilesNameFileAndProblem) {
  try {
    Tokenizer::from_file("/nonexistent/tokenizer.json");
    ADD_FAILURE() << "no error for a missing file";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::io);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/tokenizer.json"), std::string::npos);
  }
  expect_error("{\"model\": ", "truncated.json", ErrorCode::parse, "not valid JSON");
  expect_error("[1, 2]", "array.json", ErrorCode::parse, "top level");
  json unigram = tiny_bpe({"a b"});
  unigram["model"] = {{"type", "Unigram"}, {"vocab", json::array()}};
  expect_error(unigram.dump(), "unigram.json", ErrorCode::unsupported, "model.type: model \"Unigram\"");
  json no_vocab = tiny_bpe({"a b"});
  no_vocab["model"].erase("vocab");
  expect_error(no_vocab.dump(), "novocab.json", ErrorCode::parse, "model.vocab: missing");
  expect_error(tiny_bpe({"a x"}).dump(), "badmerge.json", ErrorCode::parse,
               "model.merges[0]: token \"x\" is not in model.vocab");
  expect_error(tiny_bpe({"abc"}).dump(), "badmerge2.json", ErrorCode::parse, "model.merges[0]");
  json bad_vocab = tiny_bpe({"a b"});
  bad_vocab["model"]["vocab"]["a"] = "zero";
  expect_error(bad_vocab.dump(), "badid.json", ErrorCode::parse, "model.vocab.a: expected a token id");
  json bert = tiny_bpe({"a b"});
  bert["pre_tokenizer"] = {{"type", "BertPreTokenizer"}};
  expect_error(bert.dump(), "bert.json", ErrorCode::unsupported, "pre_tokenizer.type");
  json bad_regex = tiny_bpe({"a b"});
  bad_regex["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       json::array({{{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}},
                    {{"type", "ByteLevel"}, {"use_regex", false}}})}};
  expect_error(bad_regex.dump(), "badregex.json", ErrorCode::parse,
               "pre_tokenizer.pretokenizers[0].pattern: regex does not compile");
  json normalizer = tiny_bpe({"a b"});
  normalizer["normalizer"] = {{"type", "NFKC"}};
  expect_error(normalizer.dump(), "nfkc.json", ErrorCode::unsupported, "normalizer");
}

}  // namespace
}  // namespace mamba::tok
