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
#include "parallel/parallel_context.h"

namespace kestrel::detail {

struct ModelState {
  std::filesystem::path path;
  Architecture arch;  // the whole model; parallel->shard says which part this rank holds
  DType dtype = DType::f32;
  // Declared before the weights so the backend outlives the memory it allocated.
  std::shared_ptr<Backend> backend;
  // This rank's place in a parallel run (a single-rank context otherwise). Declared after
  // the backend so its NCCL communicators go before the device stream they use.
  std::unique_ptr<ParallelContext> parallel;
  ParallelInfo parallel_info;
  std::unique_ptr<WeightStore> store;
  ModelWeights weights;
  std::optional<Tokenizer> tokenizer;
  std::string chat_template;  // Jinja source; empty when the model has none
};

}  // namespace kestrel::detail
