#include "engine/tokenizer/pretokenize.h"

#include <array>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/tokenizer/tokenizer_internal.h"
#include "engine/tokenizer/unicode.h"
#include "re2/re2.h"

namespace ingot {
namespace {

// RE2's \s is ASCII only; HF tokenizers (Oniguruma) and llama.cpp use Unicode
// White_Space, which is \p{Z} plus U+0009..U+000D and U+0085.
#define INGOT_WS "\\t\\n\\x{0B}\\f\\r\\x{85}\\p{Z}"

// RE2 has no lookahead, so every pattern ends its whitespace handling with a
// capturing `([WS]+)` standing for `\s+(?!\S)|\s+`; Step::Split gives the last
// whitespace character of such a run back when a non-space follows and the run has
// more than one (exactly what the lookahead alternative would have matched).
#define INGOT_WS_RUN "([" INGOT_WS "]+)"

// GPT-2 (and HF ByteLevel with use_regex): contractions are lower-case only.
constexpr char kGpt2Regex[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" INGOT_WS "\\p{L}\\p{N}]+|"
    INGOT_WS_RUN;

// Llama 3 / Qwen2 write the contractions as (?i:'s|...); ASCII classes keep RE2's
// Unicode case folding (ſ for s) out of it, as llama.cpp spells them.
#define INGOT_CONTRACTIONS_ANY_CASE \
  "'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]"
#define INGOT_LLAMA3_STYLE(digits)                                                 \
  INGOT_CONTRACTIONS_ANY_CASE "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|" digits " ?[^" INGOT_WS \
  "\\p{L}\\p{N}]+[\\r\\n]*|[" INGOT_WS "]*[\\r\\n]+|" INGOT_WS_RUN

constexpr char kLlama3Regex[] = INGOT_LLAMA3_STYLE("\\p{N}{1,3}|");
constexpr char kQwen2Regex[] = INGOT_LLAMA3_STYLE("\\p{N}|");
// HF Digits(individual_digits=true): every numeric character is its own piece.
constexpr char kEachDigit[] = "\\p{N}";

struct PreTokenizerRow {
  const char* name;
  std::array<const char*, 2> steps;  // applied in order; nullptr ends the list
  bool ignore_merges;
};

// llama.cpp's starcoder/refact/smollm rows are the same split; so are HF's
// Sequence[Digits(individual_digits=True), ByteLevel(use_regex=True)].
constexpr PreTokenizerRow kPreTokenizers[] = {
    {"gpt2", {kGpt2Regex, nullptr}, false},
    {"gpt-2", {kGpt2Regex, nullptr}, false},  // llama.cpp's spelling
    {"default", {kGpt2Regex, nullptr}, false},
    {"", {kGpt2Regex, nullptr}, false},
    {"smollm", {kEachDigit, kGpt2Regex}, false},
    {"starcoder", {kEachDigit, kGpt2Regex}, false},
    {"refact", {kEachDigit, kGpt2Regex}, false},
    {"llama-bpe", {kLlama3Regex, nullptr}, true},
    {"llama3", {kLlama3Regex, nullptr}, true},
    {"qwen2", {kQwen2Regex, nullptr}, false},
};

#undef INGOT_LLAMA3_STYLE
#undef INGOT_CONTRACTIONS_ANY_CASE
#undef INGOT_WS_RUN
#undef INGOT_WS

// Unicode White_Space, the same set as INGOT_WS, for the character at `s[pos]`.
bool IsWhitespace(std::string_view s, size_t pos) {
  size_t p = pos;
  const uint32_t cp = unicode::DecodeUtf8(s, &p);
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
         cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}
}  // namespace

struct PreTokenizer::Step {
  std::unique_ptr<re2::RE2> re;
  bool has_ws_run = false;  // the pattern's group 1 is the `\s+(?!\S)|\s+` stand-in

  // Every match is a piece and so is every gap between matches (HF's "isolated"
  // split behaviour; llama.cpp keeps the gaps too).
  void Split(std::string_view text, std::vector<std::string_view>* out) const {
    const re2::StringPiece input(text.data(), text.size());
    re2::StringPiece m[2];
    size_t pos = 0;
    while (pos < text.size()) {
      // Without submatches RE2 answers from its DFA alone (3x faster here).
      if (!re->Match(input, pos, text.size(), re2::RE2::UNANCHORED, m, 1)) {
        out->push_back(text.substr(pos));
        return;
      }
      const size_t start = m[0].data() - text.data();
      size_t end = start + m[0].size();
      if (start > pos) out->push_back(text.substr(pos, start - pos));
      if (end == start) end = start + 1;  // no pattern matches empty; never loop
      size_t last = end - 1;  // start of the match's last character
      while (last > start && (static_cast<uint8_t>(text[last]) & 0xC0) == 0x80) --last;
      // Only a run of 2+ characters ending in whitespace with more text after it
      // can need the lookahead; ask RE2 which alternative matched just then. A
      // non-space follows (the run is greedy), so `\s+(?!\S)` stops one short.
      if (has_ws_run && end < text.size() && last > start && IsWhitespace(text, last) &&
          re->Match(input, start, text.size(), re2::RE2::ANCHOR_START, m, 2) &&
          m[1].data() != nullptr) {
        end = last;
      }
      out->push_back(text.substr(start, end - start));
      pos = end;
    }
  }
};

PreTokenizer::~PreTokenizer() = default;

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizer::Create(std::string_view name) {
  for (const PreTokenizerRow& row : kPreTokenizers) {
    if (name != row.name) continue;
    std::unique_ptr<PreTokenizer> pre(new PreTokenizer());
    pre->name_ = std::string(name);
    pre->ignore_merges_ = row.ignore_merges;
    for (const char* pattern : row.steps) {
      if (pattern == nullptr) break;
      Step step;
      re2::RE2::Options options;
      options.set_log_errors(false);
      step.re = std::make_unique<re2::RE2>(pattern, options);
      if (!step.re->ok()) {
        return absl::InternalError(absl::StrCat("pre-tokenizer '", tokenizer_internal::AbslView(name),
                                                "': bad regex: ", step.re->error()));
      }
      step.has_ws_run = step.re->NumberOfCapturingGroups() == 1;
      pre->steps_.push_back(std::move(step));
    }
    return pre;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown pre-tokenizer '", tokenizer_internal::AbslView(name), "' (known: ",
                   absl::StrJoin(KnownNames(), ", "), ")"));
}

void PreTokenizer::Split(std::string_view text,
                         std::vector<std::string_view>* pieces) const {
  const size_t first = pieces->size();
  pieces->push_back(text);
  std::vector<std::string_view> next;
  for (const Step& step : steps_) {
    next.clear();
    for (size_t i = first; i < pieces->size(); ++i) step.Split((*pieces)[i], &next);
    pieces->resize(first);
    pieces->insert(pieces->end(), next.begin(), next.end());
  }
}

std::vector<std::string> PreTokenizer::KnownNames() {
  std::vector<std::string> names;
  for (const PreTokenizerRow& row : kPreTokenizers) {
    if (row.name[0] != '\0') names.push_back(row.name);
  }
  return names;
}

}  // namespace ingot
