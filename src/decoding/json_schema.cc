#include "decoding/json_schema.h"

#include <cctype>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "kestrel/error.h"

namespace kestrel {

namespace {

using json = nlohmann::ordered_json;

// llama.cpp's primitive rules (common/json-schema-to-grammar.cpp).
const std::map<std::string, std::string>& primitives() {
  static const std::map<std::string, std::string> rules = {
      {"space", R"(( " " | "\n" [ \t]{0,20} )?)"},
      {"boolean", R"(("true" | "false") space)"},
      {"decimal-part", R"([0-9]{1,16})"},
      {"integral-part", R"([0] | [1-9] [0-9]{0,15})"},
      {"number", R"(("-"? integral-part) ("." decimal-part)? ([eE] [-+]? integral-part)? space)"},
      {"integer", R"(("-"? integral-part) space)"},
      {"char", R"([^"\\\x7F\x00-\x1F] | [\\] (["\\/bfnrt] | "u" [0-9a-fA-F]{4}))"},
      {"string", R"("\"" char* "\"" space)"},
      {"null", R"("null" space)"},
      {"value", R"(object | array | string | number | boolean | null)"},
      {"object", R"("{" space ( string ":" space value ("," space string ":" space value)* )? "}" space)"},
      {"array", R"("[" space ( value ("," space value)* )? "]" space)"},
      {"uuid",
       R"("\"" [0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{12} "\"" space)"},
      {"date", R"([0-9]{4} "-" ( "0" [1-9] | "1" [0-2] ) "-" ( "0" [1-9] | [1-2] [0-9] | "3" [0-1] ))"},
      {"time",
       R"(( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{3} )? ( "Z" | ( "+" | "-" ) ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ))"},
      {"date-time", R"(date "T" time)"},
      {"date-string", R"("\"" date "\"" space)"},
      {"time-string", R"("\"" time "\"" space)"},
      {"date-time-string", R"("\"" date-time "\"" space)"},
  };
  return rules;
}

// Which primitives each one uses.
const std::map<std::string, std::vector<std::string>>& primitive_deps() {
  static const std::map<std::string, std::vector<std::string>> deps = {
      {"boolean", {"space"}},
      {"number", {"integral-part", "decimal-part", "space"}},
      {"integer", {"integral-part", "space"}},
      {"string", {"char", "space"}},
      {"null", {"space"}},
      {"value", {"object", "array", "string", "number", "boolean", "null"}},
      {"object", {"space", "string", "value"}},
      {"array", {"space", "value"}},
      {"uuid", {"space"}},
      {"date-time", {"date", "time"}},
      {"date-string", {"date", "space"}},
      {"time-string", {"time", "space"}},
      {"date-time-string", {"date-time", "space"}},
  };
  return deps;
}

// A GBNF string literal for `text` (UTF-8 passes through).
std::string literal(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7F) {
      static const char* hex = "0123456789ABCDEF";
      out += "\\x";
      out += hex[u >> 4];
      out += hex[u & 15];
    } else {
      out += c;
    }
  }
  return out + "\"";
}

class Converter {
 public:
  explicit Converter(const json& root) : root_(root) {}

  std::string run() {
    const std::string body = visit(root_, "root", "#");
    // visit may have named the root schema's rule after a $ref: make root refer to it.
    if (!rules_.count("root")) rules_["root"] = body;
    std::string out = "root ::= " + rules_["root"] + "\n";
    for (const auto& [name, rule] : rules_)
      if (name != "root") out += name + " ::= " + rule + "\n";
    return out;
  }

 private:
  [[noreturn]] static void refuse(const std::string& where, const std::string& what) {
    throw Error(ErrorCategory::invalid_argument, "JSON schema at " + where + ": " + what);
  }

  std::string use_primitive(const std::string& name) {
    if (rules_.count(name)) return name;
    rules_[name] = primitives().at(name);
    if (auto d = primitive_deps().find(name); d != primitive_deps().end())
      for (const std::string& dep : d->second) use_primitive(dep);
    return name;
  }

  static std::string sanitize(const std::string& name) {
    std::string out;
    for (char c : name) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-') ? c : '-';
    return out.empty() ? "r" : out;
  }

