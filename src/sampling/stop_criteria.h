// When generation stops: end-of-sequence token ids and stop strings. For streaming, check()
// also says how many trailing bytes to hold back because they could begin a stop string.
// Strings are matched as bytes (a stop string is never printed, nor any part of one).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mamba::sampling {

// What check() found in the text generated so far.
struct StopCheck {
  // A stop string occurs in the text; generation should end.
  bool stopped = false;
  // text[0, text_end) may be shown: the start of the first stop string when stopped, else
  // text.size() - held_back.
  size_t text_end = 0;
  // Trailing bytes that are a proper prefix of some stop string (0 when stopped): show them
  // only once later text rules the stop string out.
  size_t held_back = 0;
  // Which entry of stop_strings matched (the first in list order among those starting at the
  // earliest position); -1 when not stopped.
  int stop_index = -1;
};

struct StopCriteria {
  std::vector<int32_t> eos_ids = {};           // any of these ends the sequence (not printed)
  std::vector<std::string> stop_strings = {};  // empty strings are ignored

  bool is_eos(int32_t token) const;

  // `text`: everything generated so far (the prompt excluded). `search_from`: matches starting
  // before it are not looked for; pass the previous call's text_end to make a stream linear —
  // no match can start before it, since those bytes were not held back.
  StopCheck check(std::string_view text, size_t search_from = 0) const;
};

}  // namespace mamba::sampling
