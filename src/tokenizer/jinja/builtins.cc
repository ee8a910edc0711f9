// jinja2's builtin filters (jinja2/filters.py), tests (jinja2/tests.py) and globals, with
// transformers' tojson, raise_exception and strftime_now.
#include "tokenizer/jinja/builtins.h"

#include <algorithm>
#include <cmath>
#include <ctime>

#include "tokenizer/jinja/args.h"
#include "tokenizer/jinja/text.h"

namespace kestrel::jinja {
namespace {

using Filter = Value (*)(Interpreter&, const Value&, CallArgs&);

[[noreturn]] void fail(const std::string& what) { throw Error(ErrorCategory::invalid_argument, what); }

size_t length_of(const Value& v) {
  switch (v.kind) {
    case Kind::undefined: return 0;
    case Kind::string: return code_point_count(v.s);
    case Kind::list:
    case Kind::tuple:
      if (v.generator) fail("object of type 'generator' has no len()");
      return v.list->size();
    case Kind::dict: return v.dict->items.size();
    default: fail("object of type '" + type_name(v).substr(0, type_name(v).find(' ')) + "' has no len()");
  }
}

std::string text_of(const Value& v) {
  return to_str(v);
}

// jinja2's make_attrgetter: "a.b" / "a.0" walks items, as the template's getitem would.
Value attribute(Interpreter& in, const Value& item, const Value& attr) {
  if (!attr.is_string()) return in.get_item(item, attr);
  Value v = item;
  size_t start = 0;
  while (true) {
    const size_t dot = attr.s.find('.', start);
    const std::string part = attr.s.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    const bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    v = in.get_item(v, digits ? Value::integer(std::stoll(part.substr(0, 18))) : Value::string(part));
    if (dot == std::string::npos) return v;
    start = dot + 1;
  }
}

// Sort key: strings lower-cased unless case_sensitive (jinja2's ignore_case).
Value sort_key(const Value& v, bool case_sensitive) {
  return !case_sensitive && v.is_string() ? Value::string(str_lower(v.s)) : v;
}

Value f_trim(Interpreter&, const Value& v, CallArgs& a) {
  const Value chars = arg(a, 0, "chars");
  return Value::string(str_strip(text_of(v), chars.is_string() ? &chars.s : nullptr, true, true));
}
Value f_length(Interpreter&, const Value& v, CallArgs&) { return Value::integer(static_cast<int64_t>(length_of(v))); }
Value f_upper(Interpreter&, const Value& v, CallArgs&) { return Value::string(str_upper(text_of(v))); }
Value f_lower(Interpreter&, const Value& v, CallArgs&) { return Value::string(str_lower(text_of(v))); }
Value f_capitalize(Interpreter&, const Value& v, CallArgs&) { return Value::string(str_capitalize(text_of(v))); }
Value f_string(Interpreter&, const Value& v, CallArgs&) { return Value::string(text_of(v)); }
Value f_safe(Interpreter&, const Value& v, CallArgs&) {
  Value out = Value::string(text_of(v));
  out.markup = true;
  return out;
}

// jinja2's title filter: each run after "-", whitespace or an opening bracket starts a word.
Value f_title(Interpreter&, const Value& v, CallArgs&) {
  std::string out;
  bool word_start = true;
  const std::string text = text_of(v);
  for (std::string_view cp : code_points(text)) {
    size_t w = 0;
    const bool sep = is_space_at(cp, 0, &w) || cp == "-" || cp == "(" || cp == "{" || cp == "[" || cp == "<";
    out += sep ? std::string(cp) : word_start ? str_upper(cp) : str_lower(cp);
    word_start = sep;
  }
  return Value::string(out);
}

Value f_tojson(Interpreter& in, const Value& v, CallArgs& a) {
  JsonStyle style;
  const Value indent = arg(a, 1, "indent");
  if (indent.kind == Kind::integer) {
    style.has_indent = true;
    style.indent = std::string(static_cast<size_t>(std::clamp<int64_t>(indent.i, 0, 64)), ' ');
  } else if (indent.is_string()) {
    style.has_indent = true;
    style.indent = indent.s;
  }
  if (style.has_indent) style.item_separator = ",";
  const Value separators = arg(a, 2, "separators");
  if (separators.is_sequence()) {
    if (separators.list->size() != 2 || !(*separators.list)[0].is_string() || !(*separators.list)[1].is_string())
      fail("tojson: separators must be two strings");
    style.item_separator = (*separators.list)[0].s;
    style.key_separator = (*separators.list)[1].s;
  }
  style.sort_keys = arg(a, 3, "sort_keys", Value::boolean(false)).truthy();
  style.ensure_ascii = arg(a, 0, "ensure_ascii", Value::boolean(false)).truthy();
  std::string out = to_json(v, style);
  in.check_size(out.size());
  return Value::string(std::move(out));
}

Value f_default(Interpreter&, const Value& v, CallArgs& a) {
  const bool boolean = arg(a, 1, "boolean", Value::boolean(false)).truthy();
  if (v.is_undefined() || (boolean && !v.truthy())) return arg(a, 0, "default_value", Value::string(""));
  return v;
}

Value f_first(Interpreter&, const Value& v, CallArgs&) {
  const List items = iterate(v);
  return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
}

Value f_last(Interpreter&, const Value& v, CallArgs&) {
  if (v.kind == Kind::dict) fail("'dict' object is not reversible");
  const List items = iterate(v);
  return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
}

Value f_join(Interpreter& in, const Value& v, CallArgs& a) {
  const Value sep = arg(a, 0, "d", Value::string(""));
  const Value attr = arg(a, 1, "attribute");
  std::string out;
  const List items = iterate(v);
  for (size_t k = 0; k < items.size(); ++k) {
    if (k) out += text_of(sep);
    out += text_of(attr.is_none() ? items[k] : attribute(in, items[k], attr));
    in.check_size(out.size());
  }
  return Value::string(out);
}

Value f_replace(Interpreter& in, const Value& v, CallArgs& a) {
  CallArgs method_args;
  method_args.positional = {Value::string(text_of(arg(a, 0, "old"))), Value::string(text_of(arg(a, 1, "new")))};
  const Value count = arg(a, 2, "count");
  if (!count.is_none()) method_args.positional.push_back(count);
  const std::string s = text_of(v);
  if (method_args.positional[0].s.empty()) {  // Python inserts `new` between every character
    std::string out = method_args.positional[1].s;
    for (std::string_view cp : code_points(s)) out += std::string(cp) + method_args.positional[1].s;
    in.check_size(out.size());
    return Value::string(out);
  }
  return in.call(*method(in, Value::string(s), "replace"), method_args);
}

Value f_list(Interpreter&, const Value& v, CallArgs&) { return Value::make_list(iterate(v)); }

Value f_items(Interpreter&, const Value& v, CallArgs&) {
  if (v.is_undefined()) return Value::make_list({});
  if (v.kind != Kind::dict) fail("items: expected a mapping, got " + type_name(v));
  List out;
  for (const auto& [key, value] : v.dict->items) out.push_back(Value::make_list({Value::string(key), value}, true));
  return Value::make_list(std::move(out));
}

// select / reject / selectattr / rejectattr: args are (attr?, test name, test args...).
Value select_items(Interpreter& in, const Value& v, CallArgs& a, bool by_attr, bool keep) {
  size_t next = 0;
  Value attr;
  if (by_attr) {
    if (a.positional.empty()) fail("selectattr / rejectattr need an attribute");
    attr = a.positional[next++];
  }
  std::string test_name;
  if (next < a.positional.size()) {
    if (!a.positional[next].is_string()) fail("the test name must be a string");
    test_name = a.positional[next++].s;
  }
  CallArgs test_args;
  test_args.positional.assign(a.positional.begin() + static_cast<std::ptrdiff_t>(next), a.positional.end());
  test_args.keyword = a.keyword;
  List out;
  if (!v.truthy()) return Value::make_generator({});  // jinja2 iterates only a true value
  for (const Value& item : iterate(v)) {
    in.step();
    const Value subject = by_attr ? attribute(in, item, attr) : item;
    CallArgs copy = test_args;
    const bool pass = test_name.empty() ? subject.truthy() : in.test(test_name, subject, copy);
    if (pass == keep) out.push_back(item);
  }
  return Value::make_generator(std::move(out));
}
Value f_select(Interpreter& in, const Value& v, CallArgs& a) { return select_items(in, v, a, false, true); }
Value f_reject(Interpreter& in, const Value& v, CallArgs& a) { return select_items(in, v, a, false, false); }
Value f_selectattr(Interpreter& in, const Value& v, CallArgs& a) { return select_items(in, v, a, true, true); }
Value f_rejectattr(Interpreter& in, const Value& v, CallArgs& a) { return select_items(in, v, a, true, false); }

Value f_map(Interpreter& in, const Value& v, CallArgs& a) {
  List out;
  if (!v.truthy()) return Value::make_generator({});  // jinja2 iterates only a true value
  const Value attr = kwarg(a, "attribute");
  if (!attr.is_none()) {
    const Value fallback = kwarg(a, "default", Value::undefined(""));
    for (const Value& item : iterate(v)) {
      in.step();
      Value x = attribute(in, item, attr);
      out.push_back(x.is_undefined() && !fallback.is_undefined() ? fallback : x);
    }
    return Value::make_generator(std::move(out));
  }
  if (a.positional.empty() || !a.positional[0].is_string()) fail("map: expected a filter name or attribute=");
  const std::string name = a.positional[0].s;
  CallArgs rest;
  rest.positional.assign(a.positional.begin() + 1, a.positional.end());
  rest.keyword = a.keyword;
  for (const Value& item : iterate(v)) {
    in.step();
    CallArgs copy = rest;
    out.push_back(in.filter(name, item, copy));
  }
  return Value::make_generator(std::move(out));
}

Value f_int(Interpreter&, const Value& v, CallArgs& a) {
  const Value fallback = arg(a, 0, "default", Value::integer(0));
  const int64_t base = int_arg(a, 1, "base", 10, "int");
  switch (v.kind) {
    case Kind::integer: return v;
    case Kind::boolean: return Value::integer(v.b);
    case Kind::floating:
      if (!std::isfinite(v.f) || std::fabs(v.f) >= 9.2e18) return fallback;
      return Value::integer(static_cast<int64_t>(v.f));
    case Kind::string: {
      const std::string s = str_strip(v.s, nullptr, true, true);
      try {
        size_t used = 0;
        const int64_t x = std::stoll(s, &used, static_cast<int>(base == 10 ? 10 : base));
        if (used == s.size()) return Value::integer(x);
        size_t fused = 0;
        const double d = std::stod(s, &fused);
        if (fused == s.size() && std::isfinite(d) && std::fabs(d) < 9.2e18) return Value::integer(static_cast<int64_t>(d));
      } catch (const std::exception&) {
      }
      return fallback;
    }
    default: return fallback;
  }
}

Value f_float(Interpreter&, const Value& v, CallArgs& a) {
  const Value fallback = arg(a, 0, "default", Value::floating(0));
  if (v.is_number()) return Value::floating(v.as_double());
  if (v.is_string()) {
    const std::string s = str_strip(v.s, nullptr, true, true);
    try {
      size_t used = 0;
      const double d = std::stod(s, &used);
      if (used == s.size()) return Value::floating(d);
    } catch (const std::exception&) {
    }
  }
  return fallback;
}

Value f_abs(Interpreter&, const Value& v, CallArgs&) {
  if (v.kind == Kind::floating) return Value::floating(std::fabs(v.f));
  if (v.kind == Kind::integer && v.i != INT64_MIN) return Value::integer(v.i < 0 ? -v.i : v.i);
  if (v.kind == Kind::boolean) return Value::integer(v.b);
  fail("bad operand type for abs(): '" + type_name(v).substr(0, type_name(v).find(' ')) + "'");
}

Value f_round(Interpreter&, const Value& v, CallArgs& a) {
  const int64_t precision = int_arg(a, 0, "precision", 0, "round");
  const Value method = arg(a, 1, "method", Value::string("common"));
  const double x = v.as_double();
  const double scale = std::pow(10.0, static_cast<double>(std::clamp<int64_t>(precision, -300, 300)));
  double r;
  if (method.is_string() && method.s == "common") {
    r = std::nearbyint(x * scale) / scale;  // Python's round(): halves to even
  } else if (method.is_string() && method.s == "ceil") {
    r = std::ceil(x * scale) / scale;
  } else if (method.is_string() && method.s == "floor") {
    r = std::floor(x * scale) / scale;
  } else {
    fail("method must be common, ceil or floor");
  }
  return Value::floating(r);
}

Value f_escape(Interpreter&, const Value& v, CallArgs&) {
  if (v.markup) return v;
  Value out = Value::string(html_escape(text_of(v)));
  out.markup = true;
  return out;
}

Value f_indent(Interpreter& in, const Value& v, CallArgs& a) {
  const Value width = arg(a, 0, "width", Value::integer(4));
  const std::string indention = width.is_string() ? width.s : std::string(static_cast<size_t>(std::clamp<int64_t>(width.i, 0, 256)), ' ');
  const bool first = arg(a, 1, "first", Value::boolean(false)).truthy();
  const bool blank = arg(a, 2, "blank", Value::boolean(false)).truthy();
  const std::vector<std::string> lines = str_splitlines(text_of(v) + "\n");
  std::string out;
  for (size_t k = 0; k < lines.size(); ++k) {
    if (k) out += "\n" + std::string(blank || !lines[k].empty() ? indention : "");
    out += lines[k];
    in.check_size(out.size());
  }
  if (first) out = indention + out;
  return Value::string(out);
}

Value f_sort(Interpreter& in, const Value& v, CallArgs& a) {
  const bool reverse = arg(a, 0, "reverse", Value::boolean(false)).truthy();
  const bool case_sensitive = arg(a, 1, "case_sensitive", Value::boolean(false)).truthy();
  const Value attr = arg(a, 2, "attribute");
  List items = iterate(v);
  std::vector<std::pair<Value, Value>> keyed;
  for (const Value& item : items)
    keyed.emplace_back(sort_key(attr.is_none() ? item : attribute(in, item, attr), case_sensitive), item);
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    return reverse ? less(y.first, x.first) : less(x.first, y.first);
  });
  List out;
  for (auto& kv : keyed) out.push_back(std::move(kv.second));
  return Value::make_list(std::move(out));
}

