// Decoders of HF tokenizer.json: ids -> tokens (as written in the file) -> text. Supported:
// ByteLevel, Replace (String or Regex), ByteFallback, Fuse, Strip, Metaspace, Sequence, and
// null (tokens joined with " ", as HF does). Semantics follow HF's decode_chain, including
// ByteFallback's rule that a run of <0xXX> tokens that is not valid UTF-8 as a whole becomes
// one U+FFFD per token.
//
// Decoding is done by a Stream that takes tokens one at a time and returns the text that is
// final so far: every stage is an incremental transducer that holds back only what later
// tokens could still change (a run of byte tokens, trailing Strip characters after Fuse, the
// tail of a Replace pattern). decode() is push-all-then-flush, so the streamed pieces always
// concatenate to exactly decode()'s result.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/json_fields.h"
#include "tokenizer/pre_tokenizer.h"

namespace mamba::tok {

class Decoder {
public:
  // Parses the "decoder" value (null allowed). Throws Error naming `place`.
  static Decoder from_json(const json& value, const JsonPlace& place);

  // Exactly one ByteLevel step: the byte-level tokenizer's fast path applies.
  bool byte_level_only() const { return stages_.size() == 1 && stages_[0].kind == Kind::byte_level; }

  // The text one token stands for on its own, as raw bytes: Replace and Metaspace applied (as
  // for a token that is not the first), a <0xXX> byte token as its byte, no Strip / Fuse.
  std::string token_piece(std::string_view token) const;

  std::string decode(const std::vector<std::string_view>& tokens) const;

  class Stream {
  public:
    explicit Stream(const Decoder& decoder);
    std::string push(std::string_view token);
    std::string flush();  // everything held back; then starts afresh

  private:
    struct Piece {
      std::string text;
      bool starts;  // begins a token
      bool whole;   // is a whole token
    };
    struct State {
      std::string held;        // Replace: unmatched tail; ByteFallback: the byte run; ByteLevel: bytes
      size_t count = 0;        // ByteFallback: byte tokens in the run; Strip: trailing chars held
      size_t index = 0;        // Metaspace: tokens seen; Strip: leading chars left to strip
      bool flag = false;       // Fuse / JoinSpace / ByteLevel: any piece seen; Strip: leading
      bool invalid = false;    // ByteFallback: the current run is already known to be invalid
      bool started = false;    // an output piece of the current token was sent on
      bool buffering = false;  // a token arrived in fragments and has not ended yet
    };
    void feed(size_t stage, Piece piece);
    void finish(size_t stage);
    void end_token(size_t stage);
    void send(size_t stage, std::string text, bool starts, bool whole) {
      feed(stage + 1, Piece{std::move(text), starts, whole});
    }
    void end_byte_run(size_t stage);

    const Decoder& decoder_;
    std::vector<State> states_;
    std::string out_;
  };

private:
  enum class Kind { byte_level, replace, byte_fallback, fuse, strip, metaspace, join_space };
  struct Stage {
    Kind kind = Kind::fuse;
    std::string pattern, content;        // replace (literal pattern); strip: content char
    std::shared_ptr<const Regex> regex;  // replace with a Regex
    size_t start = 0, stop = 0;          // strip
    std::string replacement;             // metaspace
    bool strip_first = true;             // metaspace: prepend_scheme != never
  };
  void add_stages(const json& value, const JsonPlace& place);

  std::vector<Stage> stages_;
};

// The byte of a "<0xXX>" token, or -1.
int byte_token_value(std::string_view token);

}  // namespace mamba::tok
