// GGUF tokenizer.ggml.* <-> tokenizer.json (see gguf_tokenizer.h).
#include "runtime/gguf_tokenizer.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "core/error.h"
#include "core/file_util.h"
#include "core/json_guard.h"

namespace mamba::runtime {
namespace {

using json = nlohmann::json;
using io::GgufType;
using io::GgufValue;

enum TokenType : int32_t { normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6 };

// llama.cpp's pre-tokenizer names and the split regexes HF's tokenizer.json spells out.
const char* const kLlama3Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

const json* field(const json& j, const char* key) {
  return j.is_object() && j.contains(key) && !j.at(key).is_null() ? &j.at(key) : nullptr;
}

bool is_byte_token(const std::string& t) {
  return t.size() == 6 && t.starts_with("<0x") && t.back() == '>' &&
         std::isxdigit(static_cast<unsigned char>(t[3])) && std::isxdigit(static_cast<unsigned char>(t[4]));
}

// Is this pre-tokenizer (or one of a Sequence's) of type `type`?
const json* find_pre(const json* pre, const std::string& type) {
  if (!pre) return nullptr;
  if (pre->value("type", "") == type) return pre;
  if (const json* seq = field(*pre, "pretokenizers"))
    for (const json& p : *seq)
      if (p.value("type", "") == type) return &p;
  return nullptr;
}

// UTF-8 character boundaries of s.
std::vector<size_t> char_starts(const std::string& s) {
  std::vector<size_t> out;
  for (size_t i = 0; i < s.size(); ++i)
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) out.push_back(i);
  return out;
}

// HF's SentencePiece -> BPE merges: every split of a piece into two pieces of the vocabulary,
// ranked by the merged piece's score (highest first), then by the parts' ids.
json merges_from_scores(const std::vector<std::string>& tokens, const std::vector<float>& scores,
                        const std::vector<int32_t>& types) {
  std::map<std::string, int64_t> id;
  for (size_t i = 0; i < tokens.size(); ++i)
    if (types[i] == normal || types[i] == user_defined) id.emplace(tokens[i], static_cast<int64_t>(i));
  struct Merge {
    float score;
    int64_t left, right;
    std::string a, b;
  };
  std::vector<Merge> merges;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (types[i] != normal) continue;
    const std::string& t = tokens[i];
    const std::vector<size_t> starts = char_starts(t);
    for (size_t k = 1; k < starts.size(); ++k) {
      const std::string a = t.substr(0, starts[k]), b = t.substr(starts[k]);
      auto ia = id.find(a), ib = id.find(b);
      if (ia != id.end() && ib != id.end()) merges.push_back({scores[i], ia->second, ib->second, a, b});
    }
  }
  std::stable_sort(merges.begin(), merges.end(), [](const Merge& x, const Merge& y) {
    if (x.score != y.score) return x.score > y.score;
    return std::tie(x.left, x.right) < std::tie(y.left, y.right);
  });
  json out = json::array();
  for (const Merge& m : merges) out.push_back(json::array({m.a, m.b}));
  return out;
}

std::vector<std::string> strings(const io::GgufFile& g, const std::string& key) {
  std::vector<std::string> out;
  for (const GgufValue& v : g.get_array(key, GgufType::string).array) out.push_back(v.s);
  return out;
}

}  // namespace

