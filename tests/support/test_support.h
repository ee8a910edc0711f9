// Helpers shared by the test binaries.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "kestrel/session.h"

namespace kestrel::testing {

// `options` with an f32 KV cache: what a test runs with when it compares logits with an fp32
// reference (transformers, a model's dequantized self, the same model unsplit) at fp32
// tolerances. The CPU's default cache is f16 (SessionOptions::kv_dtype).
inline SessionOptions f32_cache(SessionOptions options = {}) {
  options.kv_dtype = DType::f32;
  return options;
}

// tests/fixtures in the source tree.
std::filesystem::path fixture_dir();
// A fresh, empty directory for one test's files (removed at exit of the process).
std::filesystem::path temp_dir(const std::string& name);
void write_file(const std::filesystem::path& path, const std::string& bytes);
std::string read_file(const std::filesystem::path& path);
// Deterministic pseudo-random floats in [lo, hi) (fresh per seed, never all zeros).
std::vector<float> random_floats(size_t count, uint64_t seed, float lo = -1.0f, float hi = 1.0f);

}  // namespace kestrel::testing
