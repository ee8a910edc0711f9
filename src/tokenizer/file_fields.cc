#include "tokenizer/file_fields.h"

#include <fstream>
#include <sstream>

namespace kestrel::tokenizer {

using nlohmann::json;
namespace fs = std::filesystem;

std::string in_quotes(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out.append(1, '\'').append(s).append(1, '\'');
  return out;
}

std::string excerpt(const json& value) {
  std::string s = value.dump();
  return s.size() > 160 ? s.substr(0, 157) + "..." : s;
}

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
  if (!value.is_number_integer() || value.get<int64_t>() < 0 || value.get<int64_t>() > INT32_MAX) {
    file.format(field + ": expected a token id (a non-negative integer), got " + excerpt(value));
  }
  return static_cast<int32_t>(value.get<int64_t>());
}

std::string type_of(const json& node) {
  if (!node.is_object()) return excerpt(node);
  auto it = node.find("type");
  return it != node.end() && it->is_string() ? it->get<std::string>() : excerpt(node);
}

void VocabBuilder::place(int32_t id, const std::string& text, const std::string& field) {
  if (static_cast<size_t>(id) >= capacity) {
    file.format(field + ": id " + std::to_string(id) + " is out of range (the file has " +
                std::to_string(capacity) + " tokens, so ids run from 0 to " +
                std::to_string(capacity) + " - 1)");
  }
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

std::vector<std::string> VocabBuilder::finish(const std::string& field) {
  for (size_t id = 0; id < used.size(); ++id) {
    if (!used[id]) {
      file.format(field + ": no token has id " + std::to_string(id) + " (ids must run from 0 to " +
                  std::to_string(used.size() - 1) + " without gaps)");
    }
  }
  return std::move(vocab);
}

void read_vocab_object(const FileContext& file, const json& object, const std::string& field,
                       VocabBuilder& vocab) {
  if (!object.is_object()) file.format(field + ": expected an object of token -> id");
  for (const auto& [text, id_value] : object.items()) {
    std::string entry = field + "[" + in_quotes(text) + "]";
    vocab.place(token_id_value(file, id_value, entry), text, entry);
  }
}

std::optional<int32_t> find_token(const TokenizerSpec& spec, std::string_view text) {
  for (size_t id = 0; id < spec.vocab.size(); ++id) {
    if (spec.vocab[id] == text) return static_cast<int32_t>(id);
  }
  return std::nullopt;
}

}  // namespace kestrel::tokenizer
