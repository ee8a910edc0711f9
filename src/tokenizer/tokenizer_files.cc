// Reading Hugging Face tokenizer files: tokenizer.json, vocab.json + merges.txt and the
// bos / eos / added tokens of tokenizer_config.json.
#include "tokenizer/tokenizer_files.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "kestrel/error.h"
#include "tokenizer/pretokenize.h"

namespace kestrel::tokenizer {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::string in_quotes(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out.append(1, '\'').append(s).append(1, '\'');
  return out;
}

// A JSON value shortened for an error message.
std::string excerpt(const json& value) {
  std::string s = value.dump();
  return s.size() > 160 ? s.substr(0, 157) + "..." : s;
}

// Errors about one file: every message starts with its path.
struct FileContext {
  std::string path;
  [[noreturn]] void fail(ErrorCategory category, const std::string& what) const {
    throw Error(category, path + ": " + what);
  }
  [[noreturn]] void format(const std::string& what) const { fail(ErrorCategory::format, what); }
};

std::string read_text(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    throw Error(ErrorCategory::io, path.string() + ": no such file (or not a regular file)");
  }
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  if (!in || in.bad()) throw Error(ErrorCategory::io, path.string() + ": cannot read");
  return s.str();
}

json parse_json(const fs::path& path) {
  std::string text = read_text(path);
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    throw Error(ErrorCategory::format, path.string() + ": malformed JSON: " + e.what());
  }
}

// Fields: `field` names the value in messages (e.g. "model.vocab").
const json& member(const FileContext& file, const json& object, const char* key,
                   const std::string& field) {
  auto it = object.find(key);
  if (it == object.end()) file.format("missing field " + field);
  return *it;
}

bool flag(const FileContext& file, const json& object, const char* key, bool fallback,
          const std::string& field) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) file.format(field + ": expected true or false, got " + excerpt(*it));
  return it->get<bool>();
}

int32_t token_id_value(const FileContext& file, const json& value, const std::string& field) {
  if (!value.is_number_integer() || value.get<int64_t>() < 0 ||
      value.get<int64_t>() > INT32_MAX) {
    file.format(field + ": expected a token id (a non-negative integer), got " + excerpt(value));
  }
  return static_cast<int32_t>(value.get<int64_t>());
}

std::string type_of(const json& node) {
  if (!node.is_object()) return excerpt(node);
  auto it = node.find("type");
  return it != node.end() && it->is_string() ? it->get<std::string>() : excerpt(node);
}

// Places `text` at `id` in a vocab being filled in any order; the same id twice with two
// different strings is an error.
void place(const FileContext& file, std::vector<std::string>& vocab, std::vector<uint8_t>& used,
           int32_t id, const std::string& text, const std::string& field) {
  if (static_cast<size_t>(id) >= vocab.size()) {
    vocab.resize(id + 1);
    used.resize(id + 1, 0);
  }
  if (used[id] && vocab[id] != text) {
    file.format(field + ": duplicate id " + std::to_string(id) + " (already " +
                in_quotes(vocab[id]) + ")");
  }
  vocab[id] = text;
  used[id] = 1;
}

void check_dense(const FileContext& file, const std::vector<uint8_t>& used,
                 const std::string& field) {
  for (size_t id = 0; id < used.size(); ++id) {
    if (!used[id]) {
      file.format(field + ": no token has id " + std::to_string(id) + " (ids must run from 0 to " +
                  std::to_string(used.size() - 1) + " without gaps)");
    }
  }
}

// The vocab object {"token": id, ...}.
void read_vocab_object(const FileContext& file, const json& object, const std::string& field,
                       std::vector<std::string>& vocab, std::vector<uint8_t>& used) {
  if (!object.is_object()) file.format(field + ": expected an object of token -> id");
  for (const auto& [text, id_value] : object.items()) {
    std::string entry = field + "[" + in_quotes(text) + "]";
    place(file, vocab, used, token_id_value(file, id_value, entry), text, entry);
  }
}

std::optional<int32_t> find_token(const TokenizerSpec& spec, std::string_view text) {
  for (size_t id = 0; id < spec.vocab.size(); ++id) {
    if (spec.vocab[id] == text) return static_cast<int32_t>(id);
  }
  return std::nullopt;
}

// A token named in tokenizer_config.json: "text", or an AddedToken {"content": "text"}.
std::optional<std::string> token_content(const FileContext& file, const json& value,
                                         const std::string& field) {
  if (value.is_null()) return std::nullopt;
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object()) {
    const json& content = member(file, value, "content", field + ".content");
    if (content.is_string()) return content.get<std::string>();
  }
  file.format(field + ": expected a token string, got " + excerpt(value));
}

