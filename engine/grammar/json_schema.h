// JSON Schema -> GBNF grammar (gbnf.h), for output that must validate against the
// schema. Every text the grammar admits is compact-ish JSON (one optional space after
// ':' and ',') that validates; some valid texts are not generated (documented per
// keyword below), never the reverse.
//
// Supported: type (string, number, integer, boolean, null, object, array, or a list of
// them), properties + required (declared order; optional ones may be left out),
// additionalProperties (false/true: only declared properties are generated; a schema
// with no properties: an object of that schema's values), items, minItems, maxItems,
// enum, const, minLength/maxLength, pattern (a regular-expression subset: literals,
// classes, ., groups, |, ? * + {m,n}, \d \w \s, ^ and $ at the ends; only characters
// that need no JSON escape are generated), minimum/maximum/exclusiveMinimum/
// exclusiveMaximum (integers exactly; numbers between the integers inside the
// bounds, no exponent), anyOf, $ref to #/$defs/... or #/definitions/..., and the
// annotations (title, description, default, examples, $schema, $id, $comment).
// Integers and integer parts have at most 16 digits.
//
// Anything else is refused with INVALID_ARGUMENT naming the keyword and where it is;
// a schema nothing can satisfy (min above max, an empty enum, a required property
// that is not allowed, ...) is refused before generation, naming why.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace ingot::grammar {

absl::StatusOr<std::string> JsonSchemaToGbnf(std::string_view schema_json);

// Any JSON object (OpenAI's response_format json_object).
std::string JsonObjectGbnf();

}  // namespace ingot::grammar
