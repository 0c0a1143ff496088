// SentencePiece-style BPE (GGUF model "llama"): spaces become "▁", the text starts
// as one symbol per character, and the adjacent pair whose concatenation is the
// highest-scoring token merges first (leftmost on ties), as SentencePiece's BPE and
// llama.cpp do. Characters with no token fall back to <0xNN> byte tokens.
#include <cstdio>
#include <queue>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "engine/tokenizer/tokenizer_internal.h"
#include "engine/tokenizer/unicode.h"

namespace ingot::tokenizer_internal {
namespace {

constexpr char kSpace[] = "\xE2\x96\x81";  // U+2581 "▁"

class SpmTokenizer final : public Tokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Create(VocabSpec spec);

  std::vector<int32_t> Encode(std::string_view text, bool add_special,
                              bool parse_special) const override;
  std::string TokenBytes(int32_t id, bool render_special) const override;

 private:
  explicit SpmTokenizer(VocabSpec spec) : Tokenizer(std::move(spec)), specials_(spec_) {}
  void Init();
  void EncodeRun(std::string_view text, bool after_special,
                 std::vector<int32_t>* out) const;
  float Score(int32_t id) const { return spec_.scores.empty() ? 0.0f : spec_.scores[id]; }

  SpecialTokenMatcher specials_;
  absl::flat_hash_map<std::string, int32_t> token_ids_;
  std::array<int32_t, 256> byte_ids_;     // <0xNN> tokens, -1 when absent
  std::vector<std::string> token_bytes_;  // id -> decoded bytes
};

absl::StatusOr<std::unique_ptr<Tokenizer>> SpmTokenizer::Create(VocabSpec spec) {
  std::unique_ptr<SpmTokenizer> tok(new SpmTokenizer(std::move(spec)));
  tok->Init();
  return std::unique_ptr<Tokenizer>(std::move(tok));
}

// Parses "<0xNN>"; -1 for any other text.
int ParseByteToken(std::string_view text) {
  unsigned value = 0;
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return -1;
  for (char c : text.substr(3, 2)) {
    value <<= 4;
    if (c >= '0' && c <= '9') value |= c - '0';
    else if (c >= 'A' && c <= 'F') value |= c - 'A' + 10;
    else if (c >= 'a' && c <= 'f') value |= c - 'a' + 10;
    else return -1;
  }
  return static_cast<int>(value);
}

void SpmTokenizer::Init() {
  const int32_t n = vocab_size();
  token_ids_.reserve(n);
  token_bytes_.resize(n);
  byte_ids_.fill(-1);
  for (int32_t id = 0; id < n; ++id) {
    const std::string& text = spec_.tokens[id];
    token_ids_[text] = id;
    const TokenType type = TypeOf(spec_, id);
    const int byte = ParseByteToken(text);
    if (byte >= 0 && (type == TokenType::kByte || spec_.token_types.empty())) {
      if (byte_ids_[byte] < 0) byte_ids_[byte] = id;
      token_bytes_[id] = std::string(1, static_cast<char>(byte));
    } else if (type != TokenType::kControl && type != TokenType::kUnknown) {
      token_bytes_[id] = absl::StrReplaceAll(text, {{kSpace, " "}});
    }
  }
}

std::vector<int32_t> SpmTokenizer::Encode(std::string_view text, bool add_special,
                                          bool parse_special) const {
  return EncodeWithSpecials(
      spec_, specials_, text, add_special, parse_special,
      [this](std::string_view run, bool after_special, std::vector<int32_t>* out) {
        EncodeRun(run, after_special, out);
      });
}

void SpmTokenizer::EncodeRun(std::string_view run, bool after_special,
                             std::vector<int32_t>* out) const {
  // Like llama.cpp (and HF's legacy Llama normalizer, which runs per text run
  // between special tokens), every run that starts the text or follows a special
  // token gets the prefix space.
  std::string text;
  if (spec_.add_space_prefix && after_special) text = kSpace;
  text += absl::StrReplaceAll(AbslView(run), {{" ", kSpace}});

  struct Symbol {
    int32_t start;  // byte offset into `text`
    int32_t len;    // bytes; 0 once merged into its left neighbour
    int32_t prev;   // -1 at the start
    int32_t next;   // -1 at the end
  };
  std::vector<Symbol> syms;
  for (size_t pos = 0; pos < text.size();) {
    const auto len = static_cast<int32_t>(unicode::Utf8CharLen(text, pos));
    const auto i = static_cast<int32_t>(syms.size());
    syms.push_back({static_cast<int32_t>(pos), len, i - 1, i + 1});
    pos += len;
  }
  if (syms.empty()) return;
  syms.back().next = -1;

  struct Bigram {
    float score;
    int32_t left;  // symbol index
    int32_t len;   // bytes of left + right when queued; differs once stale
    bool operator<(const Bigram& o) const {  // max-heap: best score, then leftmost
      return score != o.score ? score < o.score : left > o.left;
    }
  };
  std::priority_queue<Bigram> queue;
  auto consider = [&](int32_t left) {
    if (left < 0 || syms[left].next < 0) return;
    const Symbol& l = syms[left];
    const Symbol& r = syms[l.next];
    const std::string_view pair(text.data() + l.start, l.len + r.len);
    if (auto it = token_ids_.find(AbslView(pair)); it != token_ids_.end()) {
      queue.push({Score(it->second), left, l.len + r.len});
    }
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(syms.size()); ++i) consider(i);
  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    Symbol& left = syms[b.left];
    if (left.len == 0 || left.next < 0) continue;
    Symbol& right = syms[left.next];
    if (left.len + right.len != b.len) continue;  // one side changed since queued
    left.len += right.len;
    right.len = 0;
    left.next = right.next;
    if (left.next >= 0) syms[left.next].prev = b.left;
    consider(left.prev);
    consider(b.left);
  }
  for (int32_t i = 0; i >= 0; i = syms[i].next) {
    const std::string_view piece(text.data() + syms[i].start, syms[i].len);
    if (auto it = token_ids_.find(AbslView(piece)); it != token_ids_.end()) {
      out->push_back(it->second);
      continue;
    }
    // Only single characters can lack a token (merges make tokens): byte fallback.
    for (char c : piece) {
      const int32_t id = byte_ids_[static_cast<uint8_t>(c)];
      if (id >= 0) {
        out->push_back(id);
      } else if (spec_.unk_id >= 0) {
        out->push_back(spec_.unk_id);
        break;  // one <unk> per character
      }
    }
  }
}

std::string SpmTokenizer::TokenBytes(int32_t id, bool render_special) const {
  if (id < 0 || id >= vocab_size()) return "";
  const TokenType type = TypeOf(spec_, id);
  if (type == TokenType::kControl || type == TokenType::kUnknown) {
    return render_special ? spec_.tokens[id] : "";
  }
  return token_bytes_[id];
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> CreateSpmTokenizer(VocabSpec spec) {
  return SpmTokenizer::Create(std::move(spec));
}

}  // namespace ingot::tokenizer_internal