  // Adds rule `name ::= body` (a fresh name if taken by another body); returns its name.
  std::string add_rule(const std::string& wanted, const std::string& body) {
    std::string name = sanitize(wanted);
    for (int i = 1;; ++i) {
      auto it = rules_.find(name);
      if (it == rules_.end() || it->second == body) break;
      name = sanitize(wanted) + std::to_string(i);
    }
    rules_[name] = body;
    return name;
  }

  const json& resolve(const std::string& ref, const std::string& where) {
    std::string key;
    if (ref.rfind("#/$defs/", 0) == 0)
      key = "$defs";
    else if (ref.rfind("#/definitions/", 0) == 0)
      key = "definitions";
    else
      refuse(where, "$ref '" + ref + "' is not supported (only #/$defs/NAME and #/definitions/NAME)");
    const std::string name = ref.substr(key.size() + 3);
    if (!root_.is_object() || !root_.contains(key) || !root_[key].is_object() || !root_[key].contains(name))
      refuse(where, "$ref '" + ref + "' names no definition");
    return root_[key][name];
  }

  // The rule body for `schema`; `name` suggests rule names for its parts.
  std::string visit(const json& schema, const std::string& name, const std::string& where) {
    if (schema.is_boolean()) {
      if (!schema.get<bool>()) refuse(where, "the schema `false` admits nothing");
      return use_primitive("value");
    }
    if (!schema.is_object()) refuse(where, "a schema must be an object or a boolean");
    static const std::set<std::string> annotations = {"$schema", "$id",     "$comment",   "title",    "description",
                                                      "default", "examples", "deprecated", "readOnly", "writeOnly",
                                                      "$defs",   "definitions"};
    static const std::set<std::string> known = {
        "type",     "enum",     "const",     "anyOf",     "oneOf",     "allOf",                "$ref",
        "properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems",
        "minLength", "maxLength", "format"};
    for (const auto& [key, value] : schema.items())
      if (!annotations.count(key) && !known.count(key))
        refuse(where, "keyword '" + key + "' is not supported (it would be ignored, so it is refused)");

    if (schema.contains("$ref")) {
      const std::string ref = schema["$ref"].get<std::string>();
      if (auto known = refs_.find(ref); known != refs_.end()) return known->second;
      const json& target = resolve(ref, where);
      std::string rule = "ref-" + sanitize(ref.substr(ref.rfind('/') + 1));
      for (int i = 1; rules_.count(rule); ++i) rule = "ref-" + sanitize(ref.substr(ref.rfind('/') + 1)) + std::to_string(i);
      refs_[ref] = rule;
      rules_[rule] = "";  // reserved: a recursive reference sees the name
      rules_[rule] = visit(target, rule, ref);
      return rule;
    }
    if (schema.contains("const")) return literal(schema["const"].dump()) + " " + use_primitive("space");
    if (schema.contains("enum")) {
      if (!schema["enum"].is_array() || schema["enum"].empty()) refuse(where, "enum must be a non-empty array");
      std::string alts;
      for (const json& v : schema["enum"]) alts += (alts.empty() ? "" : " | ") + literal(v.dump());
      return "(" + alts + ") " + use_primitive("space");
    }
    for (const char* key : {"anyOf", "oneOf"})
      if (schema.contains(key)) {
        const json& list = schema[key];
        if (!list.is_array() || list.empty()) refuse(where, std::string(key) + " must be a non-empty array");
        std::string alts;
        for (size_t i = 0; i < list.size(); ++i) {
          const std::string sub = visit(list[i], name + "-" + std::to_string(i), where + "/" + key + "/" + std::to_string(i));
          alts += (alts.empty() ? "" : " | ") + add_rule(name + "-" + std::to_string(i), sub);
        }
        return alts;
      }
    if (schema.contains("allOf")) return visit_all_of(schema, name, where);

    json type = schema.contains("type") ? schema["type"] : json();
    if (type.is_array()) {
      std::string alts;
      for (const json& t : type) {
        json one = schema;
        one["type"] = t;
        const std::string sub = visit(one, name + "-" + t.get<std::string>(), where);
        alts += (alts.empty() ? "" : " | ") + add_rule(name + "-" + t.get<std::string>(), sub);
      }
      if (alts.empty()) refuse(where, "type is an empty array");
      return alts;
    }
    if (type.is_null()) {
      if (schema.contains("properties") || schema.contains("additionalProperties")) type = "object";
      else if (schema.contains("items") || schema.contains("prefixItems")) type = "array";
      else if (schema.contains("minLength") || schema.contains("maxLength") || schema.contains("format")) type = "string";
      else return use_primitive("value");
    }
    if (!type.is_string()) refuse(where, "type must be a string or an array of strings");
    const std::string t = type.get<std::string>();
    if (t == "object") return visit_object(schema, name, where);
    if (t == "array") return visit_array(schema, name, where);
    if (t == "string") return visit_string(schema, where);
    if (t == "number" || t == "integer" || t == "boolean" || t == "null") return use_primitive(t);
    refuse(where, "type '" + t + "' is not a JSON Schema type");
  }

