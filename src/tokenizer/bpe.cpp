// BPE (see bpe.h): loading tokenizer.json, encode = added-token split -> normalizer ->
// pre-tokenizer words -> per-word merges (cached), and decode through the decoder chain.
#include "tokenizer/bpe.h"

#include <algorithm>
#include <queue>

#include "tokenizer/utf8.h"

namespace mamba::tok {
namespace {

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

// BOS/EOS as the post_processor would add them: special tokens before / after the text.
void find_bos_eos(const json& processor, const JsonPlace& place, std::optional<int32_t>& bos,
                  std::optional<int32_t>& eos) {
  if (!processor.is_object()) return;
  const std::string type = processor.value("type", "");
  if (type == "Sequence") {
    if (const json* list = find_field(processor, "processors"); list && list->is_array()) {
      for (size_t i = 0; i < list->size(); ++i) {
        find_bos_eos((*list)[i], (place / "processors").at(i), bos, eos);
      }
    }
  } else if (type == "TemplateProcessing") {
    const json* single = find_field(processor, "single");
    const json* specials = find_field(processor, "special_tokens");
    if (!single || !single->is_array() || !specials) return;
    bool after_text = false;
    for (const json& piece : *single) {
      if (piece.contains("Sequence")) after_text = true;
      if (!piece.contains("SpecialToken")) continue;
      const std::string name = piece["SpecialToken"].value("id", "");
      const json* entry = find_field(*specials, name.c_str());
      const json* ids = entry ? find_field(*entry, "ids") : nullptr;
      if (!ids || !ids->is_array() || ids->size() != 1) continue;
      const int32_t id = get_id((*ids)[0], place / "special_tokens" / name / "ids");
      std::optional<int32_t>& slot = after_text ? eos : bos;
      if (!slot) slot = id;
    }
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    const json* cls = find_field(processor, "cls");
    const json* sep = find_field(processor, "sep");
    if (cls && cls->is_array() && cls->size() == 2) bos = get_id((*cls)[1], place / "cls");
    if (sep && sep->is_array() && sep->size() == 2) eos = get_id((*sep)[1], place / "sep");
  }
}

// A merge as "left right" or ["left", "right"].
std::pair<std::string, std::string> parse_merge(const json& entry, const JsonPlace& place) {
  if (entry.is_string()) {
    const std::string text = entry.get<std::string>();
    const size_t space = text.find(' ');
    if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos) {
      place.fail(ErrorCode::parse, "expected \"left right\", found \"", text, "\"");
    }
    return {text.substr(0, space), text.substr(space + 1)};
  }
  if (entry.is_array() && entry.size() == 2 && entry[0].is_string() && entry[1].is_string()) {
    return {entry[0].get<std::string>(), entry[1].get<std::string>()};
  }
  place.fail(ErrorCode::parse, "expected \"left right\" or [\"left\", \"right\"], found ",
             json_excerpt(entry));
}

}  // namespace

BpeTokenizer::BpeTokenizer(const json& root, const std::string& path) {
  const JsonPlace file{path, ""};
  const json* normalizer = find_field(root, "normalizer");
  normalizer_ = Normalizer::from_json(normalizer ? *normalizer : json(), file / "normalizer");
  const json* pre = find_field(root, "pre_tokenizer");
  pre_tokenizer_ = PreTokenizer::from_json(pre ? *pre : json(), file / "pre_tokenizer");
  byte_level_ = pre_tokenizer_.byte_level();
  const json* decoder = find_field(root, "decoder");
  decoder_ = Decoder::from_json(decoder ? *decoder : json(), file / "decoder");
  load_model(require_field(root, "model", file), file / "model");
  load_added_tokens(root, file / "added_tokens");
  token_bytes_.resize(token_strings_.size());
  for (size_t id = 0; id < token_strings_.size(); ++id) {
    if (known_[id]) token_bytes_[id] = decoder_.token_piece(token_strings_[id]);
  }
  if (const json* processor = find_field(root, "post_processor")) {
    find_bos_eos(*processor, file / "post_processor", bos_id_, eos_id_);
  }
}

