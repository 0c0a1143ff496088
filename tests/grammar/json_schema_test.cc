#include "engine/grammar/json_schema.h"

#include <string>

#include "engine/grammar/json_schema_terms.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/grammar/grammar_test_util.h"

namespace ingot::grammar {
namespace {

using ::testing::HasSubstr;

std::shared_ptr<const Grammar> FromSchema(const std::string& schema) {
  auto text = JsonSchemaToGbnf(schema);
  EXPECT_TRUE(text.ok()) << text.status();
  if (!text.ok()) return nullptr;
  return MustParse(*text);
}

TEST(JsonSchemaTest, ObjectWithRequiredAndOptionalProperties) {
  auto g = FromSchema(R"({"type": "object",
    "properties": {"name": {"type": "string", "maxLength": 5}, "age": {"type": "integer"},
                   "tags": {"type": "array", "items": {"type": "string"}}},
    "required": ["age"]})");
  EXPECT_TRUE(Accepts(g, R"({"age": 3})"));
  EXPECT_TRUE(Accepts(g, R"({"name": "bob","age":-12})"));
  EXPECT_TRUE(Accepts(g, R"({"name":"ab\"c", "age": 0, "tags": ["x", ""]})"));
  EXPECT_TRUE(Accepts(g, R"({"age": 0,"tags":[]})"));
  EXPECT_FALSE(Accepts(g, R"({"name": "bob"})"));             // age is required
  EXPECT_FALSE(Accepts(g, R"({"name": "bobbyy", "age": 1})"));  // maxLength 5
  EXPECT_FALSE(Accepts(g, R"({"age": 1, "name": "b"})"));       // declared order
  EXPECT_FALSE(Accepts(g, R"({"age": 01})"));
  EXPECT_FALSE(Accepts(g, R"({, "age": 1})"));
  EXPECT_FALSE(Accepts(g, R"({"age": 1,})"));
}

TEST(JsonSchemaTest, AllOptionalPropertiesNeedCommasOnlyBetween) {
  auto g = FromSchema(R"({"type":"object","properties":{"a":{"type":"boolean"},"b":{"type":"null"},
                          "c":{"const":"x"}}})");
  for (const char* ok : {"{}", R"({"b": null})", R"({"a": true,"c": "x"})", R"({"a":false, "b":null, "c":"x"})"}) {
    EXPECT_TRUE(Accepts(g, ok)) << ok;
  }
  for (const char* bad : {R"({,"b": null})", R"({"a": true,})", R"({"c":"y"})"}) EXPECT_FALSE(Accepts(g, bad)) << bad;
}

TEST(JsonSchemaTest, IntegerBoundsAreExact) {
  auto g = FromSchema(R"({"type":"integer","minimum":-17,"maximum":250})");
  for (int v = -40; v <= 300; ++v) {
    EXPECT_EQ(Accepts(g, std::to_string(v)), v >= -17 && v <= 250) << v;
  }
  EXPECT_FALSE(Accepts(g, "-0"));
  EXPECT_FALSE(Accepts(g, "007"));
  auto excl = FromSchema(R"({"type":"integer","exclusiveMinimum":9,"exclusiveMaximum":1000})");
  for (int v : {9, 10, 999, 1000}) EXPECT_EQ(Accepts(excl, std::to_string(v)), v > 9 && v < 1000) << v;
  auto open = FromSchema(R"({"type":"integer","minimum":95})");
  for (int v : {94, 95, 99, 100, 123456}) EXPECT_EQ(Accepts(open, std::to_string(v)), v >= 95) << v;
  auto neg = FromSchema(R"({"type":"integer","maximum":-3})");
  for (int v : {-2, -3, -1000, 5}) EXPECT_EQ(Accepts(neg, std::to_string(v)), v <= -3) << v;
}

TEST(JsonSchemaTest, NumberBoundsHoldForEveryGeneratedValue) {
  auto g = FromSchema(R"({"type":"number","minimum":-1.5,"maximum":3})");
  for (const char* ok : {"0", "2.75", "3", "-1", "-0.999", "1.0"}) EXPECT_TRUE(Accepts(g, ok)) << ok;
  for (const char* bad : {"3.5", "4", "-2", "-1.1", "1e3"}) EXPECT_FALSE(Accepts(g, bad)) << bad;
}

TEST(JsonSchemaTest, EnumsConstsAnyOfTypeListsAndRefs) {
  auto g = FromSchema(R"({"$defs": {"point": {"type":"object","properties":{"x":{"type":"integer"}},
                                              "required":["x"]},
                                    "color": {"enum": ["red", "green", 3, null]}},
    "type":"object",
    "properties": {"p": {"$ref": "#/$defs/point"}, "c": {"$ref": "#/$defs/color"},
                   "v": {"anyOf": [{"type":"string","maxLength":2}, {"type":"array","items":{"$ref":"#/$defs/point"},
                                                                       "minItems":1,"maxItems":2}]},
                   "n": {"type": ["integer", "null"]}},
    "required": ["p", "c", "v", "n"]})");
  EXPECT_TRUE(Accepts(g, R"({"p": {"x": 1}, "c": "red", "v": "ab", "n": null})"));
  EXPECT_TRUE(Accepts(g, R"({"p": {"x": 1}, "c": 3, "v": [{"x": 2}, {"x":3}], "n": 7})"));
  EXPECT_FALSE(Accepts(g, R"({"p": {"x": 1}, "c": "blue", "v": "ab", "n": null})"));
  EXPECT_FALSE(Accepts(g, R"({"p": {"x": 1}, "c": 3, "v": [], "n": 7})"));
  EXPECT_FALSE(Accepts(g, R"({"p": {"x": 1}, "c": 3, "v": [{"x":1},{"x":1},{"x":1}], "n": 7})"));
  auto rec = FromSchema(R"({"$defs":{"node":{"type":"object","properties":{"next":{"$ref":"#/$defs/node"}}}},
                            "$ref":"#/$defs/node"})");
  EXPECT_TRUE(Accepts(rec, R"({"next": {"next": {}}})"));
}

