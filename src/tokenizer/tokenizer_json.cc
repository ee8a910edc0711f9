// Reading Hugging Face tokenizer.json into a TokenizerSpec.
#include <nlohmann/json.hpp>

#include "kestrel/error.h"
#include "tokenizer/file_fields.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer_files.h"

namespace kestrel::tokenizer {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

bool is_byte_level(const json& node) { return node.is_object() && type_of(node) == "ByteLevel"; }

// The pre-tokenizers Kestrel implements, in the forms Hugging Face writes them:
//   ByteLevel(use_regex)                                           -> gpt2
//   Sequence[Split(Regex(<GPT-2, Llama-3 or o200k pattern>), Isolated), ByteLevel(no regex)]
//                                                                  -> gpt2 / llama3 / gpt4o
//   Sequence[Digits(individual_digits), ByteLevel(use_regex)]      -> smollm
void read_pre_tokenizer(const FileContext& file, const json& root, TokenizerSpec& spec) {
  auto it = root.find("pre_tokenizer");
  const json none;
  const json& node = it == root.end() ? none : *it;
  auto unsupported = [&]() {
    file.fail(ErrorCategory::unsupported,
              "pre_tokenizer " + excerpt(node) +
                  " is not supported (expected ByteLevel, Split with the GPT-2, Llama-3 or o200k regex "
                  "then ByteLevel, or Digits then ByteLevel)");
  };
  if (is_byte_level(node)) {
    if (!flag(file, node, "use_regex", true, "pre_tokenizer.use_regex")) unsupported();
    spec.pre_tokenizer = PreTokenizer::gpt2;
    spec.add_prefix_space =
        flag(file, node, "add_prefix_space", false, "pre_tokenizer.add_prefix_space");
    return;
  }
  if (!node.is_object() || type_of(node) != "Sequence") unsupported();
  auto steps_it = node.find("pretokenizers");
  if (steps_it == node.end() || !steps_it->is_array()) unsupported();
  const json& steps = *steps_it;
  auto byte_level_last = [&](bool use_regex) {
    const json& last = steps.back();
    return is_byte_level(last) &&
           flag(file, last, "use_regex", true, "pre_tokenizer.use_regex") == use_regex &&
           !flag(file, last, "add_prefix_space", false, "pre_tokenizer.add_prefix_space");
  };
  if (steps.size() == 1 && is_byte_level(steps[0])) {
    if (!flag(file, steps[0], "use_regex", true, "pre_tokenizer.use_regex")) unsupported();
    spec.pre_tokenizer = PreTokenizer::gpt2;
    spec.add_prefix_space =
        flag(file, steps[0], "add_prefix_space", false, "pre_tokenizer.add_prefix_space");
    return;
  }
  if (steps.size() != 2) unsupported();
  const json& first = steps[0];
  if (type_of(first) == "Digits" && byte_level_last(true) &&
      flag(file, first, "individual_digits", false, "pre_tokenizer.individual_digits")) {
    spec.pre_tokenizer = PreTokenizer::smollm;
    return;
  }
  if (type_of(first) != "Split" || !byte_level_last(false)) unsupported();
  const json* regex = nullptr;
  if (auto p = first.find("pattern"); p != first.end() && p->is_object()) {
    if (auto r = p->find("Regex"); r != p->end() && r->is_string()) regex = &*r;
  }
  auto behavior = first.find("behavior");
  if (regex == nullptr || behavior == first.end() || *behavior != "Isolated" ||
      flag(file, first, "invert", false, "pre_tokenizer.invert")) {
    unsupported();
  }
  if (*regex == kLlama3Pattern) {
    spec.pre_tokenizer = PreTokenizer::llama3;
  } else if (*regex == kGpt4oPattern) {
    spec.pre_tokenizer = PreTokenizer::gpt4o;
  } else if (*regex == kGpt2Pattern) {
    spec.pre_tokenizer = PreTokenizer::gpt2;
  } else {
    unsupported();
  }
}

// The one special token that TemplateProcessing puts before or after the text.
void read_template(const FileContext& file, const json& node, const std::string& field,
                   TokenizerSpec& spec) {
  const json& single = member(file, node, "single", field + ".single");
  if (!single.is_array()) file.format(field + ".single: expected an array");
  const json& special_tokens = member(file, node, "special_tokens", field + ".special_tokens");
  std::vector<int32_t> before, after;
  bool seen_text = false;
  for (size_t i = 0; i < single.size(); ++i) {
    const json& item = single[i];
    std::string item_field = field + ".single[" + std::to_string(i) + "]";
    if (item.contains("Sequence")) {
      if (seen_text) file.format(item_field + ": the text appears twice");
      seen_text = true;
      continue;
    }
    const json* name = nullptr;
    if (auto s = item.find("SpecialToken"); s != item.end() && s->is_object()) {
      if (auto id = s->find("id"); id != s->end() && id->is_string()) name = &*id;
    }
    if (name == nullptr) file.format(item_field + ": expected a Sequence or a SpecialToken");
    auto entry = special_tokens.find(name->get<std::string>());
    if (entry == special_tokens.end()) {
      file.format(item_field + ": special token " + in_quotes(name->get<std::string>()) +
                  " is not in " + field + ".special_tokens");
    }
    if (!entry->contains("ids") || !(*entry)["ids"].is_array() || (*entry)["ids"].size() != 1) {
      file.fail(ErrorCategory::unsupported,
                item_field + ": special token " + in_quotes(name->get<std::string>()) +
                    " must map to exactly one id in " + field + ".special_tokens");
    }
    int32_t id = token_id_value(file, (*entry)["ids"][0], field + ".special_tokens");
    (seen_text ? after : before).push_back(id);
  }
  if (before.size() > 1 || after.size() > 1) {
    file.fail(ErrorCategory::unsupported,
              field + ".single: more than one special token before or after the text");
  }
  if (!before.empty()) {
    spec.add_bos = true;
    spec.bos_id = before[0];
  }
  if (!after.empty()) {
    spec.add_eos = true;
    spec.eos_id = after[0];
  }
}

void read_post_processor(const FileContext& file, const json& node, const std::string& field,
                         TokenizerSpec& spec) {
  if (node.is_null()) return;
  std::string type = type_of(node);
  if (type == "ByteLevel") return;  // only adjusts offsets
  if (type == "TemplateProcessing") {
    read_template(file, node, field, spec);
    return;
  }
  if (type == "Sequence") {
    const json& steps = member(file, node, "processors", field + ".processors");
    if (!steps.is_array()) file.format(field + ".processors: expected an array");
    for (size_t i = 0; i < steps.size(); ++i) {
      read_post_processor(file, steps[i], field + ".processors[" + std::to_string(i) + "]", spec);
    }
    return;
  }
  file.fail(ErrorCategory::unsupported, field + " " + in_quotes(type) + " is not supported");
}

void read_model(const FileContext& file, const json& model, TokenizerSpec& spec,
                VocabBuilder& vocab, std::optional<std::string>& unk_token) {
  if (!model.is_object()) file.format("model: expected an object");
  if (auto type = model.find("type"); type != model.end() && *type != "BPE") {
    file.fail(ErrorCategory::unsupported,
              "model.type " + excerpt(*type) + " is not supported (only BPE)");
  }
  read_vocab_object(file, member(file, model, "vocab", "model.vocab"), "model.vocab", vocab);

  const json& merges = member(file, model, "merges", "model.merges");
  if (!merges.is_array()) file.format("model.merges: expected an array");
  spec.merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& m = merges[i];
    std::string field = "model.merges[" + std::to_string(i) + "]";
    if (m.is_string()) {
      const std::string& line = m.get_ref<const std::string&>();
      size_t space = line.find(' ');
      if (space == std::string::npos || space == 0 || space + 1 == line.size() ||
          line.find(' ', space + 1) != std::string::npos) {
        file.format(field + ": expected two tokens separated by one space, got " + in_quotes(line));
      }
      spec.merges.emplace_back(line.substr(0, space), line.substr(space + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      spec.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      file.format(field + ": expected \"left right\" or [left, right], got " + excerpt(m));
    }
  }

  spec.ignore_merges = flag(file, model, "ignore_merges", false, "model.ignore_merges");
  // Byte fallback is SentencePiece's: characters outside the vocab as <0xXX> tokens.
  if (flag(file, model, "byte_fallback", false, "model.byte_fallback")) {
    spec.model = TokenizerModel::sentencepiece;
    if (!flag(file, model, "fuse_unk", false, "model.fuse_unk")) {
      file.fail(ErrorCategory::unsupported, "model.byte_fallback without model.fuse_unk is not supported");
    }
    if (spec.ignore_merges) {
      file.fail(ErrorCategory::unsupported, "model.byte_fallback with model.ignore_merges is not supported");
    }
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = model.find(key);
    if (it != model.end() && !it->is_null() && *it != "") {
      file.fail(ErrorCategory::unsupported, std::string("model.") + key + " is not supported");
    }
  }
  if (auto it = model.find("dropout");
      it != model.end() && !it->is_null() && *it != 0 && *it != 1.0) {
    file.fail(ErrorCategory::unsupported, "model.dropout is not supported");
  }
  if (auto it = model.find("unk_token"); it != model.end() && !it->is_null()) {
    if (!it->is_string()) file.format("model.unk_token: expected a string");
    unk_token = it->get<std::string>();
  }
}

void read_added_tokens(const FileContext& file, const json& root, TokenizerSpec& spec,
                       VocabBuilder& vocab) {
  auto it = root.find("added_tokens");
  if (it == root.end() || it->is_null()) return;
  if (!it->is_array()) file.format("added_tokens: expected an array");
  for (size_t i = 0; i < it->size(); ++i) {
    const json& token = (*it)[i];
    std::string field = "added_tokens[" + std::to_string(i) + "]";
    if (!token.is_object()) file.format(field + ": expected an object");
    int32_t id = token_id_value(file, member(file, token, "id", field + ".id"), field + ".id");
    const json& content = member(file, token, "content", field + ".content");
    if (!content.is_string()) file.format(field + ".content: expected a string");
    for (const char* option : {"lstrip", "rstrip", "single_word"}) {
      if (flag(file, token, option, false, field + "." + option)) {
        file.fail(ErrorCategory::unsupported, field + "." + option + " true is not supported");
      }
    }
    vocab.place(id, content.get<std::string>(), field);
    bool special = flag(file, token, "special", false, field + ".special");
    (special ? spec.special_ids : spec.added_ids).push_back(id);
  }
}

LoadedSpec read_tokenizer_json_root(const FileContext& file, const json& root,
                                    const fs::path& path) {
  if (!root.is_object()) file.format("expected a JSON object at the top level");
  LoadedSpec loaded;
  loaded.origin.source = file.path;
  loaded.origin.merges_field = "model.merges";
  TokenizerSpec& spec = loaded.spec;

  const json& model = member(file, root, "model", "model");
  size_t capacity = 0;
  if (auto it = model.find("vocab"); it != model.end()) capacity += it->size();
  if (auto it = root.find("added_tokens"); it != root.end()) capacity += it->size();
  VocabBuilder vocab{file, capacity, {}, {}};
  std::optional<std::string> unk_token;
  read_model(file, model, spec, vocab, unk_token);
  read_added_tokens(file, root, spec, vocab);
  spec.vocab = vocab.finish("model.vocab");
  if (unk_token) {
    spec.unk_id = find_token(spec, *unk_token);
    if (!spec.unk_id)
      file.format("model.unk_token: " + in_quotes(*unk_token) + " is not in the vocab");
  }

  if (spec.model == TokenizerModel::sentencepiece) {
    read_sentencepiece_json(file, root, spec);
  } else if (auto it = root.find("normalizer"); it != root.end() && !it->is_null()) {
    file.fail(ErrorCategory::unsupported,
              "normalizer " + in_quotes(type_of(*it)) + " is not supported");
  }
  if (spec.model == TokenizerModel::byte_level_bpe) read_pre_tokenizer(file, root, spec);
  if (auto it = root.find("decoder"); spec.model == TokenizerModel::byte_level_bpe && it != root.end() &&
                                      !it->is_null() && !is_byte_level(*it)) {
    file.fail(ErrorCategory::unsupported,
              "decoder " + in_quotes(type_of(*it)) + " is not supported (only ByteLevel)");
  }
  default_special_tokens(spec);
  apply_tokenizer_config(path.parent_path(), spec, false);
  // Last: the tokens the post-processor adds are the bos / eos that encode() must add.
  if (auto it = root.find("post_processor"); it != root.end()) {
    read_post_processor(file, *it, "post_processor", spec);
  }
  return loaded;
}

}  // namespace

LoadedSpec read_tokenizer_json(const fs::path& path) {
  FileContext file{path.string()};
  json root = parse_json(path);
  try {
    return read_tokenizer_json_root(file, root, path);
  } catch (const json::exception& e) {
    // A field of an unexpected type that the checks above did not name.
    file.format(e.what());
  }
}

}  // namespace kestrel::tokenizer
