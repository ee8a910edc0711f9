// SmoothQuant (src/tools/smoothquant.h, kestrel-quantize) on the tiny fixtures: the
// smoothed checkpoint computes what the source model computes in f32 (the fold only moves
// scale between activations and weights: logits within 1e-5 of the logit scale), loads as
// W8A8 by default, stays close to transformers' reference, and bad input is refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "kestrel/kestrel.h"
#include "reference_fixture.h"
#include "test_support.h"
#include "tools/smoothquant.h"

namespace kestrel {
namespace {

namespace fs = std::filesystem;

std::string calibration_text() {
  std::ifstream in(testing::fixture_dir() / "perplexity" / "sqlite3-api-comments.txt", std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str().substr(0, 4000);
}

std::shared_ptr<const Model> load(const fs::path& path, Quantization mode) {
  ModelOptions options;
  options.quantization = mode;
  return Model::load(path, options);
}

class SmoothQuant : public ::testing::TestWithParam<std::string> {};

TEST_P(SmoothQuant, FoldKeepsTheF32OutputsAndLoadsAsW8A8) {
  const fs::path source = testing::fixture_dir() / GetParam();
  auto model = load(source, Quantization::none);
  const std::vector<int32_t> ids = model->tokenizer().encode(calibration_text(), false);
  tools::SmoothQuantOptions options;
  options.calibration_tokens = 300;
  const tools::Calibration calibration = tools::calibrate_smoothquant(model, ids, options);
  ASSERT_EQ(calibration.layers.size(), static_cast<size_t>(model->config().num_layers));
  EXPECT_EQ(calibration.tokens, 300);
  // The factors are not all 1: the smoothing does something.
  float spread = 0.0f, out_spread = 0.0f;
  for (const auto& layer : calibration.layers) {
    for (float s : layer.attn_in) spread = std::max(spread, std::abs(std::log(s)));
    ASSERT_EQ(layer.out_in.size(), static_cast<size_t>(model->config().num_kv_heads * model->config().head_dim));
    for (float s : layer.out_in) out_spread = std::max(out_spread, std::abs(std::log(s)));
  }
  EXPECT_GT(spread, 0.1f);
  EXPECT_GT(out_spread, 0.1f);
  const fs::path out = testing::temp_dir("smoothquant") / GetParam();
  tools::write_smoothquant_checkpoint(*model, calibration, options, out);

  const auto prompts = testing::load_reference(
      source.extension() == ".gguf" ? testing::fixture_dir() / "tiny-llama-gguf" : source, model->config().vocab_size);
  auto smoothed = load(out, Quantization::none);
  auto w8a8 = load(out, Quantization::automatic);
  EXPECT_NE(w8a8->weight_formats().find("w8a8"), std::string::npos) << w8a8->weight_formats();
  Session a(model), b(smoothed), c(w8a8);
  Decoder original(a), folded(b), quantized(c);
  double sq_err = 0.0, sq_ref = 0.0;
  for (const auto& p : prompts) {
    const std::vector<float> want = original.score(p.ids), got = folded.score(p.ids), q = quantized.score(p.ids);
    float scale = 0.0f, diff = 0.0f;
    for (size_t i = 0; i < want.size(); ++i) {
      scale = std::max(scale, std::abs(want[i]));
      diff = std::max(diff, std::abs(got[i] - want[i]));
      sq_err += (q[i] - want[i]) * double(q[i] - want[i]);
      sq_ref += want[i] * double(want[i]);
    }
    EXPECT_LE(diff, 1e-5f * scale) << p.text;
  }
  // W8A8 of the smoothed weights: within the bound of W8A8 at load (quantized_model_test).
  const double rms = std::sqrt(sq_err / sq_ref);
  std::cout << "[smoothquant] " << GetParam() << ": W8A8 rms logit error " << rms << " of the rms logit\n";
  EXPECT_LE(rms, 0.2);
}

// tiny-llama: GQA (4 query heads over 2 KV heads); tiny-gpt-neox: QKV heads interleaved
// in one tensor; tiny-gptj: one norm shared by attention and FFN; tiny-qwen2: QKV biases.
INSTANTIATE_TEST_SUITE_P(Fixtures, SmoothQuant,
                         ::testing::Values("tiny-llama", "tiny-gpt2", "tiny-llama.gguf", "tiny-gpt-neox", "tiny-gptj",
                                           "tiny-qwen2"),
                         [](const auto& info) {
                           std::string name = info.param == "tiny-llama.gguf" ? "gguf" : info.param.substr(5);
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

TEST(SmoothQuantErrors, BadOptionsAndInputsAreRefusedByName) {
  tools::SmoothQuantOptions bad;
  bad.alpha = 1.5f;
  EXPECT_THROW(tools::validate(bad), Error);
  try {
    tools::validate(bad);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("alpha"), std::string::npos) << e.what();
  }
  // A quantized model cannot be calibrated.
  auto quantized = load(testing::fixture_dir() / "tiny-llama", Quantization::int8);
  const std::vector<int32_t> ids = {1, 2, 3};
  EXPECT_THROW(tools::calibrate_smoothquant(quantized, ids, {}), Error);
  // An unknown checkpoint format is refused naming the key.
  const fs::path dir = testing::temp_dir("smoothquant") / "bad-format";
  fs::create_directories(dir);
  for (const auto& entry : fs::directory_iterator(testing::fixture_dir() / "tiny-llama"))
    fs::copy_file(entry.path(), dir / entry.path().filename(), fs::copy_options::overwrite_existing);
  std::ifstream in(dir / "config.json");
  nlohmann::json config = nlohmann::json::parse(in);
  in.close();
  config["kestrel_quantization"] = {{"format", "fp4"}};
  std::ofstream(dir / "config.json") << config.dump();
  try {
    load(dir, Quantization::automatic);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("kestrel_quantization.format = 'fp4'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kestrel
