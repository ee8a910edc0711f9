// Reading a call's arguments by position or keyword, as Python binds them.
#pragma once

#include <string>

#include "kestrel/error.h"
#include "tokenizer/jinja/value.h"

namespace kestrel::jinja {

// The argument at `index` (after the filtered value or the bound object) or keyword
// `name`; `fallback` when neither was given.
inline Value arg(const CallArgs& args, size_t index, const char* name, Value fallback = Value::none()) {
  if (index < args.positional.size()) return args.positional[index];
  for (const auto& [key, value] : args.keyword)
    if (key == name) return value;
  return fallback;
}

// A keyword-only argument (map's attribute= and default=).
inline Value kwarg(const CallArgs& args, const char* name, Value fallback = Value::none()) {
  for (const auto& [key, value] : args.keyword)
    if (key == name) return value;
  return fallback;
}

inline bool has_arg(const CallArgs& args, size_t index, const char* name) {
  if (index < args.positional.size()) return true;
  for (const auto& kv : args.keyword)
    if (kv.first == name) return true;
  return false;
}

[[noreturn]] inline void arg_error(const std::string& what) { throw Error(ErrorCategory::invalid_argument, what); }

inline std::string str_arg(const CallArgs& args, size_t index, const char* name, const char* fn) {
  const Value v = arg(args, index, name);
  if (v.is_undefined()) arg_error(v.s);
  if (!v.is_string()) arg_error(std::string(fn) + "() argument '" + name + "' must be str, not " + type_name(v));
  return v.s;
}

inline int64_t int_arg(const CallArgs& args, size_t index, const char* name, int64_t fallback, const char* fn) {
  const Value v = arg(args, index, name);
  if (v.is_none()) return fallback;
  if (v.kind == Kind::integer) return v.i;
  if (v.kind == Kind::boolean) return v.b;
  if (v.is_undefined()) arg_error(v.s);
  arg_error(std::string(fn) + "() argument '" + name + "' must be an integer, not " + type_name(v));
}

}  // namespace kestrel::jinja
