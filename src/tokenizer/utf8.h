// UTF-8 helpers for the tokenizer: validation, lossy decoding (each maximal ill-formed
// subpart becomes one U+FFFD, as Rust's from_utf8_lossy and Python's "replace" do).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace mamba::tok {

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// Length of the well-formed UTF-8 sequence at the start of `bytes`: 1..4 for a complete
// character, 0 for an ill-formed one. `*valid_prefix` gets how many leading bytes could still
// begin a valid character (1..3 when `bytes` ends mid-character, which is then "incomplete").
size_t utf8_sequence_length(std::string_view bytes, size_t* valid_prefix);

// Appends `bytes` to `out` as valid UTF-8 and returns how many bytes were consumed. When
// `final` is false an incomplete character at the very end is left unconsumed (for streaming).
size_t utf8_append_lossy(std::string_view bytes, std::string& out, bool final);

std::string utf8_lossy(std::string_view bytes);

// Offset of the first ill-formed byte, or npos when `bytes` is valid UTF-8.
size_t utf8_first_invalid(std::string_view bytes);

// Decodes the (valid) character at `bytes[pos]`; advances `pos` past it.
uint32_t utf8_decode_at(std::string_view bytes, size_t& pos);
void utf8_append_codepoint(uint32_t cp, std::string& out);

// Unicode White_Space (Rust's char::is_whitespace), for added-token lstrip/rstrip.
bool is_unicode_whitespace(uint32_t cp);

}  // namespace mamba::tok
