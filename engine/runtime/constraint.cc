#include "engine/runtime/constraint.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/grammar/json_schema.h"

namespace ingot {

absl::StatusOr<std::shared_ptr<const grammar::Grammar>> CompileConstraint(const OutputConstraint& c) {
  switch (c.kind) {
    case OutputConstraint::Kind::kNone:
      return std::shared_ptr<const grammar::Grammar>();
    case OutputConstraint::Kind::kGrammar: {
      auto g = grammar::ParseGbnf(c.text);
      if (!g.ok()) return absl::InvalidArgumentError(absl::StrCat("grammar: ", g.status().message()));
      return *g;
    }
    case OutputConstraint::Kind::kJsonSchema: {
      ASSIGN_OR_RETURN(std::string text, grammar::JsonSchemaToGbnf(c.text));
      auto g = grammar::ParseGbnf(text);
      if (!g.ok()) {
        // The converter's grammar only fails to parse when no text can finish it.
        return absl::InvalidArgumentError(
            absl::StrCat("JSON Schema is unsatisfiable (no JSON text validates against it): ", g.status().message()));
      }
      return *g;
    }
    case OutputConstraint::Kind::kJsonObject:
      return grammar::ParseGbnf(grammar::JsonObjectGbnf());
  }
  return absl::InternalError("unknown OutputConstraint kind");
}

std::shared_ptr<const grammar::TokenTrie> BuildTokenTrie(const Tokenizer& tokenizer) {
  std::vector<std::string> bytes(static_cast<size_t>(tokenizer.vocab_size()));
  for (int32_t id = 0; id < tokenizer.vocab_size(); ++id) bytes[id] = tokenizer.TokenBytes(id, /*render_special=*/false);
  return std::make_shared<const grammar::TokenTrie>(bytes, tokenizer.end_of_generation_ids());
}

}  // namespace ingot
