// Pieces of the JSON Schema converter (json_schema.cc): GBNF expressions for numbers
// in bounds, strings (lengths, patterns) and JSON literals.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace ingot::grammar {

// A GBNF literal ("...") for arbitrary UTF-8 bytes.
std::string GbnfLiteral(const std::string& text);

// Integers n with lo <= n <= hi (either may be unset), at most 16 digits. Empty when
// no integer fits.
std::string IntegerRangeGbnf(std::optional<int64_t> lo, std::optional<int64_t> hi);

// Decimal numbers v with lo <= v <= hi (integer bounds; either may be unset), no
// exponent. Empty when nothing fits.
std::string NumberRangeGbnf(std::optional<int64_t> lo, std::optional<int64_t> hi);

// The body of a JSON string (between the quotes) matching a regular expression
// (json_schema.h lists the subset). INVALID_ARGUMENT names what is not supported.
absl::StatusOr<std::string> PatternGbnf(const std::string& pattern);

}  // namespace ingot::grammar
