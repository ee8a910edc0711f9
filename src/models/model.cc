#include "kestrel/model.h"

#include "kestrel/error.h"
#include "loaders/safetensors.h"
#include "models/model_state.h"

namespace kestrel {

namespace {

std::shared_ptr<Backend> make_backend(const ModelOptions& options, DType* dtype) {
  if (options.num_threads < 0)
    throw Error(ErrorCategory::invalid_argument,
                "ModelOptions.num_threads = " + std::to_string(options.num_threads) + " (must be >= 0)");
  if (options.device.kind == DeviceKind::cpu) {
    if (options.dtype && *options.dtype != DType::f32)
      throw Error(ErrorCategory::unsupported,
                  std::string("ModelOptions.dtype = ") + to_string(*options.dtype) +
                      " on the cpu: the CPU backend computes in f32");
    *dtype = DType::f32;
    return make_cpu_backend(options.num_threads);
  }
  std::shared_ptr<Backend> backend = make_cuda_backend(options.device.index);
  *dtype = options.dtype.value_or(DType::f16);
  return backend;
}

}  // namespace

std::shared_ptr<const Model> Model::load(const std::filesystem::path& path, const ModelOptions& options) {
  auto state = std::make_unique<detail::ModelState>();
  state->path = path;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    throw Error(ErrorCategory::io, path.string() + ": no such file or directory");
  if (!std::filesystem::is_directory(path, ec))
    throw Error(ErrorCategory::unsupported,
                path.string() + ": not a model directory (expected config.json and *.safetensors)");
  const auto config_path = path / "config.json";
  if (!std::filesystem::exists(config_path))
    throw Error(ErrorCategory::io, config_path.string() + ": missing (every Hugging Face model directory has one)");

  SafetensorsSource source(path);
  state->arch = architecture_from_hf_config(
      config_path, [&](const std::string& name) { return source.find(name) != nullptr; });
  state->tokenizer.emplace(Tokenizer::from_directory(path));
  if (state->tokenizer->vocab_size() > state->arch.config.vocab_size)
    throw Error(ErrorCategory::format,
                path.string() + ": the tokenizer has " + std::to_string(state->tokenizer->vocab_size()) +
                    " tokens but config.json says vocab_size " +
                    std::to_string(state->arch.config.vocab_size));

  state->backend = make_backend(options, &state->dtype);
  state->store = std::make_unique<WeightStore>(*state->backend, state->dtype);
  state->weights = state->store->load(source, state->arch);
  return std::shared_ptr<const Model>(new Model(std::move(state)));
}

Model::Model(std::unique_ptr<detail::ModelState> state) : state_(std::move(state)) {}
Model::~Model() = default;

const ModelConfig& Model::config() const { return state_->arch.config; }
const Tokenizer& Model::tokenizer() const { return *state_->tokenizer; }
Device Model::device() const { return state_->backend->device(); }
DType Model::dtype() const { return state_->dtype; }
size_t Model::weight_bytes() const { return state_->store->bytes(); }
const std::filesystem::path& Model::path() const { return state_->path; }

}  // namespace kestrel
