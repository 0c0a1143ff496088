// Helpers of the grammar tests: does a grammar accept a whole text.
#pragma once

#include <memory>
#include <string>

#include "engine/grammar/gbnf.h"
#include "engine/grammar/matcher.h"
#include "gtest/gtest.h"

namespace ingot::grammar {

inline std::shared_ptr<const Grammar> MustParse(const std::string& text) {
  auto g = ParseGbnf(text);
  EXPECT_TRUE(g.ok()) << g.status() << "\n" << text;
  return g.ok() ? *g : nullptr;
}

// The automaton takes every byte of `text` and may end there.
inline bool Accepts(const std::shared_ptr<const Grammar>& g, const std::string& text) {
  if (!g) return false;
  Automaton a(g);
  const int32_t s = a.Walk(a.Start(), text);
  return s != Automaton::kDead && a.CanEnd(s);
}

// `text` can be continued to a complete match (it is a live prefix).
inline bool IsPrefix(const std::shared_ptr<const Grammar>& g, const std::string& text) {
  if (!g) return false;
  Automaton a(g);
  return a.Walk(a.Start(), text) != Automaton::kDead;
}

}  // namespace ingot::grammar
