// decoding/json_schema.h: JSON Schema -> GBNF (decoding/grammar.h), following llama.cpp's
// json-schema-to-grammar semantics for the keywords it supports:
//   type (object, array, string, number, integer, boolean, null, or an array of these),
//   enum, const, anyOf / oneOf (alternatives), allOf (of object schemas: their properties
//   and required lists merged), $ref to #/$defs/... and #/definitions/... (recursion
//   allowed), properties + required (required properties in `properties` order, then any
//   subset of the optional ones, in order), additionalProperties (absent or false: no other
//   keys; true or a schema: any other keys, with values of that schema; as in llama.cpp a
//   schema with no `properties` and type object admits any object), items, prefixItems,
//   minItems / maxItems, minLength / maxLength, format date, time, date-time and uuid.
// Annotations ($schema, $id, $comment, title, description, default, examples, deprecated,
// readOnly, writeOnly) are ignored; any other keyword (pattern, minimum, multipleOf, ...)
// is refused with Error(invalid_argument) naming it and where it is, never silently dropped.
// Whitespace: a value may be followed by a space or a newline and up to 20 spaces/tabs
// (llama.cpp's `space` rule), so output is compact or lightly indented JSON.
#pragma once

#include <string>
#include <string_view>

namespace kestrel {

// The GBNF grammar of the JSON texts the schema (a JSON document) admits.
std::string json_schema_to_grammar(std::string_view schema_json);

// Any JSON value (`object_only`: any JSON object, as OpenAI's response_format json_object).
std::string json_value_grammar(bool object_only);

}  // namespace kestrel
