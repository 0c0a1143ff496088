#include "engine/formats/hf_cache.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <system_error>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "engine/common/read_file.h"

namespace ingot::formats {
namespace {
namespace fs = std::filesystem;

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::string(v) : std::string();
}

// One part of an id: the Hub's [A-Za-z0-9][A-Za-z0-9._-]*, at most 96 characters, no "..".
bool IdPart(absl::string_view p) {
  if (p.empty() || p.size() > 96 || !absl::ascii_isalnum(static_cast<unsigned char>(p[0]))) return false;
  for (char c : p) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') return false;
  }
  return !absl::StrContains(p, "..");
}

bool IsCommit(absl::string_view r) {
  if (r.size() != 40) return false;
  for (char c : r) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c)) || absl::ascii_isupper(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return true;
}

// A ref name as refs/ holds it: branches, tags and refs/pr/N; no "..", no empty parts.
bool RefName(absl::string_view r) {
  if (r.empty() || r.size() > 256) return false;
  for (absl::string_view part : absl::StrSplit(r, '/')) {
    if (part.empty() || part == "." || part == "..") return false;
    for (char c : part) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-' && c != '+') {
        return false;
      }
    }
  }
  return true;
}

}  // namespace

std::string HfCacheDir(const std::string& configured) {
  if (!configured.empty()) return configured;
  if (std::string v = Env("HF_HUB_CACHE"); !v.empty()) return v;
  if (std::string v = Env("HF_HOME"); !v.empty()) return v + "/hub";
  if (std::string v = Env("XDG_CACHE_HOME"); !v.empty()) return v + "/huggingface/hub";
  return Env("HOME") + "/.cache/huggingface/hub";
}

bool LooksLikeHfRepoId(const std::string& source) {
  std::error_code ec;
  if (fs::exists(fs::symlink_status(source, ec))) return false;
  // "org/name" only: a bare name is more likely a mistyped file than a legacy id (those
  // load with a revision given).
  const std::vector<absl::string_view> parts = absl::StrSplit(source, '/');
  if (parts.size() != 2) return false;
  for (absl::string_view p : parts) {
    if (!IdPart(p)) return false;
  }
  return true;
}

bool IsHfRepoSource(const std::string& source, const std::string& revision) {
  return !revision.empty() || LooksLikeHfRepoId(source);
}

bool IsVariantName(const std::string& name) {
  if (name.empty() || name.size() > 64 || name == "." || name == "..") return false;
  return name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") ==
         std::string::npos;
}

absl::StatusOr<std::string> ResolveHfCache(const std::string& cache_dir, const std::string& repo_id,
                                           const std::string& revision_in) {
  const std::vector<absl::string_view> parts = absl::StrSplit(repo_id, '/');
  bool id_ok = parts.size() <= 2;
  for (absl::string_view p : parts) id_ok = id_ok && IdPart(p);
  if (!id_ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", repo_id, "' is not a Hugging Face repository id (org/name)"));
  }
  const std::string revision = revision_in.empty() ? "main" : revision_in;
  if (!IsCommit(revision) && !RefName(revision)) {
    return absl::InvalidArgumentError(absl::StrCat("revision '", revision, "' is not a branch, tag or commit"));
  }
  const std::string repo_dir = absl::StrCat(cache_dir, "/models--", absl::StrReplaceAll(repo_id, {{"/", "--"}}));
  std::error_code ec;
  if (!fs::is_directory(repo_dir, ec)) {
    return absl::NotFoundError(absl::StrCat("'", repo_id, "' is neither a path nor a model in the Hugging Face cache (",
                                            repo_dir, " does not exist; set hf_cache, HF_HUB_CACHE or HF_HOME, ",
                                            "or download it with `hf download ", repo_id, "`)"));
  }
  std::string commit = revision;
  if (!IsCommit(revision)) {
    const std::string ref = repo_dir + "/refs/" + revision;
    absl::StatusOr<std::string> text = ReadFile(ref);
    if (text.ok()) commit = std::string(absl::StripAsciiWhitespace(*text));
    if (!text.ok() || !IsCommit(commit)) {
      return absl::NotFoundError(absl::StrCat("'", repo_id, "' has no revision '", revision,
                                              "' in the Hugging Face cache (", ref, " is missing or not a commit)"));
    }
  }
  const std::string snapshot = repo_dir + "/snapshots/" + commit;
  if (!fs::is_directory(snapshot, ec)) {
    return absl::NotFoundError(absl::StrCat("'", repo_id, "' at ", revision, " is not in the Hugging Face cache (",
                                            snapshot, " does not exist)"));
  }
  if (fs::exists(snapshot + "/config.json", ec)) return snapshot;
  std::vector<std::string> ggufs;
  for (const auto& e : fs::directory_iterator(snapshot, ec)) {
    if (absl::EndsWith(e.path().filename().string(), ".gguf")) ggufs.push_back(e.path().filename().string());
  }
  if (ggufs.size() == 1) return snapshot + "/" + ggufs[0];
  if (ggufs.size() > 1) {
    std::sort(ggufs.begin(), ggufs.end());
    return absl::InvalidArgumentError(absl::StrCat("'", repo_id, "' at ", revision, " holds several GGUF files (",
                                                   absl::StrJoin(ggufs, ", "), "); load one of them by path under ",
                                                   snapshot));
  }
  return snapshot;
}

}  // namespace ingot::formats
