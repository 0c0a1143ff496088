// Python str semantics over UTF-8 for the chat-template interpreter: templates index,
// strip, split and case-map message text, and Jinja prints values the way Python's
// str() and repr() do, so these helpers reproduce Python rather than C locale rules.
//
// Strings are UTF-8; a byte that does not start a valid sequence counts as one code
// point of its own, so malformed input is carried through rather than rejected.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ingot::jinja {

// Decodes the code point at s[i] (i < s.size()) into *cp and returns the index after it.
size_t Utf8Next(std::string_view s, size_t i, char32_t* cp);
void AppendUtf8(char32_t cp, std::string* out);
size_t CodePointCount(std::string_view s);
// The string cut into one view per code point (each view points into `s`).
std::vector<std::string_view> CodePoints(std::string_view s);

// str.isspace(): ASCII whitespace, the separators \x1c-\x1f, NEL, NBSP and the Unicode
// space separators.
bool IsPySpace(char32_t cp);

// str.strip / lstrip / rstrip. `chars` unset strips whitespace; set, strips any of its
// code points.
std::string_view PyStrip(std::string_view s, bool left, bool right,
                         const std::optional<std::string>& chars = std::nullopt);

// Case mapping. Covers ASCII, Latin-1, Latin Extended-A, Greek, Cyrillic and fullwidth
// Latin; other scripts pass through unchanged where Python would map them (templates
// case-map role names and markers, rarely message text).
std::string PyUpper(std::string_view s);
std::string PyLower(std::string_view s);
std::string PyTitle(std::string_view s);       // str.title()
std::string PyCapitalize(std::string_view s);  // str.capitalize()
std::string JinjaTitle(std::string_view s);    // Jinja's |title filter (word-split rule)
bool PyIsLower(std::string_view s);            // str.islower()
bool PyIsUpper(std::string_view s);            // str.isupper()

// str.split(sep, maxsplit); no `sep` splits on whitespace runs and drops empty fields.
std::vector<std::string> PySplit(std::string_view s, const std::optional<std::string>& sep,
                                 int64_t maxsplit);
// str.replace(old, new, count); count < 0 replaces every occurrence.
std::string PyReplace(std::string_view s, std::string_view from, std::string_view to,
                      int64_t count);
// str.find / str.count, counted in code points.
int64_t PyFind(std::string_view s, std::string_view sub);
int64_t PyCount(std::string_view s, std::string_view sub);

// repr(float): the shortest string that round-trips, fixed notation for exponents in
// [-4, 16), scientific otherwise ("1e+16", "1e-05"), "inf" / "nan".
std::string PyFloatRepr(double d);
// repr(str): single quotes unless the text has ' and no ", non-printables escaped.
std::string PyStrRepr(std::string_view s);
// A JSON string literal as json.dumps writes it; ensure_ascii escapes every non-ASCII
// code point as \uXXXX (a surrogate pair above U+FFFF).
std::string JsonQuote(std::string_view s, bool ensure_ascii = false);

}  // namespace ingot::jinja
