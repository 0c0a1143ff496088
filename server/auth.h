// Bearer-token auth: `authorization: Bearer TOKEN` metadata, checked once per call.
// Tokens come from auth.tokens_file and INGOT_AUTH_TOKENS, one per line:
//   TOKEN admin|read-only [name]      ('#' starts a comment)
// admin may call anything; read-only may call what reads or generates (Generate,
// Tokenize, ListModels, GetModel, GetServerInfo, EvaluateModel and the quantization
// queries) but not LoadModel, UnloadModel, QuantizeModel or SaveModel. Methods not in
// the read-only list need admin, so a new RPC is closed until someone opens it.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/config.h"

namespace ingot::server {

enum class Role { kReadOnly, kAdmin };
const char* RoleName(Role role);

struct TokenEntry {
  std::string token;
  Role role = Role::kReadOnly;
  std::string name;  // for logs and messages; never the token itself
};

// Parses token lines. INVALID_ARGUMENT naming `origin`:line for a bad role, a missing
// role or a token given twice. `separators` split entries ("\n", or ",\n" for the
// environment variable).
absl::StatusOr<std::vector<TokenEntry>> ParseTokens(absl::string_view text, absl::string_view origin,
                                                    absl::string_view separators = "\n");
// Reads auth.tokens_file and auth.tokens_env together (a token in both is an error).
absl::StatusOr<std::vector<TokenEntry>> LoadTokens(const AuthConfig& auth);

// The role `method` ("/ingot.v1.ModelService/LoadModel" or "ingot.v1.ModelService/LoadModel")
// needs.
Role RequiredRole(absl::string_view method);
// The methods a read-only token may call ("ingot.v1.GenerationService/Generate", ...).
std::vector<std::string> ReadOnlyMethods();

class TokenAuthenticator {
 public:
  explicit TokenAuthenticator(std::vector<TokenEntry> tokens) : tokens_(std::move(tokens)) {}

  // `authorization` is the metadata value, nullopt when absent. UNAUTHENTICATED for a
  // missing, malformed or unknown token; PERMISSION_DENIED naming the method and the
  // token's name when its role is not enough. `who` (optional) gets the token's name.
  absl::Status Authorize(std::optional<absl::string_view> authorization, absl::string_view method,
                         std::string* who = nullptr) const;
  size_t size() const { return tokens_.size(); }

 private:
  std::vector<TokenEntry> tokens_;
};

}  // namespace ingot::server