void add_gguf_tokenizer(io::GgufWriter& w, const std::string& json_text, const std::string& source,
                        const GgufVocabInfo& info) {
  check_json_depth(json_text, source);
  const json root = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) throw_error(ErrorCode::parse, source, ": not a JSON object");
  const json* model = field(root, "model");
  if (!model || !field(*model, "vocab") || !(*model)["vocab"].is_object())
    throw_error(ErrorCode::parse, source, ": field 'model.vocab' missing (expected a BPE vocabulary)");
  if (model->value("type", "BPE") != "BPE")
    throw_error(ErrorCode::unsupported, source, ": model type '", model->value("type", ""),
                "' has no GGUF form here (expected BPE)");
  const json* pre = field(root, "pre_tokenizer");
  const bool spm = model->value("byte_fallback", false) || find_pre(pre, "Metaspace") != nullptr;
  const bool byte_level = find_pre(pre, "ByteLevel") != nullptr;
  if (!spm && !byte_level)
    throw_error(ErrorCode::unsupported, source,
                ": neither byte-level BPE nor SentencePiece-style (byte_fallback / Metaspace); llama.cpp's "
                "gpt2 / llama vocab types cannot express it");
  // Ids: the vocabulary and the added tokens; a hole becomes an unused [PADi] token.
  std::map<int64_t, std::pair<std::string, int32_t>> by_id;
  for (auto it = (*model)["vocab"].begin(); it != (*model)["vocab"].end(); ++it) {
    const std::string& t = it.key();
    by_id[it.value().get<int64_t>()] = {t, spm && is_byte_token(t) ? byte : normal};
  }
  if (const json* added = field(root, "added_tokens"))
    for (const json& a : *added) {
      const std::string t = a.value("content", "");
      const int64_t i = a.value("id", int64_t{-1});
      if (i < 0) continue;
      const bool special = a.value("special", false);
      int32_t type = special ? control : user_defined;
      if (spm && is_byte_token(t)) type = byte;
      if (field(*model, "unk_token") && (*model)["unk_token"] == t) type = unknown;
      by_id[i] = {t, type};
    }
  const int64_t n = by_id.empty() ? 0 : by_id.rbegin()->first + 1;
  if (n > (int64_t{1} << 24)) throw_error(ErrorCode::parse, source, ": token id ", n - 1, " above 2^24");
  std::vector<GgufValue> tokens, types, scores;
  std::map<std::string, int64_t> rank;  // merged piece -> merge rank (SentencePiece scores)
  std::vector<GgufValue> merges;
  if (const json* m = field(*model, "merges"))
    for (const json& e : *m) {
      const std::string s = e.is_string() ? e.get<std::string>()
                                          : e.at(0).get<std::string>() + " " + e.at(1).get<std::string>();
      const size_t sp = s.find(' ', 1);
      if (sp == std::string::npos) throw_error(ErrorCode::parse, source, ": merge '", s, "' has no space");
      rank.emplace(s.substr(0, sp) + s.substr(sp + 1), static_cast<int64_t>(merges.size()));
      merges.push_back(GgufValue::of_string(s));
    }
  for (int64_t i = 0; i < n; ++i) {
    auto it = by_id.find(i);
    const std::string t = it == by_id.end() ? "[PAD" + std::to_string(i) + "]" : it->second.first;
    tokens.push_back(GgufValue::of_string(t));
    types.push_back(GgufValue::of_i32(it == by_id.end() ? unused : it->second.second));
    // llama.cpp's SentencePiece merges the pair of highest score: the earlier merge scores higher.
    auto r = rank.find(t);
    scores.push_back(GgufValue::of_f32(r == rank.end() ? -1e9f : -static_cast<float>(r->second)));
  }
  w.set("tokenizer.ggml.model", GgufValue::of_string(spm ? "llama" : "gpt2"));
  if (!spm) {
    std::string pre_name = "gpt2";
    if (const json* split = find_pre(pre, "Split")) {
      const json* pattern = field(*split, "pattern");
      const std::string regex = pattern ? pattern->value("Regex", "") : "";
      if (regex != kLlama3Regex)
        throw_error(ErrorCode::unsupported, source, ": pre-tokenizer regex '", regex.substr(0, 60),
                    "' is none of llama.cpp's known ones here (gpt2, llama-bpe)");
      pre_name = "llama-bpe";
    } else if (!find_pre(pre, "ByteLevel")->value("use_regex", true)) {
      throw_error(ErrorCode::unsupported, source, ": ByteLevel without a split regex");
    }
    w.set("tokenizer.ggml.pre", GgufValue::of_string(pre_name));
  } else {
    w.set("tokenizer.ggml.pre", GgufValue::of_string("default"));
    // llama.cpp adds the "▁" after every special token (the Prepend-normalizer form); HF's Metaspace
    // with prepend_scheme "first" only at the start: kept in our own key.
    const json* meta = find_pre(pre, "Metaspace");
    if (meta && meta->value("prepend_scheme", "always") == "first")
      w.set("mambacpp.tokenizer.prepend_scheme", GgufValue::of_string("first"));
    w.set("tokenizer.ggml.add_space_prefix", GgufValue::of_bool(true));
  }
  w.set("tokenizer.ggml.tokens", GgufValue::of_array(GgufType::string, std::move(tokens)));
  w.set("tokenizer.ggml.scores", GgufValue::of_array(GgufType::f32, std::move(scores)));
  w.set("tokenizer.ggml.token_type", GgufValue::of_array(GgufType::i32, std::move(types)));
  if (!merges.empty())
    w.set("tokenizer.ggml.merges", GgufValue::of_array(GgufType::string, std::move(merges)));
  auto id_key = [&](const char* key, std::optional<int32_t> v) {
    if (v) w.set(key, GgufValue::of_u32(static_cast<uint32_t>(*v)));
  };
  id_key("tokenizer.ggml.bos_token_id", info.bos);
  id_key("tokenizer.ggml.eos_token_id", info.eos);
  id_key("tokenizer.ggml.padding_token_id", info.pad);
  w.set("tokenizer.ggml.add_bos_token", GgufValue::of_bool(info.add_bos));
  if (!info.chat_template.empty()) w.set("tokenizer.chat_template", GgufValue::of_string(info.chat_template));
}

