// How a model's weights are resident (residency.h).
//
// Only weights in a GGML layout (dense f32/f16/bf16 and GGUF blocks: one contiguous
// buffer) and the token embedding are considered; other representations (affine groups,
// codebooks) are built by their loaders and stay as built.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "engine/formats/gguf.h"
#include "engine/formats/checkpoint.h"
#include "engine/model/residency.h"

namespace ingot {
namespace {

// [begin, end) of every tensor's bytes in the model's checkpoint mapping, sorted.
using Range = std::pair<const uint8_t*, const uint8_t*>;

std::vector<Range> TensorRanges(const gguf::File* file, const Checkpoint* ck) {
  std::vector<Range> out;
  if (file != nullptr) {
    for (const gguf::TensorInfo& t : file->tensors()) out.emplace_back(t.data, t.data + t.nbytes);
  }
  if (ck != nullptr) {
    for (const std::string& name : ck->TensorNames()) {
      const formats::TensorView* t = ck->Find(name);
      if (t != nullptr && t->nbytes > 0) out.emplace_back(t->data, t->data + t->nbytes);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool InRanges(const std::vector<Range>& ranges, const uint8_t* p) {
  auto it = std::upper_bound(ranges.begin(), ranges.end(), Range{p, nullptr},
                             [](const Range& a, const Range& b) { return a.first < b.first; });
  if (it == ranges.begin()) return false;
  --it;
  return p >= it->first && p < it->second;
}

// Drops the whole pages inside [data, data + bytes) from this process (they stay in the
// page cache; a later read faults them back in from there).
void ReleasePages(const uint8_t* data, size_t bytes) {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + page - 1) & ~(page - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(page - 1);
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

// One buffer to copy and every weight view that points at it (a tied head shares the
// embedding's).
struct CopyJob {
  std::string name;
  const uint8_t* src = nullptr;
  size_t bytes = 0;
  std::vector<const uint8_t**> views;
};

}  // namespace

int64_t MappedWeightBytes(const LlamaWeights& weights) {
  const std::vector<Range> ranges = TensorRanges(weights.gguf.get(), weights.checkpoint.get());
  if (ranges.empty()) return 0;
  std::map<const uint8_t*, int64_t> seen;  // a tied head counts once
  auto add = [&](const kernels::WeightMatrix& w) {
    if (w.data != nullptr && InRanges(ranges, w.data)) seen[w.data] = static_cast<int64_t>(w.row_bytes) * w.rows;
  };
  add(weights.token_embd);
  if (weights.output.kind == kernels::LinearKind::kGgml) add(weights.output.ggml);
  for (const LlamaLayer& l : weights.layers) {
    for (const kernels::Linear& w : l.w) {
      if (w.kind == kernels::LinearKind::kGgml) add(w.ggml);
    }
  }
  int64_t n = 0;
  for (const auto& [p, bytes] : seen) n += bytes;
  return n;
}

void PrefaultMappedWeights(const LlamaWeights& weights) {
  const std::vector<Range> ranges = TensorRanges(weights.gguf.get(), weights.checkpoint.get());
  const long page = sysconf(_SC_PAGESIZE);
  uint8_t sink = 0;
  auto touch = [&](const kernels::WeightMatrix& w) {
    if (w.data == nullptr || !InRanges(ranges, w.data)) return;
    const uint64_t nbytes = static_cast<uint64_t>(w.row_bytes) * w.rows;
    for (uint64_t off = 0; off < nbytes; off += static_cast<uint64_t>(page)) {
      sink ^= static_cast<const volatile uint8_t*>(w.data)[off];
    }
  };
  for (const LlamaLayer& l : weights.layers) {
    for (const kernels::Linear& w : l.w) {
      if (w.kind == kernels::LinearKind::kGgml) touch(w.ggml);
    }
  }
  if (weights.output.kind == kernels::LinearKind::kGgml) touch(weights.output.ggml);
  (void)sink;
}

absl::Status CopyMappedWeights(LlamaWeights* weights, int workers, bool release_each,
                               const std::function<void(double, const std::string&)>& progress) {
  if (release_each && workers != 1) {
    return absl::InternalError("CopyMappedWeights: releasing each module's pages needs one worker");
  }
  const std::vector<Range> ranges = TensorRanges(weights->gguf.get(), weights->checkpoint.get());
  std::vector<CopyJob> jobs;
  std::map<const uint8_t*, size_t> job_of;
  auto add = [&](const std::string& name, kernels::WeightMatrix* w) {
    if (w->data == nullptr || !InRanges(ranges, w->data)) return;
    auto [it, fresh] = job_of.emplace(w->data, jobs.size());
    if (fresh) jobs.push_back(CopyJob{name, w->data, w->row_bytes * static_cast<size_t>(w->rows), {}});
    jobs[it->second].views.push_back(&w->data);
  };
  add("token_embd", &weights->token_embd);
  if (weights->output.kind == kernels::LinearKind::kGgml) add("output", &weights->output.ggml);
  for (size_t l = 0; l < weights->layers.size(); ++l) {
    for (int s = 0; s < kLinearSlots; ++s) {
      kernels::Linear& w = weights->layers[l].w[s];
      if (w.kind == kernels::LinearKind::kGgml) add(absl::StrCat("blk.", l, ".", kGgufLinearNames[s]), &w.ggml);
    }
  }
  // Largest first: the workers finish together, and with one worker the peak above the
  // copies (one module's source pages) is reached early and stated by the largest.
  std::sort(jobs.begin(), jobs.end(), [](const CopyJob& a, const CopyJob& b) { return a.bytes > b.bytes; });
  std::vector<std::shared_ptr<const void>> buffers(jobs.size());
  std::atomic<size_t> next{0}, done{0};
  std::atomic<bool> failed{false};
  std::mutex progress_mu;
  auto run = [&]() {
    for (size_t i = next++; i < jobs.size() && !failed; i = next++) {
      CopyJob& j = jobs[i];
      // Each copy is its own anonymous mapping (page-aligned, so 64-byte aligned too):
      // unloading gives it back to the system at once, where freed heap could stay in
      // the process and be counted in its RSS.
      const size_t alloc = std::max<size_t>(j.bytes, 1);
      void* p = ::mmap(nullptr, alloc, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) {
        failed = true;
        return;
      }
      std::memcpy(p, j.src, j.bytes);
      if (release_each) ReleasePages(j.src, j.bytes);
      buffers[i] = std::shared_ptr<const void>(p, [alloc](const void* q) { ::munmap(const_cast<void*>(q), alloc); });
      const size_t d = ++done;
      if (progress) {
        std::lock_guard<std::mutex> lock(progress_mu);
        progress(static_cast<double>(d) / jobs.size(), j.name);
      }
    }
  };
  const int n = std::max(1, std::min<int>(workers, static_cast<int>(jobs.size())));
  std::vector<std::thread> threads;
  for (int t = 1; t < n; ++t) threads.emplace_back(run);
  run();
  for (std::thread& t : threads) t.join();
  if (failed) {
    return absl::ResourceExhaustedError(absl::StrCat("copying the weights into memory: an allocation failed (",
                                                     jobs.size(), " modules)"));
  }
  for (size_t i = 0; i < jobs.size(); ++i) {
    for (const uint8_t** view : jobs[i].views) *view = static_cast<const uint8_t*>(buffers[i].get());
    weights->owners.push_back(std::move(buffers[i]));
    if (!release_each) ReleasePages(jobs[i].src, jobs[i].bytes);
  }
  return absl::OkStatus();
}

}  // namespace ingot
