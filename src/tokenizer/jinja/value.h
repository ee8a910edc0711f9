// The values a Jinja template computes with, modelled on the Python objects jinja2 sees
// when transformers renders a chat template: None, bool, int, float, str, list, tuple,
// dict (insertion-ordered, string keys, as JSON objects are), jinja2's Undefined, a
// namespace() object, and callables (macros, caller, loop.cycle, bound methods).
// Lists and dicts are shared by pointer and never mutated (the sandbox is immutable);
// only a namespace's attributes change, by {% set ns.attr = ... %}.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace kestrel::jinja {

struct Value;
using List = std::vector<Value>;
struct Dict;
struct Callable;

// Positional and keyword arguments of a call, as Python passes them.
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

enum class Kind { undefined, none, boolean, integer, floating, string, list, tuple, dict, name_space, callable };

struct Value {
  Kind kind = Kind::undefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;  // the string; for an undefined value, jinja2's message ("'x' is undefined")
  std::shared_ptr<const List> list;      // list and tuple
  std::shared_ptr<Dict> dict;            // dict and namespace
  std::shared_ptr<const Callable> call;  // callable
  // A list that Python would hold as a generator (what map / select / reject and their
  // attr forms return): iterable, always true, but without len(), indexing or JSON.
  bool generator = false;
  // A string marked safe (markupsafe's Markup: what the safe and escape filters return);
  // `+` with a plain string escapes the plain one, as Markup.__add__ does.
  bool markup = false;

  static Value undefined(std::string message) { Value v; v.s = std::move(message); return v; }
  static Value none() { Value v; v.kind = Kind::none; return v; }
  static Value boolean(bool x) { Value v; v.kind = Kind::boolean; v.b = x; return v; }
  static Value integer(int64_t x) { Value v; v.kind = Kind::integer; v.i = x; return v; }
  static Value floating(double x) { Value v; v.kind = Kind::floating; v.f = x; return v; }
  static Value string(std::string x) { Value v; v.kind = Kind::string; v.s = std::move(x); return v; }
  static Value make_list(List items, bool tuple = false);
  static Value make_generator(List items) { Value v = make_list(std::move(items)); v.generator = true; return v; }
  static Value make_dict(std::shared_ptr<Dict> d);
  static Value make_namespace(std::shared_ptr<Dict> d);
  static Value function(std::string name, std::function<Value(CallArgs&)> fn);

  bool is_undefined() const { return kind == Kind::undefined; }
  bool is_none() const { return kind == Kind::none; }
  bool is_string() const { return kind == Kind::string; }
  bool is_number() const { return kind == Kind::integer || kind == Kind::floating || kind == Kind::boolean; }
  bool is_sequence() const { return kind == Kind::list || kind == Kind::tuple; }
  bool is_mapping() const { return kind == Kind::dict; }
  // Python's bool(x).
  bool truthy() const;
  // The number as a double (int, float, bool); throws for anything else.
  double as_double() const;
};

struct Dict {
  std::vector<std::pair<std::string, Value>> items;
  const Value* find(std::string_view key) const;
  void set(const std::string& key, Value v);
};

struct Callable {
  std::string name;
  std::function<Value(CallArgs&)> fn;
};

// Python's type name of a value as jinja2 quotes it in messages ("dict object").
std::string type_name(const Value& v);
// Python's str(x) (what {{ x }} prints) and repr(x).
std::string to_str(const Value& v);
std::string repr(const Value& v);
// Python's repr of a float: the shortest text that reads back as the same double.
std::string float_repr(double x);
// Python's ==, and the ordering < (throws Error for types Python cannot order).
bool equals(const Value& a, const Value& b);
bool less(const Value& a, const Value& b);

// Python's printf-style `format % args` for %s, %r, %d / %i, %f and %% (with a width);
// `named` supplies %(name)s. Throws Error(invalid_argument) for anything else.
std::string percent_format(std::string_view format, const List& args, const Dict* named);

// markupsafe.escape: & < > " ' as HTML entities.
std::string html_escape(std::string_view s);

// JSON in, and json.dumps(x, ensure_ascii=False, indent, separators, sort_keys) out.
Value from_json(const nlohmann::ordered_json& j);
struct JsonStyle {
  std::string indent;  // with has_indent: newline + indent per level
  bool has_indent = false;
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
  bool ensure_ascii = false;  // non-ASCII as \uXXXX (surrogate pairs past U+FFFF)
};
std::string to_json(const Value& v, const JsonStyle& style);

// UTF-8 helpers: strings are indexed, sliced and measured by code point, as Python does.
std::vector<std::string_view> code_points(std::string_view s);
size_t code_point_count(std::string_view s);
// Python's str.isspace for the code point starting at s[i] (its byte width in *width).
bool is_space_at(std::string_view s, size_t i, size_t* width);

}  // namespace kestrel::jinja
