// Bad model files and options give a clear kestrel::Error naming what is wrong; nothing
// crashes. Broken directories are built from the tiny GPT-2 fixture.
#include <gtest/gtest.h>

#include <cstring>
#include <kestrel/kestrel.h>
#include <nlohmann/json.hpp>

#include "backend.h"
#include "loaders/safetensors.h"
#include "test_support.h"

namespace kestrel {
namespace {

using testing::fixture_dir;
using testing::read_file;
using testing::temp_dir;
using testing::write_file;

struct RawTensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

std::string safetensors_bytes(const std::vector<RawTensor>& tensors, int64_t lie_about_end = 0) {
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  for (const auto& t : tensors) {
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape},
                      {"data_offsets", {data.size(), data.size() + t.bytes.size() + lie_about_end}}};
    data += t.bytes;
  }
  std::string h = header.dump();
  uint64_t n = h.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &n, 8);
  return out + h + data;
}

// The fixture's tensors, for rewriting into broken variants.
std::vector<RawTensor> fixture_tensors() {
  SafetensorsFile file(fixture_dir() / "tiny-gpt2" / "model.safetensors");
  std::vector<RawTensor> out;
  const char* names[] = {"F32", "F16", "BF16", "I8", "I32"};
  for (const auto& [name, t] : file.tensors())
    out.push_back({name, names[static_cast<int>(t.dtype)], t.shape,
                   std::string(static_cast<const char*>(t.data), t.bytes)});
  return out;
}

// A copy of the fixture directory whose model.safetensors is `weights`.
std::filesystem::path model_dir(const std::string& name, const std::string& weights) {
  auto dir = temp_dir(name);
  for (const char* f : {"config.json", "tokenizer.json"})
    std::filesystem::copy_file(fixture_dir() / "tiny-gpt2" / f, dir / f);
  write_file(dir / "model.safetensors", weights);
  return dir;
}

void expect_error(const std::function<void()>& fn, ErrorCategory category, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one mentioning " << parts.front();
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), category) << e.what();
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

TEST(ModelLoading, MissingPathsNameThePath) {
  expect_error([] { Model::load("/nonexistent/model"); }, ErrorCategory::io, {"/nonexistent/model"});
  auto empty = temp_dir("empty");
  expect_error([&] { Model::load(empty); }, ErrorCategory::io, {"config.json"});
  auto no_weights = temp_dir("no-weights");
  std::filesystem::copy_file(fixture_dir() / "tiny-gpt2" / "config.json", no_weights / "config.json");
  expect_error([&] { Model::load(no_weights); }, ErrorCategory::io, {"model.safetensors"});
  auto no_tokenizer = model_dir("no-tokenizer", read_file(fixture_dir() / "tiny-gpt2" / "model.safetensors"));
  std::filesystem::remove(no_tokenizer / "tokenizer.json");
  expect_error([&] { Model::load(no_tokenizer); }, ErrorCategory::io, {"no-tokenizer"});
}

TEST(ModelLoading, UnsupportedFamilyIsNamedBeforeMissingWeights) {
  // A directory with only config.json: the family is what is wrong first, not the weights.
  const auto dir = std::filesystem::temp_directory_path() / "kestrel-falcon-config-only";
  std::filesystem::create_directories(dir);
  write_file(dir / "config.json", R"({"model_type": "falcon", "hidden_size": 64})");
  expect_error([&] { Model::load(dir); }, ErrorCategory::unsupported, {"model_type 'falcon'", "granite"});
  // A supported family without weights names the missing files.
  write_file(dir / "config.json", read_file(fixture_dir() / "tiny-gpt2" / "config.json"));
  expect_error([&] { Model::load(dir); }, ErrorCategory::io, {"model.safetensors"});
  std::filesystem::remove_all(dir);
}

TEST(ModelLoading, BadConfigNamesTheField) {
  auto dir = model_dir("bad-config", read_file(fixture_dir() / "tiny-gpt2" / "model.safetensors"));
  write_file(dir / "config.json", "{ not json");
  expect_error([&] { Model::load(dir); }, ErrorCategory::format, {"config.json"});
  auto config = nlohmann::json::parse(read_file(fixture_dir() / "tiny-gpt2" / "config.json"));
  auto bert = config;
  bert["model_type"] = "bert";
  write_file(dir / "config.json", bert.dump());
  expect_error([&] { Model::load(dir); }, ErrorCategory::unsupported, {"model_type 'bert'"});
  auto no_heads = config;
  no_heads.erase("n_head");
  write_file(dir / "config.json", no_heads.dump());
  expect_error([&] { Model::load(dir); }, ErrorCategory::format, {"n_head"});
  auto odd = config;
  odd["n_head"] = 5;
  write_file(dir / "config.json", odd.dump());
  expect_error([&] { Model::load(dir); }, ErrorCategory::format, {"not divisible by n_head 5"});
  auto text = config;
  text["n_layer"] = "three";
  write_file(dir / "config.json", text.dump());
  expect_error([&] { Model::load(dir); }, ErrorCategory::format, {"'n_layer'", "integer"});
}