// tokenizer_config.json beside the tokenizer: bos_token / eos_token override the defaults;
// with `read_added`, its added_tokens_decoder also lists the added tokens.
void read_tokenizer_config(const FileContext& file, const json& config, TokenizerSpec& spec,
                           bool read_added) {
  if (!config.is_object()) file.format("expected a JSON object at the top level");

  if (read_added && config.contains("added_tokens_decoder")) {
    const json& added = config["added_tokens_decoder"];
    if (!added.is_object()) file.format("added_tokens_decoder: expected an object of id -> token");
    for (const auto& [key, token] : added.items()) {
      std::string field = "added_tokens_decoder[" + in_quotes(key) + "]";
      int32_t id = -1;
      try {
        size_t used = 0;
        id = std::stoi(key, &used);
        if (used != key.size() || id < 0) id = -1;
      } catch (const std::exception&) {
      }
      if (id < 0) file.format(field + ": the key is not a token id");
      if (!token.is_object()) file.format(field + ": expected an object");
      std::optional<std::string> content = token_content(file, token, field);
      if (!content) file.format(field + ": missing content");
      if (static_cast<size_t>(id) >= spec.vocab.size() || spec.vocab[id] != *content) {
        file.format(field + ": token " + in_quotes(*content) + " is not id " + key + " in the vocab");
      }
      bool special = flag(file, token, "special", false, field + ".special");
      std::erase(spec.special_ids, id);
      std::erase(spec.added_ids, id);
      (special ? spec.special_ids : spec.added_ids).push_back(id);
    }
  }

  auto override_token = [&](const char* key, std::optional<int32_t>& target) {
    auto it = config.find(key);
    if (it == config.end()) return;
    std::optional<std::string> content = token_content(file, *it, key);
    if (!content) return;
    std::optional<int32_t> id = find_token(spec, *content);
    if (!id) file.format(std::string(key) + ": token " + in_quotes(*content) + " is not in the vocab");
    target = id;
  };
  override_token("bos_token", spec.bos_id);
  override_token("eos_token", spec.eos_id);
}

void apply_tokenizer_config(const fs::path& dir, TokenizerSpec& spec, bool read_added) {
  fs::path path = dir / "tokenizer_config.json";
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return;
  FileContext file{path.string()};
  json config = parse_json(path);
  try {
    read_tokenizer_config(file, config, spec, read_added);
  } catch (const json::exception& e) {
    file.format(e.what());
  }
}

// GPT-2's convention: <|endoftext|> is both bos and eos, and special.
void default_special_tokens(TokenizerSpec& spec) {
  std::optional<int32_t> end_of_text = find_token(spec, "<|endoftext|>");
  if (!end_of_text) return;
  spec.bos_id = end_of_text;
  spec.eos_id = end_of_text;
}


bool is_byte_level(const json& node) { return node.is_object() && type_of(node) == "ByteLevel"; }

