// Byte-level BPE (GGUF model "gpt2"): pre-tokenize, map each byte to its GPT-2
// stand-in character, then apply merges lowest rank first within each piece.
#include <queue>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/pretokenize.h"
#include "engine/tokenizer/tokenizer_internal.h"
#include "engine/tokenizer/unicode.h"

namespace ingot::tokenizer_internal {
namespace {

class BpeTokenizer final : public Tokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Create(VocabSpec spec);

  std::vector<int32_t> Encode(std::string_view text, bool add_special,
                              bool parse_special) const override;
  std::string TokenBytes(int32_t id, bool render_special) const override;

 private:
  struct Merge {
    int32_t rank;  // position in tokenizer.ggml.merges; lower merges first
    int32_t id;    // the token the pair becomes
  };
  static uint64_t PairKey(int32_t left, int32_t right) {
    return static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32 |
           static_cast<uint32_t>(right);
  }

  BpeTokenizer(VocabSpec spec, std::unique_ptr<PreTokenizer> pre)
      : Tokenizer(std::move(spec)), pre_(std::move(pre)), specials_(spec_) {}
  absl::Status Init();
  void EncodePiece(std::string_view piece, std::vector<int32_t>* out) const;

  std::unique_ptr<PreTokenizer> pre_;
  SpecialTokenMatcher specials_;
  absl::flat_hash_map<std::string, int32_t> token_ids_;  // byte-level text -> id
  absl::flat_hash_map<uint64_t, Merge> merges_;          // PairKey(left, right)
  std::array<int32_t, 256> byte_ids_;                    // -1: no token for the byte
  std::vector<std::string> token_bytes_;                 // id -> decoded bytes
};

absl::StatusOr<std::unique_ptr<Tokenizer>> BpeTokenizer::Create(VocabSpec spec) {
  auto pre = PreTokenizer::Create(spec.pre);
  if (!pre.ok()) return pre.status();
  std::unique_ptr<BpeTokenizer> tok(new BpeTokenizer(std::move(spec), *std::move(pre)));
  if (absl::Status s = tok->Init(); !s.ok()) return s;
  return std::unique_ptr<Tokenizer>(std::move(tok));
}

absl::Status BpeTokenizer::Init() {
  const int32_t n = vocab_size();
  token_ids_.reserve(n);
  token_bytes_.resize(n);
  for (int32_t id = 0; id < n; ++id) {
    const std::string& text = spec_.tokens[id];
    token_ids_[text] = id;  // a repeated text maps to its last id, as in llama.cpp
    const TokenType type = TypeOf(spec_, id);
    if (type == TokenType::kControl || type == TokenType::kUserDefined ||
        type == TokenType::kUnknown) {
      continue;  // TokenBytes gives their text as is
    }
    std::string& bytes = token_bytes_[id];
    for (size_t pos = 0; pos < text.size();) {
      const size_t start = pos;
      const int b = unicode::UnicodeToByte(unicode::DecodeUtf8(text, &pos));
      if (b >= 0) {
        bytes.push_back(static_cast<char>(b));
      } else {
        bytes.append(text, start, pos - start);  // not a stand-in: keep it
      }
    }
  }
  for (int b = 0; b < 256; ++b) {
    auto it = token_ids_.find(unicode::ByteToUnicode(static_cast<uint8_t>(b)));
    byte_ids_[b] = it == token_ids_.end() ? -1 : it->second;
  }
  if (spec_.merges.empty()) {
    return absl::InvalidArgumentError("byte-level BPE vocabulary has no merges");
  }
  merges_.reserve(spec_.merges.size());
  for (size_t rank = 0; rank < spec_.merges.size(); ++rank) {
    const std::string& merge = spec_.merges[rank];
    const size_t space = merge.find(' ', 1);
    if (space == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("merge ", rank, " '", merge, "' is not two tokens"));
    }
    const std::string_view left(merge.data(), space);
    const std::string_view right(merge.data() + space + 1, merge.size() - space - 1);
    const auto l = token_ids_.find(AbslView(left));
    const auto r = token_ids_.find(AbslView(right));
    const auto m = token_ids_.find(absl::StrCat(AbslView(left), AbslView(right)));
    if (l == token_ids_.end() || r == token_ids_.end() || m == token_ids_.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "merge ", rank, " '", merge, "' names a token not in the vocabulary"));
    }
    merges_.try_emplace(PairKey(l->second, r->second),
                        Merge{static_cast<int32_t>(rank), m->second});
  }
  return absl::OkStatus();
}

