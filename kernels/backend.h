// The device seam (DESIGN.md decision 3): a backend is one row of functions, in the
// spirit of ggml's backend interface but as a table, not a class tree. The model's
// forward pass (engine/model/llama.cc) is written once against this row:
//
//   Begin (embeddings + rope angles in) -> per layer: RmsNorm, Linear{q,k,v}, Rope,
//   Attention (stores k/v, attends over the cache), Linear{o}, Add, RmsNorm,
//   Linear{gate,up}, SwiGlu, Linear{down}, Add -> GatherRows, RmsNorm, Linear{head},
//   ReadRows (logits out).
//
// Buffers of a step live in a backend workspace and are named by role (Buf); weights
// are uploaded once (UploadLinear/UploadVector) and passed back as opaque handles next
// to their host form, so the native row reads host memory in place and other rows read
// their own copies. Every function returns a Status: a backend catches its own
// exceptions (ATen's) at this boundary.
//
// Rows:
//   native  ingot's fused CPU kernels on raw pointers (kernels/cpu), cpu only.
//   torch   libtorch on cpu and cuda:N (kernels/torch), when built with INGOT_TORCH.
// Plain C++ with no ATen, so every engine file may include it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/device.h"
#include "kernels/linear.h"

namespace ingot::kernels {

class ThreadPool;

// The buffers of one forward step, by role. n = tokens of the step, m = tokens that
// want logits.
enum class Buf : uint8_t {
  kX,       // (n, n_embd) residual stream
  kXn,      // (n, n_embd) normed
  kQ,       // (n, n_head * head_dim)
  kK,       // (n, n_head_kv * head_dim)
  kV,       // (n, n_head_kv * head_dim)
  kAttn,    // (n, n_head * head_dim) attention output
  kGate,    // (n, n_ff)
  kUp,      // (n, n_ff)
  kProj,    // (n, n_embd) output of o / down
  kHidden,  // (m, n_embd) rows that want logits
  kLogits,  // (m, vocab)
};
constexpr int kBufCount = 11;

// The dimensions the ops need, from the model's config.
struct StepShape {
  int32_t n_embd = 0, n_head = 0, n_head_kv = 0, head_dim = 0, n_ff = 0, vocab = 0;
  int32_t rope_dim = 0;    // rotated features per head (<= head_dim)
  bool rope_neox = false;  // rotate (x[i], x[i + rope_dim/2]) instead of adjacent pairs
  int32_t q_dim() const { return n_head * head_dim; }
  int32_t kv_dim() const { return n_head_kv * head_dim; }
  int64_t Cols(Buf b) const;
};

// How keys and values are stored: per token and layer one row of kv_dim values.
enum class KvDtype : uint8_t {
  kF32,
  kF16,   // IEEE half (the default: half the bytes, attention reads it in place)
  kQ8_0,  // ggml's Q8_0 blocks (32 int8 + an f16 scale); kv_dim % 32 == 0 and head_dim % 32 == 0
};
const char* KvDtypeName(KvDtype d);
// Bytes of one stored row of `kv_dim` values.
int64_t KvRowBytes(KvDtype d, int32_t kv_dim);

// A paged KV store: fixed-size blocks of block_tokens positions, each holding every
// layer's keys and values of those positions. Which block holds which positions of a
// sequence is the sequence's block table (host memory, kept by the engine); positions
// p of a sequence live in block table[p / block_tokens], row p % block_tokens.
struct KvSpec {
  int32_t n_layer = 0, kv_dim = 0, head_dim = 0;
  int32_t block_tokens = 16;
  KvDtype dtype = KvDtype::kF16;
  // Bytes of one block on the device (all layers, keys and values).
  int64_t BlockBytes() const { return int64_t{2} * n_layer * block_tokens * KvRowBytes(dtype, kv_dim); }
  int64_t TokenBytes() const { return int64_t{2} * n_layer * KvRowBytes(dtype, kv_dim); }
};

// A token of a step: its position in its sequence, the KV store and the sequence's
// block table (blocks[pos / block_tokens] exists; positions < pos already filled).
struct StepToken {
  int32_t pos = 0;
  void* kv = nullptr;
  const int32_t* blocks = nullptr;
};

// A weight on the backend's device. The native row keeps no copy (null handle).
struct Placed {
  std::shared_ptr<const void> handle;
  std::string representation;  // as it lives on the device: "Q4_1", "int4pack/g32", "bf16"
  int64_t bytes = 0;           // device bytes
  std::string note;            // e.g. "dequantized for backend torch" (empty when as loaded)
};

// One linear layer of a step: out (rows, w.rows()) = in (rows, w.cols()) . w^T + bias.
struct LinearJob {
  const Linear* w = nullptr;        // host representation (always set)
  const void* placed = nullptr;     // Placed::handle of w (null on native)
  const float* bias = nullptr;      // host (w.rows()) or null
  const void* bias_placed = nullptr;
  Buf in = Buf::kXn, out = Buf::kQ;
};

struct MemoryStats {
  int64_t total_bytes = 0;     // physical memory of the device
  int64_t free_bytes = 0;      // free right now (driver's view on CUDA)
  int64_t allocated_bytes = 0; // held by this process's allocator on the device (CUDA), 0 on cpu
  int64_t reserved_bytes = 0;  // cached by the allocator (CUDA)
};

struct Backend {
  const char* name;
  // OK when this row can serve `device` in this build on this machine; otherwise
  // FAILED_PRECONDITION saying why (not built in, no GPU, no such ordinal).
  absl::Status (*available)(const Device& device);
  // Devices this row would list in GetServerInfo on this machine (available or not).
  std::vector<Device> (*devices)();

