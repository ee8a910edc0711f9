// The model the examples use when no --model is given: $KESTREL_MODEL, else the default
// model that scripts/fetch-default-model.sh puts in models/ (SmolLM2-135M-Instruct, Q4_1).
#pragma once

#include <cstdlib>
#include <string>

namespace kestrel_examples {

inline std::string default_model_path() {
  if (const char* env = std::getenv("KESTREL_MODEL"); env && *env) return env;
  return KESTREL_DEFAULT_MODEL;
}

}  // namespace kestrel_examples
