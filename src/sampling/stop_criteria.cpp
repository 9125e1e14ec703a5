// StopCriteria: earliest stop-string match, and the longest text suffix that is a proper prefix
// of a stop string (held back while streaming).
#include "sampling/stop_criteria.h"

#include <algorithm>

namespace mamba::sampling {

bool StopCriteria::is_eos(int32_t token) const {
  return std::find(eos_ids.begin(), eos_ids.end(), token) != eos_ids.end();
}

StopCheck StopCriteria::check(std::string_view text, size_t search_from) const {
  StopCheck result;
  search_from = std::min(search_from, text.size());

  // Earliest occurrence wins: the text before it is what the user sees.
  size_t earliest = std::string_view::npos;
  for (size_t s = 0; s < stop_strings.size(); ++s) {
    const std::string& stop = stop_strings[s];
    if (stop.empty()) continue;
    const size_t pos = text.find(stop, search_from);
    if (pos < earliest) {
      earliest = pos;
      result.stop_index = static_cast<int>(s);
    }
  }
  if (earliest != std::string_view::npos) {
    result.stopped = true;
    result.text_end = earliest;
    return result;
  }

  // No match: hold back the longest suffix (starting at or after search_from) that a stop
  // string begins with. A full-length suffix would have been a match, so k < stop.size().
  const size_t searchable = text.size() - search_from;
  for (const std::string& stop : stop_strings) {
    const size_t k_max = std::min(stop.size() - (stop.empty() ? 0 : 1), searchable);
    for (size_t k = k_max; k > result.held_back; --k) {
      if (text.substr(text.size() - k) == std::string_view(stop).substr(0, k)) {
        result.held_back = k;
        break;
      }
    }
  }
  result.text_end = text.size() - result.held_back;
  return result;
}

}  // namespace mamba::sampling
