// Fuzz target: a .safetensors file (8-byte header length, JSON header, data) through
// SafetensorsFile, then every float tensor read and converted to f32 the way the weight
// loader converts it (convert_floats on the mapped bytes).
#include <vector>

#include "core/half.h"
#include "fuzz_support.h"
#include "loaders/safetensors.h"

namespace {

constexpr int64_t kMaxConverted = 1 << 16;

bool is_float(kestrel::DType t) {
  return t == kestrel::DType::f32 || t == kestrel::DType::f16 || t == kestrel::DType::bf16;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kestrel;
  const auto path = fuzz::write_file("model.safetensors", fuzz::as_text(data, size));
  fuzz::expect_only_kestrel_errors([&] {
    SafetensorsFile file(path);
    for (const auto& [name, t] : file.tensors()) {
      if (t.block_type || !is_float(t.dtype)) continue;
      const int64_t n = t.numel();
      if (n < 0 || static_cast<size_t>(n) * dtype_size(t.dtype) != t.bytes) std::abort();
      if (n > kMaxConverted) continue;
      std::vector<float> values(static_cast<size_t>(n));
      convert_floats(t.data, t.dtype, values.data(), DType::f32, values.size());
    }
  });
  return 0;
}
