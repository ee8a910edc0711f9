#include "kestrel/model.h"

#include <functional>
#include <map>
#include <nlohmann/json.hpp>

#include "kestrel/error.h"
#include "loaders/gguf.h"
#include "loaders/gguf_source.h"
#include "loaders/mxfp4_source.h"
#include "loaders/safetensors.h"
#include "models/model_state.h"
#include "models/moe_family.h"
#include "models/random_model.h"
#include "tokenizer/file_fields.h"
#include "tokenizer/tokenizer_gguf.h"

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
    return make_cpu_backend(options.num_threads, options.batch_invariant);
  }
  if (options.batch_invariant)
    throw Error(ErrorCategory::unsupported, "ModelOptions.batch_invariant: only the CPU backend has batch-invariant kernels");
  std::shared_ptr<Backend> backend = make_cuda_backend(options.device.index);
  *dtype = options.dtype.value_or(DType::f16);
  return backend;
}

// chat_template in tokenizer_config.json: a string, or (newer transformers) a list of
// {"name", "template"} of which "default" is the one apply_chat_template uses.
std::string hf_chat_template(const std::filesystem::path& dir) {
  const auto path = dir / "tokenizer_config.json";
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return {};
  nlohmann::json config = tokenizer::parse_json(path);
  auto it = config.find("chat_template");
  if (!config.is_object() || it == config.end() || it->is_null()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array())
    for (const auto& entry : *it)
      if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") &&
          entry["template"].is_string())
        return entry["template"].get<std::string>();
  throw Error(ErrorCategory::format,
              path.string() + ": chat_template must be a string or a list with a 'default' template");
}

// Before the (slow) weight conversion: every token id must have an embedding row.
void check_vocab(const std::filesystem::path& path, const detail::ModelState& state) {
  if (state.tokenizer->vocab_size() > state.arch.config.vocab_size)
    throw Error(ErrorCategory::format,
                path.string() + ": the tokenizer has " + std::to_string(state.tokenizer->vocab_size()) +
                    " tokens but the model's vocab_size is " + std::to_string(state.arch.config.vocab_size));
}

// The model's files, open and memory-mapped.
struct ModelFiles {
  std::unique_ptr<GgufFile> gguf;  // set for a GGUF file; the source points into it
  std::unique_ptr<WeightSource> source;
  // Without files: makes the source once the runtime dtype is known.
  std::function<std::unique_ptr<WeightSource>(DType)> make_source;
};

// Reads what describes the model (architecture, tokenizer, chat template) and opens its
// weights, without converting any.
ModelFiles describe_model(const std::filesystem::path& path, detail::ModelState& state) {
  ModelFiles files;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    throw Error(ErrorCategory::io, path.string() + ": no such file or directory");
  if (is_gguf_file(path)) {
    files.gguf = std::make_unique<GgufFile>(path);
    state.arch = architecture_from_gguf(*files.gguf);
    state.tokenizer.emplace(Tokenizer::from_spec(tokenizer::read_gguf_tokenizer(*files.gguf), path.string()));
    state.chat_template = files.gguf->get_string("tokenizer.chat_template").value_or("");
    check_vocab(path, state);
    files.source = std::make_unique<GgufSource>(*files.gguf);
  } else if (std::filesystem::is_directory(path, ec)) {
    const auto config_path = path / "config.json";
    if (!std::filesystem::exists(config_path))
      throw Error(ErrorCategory::io,
                  config_path.string() + ": missing (every Hugging Face model directory has one)");
    // The weights are opened when the config first asks about a tensor, so that a family
    // Kestrel does not support is named as such even when its weights are missing.
    std::unique_ptr<SafetensorsSource> source;
    const auto open_source = [&]() -> SafetensorsSource& {
      if (!source) source = std::make_unique<SafetensorsSource>(path);
      return *source;
    };
    state.arch = architecture_from_hf_config(
        config_path, [&](const std::string& name) { return open_source().find(name) != nullptr; });
    open_source();
    state.tokenizer.emplace(Tokenizer::from_directory(path));
    state.chat_template = hf_chat_template(path);
    check_vocab(path, state);
    files.source = std::move(source);
    if (state.arch.mxfp4_paired_rows)
      files.source = std::make_unique<Mxfp4Source>(std::move(files.source), *state.arch.mxfp4_paired_rows);
  } else {
    throw Error(ErrorCategory::unsupported,
                path.string() + ": neither a model directory (config.json and *.safetensors) nor a GGUF file");
  }
  return files;
}

ParallelInfo describe_parallel(const ParallelContext& context) {
  const Shard& s = context.shard;
  ParallelInfo info;
  info.tensor_parallel = s.tp;
  info.pipeline_parallel = s.pp;
  info.rank = context.rank;
  info.tensor_rank = s.tp_rank;
  info.stage = s.stage;
  info.first_layer = s.layer_begin;
  info.num_layers = s.num_layers();
  info.num_heads = s.n_heads;
  info.num_kv_heads = s.n_kv_heads;
  info.ffn_size = s.ffn;
  info.expert_ffn_size = s.expert_ffn;
  info.shared_expert_ffn_size = s.shared_ffn;
  info.vocab_size = s.vocab_valid;
  return info;
}

// Runs `step` on every rank, then agrees: if it failed on any rank, every rank throws.
template <class F>
void on_every_rank(ParallelContext& context, F&& step) {
  std::exception_ptr error;
  try {
    step();
  } catch (...) {
    error = std::current_exception();
  }
  agree_on_errors(context, error);
}

