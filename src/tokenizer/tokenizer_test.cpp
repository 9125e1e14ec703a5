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

void expect_error(const std::string& content, const std::string& name, ErrorCode code,
                  const std::string& needle);

// SentencePiece-style tokenizers (byte_fallback BPE, Metaspace / Prepend+Replace).
json spm_fixture(const std::string& dir, const std::string& name) {
  return read_json(dir + "/tokenizers/" + name + "/tokenizer.json");
}

// The tokens' own texts joined ("▁" shown as " "): what encode produced, before any decoder strip.
std::string joined_pieces(const Tokenizer& tokenizer, const std::vector<int32_t>& ids) {
  std::string out;
  for (int32_t id : ids) out += tokenizer.token_text(id);
  return out;
}

TEST(SpmTokenizer, EmptyAndSpacesAndUnknownIds) {
  MAMBA_REQUIRE_FIXTURES(dir);
  for (const std::string name : {"spm-legacy", "spm-metaspace"}) {
    auto tokenizer = Tokenizer::from_file(dir + "/tokenizers/" + name + "/tokenizer.json");
    EXPECT_EQ(tokenizer->encode(""), std::vector<int32_t>{}) << name;
    EXPECT_EQ(tokenizer->decode({}), "") << name;
    EXPECT_EQ(stream_all(*tokenizer, {}), "") << name;
    // Only spaces: every space is kept as "▁" (no pre-tokenizer drops them).
    const auto ids = tokenizer->encode(" ");
    EXPECT_EQ(joined_pieces(*tokenizer, ids), name == "spm-legacy" ? "  " : " ") << name;
    EXPECT_EQ(tokenizer->vocab_size(), 1200) << name;
    EXPECT_EQ(tokenizer->token_id("<0x41>"), 3 + 0x41) << name;
    EXPECT_EQ(tokenizer->token_text(3 + 0x41), "A") << name;  // a byte token stands for its byte
    EXPECT_EQ(tokenizer->token_text(*tokenizer->token_id("\xE2\x96\x81")), " ") << name;
    EXPECT_EQ(tokenizer->bos_id(), std::nullopt) << name;  // post_processor is null
    // Unknown ids: decode names the id; the stream skips it.
    for (int32_t bad : {-1, 1200, 99999}) {
      try {
        tokenizer->decode({383, bad});
        ADD_FAILURE() << name << ": no error for id " << bad;
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::out_of_range);
        EXPECT_NE(std::string(e.what()).find("token id " + std::to_string(bad)), std::string::npos)
            << e.what();
      }
    }
    StreamDecoder stream(*tokenizer);
    EXPECT_EQ(stream.push(1200) + stream.push(300) + stream.flush(), "H");
  }
  // The byte-level tokenizers report unknown ids the same way.
  auto gpt2 = Tokenizer::from_file(dir + "/tokenizers/bpe-gpt2-style/tokenizer.json");
  EXPECT_THROW(gpt2->decode({3000}), Error);
  EXPECT_THROW(ByteTokenizer().decode({256}), Error);
}

