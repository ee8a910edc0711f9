// The Python methods templates call on values: str, dict and list methods that the
// ImmutableSandboxedEnvironment allows; the mutating ones (list.append, dict.update, ...)
// are refused as it refuses them.
#include <algorithm>

#include "tokenizer/jinja/args.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/text.h"

namespace kestrel::jinja {
namespace {

Value strings(const std::vector<std::string>& parts) {
  List out;
  for (const std::string& p : parts) out.push_back(Value::string(p));
  return Value::make_list(std::move(out));
}

bool affix(const Value& self, const CallArgs& args, bool prefix) {
  const Value a = arg(args, 0, "prefix");
  std::vector<std::string> options;
  if (a.is_string()) {
    options.push_back(a.s);
  } else if (a.is_sequence()) {
    for (const Value& v : *a.list) {
      if (!v.is_string()) arg_error("a tuple for startswith / endswith must only contain str");
      options.push_back(v.s);
    }
  } else {
    arg_error(std::string(prefix ? "startswith" : "endswith") + " first arg must be str or a tuple of str, not " +
              type_name(a));
  }
  for (const std::string& o : options)
    if (prefix ? std::string_view(self.s).starts_with(o) : std::string_view(self.s).ends_with(o)) return true;
  return false;
}

// str.format with {} / {0} / {name} fields and no format specs.
std::string format(const std::string& f, const CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < f.size(); ++i) {
    if (f[i] == '}' ) {
      if (i + 1 < f.size() && f[i + 1] == '}') ++i; else arg_error("Single '}' encountered in format string");
      out += '}';
      continue;
    }
    if (f[i] != '{') {
      out += f[i];
      continue;
    }
    if (i + 1 < f.size() && f[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    const size_t end = f.find('}', i);
    if (end == std::string::npos) arg_error("Single '{' encountered in format string");
    const std::string field = f.substr(i + 1, end - i - 1);
    if (field.find_first_of(":!.[") != std::string::npos) arg_error("format specs are not supported in str.format");
    Value v;
    if (field.empty() || std::all_of(field.begin(), field.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      const size_t index = field.empty() ? auto_index++ : std::stoul(field.substr(0, 6));
      if (index >= args.positional.size()) arg_error("Replacement index " + std::to_string(index) + " out of range");
      v = args.positional[index];
    } else {
      bool found = false;
      for (const auto& [key, value] : args.keyword)
        if (key == field) v = value, found = true;
      if (!found) arg_error("'" + field + "'");
    }
    out += to_str(v);
    i = end;
  }
  return out;
}

int64_t count_of(const std::string& s, const std::string& sub) {
  if (sub.empty()) return static_cast<int64_t>(code_point_count(s)) + 1;
  int64_t n = 0;
  for (size_t at = s.find(sub); at != std::string::npos; at = s.find(sub, at + sub.size())) ++n;
  return n;
}

// Code point index of byte offset `at` (or -1 for npos).
int64_t cp_index(const std::string& s, size_t at) {
  return at == std::string::npos ? -1 : static_cast<int64_t>(code_point_count(std::string_view(s).substr(0, at)));
}

std::optional<Value> string_method(const Value& self, const std::string& name) {
  using Fn = std::function<Value(CallArgs&)>;
  Fn fn;
  const std::string& s = self.s;
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    const bool left = name != "rstrip", right = name != "lstrip";
    fn = [s, left, right](CallArgs& a) {
      const Value chars = arg(a, 0, "chars");
      if (!chars.is_none() && !chars.is_string()) arg_error("strip arg must be None or str");
      return Value::string(str_strip(s, chars.is_none() ? nullptr : &chars.s, left, right));
    };
  } else if (name == "split" || name == "rsplit") {
    const bool reverse = name == "rsplit";
    fn = [s, reverse](CallArgs& a) {
      const Value sep = arg(a, 0, "sep");
      if (!sep.is_none() && !sep.is_string()) arg_error("must be str or None, not " + type_name(sep));
      if (sep.is_string() && sep.s.empty()) arg_error("empty separator");
      const long maxsplit = static_cast<long>(int_arg(a, 1, "maxsplit", -1, "split"));
      const std::string* sp = sep.is_none() ? nullptr : &sep.s;
      return strings(reverse ? str_rsplit(s, sp, maxsplit) : str_split(s, sp, maxsplit));
    };
  } else if (name == "splitlines") {
    fn = [s](CallArgs&) { return strings(str_splitlines(s)); };
  } else if (name == "startswith" || name == "endswith") {
    const bool prefix = name == "startswith";
    fn = [self, prefix](CallArgs& a) { return Value::boolean(affix(self, a, prefix)); };
  } else if (name == "upper") {
    fn = [s](CallArgs&) { return Value::string(str_upper(s)); };
  } else if (name == "lower") {
    fn = [s](CallArgs&) { return Value::string(str_lower(s)); };
  } else if (name == "title") {
    fn = [s](CallArgs&) { return Value::string(str_title(s)); };
  } else if (name == "capitalize") {
    fn = [s](CallArgs&) { return Value::string(str_capitalize(s)); };
  } else if (name == "replace") {
    fn = [s](CallArgs& a) {
      const std::string from = str_arg(a, 0, "old", "replace"), to = str_arg(a, 1, "new", "replace");
      int64_t count = int_arg(a, 2, "count", -1, "replace");
      if (from.empty()) arg_error("replace with an empty pattern is not supported");
      std::string out;
      size_t start = 0;
      for (size_t at = s.find(from); at != std::string::npos && count != 0; at = s.find(from, start), --count) {
        out.append(s, start, at - start).append(to);
        start = at + from.size();
        if (out.size() > (size_t{1} << 26)) arg_error("replace: result too large");
      }
      return Value::string(out + s.substr(start));
    };
  } else if (name == "find" || name == "rfind" || name == "index" || name == "rindex") {
    fn = [s, name](CallArgs& a) {
      const std::string sub = str_arg(a, 0, "sub", name.c_str());
      const size_t at = name[0] == 'r' ? s.rfind(sub) : s.find(sub);
      if (at == std::string::npos && name.find("index") != std::string::npos) arg_error("substring not found");
      return Value::integer(cp_index(s, at));
    };
  } else if (name == "count") {
    fn = [s](CallArgs& a) { return Value::integer(count_of(s, str_arg(a, 0, "sub", "count"))); };
  } else if (name == "format") {
    fn = [s](CallArgs& a) { return Value::string(format(s, a)); };
  } else if (name == "join") {
    fn = [s](CallArgs& a) {
      std::string out;
      const List items = iterate(arg(a, 0, "iterable"));
      for (size_t k = 0; k < items.size(); ++k) {
        if (!items[k].is_string()) arg_error("sequence item " + std::to_string(k) + ": expected str instance, " +
                                             type_name(items[k]).substr(0, type_name(items[k]).find(' ')) + " found");
        out += (k ? s : "") + items[k].s;
      }
      return Value::string(out);
    };
  } else if (name == "isdigit" || name == "isnumeric" || name == "isdecimal") {
    fn = [s](CallArgs&) {
      return Value::boolean(!s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }));
    };
  } else if (name == "isspace") {
    fn = [s](CallArgs&) { return Value::boolean(!s.empty() && str_strip(s, nullptr, true, true).empty()); };
  } else if (name == "isalpha" || name == "isalnum") {
    const bool alnum = name == "isalnum";
    fn = [s, alnum](CallArgs&) {
      const auto cps = code_points(s);
      return Value::boolean(!cps.empty() && std::all_of(cps.begin(), cps.end(), [&](std::string_view c) {
        return is_cased_letter(c) || (alnum && c.size() == 1 && c[0] >= '0' && c[0] <= '9');
      }));
    };
  } else if (name == "isupper" || name == "islower") {
    const bool upper = name == "isupper";
    fn = [s, upper](CallArgs&) {
      bool any = false;
      for (std::string_view c : code_points(s)) {
        if (!is_cased_letter(c)) continue;
        any = true;
        if ((upper ? str_upper(c) : str_lower(c)) != c) return Value::boolean(false);
      }
      return Value::boolean(any);
    };
  } else {
    return std::nullopt;
  }
  return Value::function("str." + name, std::move(fn));
}

std::optional<Value> dict_method(const Value& self, const std::string& name) {
  const std::shared_ptr<Dict> d = self.dict;
  if (name == "items")
    return Value::function("dict.items", [d](CallArgs&) {
      List out;
      for (const auto& [key, value] : d->items) out.push_back(Value::make_list({Value::string(key), value}, true));
      return Value::make_list(std::move(out));
    });
  if (name == "keys")
    return Value::function("dict.keys", [d](CallArgs&) {
      List out;
      for (const auto& kv : d->items) out.push_back(Value::string(kv.first));
      return Value::make_list(std::move(out));
    });
  if (name == "values")
    return Value::function("dict.values", [d](CallArgs&) {
      List out;
      for (const auto& kv : d->items) out.push_back(kv.second);
      return Value::make_list(std::move(out));
    });
  if (name == "get")
    return Value::function("dict.get", [d](CallArgs& a) {
      const Value key = arg(a, 0, "key");
      const Value* v = key.is_string() ? d->find(key.s) : nullptr;
      return v ? *v : arg(a, 1, "default");
    });
  if (name == "copy") return Value::function("dict.copy", [self](CallArgs&) { return self; });
  if (name == "clear" || name == "pop" || name == "popitem" || name == "setdefault" || name == "update")
    return Value::undefined("access to attribute '" + name + "' of 'dict' object is unsafe.");
  return std::nullopt;
}

std::optional<Value> list_method(const Value& self, const std::string& name) {
  if (name == "count")
    return Value::function("list.count", [self](CallArgs& a) {
      const Value x = arg(a, 0, "value");
      return Value::integer(std::count_if(self.list->begin(), self.list->end(), [&](const Value& v) { return equals(v, x); }));
    });
  if (name == "index")
    return Value::function("list.index", [self](CallArgs& a) {
      const Value x = arg(a, 0, "value");
      for (size_t k = 0; k < self.list->size(); ++k)
        if (equals((*self.list)[k], x)) return Value::integer(static_cast<int64_t>(k));
      arg_error(repr(x) + " is not in list");
    });
  if (self.kind == Kind::list && (name == "append" || name == "extend" || name == "insert" || name == "pop" ||
                                  name == "remove" || name == "reverse" || name == "sort" || name == "clear"))
    return Value::undefined("access to attribute '" + name + "' of 'list' object is unsafe.");
  return std::nullopt;
}

}  // namespace

std::optional<Value> method(Interpreter&, const Value& obj, const std::string& name) {
  switch (obj.kind) {
    case Kind::string: return string_method(obj, name);
    case Kind::dict: return dict_method(obj, name);
    case Kind::list:
    case Kind::tuple: return list_method(obj, name);
    default: return std::nullopt;
  }
}

}  // namespace kestrel::jinja
