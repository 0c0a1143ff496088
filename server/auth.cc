#include "server/auth.h"

#include <openssl/crypto.h>

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "engine/common/read_file.h"

namespace ingot::server {
namespace {

// Calls a read-only token may make (service/method, without the leading '/').
constexpr absl::string_view kReadOnlyMethods[] = {
    "ingot.v1.GenerationService/Generate",
    "ingot.v1.GenerationService/Tokenize",
    "ingot.v1.ModelService/ListModels",
    "ingot.v1.ModelService/GetModel",
    "ingot.v1.ModelService/GetServerInfo",
    "ingot.v1.ModelService/WatchModels",
    "ingot.v1.QuantizationService/EvaluateModel",
    "ingot.v1.QuantizationService/ValidateQuantization",
    "ingot.v1.QuantizationService/RecommendQuantization",
    "ingot.v1.QuantizationService/ListQuantizationMethods",
};

// Compares without an early exit, so response time does not tell how much of a
// guessed token was right.
bool SameToken(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

const char* RoleName(Role role) { return role == Role::kAdmin ? "admin" : "read-only"; }

absl::StatusOr<std::vector<TokenEntry>> ParseTokens(absl::string_view text, absl::string_view origin,
                                                    absl::string_view separators) {
  std::vector<TokenEntry> tokens;
  std::set<std::string> seen;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, absl::ByAnyChar(separators))) {
    ++line_no;
    if (size_t hash = line.find('#'); hash != absl::string_view::npos) line = line.substr(0, hash);
    std::vector<absl::string_view> words =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (words.empty()) continue;
    const std::string where = absl::StrCat(origin, ":", line_no);
    if (words.size() < 2) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": expected 'TOKEN admin|read-only [name]', got one word"));
    }
    TokenEntry entry;
    entry.token = std::string(words[0]);
    if (words[1] == "admin") {
      entry.role = Role::kAdmin;
    } else if (words[1] == "read-only") {
      entry.role = Role::kReadOnly;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(where, ": role '", words[1],
                                                     "' is not admin or read-only"));
    }
    if (words.size() > 3) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": expected 'TOKEN admin|read-only [name]', got ", words.size(),
                       " words (names have no spaces)"));
    }
    entry.name = words.size() == 3 ? std::string(words[2]) : absl::StrCat(origin, ":", line_no);
    if (!seen.insert(entry.token).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": token '", entry.name, "' repeats an earlier token"));
    }
    tokens.push_back(std::move(entry));
  }
  return tokens;
}

absl::StatusOr<std::vector<TokenEntry>> LoadTokens(const AuthConfig& auth) {
  std::string text;
  if (!auth.tokens_file.empty()) {
    absl::StatusOr<std::string> bytes = ReadFile(auth.tokens_file);
    if (!bytes.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("auth.tokens_file: ", bytes.status().message()));
    }
    text = *std::move(bytes);
  }
  std::vector<TokenEntry> tokens;
  if (!text.empty()) {
    auto from_file = ParseTokens(text, auth.tokens_file);
    if (!from_file.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("auth.tokens_file: ", from_file.status().message()));
    }
    tokens = *std::move(from_file);
  }
  if (!auth.tokens_env.empty()) {
    auto from_env = ParseTokens(auth.tokens_env, "INGOT_AUTH_TOKENS", ",\n");
    if (!from_env.ok()) return from_env.status();
    for (TokenEntry& t : *from_env) {
      for (const TokenEntry& other : tokens) {
        if (other.token == t.token) {
          return absl::InvalidArgumentError(absl::StrCat(
              "INGOT_AUTH_TOKENS: token '", t.name, "' is also in auth.tokens_file (as '",
              other.name, "')"));
        }
      }
      tokens.push_back(std::move(t));
    }
  }
  if (tokens.empty()) {
    return absl::InvalidArgumentError(
        "auth: no tokens (auth.tokens_file and INGOT_AUTH_TOKENS have none); every call would be "
        "refused");
  }
  return tokens;
}

std::vector<std::string> ReadOnlyMethods() {
  return std::vector<std::string>(std::begin(kReadOnlyMethods), std::end(kReadOnlyMethods));
}

Role RequiredRole(absl::string_view method) {
  absl::ConsumePrefix(&method, "/");
  for (absl::string_view m : kReadOnlyMethods) {
    if (m == method) return Role::kReadOnly;
  }
  return Role::kAdmin;
}

absl::Status TokenAuthenticator::Authorize(std::optional<absl::string_view> authorization,
                                           absl::string_view method, std::string* who) const {
  if (!authorization) {
    return absl::UnauthenticatedError(
        "missing bearer token: send metadata 'authorization: Bearer <token>'");
  }
  absl::string_view value = absl::StripAsciiWhitespace(*authorization);
  // The scheme is case-insensitive (RFC 7235).
  if (value.size() < 7 || !absl::EqualsIgnoreCase(value.substr(0, 7), "bearer ")) {
    return absl::UnauthenticatedError(
        "authorization metadata is not 'Bearer <token>'");
  }
  absl::string_view token = absl::StripAsciiWhitespace(value.substr(7));
  const TokenEntry* match = nullptr;
  for (const TokenEntry& t : tokens_) {
    if (SameToken(t.token, token)) match = &t;  // no break: same work for every token
  }
  if (match == nullptr) return absl::UnauthenticatedError("unknown bearer token");
  if (who) *who = match->name;
  absl::ConsumePrefix(&method, "/");
  if (match->role == Role::kAdmin || RequiredRole(method) == Role::kReadOnly) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(absl::StrCat("token '", match->name, "' is read-only; ",
                                                  method, " needs an admin token"));
}

}  // namespace ingot::server
