// The torch row's step state, shared by its ATen translation units: torch_backend.cc
// (the row) and, in CUDA builds, torch_cuda.cc (CUDA graphs of decode steps and the
// kernels' launchers). Included by those two files only: it brings ATen.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "kernels/backend.h"
#include "kernels/cuda/paged_attention.h"
#include "kernels/cuda/quant_gemv.h"

namespace ingot::kernels {

// Runs the statements (which return) and turns an ATen exception into a Status.
#define INGOT_TORCH_TRY(what, ...)     \
  try {                                \
    __VA_ARGS__                        \
  } catch (const std::exception& e) {  \
    return TorchError(what, e);        \
  }

// The first line of an ATen exception as a Status (RESOURCE_EXHAUSTED for out of memory).
absl::Status TorchError(const char* what, const std::exception& e);

inline at::Tensor HostF32(const float* data, std::vector<int64_t> shape) {
  return at::from_blob(const_cast<float*>(data), shape, at::TensorOptions().dtype(at::kFloat));
}

// Ids of KV stores, never reused: what a workspace's graph inputs are keyed by.
uint64_t NextStoreId();

struct TorchKv {
  uint64_t id = NextStoreId();  // never reused: what a step's graphs are keyed by
  // (n_layer, n_blocks * block_tokens, width) in the store dtype: f32/f16 rows of kv_dim
  // values, or (q8_0, CUDA only) bytes of Q8_0 blocks, width = KvRowBytes.
  at::Tensor k, v;
  int64_t width = 0;
  bool q8 = false;
  KvSpec spec;
  int32_t n_blocks = 0;
  at::Device dev = at::kCPU;
  at::ScalarType dtype = at::kFloat;
};

struct TorchRun {  // consecutive tokens of one sequence
  int64_t t0 = 0, len = 0;
  TorchKv* kv = nullptr;
  const int32_t* blocks = nullptr;
  int32_t last = 0;         // highest position of the run
  at::Tensor write, read;   // store rows of the run's tokens, of positions 0..last
};

// CUDA graphs ($INGOT_CUDA_GRAPHS=1, read when a workspace is made). A decode step (every
// token its own sequence, all in one store, at most kMaxGraphTokens tokens) has its
// layers recorded once per token count and store after kGraphWarmup eager steps of that
// count, and replayed from then on. Such a step reads its per-step inputs from the
// fixed-address tensors of GraphInputs and attends through ingot's paged attention
// kernel (SDPA's gathers change shape every step); the step buffers are allocated for
// kMaxGraphTokens rows, and any reallocation of them (a longer prefill) drops the graphs.
constexpr int kMaxGraphTokens = cuda::kMaxGemvTokens;
constexpr int kGraphWarmup = 2;

// CUDA builds: a workspace's stream and recordings (torch_cuda.cc).
struct CudaGraphs;

struct GraphInputs {
  uint64_t store_id = 0;
  const void* k = nullptr;
  const void* v = nullptr;
  int32_t n_blocks = 0;  // with k and v: a regrown store at a reused address is another store
  int64_t epoch = -1;
  at::Tensor cos, sin;                     // (kMaxGraphTokens, 1, rope_dim / 2)
  at::Tensor write;                        // (kMaxGraphTokens) int64: store row of each token
  at::Tensor ctx_rows;                     // (kMaxGraphTokens * store rows) int32
  at::Tensor ctx_off, ctx_len;             // (kMaxGraphTokens) int32
  int seen[kMaxGraphTokens + 1] = {};      // eager steps of each token count so far
};

struct TorchWorkspace {
  Device device;
  at::Device dev = at::kCPU;
  at::ScalarType dtype = at::kFloat;
  StepShape shape;
  int64_t n = 0, m = 0;
  at::Tensor buf[kBufCount];  // (capacity rows, cols)
  at::Tensor cos, sin;        // (n, 1, rope_dim / 2) compute dtype
  std::vector<int32_t> pos;
  std::vector<TorchRun> runs;
  // ingot's paged attention kernel (CUDA): token t attends to store rows
  // ctx_rows[ctx_off[t] .. + ctx_len[t]) (int32 on the device); defined when in use.
  bool paged_kernel = false;
  at::Tensor ctx_rows, ctx_off, ctx_len;
  // CUDA graphs (see kMaxGraphTokens).
  enum class Mode { kEager, kCapture, kReplay };
  bool graphs_on = false;
  bool graph_step = false;  // this step reads GraphInputs
  Mode mode = Mode::kEager;
  bool capture_failed = false;
  std::string capture_error;
  int64_t epoch = 0;  // bumped whenever a layer's step buffer is reallocated
  GraphInputs gin;
  std::shared_ptr<CudaGraphs> graphs;  // CUDA builds: its stream and recordings
  at::Tensor B(Buf b, int64_t rows) { return buf[static_cast<int>(b)].narrow(0, 0, rows); }
  void Ensure(Buf b, int64_t rows) {
    at::Tensor& t = buf[static_cast<int>(b)];
    if (!t.defined() || t.size(0) < rows) {
      t = at::empty({rows, shape.Cols(b)}, at::TensorOptions().device(dev).dtype(dtype));
      if (b != Buf::kHidden && b != Buf::kLogits) ++epoch;
    }
  }
};

// The ops of a step being replayed (or whose recording already failed) do nothing.
inline bool Skip(const TorchWorkspace& w) {
  return w.mode == TorchWorkspace::Mode::kReplay || (w.mode == TorchWorkspace::Mode::kCapture && w.capture_failed);
}

// An op's exception: while capturing it only marks the recording failed (layers_end
// then has the step run again eagerly), otherwise it is the step's error.
absl::Status StepError(TorchWorkspace& w, const char* what, const std::exception& e);

// INGOT_TORCH_TRY for the ops between layers_begin and layers_end.
#define INGOT_TORCH_STEP(w, what, ...)               \
  if (Skip(w)) return absl::OkStatus();              \
  try {                                              \
    __VA_ARGS__                                      \
  } catch (const std::exception& e) {                \
    return StepError(w, what, e);                    \
  }

// CUDA graphs (torch_cuda.cc; only called in CUDA builds, where graphs_on can be true).
// Before a step's first op: the workspace's stream current, a capture an earlier step
// left open (an op's error) dropped.
void GraphStepStart(TorchWorkspace& w);
// Whether the step just laid out in w (runs, pos) is a decode step graphs serve.
bool IsGraphStep(const TorchWorkspace& w);
// A graph step's per-step inputs into GraphInputs' fixed tensors.
void GraphInputsIn(TorchWorkspace& w, const float* rope_cos, const float* rope_sin);
// The row's layers_begin / layers_end on CUDA.
absl::Status GraphLayersBegin(TorchWorkspace& w);
absl::Status GraphLayersEnd(TorchWorkspace& w);
// A capture left open when the workspace goes (an op's error ended its step) ends here.
void GraphWorkspaceFree(TorchWorkspace& w);
// Waits for the calling thread's current stream on cuda:index: uploads finish before the
// weights are handed to a step, whichever stream that runs on.
void SyncCurrentStream(int index);

}  // namespace ingot::kernels
