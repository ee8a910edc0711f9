// Python semantics of template values: truthiness, str / repr, ==, <, and json.dumps.
#include "tokenizer/jinja/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "kestrel/error.h"

namespace kestrel::jinja {
namespace {

[[noreturn]] void type_error(const std::string& what) { throw Error(ErrorCategory::invalid_argument, what); }

// Values nest this deep at most (JSON input, and str / repr / tojson of a namespace that
// holds itself), so that recursion over them stays within the stack.
constexpr int kMaxNesting = 256;

std::string repr_at(const Value& v, int depth);

void append_unicode_escape(std::string& out, uint32_t unit) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "\\u%04x", unit);
  out += buf;
}

// A non-ASCII UTF-8 sequence as JSON \u escapes (json.dumps with ensure_ascii).
void append_ascii_escaped(std::string& out, std::string_view cp) {
  const auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(cp[i])); };
  uint32_t c = cp.size() == 2 ? ((b(0) & 0x1f) << 6) | (b(1) & 0x3f)
               : cp.size() == 3 ? ((b(0) & 0x0f) << 12) | ((b(1) & 0x3f) << 6) | (b(2) & 0x3f)
               : cp.size() == 4 ? ((b(0) & 0x07) << 18) | ((b(1) & 0x3f) << 12) | ((b(2) & 0x3f) << 6) | (b(3) & 0x3f)
                                : 0xfffd;
  if (c >= 0x10000) {
    c -= 0x10000;
    append_unicode_escape(out, 0xd800 + (c >> 10));
    append_unicode_escape(out, 0xdc00 + (c & 0x3ff));
  } else {
    append_unicode_escape(out, c);
  }
}

