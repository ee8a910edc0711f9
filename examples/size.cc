// kestrel-size: how much memory a model needs per GPU, and how fast it could be.
//
//   kestrel-size --model PATH [options]          a model directory or .gguf (metadata only)
//   kestrel-size --preset gpt3-175b [options]    a named shape (--list-presets)
//   kestrel-size --layers 96 --hidden 12288 --heads 96 --ffn 49152 --vocab 50257 ...
//
//   options: --device cuda|cpu --dtype f16 --kv-dtype f16 --quant auto|none|int8|int4|w8a8|fp8 --group-size N --tp N --pp N
//            --batch N (max sequences) --seq-len N (prompt + generated tokens per sequence)
//            --max-step-tokens N --kv-block-size N --kv-blocks N
//            --memory 80GiB --bandwidth 3.35TB/s --flops 989T --json
//
// Prints the bytes of weights, KV cache and activations on one GPU of the largest pipeline
// stage, whether they fit --memory, the most concurrent sequences that fit, and a roofline
// estimate of one generation step and one context step. Dimension flags override the
// model's or preset's. Numbers follow tools/sizing.h: a .gguf file's or model directory's
// weights are sized from its stored tensors (types and shapes; with --quant auto, the
// default, a GGUF's blocks as the loader keeps them; per format in the report), exactly
// what Model::weight_bytes() reports on every rank; presets and shapes from flags exactly
// for tp = pp = 1 without quantization; KV cache and activations exactly what
// Session::memory() reports.
#include <algorithm>
#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <iostream>
#include <kestrel/kestrel.h>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tools/sizing.h"

