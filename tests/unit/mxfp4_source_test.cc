// loaders/mxfp4_source.h: transformers' MXFP4 blocks and scales (U8) presented as ggml's
// MXFP4 blocks. Random nibbles and exponents, repacked, dequantize (gguf_quant.h, ggml's
// reading) to what transformers' convert_moe_packed_tensors computes, written out here from
// its definition: value = FP4[nibble] * 2^(scale - 127), byte j's low nibble column 2j.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "kestrel/error.h"
#include "loaders/gguf_quant.h"
#include "loaders/mxfp4_source.h"
#include "test_support.h"

namespace kestrel {
namespace {

class MapSource final : public WeightSource {
 public:
  void add(const std::string& name, std::vector<int64_t> shape, std::vector<uint8_t> bytes) {
    storage_.push_back(std::move(bytes));
    SourceTensor t;
    t.name = name;
    t.dtype = DType::i8;
    t.u8 = true;
    t.shape = std::move(shape);
    t.data = storage_.back().data();
    t.bytes = storage_.back().size();
    t.file = "test.safetensors";
    tensors_[name] = t;
  }
  const SourceTensor* find(std::string_view name) const override {
    auto it = tensors_.find(std::string(name));
    return it == tensors_.end() ? nullptr : &it->second;
  }
  std::string describe() const override { return "test"; }

 private:
  std::vector<std::vector<uint8_t>> storage_;
  std::map<std::string, SourceTensor> tensors_;
};

// f throws Error(category) whose message names every one of `words`.
template <class F>
void expect_error(ErrorCategory category, std::initializer_list<const char*> words, F&& f) {
  try {
    f();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), category) << e.what();
    for (const char* w : words) EXPECT_NE(std::string(e.what()).find(w), std::string::npos) << w << " in: " << e.what();
  }
}

std::vector<uint8_t> random_bytes(size_t n, uint64_t seed, int lo, int hi) {
  const std::vector<float> r = testing::random_floats(n, seed, static_cast<float>(lo), static_cast<float>(hi) + 0.999f);
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(r[i]);
  return out;
}

// transformers' value of column c of row r of matrix e.
float reference_value(const std::vector<uint8_t>& blocks, const std::vector<uint8_t>& scales, int64_t rows,
                      int64_t groups, int64_t e, int64_t r, int64_t c) {
  static const float kFp4[16] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                                 -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};
  const int64_t g = c / 32, j = c % 32;
  const uint8_t byte = blocks[static_cast<size_t>(((e * rows + r) * groups + g) * 16 + j / 2)];
  const int nibble = j % 2 == 0 ? (byte & 0x0f) : (byte >> 4);
  return std::ldexp(kFp4[nibble], static_cast<int>(scales[static_cast<size_t>((e * rows + r) * groups + g)]) - 127);
}

TEST(Mxfp4Source, ExpertsRepackToGgmlBlocksWithTheirValues) {
  const int64_t E = 3, rows = 6, groups = 2;
  const std::vector<uint8_t> blocks = random_bytes(E * rows * groups * 16, 1, 0, 255);
  const std::vector<uint8_t> scales = random_bytes(E * rows * groups, 2, 100, 140);
  for (bool paired : {false, true}) {
    auto inner = std::make_unique<MapSource>();
    inner->add("x.gate_up_proj_blocks", {E, rows, groups, 16}, blocks);
    inner->add("x.gate_up_proj_scales", {E, rows, groups}, scales);
    const Mxfp4Source source(std::move(inner), paired ? std::vector<std::string>{"gate_up_proj"}
                                                      : std::vector<std::string>{"down_proj"});
    EXPECT_EQ(source.find("x.down_proj#0"), nullptr);
    for (int64_t e = 0; e < E; ++e) {
      const SourceTensor* t = source.find("x.gate_up_proj#" + std::to_string(e));
      ASSERT_NE(t, nullptr);
      ASSERT_TRUE(t->block_type.has_value());
      EXPECT_EQ(*t->block_type, GgmlType::mxfp4);
      EXPECT_EQ(t->shape, (std::vector<int64_t>{rows, groups * 32}));
      std::vector<float> got(static_cast<size_t>(rows * groups * 32));
      dequantize_row(GgmlType::mxfp4, t->data, got.data(), static_cast<int64_t>(got.size()));
      for (int64_t r = 0; r < rows; ++r) {
        // paired: [even rows | odd rows] (gpt-oss's gate, up, gate, ...)
        const int64_t from = paired ? (r < rows / 2 ? 2 * r : 2 * (r - rows / 2) + 1) : r;
        for (int64_t c = 0; c < groups * 32; ++c) {
          const float want = reference_value(blocks, scales, rows, groups, e, from, c);
          ASSERT_EQ(got[static_cast<size_t>(r * groups * 32 + c)], want == 0.0f ? 0.0f : want)
              << "expert " << e << " row " << r << " column " << c << (paired ? " paired" : "");
        }
      }
      source.release(*t);
    }
  }
}

TEST(Mxfp4Source, MismatchedOrMalformedTensorsAreNamed) {
  auto make = [](std::vector<int64_t> block_shape, std::vector<int64_t> scale_shape) {
    auto inner = std::make_unique<MapSource>();
    int64_t nb = 1, ns = 1;
    for (int64_t d : block_shape) nb *= d;
    for (int64_t d : scale_shape) ns *= d;
    inner->add("m.down_proj_blocks", block_shape, std::vector<uint8_t>(static_cast<size_t>(nb), 0x21));
    inner->add("m.down_proj_scales", scale_shape, std::vector<uint8_t>(static_cast<size_t>(ns), 127));
    return std::make_unique<Mxfp4Source>(std::move(inner), std::vector<std::string>{"gate_up_proj"});
  };
  auto source = make({2, 4, 1, 16}, {2, 4, 1});
  EXPECT_NE(source->find("m.down_proj#1"), nullptr);
  expect_error(ErrorCategory::format, {"m.down_proj_blocks", "holds 2", "m.down_proj#2"},
                        [&] { source->find("m.down_proj#2"); });
  expect_error(ErrorCategory::format, {"m.down_proj_blocks"}, [&] { source->find("m.down_proj#x"); });
  expect_error(ErrorCategory::format, {"m.down_proj_scales", "[2, 4, 2]", "m.down_proj_blocks"},
                        [&] { make({2, 4, 1, 16}, {2, 4, 2})->find("m.down_proj#0"); });
  expect_error(ErrorCategory::format, {"m.down_proj_blocks", "[2, 4, 1, 8]", "16"},
                        [&] { make({2, 4, 1, 8}, {2, 4, 1})->find("m.down_proj#0"); });
  // Without an index the matrix is the whole tensor [rows, G, 16].
  const SourceTensor* whole = make({4, 1, 16}, {4, 1})->find("m.down_proj");
  (void)whole;  // the source that owned it is gone; only its finding is checked
  EXPECT_NE(whole, nullptr);
}

}  // namespace
}  // namespace kestrel