void append_escaped_json(std::string& out, std::string_view s, bool ensure_ascii) {
  out += '"';
  for (size_t i = 0; i < s.size(); ++i) {
    const char ch = s[i];
    const auto c = static_cast<unsigned char>(ch);
    if (ensure_ascii && c >= 0x80) {
      size_t n = 1;
      while (i + n < s.size() && (static_cast<unsigned char>(s[i + n]) & 0xc0) == 0x80) ++n;
      append_ascii_escaped(out, s.substr(i, n));
      i += n - 1;
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

std::string json_float(double x) {
  if (std::isnan(x)) return "NaN";
  if (std::isinf(x)) return x > 0 ? "Infinity" : "-Infinity";
  return float_repr(x);
}

void dump(std::string& out, const Value& v, const JsonStyle& style, int depth) {
  if (depth > kMaxNesting) type_error("tojson: the value nests deeper than " + std::to_string(kMaxNesting));
  const auto newline = [&](int level) {
    if (!style.has_indent) return;
    out += '\n';
    for (int k = 0; k < level; ++k) out += style.indent;
  };
  switch (v.kind) {
    case Kind::none: out += "null"; return;
    case Kind::boolean: out += v.b ? "true" : "false"; return;
    case Kind::integer: out += std::to_string(v.i); return;
    case Kind::floating: out += json_float(v.f); return;
    case Kind::string: append_escaped_json(out, v.s, style.ensure_ascii); return;
    case Kind::list:
    case Kind::tuple: {
      if (v.generator) type_error("Object of type generator is not JSON serializable");
      if (v.list->empty()) { out += "[]"; return; }
      out += '[';
      for (size_t k = 0; k < v.list->size(); ++k) {
        if (k) out += style.item_separator;
        newline(depth + 1);
        dump(out, (*v.list)[k], style, depth + 1);
      }
      newline(depth);
      out += ']';
      return;
    }
    case Kind::dict: {
      if (v.dict->items.empty()) { out += "{}"; return; }
      std::vector<const std::pair<std::string, Value>*> items;
      for (const auto& kv : v.dict->items) items.push_back(&kv);
      if (style.sort_keys)
        std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return a->first < b->first; });
      out += '{';
      for (size_t k = 0; k < items.size(); ++k) {
        if (k) out += style.item_separator;
        newline(depth + 1);
        append_escaped_json(out, items[k]->first, style.ensure_ascii);
        out += style.key_separator;
        dump(out, items[k]->second, style, depth + 1);
      }
      newline(depth);
      out += '}';
      return;
    }
    default: type_error("Object of type " + type_name(v) + " is not JSON serializable");
  }
}

std::string repr_string(std::string_view s) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const char quote = has_single && s.find('"') == std::string_view::npos ? '"' : '\'';
  std::string out(1, quote);
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (ch == quote || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (ch == '\n') {
      out += "\\n";
    } else if (ch == '\r') {
      out += "\\r";
    } else if (ch == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  out += quote;
  return out;
}

}  // namespace

Value Value::make_list(List items, bool tuple) {
  Value v;
  v.kind = tuple ? Kind::tuple : Kind::list;
  v.list = std::make_shared<const List>(std::move(items));
  return v;
}

Value Value::make_dict(std::shared_ptr<Dict> d) {
  Value v;
  v.kind = Kind::dict;
  v.dict = std::move(d);
  return v;
}

Value Value::make_namespace(std::shared_ptr<Dict> d) {
  Value v;
  v.kind = Kind::name_space;
  v.dict = std::move(d);
  return v;
}

Value Value::function(std::string name, std::function<Value(CallArgs&)> fn) {
  Value v;
  v.kind = Kind::callable;
  v.call = std::make_shared<const Callable>(Callable{std::move(name), std::move(fn)});
  return v;
}

bool Value::truthy() const {
  switch (kind) {
    case Kind::undefined:
    case Kind::none: return false;
    case Kind::boolean: return b;
    case Kind::integer: return i != 0;
    case Kind::floating: return f != 0;
    case Kind::string: return !s.empty();
    case Kind::list:
    case Kind::tuple: return generator || !list->empty();
    case Kind::dict: return !dict->items.empty();
    default: return true;
  }
}

double Value::as_double() const {
  if (kind == Kind::integer) return static_cast<double>(i);
  if (kind == Kind::floating) return f;
  if (kind == Kind::boolean) return b ? 1 : 0;
  type_error("expected a number, got " + type_name(*this));
}

const Value* Dict::find(std::string_view key) const {
  for (const auto& kv : items)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

void Dict::set(const std::string& key, Value v) {
  for (auto& kv : items)
    if (kv.first == key) {
      kv.second = std::move(v);
      return;
    }
  items.emplace_back(key, std::move(v));
}

std::string type_name(const Value& v) {
  switch (v.kind) {
    case Kind::undefined: return "Undefined";
    case Kind::none: return "NoneType object";
    case Kind::boolean: return "bool object";
    case Kind::integer: return "int object";
    case Kind::floating: return "float object";
    case Kind::string: return "str object";
    case Kind::list: return v.generator ? "generator object" : "list object";
    case Kind::tuple: return "tuple object";
    case Kind::dict: return "dict object";
    case Kind::name_space: return "Namespace object";
    case Kind::callable: return "function object";
  }
  return "object";
}

std::string float_repr(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  if (x == 0) return std::signbit(x) ? "-0.0" : "0.0";
  // The shortest round-trip digits in scientific form ("1.2345e+17"), then Python's
  // layout: positional when the exponent is in [-4, 16), scientific otherwise.
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, x, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  const size_t e = sci.find('e');
  const int exponent = std::stoi(sci.substr(e + 1));
  std::string mantissa = sci.substr(0, e);
  const bool negative = mantissa[0] == '-';
  if (negative) mantissa.erase(0, 1);
  std::string digits;
  for (char c : mantissa)
    if (c != '.') digits += c;
  std::string out = negative ? "-" : "";
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) {
      out += "0." + std::string(static_cast<size_t>(-exponent - 1), '0') + digits;
    } else if (static_cast<size_t>(exponent) + 1 >= digits.size()) {
      out += digits + std::string(exponent + 1 - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, exponent + 1) + "." + digits.substr(exponent + 1);
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  char exp[16];
  std::snprintf(exp, sizeof exp, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
  return out + exp;
}

std::string to_str(const Value& v) {
  switch (v.kind) {
    case Kind::undefined: return "";
    case Kind::string: return v.s;
    default: return repr(v);
  }
}

std::string repr(const Value& v) { return repr_at(v, 0); }

namespace {

std::string repr_at(const Value& v, int depth) {
  if (depth > kMaxNesting) type_error("the value nests deeper than " + std::to_string(kMaxNesting));
  const auto repr = [depth](const Value& x) { return repr_at(x, depth + 1); };
  switch (v.kind) {
    case Kind::undefined: return "Undefined";
    case Kind::none: return "None";
    case Kind::boolean: return v.b ? "True" : "False";
    case Kind::integer: return std::to_string(v.i);
    case Kind::floating: return float_repr(v.f);
    case Kind::string: return repr_string(v.s);
    case Kind::list:
    case Kind::tuple: {
      const bool tuple = v.kind == Kind::tuple;
      std::string out = tuple ? "(" : "[";
      for (size_t k = 0; k < v.list->size(); ++k) out += (k ? ", " : "") + repr((*v.list)[k]);
      if (tuple && v.list->size() == 1) out += ",";
      return out + (tuple ? ")" : "]");
    }
    case Kind::dict: {
      std::string out = "{";
      for (size_t k = 0; k < v.dict->items.size(); ++k)
        out += (k ? ", " : "") + repr_string(v.dict->items[k].first) + ": " + repr(v.dict->items[k].second);
      return out + "}";
    }
    case Kind::name_space: {
      std::string out = "<Namespace {";
      for (size_t k = 0; k < v.dict->items.size(); ++k)
        out += (k ? ", " : "") + repr_string(v.dict->items[k].first) + ": " + repr(v.dict->items[k].second);
      return out + "}>";
    }
    case Kind::callable: return "<function " + v.call->name + ">";
  }
  return "";
}

}  // namespace

bool equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.kind != Kind::floating && b.kind != Kind::floating)
      return (a.kind == Kind::boolean ? a.b : a.i) == (b.kind == Kind::boolean ? b.b : b.i);
    return a.as_double() == b.as_double();
  }
  if (a.is_sequence() && b.is_sequence()) {
    if (a.kind != b.kind || a.list->size() != b.list->size()) return false;
    for (size_t k = 0; k < a.list->size(); ++k)
      if (!equals((*a.list)[k], (*b.list)[k])) return false;
    return true;
  }
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Kind::undefined:
    case Kind::none: return true;
    case Kind::string: return a.s == b.s;
    case Kind::dict: {
      if (a.dict->items.size() != b.dict->items.size()) return false;
      for (const auto& [key, value] : a.dict->items) {
        const Value* other = b.dict->find(key);
        if (!other || !equals(value, *other)) return false;
      }
      return true;
    }
    default: return a.dict == b.dict && a.call == b.call;
  }
}

