// Byte-level BPE from a Hugging Face tokenizer.json (GPT-2, Llama-3 and their kin). The whole
// model works on raw bytes: vocabulary strings are mapped back through bytes_to_unicode at
// load, so encode never builds the "Ġ" form. Merges apply lowest rank first (HF word.rs).
#pragma once
#include <array>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

#include "tokenizer/added_tokens.h"
#include "tokenizer/json_fields.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace mamba::tok {

class BpeTokenizer final : public Tokenizer {
public:
  // `root` is the parsed tokenizer.json; `path` names it in error messages.
  BpeTokenizer(const json& root, const std::string& path);

  std::vector<int32_t> encode(std::string_view text) const override;
  std::string token_text(int32_t id) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(token_bytes_.size()); }
  std::optional<int32_t> token_id(std::string_view token) const override;
  std::optional<int32_t> bos_id() const override { return bos_id_; }
  std::optional<int32_t> eos_id() const override { return eos_id_; }

private:
  struct Merge {
    int32_t rank;    // position in model.merges: lower merges first
    int32_t new_id;  // id of the merged token
  };
  // Hashes std::string and std::string_view alike, so lookups need no copy.
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using StringMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

  void load_model(const json& model, const JsonPlace& place);
  void load_added_tokens(const json& root, const JsonPlace& place);
  void encode_word(std::string_view word, std::vector<int32_t>& ids) const;
  void merge_word(std::string_view word, std::vector<int32_t>& ids) const;

  StringMap vocab_;                             // token bytes -> id (byte-level tokens only)
  StringMap unmapped_vocab_;                    // vocab strings with no byte-level reading, as written
  std::vector<std::string> token_bytes_;        // id -> bytes ("" for holes)
  std::array<int32_t, 256> byte_ids_{};         // id of each single byte, -1 if absent
  std::unordered_map<uint64_t, Merge> merges_;  // (left id << 32 | right id) -> merge
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  AddedTokens added_;
  PreTokenizer pre_tokenizer_;
  std::optional<int32_t> bos_id_, eos_id_;

  // Word -> ids cache (HF keeps one too); bounded, filled until full.
  static constexpr size_t kCacheCapacity = 1 << 16;
  static constexpr size_t kCacheMaxWordBytes = 256;
  mutable std::shared_mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;
};

}  // namespace mamba::tok