TEST(JsonSchemaTest, StringsWithPatternsAndLengths) {
  auto date = FromSchema(R"({"type":"string","pattern":"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"})");
  EXPECT_TRUE(Accepts(date, R"("2024-02-29")"));
  EXPECT_FALSE(Accepts(date, R"("2024-2-29")"));
  auto alt = FromSchema(R"({"type":"string","pattern":"^(ab|c\\d+)x?\\.[^a-z]$"})");
  for (const char* ok : {R"("ab.Z")", R"("c12x.5")"}) EXPECT_TRUE(Accepts(alt, ok)) << ok;
  for (const char* bad : {R"("c.Z")", R"("ab.z")", R"("ab.\"")"}) EXPECT_FALSE(Accepts(alt, bad)) << bad;
  auto len = FromSchema(R"({"type":"string","minLength":2,"maxLength":3})");
  for (const char* ok : {R"("ab")", R"("a\nb")", R"("é€x")"}) EXPECT_TRUE(Accepts(len, ok)) << ok;
  for (const char* bad : {R"("a")", R"("abcd")", "\"a\nb\""}) EXPECT_FALSE(Accepts(len, bad)) << bad;
}

TEST(JsonSchemaTest, JsonObjectIsAnyObject) {
  auto g = MustParse(JsonObjectGbnf());
  EXPECT_TRUE(Accepts(g, R"({"a": [1, -2.5e3, {"b": null}], "c": "d", "e": true})"));
  EXPECT_TRUE(Accepts(g, "{}"));
  EXPECT_FALSE(Accepts(g, "[1]"));
  EXPECT_FALSE(Accepts(g, R"({"a": tru})"));
}

struct BadSchema {
  const char* schema;
  const char* message;
};
class JsonSchemaErrorTest : public ::testing::TestWithParam<BadSchema> {};

TEST_P(JsonSchemaErrorTest, RefusedNamingWhy) {
  auto text = JsonSchemaToGbnf(GetParam().schema);
  absl::Status st = text.status();
  if (text.ok()) st = ParseGbnf(*text).status();  // unsatisfiable only the grammar sees
  ASSERT_FALSE(st.ok()) << GetParam().schema;
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr(GetParam().message)) << st;
}

INSTANTIATE_TEST_SUITE_P(
    Bad, JsonSchemaErrorTest,
    ::testing::Values(
        BadSchema{R"({"type":"array","uniqueItems":true})", "keyword 'uniqueItems' is not supported"},
        BadSchema{R"({"properties":{"a":{"type":"string","format":"date","oneOf":[]}}})",
                  "'/properties/a': keywords 'format', 'oneOf' is not supported"},
        BadSchema{R"({"type":"array","minItems":3,"maxItems":2})", "unsatisfiable at '/': minItems 3 > maxItems 2"},
        BadSchema{R"({"type":"integer","minimum":5,"maximum":4})", "unsatisfiable"},
        BadSchema{R"({"type":"number","minimum":0.2,"maximum":0.8})", "number bounds that contain no integer"},
        BadSchema{R"({"enum":[]})", "an empty enum"},
        BadSchema{R"({"type":"string","minLength":4,"maxLength":2})", "minLength 4 > maxLength 2"},
        BadSchema{R"({"type":"object","properties":{"a":{}},"required":["b"],"additionalProperties":false})",
                  "required property 'b' is not in properties"},
        BadSchema{R"({"anyOf":[{"type":"integer","minimum":3,"maximum":1}, {"enum":[]}]})", "no branch of anyOf"},
        BadSchema{R"({"$ref":"#/$defs/missing"})", "names no definition"},
        BadSchema{R"({"$ref":"http://example.com/s.json"})", "only #/$defs/NAME"},
        BadSchema{R"({"type":"string","pattern":"(?=a)b"})", "lookarounds"},
        BadSchema{R"({"type":"object","properties":{"a":false},"required":["a"]})", "schema is false"},
        BadSchema{R"({"$defs":{"loop":{"type":"object","properties":{"x":{"$ref":"#/$defs/loop"}},
                     "required":["x"]}},"$ref":"#/$defs/loop"})", "can never finish"},
        BadSchema{R"({"type":"strnig"})", "unknown type 'strnig'"},
        BadSchema{R"({"type":"array","minItems":"2"})", "wrong type"},
        BadSchema{R"({"type":)", "not valid JSON"}));

}  // namespace
}  // namespace ingot::grammar
