#include "tools/gguf_to_hf.h"

#include <set>

#include "kestrel/error.h"
#include "loaders/gguf.h"
#include "models/architecture.h"
#include "models/model_state.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer_gguf.h"

namespace kestrel::tools {

namespace {

using nlohmann::json;

[[noreturn]] void refuse(const std::string& where, const std::string& what) {
  throw Error(ErrorCategory::unsupported, where + ": cannot write a Hugging Face directory of it: " + what);
}

json byte_level(bool use_regex) {
  return {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", use_regex}};
}

// tokenizer.json and tokenizer_config.json holding what the GGUF tokenizer holds
// (tokenizer/tokenizer_json.cc reads back the same spec).
void write_tokenizer(const TokenizerSpec& spec, const std::string& chat_template, const std::string& where,
                     HfLayout& out) {
  if (spec.model != TokenizerModel::byte_level_bpe) refuse(where, "its tokenizer is not byte-level BPE");
  if (spec.add_eos) refuse(where, "its tokenizer appends eos (tokenizer.ggml.add_eos_token)");
  if (spec.add_prefix_space) refuse(where, "its tokenizer adds a prefix space");
  json vocab = json::object();
  for (size_t id = 0; id < spec.vocab.size(); ++id) {
    if (vocab.contains(spec.vocab[id]))
      refuse(where, "token " + std::to_string(id) + " repeats the string of token " +
                        std::to_string(vocab[spec.vocab[id]].get<int>()) + " (a tokenizer.json vocab cannot)");
    vocab[spec.vocab[id]] = id;
  }
  json merges = json::array();
  for (const auto& [left, right] : spec.merges) merges.push_back(left + " " + right);
  json added = json::array();
  auto add = [&](int32_t id, bool special) {
    added.push_back({{"id", id}, {"content", spec.vocab[static_cast<size_t>(id)]}, {"single_word", false},
                     {"lstrip", false}, {"rstrip", false}, {"normalized", false}, {"special", special}});
  };
  for (int32_t id : spec.special_ids) add(id, true);
  for (int32_t id : spec.added_ids) add(id, false);
  json pre;
  switch (spec.pre_tokenizer) {
    case PreTokenizer::gpt2: pre = byte_level(true); break;
    case PreTokenizer::smollm:
      pre = {{"type", "Sequence"},
             {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}}, byte_level(true)}}};
      break;
    case PreTokenizer::llama3:
    case PreTokenizer::gpt4o:
      pre = {{"type", "Sequence"},
             {"pretokenizers",
              {{{"type", "Split"},
                {"pattern",
                 {{"Regex", std::string(spec.pre_tokenizer == PreTokenizer::llama3 ? tokenizer::kLlama3Pattern
                                                                                    : tokenizer::kGpt4oPattern)}}},
                {"behavior", "Isolated"},
                {"invert", false}},
               byte_level(false)}}};
      break;
  }
  json post = byte_level(true);
  if (spec.add_bos) {
    if (!spec.bos_id) refuse(where, "its tokenizer adds a bos token but names none");
    const std::string bos = spec.vocab[static_cast<size_t>(*spec.bos_id)];
    post = {{"type", "TemplateProcessing"},
            {"single", {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
            {"pair",
             {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
              {{"SpecialToken", {{"id", bos}, {"type_id", 1}}}},
              {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
            {"special_tokens", {{bos, {{"id", bos}, {"ids", {*spec.bos_id}}, {"tokens", {bos}}}}}}};
  }
  out.tokenizer = {{"version", "1.0"},
                   {"truncation", nullptr},
                   {"padding", nullptr},
                   {"added_tokens", added},
                   {"normalizer", nullptr},
                   {"pre_tokenizer", pre},
                   {"post_processor", post},
                   {"decoder", byte_level(true)},
                   {"model",
                    {{"type", "BPE"},
                     {"dropout", nullptr},
                     {"unk_token", spec.unk_id ? json(spec.vocab[static_cast<size_t>(*spec.unk_id)]) : json(nullptr)},
                     {"continuing_subword_prefix", nullptr},
                     {"end_of_word_suffix", nullptr},
                     {"fuse_unk", false},
                     {"byte_fallback", false},
                     {"ignore_merges", spec.ignore_merges},
                     {"vocab", vocab},
                     {"merges", merges}}}};
  out.tokenizer_config = {{"tokenizer_class", "PreTrainedTokenizerFast"}, {"add_bos_token", spec.add_bos}};
  if (spec.bos_id) out.tokenizer_config["bos_token"] = spec.vocab[static_cast<size_t>(*spec.bos_id)];
  if (spec.eos_id) out.tokenizer_config["eos_token"] = spec.vocab[static_cast<size_t>(*spec.eos_id)];
  if (!chat_template.empty()) out.tokenizer_config["chat_template"] = chat_template;
}

// The slots whose recipes name tensors of a dense model.
constexpr WeightSlot kModelSlots[] = {WeightSlot::token_embedding, WeightSlot::position_embedding,
                                      WeightSlot::final_norm_weight, WeightSlot::final_norm_bias,
                                      WeightSlot::lm_head, WeightSlot::lm_head_bias};
constexpr WeightSlot kLayerSlots[] = {
    WeightSlot::attn_norm_weight, WeightSlot::attn_norm_bias, WeightSlot::qkv_weight,  WeightSlot::qkv_bias,
    WeightSlot::out_weight,       WeightSlot::out_bias,       WeightSlot::ffn_norm_weight, WeightSlot::ffn_norm_bias,
    WeightSlot::up_weight,        WeightSlot::up_bias,        WeightSlot::down_weight,  WeightSlot::down_bias};

}  // namespace

void unpermute_rotary_rows(std::vector<float>& w, int64_t rows, int64_t cols, int64_t head_dim) {
  const std::vector<float> in = w;
  const int64_t half = head_dim / 2;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t head = r / head_dim, j = r % head_dim;  // GGUF row j = 2i + p
    const int64_t hf = head * head_dim + (j % 2) * half + j / 2;
    std::copy(in.begin() + r * cols, in.begin() + (r + 1) * cols, w.begin() + hf * cols);
  }
}

HfLayout hf_layout_from_gguf(const Model& model) {
  const detail::ModelState& state = model.state();
  const Architecture& gguf = state.arch;
  const std::string where = state.path.string();
  if (gguf.config.architecture != "llama") refuse(where, "architecture '" + gguf.config.architecture + "' (llama only)");
  if (gguf.config.num_experts != 0) refuse(where, "a mixture of experts");
  GgufFile file(state.path);
  const ModelConfig& c = gguf.config;
  HfLayout out;
  json& config = out.config;
  config = {{"architectures", {"LlamaForCausalLM"}},
            {"model_type", "llama"},
            {"hidden_size", c.hidden_size},
            {"intermediate_size", c.ffn_size},
            {"num_hidden_layers", c.num_layers},
            {"num_attention_heads", c.num_heads},
            {"num_key_value_heads", c.num_kv_heads},
            {"head_dim", c.head_dim},
            {"hidden_act", "silu"},
            {"max_position_embeddings", c.max_positions},
            {"rms_norm_eps", static_cast<double>(c.norm_eps)},
            {"rope_theta", file.get_float("llama.rope.freq_base").value_or(10000.0)},
            {"vocab_size", c.vocab_size},
            {"tie_word_embeddings", c.tied_embeddings},
            {"attention_bias", file.find_tensor("blk.0.attn_q.bias") != nullptr},
            {"mlp_bias", file.find_tensor("blk.0.ffn_up.bias") != nullptr},
            {"torch_dtype", "float32"}};
  const TokenizerSpec spec = tokenizer::read_gguf_tokenizer(file);
  if (spec.bos_id) config["bos_token_id"] = *spec.bos_id;
  if (spec.eos_id) config["eos_token_id"] = *spec.eos_id;
  write_tokenizer(spec, file.get_string("tokenizer.chat_template").value_or(""), where, out);

  // Read the config back: it must describe the GGUF's model exactly.
  std::set<std::string> hf_names;
  const Architecture probe = architecture_from_hf_json(config, where + " (rebuilt config.json)",
                                                       [](const std::string&) { return true; });
  const ModelConfig& h = probe.config;
  if (h.hidden_size != c.hidden_size || h.ffn_size != c.ffn_size || h.num_layers != c.num_layers ||
      h.num_heads != c.num_heads || h.num_kv_heads != c.num_kv_heads || h.head_dim != c.head_dim ||
      h.vocab_size != c.vocab_size || h.norm_eps != c.norm_eps || h.max_positions != c.max_positions ||
      h.tied_embeddings != c.tied_embeddings)
    refuse(where, "the rebuilt config.json does not give the file's dimensions");
  if (probe.kinds.rotary_inv_freq != gguf.kinds.rotary_inv_freq)
    refuse(where, "its rotary frequencies (rope scaling, partial rotary or rope_freqs) have no plain Llama config.json");

  const int64_t hd = c.head_dim;
  auto map_slot = [&](WeightSlot slot, int layer) {
    const WeightRecipe g = gguf.recipe(slot, layer), f = probe.recipe(slot, layer);
    if (g.sources.size() != f.sources.size() || g.transposed != f.transposed || g.offset != f.offset || g.scale != f.scale ||
        g.interleaved_head_rows != f.interleaved_head_rows)
      refuse(where, std::string("the recipes of ") + to_string(slot) + " differ between GGUF and Hugging Face");
    const bool qk = slot == WeightSlot::qkv_weight || slot == WeightSlot::qkv_bias;
    for (size_t k = 0; k < g.sources.size(); ++k) {
      if (!file.find_tensor(g.sources[k])) refuse(where, "tensor '" + g.sources[k] + "' is missing");
      HfLayout::Target t{f.sources[k], qk && k < 2 ? hd : 0};
      if (slot == WeightSlot::qkv_bias && t.rotary_head_dim > 0)
        refuse(where, "Q / K biases (their rotary order is not rewritten)");
      out.tensors.emplace(g.sources[k], std::move(t));
    }
  };
  for (WeightSlot slot : kModelSlots) map_slot(slot, -1);
  for (int l = 0; l < c.num_layers; ++l)
    for (WeightSlot slot : kLayerSlots) map_slot(slot, l);
  return out;
}

}  // namespace kestrel::tools