  std::string visit_string(const json& schema, const std::string& where) {
    if (schema.contains("format")) {
      const std::string f = schema["format"].get<std::string>();
      if (f == "uuid") return use_primitive("uuid");
      if (f == "date" || f == "time" || f == "date-time") return use_primitive(f + "-string");
      refuse(where, "format '" + f + "' is not supported (date, time, date-time, uuid are)");
    }
    const int min = schema.value("minLength", 0);
    const int max = schema.contains("maxLength") ? schema["maxLength"].get<int>() : -1;
    if (min < 0 || (max >= 0 && max < min)) refuse(where, "minLength / maxLength out of order");
    if (min == 0 && max < 0) return use_primitive("string");
    use_primitive("char");
    return "\"\\\"\" char{" + std::to_string(min) + "," + (max >= 0 ? std::to_string(max) : "") + "} \"\\\"\" " +
           use_primitive("space");
  }

  // `item ("," space item){min-1,max-1}`, optional as a whole when min == 0.
  std::string repetition(const std::string& item, int min, int max) {
    if (max == 0) return "";
    const std::string rest = "( \",\" space " + item + " ){" + std::to_string(std::max(min - 1, 0)) + "," +
                             (max >= 0 ? std::to_string(max - 1) : "") + "}";
    std::string body = item + " " + rest;
    if (min == 0) body = "( " + body + " )?";
    return body;
  }

  std::string visit_array(const json& schema, const std::string& name, const std::string& where) {
    use_primitive("space");
    const int min = schema.value("minItems", 0);
    const int max = schema.contains("maxItems") ? schema["maxItems"].get<int>() : -1;
    if (min < 0 || (max >= 0 && max < min)) refuse(where, "minItems / maxItems out of order");
    if (schema.contains("prefixItems")) {
      const json& list = schema["prefixItems"];
      if (schema.contains("items") && !(schema["items"].is_boolean() && !schema["items"].get<bool>()))
        refuse(where, "prefixItems with items (other than false) is not supported");
      std::string body = "\"[\" space";
      for (size_t i = 0; i < list.size(); ++i) {
        if (i) body += " \",\" space";
        body += " " + add_rule(name + "-" + std::to_string(i),
                               visit(list[i], name + "-" + std::to_string(i), where + "/prefixItems/" + std::to_string(i)));
      }
      return body + " \"]\" space";
    }
    std::string item = use_primitive("value");
    if (schema.contains("items")) item = add_rule(name + "-item", visit(schema["items"], name + "-item", where + "/items"));
    return "\"[\" space " + repetition(item, min, max) + " \"]\" space";
  }

