// BPE from a Hugging Face tokenizer.json, in two flavours chosen by the pre-tokenizer:
// - byte-level (a ByteLevel step: GPT-2, Llama-3 and their kin): the model works on raw bytes;
//   vocabulary strings are mapped back through bytes_to_unicode at load, so encode never
//   builds the "Ġ" form;
// - character-level (SentencePiece-style: Llama-2, Mistral, Jamba, Zamba2): words are UTF-8
//   characters looked up as written ("▁the"), with byte_fallback to <0xXX> tokens, unk_token
//   and fuse_unk, and a normalizer (Prepend / Replace) and/or a Metaspace pre-tokenizer.
// Encode: non-normalized added tokens split out of the raw text -> each remaining piece
// normalized -> normalized added tokens split out -> pre-tokenizer words -> per-word merges,
// lowest rank first (HF word.rs). Decode runs the file's decoder chain (decoder.h).
#pragma once
#include <array>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

#include "tokenizer/added_tokens.h"
#include "tokenizer/decoder.h"
#include "tokenizer/json_fields.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace mamba::tok {

class BpeTokenizer final : public Tokenizer {
public:
  // `root` is the parsed tokenizer.json; `path` names it in error messages.
  BpeTokenizer(const json& root, const std::string& path);

  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  std::unique_ptr<DecodeStream> decode_stream() const override;
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
  void encode_piece(std::string_view piece, bool at_start, std::vector<std::string>& words,
                    std::vector<int32_t>& ids) const;
  void encode_word(std::string_view word, std::vector<int32_t>& ids) const;
  void merge_word(std::string_view word, std::vector<int32_t>& ids) const;
  bool known(int32_t id) const { return id >= 0 && static_cast<size_t>(id) < known_.size() && known_[id]; }

  class Stream;

  bool byte_level_ = true;                   // see the top of this file
  StringMap vocab_;                          // byte-level: token bytes -> id; else as written
  StringMap unmapped_vocab_;                 // byte-level: strings with no byte reading, as written
  std::vector<std::string> token_strings_;   // id -> token as written (added tokens' content)
  std::vector<bool> known_;                  // id -> whether any token has it
  std::vector<std::string> token_bytes_;     // id -> the bytes it stands for ("" for holes)
  std::array<int32_t, 256> byte_ids_{};      // byte-level: id of each single byte, -1 if absent
  std::array<int32_t, 256> fallback_ids_{};  // id of each "<0xXX>" token, -1 if absent
  bool byte_fallback_ = false;
  std::unordered_map<uint64_t, Merge> merges_;  // (left id << 32 | right id) -> merge
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  AddedTokens added_;
  Normalizer normalizer_;
  PreTokenizer pre_tokenizer_;
  Decoder decoder_;
  std::optional<int32_t> bos_id_, eos_id_;

  // Word -> ids cache (HF keeps one too); bounded, filled until full.
  static constexpr size_t kCacheCapacity = 1 << 16;
  static constexpr size_t kCacheMaxWordBytes = 256;
  mutable std::shared_mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;
};

}  // namespace mamba::tok
