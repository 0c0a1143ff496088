// Models in a Hugging Face cache addressed by repository id, resolved offline the way
// huggingface_hub lays the cache out:
//   <cache>/models--<org>--<name>/refs/<revision>     the commit a branch or tag points at
//   <cache>/models--<org>--<name>/snapshots/<commit>/  the files, links into ../../blobs/
// Nothing here touches the network; the files found are opened through file_access.h,
// so the model roots still apply to them (and to where their links point).
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace ingot::formats {

// The cache directory: `configured` when set, else $HF_HUB_CACHE, $HF_HOME/hub,
// $XDG_CACHE_HOME/huggingface/hub or $HOME/.cache/huggingface/hub (huggingface_hub's
// order).
std::string HfCacheDir(const std::string& configured);

// Whether `source` reads as a repository id ("org/name") rather than a path: it does
// not exist on disk and has the characters and shape of an id.
bool LooksLikeHfRepoId(const std::string& source);

// Whether a load names a cache entry: any source given with a revision, or one that
// LooksLikeHfRepoId. The one test every caller (engine, plan, limits, config) asks.
bool IsHfRepoSource(const std::string& source, const std::string& revision);

// Whether `name` may be a unified repository's variant (a subdirectory SaveModel writes
// and LoadModel.variant names): 1-64 characters of [A-Za-z0-9._-], not "." or "..".
bool IsVariantName(const std::string& name);

// The snapshot directory of `repo_id` at `revision` (a branch or tag under refs/, or a
// 40-hex commit; empty = "main") in `cache_dir`; a snapshot holding no config.json but
// exactly one .gguf file resolves to that file. INVALID_ARGUMENT for a malformed id or
// revision or several GGUF files; NOT_FOUND naming every place looked at.
absl::StatusOr<std::string> ResolveHfCache(const std::string& cache_dir, const std::string& repo_id,
                                           const std::string& revision);

}  // namespace ingot::formats
