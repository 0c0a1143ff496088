#include "engine/grammar/json_schema_terms.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/common/status.h"
#include "engine/grammar/gbnf.h"

namespace ingot::grammar {

std::string GbnfLiteral(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20 || c == 0x7F) {
      out += absl::StrFormat("\\x%02X", c);
    } else {
      out.push_back(static_cast<char>(c));  // UTF-8 passes through
    }
  }
  return out + "\"";
}

namespace {

constexpr int kMaxDigits = 16;
constexpr uint64_t kMaxMagnitude = 9999999999999999ULL;  // 16 digits

std::string AnyDigits(size_t n) { return n == 0 ? "" : absl::StrCat("[0-9]{", n, "}"); }

std::string Paren(const std::vector<std::string>& alts) {
  if (alts.size() == 1) return alts[0];
  return absl::StrCat("(", absl::StrJoin(alts, " | "), ")");
}

// Digit strings of one length between lo and hi (lo <= hi, leading zeros allowed).
std::string SameLength(const std::string& lo, const std::string& hi) {
  const size_t n = lo.size();
  if (n == 0) return "";
  if (lo == hi) return absl::StrCat("\"", lo, "\"");
  const std::string rest_lo = lo.substr(1), rest_hi = hi.substr(1);
  if (lo[0] == hi[0]) return absl::StrCat("\"", std::string(1, lo[0]), "\" ", SameLength(rest_lo, rest_hi));
  auto join = [](std::string a, const std::string& b) { return b.empty() ? a : absl::StrCat(a, " ", b); };
  if (rest_lo == std::string(n - 1, '0') && rest_hi == std::string(n - 1, '9')) {
    return join(absl::StrCat("[", std::string(1, lo[0]), "-", std::string(1, hi[0]), "]"), AnyDigits(n - 1));
  }
  std::vector<std::string> alts;
  alts.push_back(join(absl::StrCat("\"", std::string(1, lo[0]), "\""), SameLength(rest_lo, std::string(n - 1, '9'))));
  if (lo[0] + 1 <= hi[0] - 1) {
    alts.push_back(join(absl::StrCat("[", std::string(1, static_cast<char>(lo[0] + 1)), "-",
                                     std::string(1, static_cast<char>(hi[0] - 1)), "]"),
                        AnyDigits(n - 1)));
  }
  alts.push_back(join(absl::StrCat("\"", std::string(1, hi[0]), "\""), SameLength(std::string(n - 1, '0'), rest_hi)));
  return Paren(alts);
}

size_t Digits(uint64_t v) { return std::to_string(v).size(); }
uint64_t Pow10(size_t n) {
  uint64_t p = 1;
  while (n-- > 0) p *= 10;
  return p;
}

// Alternatives for the integers in [a, b] without leading zeros (a <= b).
void NonNegative(uint64_t a, uint64_t b, std::vector<std::string>* alts) {
  for (size_t len = Digits(a); len <= Digits(b); ++len) {
    const uint64_t lo = len == Digits(a) ? a : Pow10(len - 1);
    const uint64_t hi = len == Digits(b) ? b : Pow10(len) - 1;
    alts->push_back(SameLength(std::to_string(lo), std::to_string(hi)));
  }
}

// [a, 16 digits]
void NonNegativeFrom(uint64_t a, std::vector<std::string>* alts) {
  const size_t len = Digits(a);
  NonNegative(a, Pow10(len) - 1, alts);
  if (static_cast<int>(len) < kMaxDigits) alts->push_back(absl::StrCat("[1-9] [0-9]{", len, ",", kMaxDigits - 1, "}"));
}

void Magnitudes(uint64_t a, std::optional<uint64_t> b, std::vector<std::string>* alts) {
  if (b) {
    if (a <= *b) NonNegative(a, *b, alts);
  } else {
    NonNegativeFrom(a, alts);
  }
}

std::optional<int64_t> Clamp(std::optional<int64_t> v) {
  if (!v) return v;
  return std::clamp<int64_t>(*v, -static_cast<int64_t>(kMaxMagnitude), static_cast<int64_t>(kMaxMagnitude));
}

}  // namespace

std::string IntegerRangeGbnf(std::optional<int64_t> lo, std::optional<int64_t> hi) {
  lo = Clamp(lo);
  hi = Clamp(hi);
  if (lo && hi && *lo > *hi) return "";
  std::vector<std::string> alts;
  if (!hi || *hi >= 0) {
    Magnitudes(static_cast<uint64_t>(std::max<int64_t>(lo.value_or(0), 0)),
               hi ? std::optional<uint64_t>(static_cast<uint64_t>(*hi)) : std::nullopt, &alts);
  }
  if (!lo || *lo < 0) {
    std::vector<std::string> neg;
    const uint64_t mmin = hi && *hi < 0 ? static_cast<uint64_t>(-*hi) : 1;
    Magnitudes(mmin, lo ? std::optional<uint64_t>(static_cast<uint64_t>(-*lo)) : std::nullopt, &neg);
    if (!neg.empty()) alts.push_back(absl::StrCat("\"-\" ", Paren(neg)));
  }
  if (alts.empty()) return "";
  return Paren(alts);
}

std::string NumberRangeGbnf(std::optional<int64_t> lo, std::optional<int64_t> hi) {
  lo = Clamp(lo);
  hi = Clamp(hi);
  if (lo && hi && *lo > *hi) return "";
  const std::string frac = absl::StrCat("(\".\" [0-9]{1,", kMaxDigits, "})?");
  std::vector<std::string> alts;
  // v >= 0: an integer part i <= hi - 1 with any fraction, or exactly hi.
  if (!hi || *hi >= 0) {
    const uint64_t a = static_cast<uint64_t>(std::max<int64_t>(lo.value_or(0), 0));
    std::vector<std::string> with_frac;
    if (!hi) {
      NonNegativeFrom(a, &with_frac);
    } else {
      if (*hi >= 1) Magnitudes(a, static_cast<uint64_t>(*hi - 1), &with_frac);
      if (a <= static_cast<uint64_t>(*hi)) alts.push_back(absl::StrCat("\"", *hi, "\""));
    }
    if (!with_frac.empty()) alts.push_back(absl::StrCat(Paren(with_frac), " ", frac));
  }
  // v < 0, written -j.f: j.f <= -lo and j.f >= -hi.
  if (!lo || *lo < 0) {
    const uint64_t mmin = hi && *hi < 0 ? static_cast<uint64_t>(-*hi) : 0;
    std::vector<std::string> neg, with_frac;
    if (!lo) {
      NonNegativeFrom(mmin, &with_frac);
    } else {
      const uint64_t mmax = static_cast<uint64_t>(-*lo);
      if (mmax >= 1) Magnitudes(mmin, mmax - 1, &with_frac);
      if (mmax >= mmin) neg.push_back(absl::StrCat("\"", mmax, "\""));
    }
    if (!with_frac.empty()) neg.push_back(absl::StrCat(Paren(with_frac), " ", frac));
    if (!neg.empty()) alts.push_back(absl::StrCat("\"-\" ", Paren(neg)));
  }
  if (alts.empty()) return "";
  return Paren(alts);
}

}  // namespace ingot::grammar
