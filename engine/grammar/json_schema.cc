#include "engine/grammar/json_schema.h"

#include <cctype>
#include <cmath>
#include <optional>
#include <map>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/common/status.h"
#include "engine/grammar/json_schema_terms.h"
#include "nlohmann/json.hpp"

namespace ingot::grammar {
namespace {

using Json = nlohmann::ordered_json;  // properties keep their declared order

// The shared rules every schema grammar may use. `ws` is at most one space: a small
// model sampled at temperature 1 otherwise fills the output with blank lines.
constexpr char kBaseRules[] = R"(ws ::= " "?
json-char ::= [^"\\\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})
json-string ::= "\"" json-char* "\""
json-number ::= "-"? ("0" | [1-9] [0-9]{0,15}) ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})?
json-value ::= json-object | json-array | json-string | json-number | "true" | "false" | "null"
json-object ::= "{" ws (json-string ":" ws json-value ("," ws json-string ":" ws json-value)*)? "}"
json-array ::= "[" ws (json-value ("," ws json-value)*)? "]"
)";

const std::set<std::string>& KnownKeywords() {
  static const std::set<std::string> k = {
      "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "enum",
      "const", "minLength", "maxLength", "pattern", "minimum", "maximum", "exclusiveMinimum",
      "exclusiveMaximum", "anyOf", "$ref", "$defs", "definitions", "title", "description", "default",
      "examples", "$schema", "$id", "$comment"};
  return k;
}

class Converter {
 public:
  explicit Converter(const Json& root) : root_(root) {}

  absl::StatusOr<std::string> Run() {
    ASSIGN_OR_RETURN(std::string body, Visit(root_, "", "root"));
    std::string out = absl::StrCat("root ::= ", body, "\n", kBaseRules);
    for (const auto& [name, rule] : rules_) absl::StrAppend(&out, name, " ::= ", rule, "\n");
    return out;
  }

 private:
  static absl::Status Unsatisfiable(const std::string& where, const std::string& why) {
    return absl::InvalidArgumentError(
        absl::StrCat("JSON Schema is unsatisfiable at '", where.empty() ? "/" : where, "': ", why));
  }
  static absl::Status Unsupported(const std::string& where, const std::string& what) {
    return absl::InvalidArgumentError(
        absl::StrCat("JSON Schema at '", where.empty() ? "/" : where, "': ", what, " is not supported"));
  }

  // A new rule named after `hint` holding `body`; returns its name.
  std::string AddRule(const std::string& hint, const std::string& body) {
    std::string base;
    for (char c : hint) base += (std::isalnum(static_cast<unsigned char>(c)) ? c : '-');
    if (base.empty()) base = "item";
    std::string name = base;
    for (int i = 2; rules_.count(name) || name == "root" || name.rfind("json-", 0) == 0 || name == "ws"; ++i) {
      name = absl::StrCat(base, "-", i);
    }
    rules_[name] = body;
    return name;
  }

  absl::StatusOr<std::optional<int64_t>> Bound(const Json& s, const char* inclusive, const char* exclusive,
                                               bool lower, const std::string& where) {
    std::optional<int64_t> out;
    for (const char* key : {inclusive, exclusive}) {
      if (!s.contains(key)) continue;
      const Json& v = s[key];
      if (!v.is_number()) return Unsupported(absl::StrCat(where, "/", key), "a non-numeric bound");
      const double d = v.get<double>();
      if (!std::isfinite(d) || std::fabs(d) > 1e15) return Unsupported(absl::StrCat(where, "/", key), "a bound above 1e15");
      const bool excl = key == exclusive;
      // Rounded inward to an integer (numbers: the generated ones lie between integers
      // inside the bounds).
      int64_t b;
      if (lower) {
        b = static_cast<int64_t>(std::ceil(d));
        if (excl && static_cast<double>(b) == d) ++b;
      } else {
        b = static_cast<int64_t>(std::floor(d));
        if (excl && static_cast<double>(b) == d) --b;
      }
      if (!out || (lower ? b > *out : b < *out)) out = b;
    }
    return out;
  }

