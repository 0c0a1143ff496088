// OutputConstraint (engine.h) -> the grammar the sampler masks with, and the
// vocabulary trie the masks walk (one per model, built on first use).
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "engine/grammar/gbnf.h"
#include "engine/grammar/matcher.h"
#include "engine/runtime/api.h"
#include "engine/tokenizer/tokenizer.h"

namespace ingot {

// INVALID_ARGUMENT for a bad grammar (line:column), an unsupported JSON Schema keyword
// (named) or an unsatisfiable schema. Null for kNone.
absl::StatusOr<std::shared_ptr<const grammar::Grammar>> CompileConstraint(const OutputConstraint& c);

// Every token's bytes (control tokens none) and the end-of-generation ids.
std::shared_ptr<const grammar::TokenTrie> BuildTokenTrie(const Tokenizer& tokenizer);

}  // namespace ingot