TEST(SpmTokenizer, ByteFallbackForCharactersOutsideTheVocab) {
  MAMBA_REQUIRE_FIXTURES(dir);
  auto tokenizer = Tokenizer::from_file(dir + "/tokenizers/spm-metaspace/tokenizer.json");
  const std::string robot = "\xF0\x9F\xA4\x96";  // U+1F916, not in the vocabulary
  EXPECT_EQ(tokenizer->encode(robot), (std::vector<int32_t>{383, 3 + 0xF0, 3 + 0x9F, 3 + 0xA4, 3 + 0x96}));
  for (const std::string& text :
       {robot + robot + " x", std::string("\xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\x98\x80\n\t"),
        std::string("a\x01z")}) {
    const auto ids = tokenizer->encode(text);
    EXPECT_EQ(tokenizer->decode(ids), text);
    StreamDecoder stream(*tokenizer);
    std::string out;
    for (int32_t id : ids) {
      const std::string piece = stream.push(id);
      EXPECT_EQ(piece.find("\xEF\xBF\xBD"), std::string::npos) << escaped(text);
      out += piece;
    }
    EXPECT_EQ(out + stream.flush(), text);
  }
  // HF ByteFallback: a run of byte tokens that is not valid UTF-8 as a whole gives one U+FFFD
  // per token, even where a prefix would have been a valid character.
  const std::string fffd = "\xEF\xBF\xBD";
  auto byte = [](int b) { return 3 + b; };
  EXPECT_EQ(tokenizer->decode({byte(0xE6), byte(0x97)}), fffd + fffd);
  EXPECT_EQ(tokenizer->decode({byte(0xC3), byte(0xA9), byte(0xFF), 300}), fffd + fffd + fffd + "H");
  EXPECT_EQ(tokenizer->decode({byte(0xC3), byte(0xA9), 300, byte(0xFF)}), "\xC3\xA9H" + fffd);
  EXPECT_EQ(tokenizer->decode({byte(0x20), 300}), "H");  // " H": the decoder strips one space
  EXPECT_EQ(tokenizer->decode({383, 383, 300}), " H");
}

TEST(SpmTokenizer, StreamMatchesDecodeOnRandomIds) {
  MAMBA_REQUIRE_FIXTURES(dir);
  std::mt19937 rng(11);
  for (const std::string name : {"spm-legacy", "spm-metaspace"}) {
    auto tokenizer = Tokenizer::from_file(dir + "/tokenizers/" + name + "/tokenizer.json");
    // Byte tokens from every UTF-8 range, "▁", "▁▁", letters, <s> and </s>.
    const std::vector<int32_t> pool = {1,        2,        383,      410,      300,      325,
                                       3 + 0x20, 3 + 0x41, 3 + 0x80, 3 + 0x9F, 3 + 0xA4, 3 + 0xBF,
                                       3 + 0xC3, 3 + 0xE4, 3 + 0xED, 3 + 0xF0, 3 + 0xFF};
    for (int trial = 0; trial < 3000; ++trial) {
      std::vector<int32_t> ids(rng() % 10);
      for (auto& id : ids) id = pool[rng() % pool.size()];
      ASSERT_EQ(stream_all(*tokenizer, ids), tokenizer->decode(ids)) << name << " " << json(ids).dump();
    }
  }
}

// Leading spaces under each Metaspace prepend_scheme (and the legacy add_prefix_space).
TEST(SpmTokenizer, MetaspacePrependSchemes) {
  MAMBA_REQUIRE_FIXTURES(dir);
  json config = spm_fixture(dir, "spm-metaspace");
  auto with = [&](const json& pre, const std::string& name) {
    json c = config;
    c["pre_tokenizer"] = pre;
    return load_json(c, name);
  };
  const std::string r = "\xE2\x96\x81";
  auto always =
      with({{"type", "Metaspace"}, {"replacement", r}, {"prepend_scheme", "always"}, {"split", false}},
           "always.json");
  auto first =
      with({{"type", "Metaspace"}, {"replacement", r}, {"prepend_scheme", "first"}, {"split", false}},
           "first.json");
  auto never =
      with({{"type", "Metaspace"}, {"replacement", r}, {"prepend_scheme", "never"}, {"split", false}},
           "never.json");
  auto legacy_on =
      with({{"type", "Metaspace"}, {"replacement", r}, {"add_prefix_space", true}}, "legacy1.json");
  auto legacy_off =
      with({{"type", "Metaspace"}, {"replacement", r}, {"add_prefix_space", false}}, "legacy0.json");
  struct Case {
    std::string text, always, first, never;
  };
  const std::vector<Case> cases = {
      {"hi", " hi", " hi", "hi"},
      {" hi", " hi", " hi", " hi"},           // already starts with "▁": nothing prepended
      {"  hi", "  hi", "  hi", "  hi"},       // two spaces stay two
      {"<s>hi", "<s> hi", "<s>hi", "<s>hi"},  // "first": only the piece at offset 0
      {"a</s>b c", " a</s> b c", " a</s>b c", "a</s>b c"},
      {"   ", "   ", "   ", "   "},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(joined_pieces(*always, always->encode(c.text)), c.always) << escaped(c.text);
    EXPECT_EQ(joined_pieces(*first, first->encode(c.text)), c.first) << escaped(c.text);
    EXPECT_EQ(joined_pieces(*never, never->encode(c.text)), c.never) << escaped(c.text);
    EXPECT_EQ(joined_pieces(*legacy_on, legacy_on->encode(c.text)), c.always) << escaped(c.text);
    EXPECT_EQ(joined_pieces(*legacy_off, legacy_off->encode(c.text)), c.never) << escaped(c.text);
  }
  // split (the default) cuts before every "▁": no token spans a word boundary.
  auto split = with({{"type", "Metaspace"}, {"replacement", r}, {"prepend_scheme", "always"}}, "split.json");
  const auto ids = split->encode("return x and return y");
  for (int32_t id : ids) {
    const std::string piece = split->token_text(id);
    EXPECT_EQ(piece.find(' ', 1), std::string::npos) << escaped(piece);
  }
  EXPECT_EQ(split->decode(ids), "return x and return y");
  EXPECT_NE(always->encode("return x"), split->encode("return x"));  // "return▁" is a token
}