Value f_dictsort(Interpreter&, const Value& v, CallArgs& a) {
  if (v.kind != Kind::dict) fail("dictsort: expected a mapping, got " + type_name(v));
  const bool case_sensitive = arg(a, 0, "case_sensitive", Value::boolean(false)).truthy();
  const Value by = arg(a, 1, "by", Value::string("key"));
  const bool reverse = arg(a, 2, "reverse", Value::boolean(false)).truthy();
  const bool by_value = by.is_string() && by.s == "value";
  List out;
  for (const auto& [key, value] : v.dict->items) out.push_back(Value::make_list({Value::string(key), value}, true));
  std::stable_sort(out.begin(), out.end(), [&](const Value& x, const Value& y) {
    const Value kx = sort_key((*x.list)[by_value], case_sensitive), ky = sort_key((*y.list)[by_value], case_sensitive);
    return reverse ? less(ky, kx) : less(kx, ky);
  });
  return Value::make_list(std::move(out));
}

Value f_reverse(Interpreter&, const Value& v, CallArgs&) {
  if (v.is_string()) {
    std::vector<std::string_view> cps = code_points(v.s);
    std::string out;
    for (auto it = cps.rbegin(); it != cps.rend(); ++it) out += *it;
    return Value::string(out);
  }
  List items = iterate(v);
  std::reverse(items.begin(), items.end());
  return Value::make_list(std::move(items));
}

