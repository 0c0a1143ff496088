#include "engine/grammar/matcher.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace ingot::grammar {

TokenTrie::TokenTrie(const std::vector<std::string>& token_bytes, std::vector<int32_t> end_ids)
    : end_ids_(std::move(end_ids)), bytes_(token_bytes), vocab_size_(static_cast<int32_t>(token_bytes.size())) {
  std::vector<int32_t> order;
  std::vector<bool> is_end(token_bytes.size(), false);
  for (int32_t id : end_ids_) {
    if (id >= 0 && id < vocab_size_) is_end[id] = true;  // allowed by CanEnd, never as text
  }
  for (int32_t id = 0; id < vocab_size_; ++id) {
    if (is_end[id]) continue;
    // Tokens longer than 255 bytes are left out (the depth is a byte); none is that long
    // in a real vocabulary.
    if (!token_bytes[id].empty() && token_bytes[id].size() < 256) order.push_back(id);
  }
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return token_bytes[a] < token_bytes[b] || (token_bytes[a] == token_bytes[b] && a < b);
  });
  // Sorted order visits the trie depth first: each token shares a prefix with the
  // path so far, pops the rest of the path and pushes its own bytes.
  std::vector<uint32_t> path;  // node index per depth - 1
  std::string prev;
  for (int32_t id : order) {
    const std::string& s = token_bytes[id];
    size_t common = 0;
    while (common < s.size() && common < prev.size() && common < path.size() && s[common] == prev[common]) ++common;
    while (path.size() > common) {
      nodes_[path.back()].subtree_end = static_cast<uint32_t>(nodes_.size());
      path.pop_back();
    }
    for (size_t i = common; i < s.size(); ++i) {
      path.push_back(static_cast<uint32_t>(nodes_.size()));
      nodes_.push_back({static_cast<uint8_t>(s[i]), static_cast<uint8_t>(i + 1), 0, 0, 0});
    }
    Node& last = nodes_[path.back()];
    if (last.tokens_end == last.tokens_begin) {
      last.tokens_begin = last.tokens_end = static_cast<uint32_t>(token_ids_.size());
    }
    token_ids_.push_back(id);
    ++last.tokens_end;
    max_depth_ = std::max<int>(max_depth_, static_cast<int>(s.size()));
    prev = s;
  }
  while (!path.empty()) {
    nodes_[path.back()].subtree_end = static_cast<uint32_t>(nodes_.size());
    path.pop_back();
  }
}

Automaton::Automaton(std::shared_ptr<const Grammar> grammar) : grammar_(std::move(grammar)) {
  State s;
  absl::flat_hash_set<Stack> seen;
  for (uint32_t start : grammar_->alt_starts[grammar_->root]) {
    Stack st;
    if (grammar_->program[start].kind != Element::Kind::kEnd) st.push_back(start);
    Expand(st, &seen, &s.stacks);
  }
  std::sort(s.stacks.begin(), s.stacks.end());
  s.stacks.erase(std::unique(s.stacks.begin(), s.stacks.end()), s.stacks.end());
  start_ = Intern(std::move(s));
}

void Automaton::Expand(Stack& stack, absl::flat_hash_set<Stack>* seen, std::vector<Stack>* out) const {
  // Iterative: a chain of rules that each start with the next is as long as the
  // grammar has rules, too deep for recursion on the scheduler's stack.
  std::vector<Stack> work;
  work.push_back(std::move(stack));
  while (!work.empty()) {
    Stack st = std::move(work.back());
    work.pop_back();
    if (!seen->insert(st).second) continue;
    if (st.empty() || grammar_->program[st.back()].kind == Element::Kind::kChars) {
      out->push_back(std::move(st));
      continue;
    }
    // A rule reference: replace it by what follows it, then each alternative's start.
    const uint32_t pos = st.back();
    const int32_t rule = grammar_->program[pos].rule;
    st.pop_back();
    if (grammar_->program[pos + 1].kind != Element::Kind::kEnd) st.push_back(pos + 1);
    for (uint32_t start : grammar_->alt_starts[rule]) {
      Stack next = st;
      if (grammar_->program[start].kind != Element::Kind::kEnd) next.push_back(start);
      work.push_back(std::move(next));
    }
  }
}