  absl::StatusOr<std::string> Numeric(const Json& s, bool integer, const std::string& where) {
    ASSIGN_OR_RETURN(auto lo, Bound(s, "minimum", "exclusiveMinimum", true, where));
    ASSIGN_OR_RETURN(auto hi, Bound(s, "maximum", "exclusiveMaximum", false, where));
    if (!lo && !hi) return integer ? std::string("\"-\"? (\"0\" | [1-9] [0-9]{0,15})") : std::string("json-number");
    const std::string body = integer ? IntegerRangeGbnf(lo, hi) : NumberRangeGbnf(lo, hi);
    if (body.empty()) {
      auto raw = [&](const char* a, const char* b) -> double {
        return s.contains(a) ? s[a].get<double>() : s[b].get<double>();
      };
      const bool real_gap = !integer && (s.contains("minimum") || s.contains("exclusiveMinimum")) &&
                            (s.contains("maximum") || s.contains("exclusiveMaximum")) &&
                            raw("minimum", "exclusiveMinimum") < raw("maximum", "exclusiveMaximum");
      if (real_gap) return Unsupported(where, "number bounds that contain no integer");
      return Unsatisfiable(where, "no value lies within its minimum/maximum");
    }
    return AddRule(absl::StrCat(where.empty() ? "root" : where, integer ? "-int" : "-num"), body);
  }

  absl::StatusOr<std::string> String(const Json& s, const std::string& where) {
    const int64_t min = s.value("minLength", 0);
    const int64_t max = s.contains("maxLength") ? s["maxLength"].get<int64_t>() : -1;
    if (min < 0 || (s.contains("maxLength") && max < 0)) return Unsatisfiable(where, "a negative length");
    if (max >= 0 && min > max) return Unsatisfiable(where, absl::StrCat("minLength ", min, " > maxLength ", max));
    if (min > 4096 || max > 4096) return Unsupported(where, "a string length above 4096");
    if (s.contains("pattern")) {
      if (s.contains("minLength") || s.contains("maxLength")) {
        return Unsupported(where, "pattern together with minLength/maxLength");
      }
      if (!s["pattern"].is_string()) return Unsupported(where, "a non-string pattern");
      ASSIGN_OR_RETURN(std::string body, PatternGbnf(s["pattern"].get<std::string>()));
      return AddRule(absl::StrCat(where, "-pattern"), absl::StrCat("\"\\\"\" ", body, " \"\\\"\""));
    }
    if (min == 0 && max < 0) return std::string("json-string");
    const std::string count = max < 0 ? absl::StrCat("{", min, ",}") : absl::StrCat("{", min, ",", max, "}");
    return AddRule(absl::StrCat(where, "-string"), absl::StrCat("\"\\\"\" json-char", count, " \"\\\"\""));
  }

  absl::StatusOr<std::string> Array(const Json& s, const std::string& where) {
    const int64_t min = s.value("minItems", 0);
    const int64_t max = s.contains("maxItems") ? s["maxItems"].get<int64_t>() : -1;
    if (max >= 0 && min > max) return Unsatisfiable(where, absl::StrCat("minItems ", min, " > maxItems ", max));
    if (min > 1000 || max > 1000) return Unsupported(where, "minItems/maxItems above 1000");
    std::string item = "json-value";
    if (s.contains("items")) {
      if (s["items"].is_array()) return Unsupported(absl::StrCat(where, "/items"), "an array of item schemas");
      ASSIGN_OR_RETURN(item, Visit(s["items"], absl::StrCat(where, "/items"), "item"));
    }
    if (max == 0) return std::string("\"[\" ws \"]\"");
    const std::string more = absl::StrCat("(\",\" ws ", item, ")");
    const std::string rest =
        max < 0 ? absl::StrCat(more, "{", std::max<int64_t>(min - 1, 0), ",}")
                : absl::StrCat(more, "{", std::max<int64_t>(min - 1, 0), ",", max - 1, "}");
    std::string list = absl::StrCat(item, " ", rest);
    if (min == 0) list = absl::StrCat("(", list, ")?");
    return AddRule(absl::StrCat(where, "-array"), absl::StrCat("\"[\" ws ", list, " \"]\""));
  }

