// GGUF tensors kept quantized at load: a tiny Llama whose every linear weight is Q4_0 /
// Q4_1, or Q8_0, and whose LM head is Q8_0, gives with --quant int4 / int8 (blocks kept as
// stored, multiplied by the quantized kernels) the logits of the same file dequantized to
// f32 at load (--quant none) up to fp32 rounding, and holds its weights in fewer bytes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "gguf_editor.h"
#include "kestrel/kestrel.h"
#include "test_support.h"

namespace kestrel {
namespace {

namespace fs = std::filesystem;

fs::path all_blocks_model(const std::string& file, bool int8) {
  testing::GgufEditor editor(testing::fixture_dir() / "tiny-llama.gguf");
  int i = 0;
  for (int l = 0; l < 3; ++l)
    for (const char* part : {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"})
      editor.requantize("blk." + std::to_string(l) + "." + part + ".weight",
                        int8 ? GgmlType::q8_0 : (i++ % 2 ? GgmlType::q4_1 : GgmlType::q4_0));
  // Q8_0 in both: int4 models keep their LM head in int8 (a Q4 one would be requantized).
  editor.requantize("output.weight", GgmlType::q8_0);
  const fs::path path = testing::temp_dir("quantized_gguf") / file;
  editor.write(path);
  return path;
}

std::vector<float> score(const fs::path& path, Quantization mode, size_t* weight_bytes) {
  ModelOptions options;
  options.quantization = mode;
  auto model = Model::load(path, options);
  *weight_bytes = model->weight_bytes();
  Session session(model);
  Decoder decoder(session);
  std::vector<int32_t> ids;
  for (int i = 0; i < 40; ++i) ids.push_back((i * 37 + 11) % model->config().vocab_size);
  return decoder.score(ids);  // 40 positions at once: the prefill (tiled GEMM) path
}

void expect_same_logits(bool int8) {
  const fs::path path = all_blocks_model(int8 ? "q8_0.gguf" : "q4.gguf", int8);
  size_t dense_bytes = 0, quant_bytes = 0;
  const std::vector<float> dense = score(path, Quantization::none, &dense_bytes);
  const std::vector<float> quant = score(path, int8 ? Quantization::int8 : Quantization::int4, &quant_bytes);
  ASSERT_EQ(dense.size(), quant.size());
  float scale = 0.0f, diff = 0.0f;
  for (size_t i = 0; i < dense.size(); ++i) {
    scale = std::max(scale, std::abs(dense[i]));
    diff = std::max(diff, std::abs(dense[i] - quant[i]));
  }
  EXPECT_LE(diff / scale, 1e-4) << "max |diff| " << diff << " of logit scale " << scale;
  EXPECT_LT(quant_bytes, dense_bytes);
}

TEST(QuantizedGguf, Q4BlocksKeptAsInt4GiveTheDequantizedLogits) { expect_same_logits(false); }
TEST(QuantizedGguf, Q8BlocksKeptAsInt8GiveTheDequantizedLogits) { expect_same_logits(true); }

// One token at a time goes through the dot-product (GEMV) path instead.
TEST(QuantizedGguf, GreedyDecodeMatchesTheDequantizedModel) {
  const fs::path path = all_blocks_model("q4_decode.gguf", false);
  std::vector<std::vector<int32_t>> tokens;
  for (Quantization mode : {Quantization::none, Quantization::int4}) {
    ModelOptions options;
    options.quantization = mode;
    auto model = Model::load(path, options);
    Session session(model);
    Decoder decoder(session);
    GenerationRequest r;
    r.prompt_ids = {5, 17, 300, 42};
    r.stop.max_new_tokens = 16;
    r.stop.stop_at_eos = false;
    tokens.push_back(decoder.generate(r).tokens);
  }
  EXPECT_EQ(tokens[0], tokens[1]);
}

}  // namespace
}  // namespace kestrel