Value f_unique(Interpreter& in, const Value& v, CallArgs& a) {
  const bool case_sensitive = arg(a, 0, "case_sensitive", Value::boolean(false)).truthy();
  const Value attr = arg(a, 1, "attribute");
  List out, seen;
  for (const Value& item : iterate(v)) {
    const Value key = sort_key(attr.is_none() ? item : attribute(in, item, attr), case_sensitive);
    if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return equals(s, key); })) {
      seen.push_back(key);
      out.push_back(item);
    }
  }
  return Value::make_list(std::move(out));
}

Value min_max(Interpreter& in, const Value& v, CallArgs& a, bool want_max) {
  const bool case_sensitive = arg(a, 0, "case_sensitive", Value::boolean(false)).truthy();
  const Value attr = arg(a, 1, "attribute");
  const List items = iterate(v);
  if (items.empty()) return Value::undefined(std::string("No aggregated item, sequence was empty."));
  size_t best = 0;
  Value best_key = sort_key(attr.is_none() ? items[0] : attribute(in, items[0], attr), case_sensitive);
  for (size_t k = 1; k < items.size(); ++k) {
    Value key = sort_key(attr.is_none() ? items[k] : attribute(in, items[k], attr), case_sensitive);
    if (want_max ? less(best_key, key) : less(key, best_key)) best = k, best_key = std::move(key);
  }
  return items[best];
}
Value f_min(Interpreter& in, const Value& v, CallArgs& a) { return min_max(in, v, a, false); }
Value f_max(Interpreter& in, const Value& v, CallArgs& a) { return min_max(in, v, a, true); }

