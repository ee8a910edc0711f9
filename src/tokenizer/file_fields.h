// tokenizer/file_fields.h: reading tokenizer files field by field, with errors that name
// the file and the field at fault.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kestrel/error.h"
#include "kestrel/tokenizer.h"

namespace kestrel::tokenizer {

// 'text', for messages.
std::string in_quotes(std::string_view s);
// A JSON value shortened for a message.
std::string excerpt(const nlohmann::json& value);

// Errors about one file: every message starts with its path.
struct FileContext {
  std::string path;
  [[noreturn]] void fail(ErrorCategory category, const std::string& what) const {
    throw Error(category, path + ": " + what);
  }
  [[noreturn]] void format(const std::string& what) const { fail(ErrorCategory::format, what); }
};

// The whole file; Error(io) naming it when it is missing or unreadable.
std::string read_text(const std::filesystem::path& path);
// Error(format) naming the file when it is not JSON.
nlohmann::json parse_json(const std::filesystem::path& path);

// In the accessors below `field` names the value in messages (e.g. "model.vocab").
const nlohmann::json& member(const FileContext& file, const nlohmann::json& object, const char* key,
                             const std::string& field);
// A boolean member; `fallback` when absent or null.
bool flag(const FileContext& file, const nlohmann::json& object, const char* key, bool fallback,
          const std::string& field);
int32_t token_id_value(const FileContext& file, const nlohmann::json& value,
                       const std::string& field);
// The "type" of a tokenizer.json component, or the value itself shortened.
std::string type_of(const nlohmann::json& node);

// A vocab filled in any order from token -> id entries. Ids must end up dense (0..n-1);
// `capacity` (the number of entries the file holds) bounds them up front, so a stray huge
// id is an error rather than a huge allocation.
struct VocabBuilder {
  const FileContext& file;
  size_t capacity;
  std::vector<std::string> vocab;
  std::vector<uint8_t> used;

  void place(int32_t id, const std::string& text, const std::string& field);
  std::vector<std::string> finish(const std::string& field);
};

// The vocab object {"token": id, ...}.
void read_vocab_object(const FileContext& file, const nlohmann::json& object,
                       const std::string& field, VocabBuilder& vocab);

// The lowest id whose vocab string is `text`.
std::optional<int32_t> find_token(const TokenizerSpec& spec, std::string_view text);

}  // namespace kestrel::tokenizer