void BpeTokenizer::load_model(const json& model, const JsonPlace& place) {
  require_object(model, place);
  if (const json* dropout = find_field(model, "dropout");
      dropout && !(dropout->is_number() && dropout->get<double>() == 0.0)) {
    (place / "dropout")
        .fail(ErrorCode::unsupported, "BPE dropout is not supported, found ", json_excerpt(*dropout));
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const json* affix = find_field(model, key);
    if (affix && !(affix->is_string() && affix->get<std::string>().empty())) {
      (place / key)
          .fail(ErrorCode::unsupported, "expected null for byte-level BPE, found ", json_excerpt(*affix));
    }
  }
  byte_fallback_ = get_bool(model, "byte_fallback", false, place);
  fuse_unk_ = get_bool(model, "fuse_unk", false, place);
  ignore_merges_ = get_bool(model, "ignore_merges", false, place);

  const json& vocab = require_field(model, "vocab", place);
  if (!vocab.is_object()) {
    (place / "vocab").fail(ErrorCode::parse, "expected an object of token -> id, found ", vocab.type_name());
  }
  StringMap written;  // vocabulary strings as in the file
  int32_t max_id = -1;
  for (const auto& [token, value] : vocab.items()) {
    const int32_t id = get_id(value, place / "vocab" / token);
    written.emplace(token, id);
    max_id = std::max(max_id, id);
  }
  token_strings_.assign(static_cast<size_t>(max_id + 1), std::string());
  known_.assign(static_cast<size_t>(max_id + 1), false);
  std::string bytes;
  for (const auto& [token, id] : written) {
    token_strings_[id] = token;
    known_[id] = true;
    if (!byte_level_) {
      vocab_.emplace(token, id);
    } else if (unicode_to_bytes(token, bytes)) {
      vocab_.emplace(bytes, id);
    } else {
      unmapped_vocab_.emplace(token, id);  // the ByteLevel decoder passes such tokens through as UTF-8
    }
  }
  for (int b = 0; b < 256; ++b) {
    auto it = byte_level_ ? vocab_.find(std::string(1, static_cast<char>(b))) : vocab_.end();
    byte_ids_[b] = it == vocab_.end() ? -1 : it->second;
    static constexpr char kHex[] = "0123456789ABCDEF";
    const std::string name =
        std::string("<0x") + kHex[b >> 4] + kHex[b & 15] + ">";  // HF: format!("<{b:#04X}>")
    auto fallback = written.find(name);
    fallback_ids_[b] = fallback == written.end() ? -1 : fallback->second;
  }
  if (const json* unk = find_field(model, "unk_token")) {
    const std::string name = get_string(*unk, place / "unk_token");
    auto it = written.find(name);
    if (it == written.end())
      (place / "unk_token").fail(ErrorCode::parse, "\"", name, "\" is not in model.vocab");
    unk_id_ = it->second;
  }

  const json* merges = find_field(model, "merges");
  if (!merges) return;
  if (!merges->is_array())
    (place / "merges").fail(ErrorCode::parse, "expected an array, found ", merges->type_name());
  merges_.reserve(merges->size());
  auto lookup = [&](const std::string& token, const JsonPlace& at) {
    auto it = written.find(token);
    if (it == written.end()) at.fail(ErrorCode::parse, "token \"", token, "\" is not in model.vocab");
    return it->second;
  };
  for (size_t i = 0; i < merges->size(); ++i) {
    const JsonPlace at = (place / "merges").at(i);
    const auto [left, right] = parse_merge((*merges)[i], at);
    const int32_t left_id = lookup(left, at), right_id = lookup(right, at);
    const Merge merge{static_cast<int32_t>(i), lookup(left + right, at)};
    merges_.insert_or_assign(pair_key(left_id, right_id), merge);  // last wins, as in HF
  }
}