  absl::StatusOr<std::string> Object(const Json& s, const std::string& where) {
    const Json props = s.value("properties", Json::object());
    if (!props.is_object()) return Unsupported(absl::StrCat(where, "/properties"), "a non-object properties");
    std::set<std::string> required;
    if (s.contains("required")) {
      for (const Json& r : s["required"]) required.insert(r.get<std::string>());
    }
    const Json extra = s.value("additionalProperties", Json(true));
    if (props.empty() && required.empty()) {
      if (extra.is_boolean() && !extra.get<bool>()) return std::string("\"{\" ws \"}\"");
      if (extra.is_boolean()) return std::string("json-object");
      ASSIGN_OR_RETURN(std::string value, Visit(extra, absl::StrCat(where, "/additionalProperties"), "value"));
      const std::string kv = absl::StrCat("json-string \":\" ws ", value);
      return AddRule(absl::StrCat(where, "-map"), absl::StrCat("\"{\" ws (", kv, " (\",\" ws ", kv, ")*)? \"}\""));
    }
    // Members in declared order; then required names with no declared schema.
    struct Member {
      std::string kv;
      bool required;
    };
    std::vector<Member> members;
    for (const auto& [name, sub] : props.items()) {
      const std::string path = absl::StrCat(where, "/properties/", name);
      if (sub.is_boolean() && !sub.get<bool>()) {
        if (required.count(name)) return Unsatisfiable(path, "a required property whose schema is false");
        continue;
      }
      ASSIGN_OR_RETURN(std::string value, Visit(sub, path, name));
      members.push_back({absl::StrCat(GbnfLiteral(Json(name).dump()), " \":\" ws ", value), required.count(name) > 0});
    }
    for (const std::string& name : required) {
      if (props.contains(name)) continue;
      if (extra.is_boolean() && !extra.get<bool>()) {
        return Unsatisfiable(where, absl::StrCat("required property '", name,
                                                 "' is not in properties and additionalProperties is false"));
      }
      std::string value = "json-value";
      if (extra.is_object()) {
        ASSIGN_OR_RETURN(value, Visit(extra, absl::StrCat(where, "/additionalProperties"), name));
      }
      members.push_back({absl::StrCat(GbnfLiteral(Json(name).dump()), " \":\" ws ", value), true});
    }
    // after[i]: members i.. once something was written (each prefixed by a comma);
    // first[i]: members i.. with nothing written yet.
    std::string after = "", first = "";
    for (size_t k = members.size(); k-- > 0;) {
      const Member& m = members[k];
      const std::string tail_after = after.empty() ? "" : absl::StrCat(" ", after);
      const std::string new_after =
          m.required ? absl::StrCat("\",\" ws ", m.kv, tail_after) : absl::StrCat("(\",\" ws ", m.kv, ")?", tail_after);
      std::string new_first;
      if (m.required) {
        new_first = absl::StrCat(m.kv, tail_after);
      } else {
        new_first = absl::StrCat("(", m.kv, tail_after, (first.empty() ? " | \"\"" : absl::StrCat(" | ", first)), ")");
      }
      after = AddRule(absl::StrCat(where, "-after"), new_after);
      first = AddRule(absl::StrCat(where, "-members"), new_first);
    }
    return AddRule(absl::StrCat(where, "-object"), absl::StrCat("\"{\" ws ", first, " \"}\""));
  }

  absl::StatusOr<std::string> Ref(const std::string& ref, const std::string& where) {
    std::string name;
    const Json* defs = nullptr;
    for (const char* prefix : {"#/$defs/", "#/definitions/"}) {
      if (ref.rfind(prefix, 0) == 0) {
        name = ref.substr(std::string(prefix).size());
        const std::string key = std::string(prefix).substr(2, std::string(prefix).size() - 3);
        if (root_.contains(key)) defs = &root_[key];
      }
    }
    if (name.empty()) return Unsupported(where, absl::StrCat("$ref '", ref, "' (only #/$defs/NAME and #/definitions/NAME)"));
    if (!defs || !defs->contains(name)) return absl::InvalidArgumentError(absl::StrCat("JSON Schema at '", where, "': $ref '", ref, "' names no definition"));
    auto it = refs_.find(ref);
    if (it != refs_.end()) return it->second;
    // Named before it is converted, so a recursive definition refers to itself.
    const std::string rule = AddRule(absl::StrCat("def-", name), "\"\"");
    refs_[ref] = rule;
    ASSIGN_OR_RETURN(std::string body, Visit((*defs)[name], absl::StrCat("/$defs/", name), name));
    rules_[rule] = body;
    return rule;
  }

  absl::StatusOr<std::string> Visit(const Json& s, const std::string& where, const std::string& hint) {
    if (depth_ >= kMaxDepth) return Unsupported(where, absl::StrCat("nesting deeper than ", kMaxDepth));
    ++depth_;
    auto out = VisitOne(s, where, hint);
    --depth_;
    return out;
  }

