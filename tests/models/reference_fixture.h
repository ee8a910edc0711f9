// Reads a Hugging Face reference fixture made by tests/fixtures/make_tiny_*.py:
// reference.json (prompts, their ids, 20 greedy tokens) and reference.safetensors
// (logits.{i}: [len(ids_i), vocab] f32 at every prompt position).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <kestrel/decoder.h>

namespace kestrel::testing {

struct ReferencePrompt {
  std::string text;
  std::vector<int32_t> ids;
  std::vector<int32_t> greedy;
  std::vector<float> logits;  // [ids.size(), vocab]
};

std::vector<ReferencePrompt> load_reference(const std::filesystem::path& dir, int vocab);

// The request that reproduces the reference's greedy tokens: its prompt ids, as many new
// tokens as the reference has, not stopping at EOS (the reference does not).
GenerationRequest greedy_request(const ReferencePrompt& p);

}  // namespace kestrel::testing