TEST(SpmTokenizer, MetaspaceDecoder) {
  MAMBA_REQUIRE_FIXTURES(dir);
  json config = spm_fixture(dir, "spm-metaspace");
  const std::string r = "\xE2\x96\x81";
  for (const std::string scheme : {"always", "first", "never"}) {
    json c = config;
    c["decoder"] = {{"type", "Metaspace"}, {"replacement", r}, {"prepend_scheme", scheme}, {"split", false}};
    auto tokenizer = load_json(c, "msdec.json");
    const int32_t space = *tokenizer->token_id(r), two = *tokenizer->token_id(r + r), h = 300;
    // HF: the first token loses every "▁" unless the scheme is "never"; later ones become " ".
    EXPECT_EQ(tokenizer->decode({two, h, space, h}), scheme == "never" ? "  H H" : "H H") << scheme;
    EXPECT_EQ(tokenizer->decode({h, two, h}), "H  H") << scheme;
    EXPECT_EQ(stream_all(*tokenizer, {two, h, space, h}), tokenizer->decode({two, h, space, h})) << scheme;
  }
}

// A decoder chain with a Replace and a Strip after Fuse: the stream holds back only what a
// later token can change, and still matches decode exactly.
TEST(SpmTokenizer, FusedChainStreamsExactly) {
  json vocab = {{"<unk>", 0}, {"a", 257}, {"b", 258}, {"\xE2\x96\x81", 259}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = b + 1;
  }
  json config = {
      {"normalizer", nullptr},
      {"pre_tokenizer", nullptr},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders", json::array({{{"type", "ByteFallback"}},
                                  {{"type", "Fuse"}},
                                  {{"type", "Replace"}, {"pattern", {{"String", "ab"}}}, {"content", "X"}},
                                  {{"type", "Strip"}, {"content", " "}, {"start", 2}, {"stop", 2}}})}}},
      {"model",
       {{"type", "BPE"},
        {"byte_fallback", true},
        {"unk_token", "<unk>"},
        {"vocab", vocab},
        {"merges", json::array()}}}};
  auto tokenizer = load_json(config, "chain.json");
  const int32_t a = 257, b = 258, m = 259, sp = 1 + 0x20;
  EXPECT_EQ(tokenizer->decode({sp, sp, sp, a, b, sp, sp, sp}), " X ");
  EXPECT_EQ(tokenizer->decode({a, b, m, sp, sp, a}), "X\xE2\x96\x81  a");
  EXPECT_EQ(tokenizer->decode({a, sp, b}), "a b");
  EXPECT_EQ(tokenizer->encode("ab \xC3\xA9"), (std::vector<int32_t>{a, b, sp, 1 + 0xC3, 1 + 0xA9}));
  StreamDecoder stream(*tokenizer);
  EXPECT_EQ(stream.push(a), "");  // could still become "X"
  EXPECT_EQ(stream.push(b), "X");
  EXPECT_EQ(stream.push(sp), "");  // a trailing space the Strip may remove
  EXPECT_EQ(stream.push(a), "");   // " a" or " ab" -> " X"
  EXPECT_EQ(stream.flush(), " a");
  std::mt19937 rng(5);
  const std::vector<int32_t> pool = {a, b, m, sp, 1 + 0xC3, 1 + 0xA9, 1 + 0xFF, 0};
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<int32_t> ids(rng() % 9);
    for (auto& id : ids) id = pool[rng() % pool.size()];
    ASSERT_EQ(stream_all(*tokenizer, ids), tokenizer->decode(ids)) << json(ids).dump();
  }
}