TEST(ModelLoading, TruncatedWeightsAreRejectedAtEveryLength) {
  const std::string full = read_file(fixture_dir() / "tiny-gpt2" / "model.safetensors");
  for (size_t len : {size_t{0}, size_t{5}, size_t{8}, size_t{40}, full.size() / 2, full.size() - 1}) {
    auto dir = model_dir("truncated", full.substr(0, len));
    expect_error([&] { Model::load(dir); }, ErrorCategory::format, {"model.safetensors"});
  }
}

TEST(ModelLoading, HeaderThatLiesAboutSizesIsRejected) {
  auto tensors = fixture_tensors();
  auto dir = model_dir("lying-offsets", safetensors_bytes(tensors, /*lie_about_end=*/8));
  expect_error([&] { Model::load(dir); }, ErrorCategory::format, {"model.safetensors", "needs"});
  auto huge = tensors;
  huge[0].shape = {1 << 20, 1 << 20};
  dir = model_dir("lying-shape", safetensors_bytes(huge));
  expect_error([&] { Model::load(dir); }, ErrorCategory::format, {huge[0].name});
  std::string bad_len = safetensors_bytes(tensors);
  uint64_t n = 1ull << 40;
  std::memcpy(bad_len.data(), &n, 8);
  dir = model_dir("lying-header", bad_len);
  expect_error([&] { Model::load(dir); }, ErrorCategory::format, {"header length"});
}

TEST(ModelLoading, WrongTensorShapeNamesTheTensor) {
  auto tensors = fixture_tensors();
  for (auto& t : tensors)
    if (t.name.ends_with("h.1.attn.c_attn.weight")) std::swap(t.shape[0], t.shape[1]);
  auto dir = model_dir("wrong-shape", safetensors_bytes(tensors));
  expect_error([&] { Model::load(dir); }, ErrorCategory::format, {"h.1.attn.c_attn.weight", "has shape"});
}

TEST(ModelLoading, MissingTensorNamesTheTensor) {
  auto tensors = fixture_tensors();
  std::erase_if(tensors, [](const RawTensor& t) { return t.name.ends_with("h.2.mlp.c_fc.bias"); });
  auto dir = model_dir("missing-tensor", safetensors_bytes(tensors));
  expect_error([&] { Model::load(dir); }, ErrorCategory::format, {"h.2.mlp.c_fc.bias", "missing"});
}

TEST(ModelLoading, IntegerWeightsAreRejected) {
  auto tensors = fixture_tensors();
  for (auto& t : tensors)
    if (t.name.ends_with("ln_f.bias")) t.dtype = "I32";
  auto dir = model_dir("int-weights", safetensors_bytes(tensors));
  expect_error([&] { Model::load(dir); }, ErrorCategory::unsupported, {"ln_f.bias", "i32"});
}

TEST(ModelLoading, InvalidOptionsNameTheOption) {
  const auto dir = fixture_dir() / "tiny-gpt2";
  expect_error([&] { Model::load(dir, {.num_threads = -2}); }, ErrorCategory::invalid_argument, {"num_threads"});
  expect_error([&] { Model::load(dir, {.dtype = DType::f16}); }, ErrorCategory::unsupported, {"dtype", "f16"});
  if (!cuda_backend_available()) {
    EXPECT_THROW(Model::load(dir, {.device = Device::cuda(0)}), Error);
  }
  expect_error([] { parse_device("tpu", "--device"); }, ErrorCategory::invalid_argument, {"--device", "tpu"});
  expect_error([] { parse_dtype("f8", "--dtype"); }, ErrorCategory::invalid_argument, {"--dtype", "f8"});
}

TEST(ModelLoading, ReportsConfigAndFootprint) {
  auto model = Model::load(fixture_dir() / "tiny-gpt2");
  const ModelConfig& c = model->config();
  EXPECT_EQ(c.architecture, "gpt2");
  EXPECT_EQ(c.num_layers, 3);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.num_kv_heads, c.num_heads);
  // Every parameter once (the tied LM head is not stored twice), in f32.
  const size_t H = 64, V = c.vocab_size, P = c.max_positions, F = c.ffn_size;
  const size_t per_layer = 4 * H + (3 * H * H + 3 * H) + (H * H + H) + (F * H + F) + (H * F + H);
  EXPECT_EQ(model->weight_bytes(), 4 * (V * H + P * H + 3 * per_layer + 2 * H));
}

}  // namespace
}  // namespace kestrel