bool less(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.kind != Kind::floating && b.kind != Kind::floating)
      return (a.kind == Kind::boolean ? a.b : a.i) < (b.kind == Kind::boolean ? b.b : b.i);
    return a.as_double() < b.as_double();
  }
  if (a.is_string() && b.is_string()) return a.s < b.s;  // UTF-8 byte order is code point order
  if (a.is_sequence() && b.kind == a.kind) {
    const List& x = *a.list;
    const List& y = *b.list;
    for (size_t k = 0; k < x.size() && k < y.size(); ++k) {
      if (!equals(x[k], y[k])) return less(x[k], y[k]);
    }
    return x.size() < y.size();
  }
  if (a.is_undefined() || b.is_undefined())
    throw Error(ErrorCategory::invalid_argument, (a.is_undefined() ? a.s : b.s));
  type_error("'<' not supported between instances of '" + type_name(a).substr(0, type_name(a).find(' ')) +
             "' and '" + type_name(b).substr(0, type_name(b).find(' ')) + "'");
}

std::string percent_format(std::string_view format, const List& args, const Dict* named) {
  std::string out;
  size_t next = 0;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '%') {
      out += format[i];
      continue;
    }
    if (++i >= format.size()) type_error("incomplete format");
    const Value* arg = nullptr;
    if (format[i] == '(') {
      const size_t close = format.find(')', i);
      if (close == std::string_view::npos || !named) type_error("format requires a mapping");
      arg = named->find(format.substr(i + 1, close - i - 1));
      if (!arg) type_error("'" + std::string(format.substr(i + 1, close - i - 1)) + "'");
      i = close + 1;
    }
    int width = 0;
    bool left = false;
    if (i < format.size() && format[i] == '-') left = true, ++i;
    while (i < format.size() && format[i] >= '0' && format[i] <= '9' && width < 1000) width = width * 10 + (format[i++] - '0');
    int precision = -1;
    if (i < format.size() && format[i] == '.') {
      precision = 0;
      ++i;
      while (i < format.size() && format[i] >= '0' && format[i] <= '9' && precision < 100)
        precision = precision * 10 + (format[i++] - '0');
    }
    if (i >= format.size()) type_error("incomplete format");
    const char conv = format[i];
    if (conv == '%') {
      out += '%';
      continue;
    }
    if (!arg) {
      if (next >= args.size()) type_error("not enough arguments for format string");
      arg = &args[next++];
    }
    std::string text;
    if (conv == 's') {
      text = to_str(*arg);
      if (precision >= 0) {
        const std::vector<std::string_view> cps = code_points(text);
        std::string cut;
        for (size_t k = 0; k < cps.size() && k < static_cast<size_t>(precision); ++k) cut += cps[k];
        text = cut;
      }
    } else if (conv == 'r') {
      text = repr(*arg);
    } else if (conv == 'd' || conv == 'i') {
      if (!arg->is_number()) type_error("%d format: a real number is required, not " + type_name(*arg));
      text = arg->kind == Kind::floating ? std::to_string(static_cast<int64_t>(arg->f)) : std::to_string(arg->kind == Kind::boolean ? arg->b : arg->i);
    } else if (conv == 'f') {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.*f", precision < 0 ? 6 : precision, arg->as_double());
      text = buf;
    } else {
      type_error(std::string("unsupported format character '") + conv + "'");
    }
    const size_t n = code_point_count(text);
    if (static_cast<size_t>(width) > n) {
      const std::string pad(static_cast<size_t>(width) - n, ' ');
      text = left ? text + pad : pad + text;
    }
    out += text;
  }
  if (!named && next < args.size()) type_error("not all arguments converted during string formatting");
  return out;
}