  // --- weights ---
  // Places a linear layer in its representation (or converts it: the Placed says to
  // what and why). FAILED_PRECONDITION when the row cannot hold it at all.
  absl::StatusOr<Placed> (*upload_linear)(const Device& device, const Linear& w);
  // A vector of f32 (norm weights, biases).
  absl::StatusOr<Placed> (*upload_vector)(const Device& device, const float* v, int64_t n);

  // --- a step (one workspace per thread and device; buffers grow and are reused) ---
  void* (*new_workspace)(const Device& device);
  void (*free_workspace)(void* ws);
  // Starts a step of n tokens: x_host (n, n_embd) embeddings, rope_cos/sin (n,
  // rope_dim/2) angles per token, tokens[n] positions and KV stores.
  absl::Status (*begin)(void* ws, const StepShape& shape, const float* x_host, const float* rope_cos,
                        const float* rope_sin, const StepToken* tokens, int64_t n);
  // out (rows, n_embd) = in / rms(in) * w.
  absl::Status (*rms_norm)(void* ws, Buf in, Buf out, int64_t rows, const float* w, const void* w_placed,
                           float eps);
  // Several linear layers over the same step in one call (q/k/v, gate/up share inputs).
  absl::Status (*linear)(void* ws, ThreadPool& pool, const LinearJob* jobs, int n_jobs, int64_t rows);
  // Rotates every head of kQ and kK by the step's angles.
  absl::Status (*rope)(void* ws);
  // Stores kK/kV of the step's tokens at their positions in layer `layer` of their KV
  // stores (through their block tables), then kAttn = softmax(q k^T / sqrt(head_dim)) v over positions 0..pos of
  // each token's own sequence (causal by construction), grouped-query.
  absl::Status (*attention)(void* ws, ThreadPool& pool, int32_t layer);
  // y += x over `rows` rows.
  absl::Status (*add)(void* ws, Buf y, Buf x, int64_t rows);
  // kGate = SiLU(kGate) * kUp over the step's n rows.
  absl::Status (*swiglu)(void* ws);
  // out row i = in row rows[i] (i < m): picks the tokens that want logits.
  absl::Status (*gather_rows)(void* ws, Buf in, Buf out, const int64_t* rows, int64_t m);
  // Copies rows (rows, cols of b) from the host into buffer b (ggml's set_tensor).
  absl::Status (*write_rows)(void* ws, Buf b, const float* host, int64_t rows);
  // A host view of the first `rows` rows of `b` (copied into *scratch when the buffer
  // lives elsewhere). Valid until the next call on this workspace.
  absl::StatusOr<const float*> (*read_rows)(void* ws, Buf b, int64_t rows, std::vector<float>* scratch);