// In a parallel run every rank loads its slice, and the steps that may fail on one rank
// alone (reading files, creating the device, converting weights) end in an agreement, so
// that a missing file on one node stops every rank with the same error instead of leaving
// the others waiting in the next collective call. `describe` fills the state's
// architecture, tokenizer and chat template and opens the weights.
std::unique_ptr<detail::ModelState> load_state(const std::filesystem::path& path, const ModelOptions& options,
                                               const std::function<ModelFiles(detail::ModelState&)>& describe) {
  quantization_spec(options);  // checks the options before any file is read
  auto state = std::make_unique<detail::ModelState>();
  state->path = path;
  const ParallelOptions& po = options.parallel;
  const bool split = po.tensor_parallel != 1 || po.pipeline_parallel != 1;
  state->parallel = split ? join_parallel_run(po) : std::make_unique<ParallelContext>();
  ParallelContext& context = *state->parallel;

  ModelFiles files;
  on_every_rank(context, [&] {
    files = describe(*state);
    // The FFN split keeps every rank's down projection in whole blocks of the file (a
    // random model's weights, made later in the runtime dtype, are dense).
    const FfnAlignment ffn_align =
        files.source ? ffn_split_alignment(*files.source, state->arch, loader_spec(options, state->arch))
                     : FfnAlignment{};
    const Shard& s = context.shard;
    context.shard = make_shard(state->arch.config, s.tp, s.pp, s.tp_rank, s.stage, path.string(), ffn_align);
    check_expert_biases_unsplit(state->arch, context.shard.tp, path.string());
  });
  form_groups(context);
  state->parallel_info = describe_parallel(context);

  ModelOptions device_options = options;
  if (split && options.device.kind == DeviceKind::cuda)  // one GPU per rank of a node
    device_options.device.index += node_local_rank();
  on_every_rank(context, [&] { state->backend = make_backend(device_options, &state->dtype); });
  connect_device_communicators(context, *state->backend);
  on_every_rank(context, [&] {
    if (!files.source) files.source = files.make_source(state->dtype);
    state->store = std::make_unique<WeightStore>(*state->backend, state->dtype, loader_spec(options, state->arch));
    state->weights = state->store->load(*files.source, state->arch, context.shard);
  });
  return state;
}

}  // namespace

std::shared_ptr<const Model> Model::load(const std::filesystem::path& path, const ModelOptions& options) {
  auto state = load_state(path, options, [&](detail::ModelState& s) { return describe_model(path, s); });
  return std::shared_ptr<const Model>(new Model(std::move(state)));
}

std::shared_ptr<const Model> Model::random(const ModelConfig& config, const ModelOptions& options, uint64_t seed) {
  const std::string name = "random " + config.architecture + " (seed " + std::to_string(seed) + ")";
  auto describe = [&](detail::ModelState& state) {
    state.arch = architecture_from_hf_json(random_model_hf_config(config), name,
                                           [](const std::string&) { return false; });
    state.tokenizer.emplace(random_model_tokenizer(state.arch.config.vocab_size));
    ModelFiles files;
    files.make_source = [&state, seed](DType dtype) {  // made in the runtime dtype: nothing to convert
      return std::make_unique<RandomWeightSource>(state.arch, dtype, seed);
    };
    return files;
  };
  auto state = load_state(name, options, describe);
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
const std::string& Model::chat_template() const { return state_->chat_template; }
const ParallelInfo& Model::parallel() const { return state_->parallel_info; }

std::string Model::weight_formats() const {
  const ModelWeights& w = state_->weights;
  std::vector<const LinearWeight*> linears;
  for (const LayerWeights& l : w.layers) {
    for (const LinearWeight* lw : {&l.qkv_weight, &l.out_weight, &l.up_weight, &l.down_weight}) linears.push_back(lw);
    // A sparse layer's router, each expert's two weights and the shared expert's.
    const MoeWeights& m = l.moe;
    for (const LinearWeight* lw : {&m.router, &m.shared_up, &m.shared_down}) linears.push_back(lw);
    for (const std::vector<LinearWeight>* experts : {&m.expert_up, &m.expert_down})
      for (const LinearWeight& lw : *experts) linears.push_back(&lw);
  }
  if (!w.lm_head.empty()) linears.push_back(&w.lm_head);
  std::map<std::string, int> counts;  // by format, in name order
  // A mixed weight counts as its parts' formats joined: "q4_k+q6_k" (Q and K rows Q4_K, V Q6_K).
  auto format_of = [](const QuantizedWeight& q) {
    if (q.int8_activations) return std::string("w8a8");
    if (q.format != QuantFormat::mixed) return std::string(to_string(q.format));
    std::string joined;
    for (const QuantizedWeight& part : q.parts) {
      if (!joined.empty()) joined += '+';
      joined += to_string(part.format);
    }
    return joined;
  };
  for (const LinearWeight* lw : linears) {
    if (lw->empty()) continue;
    ++counts[lw->is_quantized() ? format_of(lw->quantized) : std::string(to_string(lw->dense.dtype))];
  }
  std::string text;
  for (const auto& [format, n] : counts) text += (text.empty() ? "" : " + ") + format + " x" + std::to_string(n);
  return text.empty() ? "none" : text;
}

}  // namespace kestrel
