// decoding/stop_matcher.h: the streamed text of one sequence, with stop strings.
//
// Bytes arrive one token at a time. A stop string may be split across tokens, so the
// matcher holds back the longest tail that could still start a stop string, and any
// tail that ends inside a UTF-8 character; everything before is final and streamed.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kestrel {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stop_strings);

  // Appends a token's bytes and returns the text that became final. When a stop string
  // appears, the text is cut where it begins and matched() turns true.
  std::string push(std::string_view bytes);
  // Releases whatever is held back (the sequence ended for another reason).
  std::string flush();

  bool matched() const { return matched_; }
  // All text so far (cut before the stop string when matched).
  const std::string& text() const { return text_; }

 private:
  std::vector<std::string> stops_;
  std::string text_;
  size_t emitted_ = 0;
  bool matched_ = false;
};

// Bytes at the end of `text` that form an incomplete UTF-8 character (0 to 3).
size_t incomplete_utf8_tail(std::string_view text);

}  // namespace kestrel