TEST(SpmTokenizer, UnkFuseAndMergeFormats) {
  MAMBA_REQUIRE_FIXTURES(dir);
  json config = spm_fixture(dir, "spm-legacy");
  config["model"]["byte_fallback"] = false;
  const std::string text = "\xE6\x97\xA5\xE6\x9C\xAC x";  // two characters outside the vocabulary
  auto fused = load_json(config, "unk1.json");
  const auto fused_ids = fused->encode(text);
  config["model"]["fuse_unk"] = false;
  auto unfused = load_json(config, "unk2.json");
  const auto unfused_ids = unfused->encode(text);
  EXPECT_EQ(std::count(fused_ids.begin(), fused_ids.end(), 0), 1) << json(fused_ids).dump();
  EXPECT_EQ(std::count(unfused_ids.begin(), unfused_ids.end(), 0), 2) << json(unfused_ids).dump();
  EXPECT_EQ(fused->decode(fused_ids), "<unk> x");

  // Merges written as "a b" strings mean the same as [a, b] pairs.
  json strings = spm_fixture(dir, "spm-legacy");
  json merges = json::array();
  for (const json& pair : strings["model"]["merges"]) {
    merges.push_back(pair[0].get<std::string>() + " " + pair[1].get<std::string>());
  }
  strings["model"]["merges"] = merges;
  auto from_strings = load_json(strings, "strmerges.json");
  auto from_pairs = Tokenizer::from_file(dir + "/tokenizers/spm-legacy/tokenizer.json");
  for (const json& c : read_json(dir + "/tokenizers/spm-legacy/cases.json")) {
    EXPECT_EQ(from_strings->encode(c.at("text").get<std::string>()), c.at("ids").get<std::vector<int32_t>>());
  }
  const auto id = from_pairs->token_id("return\xE2\x96\x81");
  ASSERT_TRUE(id.has_value());
  EXPECT_EQ(from_pairs->token_text(*id), "return ");

  // ignore_merges: a word that is itself a token is taken whole.
  json tiny = {{"pre_tokenizer", nullptr},
               {"decoder", nullptr},
               {"model",
                {{"type", "BPE"},
                 {"vocab", {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"abc", 4}}},
                 {"merges", json::array({json::array({"a", "b"})})}}}};
  EXPECT_EQ(load_json(tiny, "im0.json")->encode("abc"), (std::vector<int32_t>{3, 2}));
  tiny["model"]["ignore_merges"] = true;
  auto whole = load_json(tiny, "im1.json");
  EXPECT_EQ(whole->encode("abc"), (std::vector<int32_t>{4}));
  EXPECT_EQ(whole->decode({3, 2, 4}), "ab c abc");  // no decoder: HF joins tokens with " "
}