std::optional<std::string> gguf_tokenizer_json(const io::GgufFile& g) {
  if (!g.has("tokenizer.ggml.model")) return std::nullopt;
  const std::string kind = g.get_string("tokenizer.ggml.model");
  if (kind == "none") return std::nullopt;
  if (kind != "gpt2" && kind != "llama")
    throw_error(ErrorCode::unsupported, g.path(), ": tokenizer.ggml.model is '", kind,
                "', expected gpt2, llama or none");
  const std::vector<std::string> tokens = strings(g, "tokenizer.ggml.tokens");
  const size_t n = tokens.size();
  std::vector<int32_t> types(n, normal);
  if (g.has("tokenizer.ggml.token_type")) {
    const GgufValue& tt = g.get_array("tokenizer.ggml.token_type", GgufType::i32);
    if (tt.array.size() != n)
      throw_error(ErrorCode::shape, g.path(), ": tokenizer.ggml.token_type has ", tt.array.size(),
                  " entries, expected one per token (", n, ")");
    for (size_t i = 0; i < n; ++i) types[i] = static_cast<int32_t>(tt.array[i].i);
  }
  const bool spm = kind == "llama";
  json vocab = json::object(), added = json::array();
  std::optional<std::string> unk;
  for (size_t i = 0; i < n; ++i) {
    const int32_t t = types[i];
    if (t == unused) continue;
    vocab[tokens[i]] = i;  // HF keeps added tokens in the vocabulary too
    if (t == control || t == user_defined || t == unknown)
      added.push_back({{"id", i},
                       {"content", tokens[i]},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", false},
                       {"special", t != user_defined}});
    if (t == unknown) unk = tokens[i];
  }
  json merges = json::array();
  if (g.has("tokenizer.ggml.merges")) {
    for (const std::string& m : strings(g, "tokenizer.ggml.merges")) {
      const size_t sp = m.find(' ', 1);
      if (sp == std::string::npos)
        throw_error(ErrorCode::parse, g.path(), ": tokenizer.ggml.merges entry '", m.substr(0, 40),
                    "' has no space");
      merges.push_back(json::array({m.substr(0, sp), m.substr(sp + 1)}));
    }
  } else if (spm) {
    std::vector<float> scores(n, 0.0f);
    if (g.has("tokenizer.ggml.scores")) {
      const GgufValue& s = g.get_array("tokenizer.ggml.scores", GgufType::f32);
      if (s.array.size() != n)
        throw_error(ErrorCode::shape, g.path(), ": tokenizer.ggml.scores has ", s.array.size(),
                    " entries, expected one per token (", n, ")");
      for (size_t i = 0; i < n; ++i) scores[i] = static_cast<float>(s.array[i].f);
    }
    merges = merges_from_scores(tokens, scores, types);
  } else {
    throw_error(ErrorCode::not_found, g.path(),
                ": tokenizer.ggml.merges missing (a gpt2 vocabulary needs it)");
  }
  json root = {{"version", "1.0"},
               {"truncation", nullptr},
               {"padding", nullptr},
               {"added_tokens", added},
               {"post_processor", nullptr}};
  json model = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", unk ? json(*unk) : json(nullptr)},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", spm},
                {"byte_fallback", spm},
                {"ignore_merges", false},
                {"vocab", vocab},
                {"merges", merges}};
  root["model"] = model;
  if (spm) {
    const bool prefix = g.get_bool("tokenizer.ggml.add_space_prefix", true);
    const bool first = g.has("mambacpp.tokenizer.prepend_scheme") &&
                       g.get_string("mambacpp.tokenizer.prepend_scheme") == "first";
    const json replace = {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}};
    if (first) {
      root["normalizer"] = nullptr;
      root["pre_tokenizer"] = {
          {"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "first"}, {"split", false}};
    } else {
      json norms = json::array();
      if (prefix) norms.push_back({{"type", "Prepend"}, {"prepend", "\u2581"}});
      norms.push_back(replace);
      root["normalizer"] = {{"type", "Sequence"}, {"normalizers", norms}};
      root["pre_tokenizer"] = nullptr;
    }
    json decoders = json::array({{{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
                                 {{"type", "ByteFallback"}},
                                 {{"type", "Fuse"}}});
    if (prefix || first) decoders.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
    root["decoder"] = {{"type", "Sequence"}, {"decoders", decoders}};
  } else {
    const std::string pre = g.has("tokenizer.ggml.pre") ? g.get_string("tokenizer.ggml.pre") : "gpt2";
    const json byte_level = {
        {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
    root["normalizer"] = nullptr;
    if (pre == "gpt2" || pre == "default") {
      root["pre_tokenizer"] = byte_level;
    } else if (pre == "llama-bpe" || pre == "llama3") {
      json bl = byte_level;
      bl["use_regex"] = false;
      root["pre_tokenizer"] = {{"type", "Sequence"},
                               {"pretokenizers", json::array({{{"type", "Split"},
                                                               {"pattern", {{"Regex", kLlama3Regex}}},
                                                               {"behavior", "Isolated"},
                                                               {"invert", false}},
                                                              bl})}};
    } else {
      throw_error(ErrorCode::unsupported, g.path(), ": tokenizer.ggml.pre is '", pre,
                  "', expected gpt2, default, llama-bpe or llama3");
    }
    json dec = byte_level;
    dec["add_prefix_space"] = true;
    root["decoder"] = dec;
  }
  try {
    return root.dump();
  } catch (const json::type_error& e) {  // a token or merge that is not UTF-8 text
    throw_error(ErrorCode::parse, g.path(), ": tokenizer.ggml.tokens / merges must be UTF-8 text (", e.what(),
                ")");
  }
}

GgufVocabInfo gguf_vocab_info(const io::GgufFile& g) {
  GgufVocabInfo info;
  auto id = [&](const char* key) -> std::optional<int32_t> {
    if (!g.has(key)) return std::nullopt;
    const int64_t v = g.get_int(key);
    if (v < 0 || v >= (int64_t{1} << 24))
      throw_error(ErrorCode::parse, g.path(), ": metadata '", key, "' is ", v, ", expected a token id");
    return static_cast<int32_t>(v);
  };
  info.bos = id("tokenizer.ggml.bos_token_id");
  info.eos = id("tokenizer.ggml.eos_token_id");
  info.pad = id("tokenizer.ggml.padding_token_id");
  info.add_bos = g.get_bool("tokenizer.ggml.add_bos_token", false);
  if (g.has("tokenizer.chat_template")) info.chat_template = g.get_string("tokenizer.chat_template");
  return info;
}

std::vector<std::pair<std::string, io::GgufValue>> gguf_tokenizer_metadata(const std::string& model_dir) {
  const std::string path = path_join(model_dir, "tokenizer.json");
  if (!file_exists(path)) return {};
  auto object = [](const std::string& file) {
    if (!file_exists(file)) return json::object();
    const std::string text = read_file(file);
    check_json_depth(text, file);
    json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    return j.is_object() ? j : json::object();
  };
  GgufVocabInfo info;
  for (const char* name : {"config.json", "generation_config.json"}) {  // the latter wins
    const json j = object(path_join(model_dir, name));
    auto id = [&](const char* key) -> std::optional<int32_t> {
      const json* v = field(j, key);
      if (v && v->is_array() && !v->empty()) v = &v->at(0);
      if (v && v->is_number_integer()) return v->get<int32_t>();
      return std::nullopt;
    };
    if (auto v = id("bos_token_id")) info.bos = v;
    if (auto v = id("eos_token_id")) info.eos = v;
    if (auto v = id("pad_token_id")) info.pad = v;
  }
  const json tc = object(path_join(model_dir, "tokenizer_config.json"));
  if (const json* t = field(tc, "chat_template"); t && t->is_string())
    info.chat_template = t->get<std::string>();
  if (const json* b = field(tc, "add_bos_token"); b && b->is_boolean()) info.add_bos = b->get<bool>();
  io::GgufWriter w;
  add_gguf_tokenizer(w, read_file(path), path, info);
  return w.metadata;
}

std::unique_ptr<tok::Tokenizer> load_gguf_tokenizer(const std::string& path) {
  const io::GgufFile g = io::GgufFile::open(path);
  const std::optional<std::string> text = gguf_tokenizer_json(g);
  if (!text) return nullptr;
  return tok::Tokenizer::from_json_text(*text, path + " (tokenizer.ggml.*)");
}

}  // namespace mamba::runtime
