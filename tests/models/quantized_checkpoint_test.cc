// Stored quantized checkpoints (kestrel-quantize --weights int8 | fp8,
// tools/quantized_checkpoint.h, models/stored_quantized.h) on the tiny fixtures: the stored
// integers and scales load as they are, so the checkpoint's logits equal bit for bit those
// of the smoothed floats quantized at load (same integers, same kernels); they stay within
// a stated bound of the f32 model; the linear weights take a quarter of the f32 bytes; a
// corrupt or inconsistent file is refused naming the tensor or key.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "kestrel/kestrel.h"
#include "loaders/safetensors.h"
#include "loaders/safetensors_writer.h"
#include "models/model_state.h"
#include "reference_fixture.h"
#include "test_support.h"
#include "tools/quantized_checkpoint.h"

namespace kestrel {
namespace {

namespace fs = std::filesystem;
using tools::CheckpointWeights;
using tools::ScaleGranularity;

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

// Every reference prompt's logits of each model, concatenated.
std::vector<float> logits(const std::shared_ptr<const Model>& model, const std::vector<testing::ReferencePrompt>& prompts) {
  Session session(model);
  Decoder decoder(session);
  std::vector<float> all;
  for (const auto& p : prompts) {
    const std::vector<float> l = decoder.score(p.ids);
    all.insert(all.end(), l.begin(), l.end());
  }
  return all;
}

// The rms of (got - want) over the rms of want.
double rms_error(const std::vector<float>& got, const std::vector<float>& want) {
  double err = 0.0, ref = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    err += (got[i] - want[i]) * double(got[i] - want[i]);
    ref += want[i] * double(want[i]);
  }
  return std::sqrt(err / ref);
}

void expect_bit_equal(const std::vector<float>& a, const std::vector<float>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  size_t differ = 0;
  for (size_t i = 0; i < a.size(); ++i) differ += std::memcmp(&a[i], &b[i], sizeof(float)) != 0 ? 1 : 0;
  EXPECT_EQ(differ, 0u) << what << ": " << differ << " of " << a.size() << " logits differ";
}

tools::Calibration calibrate(const std::shared_ptr<const Model>& model, const tools::SmoothQuantOptions& options) {
  return tools::calibrate_smoothquant(model, model->tokenizer().encode(calibration_text(), false), options);
}

void write(const std::shared_ptr<const Model>& model, const tools::Calibration* calibration,
           const tools::SmoothQuantOptions& smoothing, CheckpointWeights weights, const fs::path& out,
           ScaleGranularity scale = ScaleGranularity::channel) {
  tools::QuantizedCheckpointOptions o;
  o.weights = weights;
  o.fp8_scale = scale;
  tools::write_quantized_checkpoint(*model, calibration, smoothing, o, out);
}

// The bytes of the linear weights (and their scales) in a checkpoint's model.safetensors.
size_t linear_bytes(const fs::path& dir, const Model& model) {
  const Architecture& arch = model.state().arch;
  SafetensorsFile file(dir / "model.safetensors");
  size_t bytes = 0;
  for (int l = 0; l < arch.config.num_layers; ++l)
    for (WeightSlot slot : {WeightSlot::qkv_weight, WeightSlot::out_weight, WeightSlot::up_weight, WeightSlot::down_weight})
      for (const auto& name : arch.recipe(slot, l).sources)
        for (const std::string& n : {name, name + "_scale"})
          if (auto it = file.tensors().find(n); it != file.tensors().end()) bytes += it->second.bytes;
  return bytes;
}

class QuantizedCheckpoint : public ::testing::TestWithParam<std::string> {};

// The W8A8 / FP8 logit error bounds of the fixtures (rms over the rms logit), those of
// quantized_model_test.cc's load-time cases: measured (2026-11-30, printed) int8 0.080 /
// 0.035 / 0.028 and fp8 0.28 / 0.15 / 0.11 (per tensor 0.28 / 0.15 / 0.12) on tiny Llama /
// GPT-2 / GPT-NeoX. FP8's 3 mantissa bits cost about 4x int8's error on uniform random weights.
constexpr double kInt8Bound = 0.2, kFp8Bound = 0.35;

TEST_P(QuantizedCheckpoint, StoredWeightsEqualTheLoadTimeQuantization) {
  const fs::path source = testing::fixture_dir() / GetParam();
  auto model = load(source, Quantization::none);
  tools::SmoothQuantOptions options;
  options.calibration_tokens = 300;
  const tools::Calibration calibration = calibrate(model, options);
  const fs::path dir = testing::temp_dir("quantized-checkpoint") / GetParam();
  write(model, &calibration, options, CheckpointWeights::float32, dir / "float");
  write(model, &calibration, options, CheckpointWeights::int8, dir / "int8");
  write(model, &calibration, options, CheckpointWeights::fp8, dir / "fp8");
  write(model, &calibration, options, CheckpointWeights::fp8, dir / "fp8-tensor", ScaleGranularity::tensor);

  const auto prompts = testing::load_reference(source, model->config().vocab_size);
  const std::vector<float> f32 = logits(model, prompts);
  auto int8 = load(dir / "int8", Quantization::automatic);
  EXPECT_NE(int8->weight_formats().find("w8a8"), std::string::npos) << int8->weight_formats();
  const std::vector<float> w8a8_stored = logits(int8, prompts);
  expect_bit_equal(w8a8_stored, logits(load(dir / "float", Quantization::w8a8), prompts), "int8 checkpoint vs w8a8 at load");
  auto fp8 = load(dir / "fp8", Quantization::automatic);
  EXPECT_NE(fp8->weight_formats().find("fp8"), std::string::npos) << fp8->weight_formats();
  const std::vector<float> fp8_stored = logits(fp8, prompts);
  expect_bit_equal(fp8_stored, logits(load(dir / "float", Quantization::fp8), prompts), "fp8 checkpoint vs fp8 at load");
  const std::vector<float> fp8_tensor = logits(load(dir / "fp8-tensor", Quantization::automatic), prompts);

  const double e_int8 = rms_error(w8a8_stored, f32), e_fp8 = rms_error(fp8_stored, f32),
               e_fp8t = rms_error(fp8_tensor, f32);
  std::cout << "[quantized-checkpoint] " << GetParam() << ": rms logit error vs f32: int8 " << e_int8 << ", fp8 "
            << e_fp8 << ", fp8 per tensor " << e_fp8t << "\n";
  EXPECT_LE(e_int8, kInt8Bound);
  EXPECT_LE(e_fp8, kFp8Bound);
  EXPECT_LE(e_fp8t, kFp8Bound);

  // A quarter of the f32 bytes, plus 4 bytes of scale per output channel.
  const size_t f = linear_bytes(dir / "float", *model), i8 = linear_bytes(dir / "int8", *model),
               e4 = linear_bytes(dir / "fp8", *model);
  std::cout << "[quantized-checkpoint] " << GetParam() << ": linear weights " << f << " bytes in F32, " << i8
            << " in I8, " << e4 << " in F8_E4M3 (scales included)\n";
  EXPECT_LT(i8 * 1.0, 0.27 * f);
  EXPECT_EQ(e4, i8);
}

// tiny-llama: separate Q / K / V and gate / up parts (GQA); tiny-gpt2: Conv1D weights
// stored [in, out], one fused c_attn; tiny-gpt-neox: QKV heads interleaved in one tensor.
INSTANTIATE_TEST_SUITE_P(Fixtures, QuantizedCheckpoint, ::testing::Values("tiny-llama", "tiny-gpt2", "tiny-gpt-neox"),
                         [](const auto& info) {
                           std::string name = info.param.substr(5);
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// Without smoothing the FP8 checkpoint is the source's weights quantized: equal bit for bit
// to the source loaded with --quant fp8.
TEST(QuantizedCheckpointNoSmooth, EqualsTheSourceQuantizedAtLoad) {
  const fs::path source = testing::fixture_dir() / "tiny-llama";
  auto model = load(source, Quantization::none);
  const fs::path dir = testing::temp_dir("quantized-checkpoint") / "no-smooth";
  write(model, nullptr, {}, CheckpointWeights::fp8, dir / "fp8");
  write(model, nullptr, {}, CheckpointWeights::int8, dir / "int8");
  const auto prompts = testing::load_reference(source, model->config().vocab_size);
  expect_bit_equal(logits(load(dir / "fp8", Quantization::automatic), prompts),
                   logits(load(source, Quantization::fp8), prompts), "fp8");
  expect_bit_equal(logits(load(dir / "int8", Quantization::automatic), prompts),
                   logits(load(source, Quantization::w8a8), prompts), "int8");
  nlohmann::json config = nlohmann::json::parse(std::ifstream(dir / "fp8" / "config.json"));
  EXPECT_EQ(config["kestrel_quantization"]["method"], "none");
  EXPECT_EQ(config["kestrel_quantization"]["weight_dtype"], "float8_e4m3fn");
  // --weights float is the smoothed floats: meaningless without a calibration.
  EXPECT_THROW(write(model, nullptr, {}, CheckpointWeights::float32, dir / "float"), Error);
}

// The stored values and scales are what the loaded QuantizedWeight holds: Q's rows are the
// first rows of tiny-llama's fused QKV.
TEST(QuantizedCheckpointRoundTrip, ScalesAndValuesLoadAsStored) {
  const fs::path source = testing::fixture_dir() / "tiny-llama";
  auto model = load(source, Quantization::none);
  const fs::path dir = testing::temp_dir("quantized-checkpoint") / "round-trip";
  for (auto [weights, sub] : {std::pair{CheckpointWeights::int8, "int8"}, std::pair{CheckpointWeights::fp8, "fp8"}}) {
    SCOPED_TRACE(sub);
    write(model, nullptr, {}, weights, dir / sub);
    SafetensorsFile file(dir / sub / "model.safetensors");
    const SourceTensor& q = file.tensors().at("model.layers.1.self_attn.q_proj.weight");
    const SourceTensor& s = file.tensors().at("model.layers.1.self_attn.q_proj.weight_scale");
    EXPECT_EQ(q.fp8_e4m3, weights == CheckpointWeights::fp8);
    EXPECT_EQ(s.shape, (std::vector<int64_t>{q.shape[0], 1}));
    auto loaded = load(dir / sub, Quantization::automatic);
    const QuantizedWeight& w = loaded->state().weights.layers[1].qkv_weight.quantized;
    ASSERT_EQ(w.cols, q.shape[1]);
    EXPECT_EQ(std::memcmp(w.data.data, q.data, q.bytes), 0);
    EXPECT_EQ(std::memcmp(w.scales.data, s.data, s.bytes), 0);
    const auto* scales = static_cast<const float*>(s.data);
    for (int64_t r = 0; r < q.shape[0]; ++r) EXPECT_GT(scales[r], 0.0f) << r;
  }
}

// Rewrites dir/model.safetensors into `out` with `edit` applied to each tensor (it may
// change dtype, shape and bytes, or return false to drop the tensor).
struct Tensor {
  std::string dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};
void rewrite(const fs::path& dir, const fs::path& out, const std::function<bool(const std::string&, Tensor&)>& edit) {
  fs::remove_all(out);
  fs::create_directories(out);
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.path().filename() != "model.safetensors") fs::copy_file(entry.path(), out / entry.path().filename());
  SafetensorsWriter writer;
  {
    SafetensorsFile file(dir / "model.safetensors");
    for (const auto& [name, t] : file.tensors()) {
      const auto* p = static_cast<const uint8_t*>(t.data);
      Tensor x{t.fp8_e4m3 ? "F8_E4M3" : safetensors_dtype_name(t.dtype), t.shape, {p, p + t.bytes}};
      if (edit(name, x)) writer.add(name, x.dtype, x.shape, x.bytes.data(), x.bytes.size());
    }
  }
  writer.write(out / "model.safetensors", {});
}

void expect_refused(const fs::path& dir, const std::vector<std::string>& needles,
                    Quantization mode = Quantization::automatic) {
  try {
    load(dir, mode);
    ADD_FAILURE() << dir << " loaded";
  } catch (const Error& e) {
    for (const auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

TEST(QuantizedCheckpointValidation, CorruptFilesAreRefusedByName) {
  const fs::path source = testing::fixture_dir() / "tiny-llama";
  auto model = load(source, Quantization::none);
  const fs::path dir = testing::temp_dir("quantized-checkpoint") / "corrupt";
  write(model, nullptr, {}, CheckpointWeights::int8, dir / "int8");
  write(model, nullptr, {}, CheckpointWeights::fp8, dir / "fp8");
  const std::string q = "model.layers.0.self_attn.q_proj.weight", k = "model.layers.0.self_attn.k_proj.weight";
  const std::string scale = q + "_scale";
  const fs::path bad = dir / "bad";
  auto set_scale = [&](float value) {
    return [&, value](const std::string& name, Tensor& t) {
      if (name == scale) std::memcpy(t.bytes.data() + 4 * 3, &value, 4);
      return true;
    };
  };

  rewrite(dir / "int8", bad, [&](const std::string& name, Tensor&) { return name != scale; });
  expect_refused(bad, {scale, "missing"});
  rewrite(dir / "int8", bad, set_scale(-0.5f));
  expect_refused(bad, {scale, "value 3", "negative"});
  rewrite(dir / "int8", bad, set_scale(std::numeric_limits<float>::quiet_NaN()));
  expect_refused(bad, {scale, "not finite"});
  rewrite(dir / "int8", bad, set_scale(std::numeric_limits<float>::infinity()));
  expect_refused(bad, {scale, "not finite"});
  rewrite(dir / "int8", bad, [&](const std::string& name, Tensor& t) {  // F32 bytes relabelled as I32
    if (name == scale) t.dtype = "I32";
    return true;
  });
  expect_refused(bad, {scale, "must be F32"});
  rewrite(dir / "int8", bad, [&](const std::string& name, Tensor& t) {  // one scale short
    if (name == scale) {
      t.shape[0] -= 1;
      t.bytes.resize(t.bytes.size() - 4);
    }
    return true;
  });
  expect_refused(bad, {scale, "output channels"});
  rewrite(dir / "int8", bad, [&](const std::string& name, Tensor& t) {
    if (name == q) t.bytes[5] = 0x80;
    return true;
  });
  expect_refused(bad, {q, "-128"});
  rewrite(dir / "fp8", bad, [&](const std::string& name, Tensor& t) {
    if (name == q) t.bytes[7] = 0xff;
    return true;
  });
  expect_refused(bad, {q, "NaN"});
  rewrite(dir / "int8", bad, [&](const std::string& name, Tensor& t) {  // K's bytes as F8_E4M3 beside I8 Q
    if (name == k) t.dtype = "F8_E4M3";
    return true;
  });
  expect_refused(bad, {k, "F8_E4M3", "I8"});
  rewrite(dir / "int8", bad, [&](const std::string& name, Tensor& t) {  // K as F16 (two bytes per value)
    if (name == k) {
      t.dtype = "F16";
      t.shape[0] /= 2;
    }
    return true;
  });
  expect_refused(bad, {k, "has dtype f16", "stored quantized"});
  rewrite(dir / "int8", bad, [&](const std::string& name, Tensor& t) {  // transposed in the file
    if (name == k) std::swap(t.shape[0], t.shape[1]);
    return true;
  });
  expect_refused(bad, {k, "has shape"});

  // The mode must be the stored one.
  expect_refused(dir / "int8", {q, "ModelOptions.quantization = none"}, Quantization::none);
  expect_refused(dir / "int8", {"ModelOptions.quantization = fp8"}, Quantization::fp8);
  expect_refused(dir / "fp8", {"F8_E4M3", "ModelOptions.quantization = w8a8"}, Quantization::w8a8);
  // The config's keys are checked.
  for (auto [key, value] : {std::pair{"weight_dtype", "float8_e4m3fn"}, std::pair{"weight_scale", "group"},
                            std::pair{"activation_scheme", "static"}, std::pair{"format", "int4"}}) {
    rewrite(dir / "int8", bad, [](const std::string&, Tensor&) { return true; });
    nlohmann::json config = nlohmann::json::parse(std::ifstream(bad / "config.json"));
    config["kestrel_quantization"][key] = value;
    std::ofstream(bad / "config.json") << config.dump();
    expect_refused(bad, {std::string("kestrel_quantization.") + key, value});
  }
}

// From a GGUF file: a Hugging Face directory whose config.json, tokenizer and tensor names
// are rebuilt from the GGUF. Same tokens on every text; logits of the GGUF loaded with the
// same mode (the same integers and scales; only the rotary pairing's order of the head
// dimensions differs: llama.cpp's adjacent pairs against Hugging Face's halves). tiny-llama.gguf: Q8_0 embedding, F32
// LM head; tiny256-Q8_0.gguf: a tied Q8_0 LM head, which W8A8 keeps in its blocks (int8 in
// groups of 32) and the directory stores as I8 with [out, in / 32] scales.
class QuantizedCheckpointGguf : public ::testing::TestWithParam<std::string> {};

TEST_P(QuantizedCheckpointGguf, WritesAHuggingFaceDirectoryOfTheSameModel) {
  const fs::path source = testing::fixture_dir() / GetParam();
  auto model = load(source, Quantization::none);
  tools::SmoothQuantOptions options;
  options.calibration_tokens = 300;
  const tools::Calibration calibration = calibrate(model, options);
  const fs::path dir = testing::temp_dir("quantized-checkpoint") / ("gguf-" + source.stem().string());
  write(model, &calibration, options, CheckpointWeights::float32, dir / "float.gguf");
  write(model, &calibration, options, CheckpointWeights::int8, dir / "int8");
  write(model, &calibration, options, CheckpointWeights::fp8, dir / "fp8");
  ASSERT_TRUE(fs::exists(dir / "int8" / "tokenizer.json"));
  // Prompts: pieces of the calibration text, tokenized by the GGUF.
  const std::string text = calibration_text();
  std::vector<testing::ReferencePrompt> prompts;
  for (size_t begin : {0, 700, 1900}) prompts.push_back({text.substr(begin, 300), {}, {}, {}});
  for (auto& p : prompts) {
    p.ids = model->tokenizer().encode(p.text, false);
    p.ids.resize(std::min<size_t>(p.ids.size(), 60));  // the fixtures' context is 128
  }
  for (auto [sub, mode] : {std::pair{"int8", Quantization::w8a8}, std::pair{"fp8", Quantization::fp8}}) {
    SCOPED_TRACE(sub);
    auto converted = load(dir / sub, Quantization::automatic);
    auto reference = load(dir / "float.gguf", mode);
    EXPECT_EQ(converted->weight_formats(), reference->weight_formats());
    EXPECT_EQ(converted->tokenizer().encode(text, false), reference->tokenizer().encode(text, false));
    const std::vector<float> a = logits(converted, prompts), b = logits(reference, prompts);
    // Per position: the largest difference. A prompt's first position attends to itself
    // only (the rotary order cannot matter), so its logits must agree to float rounding.
    const size_t V = static_cast<size_t>(model->config().vocab_size);
    float scale = 0.0f, first = 0.0f;
    size_t close = 0, positions = a.size() / V, start = 0;
    for (size_t i = 0; i < b.size(); ++i) scale = std::max(scale, std::abs(b[i]));
    std::vector<bool> is_first(positions, false);
    for (const auto& p : prompts) {
      is_first[start] = true;
      start += p.ids.size();
    }
    for (size_t pos = 0; pos < positions; ++pos) {
      float d = 0.0f;
      for (size_t v = 0; v < V; ++v) d = std::max(d, std::abs(a[pos * V + v] - b[pos * V + v]));
      close += d <= 1e-4f * scale ? 1 : 0;
      if (is_first[pos]) first = std::max(first, d);
    }
    const double rms = rms_error(a, b);
    std::cout << "[quantized-checkpoint] " << GetParam() << " " << sub << ": " << close << " of " << positions
              << " positions within 1e-4 of the max logit " << scale << ", first positions within " << first
              << ", rms difference " << rms << " of the rms logit\n";
    EXPECT_LE(first, 1e-6f * scale);
    // Elsewhere the head dimensions are summed in another order (1e-7), and now and then that
    // moves one activation across a rounding boundary of the per-token int8 / E4M3
    // quantization, which changes the later logits of that prompt: measured (2026-11-30)
    // at most 0.18 of 14 (tiny-llama, int8), rms under 0.02 of the rms logit. Bounded well
    // under the modes' own errors against f32 (0.08 int8, 0.28 FP8).
    EXPECT_GE(close, positions * 3 / 4);
    EXPECT_LE(rms, 0.05);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, QuantizedCheckpointGguf,
                         ::testing::Values("tiny-llama.gguf", "kquant/tiny256-Q8_0.gguf"), [](const auto& info) {
                           return std::string(info.param == "tiny-llama.gguf" ? "tiny_llama" : "tiny256_q8_0");
                         });

}  // namespace
}  // namespace kestrel