Value f_sum(Interpreter& in, const Value& v, CallArgs& a) {
  const Value attr = arg(a, 0, "attribute");
  Value total = arg(a, 1, "start", Value::integer(0));
  for (const Value& item : iterate(v)) total = binary_op("+", total, attr.is_none() ? item : attribute(in, item, attr));
  return total;
}

Value f_wordcount(Interpreter&, const Value& v, CallArgs&) {
  int64_t n = 0;
  bool in_word = false;
  const std::string text = text_of(v);
  for (std::string_view cp : code_points(text)) {
    const bool word = is_cased_letter(cp) || (cp.size() == 1 && ((cp[0] >= '0' && cp[0] <= '9') || cp[0] == '_')) ||
                      static_cast<unsigned char>(cp[0]) >= 0x80;
    size_t w = 0;
    const bool is_word = word && !is_space_at(cp, 0, &w);
    if (is_word && !in_word) ++n;
    in_word = is_word;
  }
  return Value::integer(n);
}

Value f_batch(Interpreter&, const Value& v, CallArgs& a) {
  const int64_t size = int_arg(a, 0, "linecount", 1, "batch");
  if (size <= 0) fail("batch: linecount must be positive");
  const Value fill = arg(a, 1, "fill_with");
  List out, row;
  for (const Value& item : iterate(v)) {
    row.push_back(item);
    if (static_cast<int64_t>(row.size()) == size) out.push_back(Value::make_list(std::move(row))), row.clear();
  }
  if (!row.empty()) {
    if (!fill.is_none())
      while (static_cast<int64_t>(row.size()) < size) row.push_back(fill);
    out.push_back(Value::make_list(std::move(row)));
  }
  return Value::make_list(std::move(out));
}

