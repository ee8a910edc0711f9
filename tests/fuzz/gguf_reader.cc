// Fuzz target: a GGUF file through the reader (header, metadata, tensor table), every
// typed metadata getter, the tensors as a WeightSource, their dequantization, and the
// metadata into an architecture description.
#include <algorithm>
#include <vector>

#include "fuzz_support.h"
#include "loaders/gguf.h"
#include "loaders/gguf_source.h"
#include "models/architecture.h"

namespace {

// Tensors up to this many elements are dequantized (bigger ones only bound the time).
constexpr int64_t kMaxDequantized = 1 << 16;

void read_every_key(const kestrel::GgufFile& file) {
  using kestrel::fuzz::expect_only_kestrel_errors;
  for (const kestrel::GgufMetadataEntry& entry : file.metadata()) {
    const std::string& key = entry.key;
    expect_only_kestrel_errors([&] { (void)file.get_int(key); });
    expect_only_kestrel_errors([&] { (void)file.get_float(key); });
    expect_only_kestrel_errors([&] { (void)file.get_bool(key); });
    expect_only_kestrel_errors([&] { (void)file.get_string(key); });
    expect_only_kestrel_errors([&] { (void)file.get_string_array(key); });
    expect_only_kestrel_errors([&] { (void)file.get_float_array(key); });
    expect_only_kestrel_errors([&] { (void)file.get_int_array(key); });
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kestrel;
  const auto path = fuzz::write_file("model.gguf", fuzz::as_text(data, size));
  fuzz::expect_only_kestrel_errors([&] {
    GgufFile file(path);
    read_every_key(file);
    for (const GgufTensor& t : file.tensors()) {
      if (file.find_tensor(t.name) != &t && file.find_tensor(t.name) == nullptr) std::abort();
      if (t.element_count > kMaxDequantized) continue;
      fuzz::expect_only_kestrel_errors([&] {
        std::vector<float> values = file.dequantize(t);
        if (values.size() != static_cast<size_t>(t.element_count)) std::abort();
      });
    }
    fuzz::expect_only_kestrel_errors([&] { GgufSource source(file); });
    fuzz::expect_only_kestrel_errors([&] {
      Architecture arch = architecture_from_gguf(file);
      const int layers = std::min(arch.config.num_layers, 4);
      for (int slot = 0; slot <= static_cast<int>(WeightSlot::down_bias); ++slot) {
        for (int layer = -1; layer < layers; ++layer) (void)arch.recipe(static_cast<WeightSlot>(slot), layer);
      }
    });
  });
  return 0;
}