void BpeTokenizer::load_added_tokens(const json& root, const JsonPlace& place) {
  const json* list = find_field(root, "added_tokens");
  if (!list) return;
  if (!list->is_array()) place.fail(ErrorCode::parse, "expected an array, found ", list->type_name());
  std::vector<AddedToken> tokens;
  for (size_t i = 0; i < list->size(); ++i) {
    const json& entry = (*list)[i];
    const JsonPlace at = place.at(i);
    require_object(entry, at);
    AddedToken token;
    token.id = get_id(require_field(entry, "id", at), at / "id");
    token.content = get_string(require_field(entry, "content", at), at / "content");
    token.special = get_bool(entry, "special", false, at);
    token.single_word = get_bool(entry, "single_word", false, at);
    token.lstrip = get_bool(entry, "lstrip", false, at);
    token.rstrip = get_bool(entry, "rstrip", false, at);
    token.normalized = get_bool(entry, "normalized", !token.special, at);
    if (static_cast<size_t>(token.id) >= token_strings_.size()) {
      token_strings_.resize(token.id + 1);
      known_.resize(token.id + 1, false);
    }
    // Decoding looks added tokens up first (their content), then runs the decoder chain.
    token_strings_[token.id] = token.content;
    known_[token.id] = true;
    if (token.normalized && !normalizer_.identity()) token.pattern = normalizer_.apply(token.content);
    tokens.push_back(std::move(token));
  }
  added_ = AddedTokens(std::move(tokens));
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text) const {
  if (const size_t bad = utf8_first_invalid(text); bad != std::string_view::npos) {
    throw_error(ErrorCode::invalid_argument, "encode: text is not valid UTF-8 (at byte ", bad, ")");
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 1);
  std::vector<TextSegment> segments;
  std::vector<std::string> words;
  if (normalizer_.identity()) {
    added_.split(text, segments);
    for (const TextSegment& segment : segments) {
      if (segment.id >= 0) {
        ids.push_back(segment.id);
      } else {
        encode_piece(text.substr(segment.begin, segment.end - segment.begin), segment.begin == 0, words, ids);
      }
    }
    return ids;
  }
  // As HF: raw added tokens first, then each remaining piece is normalized on its own and
  // searched for the normalized added tokens.
  added_.split_raw(text, segments);
  std::vector<TextSegment> inner;
  for (const TextSegment& segment : segments) {
    if (segment.id >= 0) {
      ids.push_back(segment.id);
      continue;
    }
    const std::string normalized = normalizer_.apply(text.substr(segment.begin, segment.end - segment.begin));
    inner.clear();
    added_.split_normalized(normalized, inner);
    for (const TextSegment& piece : inner) {
      if (piece.id >= 0) {
        ids.push_back(piece.id);
      } else {
        encode_piece(std::string_view(normalized).substr(piece.begin, piece.end - piece.begin),
                     segment.begin == 0 && piece.begin == 0, words, ids);
      }
    }
  }
  return ids;
}

void BpeTokenizer::encode_piece(std::string_view piece, bool at_start, std::vector<std::string>& words,
                                std::vector<int32_t>& ids) const {
  words.clear();
  pre_tokenizer_.split(piece, words, at_start);
  for (const std::string& word : words) encode_word(word, ids);
}

