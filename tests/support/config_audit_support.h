// Helpers of the config-audit tests (tests/unit/*config*_test.cc, rope_scaling_test.cc):
// a fixture's config.json as JSON, its Architecture without weights, and the refusal check;
// the same for GGUF metadata.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kestrel/error.h"
#include "loaders/gguf.h"
#include "models/architecture.h"
#include "test_support.h"

namespace kestrel::testing {

inline nlohmann::json fixture_config(const char* folder) {
  std::ifstream in(fixture_dir() / folder / "config.json");
  return nlohmann::json::parse(in);
}

// The architecture config.json describes, as if the checkpoint held no optional tensor.
inline Architecture describe(const nlohmann::json& config) {
  return architecture_from_hf_json(config, "config.json", [](const std::string&) { return false; });
}

// Expects describing `config` to throw Error(category) whose message names every part.
inline void expect_refused(const nlohmann::json& config, ErrorCategory category,
                           const std::vector<std::string>& parts) {
  try {
    describe(config);
    ADD_FAILURE() << "accepted " << config.dump();
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), category) << e.what();
    for (const auto& p : parts) EXPECT_NE(e.message().find(p), std::string::npos) << p << " in: " << e.what();
  }
}

// The architecture a GGUF file's metadata describes.
inline Architecture describe_gguf(const std::filesystem::path& path) { return architecture_from_gguf(GgufFile(path)); }

// Expects describing the GGUF file at `path` to throw Error(category) naming every part.
inline void expect_gguf_refused(const std::filesystem::path& path, ErrorCategory category,
                                const std::vector<std::string>& parts) {
  try {
    describe_gguf(path);
    ADD_FAILURE() << path << ": accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), category) << e.what();
    for (const auto& p : parts) EXPECT_NE(e.message().find(p), std::string::npos) << p << " in: " << e.what();
  }
}

}  // namespace kestrel::testing
