// UTF-8 scanning and the GPT-2 byte <-> unicode mapping that byte-level BPE
// vocabularies are written in.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ingot::unicode {

// How the bytes at `s[pos]` begin: a whole character, the valid start of one cut
// off by the end of `s`, or bytes that can never form one.
enum class Utf8Kind { kComplete, kIncomplete, kInvalid };
struct Utf8Step {
  Utf8Kind kind;
  size_t len;  // bytes: the character, the valid prefix, or the maximal invalid subpart (>= 1)
};
// Follows the Unicode "maximal subpart" rule: overlongs, surrogates and values past
// U+10FFFF are invalid, and each invalid subpart becomes one U+FFFD when replaced.
Utf8Step ScanUtf8(std::string_view s, size_t pos);

// Length of the character starting at `s[pos]` (1 for an invalid byte), clamped to
// the end of `s`.
size_t Utf8CharLen(std::string_view s, size_t pos);

// Appends code point `cp` as UTF-8.
void AppendUtf8(uint32_t cp, std::string* out);

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// `s` with every invalid subpart (including a truncated tail) replaced by U+FFFD.
std::string ToValidUtf8(std::string_view s);
// Like ToValidUtf8 but one U+FFFD per byte of each invalid subpart (llama.cpp's
// rule for text it tokenizes).
std::string ReplaceInvalidUtf8Bytes(std::string_view s);
bool IsValidUtf8(std::string_view s);

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other
// 68 bytes for U+0100.. in byte order, so every byte is one visible character
// (space -> "Ġ" U+0120, newline -> "Ċ" U+010A).
const std::string& ByteToUnicode(uint8_t byte);  // 1-2 UTF-8 bytes
// The byte a mapped character stands for, or -1 when `cp` is not one of the 256.
int UnicodeToByte(uint32_t cp);

// Decodes the (valid) character at `s[pos]`; U+FFFD for an invalid one. Advances
// `*pos` past it.
uint32_t DecodeUtf8(std::string_view s, size_t* pos);

}  // namespace ingot::unicode
