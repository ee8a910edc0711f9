// core/json_depth.h: how deep brackets nest in JSON text, counted without parsing it.
//
// nlohmann parses and copies values recursively, so text from a client or a model that
// nests 100,000 deep could exhaust the stack: callers refuse it by this count first.
#pragma once

#include <algorithm>
#include <string_view>

namespace kestrel {

// The deepest nesting of [ and { outside strings ("a\"]" does not count).
inline int json_nesting_depth(std::string_view text) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

}  // namespace kestrel
