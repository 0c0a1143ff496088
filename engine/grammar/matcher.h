// Token masking for a grammar over a byte-level vocabulary.
//
// The grammar runs as a pushdown automaton over code points: a state is the set of
// stacks of program positions (gbnf.h) the text so far can be in, each stack's top
// a character set still to match (an empty stack: the text may end here), plus the
// bytes of a UTF-8 character begun but not finished (a token may end inside one; the
// next token goes on from there). States are interned and their byte transitions
// memoized, so walking the same bytes again costs an array read.
//
// A mask for a state walks the vocabulary's byte trie (TokenTrie, built once per
// model) depth first, skipping every subtree whose prefix the grammar refuses; a token
// is allowed when its last byte leaves a live state (a partial character counts when
// some stack can still take a character that starts with those bytes). End-of-
// generation tokens are allowed only where the text may end. Masks are cached per
// state: a step in a state seen before costs one pass over the logits.
//
// Napkin math for the default model's 49,152 tokens (~190k trie nodes): a cold mask
// touches each live node once (one transition read, ~2 ns) -> well under a
// millisecond inside a JSON string where nearly every token is live; a decode step of
// the 135M model is ~6 ms at one stream.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/types/span.h"
#include "engine/grammar/gbnf.h"

namespace ingot::grammar {

// The vocabulary's token bytes in a trie, nodes in depth-first order (a node's
// subtree is the index range [node, node.subtree_end)). Shared by every request on a
// model; immutable.
class TokenTrie {
 public:
  // `token_bytes[id]`: the bytes token `id` stands for ("" for control tokens, which
  // the grammar never allows); `end_ids`: end-of-generation tokens.
  TokenTrie(const std::vector<std::string>& token_bytes, std::vector<int32_t> end_ids);

  struct Node {
    uint8_t byte;
    uint8_t depth;         // 1 for a token's first byte
    uint32_t subtree_end;  // first node after this one's subtree
    uint32_t tokens_begin, tokens_end;  // ids ending at this node: token_ids_[begin, end)
  };
  const std::vector<Node>& nodes() const { return nodes_; }
  absl::Span<const int32_t> tokens(const Node& n) const {
    return absl::MakeConstSpan(token_ids_.data() + n.tokens_begin, n.tokens_end - n.tokens_begin);
  }
  const std::vector<int32_t>& end_ids() const { return end_ids_; }
  int32_t vocab_size() const { return vocab_size_; }
  int max_depth() const { return max_depth_; }
  // A token's bytes (as given to the constructor).
  const std::string& bytes(int32_t id) const { return bytes_[id]; }

 private:
  std::vector<Node> nodes_;
  std::vector<int32_t> token_ids_;
  std::vector<int32_t> end_ids_;
  std::vector<std::string> bytes_;
  int32_t vocab_size_ = 0;
  int max_depth_ = 0;
};

// One request's automaton (shared by its n completions). Not thread-safe: the
// model's scheduler thread alone uses it.
class Automaton {
 public:
  static constexpr int32_t kDead = -1;

  explicit Automaton(std::shared_ptr<const Grammar> grammar);
  Automaton(const Automaton&) = delete;
  Automaton& operator=(const Automaton&) = delete;

  int32_t Start() const { return start_; }
  // The state after `byte`, or kDead when the grammar refuses it.
  int32_t Next(int32_t state, uint8_t byte);
  // The state after `bytes` (kDead once refused).
  int32_t Walk(int32_t state, std::string_view bytes);
  // The text may end here (a stack is empty and no character is half written).
  bool CanEnd(int32_t state) const;

  // Bit t set when token t may come next in `state` (vocab_size bits; EOG tokens when
  // CanEnd). Valid until the next call.
  const std::vector<uint64_t>& Mask(int32_t state, const TokenTrie& trie);
  // Sets every logit of a token the mask refuses to -inf (tokens past the trie's
  // vocabulary too). False when no token is allowed (the vocabulary cannot continue
  // the grammar).
  bool Apply(int32_t state, const TokenTrie& trie, absl::Span<float> logits);

  size_t states() const { return states_.size(); }

 private:
  using Stack = std::vector<uint32_t>;  // program positions, top last
  struct State {
    std::vector<Stack> stacks;  // sorted, unique
    uint32_t partial = 0;       // bits of a UTF-8 character begun
    uint8_t partial_left = 0;   // continuation bytes still to come
    uint8_t partial_len = 0;    // the character's byte length
    std::unique_ptr<std::array<int32_t, 256>> next;  // memoized transitions (-2: not yet)
  };
  // Pushes `stack` with its top expanded until it is a character set (or empty).
  // `seen` holds every stack expanded in this step: a stack reached again (several
  // empty alternatives, nullable rules) is not expanded twice, which keeps a step
  // polynomial where naive expansion is exponential.
  void Expand(Stack& stack, absl::flat_hash_set<Stack>* seen, std::vector<Stack>* out) const;
  std::vector<Stack> AdvanceChar(const std::vector<Stack>& stacks, uint32_t cp) const;
  bool Alive(const State& s) const;
  int32_t Intern(State s);
  int32_t Compute(int32_t state, uint8_t byte);

  std::shared_ptr<const Grammar> grammar_;
  std::vector<State> states_;
  absl::flat_hash_map<std::string, int32_t> ids_;  // serialized state -> id
  int32_t start_ = kDead;
  absl::flat_hash_map<int32_t, std::vector<uint64_t>> masks_;
  static constexpr size_t kMaxTransitionTables = 16384;  // 16 MiB of memoized transitions
  size_t transition_tables_ = 0;
  std::vector<int32_t> walk_;  // Mask's state per trie depth
};

}  // namespace ingot::grammar