  absl::StatusOr<std::string> VisitOne(const Json& s, const std::string& where, const std::string& hint) {
    if (s.is_boolean()) {
      if (!s.get<bool>()) return Unsatisfiable(where, "the schema false");
      return std::string("json-value");
    }
    if (!s.is_object()) return absl::InvalidArgumentError(absl::StrCat("JSON Schema at '", where, "' is not an object"));
    std::vector<std::string> unknown;
    for (const auto& [key, v] : s.items()) {
      if (!KnownKeywords().count(key)) unknown.push_back(key);
    }
    if (!unknown.empty()) {
      return Unsupported(where, absl::StrCat("keyword", unknown.size() > 1 ? "s " : " ", "'",
                                             absl::StrJoin(unknown, "', '"), "'"));
    }
    if (s.contains("$ref")) {
      if (!s["$ref"].is_string()) return Unsupported(where, "a non-string $ref");
      return Ref(s["$ref"].get<std::string>(), where);
    }
    if (s.contains("const")) return GbnfLiteral(s["const"].dump());
    if (s.contains("enum")) {
      if (!s["enum"].is_array() || s["enum"].empty()) return Unsatisfiable(where, "an empty enum");
      std::vector<std::string> alts;
      for (const Json& v : s["enum"]) alts.push_back(GbnfLiteral(v.dump()));
      return AddRule(absl::StrCat(where.empty() ? "root" : where, "-enum"), absl::StrJoin(alts, " | "));
    }
    if (s.contains("anyOf")) {
      if (!s["anyOf"].is_array() || s["anyOf"].empty()) return Unsatisfiable(where, "an empty anyOf");
      std::vector<std::string> alts;
      for (size_t i = 0; i < s["anyOf"].size(); ++i) {
        auto alt = Visit(s["anyOf"][i], absl::StrCat(where, "/anyOf/", i), hint);
        if (alt.ok()) {
          alts.push_back(*alt);
        } else if (alt.status().message().find("unsatisfiable") == std::string::npos) {
          return alt.status();
        }
      }
      if (alts.empty()) return Unsatisfiable(where, "no branch of anyOf can be satisfied");
      return AddRule(absl::StrCat(where, "-anyof"), absl::StrJoin(alts, " | "));
    }
    if (!s.contains("type")) {
      if (s.contains("properties") || s.contains("required")) return Object(s, where);
      if (s.contains("items")) return Array(s, where);
      return std::string("json-value");
    }
    std::vector<std::string> types;
    if (s["type"].is_array()) {
      for (const Json& t : s["type"]) types.push_back(t.get<std::string>());
      if (types.empty()) return Unsatisfiable(where, "an empty type list");
    } else {
      types.push_back(s["type"].get<std::string>());
    }
    std::vector<std::string> alts;
    for (const std::string& t : types) {
      std::string alt;
      if (t == "string") {
        ASSIGN_OR_RETURN(alt, String(s, where));
      } else if (t == "integer" || t == "number") {
        ASSIGN_OR_RETURN(alt, Numeric(s, t == "integer", where));
      } else if (t == "boolean") {
        alt = "(\"true\" | \"false\")";
      } else if (t == "null") {
        alt = "\"null\"";
      } else if (t == "object") {
        ASSIGN_OR_RETURN(alt, Object(s, where));
      } else if (t == "array") {
        ASSIGN_OR_RETURN(alt, Array(s, where));
      } else {
        return absl::InvalidArgumentError(absl::StrCat("JSON Schema at '", where, "': unknown type '", t, "'"));
      }
      alts.push_back(alt);
    }
    if (alts.size() == 1) return alts[0];
    return AddRule(absl::StrCat(hint, "-types"), absl::StrJoin(alts, " | "));
  }

  static constexpr int kMaxDepth = 64;
  const Json& root_;
  int depth_ = 0;
  std::map<std::string, std::string> rules_;
  std::map<std::string, std::string> refs_;
};

}  // namespace

absl::StatusOr<std::string> JsonSchemaToGbnf(std::string_view schema_json) {
  Json schema = Json::parse(schema_json, nullptr, /*allow_exceptions=*/false);
  if (schema.is_discarded()) return absl::InvalidArgumentError("json_schema is not valid JSON");
  try {
    return Converter(schema).Run();
  } catch (const Json::exception& e) {
    // A keyword of the wrong JSON type (e.g. "minItems": "3").
    return absl::InvalidArgumentError(absl::StrCat("JSON Schema has a keyword of the wrong type: ", e.what()));
  }
}

std::string JsonObjectGbnf() { return absl::StrCat("root ::= json-object\n", kBaseRules); }

}  // namespace ingot::grammar