  std::string visit_object(const json& schema, const std::string& name, const std::string& where) {
    if (!schema.contains("properties") && !schema.contains("additionalProperties")) return use_primitive("object");
    use_primitive("space");
    std::vector<std::string> keys;
    std::map<std::string, std::string> kv;  // key -> its key-value rule
    if (schema.contains("properties")) {
      if (!schema["properties"].is_object()) refuse(where, "properties must be an object");
      for (const auto& [key, sub] : schema["properties"].items()) {
        const std::string value = add_rule(name + "-" + key, visit(sub, name + "-" + key, where + "/properties/" + key));
        kv[key] = add_rule(name + "-" + key + "-kv", literal(json(key).dump()) + " space \":\" space " + value);
        keys.push_back(key);
      }
    }
    std::set<std::string> required;
    if (schema.contains("required"))
      for (const json& k : schema["required"]) {
        const std::string key = k.get<std::string>();
        if (!kv.count(key)) refuse(where, "required property '" + key + "' is not in properties");
        required.insert(key);
      }
    std::vector<std::string> req, opt;
    for (const std::string& k : keys) (required.count(k) ? req : opt).push_back(k);
    if (schema.contains("additionalProperties")) {
      const json& add = schema["additionalProperties"];
      if (!(add.is_boolean() && !add.get<bool>())) {
        const std::string value = add.is_boolean() ? use_primitive("value")
                                                   : add_rule(name + "-additional", visit(add, name + "-additional", where + "/additionalProperties"));
        kv["*"] = add_rule(name + "-additional-kv", use_primitive("string") + " \":\" space " + value);
        opt.push_back("*");
      }
    }
    // Optional keys in order: any subset, as llama.cpp's get_recursive_refs builds it.
    std::function<std::string(size_t, bool)> chain = [&](size_t i, bool first_optional) {
      const std::string& k = opt[i];
      const std::string comma = "( \",\" space " + kv[k] + " )";
      std::string res = first_optional ? comma + (k == "*" ? "*" : "?") : kv[k] + (k == "*" ? " " + comma + "*" : "");
      if (i + 1 < opt.size()) res += " " + add_rule(name + "-" + (k == "*" ? "additional" : k) + "-rest", chain(i + 1, true));
      return res;
    };
    std::string body = "\"{\" space";
    for (size_t i = 0; i < req.size(); ++i) body += (i ? " \",\" space " : " ") + kv[req[i]];
    if (!opt.empty()) {
      body += " (";
      if (!req.empty()) body += " \",\" space (";
      for (size_t i = 0; i < opt.size(); ++i) body += (i ? " | " : " ") + chain(i, false);
      if (!req.empty()) body += " )";
      body += " )?";
    }
    return body + " \"}\" space";
  }

  // allOf of object schemas (or $refs to them): one object with all their properties.
  std::string visit_all_of(const json& schema, const std::string& name, const std::string& where) {
    json merged = json::object();
    merged["type"] = "object";
    merged["properties"] = json::object();
    merged["required"] = json::array();
    const json& list = schema["allOf"];
    if (!list.is_array() || list.empty()) refuse(where, "allOf must be a non-empty array");
    for (size_t i = 0; i < list.size(); ++i) {
      const json* part = &list[i];
      if (part->is_object() && part->contains("$ref")) part = &resolve((*part)["$ref"].get<std::string>(), where);
      const bool object = part->is_object() && (part->value("type", std::string("object")) == "object") &&
                          !part->contains("anyOf") && !part->contains("oneOf") && !part->contains("allOf");
      if (!object) refuse(where + "/allOf/" + std::to_string(i), "allOf is supported for object schemas only");
      if (part->contains("properties"))
        for (const auto& [k, v] : (*part)["properties"].items()) merged["properties"][k] = v;
      if (part->contains("required"))
        for (const json& r : (*part)["required"]) merged["required"].push_back(r);
      if (part->contains("additionalProperties")) merged["additionalProperties"] = (*part)["additionalProperties"];
    }
    for (const auto& [key, value] : schema.items())
      if (key != "allOf" && key != "type") merged[key] = value;
    return visit_object(merged, name, where);
  }

  const json& root_;
  std::map<std::string, std::string> rules_;
  std::map<std::string, std::string> refs_;  // $ref -> its rule
};

}  // namespace

std::string json_schema_to_grammar(std::string_view schema_json) {
  json schema;
  try {
    schema = json::parse(schema_json);
  } catch (const json::exception& e) {
    throw Error(ErrorCategory::invalid_argument, std::string("JSON schema is not valid JSON: ") + e.what());
  }
  try {
    return Converter(schema).run();
  } catch (const json::exception& e) {  // a keyword of the wrong JSON type
    throw Error(ErrorCategory::invalid_argument, std::string("JSON schema: ") + e.what());
  }
}

std::string json_value_grammar(bool object_only) {
  return json_schema_to_grammar(object_only ? R"({"type": "object"})" : "{}");
}

}  // namespace kestrel
