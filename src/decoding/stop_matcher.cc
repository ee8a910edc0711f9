#include "decoding/stop_matcher.h"

#include <algorithm>

namespace kestrel {

size_t incomplete_utf8_tail(std::string_view text) {
  // Walk back over at most 3 continuation bytes to the lead byte of the last character.
  const size_t n = text.size();
  for (size_t back = 1; back <= std::min<size_t>(4, n); ++back) {
    unsigned char c = static_cast<unsigned char>(text[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte
    size_t want = (c & 0x80) == 0 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    return want > back ? back : 0;
  }
  return 0;  // only continuation bytes or invalid: nothing to wait for
}

StopMatcher::StopMatcher(std::vector<std::string> stop_strings) : stops_(std::move(stop_strings)) {
  std::erase_if(stops_, [](const std::string& s) { return s.empty(); });
}

std::string StopMatcher::push(std::string_view bytes) {
  if (matched_) return {};
  const size_t old_size = text_.size();
  text_.append(bytes);

  // Earliest stop string that now appears; only windows that include a new byte are new.
  size_t cut = std::string::npos;
  for (const auto& stop : stops_) {
    size_t from = old_size >= stop.size() - 1 ? old_size - (stop.size() - 1) : 0;
    size_t at = text_.find(stop, from);
    if (at != std::string::npos) cut = std::min(cut, at);
  }
  if (cut != std::string::npos) {
    matched_ = true;
    text_.resize(std::max(cut, emitted_));
    std::string out = text_.substr(emitted_);
    emitted_ = text_.size();
    return out;
  }

  // Hold back the longest tail that is a proper prefix of some stop string.
  size_t hold = 0;
  const std::string_view pending = std::string_view(text_).substr(emitted_);
  for (const auto& stop : stops_) {
    for (size_t k = std::min(stop.size() - 1, pending.size()); k > hold; --k) {
      if (pending.substr(pending.size() - k) == std::string_view(stop).substr(0, k)) {
        hold = k;
        break;
      }
    }
  }
  size_t end = text_.size() - hold;
  end -= incomplete_utf8_tail(std::string_view(text_).substr(emitted_, end - emitted_));
  std::string out = text_.substr(emitted_, end - emitted_);
  emitted_ = end;
  return out;
}

std::string StopMatcher::flush() {
  std::string out = text_.substr(emitted_);
  emitted_ = text_.size();
  return out;
}

}  // namespace kestrel