// The pre-tokenizers Kestrel implements, in the forms Hugging Face writes them:
//   ByteLevel(use_regex)                                           -> gpt2
//   Sequence[Split(Regex(<GPT-2 or Llama-3 pattern>), Isolated), ByteLevel(no regex)]
//                                                                  -> gpt2 / llama3
//   Sequence[Digits(individual_digits), ByteLevel(use_regex)]      -> smollm
void read_pre_tokenizer(const FileContext& file, const json& root, TokenizerSpec& spec) {
  auto it = root.find("pre_tokenizer");
  const json none;
  const json& node = it == root.end() ? none : *it;
  auto unsupported = [&]() {
    file.fail(ErrorCategory::unsupported,
              "pre_tokenizer " + excerpt(node) +
                  " is not supported (expected ByteLevel, Split with the GPT-2 or Llama-3 regex "
                  "then ByteLevel, or Digits then ByteLevel)");
  };
  if (is_byte_level(node)) {
    if (!flag(file, node, "use_regex", true, "pre_tokenizer.use_regex")) unsupported();
    spec.pre_tokenizer = PreTokenizer::gpt2;
    spec.add_prefix_space = flag(file, node, "add_prefix_space", false,
                                 "pre_tokenizer.add_prefix_space");
    return;
  }
  if (!node.is_object() || type_of(node) != "Sequence") unsupported();
  auto steps_it = node.find("pretokenizers");
  if (steps_it == node.end() || !steps_it->is_array()) unsupported();
  const json& steps = *steps_it;
  auto byte_level_last = [&](bool use_regex) {
    const json& last = steps.back();
    return is_byte_level(last) && flag(file, last, "use_regex", true, "pre_tokenizer.use_regex") == use_regex &&
           !flag(file, last, "add_prefix_space", false, "pre_tokenizer.add_prefix_space");
  };
  if (steps.size() == 1 && is_byte_level(steps[0])) {
    if (!flag(file, steps[0], "use_regex", true, "pre_tokenizer.use_regex")) unsupported();
    spec.pre_tokenizer = PreTokenizer::gpt2;
    spec.add_prefix_space = flag(file, steps[0], "add_prefix_space", false,
                                 "pre_tokenizer.add_prefix_space");
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
    if (entry == special_tokens.end() || !entry->contains("ids") || !(*entry)["ids"].is_array() ||
        (*entry)["ids"].size() != 1) {
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
                std::vector<std::string>& vocab, std::vector<uint8_t>& used,
                std::optional<std::string>& unk_token) {
  if (!model.is_object()) file.format("model: expected an object");
  if (auto type = model.find("type"); type != model.end() && *type != "BPE") {
    file.fail(ErrorCategory::unsupported,
              "model.type " + excerpt(*type) + " is not supported (only BPE)");
  }
  read_vocab_object(file, member(file, model, "vocab", "model.vocab"), "model.vocab", vocab, used);

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
  if (flag(file, model, "byte_fallback", false, "model.byte_fallback")) {
    file.fail(ErrorCategory::unsupported, "model.byte_fallback true is not supported");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = model.find(key);
    if (it != model.end() && !it->is_null() && *it != "") {
      file.fail(ErrorCategory::unsupported, std::string("model.") + key + " is not supported");
    }
  }
  if (auto it = model.find("dropout"); it != model.end() && !it->is_null() && *it != 0 &&
                                       *it != 1.0) {
    file.fail(ErrorCategory::unsupported, "model.dropout is not supported");
  }
  if (auto it = model.find("unk_token"); it != model.end() && !it->is_null()) {
    if (!it->is_string()) file.format("model.unk_token: expected a string");
    unk_token = it->get<std::string>();
  }
}

void read_added_tokens(const FileContext& file, const json& root, TokenizerSpec& spec,
                       std::vector<std::string>& vocab, std::vector<uint8_t>& used) {
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
    place(file, vocab, used, id, content.get<std::string>(), field);
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

  std::vector<uint8_t> used;
  std::optional<std::string> unk_token;
  read_model(file, member(file, root, "model", "model"), spec, spec.vocab, used, unk_token);
  read_added_tokens(file, root, spec, spec.vocab, used);
  check_dense(file, used, "model.vocab");
  if (unk_token) {
    spec.unk_id = find_token(spec, *unk_token);
    if (!spec.unk_id) file.format("model.unk_token: " + in_quotes(*unk_token) + " is not in the vocab");
  }

  if (auto it = root.find("normalizer"); it != root.end() && !it->is_null()) {
    file.fail(ErrorCategory::unsupported, "normalizer " + in_quotes(type_of(*it)) + " is not supported");
  }
  read_pre_tokenizer(file, root, spec);
  if (auto it = root.find("decoder"); it != root.end() && !it->is_null() && !is_byte_level(*it)) {
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

std::string SpecOrigin::merge_label(size_t index) const {
  if (index < merge_lines.size()) return "line " + std::to_string(merge_lines[index]);
  return merges_field + "[" + std::to_string(index) + "]";
}

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

LoadedSpec read_vocab_merges(const fs::path& vocab_json, const fs::path& merges_txt) {
  FileContext vocab_file{vocab_json.string()};
  json vocab_root = parse_json(vocab_json);
  LoadedSpec loaded;
  TokenizerSpec& spec = loaded.spec;
  std::vector<uint8_t> used;
  read_vocab_object(vocab_file, vocab_root, "vocab", spec.vocab, used);
  check_dense(vocab_file, used, "vocab");

  FileContext merges_file{merges_txt.string()};
  loaded.origin.source = merges_file.path;
  std::istringstream lines(read_text(merges_txt));
  std::string line;
  for (size_t number = 1; std::getline(lines, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (number == 1 && line.starts_with("#version"))) continue;
    size_t space = line.find(' ');
    if (space == std::string::npos || space == 0 || space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string::npos) {
      merges_file.format("line " + std::to_string(number) +
                         ": expected two tokens separated by one space, got " + in_quotes(line));
    }
    spec.merges.emplace_back(line.substr(0, space), line.substr(space + 1));
    loaded.origin.merge_lines.push_back(number);
  }

  default_special_tokens(spec);
  // <|endoftext|> stays special even where tokenizer_config.json names other bos / eos.
  if (spec.eos_id) spec.special_ids.push_back(*spec.eos_id);
  apply_tokenizer_config(vocab_json.parent_path(), spec, true);
  // Without a tokenizer.json to say so, bos and eos are special tokens (as in transformers).
  for (std::optional<int32_t> id : {spec.bos_id, spec.eos_id}) {
    if (id && std::find(spec.special_ids.begin(), spec.special_ids.end(), *id) ==
                  spec.special_ids.end()) {
      std::erase(spec.added_ids, *id);
      spec.special_ids.push_back(*id);
    }
  }
  return loaded;
}

}  // namespace kestrel::tokenizer
