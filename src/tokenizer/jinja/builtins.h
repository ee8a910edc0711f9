// jinja2's filters, tests and globals, the Python methods the sandbox lets templates call
// on str / dict / list, and transformers' additions (tojson with its kwargs,
// raise_exception, strftime_now).
#pragma once

#include <optional>
#include <string>
#include <unordered_map>

#include "tokenizer/jinja/interpreter.h"

namespace kestrel::jinja {

// Throws Error(invalid_argument) for an unknown filter or test, naming it.
Value apply_filter(Interpreter& in, const std::string& name, const Value& input, CallArgs& args);
bool apply_test(Interpreter& in, const std::string& name, const Value& input, CallArgs& args);
// `obj.name` when it is a method (bound to obj), or the sandbox's refusal (an Undefined
// that raises when called) for a method that mutates; nullopt when it is neither.
std::optional<Value> method(Interpreter& in, const Value& obj, const std::string& name);
void add_globals(Interpreter& in, std::unordered_map<std::string, Value>& vars);

}  // namespace kestrel::jinja