// jinja2's slice: `slices` columns of consecutive items, the first len % slices of them one
// item longer; with fill_with, the shorter ones padded by one item.
Value f_slice(Interpreter&, const Value& v, CallArgs& a) {
  const int64_t slices = int_arg(a, 0, "slices", 0, "slice");
  if (slices <= 0) fail(slices == 0 ? "integer division or modulo by zero" : "slice: slices must be positive");
  if (slices > (1 << 20)) throw Error(ErrorCategory::limit, "slice: more than 1048576 slices");
  const Value fill = arg(a, 1, "fill_with");
  const List items = iterate(v);
  const auto n = static_cast<int64_t>(items.size());
  const int64_t per = n / slices, extra = n % slices;
  List out;
  for (int64_t k = 0, start = 0; k < slices; ++k) {
    const int64_t end = start + per + (k < extra ? 1 : 0);
    List column(items.begin() + start, items.begin() + end);
    if (!fill.is_none() && k >= extra) column.push_back(fill);
    out.push_back(Value::make_list(std::move(column)));
    start = end;
  }
  return Value::make_list(std::move(out));
}

Value f_attr(Interpreter& in, const Value& v, CallArgs& a) {
  return in.get_attr(v, str_arg(a, 0, "name", "attr"));
}

Value f_format(Interpreter&, const Value& v, CallArgs& a) {
  if (!a.positional.empty() && !a.keyword.empty()) fail("can't handle positional and keyword arguments at the same time");
  auto named = std::make_shared<Dict>();
  for (const auto& [key, value] : a.keyword) named->set(key, value);
  return Value::string(percent_format(text_of(v), a.positional, a.keyword.empty() ? nullptr : named.get()));
}

