// Reading GPT-2's vocab.json + merges.txt, and the bos / eos / added tokens that
// tokenizer_config.json adds to either tokenizer file.
#include "tokenizer/tokenizer_files.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kestrel/error.h"
#include "tokenizer/file_fields.h"

namespace kestrel::tokenizer {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

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
        file.format(field + ": token " + in_quotes(*content) + " is not id " + key +
                    " in the vocab");
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
    if (!id)
      file.format(std::string(key) + ": token " + in_quotes(*content) + " is not in the vocab");
    target = id;
  };
  override_token("bos_token", spec.bos_id);
  override_token("eos_token", spec.eos_id);
}

}  // namespace

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

void default_special_tokens(TokenizerSpec& spec) {
  std::optional<int32_t> end_of_text = find_token(spec, "<|endoftext|>");
  if (!end_of_text) return;
  spec.bos_id = end_of_text;
  spec.eos_id = end_of_text;
}

std::string SpecOrigin::merge_label(size_t index) const {
  if (index < merge_lines.size()) return "line " + std::to_string(merge_lines[index]);
  return merges_field + "[" + std::to_string(index) + "]";
}

LoadedSpec read_vocab_merges(const fs::path& vocab_json, const fs::path& merges_txt) {
  FileContext vocab_file{vocab_json.string()};
  json vocab_root = parse_json(vocab_json);
  LoadedSpec loaded;
  TokenizerSpec& spec = loaded.spec;
  VocabBuilder vocab{vocab_file, vocab_root.size(), {}, {}};
  read_vocab_object(vocab_file, vocab_root, "vocab", vocab);
  spec.vocab = vocab.finish("vocab");

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