TEST(SpmTokenizer, NormalizedAddedTokensAndTemplateBos) {
  MAMBA_REQUIRE_FIXTURES(dir);
  json config = spm_fixture(dir, "spm-legacy");
  // A normalized added token is matched in the normalized text: its pattern is "▁foo".
  config["added_tokens"].push_back(
      {{"id", 1200}, {"content", "foo"}, {"special", false}, {"normalized", true}});
  config["post_processor"] = {{"type", "TemplateProcessing"},
                              {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                                      {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
                              {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}}}}}};
  auto tokenizer = load_json(config, "addnorm.json");
  EXPECT_EQ(tokenizer->bos_id(), 1);  // Llama-2 style: callers prepend it
  EXPECT_EQ(tokenizer->eos_id(), std::nullopt);
  EXPECT_EQ(tokenizer->encode("foo"), (std::vector<int32_t>{1200}));
  const auto ids = tokenizer->encode("a foo");
  EXPECT_EQ(ids.back(), 1200) << json(ids).dump();
  EXPECT_NE(tokenizer->encode("afoo").back(), 1200);  // "▁afoo" holds no "▁foo"
  EXPECT_EQ(tokenizer->encode("<s>foo"), (std::vector<int32_t>{1, 1200}));
}

TEST(SpmTokenizer, BadConfigurationsNameTheField) {
  MAMBA_REQUIRE_FIXTURES(dir);
  const json base = spm_fixture(dir, "spm-legacy");
  json bad_decoder = base;
  bad_decoder["decoder"]["decoders"][1] = {{"type", "WordPiece"}};
  expect_error(bad_decoder.dump(), "wp.json", ErrorCode::unsupported,
               "decoder.decoders[1].type: decoder \"WordPiece\"");
  json bad_normalizer = base;
  bad_normalizer["normalizer"]["normalizers"][0] = {{"type", "NFKC"}};
  expect_error(bad_normalizer.dump(), "nfkc2.json", ErrorCode::unsupported,
               "normalizer.normalizers[0].type: normalizer \"NFKC\"");
  json no_pattern = base;
  no_pattern["normalizer"]["normalizers"][1].erase("pattern");
  expect_error(no_pattern.dump(), "nopat.json", ErrorCode::parse,
               "normalizer.normalizers[1].pattern: missing");
  json bad_scheme = spm_fixture(dir, "spm-metaspace");
  bad_scheme["pre_tokenizer"]["prepend_scheme"] = "sometimes";
  expect_error(bad_scheme.dump(), "scheme.json", ErrorCode::parse, "pre_tokenizer.prepend_scheme");
  json bad_strip = base;
  bad_strip["decoder"]["decoders"][3]["start"] = -1;
  expect_error(bad_strip.dump(), "strip.json", ErrorCode::parse, "decoder.decoders[3].start");
  json bad_fallback = base;
  bad_fallback["model"]["byte_fallback"] = "yes";
  expect_error(bad_fallback.dump(), "fallback.json", ErrorCode::parse,
               "model.byte_fallback: expected true or false");
  json bad_unk = base;
  bad_unk["model"]["unk_token"] = "<nope>";
  expect_error(bad_unk.dump(), "unk.json", ErrorCode::parse, "model.unk_token");
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
  // A huge id would size the id-indexed tables (found by the tokenizer_json fuzzer: 1.3e9 -> 42 GB).
  json huge_id = tiny_bpe({"a b"});
  huge_id["model"]["vocab"]["a"] = 1 << 24;
  expect_error(huge_id.dump(), "hugeid.json", ErrorCode::parse,
               "model.vocab.a: expected a token id (integer in [0, 16777215]), found 16777216");
  json huge_added = tiny_bpe({"a b"});
  huge_added["added_tokens"] = json::array({{{"id", 1330000000}, {"content", "<x>"}, {"special", true}}});
  expect_error(huge_added.dump(), "hugeadded.json", ErrorCode::parse,
               "added_tokens[0].id: expected a token id");
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
