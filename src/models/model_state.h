// models/model_state.h: what a loaded Model holds (internal).
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "backend.h"
#include "kestrel/model.h"
#include "models/architecture.h"
#include "models/weights.h"

namespace kestrel::detail {

struct ModelState {
  std::filesystem::path path;
  Architecture arch;
  DType dtype = DType::f32;
  // Declared before the weights so the backend outlives the memory it allocated.
  std::shared_ptr<Backend> backend;
  std::unique_ptr<WeightStore> store;
  ModelWeights weights;
  std::optional<Tokenizer> tokenizer;
  std::string chat_template;  // Jinja source; empty when the model has none
};

}  // namespace kestrel::detail
