// How a model's weights are resident (LoadRequest.loading_strategy; residency.cc): read
// in place from the checkpoint's mapping (file-backed pages, shared with the page
// cache), or copied into anonymous memory the weights own, all at once or one module at
// a time with each module's file pages released after its copy.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "engine/model/weights.h"

namespace ingot {

// Bytes of the weights (GGML-layout linears and the embedding) that point into the
// checkpoint's mapping: served from the page cache, file-backed in the process's RSS.
int64_t MappedWeightBytes(const LlamaWeights& weights);

// Copies every weight MappedWeightBytes counts into memory `weights` owns (64-byte
// aligned), `workers` modules at a time. release_each: each module's source pages are
// dropped from the process (madvise MADV_DONTNEED) right after its copy, so the load
// holds at most one module's pages above its copies (workers must be 1 then); else
// they are dropped after all copies. `progress(fraction, module)` per module copied.
absl::Status CopyMappedWeights(LlamaWeights* weights, int workers, bool release_each,
                               const std::function<void(double, const std::string&)>& progress);

// Touches one byte per page of every mapped weight, so they are resident before the
// first request (mmap is lazy).
void PrefaultMappedWeights(const LlamaWeights& weights);

}  // namespace ingot