  // --- recording a step's layers (optional: null on rows without it) ---
  // After begin, when every layer's ops will follow with no read_rows/write_rows before
  // layers_end (no observer): the row may record them once per step shape and replay
  // the recording in later steps (the torch row on CUDA: CUDA graphs of decode steps,
  // $INGOT_CUDA_GRAPHS=1). Between the two calls the ops may only be recorded or
  // skipped; layers_end runs (or replays) them. ABORTED from layers_end: the recording
  // failed and nothing ran; the caller runs the step again from begin without them.
  absl::Status (*layers_begin)(void* ws);
  absl::Status (*layers_end)(void* ws);

  // --- fused ops (optional: null on rows without them; the caller then runs the plain
  // ops they stand for) ---
  // add then rms_norm: y += x over `rows` rows, then out = y / rms(y) * w.
  absl::Status (*add_rms_norm)(void* ws, Buf y, Buf x, int64_t rows, Buf out, const float* w, const void* w_placed,
                               float eps);
  // linear over gate_up[0..2) (gate -> kGate, up -> kUp, one input), then swiglu. kUp may
  // be left unwritten.
  absl::Status (*linear_swiglu)(void* ws, ThreadPool& pool, const LinearJob* gate_up, int64_t rows);

  // --- KV stores (one paged store per model and device, shared by its sequences) ---
  // An empty store (no blocks yet); INVALID_ARGUMENT when the row cannot hold the
  // spec's dtype or shape.
  absl::StatusOr<void*> (*new_kv)(const Device& device, const KvSpec& spec);
  // Grows the store to at least `blocks` blocks, keeping what the existing ones hold;
  // returns the block count now held. RESOURCE_EXHAUSTED when the device has no room.
  absl::StatusOr<int32_t> (*reserve_kv)(void* kv, int32_t blocks);
  // Copies the first `tokens` rows of block src into block dst (every layer): a
  // sequence that shares a partly filled block writes into its own copy.
  absl::Status (*copy_kv_block)(void* kv, int32_t src, int32_t dst, int32_t tokens);
  void (*free_kv)(void* kv);
  int64_t (*kv_bytes)(const void* kv);  // bytes the store holds now

  // --- the device ---
  absl::StatusOr<MemoryStats> (*memory)(const Device& device);
  absl::Status (*synchronize)(const Device& device);
};

// Backends compiled into this binary: native first.
const std::vector<const Backend*>& Backends();
// The row called `name` ("native", "torch"); null when not built in.
const Backend* FindBackend(std::string_view name);
// Whether this binary was built with the CUDA half of the torch row (-DINGOT_CUDA=ON).
bool BuiltWithCuda();
// Steps the torch row has replayed from a CUDA graph, and graphs it has captured, in
// this process (0 without the torch row or CUDA): how tests and benchmarks see that
// $INGOT_CUDA_GRAPHS took effect.
struct GraphCounts {
  int64_t captured = 0, replayed = 0, failed = 0;
};
GraphCounts CudaGraphCounts();
// The ingot native row (always built).
const Backend& NativeBackend();

// A workspace for whichever backend a forward runs on, created on first use and kept
// across steps (one per scheduler thread).
class BackendWorkspace {
 public:
  BackendWorkspace() = default;
  ~BackendWorkspace();
  BackendWorkspace(const BackendWorkspace&) = delete;
  BackendWorkspace& operator=(const BackendWorkspace&) = delete;
  // The workspace for (backend, device), replacing one made for another pair.
  void* For(const Backend& backend, const Device& device);
  std::vector<float>& scratch() { return scratch_; }

 private:
  const Backend* backend_ = nullptr;
  Device device_;
  void* ws_ = nullptr;
  std::vector<float> scratch_;
};

}  // namespace ingot::kernels
