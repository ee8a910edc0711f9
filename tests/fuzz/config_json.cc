// Fuzz target: a Hugging Face config.json into an architecture description (model_type
// dispatch, typed field reads, validate_config), then the weight recipe of every slot.
#include <algorithm>

#include "fuzz_support.h"
#include "models/architecture.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kestrel;
  if (size == 0) return 0;
  // The first byte says which optional tensors the weight files claim to have (GPT-2
  // adapts to naming variants); the rest is config.json.
  const uint8_t tensors_present = data[0];
  const auto path = fuzz::write_file("config.json", fuzz::as_text(data + 1, size - 1));
  fuzz::expect_only_kestrel_errors([&] {
    auto has_tensor = [&](const std::string& name) {
      return ((tensors_present >> (std::hash<std::string>{}(name) % 8)) & 1) != 0;
    };
    Architecture arch = architecture_from_hf_config(path, has_tensor);
    const int layers = std::min(arch.config.num_layers, 4);
    for (int slot = 0; slot <= static_cast<int>(WeightSlot::down_bias); ++slot) {
      for (int layer = -1; layer < layers; ++layer) (void)arch.recipe(static_cast<WeightSlot>(slot), layer);
    }
  });
  return 0;
}
