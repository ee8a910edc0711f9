// JSON Schema -> GBNF (decoding/json_schema.h): for several schemas, texts the schema
// admits match the grammar and texts it does not admit do not; unsupported keywords are
// refused by name.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <kestrel/error.h>

#include "decoding/grammar.h"
#include "decoding/json_schema.h"

namespace kestrel {
namespace {

struct Checker {
  std::shared_ptr<const grammar::Grammar> g;
  explicit Checker(std::string_view schema)
      : g(std::make_shared<const grammar::Grammar>(grammar::Grammar::parse(json_schema_to_grammar(schema)))) {}
  bool operator()(std::string_view text) const { return grammar::Matcher::matches(g, text); }
};

std::string schema_error(std::string_view schema) {
  try {
    json_schema_to_grammar(schema);
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::invalid_argument);
    return e.message();
  }
  ADD_FAILURE() << "no error for " << schema;
  return "";
}

TEST(JsonSchema, AnyValue) {
  Checker any("{}");
  for (const char* ok : {"1", "-0.5e+3", "\"a\\\"b\\u00e9\"", "true", "null", "[]", "[1, [2, {}]]",
                         "{\"a\": {\"b\": [null, false]}}", "{ \"x\" : 1 }\n"})
    EXPECT_TRUE(any(ok)) << ok;
  for (const char* bad : {"", "01", "[1,]", "{\"a\"}", "'a'", "tru", "\"\x01\"", "{a: 1}", "1.", "[1 2]"})
    EXPECT_FALSE(any(bad)) << bad;
  const auto object = std::make_shared<const grammar::Grammar>(grammar::Grammar::parse(json_value_grammar(true)));
  EXPECT_TRUE(grammar::Matcher::matches(object, "{\"a\": [1]}"));
  EXPECT_FALSE(grammar::Matcher::matches(object, "[1]"));
}

TEST(JsonSchema, ObjectWithRequiredAndOptionalProperties) {
  Checker c(R"({
    "type": "object",
    "properties": {
      "name": {"type": "string", "minLength": 1, "maxLength": 5},
      "age": {"type": "integer"},
      "email": {"type": "string"},
      "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2}
    },
    "required": ["name", "age"]
  })");
  EXPECT_TRUE(c(R"({"name": "Ann", "age": 31})"));
  EXPECT_TRUE(c(R"({"name":"Ann","age":-3,"email":"a@b"})"));
  EXPECT_TRUE(c(R"({"name": "Ann", "age": 3, "tags": ["x", "y"]})"));
  EXPECT_TRUE(c(R"({"name": "Ann", "age": 3, "email": "e", "tags": []})"));
  EXPECT_TRUE(c("{\n  \"name\": \"Ann\",\n  \"age\": 3\n}"));
  EXPECT_FALSE(c(R"({"age": 31, "name": "Ann"})")) << "properties come in schema order";
  EXPECT_FALSE(c(R"({"name": "Ann"})")) << "age is required";
  EXPECT_FALSE(c(R"({"name": "", "age": 1})")) << "minLength 1";
  EXPECT_FALSE(c(R"({"name": "Annabel", "age": 1})")) << "maxLength 5";
  EXPECT_FALSE(c(R"({"name": "Ann", "age": 1.5})")) << "an integer";
  EXPECT_FALSE(c(R"({"name": "Ann", "age": 1, "tags": ["a", "b", "c"]})")) << "maxItems 2";
  EXPECT_FALSE(c(R"({"name": "Ann", "age": 1, "other": 2})")) << "no additional properties by default";
  EXPECT_FALSE(c(R"({"name": "Ann", "age": 1, "tags": ["a"], "email": "e"})")) << "optional ones in order";
}

TEST(JsonSchema, NestedObjectsArraysEnumsAndConst) {
  Checker c(R"({
    "type": "object",
    "properties": {
      "kind": {"const": "point"},
      "color": {"enum": ["red", "green", 3, null]},
      "at": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}}, "required": ["x", "y"]},
      "path": {"type": "array", "items": {"type": "array", "prefixItems": [{"type": "number"}, {"type": "boolean"}]}, "minItems": 1}
    },
    "required": ["kind", "color", "at", "path"]
  })");
  EXPECT_TRUE(c(R"({"kind": "point", "color": "red", "at": {"x": 1.5, "y": -2e3}, "path": [[1, true]]})"));
  EXPECT_TRUE(c(R"({"kind": "point", "color": 3, "at": {"x": 0, "y": 0}, "path": [[1, true], [2, false]]})"));
  EXPECT_TRUE(c(R"({"kind": "point", "color": null, "at": {"x": 0, "y": 0}, "path": [[1, true]]})"));
  EXPECT_FALSE(c(R"({"kind": "line", "color": "red", "at": {"x": 1, "y": 2}, "path": [[1, true]]})"));
  EXPECT_FALSE(c(R"({"kind": "point", "color": "blue", "at": {"x": 1, "y": 2}, "path": [[1, true]]})"));
  EXPECT_FALSE(c(R"({"kind": "point", "color": "red", "at": {"x": 1}, "path": [[1, true]]})"));
  EXPECT_FALSE(c(R"({"kind": "point", "color": "red", "at": {"x": 1, "y": 2}, "path": []})")) << "minItems 1";
  EXPECT_FALSE(c(R"({"kind": "point", "color": "red", "at": {"x": 1, "y": 2}, "path": [[true, 1]]})"));
}