std::string html_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

namespace {

Value from_json_at(const nlohmann::ordered_json& j, int depth);

}  // namespace

Value from_json(const nlohmann::ordered_json& j) { return from_json_at(j, 0); }

namespace {

Value from_json_at(const nlohmann::ordered_json& j, int depth) {
  if (depth > kMaxNesting) type_error("the JSON value nests deeper than " + std::to_string(kMaxNesting));
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return Value::none();
    case nlohmann::ordered_json::value_t::boolean: return Value::boolean(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return Value::integer(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const uint64_t u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return Value::floating(static_cast<double>(u));
      return Value::integer(static_cast<int64_t>(u));
    }
    case nlohmann::ordered_json::value_t::number_float: return Value::floating(j.get<double>());
    case nlohmann::ordered_json::value_t::string: return Value::string(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      List items;
      for (const auto& e : j) items.push_back(from_json_at(e, depth + 1));
      return Value::make_list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      auto d = std::make_shared<Dict>();
      for (const auto& [key, e] : j.items()) d->set(key, from_json_at(e, depth + 1));
      return Value::make_dict(std::move(d));
    }
    default: return Value::none();
  }
}

}  // namespace

std::string to_json(const Value& v, const JsonStyle& style) {
  std::string out;
  dump(out, v, style, 0);
  return out;
}

std::vector<std::string_view> code_points(std::string_view s) {
  std::vector<std::string_view> out;
  for (size_t i = 0; i < s.size();) {
    size_t n = 1;
    while (i + n < s.size() && (static_cast<unsigned char>(s[i + n]) & 0xc0) == 0x80) ++n;
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

size_t code_point_count(std::string_view s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xc0) != 0x80;
  return n;
}

bool is_space_at(std::string_view s, size_t i, size_t* width) {
  const auto c = static_cast<unsigned char>(s[i]);
  *width = 1;
  if (c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f)) return true;
  static constexpr std::string_view kWide[] = {"\xc2\x85",     "\xc2\xa0",     "\xe1\x9a\x80", "\xe2\x80\xa8",
                                               "\xe2\x80\xa9", "\xe2\x80\xaf", "\xe2\x81\x9f", "\xe3\x80\x80"};
  for (std::string_view w : kWide)
    if (s.substr(i, w.size()) == w) return *width = w.size(), true;
  if (s.substr(i, 2) == "\xe2\x80" && i + 2 < s.size()) {  // U+2000..U+200A
    const auto c2 = static_cast<unsigned char>(s[i + 2]);
    if (c2 >= 0x80 && c2 <= 0x8a) return *width = 3, true;
  }
  return false;
}

}  // namespace kestrel::jinja