namespace {

using namespace kestrel::sizing;

struct DimArgs {
  std::optional<int> layers, hidden, heads, kv_heads, head_dim, ffn, vocab, max_positions;
  std::optional<std::string> arch;  // gpt2 or llama: the layer kinds of a shape from flags
  std::optional<bool> tied;
};

ModelShape base_shape(const std::string& model, const std::string& preset, const DimArgs& d) {
  if (!model.empty()) return read_model_shape(model);
  if (!preset.empty()) return preset_shape(preset);
  for (auto [value, flag] : {std::pair{d.layers, "--layers"}, {d.hidden, "--hidden"}, {d.heads, "--heads"},
                             {d.ffn, "--ffn"}, {d.vocab, "--vocab"}})
    if (!value)
      throw kestrel::Error(kestrel::ErrorCategory::invalid_argument,
                           std::string("no --model or --preset, so ") + flag + " is required");
  ModelShape s = preset_shape(d.arch.value_or("gpt2") == "llama" ? "llama2-7b" : "gpt2");  // layer kinds
  s.source = "dimensions";
  s.config.num_kv_heads = s.config.head_dim = s.config.max_positions = 0;
  return s;
}

ModelShape apply_dims(ModelShape s, const DimArgs& d) {
  kestrel::ModelConfig& c = s.config;
  // Other dimensions than the model's: its tensors no longer describe the weights.
  if (d.arch || d.layers || d.hidden || d.heads || d.kv_heads || d.head_dim || d.ffn || d.vocab || d.max_positions ||
      d.tied)
    s.file = nullptr;
  if (d.arch) {  // the layer kinds of the family
    const ModelShape kinds = preset_shape(*d.arch == "llama" ? "llama2-7b" : "gpt2");
    s.gated_ffn = kinds.gated_ffn;
    s.learned_positions = kinds.learned_positions;
    s.norm_bias = kinds.norm_bias;
    s.qkv_bias = kinds.qkv_bias;
    s.out_bias = kinds.out_bias;
    s.mlp_bias = kinds.mlp_bias;
    s.post_norms = kinds.post_norms;
    s.qk_norm = kinds.qk_norm;
    s.layer_rotary_pairs.clear();
    c.architecture = *d.arch;
  }
  const bool mha = c.num_kv_heads == c.num_heads;  // keep it so when --heads changes
  if (d.layers) c.num_layers = *d.layers;
  if (d.hidden) c.hidden_size = *d.hidden;
  if (d.heads) c.num_heads = *d.heads;
  if (d.kv_heads) c.num_kv_heads = *d.kv_heads;
  if (d.ffn) c.ffn_size = *d.ffn;
  if (d.vocab) c.vocab_size = *d.vocab;
  if (d.max_positions) c.max_positions = *d.max_positions;
  if (d.tied) c.tied_embeddings = *d.tied;
  if (!d.kv_heads && (mha || c.num_kv_heads == 0)) c.num_kv_heads = c.num_heads;
  if (d.head_dim) c.head_dim = *d.head_dim;
  else if (d.hidden || d.heads || c.head_dim == 0) c.head_dim = c.num_heads > 0 ? c.hidden_size / c.num_heads : 0;
  if (c.max_positions == 0) c.max_positions = 2048;
  // A shape from flags rotates whole heads.
  if (!s.learned_positions && (d.arch || d.head_dim || d.hidden || d.heads)) s.rotary_pairs = c.head_dim / 2;
  // Per-layer tables (Gemma's local and global layers) keep one per layer, of whole heads.
  if (!s.layer_rotary_pairs.empty() && (d.layers || d.head_dim || d.hidden || d.heads))
    s.layer_rotary_pairs.assign(static_cast<size_t>(c.num_layers), c.head_dim / 2);
  return s;
}

nlohmann::json weights_json(const WeightBytes& w) {
  nlohmann::json j = {{"token_embedding", w.token_embedding}, {"position_embedding", w.position_embedding},
                      {"layers", w.layers},                   {"final_norm", w.final_norm},
                      {"lm_head", w.lm_head},                 {"rotary_table", w.rotary_table},
                      {"total", w.total()}};
  if (!w.formats.empty()) j["formats"] = w.formats;
  return j;
}

// "q4_k 61.20 MiB, q6_k 20.10 MiB, f32 104.00 KiB": largest first.
std::string formats_text(const WeightBytes& w) {
  std::vector<std::pair<std::string, size_t>> formats(w.formats.begin(), w.formats.end());
  std::stable_sort(formats.begin(), formats.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  std::string text;
  for (const auto& [format, bytes] : formats) text += (text.empty() ? "" : ", ") + format + " " + format_bytes(bytes);
  return text;
}

nlohmann::json to_json(const Sizing& s) {
  const auto& c = s.shape.config;
  const auto& o = s.options;
  nlohmann::json stages = nlohmann::json::array();
  for (const auto& st : s.stages)
    stages.push_back({{"stage", st.stage},
                      {"tp_rank", st.tp_rank},
                      {"ffn", st.ffn},
                      {"expert_ffn", st.expert_ffn},
                      {"shared_expert_ffn", st.shared_expert_ffn},
                      {"first_layer", st.first_layer},
                      {"layers", st.num_layers},
                      {"weights", weights_json(st.weights)},
                      {"kv_cache", st.kv_cache_bytes},
                      {"activations", st.activation_bytes},
                      {"total", st.total()}});
  const StageSizing& big = s.largest();
  nlohmann::json j = {
      {"model",
       {{"source", s.shape.source}, {"architecture", c.architecture}, {"layers", c.num_layers},
        {"hidden", c.hidden_size}, {"heads", c.num_heads}, {"kv_heads", c.num_kv_heads},
        {"head_dim", c.head_dim}, {"ffn", c.ffn_size}, {"vocab", c.vocab_size},
        {"max_positions", c.max_positions}, {"gated_ffn", s.shape.gated_ffn},
        {"learned_positions", s.shape.learned_positions}, {"norm_bias", s.shape.norm_bias},
        {"qkv_bias", s.shape.qkv_bias}, {"out_bias", s.shape.out_bias}, {"mlp_bias", s.shape.mlp_bias},
        {"tied_embeddings", c.tied_embeddings},
        {"parameters", s.parameters}}},
      {"options",
       {{"device", o.device == kestrel::DeviceKind::cpu ? "cpu" : "cuda"}, {"dtype", kestrel::to_string(o.dtype)},
        {"kv_dtype", kestrel::to_string(*s.session.kv_dtype)}, {"quantization", kestrel::to_string(o.quantization)},
        {"stored_formats", s.shape.file != nullptr},
        {"group_size", o.group_size}, {"tp", o.tp}, {"pp", o.pp},
        {"max_sequences", s.session.max_sequences}, {"max_sequence_tokens", s.session.max_sequence_tokens},
        {"max_step_tokens", s.session.max_step_tokens}, {"kv_block_size", s.session.kv_block_size},
        {"kv_blocks", s.session.kv_blocks}, {"memory", o.memory_bytes}, {"bandwidth", o.bandwidth},
        {"flop_rate", o.flop_rate}}},
      {"per_gpu",
       {{"stage", big.stage}, {"weights", big.weights.total()}, {"kv_cache", big.kv_cache_bytes},
        {"activations", big.activation_bytes}, {"total", big.total()}, {"kv_bytes_per_token", s.kv_bytes_per_token}}},
      {"stages", stages},
  };
  if (!big.weights.formats.empty()) j["per_gpu"]["weight_formats"] = big.weights.formats;
  if (o.memory_bytes > 0) {
    j["fits"] = s.fits;
    j["max_sequences_that_fit"] = s.max_sequences_that_fit;
  }
  if (o.bandwidth > 0 && o.flop_rate > 0)
    j["roofline"] = {{"decode_step_seconds", s.decode_step_seconds},
                     {"decode_tokens_per_second", s.session.max_sequences / s.decode_step_seconds},
                     {"context_step_seconds", s.context_step_seconds}};
  return j;
}

void print_text(const Sizing& s) {
  const auto& c = s.shape.config;
  const auto& o = s.options;
  const StageSizing& big = s.largest();
  fmt::print("model      {}: {}, {} layers, hidden {}, {} heads ({} KV, head dim {}), FFN {}{}, vocab {}, "
             "max positions {}; {:.4g}{} parameters\n",
             s.shape.source, c.architecture, c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim,
             c.ffn_size, s.shape.gated_ffn ? " gated" : "", c.vocab_size, c.max_positions,
             s.parameters >= 1e9 ? s.parameters / 1e9 : s.parameters / 1e6, s.parameters >= 1e9 ? " B" : " M");
  if (c.num_experts > 0) {
    const auto sparse = std::count(s.shape.sparse_layers.begin(), s.shape.sparse_layers.end(), true);
    // Under tensor parallelism each rank holds its columns of every expert.
    const StageSizing& rank = s.largest();
    auto per_rank = [&](int columns) { return o.tp > 1 ? fmt::format(" ({} a rank)", columns) : std::string(); };
    fmt::print("experts    {} per sparse layer ({} of {} layers), top {}, expert FFN {}{}{}\n", c.num_experts, sparse,
               c.num_layers, c.experts_per_token, c.expert_ffn_size, per_rank(rank.expert_ffn),
               c.shared_expert_ffn_size > 0
                   ? fmt::format(", shared expert FFN {}{}", c.shared_expert_ffn_size, per_rank(rank.shared_expert_ffn))
                   : "");
  }
  fmt::print("settings   {} {}, KV cache {}, quantization {}{}, tp {}, pp {}; {} sequences x {} tokens, step {} "
             "tokens, KV blocks {} x {}\n",
             o.device == kestrel::DeviceKind::cpu ? "cpu" : "cuda", kestrel::to_string(o.dtype),
             kestrel::to_string(*s.session.kv_dtype),
             kestrel::to_string(o.quantization) + std::string(s.shape.file ? " (weights sized from the stored tensors)" : ""),
             o.group_size > 0 ? " (group " + std::to_string(o.group_size) + ")" : "", o.tp, o.pp,
             s.session.max_sequences, s.session.max_sequence_tokens, s.session.max_step_tokens, s.session.kv_blocks,
             s.session.kv_block_size);
  fmt::print("{}(stage {} of {}: layers {}-{}{})\n", o.device == kestrel::DeviceKind::cpu ? "per rank   " : "per GPU    ",
             big.stage, o.pp, big.first_layer,
             big.first_layer + big.num_layers - 1, o.tp > 1 ? fmt::format("; tensor rank {}", big.tp_rank) : "");
  fmt::print("  weights      {:>12}   (embeddings {}, layers {}, LM head {}{})\n", format_bytes(big.weights.total()),
             format_bytes(big.weights.token_embedding + big.weights.position_embedding),
             format_bytes(big.weights.layers), format_bytes(big.weights.lm_head), big.lm_head_tied_here ? ", tied" : "");
  if (!big.weights.formats.empty()) fmt::print("               {:>12}   (by format: {})\n", "", formats_text(big.weights));
  fmt::print("  KV cache     {:>12}   ({} per token)\n", format_bytes(big.kv_cache_bytes),
             format_bytes(s.kv_bytes_per_token));
  fmt::print("  activations  {:>12}\n", format_bytes(big.activation_bytes));
  fmt::print("  total        {:>12}\n", format_bytes(big.total()));
  if (o.memory_bytes > 0)
    fmt::print("memory     {}: {}; at most {} sequences of {} tokens fit\n", format_bytes(o.memory_bytes),
               s.fits ? "fits" : "does NOT fit", s.max_sequences_that_fit, s.session.max_sequence_tokens);
  if (o.bandwidth > 0 && o.flop_rate > 0)
    fmt::print("roofline   {:.3f} TB/s, {:.1f} TFLOP/s per GPU: generation step ({} sequences at {} tokens) {:.3f} ms "
               "= {:.1f} tokens/s; context step ({} tokens) {:.3f} ms\n",
               o.bandwidth / 1e12, o.flop_rate / 1e12, s.session.max_sequences, s.session.max_sequence_tokens,
               1e3 * s.decode_step_seconds, s.session.max_sequences / s.decode_step_seconds,
               s.session.max_step_tokens, 1e3 * s.context_step_seconds);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Memory and speed sizing for a Kestrel model", "kestrel-size"};
  std::string model, preset, device = "cuda", dtype, kv_dtype, quant = "auto", memory, bandwidth, flops;
  DimArgs dims;
  SizingOptions options;
  options.session.max_sequences = 1;
  bool json = false, list = false;
  auto* model_opt = app.add_option("-m,--model", model, "A model directory or .gguf file (only its metadata is read)");
  app.add_option("--preset", preset, "A named shape (see --list-presets)")->excludes(model_opt);
  app.add_flag("--list-presets", list, "List the presets and exit");
  app.add_option("--arch", dims.arch, "Layer kinds for a shape from flags: gpt2 (LayerNorm, biases, learned "
                                      "positions) or llama (RMSNorm, SwiGLU, rotary, no biases)")
      ->check(CLI::IsMember({"gpt2", "llama"}));
  app.add_option("--layers", dims.layers, "Transformer layers");
  app.add_option("--hidden", dims.hidden, "Hidden size");
  app.add_option("--heads", dims.heads, "Attention heads");
  app.add_option("--kv-heads", dims.kv_heads, "KV heads (default: --heads)");
  app.add_option("--head-dim", dims.head_dim, "Head dimension (default: hidden / heads)");
  app.add_option("--ffn", dims.ffn, "FFN inner size");
  app.add_option("--vocab", dims.vocab, "Vocabulary size");
  app.add_option("--max-positions", dims.max_positions, "Longest sequence the model supports");
  app.add_option("--tied", dims.tied, "LM head tied to the token embedding (true/false)");
  app.add_option("--device", device, "Where the model runs: cuda (sizes per GPU) or cpu")
      ->check(CLI::IsMember({"cuda", "cpu"}))
      ->capture_default_str();
  app.add_option("--dtype", dtype, "Activations and float weights: f32, f16 or bf16 (default: f16 on cuda, f32 on "
                                   "the cpu, which runs f32 only)");
  app.add_option("--kv-dtype", kv_dtype, "KV cache, as SessionOptions.kv_dtype (default: f16 on the cpu, --dtype on cuda)");
  app.add_option("--quant", quant,
                 "Weight quantization, as kestrel-generate's --quant: auto (a .gguf's blocks as stored, float "
                 "weights float; a checkpoint's declared mode), none, int8, int4, w8a8, fp8")
      ->capture_default_str();
  app.add_option("--group-size", options.group_size,
                 "Quantization group, as kestrel-generate's --quant-group-size (0: int8 per channel, int4 32)")
      ->capture_default_str();
  app.add_option("--tp", options.tp, "Tensor-parallel GPUs")->capture_default_str();
  app.add_option("--pp", options.pp, "Pipeline stages")->capture_default_str();
  app.add_option("-b,--batch", options.session.max_sequences, "Concurrent sequences (SessionOptions.max_sequences)")
      ->capture_default_str();
  app.add_option("-s,--seq-len", options.session.max_sequence_tokens,
                 "Prompt + generated tokens per sequence (0: the model's max positions)")
      ->capture_default_str();
  app.add_option("--max-step-tokens", options.session.max_step_tokens, "Prompt tokens per context step")
      ->capture_default_str();
  app.add_option("--kv-block-size", options.session.kv_block_size, "Positions per KV block")->capture_default_str();
  app.add_option("--kv-blocks", options.session.kv_blocks, "KV blocks (0: every sequence at full length)")
      ->capture_default_str();
  app.add_option("--memory", memory, "Memory of one GPU, e.g. 80GiB: report whether it fits and how many sequences do");
  app.add_option("--bandwidth", bandwidth, "Memory bandwidth of one GPU for the roofline, e.g. 3.35TB/s");
  app.add_option("--flops", flops, "Dense FLOP rate of one GPU for the roofline, e.g. 989T");
  app.add_flag("--json", json, "Print JSON instead of text");
  CLI11_PARSE(app, argc, argv);

  try {
    if (list) {
      for (const auto& name : preset_names()) std::cout << name << "\n";
      return 0;
    }
    options.device = device == "cpu" ? kestrel::DeviceKind::cpu : kestrel::DeviceKind::cuda;
    options.dtype = dtype.empty() ? (device == "cpu" ? kestrel::DType::f32 : kestrel::DType::f16)
                                  : kestrel::parse_dtype(dtype, "--dtype");
    if (!kv_dtype.empty()) options.session.kv_dtype = kestrel::parse_dtype(kv_dtype, "--kv-dtype");
    options.quantization = kestrel::parse_quantization(quant, "--quant");
    if (!memory.empty()) options.memory_bytes = static_cast<size_t>(parse_bytes(memory, "--memory"));
    if (!bandwidth.empty()) options.bandwidth = parse_rate(bandwidth, "--bandwidth");
    if (!flops.empty()) options.flop_rate = parse_rate(flops, "--flops");
    if ((options.bandwidth > 0) != (options.flop_rate > 0))
      throw kestrel::Error(kestrel::ErrorCategory::invalid_argument, "the roofline needs both --bandwidth and --flops");
    const Sizing s = compute(apply_dims(base_shape(model, preset, dims), dims), options);
    if (json) std::cout << to_json(s).dump(2) << std::endl;
    else print_text(s);
    return 0;
  } catch (const kestrel::Error& e) {
    std::cerr << "kestrel-size: " << e.what() << std::endl;
    return 1;
  }
}
