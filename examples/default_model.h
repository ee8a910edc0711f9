// The model the examples use when no --model is given: $KESTREL_MODEL, else the one
// scripts/run-example.sh prepared (the test fixture until a real model is bundled).
#pragma once

#include <cstdlib>
#include <string>

namespace kestrel_examples {

inline std::string default_model_path() {
  if (const char* env = std::getenv("KESTREL_MODEL"); env && *env) return env;
  return KESTREL_DEFAULT_MODEL;
}

}  // namespace kestrel_examples