void BpeTokenizer::encode_word(std::string_view word, std::vector<int32_t>& ids) const {
  if (word.empty()) return;
  if (ignore_merges_) {  // Llama-3: a word that is itself a token is taken whole
    if (auto it = vocab_.find(word); it != vocab_.end()) {
      ids.push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() < kCacheMaxWordBytes;
  if (cacheable) {
    std::shared_lock lock(cache_mutex_);
    if (auto it = cache_.find(word); it != cache_.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = ids.size();
  merge_word(word, ids);
  if (cacheable) {
    std::unique_lock lock(cache_mutex_);
    if (cache_.size() < kCacheCapacity) {
      cache_.emplace(std::string(word), std::vector<int32_t>(ids.begin() + first, ids.end()));
    }
  }
}

// One word: start from single bytes, then repeatedly apply the lowest-ranked merge present
// (ties: leftmost), via a priority queue whose stale entries are skipped on pop (HF word.rs).
void BpeTokenizer::merge_word(std::string_view word, std::vector<int32_t>& ids) const {
  struct Symbol {
    int32_t id;
    int32_t prev, next;  // neighbours in the linked list, -1 at the ends
    bool alive;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto add = [&](int32_t id) {
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, index - 1, -1, true});
    if (index > 0) symbols[index - 1].next = index;
  };
  if (byte_level_) {
    bool previous_unk = false;
    for (char c : word) {
      int32_t id = byte_ids_[static_cast<uint8_t>(c)];
      const bool is_unk = id < 0;
      if (is_unk) {
        if (!unk_id_) continue;  // HF drops a byte that is neither in the vocab nor unk
        if (fuse_unk_ && previous_unk) continue;
        id = *unk_id_;
      }
      previous_unk = is_unk;
      add(id);
    }
  } else {
    // Characters as written; else their bytes as <0xXX> tokens (byte_fallback); else unk. As in
    // HF model.rs, a pending unk is added when the next known character comes, not before
    // byte-fallback tokens.
    bool pending_unk = false;
    for (size_t pos = 0; pos < word.size();) {
      size_t next = pos;
      utf8_decode_at(word, next);
      const std::string_view ch = word.substr(pos, next - pos);
      pos = next;
      if (auto it = vocab_.find(ch); it != vocab_.end()) {
        if (pending_unk) add(*unk_id_);
        pending_unk = false;
        add(it->second);
        continue;
      }
      if (byte_fallback_ && std::all_of(ch.begin(), ch.end(), [&](char b) {
            return fallback_ids_[static_cast<uint8_t>(b)] >= 0;
          })) {
        for (char b : ch) add(fallback_ids_[static_cast<uint8_t>(b)]);
        continue;
      }
      if (!unk_id_) continue;
      if (pending_unk && !fuse_unk_) add(*unk_id_);
      pending_unk = true;
    }
    if (pending_unk) add(*unk_id_);
  }
  if (symbols.empty()) return;

  struct Candidate {
    int32_t rank, pos, new_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto push_pair = [&](int32_t pos) {
    const int32_t next = symbols[pos].next;
    if (next < 0) return;
    auto it = merges_.find(pair_key(symbols[pos].id, symbols[next].id));
    if (it != merges_.end()) queue.push({it->second.rank, pos, it->second.new_id});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) push_pair(i);

  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    auto it = merges_.find(pair_key(left.id, right.id));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;  // stale entry
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    if (left.prev >= 0) push_pair(left.prev);
    push_pair(top.pos);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) ids.push_back(symbols[i].id);
}

std::string BpeTokenizer::token_text(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= token_bytes_.size()) return {};
  return token_bytes_[id];
}

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids) const {
  for (int32_t id : ids) {
    if (!known(id)) {
      throw_error(ErrorCode::out_of_range, "decode: token id ", id, " is not in the vocabulary (",
                  vocab_size(), " ids)");
    }
  }
  if (decoder_.byte_level_only()) {  // fast path: the bytes of each token, then lossy UTF-8
    std::string bytes;
    for (int32_t id : ids) bytes += token_bytes_[id];
    return utf8_lossy(bytes);
  }
  std::vector<std::string_view> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) tokens.emplace_back(token_strings_[id]);
  return decoder_.decode(tokens);
}

class BpeTokenizer::Stream final : public DecodeStream {
public:
  explicit Stream(const BpeTokenizer& tokenizer) : tokenizer_(tokenizer), stream_(tokenizer.decoder_) {}
  std::string push(int32_t id) override {
    return tokenizer_.known(id) ? stream_.push(tokenizer_.token_strings_[id]) : std::string();
  }
  std::string flush() override { return stream_.flush(); }

private:
  const BpeTokenizer& tokenizer_;
  Decoder::Stream stream_;
};

std::unique_ptr<DecodeStream> BpeTokenizer::decode_stream() const {
  if (decoder_.byte_level_only()) return nullptr;  // token bytes + UTF-8 holdback suffice
  return std::make_unique<Stream>(*this);
}

std::optional<int32_t> BpeTokenizer::token_id(std::string_view token) const {
  if (auto id = added_.find(token)) return id;
  if (!byte_level_) {
    if (auto it = vocab_.find(token); it != vocab_.end()) return it->second;
    return std::nullopt;
  }
  std::string bytes;
  if (unicode_to_bytes(token, bytes)) {
    if (auto it = vocab_.find(bytes); it != vocab_.end()) return it->second;
  }
  if (auto it = unmapped_vocab_.find(token); it != unmapped_vocab_.end()) return it->second;
  return std::nullopt;
}

}  // namespace mamba::tok