Value f_center(Interpreter&, const Value& v, CallArgs& a) {
  const std::string s = text_of(v);
  const int64_t width = std::min<int64_t>(int_arg(a, 0, "width", 80, "center"), 1 << 20);
  const auto n = static_cast<int64_t>(code_point_count(s));
  if (width <= n) return Value::string(s);
  const int64_t pad = width - n, left = pad / 2 + (pad & width & 1);
  return Value::string(std::string(static_cast<size_t>(left), ' ') + s + std::string(static_cast<size_t>(pad - left), ' '));
}

struct FilterEntry {
  const char* name;
  Filter fn;
};
constexpr FilterEntry kFilters[] = {
    {"trim", f_trim},         {"length", f_length},     {"count", f_length},         {"tojson", f_tojson},
    {"default", f_default},   {"d", f_default},         {"first", f_first},          {"last", f_last},
    {"join", f_join},         {"upper", f_upper},       {"lower", f_lower},          {"capitalize", f_capitalize},
    {"title", f_title},       {"replace", f_replace},   {"list", f_list},            {"items", f_items},
    {"select", f_select},     {"reject", f_reject},     {"selectattr", f_selectattr}, {"rejectattr", f_rejectattr},
    {"map", f_map},           {"string", f_string},     {"int", f_int},              {"float", f_float},
    {"abs", f_abs},           {"round", f_round},       {"safe", f_safe},            {"e", f_escape},
    {"escape", f_escape},     {"forceescape", f_escape}, {"indent", f_indent},       {"sort", f_sort},
    {"dictsort", f_dictsort}, {"reverse", f_reverse},   {"unique", f_unique},        {"min", f_min},
    {"max", f_max},           {"sum", f_sum},           {"wordcount", f_wordcount},  {"batch", f_batch},
    {"attr", f_attr},         {"center", f_center},     {"format", f_format},       {"slice", f_slice},
};

bool t_number_kind(const Value& v, Kind k) { return v.kind == k; }

}  // namespace

Value apply_filter(Interpreter& in, const std::string& name, const Value& input, CallArgs& args) {
  for (const FilterEntry& f : kFilters)
    if (name == f.name) {
      // Undefined reads as an empty string or sequence, except where Python needs a number
      // or an attribute of it (jinja2's Undefined raises there).
      if (input.is_undefined() && (name == "abs" || name == "round" || name == "int" || name == "float" ||
                                   name == "attr" || name == "dictsort"))
        fail(input.s);
      return f.fn(in, input, args);
    }
  fail("no filter named '" + name + "'");
}