TEST(JsonSchema, RefsAnyOfTypeListsAndAdditionalProperties) {
  Checker c(R"({
    "$defs": {
      "node": {"type": "object", "properties": {"value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}, "required": ["value"]},
      "label": {"type": ["string", "null"]}
    },
    "type": "object",
    "properties": {
      "tree": {"$ref": "#/$defs/node"},
      "label": {"$ref": "#/$defs/label"},
      "id": {"anyOf": [{"type": "integer"}, {"type": "string", "format": "uuid"}]}
    },
    "required": ["tree", "label", "id"],
    "additionalProperties": {"type": "boolean"}
  })");
  EXPECT_TRUE(c(R"({"tree": {"value": 1, "children": [{"value": 2}, {"value": 3, "children": []}]}, "label": null, "id": 7})"));
  EXPECT_TRUE(c(R"({"tree": {"value": 1}, "label": "x", "id": "123e4567-e89b-12d3-a456-426614174000", "extra": true, "more": false})"));
  EXPECT_FALSE(c(R"({"tree": {"value": 1}, "label": "x", "id": "not-a-uuid"})"));
  EXPECT_FALSE(c(R"({"tree": {"children": []}, "label": "x", "id": 1})"));
  EXPECT_FALSE(c(R"({"tree": {"value": 1}, "label": 5, "id": 1})"));
  EXPECT_FALSE(c(R"({"tree": {"value": 1}, "label": "x", "id": 1, "extra": 1})")) << "additional values are booleans";

  Checker clash(R"({"$defs": {"a-b": {"type": "integer"}, "a_b": {"type": "boolean"}},
    "type": "array", "prefixItems": [{"$ref": "#/$defs/a-b"}, {"$ref": "#/$defs/a_b"}]})");
  EXPECT_TRUE(clash("[1, true]")) << "two names that sanitize alike keep their own rules";
  EXPECT_FALSE(clash("[1, 1]"));

  Checker defs(R"({"definitions": {"d": {"type": "string", "format": "date"}}, "type": "array", "items": {"$ref": "#/definitions/d"}})");
  EXPECT_TRUE(defs(R"(["2024-02-29", "1999-12-31"])"));
  EXPECT_FALSE(defs(R"(["2024-13-01"])"));
}

TEST(JsonSchema, AllOfMergesObjects) {
  Checker c(R"({"allOf": [
    {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
    {"properties": {"b": {"type": "boolean"}}, "required": ["b"]}
  ]})");
  EXPECT_TRUE(c(R"({"a": 1, "b": true})"));
  EXPECT_FALSE(c(R"({"a": 1})"));
  EXPECT_FALSE(c(R"({"b": true})"));
}

TEST(JsonSchema, UnsupportedKeywordsAreRefusedByName) {
  EXPECT_EQ(schema_error(R"({"type": "string", "pattern": "^a+$"})"),
            "JSON schema at #: keyword 'pattern' is not supported (it would be ignored, so it is refused)");
  EXPECT_THAT(schema_error(R"({"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}})"),
              testing::HasSubstr("at #/properties/n: keyword 'minimum'"));
  EXPECT_THAT(schema_error(R"({"$ref": "http://example.com/s.json"})"), testing::HasSubstr("$ref 'http://example.com/s.json' is not supported"));
  EXPECT_THAT(schema_error(R"({"$ref": "#/$defs/missing"})"), testing::HasSubstr("names no definition"));
  EXPECT_THAT(schema_error(R"({"type": "string", "format": "email"})"), testing::HasSubstr("format 'email' is not supported"));
  EXPECT_THAT(schema_error(R"({"type": "strin"})"), testing::HasSubstr("type 'strin'"));
  EXPECT_THAT(schema_error("{"), testing::HasSubstr("not valid JSON"));
  // Annotations are fine.
  EXPECT_NO_THROW(json_schema_to_grammar(R"({"title": "T", "description": "d", "type": "integer", "examples": [1]})"));
}

}  // namespace
}  // namespace kestrel