std::vector<Automaton::Stack> Automaton::AdvanceChar(const std::vector<Stack>& stacks, uint32_t cp) const {
  std::vector<Stack> out;
  absl::flat_hash_set<Stack> seen;
  for (const Stack& st : stacks) {
    if (st.empty() || !grammar_->program[st.back()].Matches(cp)) continue;
    Stack next(st.begin(), st.end() - 1);
    const uint32_t after = st.back() + 1;
    if (grammar_->program[after].kind != Element::Kind::kEnd) next.push_back(after);
    Expand(next, &seen, &out);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

namespace {
// The code points a UTF-8 character can still become: `bits` read so far with `left`
// continuation bytes to come, in a `len`-byte encoding (overlong forms excluded).
std::pair<uint32_t, uint32_t> PartialRange(uint32_t bits, int left, int len) {
  uint32_t lo = bits << (6 * left);
  uint32_t hi = lo | ((1u << (6 * left)) - 1);
  static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
  lo = std::max(lo, kMin[len]);
  hi = std::min(hi, kMaxCodePoint);
  return {lo, hi};
}
bool IsSurrogate(uint32_t cp) { return cp >= 0xD800 && cp <= 0xDFFF; }
}  // namespace

bool Automaton::Alive(const State& s) const {
  if (s.stacks.empty()) return false;
  if (s.partial_left == 0) return true;
  auto [lo, hi] = PartialRange(s.partial, s.partial_left, s.partial_len);
  if (lo > hi) return false;
  for (const Stack& st : s.stacks) {
    if (st.empty()) continue;
    const Element& e = grammar_->program[st.back()];
    // Surrogates are not characters in UTF-8: split the range around them.
    if (hi < 0xD800 || lo > 0xDFFF) {
      if (e.MatchesAnyIn(lo, hi)) return true;
    } else {
      if (lo < 0xD800 && e.MatchesAnyIn(lo, 0xD7FF)) return true;
      if (hi > 0xDFFF && e.MatchesAnyIn(0xE000, hi)) return true;
    }
  }
  return false;
}

int32_t Automaton::Intern(State s) {
  std::string key;
  key.reserve(64);
  auto put = [&key](uint32_t v) { key.append(reinterpret_cast<const char*>(&v), sizeof(v)); };
  put(s.partial);
  put(static_cast<uint32_t>(s.partial_left) | (static_cast<uint32_t>(s.partial_len) << 8));
  for (const Stack& st : s.stacks) {
    put(static_cast<uint32_t>(st.size()));
    for (uint32_t p : st) put(p);
  }
  auto [it, inserted] = ids_.try_emplace(std::move(key), static_cast<int32_t>(states_.size()));
  if (inserted) states_.push_back(std::move(s));
  return it->second;
}

int32_t Automaton::Compute(int32_t state, uint8_t byte) {
  const State& cur = states_[state];
  State next;
  if (cur.partial_left > 0) {
    if ((byte & 0xC0) != 0x80) return kDead;
    next.partial = (cur.partial << 6) | (byte & 0x3F);
    next.partial_left = static_cast<uint8_t>(cur.partial_left - 1);
    next.partial_len = cur.partial_len;
    if (next.partial_left == 0) {
      const uint32_t cp = next.partial;
      static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
      if (cp < kMin[cur.partial_len] || cp > kMaxCodePoint || IsSurrogate(cp)) return kDead;
      next = State{};
      next.stacks = AdvanceChar(cur.stacks, cp);
    } else {
      next.stacks = cur.stacks;
    }
  } else if (byte < 0x80) {
    next.stacks = AdvanceChar(cur.stacks, byte);
  } else if (byte >= 0xC2 && byte <= 0xF4) {
    const int len = byte < 0xE0 ? 2 : byte < 0xF0 ? 3 : 4;
    next.partial = byte & (0x7F >> len);
    next.partial_left = static_cast<uint8_t>(len - 1);
    next.partial_len = static_cast<uint8_t>(len);
    next.stacks = cur.stacks;
  } else {
    return kDead;  // a stray continuation byte, or a byte UTF-8 never uses
  }
  if (!Alive(next)) return kDead;
  return Intern(std::move(next));
}

int32_t Automaton::Next(int32_t state, uint8_t byte) {
  if (!states_[state].next) {
    // Bounded memory: 1 KiB per state's table; past the cap every table is dropped
    // and refilled on demand (states keep their ids, so masks stay valid).
    if (transition_tables_ >= kMaxTransitionTables) {
      for (State& st : states_) st.next.reset();
      transition_tables_ = 0;
    }
    ++transition_tables_;
    states_[state].next = std::make_unique<std::array<int32_t, 256>>();
    states_[state].next->fill(-2);
  }
  int32_t cached = (*states_[state].next)[byte];
  if (cached != -2) return cached;
  const int32_t result = Compute(state, byte);  // may grow states_
  (*states_[state].next)[byte] = result;
  return result;
}

int32_t Automaton::Walk(int32_t state, std::string_view bytes) {
  for (char c : bytes) {
    if (state == kDead) return kDead;
    state = Next(state, static_cast<uint8_t>(c));
  }
  return state;
}

bool Automaton::CanEnd(int32_t state) const {
  const State& s = states_[state];
  return s.partial_left == 0 && !s.stacks.empty() && s.stacks.front().empty();  // sorted: empty first
}

const std::vector<uint64_t>& Automaton::Mask(int32_t state, const TokenTrie& trie) {
  auto it = masks_.find(state);
  if (it != masks_.end()) return it->second;
  // Bounded memory: 6 KiB per mask of a 49k vocabulary, at most 1024 of them.
  if (masks_.size() >= 1024) masks_.clear();
  std::vector<uint64_t> bits((static_cast<size_t>(trie.vocab_size()) + 63) / 64, 0);
  const auto& nodes = trie.nodes();
  walk_.assign(static_cast<size_t>(trie.max_depth()) + 1, kDead);
  walk_[0] = state;
  for (size_t i = 0; i < nodes.size();) {
    const TokenTrie::Node& n = nodes[i];
    const int32_t s = Next(walk_[n.depth - 1], n.byte);
    if (s == kDead) {
      i = n.subtree_end;
      continue;
    }
    walk_[n.depth] = s;
    for (int32_t id : trie.tokens(n)) bits[id >> 6] |= uint64_t{1} << (id & 63);
    ++i;
  }
  if (CanEnd(state)) {
    for (int32_t id : trie.end_ids()) {
      if (id >= 0 && id < trie.vocab_size()) bits[id >> 6] |= uint64_t{1} << (id & 63);
    }
  }
  return masks_.emplace(state, std::move(bits)).first->second;
}

bool Automaton::Apply(int32_t state, const TokenTrie& trie, absl::Span<float> logits) {
  if (state == kDead) return false;
  const std::vector<uint64_t>& bits = Mask(state, trie);
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  bool any = false;
  const size_t n = std::min(logits.size(), static_cast<size_t>(trie.vocab_size()));
  for (size_t w = 0; w * 64 < n; ++w) {
    const uint64_t word = bits[w];
    any |= word != 0;
    if (word == ~uint64_t{0}) continue;
    const size_t end = std::min(n, (w + 1) * 64);
    for (size_t t = w * 64; t < end; ++t) {
      if (!((word >> (t & 63)) & 1)) logits[t] = kNegInf;
    }
  }
  for (size_t t = n; t < logits.size(); ++t) logits[t] = kNegInf;
  return any;
}

}  // namespace ingot::grammar