bool apply_test(Interpreter& in, const std::string& name, const Value& v, CallArgs& a) {
  const auto other = [&]() { return arg(a, 0, "other"); };
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "boolean") return v.kind == Kind::boolean;
  if (name == "true") return v.kind == Kind::boolean && v.b;
  if (name == "false") return v.kind == Kind::boolean && !v.b;
  if (name == "integer") return t_number_kind(v, Kind::integer);
  if (name == "float") return t_number_kind(v, Kind::floating);
  if (name == "number") return v.is_number();
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.kind == Kind::dict;
  if (name == "iterable") return v.is_undefined() || v.is_string() || v.is_sequence() || v.kind == Kind::dict;
  if (name == "sequence") return v.is_undefined() || v.is_string() || v.is_sequence() || v.kind == Kind::dict;
  if (name == "callable") return v.kind == Kind::callable;
  if (name == "odd" || name == "even") {
    if (v.kind != Kind::integer && v.kind != Kind::boolean) fail(name + " test needs an integer, got " + type_name(v));
    const int64_t x = v.kind == Kind::boolean ? v.b : v.i;
    return (x % 2 != 0) == (name == "odd");
  }
  if (name == "divisibleby") {
    const Value d = arg(a, 0, "num");
    return equals(binary_op("%", v, d), Value::integer(0));
  }
  if (name == "eq" || name == "equalto" || name == "==") return equals(v, other());
  if (name == "ne" || name == "!=") return !equals(v, other());
  if (name == "lt" || name == "lessthan" || name == "<") return less(v, other());
  if (name == "le" || name == "<=") return less(v, other()) || equals(v, other());
  if (name == "gt" || name == "greaterthan" || name == ">") return less(other(), v);
  if (name == "ge" || name == ">=") return less(other(), v) || equals(v, other());
  if (name == "in") return contains(arg(a, 0, "seq"), v);
  if (name == "sameas") {
    const Value o = other();
    if (v.kind != o.kind) return false;
    if (v.is_none() || v.kind == Kind::boolean) return equals(v, o);
    return v.list == o.list && v.dict == o.dict && v.call == o.call && v.is_sequence() + v.is_mapping() > 0;
  }
  if (name == "lower") return v.is_string() && str_lower(v.s) == v.s;
  if (name == "upper") return v.is_string() && str_upper(v.s) == v.s;
  if (name == "escaped") return false;
  if (name == "filter") {
    const Value n = arg(a, 0, "value");
    return n.is_string() && std::any_of(std::begin(kFilters), std::end(kFilters), [&](const FilterEntry& f) { return n.s == f.name; });
  }
  (void)in;
  fail("no test named '" + name + "'");
}

void add_globals(Interpreter& in, std::unordered_map<std::string, Value>& vars) {
  vars["raise_exception"] = Value::function("raise_exception", [](CallArgs& a) -> Value {
    fail(text_of(arg(a, 0, "message", Value::string(""))));
  });
  vars["strftime_now"] = Value::function("strftime_now", [](CallArgs& a) {
    const std::string fmt = str_arg(a, 0, "format", "strftime_now");
    const std::time_t now = std::time(nullptr);
    std::tm local{};
    localtime_r(&now, &local);
    char buf[512];
    // The format is the template's, as Python's datetime.strftime takes it; glibc's
    // strftime copies unknown conversions and never reads arguments, so it is safe.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    const size_t n = fmt.size() < 200 ? std::strftime(buf, sizeof buf, fmt.c_str(), &local) : 0;
#pragma GCC diagnostic pop
    return Value::string(std::string(buf, n));
  });
  vars["namespace"] = Value::function("namespace", [&in](CallArgs& a) {
    auto d = in.new_namespace();
    for (const Value& p : a.positional)
      if (p.kind == Kind::dict)
        for (const auto& [key, value] : p.dict->items) d->set(key, value);
    for (const auto& [key, value] : a.keyword) d->set(key, value);
    return Value::make_namespace(std::move(d));
  });
  vars["dict"] = Value::function("dict", [](CallArgs& a) {
    auto d = std::make_shared<Dict>();
    for (const Value& p : a.positional)
      if (p.kind == Kind::dict)
        for (const auto& [key, value] : p.dict->items) d->set(key, value);
    for (const auto& [key, value] : a.keyword) d->set(key, value);
    return Value::make_dict(std::move(d));
  });
  vars["range"] = Value::function("range", [&in](CallArgs& a) {
    int64_t start = 0, stop = 0, step = 1;
    if (a.positional.size() == 1) {
      stop = int_arg(a, 0, "stop", 0, "range");
    } else {
      start = int_arg(a, 0, "start", 0, "range");
      stop = int_arg(a, 1, "stop", 0, "range");
      step = int_arg(a, 2, "step", 1, "range");
    }
    if (step == 0) fail("range() arg 3 must not be zero");
    List out;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
      if (out.size() >= 100000) fail("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
      in.step();
      out.push_back(Value::integer(i));
    }
    return Value::make_list(std::move(out));
  });
  vars["joiner"] = Value::function("joiner", [](CallArgs& a) {
    const std::string sep = text_of(arg(a, 0, "sep", Value::string(", ")));
    auto used = std::make_shared<bool>(false);
    return Value::function("joiner", [sep, used](CallArgs&) {
      const bool first = !*used;
      *used = true;
      return Value::string(first ? "" : sep);
    });
  });
}

}  // namespace kestrel::jinja