std::vector<int32_t> BpeTokenizer::Encode(std::string_view text, bool add_special,
                                          bool parse_special) const {
  std::vector<std::string_view> pieces;
  std::string valid;
  return EncodeWithSpecials(
      spec_, specials_, text, add_special, parse_special,
      [&](std::string_view run, bool /*after_special*/, std::vector<int32_t>* out) {
        // The pre-tokenizer's classes need characters: bytes that are not UTF-8
        // become U+FFFD each, as in llama.cpp (HF cannot be given such text).
        if (!unicode::IsValidUtf8(run)) {
          valid = unicode::ReplaceInvalidUtf8Bytes(run);
          run = valid;
        }
        pieces.clear();
        pre_->Split(run, &pieces);
        for (std::string_view piece : pieces) EncodePiece(piece, out);
      });
}

void BpeTokenizer::EncodePiece(std::string_view piece, std::vector<int32_t>* out) const {
  if (piece.empty()) return;
  if (pre_->ignore_merges() || piece.size() == 1) {
    std::string mapped;
    for (char c : piece) mapped += unicode::ByteToUnicode(static_cast<uint8_t>(c));
    if (auto it = token_ids_.find(mapped); it != token_ids_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  // One symbol per byte, linked so merged symbols drop out in O(1). A symbol's
  // index is its first byte, so index order is text order.
  struct Symbol {
    int32_t id;    // -1: the byte has no token (cannot merge)
    int32_t prev;  // -1 at the start
    int32_t next;  // n at the end
  };
  const int32_t n = static_cast<int32_t>(piece.size());
  std::vector<Symbol> syms(n);
  for (int32_t i = 0; i < n; ++i) {
    syms[i] = {byte_ids_[static_cast<uint8_t>(piece[i])], i - 1, i + 1};
  }
  struct Candidate {
    int32_t rank;
    int32_t left;      // symbol index
    int32_t left_id;   // ids when queued; a changed id means a stale entry
    int32_t right_id;
    int32_t merged_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : left > o.left;  // leftmost on ties (HF)
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto consider = [&](int32_t left) {
    if (left < 0 || syms[left].next >= n) return;
    const int32_t right = syms[left].next;
    if (syms[left].id < 0 || syms[right].id < 0) return;
    auto it = merges_.find(PairKey(syms[left].id, syms[right].id));
    if (it != merges_.end()) {
      queue.push({it->second.rank, left, syms[left].id, syms[right].id, it->second.id});
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& left = syms[c.left];
    // Merged-away symbols keep id -2, so they never match a queued id.
    if (left.id != c.left_id || left.next >= n || syms[left.next].id != c.right_id) {
      continue;
    }
    const int32_t right = left.next;
    left.id = c.merged_id;
    left.next = syms[right].next;
    if (left.next < n) syms[left.next].prev = c.left;
    syms[right].id = -2;
    consider(left.prev);
    consider(c.left);
  }
  // A byte without a token is dropped, as llama.cpp and HF BPE without an unk token
  // do: vocabularies such as SmolLM2's leave out bytes that never occur in UTF-8
  // (C0, C1, F5..FF), and their unk id is often an end-of-text token.
  for (int32_t i = 0; i < n; i = syms[i].next) {
    if (syms[i].id >= 0) out->push_back(syms[i].id);
  }
}

std::string BpeTokenizer::TokenBytes(int32_t id, bool render_special) const {
  if (id < 0 || id >= vocab_size()) return "";
  switch (TypeOf(spec_, id)) {
    case TokenType::kControl:
    case TokenType::kUnknown:
      return render_special ? spec_.tokens[id] : "";
    case TokenType::kUserDefined:
      return spec_.tokens[id];
    default:
      return token_bytes_[id];
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> CreateBpeTokenizer(VocabSpec spec) {
  return BpeTokenizer::Create(std::move(spec));
}

}  // namespace ingot::tokenizer_internal
