#include "engine/tokenizer/unicode.h"

#include <array>

namespace ingot::unicode {

Utf8Step ScanUtf8(std::string_view s, size_t pos) {
  const auto b0 = static_cast<uint8_t>(s[pos]);
  if (b0 < 0x80) return {Utf8Kind::kComplete, 1};
  // Table 3-7 of the Unicode standard: the range of the second byte depends on the
  // lead; later bytes are always 80..BF.
  size_t len;
  uint8_t lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;  // <= U+10FFFF
  } else {
    return {Utf8Kind::kInvalid, 1};
  }
  for (size_t i = 1; i < len; ++i) {
    if (pos + i >= s.size()) return {Utf8Kind::kIncomplete, i};
    const auto b = static_cast<uint8_t>(s[pos + i]);
    if (b < lo || b > hi) return {Utf8Kind::kInvalid, i};
    lo = 0x80;
    hi = 0xBF;
  }
  return {Utf8Kind::kComplete, len};
}

size_t Utf8CharLen(std::string_view s, size_t pos) {
  const Utf8Step step = ScanUtf8(s, pos);
  return step.kind == Utf8Kind::kComplete ? step.len : 1;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string ToValidUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t pos = 0; pos < s.size();) {
    const Utf8Step step = ScanUtf8(s, pos);
    if (step.kind == Utf8Kind::kComplete) {
      out.append(s.substr(pos, step.len));
    } else {
      out.append(kReplacementChar);
    }
    pos += step.len;
  }
  return out;
}

std::string ReplaceInvalidUtf8Bytes(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t pos = 0; pos < s.size();) {
    const Utf8Step step = ScanUtf8(s, pos);
    if (step.kind == Utf8Kind::kComplete) {
      out.append(s.substr(pos, step.len));
    } else {
      for (size_t i = 0; i < step.len; ++i) out.append(kReplacementChar);
    }
    pos += step.len;
  }
  return out;
}

bool IsValidUtf8(std::string_view s) {
  for (size_t pos = 0; pos < s.size();) {
    if (static_cast<uint8_t>(s[pos]) < 0x80) {  // ASCII fast path
      ++pos;
      continue;
    }
    const Utf8Step step = ScanUtf8(s, pos);
    if (step.kind != Utf8Kind::kComplete) return false;
    pos += step.len;
  }
  return true;
}

uint32_t DecodeUtf8(std::string_view s, size_t* pos) {
  const Utf8Step step = ScanUtf8(s, *pos);
  const auto* p = reinterpret_cast<const uint8_t*>(s.data()) + *pos;
  if (step.kind != Utf8Kind::kComplete) {
    *pos += step.len;
    return 0xFFFD;
  }
  *pos += step.len;
  switch (step.len) {
    case 1: return p[0];
    case 2: return (uint32_t{p[0]} & 0x1F) << 6 | (p[1] & 0x3F);
    case 3: return (uint32_t{p[0]} & 0x0F) << 12 | (p[1] & 0x3F) << 6 | (p[2] & 0x3F);
    default:
      return (uint32_t{p[0]} & 0x07) << 18 | (p[1] & 0x3F) << 12 | (p[2] & 0x3F) << 6 |
             (p[3] & 0x3F);
  }
}

namespace {

struct ByteMap {
  std::array<std::string, 256> to_unicode;  // byte -> UTF-8 of its stand-in
  std::array<int16_t, 512> to_byte;         // stand-in code point -> byte, -1 if none

  ByteMap() {
    to_byte.fill(-1);
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) ||
                             (b >= 0xAE && b <= 0xFF);
      const uint32_t cp = printable ? b : next++;
      AppendUtf8(cp, &to_unicode[b]);
      to_byte[cp] = static_cast<int16_t>(b);
    }
  }
};

const ByteMap& GetByteMap() {
  static const ByteMap* map = new ByteMap();
  return *map;
}

}  // namespace

const std::string& ByteToUnicode(uint8_t byte) { return GetByteMap().to_unicode[byte]; }

int UnicodeToByte(uint32_t cp) {
  return cp < 512 ? GetByteMap().to_byte[cp] : -1;
}

}  // namespace ingot::unicode
