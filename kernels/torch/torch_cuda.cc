// The CUDA half of the torch row, built only with -DINGOT_CUDA=ON: device count,
// memory (the driver's free/total and the caching allocator's statistics), sync, and
// quantized weights kept in their representation on the device and multiplied by the
// fused kernels of kernels/cuda (quant_gemv.cu). No GPU needed to compile or load:
// c10::cuda::device_count() is 0 without a driver.
#include <ATen/ATen.h>
#include <ATen/core/CachingHostAllocator.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <memory>
#include <exception>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/backend.h"
#include "kernels/cpu/qmatrix.h"
#include "kernels/cuda/paged_attention.h"
#include "kernels/cuda/quant_gemv.h"
#include "kernels/cuda/step_ops.h"
#include "kernels/cuda/quant_view.h"
#include "kernels/torch/cuda_quant.h"
#include "kernels/torch/torch_row.h"

namespace ingot::kernels {

int CudaDeviceCount() {
  try {
    return static_cast<int>(c10::cuda::device_count());
  } catch (const std::exception&) {
    return 0;
  }
}

absl::StatusOr<MemoryStats> CudaMemory(int index) {
  try {
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(index));
    size_t free_b = 0, total_b = 0;
    if (cudaError_t e = cudaMemGetInfo(&free_b, &total_b); e != cudaSuccess) {
      return absl::UnavailableError(absl::StrCat("cudaMemGetInfo on cuda:", index, ": ", cudaGetErrorString(e)));
    }
    MemoryStats s;
    s.total_bytes = static_cast<int64_t>(total_b);
    s.free_bytes = static_cast<int64_t>(free_b);
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(index));
    using c10::CachingAllocator::StatType;
    s.allocated_bytes = stats.allocated_bytes[static_cast<size_t>(StatType::AGGREGATE)].current;
    s.reserved_bytes = stats.reserved_bytes[static_cast<size_t>(StatType::AGGREGATE)].current;
    return s;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("cuda:", index, " memory statistics: ", e.what()));
  }
}

absl::Status CudaSynchronize(int index) {
  try {
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(index));
    c10::cuda::device_synchronize();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("cuda:", index, " synchronize: ", e.what()));
  }
}

namespace {

void Check(int err, const char* what) {
  if (err != 0) {
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(static_cast<cudaError_t>(err)));
  }
}

// The codebook tables (NF4, FP4 and the dynamic map of double quantization) once per
// device, shared by every codebook weight there.
const float* DeviceTable(int index, int which) {
  static std::mutex mu;
  static std::map<std::pair<int, int>, at::Tensor> tables;
  std::lock_guard lock(mu);
  at::Tensor& t = tables[{index, which}];
  if (!t.defined()) {
    const float* host = which == 0 ? CodebookValues(Codebook::kNF4) : which == 1 ? CodebookValues(Codebook::kFP4)
                                                                                 : DynamicMap();
    const int64_t n = which == 2 ? 256 : 16;
    t = at::from_blob(const_cast<float*>(host), {n}, at::TensorOptions().dtype(at::kFloat))
            .to(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index)));
  }
  return t.data_ptr<float>();
}

}  // namespace

std::string UploadQuantOnCuda(const Linear& w, int index, CudaQuant* out) {
  std::string why = cuda::QuantFormatFor(w, &out->format);
  if (!why.empty()) return why;
  const at::Device dev(at::kCUDA, static_cast<c10::DeviceIndex>(index));
  c10::cuda::CUDAGuard guard(dev.index());
  const cuda::QuantArrays a = cuda::QuantArraysOf(w);
  const void* ptr[cuda::QuantArrays::kCount] = {};
  out->arrays.clear();
  out->bytes = 0;
  for (int i = 0; i < cuda::QuantArrays::kCount; ++i) {
    if (a.host[i] == nullptr || a.bytes[i] == 0) continue;
    at::Tensor d = at::from_blob(const_cast<void*>(a.host[i]), {a.bytes[i]}, at::TensorOptions().dtype(at::kByte))
                       .to(dev);
    ptr[i] = d.data_ptr();
    out->bytes += a.bytes[i];
    out->arrays.push_back(std::move(d));
  }
  for (const void* p : ptr) {  // the decoders' load widths assume 16-byte aligned arrays (quant_decode.h)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return "a device copy of the weight is not 16-byte aligned";
  }
  const bool codebook = w.kind == LinearKind::kCodebook;
  out->view = cuda::MakeQuantView(
      w, ptr, codebook ? DeviceTable(index, w.codebook.book == Codebook::kNF4 ? 0 : 1) : nullptr,
      codebook && w.codebook.absmax_code != nullptr ? DeviceTable(index, 2) : nullptr);
  return "";
}

at::Tensor QuantToBf16OnCuda(const CudaQuant& q, int index) {
  const at::Device dev(at::kCUDA, static_cast<c10::DeviceIndex>(index));
  c10::cuda::CUDAGuard guard(dev.index());
  at::Tensor out = at::empty({q.view.rows, q.view.cols}, at::TensorOptions().device(dev).dtype(at::kBFloat16));
  Check(cuda::QuantToBf16(q.format, q.view, out.data_ptr(), c10::cuda::getCurrentCUDAStream(dev.index()).stream()),
        "dequantize kernel");
  return out;
}

namespace {

bool CudaStepOpsEnabled() {
  static const bool on = [] {
    const char* env = std::getenv("INGOT_CUDA_STEP_OPS");
    return env == nullptr || std::string(env) != "torch";
  }();
  return on;
}

// The fewest tokens the tensor-core kernel serves on cuda:index (0: none), read once per
// device: kMinMmaTokens on sm_80 and up; $INGOT_CUDA_MMA=0 turns it off (the A/B of
// tests/gpu/run.sh), =N (1..17) moves the threshold (bench_7b's batch-1 row on it).
int MmaMin(int index) {
  static const int env_min = [] {
    const char* env = std::getenv("INGOT_CUDA_MMA");
    if (env == nullptr || *env == '\0') return cuda::kMinMmaTokens;
    char* end = nullptr;
    const long v = std::strtol(env, &end, 10);
    if (end == env || *end != '\0' || v < 0) {
      std::fprintf(stderr, "ingot: INGOT_CUDA_MMA=%s is not a token count (0: off); using %d\n", env,
                   cuda::kMinMmaTokens);
      return cuda::kMinMmaTokens;
    }
    return static_cast<int>(std::min<long>(v, cuda::kMaxGemvTokens + 1));
  }();
  if (env_min == 0) return 0;
  static std::mutex mu;
  static std::map<int, bool> major8;
  std::lock_guard lock(mu);
  auto it = major8.find(index);
  if (it == major8.end()) {
    int major = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, index) != cudaSuccess) major = 0;
    it = major8.emplace(index, major >= 8).first;
  }
  return it->second ? env_min : 0;
}

bool Bf16Rows(const at::Tensor& t) {
  return t.is_cuda() && t.scalar_type() == at::kBFloat16 && t.dim() == 2 && t.stride(1) == 1;
}

}  // namespace

void QuantLinearOnCuda(const at::Tensor& x, const CudaQuant& q, const at::Tensor& out) {
  const int index = x.device().index();
  c10::cuda::CUDAGuard guard(index);
  at::Tensor xb = x.to(at::kBFloat16).contiguous();
  const int64_t m = xb.size(0);
  if (m == 0) return;
  if (reinterpret_cast<uintptr_t>(xb.data_ptr()) % 4 != 0) xb = xb.clone();  // the kernels load bf16 pairs
  const bool direct = out.scalar_type() == at::kBFloat16 && out.dim() == 2 && out.size(0) == m &&
                      out.size(1) == q.view.rows && out.stride(1) == 1;
  at::Tensor y = direct ? out : at::empty({m, q.view.rows}, xb.options());
  const int mma_min = MmaMin(index);
  if (m > cuda::QuantGemvMaxTokens(mma_min)) {
    // Prefill: the weight expanded to a bf16 tile for cuBLAS, then dropped.
    at::mm_out(y, xb, QuantToBf16OnCuda(q, index).t());
  } else {
    Check(cuda::QuantGemv(q.format, q.view, xb.data_ptr(), q.view.cols, static_cast<int>(m), y.data_ptr(), y.stride(0),
                          mma_min, c10::cuda::getCurrentCUDAStream(index).stream()),
          "quantized GEMV kernel");
  }
  if (!direct) out.copy_(y);
}

bool QuantLinearGroupOnCuda(const at::Tensor& x, const CudaQuant* const* q, const at::Tensor* out, int count,
                            bool swiglu) {
  if (!CudaStepOpsEnabled() || count < 1 || count > cuda::kMaxGemvGroup || !Bf16Rows(x) || x.stride(0) % 2 != 0) {
    return false;
  }
  const int index = x.device().index();
  const int64_t m = x.size(0);
  const int mma_min = MmaMin(index);
  // Grouping saves launches, which matter at decode sizes. The fused SwiGLU is the
  // GEMV's: where the tensor-core kernel serves, it and a SwiGLU kernel are faster.
  const int most = swiglu ? (mma_min > 0 ? mma_min - 1 : cuda::kMaxGemvTokens) : cuda::QuantGemvMaxTokens(mma_min);
  if (m > most || reinterpret_cast<uintptr_t>(x.data_ptr()) % 4 != 0) return false;
  cuda::GemvGroup g;
  g.count = count;
  g.epilogue = swiglu ? cuda::GemvEpilogue::kSwiGlu : cuda::GemvEpilogue::kNone;
  for (int i = 0; i < count; ++i) {
    if (q[i]->format != q[0]->format || q[i]->view.cols != x.size(1) || !Bf16Rows(out[i]) || out[i].size(0) != m ||
        out[i].size(1) != q[i]->view.rows || out[i].device() != x.device()) {
      return false;
    }
    g.v[i] = q[i]->view;
    g.y[i] = out[i].data_ptr();
    g.ldy[i] = out[i].stride(0);
  }
  c10::cuda::CUDAGuard guard(index);
  Check(cuda::QuantGemvGroup(q[0]->format, g, x.data_ptr(), x.stride(0), static_cast<int>(m), mma_min,
                             c10::cuda::getCurrentCUDAStream(index).stream()),
        "quantized GEMV kernel (group)");
  return true;
}

namespace {

// A norm's weight the step-op kernels take: bf16, contiguous, one per column.
bool NormWeightOk(const at::Tensor& weight, int64_t cols) {
  return weight.scalar_type() == at::kBFloat16 && weight.is_contiguous() && weight.numel() == cols;
}

}  // namespace

bool RmsNormOnCuda(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& out, float eps) {
  if (!CudaStepOpsEnabled() || !Bf16Rows(x) || !Bf16Rows(out) || x.sizes() != out.sizes() ||
      !NormWeightOk(weight, x.size(1))) {
    return false;
  }
  c10::cuda::CUDAGuard guard(x.device().index());
  Check(cuda::RmsNormBf16(x.data_ptr(), x.stride(0), weight.data_ptr(), out.data_ptr(), out.stride(0), x.size(0),
                          x.size(1), eps, c10::cuda::getCurrentCUDAStream(x.device().index()).stream()),
        "rms_norm kernel");
  return true;
}

bool AddRmsNormOnCuda(const at::Tensor& res, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& out,
                      float eps) {
  if (!CudaStepOpsEnabled() || !Bf16Rows(res) || !Bf16Rows(x) || !Bf16Rows(out) || res.sizes() != x.sizes() ||
      res.sizes() != out.sizes() || !NormWeightOk(weight, res.size(1))) {
    return false;
  }
  c10::cuda::CUDAGuard guard(res.device().index());
  Check(cuda::AddRmsNormBf16(res.data_ptr(), res.stride(0), x.data_ptr(), x.stride(0), weight.data_ptr(),
                             out.data_ptr(), out.stride(0), res.size(0), res.size(1), eps,
                             c10::cuda::getCurrentCUDAStream(res.device().index()).stream()),
        "add + rms_norm kernel");
  return true;
}

bool RopeOnCuda(const at::Tensor& q, int32_t n_head, const at::Tensor& k, int32_t n_head_kv, int32_t head_dim,
                int32_t rope_dim, bool neox, const at::Tensor& cos, const at::Tensor& sin) {
  // cos/sin: (n, 1, rope_dim / 2), rows contiguous
  const int64_t half = rope_dim / 2;
  auto table_ok = [&](const at::Tensor& t) {
    return t.is_cuda() && t.scalar_type() == at::kBFloat16 && t.dim() == 3 && t.size(0) == q.size(0) &&
           t.size(2) == half && t.stride(2) == 1 && t.stride(0) == cos.stride(0);
  };
  if (!CudaStepOpsEnabled() || !Bf16Rows(q) || !Bf16Rows(k) || q.size(0) != k.size(0) ||
      q.size(1) < static_cast<int64_t>(n_head) * head_dim || k.size(1) < static_cast<int64_t>(n_head_kv) * head_dim ||
      rope_dim > head_dim || !table_ok(cos) || !table_ok(sin)) {
    return false;
  }
  c10::cuda::CUDAGuard guard(q.device().index());
  Check(cuda::RopeBf16(q.data_ptr(), q.stride(0), n_head, k.data_ptr(), k.stride(0), n_head_kv, q.size(0), head_dim,
                       rope_dim, neox, cos.data_ptr(), sin.data_ptr(), cos.stride(0),
                       c10::cuda::getCurrentCUDAStream(q.device().index()).stream()),
        "rope kernel");
  return true;
}

bool SwiGluOnCuda(const at::Tensor& gate, const at::Tensor& up) {
  if (!CudaStepOpsEnabled() || !gate.is_cuda() || gate.scalar_type() != at::kBFloat16 ||
      up.scalar_type() != at::kBFloat16 || !gate.is_contiguous() || !up.is_contiguous() ||
      gate.sizes() != up.sizes()) {
    return false;
  }
  c10::cuda::CUDAGuard guard(gate.device().index());
  Check(cuda::SwiGluBf16(gate.data_ptr(), up.data_ptr(), gate.numel(),
                         c10::cuda::getCurrentCUDAStream(gate.device().index()).stream()),
        "swiglu kernel");
  return true;
}

bool StoreKvRowsOnCuda(const at::Tensor& k, const at::Tensor& v, const at::Tensor& rows, const at::Tensor& k_store,
                       const at::Tensor& v_store, bool q8) {
  const bool bf16 = Bf16Rows(k) && Bf16Rows(v);
  const at::ScalarType st = k_store.scalar_type();
  // What index_copy_ would have refused: the kernel writes where the arguments say (row
  // indices outside the store, on the device, it skips).
  if (k.dim() != 2 || k_store.dim() != 2) throw std::invalid_argument("KV store: k/v rows and stores are matrices");
  const int64_t kv_dim = k.size(1), width = q8 ? kv_dim / 32 * 34 : kv_dim;
  if (v.sizes() != k.sizes() || v_store.sizes() != k_store.sizes() ||
      k_store.size(1) != width || k_store.stride(1) != 1 || v_store.strides() != k_store.strides() ||
      v_store.scalar_type() != st || rows.scalar_type() != at::kLong || rows.numel() != k.size(0) ||
      k.device() != k_store.device() || v_store.device() != k.device() || v.device() != k.device() ||
      rows.device() != k.device() || !rows.is_contiguous() ||
      (q8 && kv_dim % 32 != 0)) {
    throw std::invalid_argument("KV store: k/v rows, the row indices and the layer's stores do not match");
  }
  if (!q8 && (!CudaStepOpsEnabled() || !bf16 || (st != at::kHalf && st != at::kFloat))) return false;
  c10::cuda::CUDAGuard guard(k.device().index());
  // Q8_0 has no libtorch form: other activations are made bf16 rows for the kernel.
  const at::Tensor kb = bf16 ? k : k.to(at::kBFloat16).contiguous();
  const at::Tensor vb = bf16 ? v : v.to(at::kBFloat16).contiguous();
  cuda::KvStoreArgs a;
  a.k = kb.data_ptr();
  a.v = vb.data_ptr();
  a.ldk = kb.stride(0);
  a.ldv = vb.stride(0);
  a.n = static_cast<int32_t>(kb.size(0));
  a.kv_dim = static_cast<int32_t>(kb.size(1));
  a.rows = rows.data_ptr<int64_t>();
  a.k_dst = static_cast<uint8_t*>(k_store.data_ptr());
  a.v_dst = static_cast<uint8_t*>(v_store.data_ptr());
  a.row_bytes = k_store.stride(0) * static_cast<int64_t>(k_store.element_size());
  a.store_rows = k_store.size(0);
  a.store = q8 ? cuda::KvStore::kQ8_0 : st == at::kHalf ? cuda::KvStore::kF16 : cuda::KvStore::kF32;
  Check(cuda::StoreKvRows(a, c10::cuda::getCurrentCUDAStream(k.device().index()).stream()), "KV store kernel");
  return true;
}

void PagedAttentionOnCuda(const at::Tensor& q, const at::Tensor& out, const at::Tensor& k, const at::Tensor& v,
                          bool q8, at::ScalarType store_dtype, const at::Tensor& ctx_rows, const at::Tensor& ctx_off,
                          const at::Tensor& ctx_len, int32_t n_head, int32_t n_head_kv, int32_t head_dim) {
  c10::cuda::CUDAGuard guard(q.device().index());
  const at::Tensor qb = q.to(at::kBFloat16).contiguous();
  const bool direct = out.scalar_type() == at::kBFloat16 && out.is_contiguous();
  at::Tensor o = direct ? out : at::empty(out.sizes(), qb.options());
  cuda::PagedAttentionArgs a;
  a.q = qb.data_ptr();
  a.out = o.data_ptr();
  a.k = static_cast<const uint8_t*>(k.data_ptr());
  a.v = static_cast<const uint8_t*>(v.data_ptr());
  a.row_bytes = k.size(1) * static_cast<int64_t>(k.element_size());
  a.store = q8 ? cuda::KvStore::kQ8_0 : store_dtype == at::kHalf ? cuda::KvStore::kF16 : cuda::KvStore::kF32;
  a.rows = ctx_rows.data_ptr<int32_t>();
  a.ctx_off = ctx_off.data_ptr<int32_t>();
  a.ctx_len = ctx_len.data_ptr<int32_t>();
  a.n = static_cast<int32_t>(qb.size(0));
  a.n_head = n_head;
  a.n_head_kv = n_head_kv;
  a.head_dim = head_dim;
  a.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  Check(cuda::PagedAttention(a, c10::cuda::getCurrentCUDAStream(q.device().index()).stream()), "paged attention kernel");
  if (!direct) out.copy_(o);
}

// --- CUDA graphs of decode steps (torch_row.h says which steps and how) ---

namespace {

// The calling thread's own stream on cuda:index, made once and kept for the thread's
// life: a capture cannot run on the legacy default stream, and a stream of c10's shared
// pool may be handed to another thread too, whose work would then land in the capture.
c10::cuda::CUDAStream ThreadStream(int index) {
  thread_local std::map<int, cudaStream_t> streams;
  cudaStream_t& s = streams[index];
  if (s == nullptr) {
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(index));
    C10_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  }
  return c10::cuda::getStreamFromExternal(s, static_cast<c10::DeviceIndex>(index));
}

// at::cuda::CUDAGraph with whether its capture ended (capture_end may throw before).
struct Graph : at::cuda::CUDAGraph {
  bool capture_ended() const { return capture_ended_; }
};

}  // namespace

// A workspace's recordings by token count on its thread's stream, all in one memory
// pool: their temporaries are dead between replays, and replays never overlap. The pool
// is held from construction to destruction, so that dropping every recording (a store
// or buffer change) does not free it under the next capture.
struct CudaGraphs {
  int index = 0;
  c10::cuda::CUDAStream stream;
  c10::MempoolId_t pool;
  std::map<int, std::unique_ptr<Graph>> graphs;
  explicit CudaGraphs(int i) : index(i), stream(ThreadStream(i)), pool(at::cuda::graph_pool_handle()) {
    c10::cuda::CUDACachingAllocator::createOrIncrefPool(static_cast<c10::DeviceIndex>(i), pool);
  }
  ~CudaGraphs() {
    graphs.clear();
    try {
      c10::cuda::CUDACachingAllocator::releasePool(static_cast<c10::DeviceIndex>(index), pool);
    } catch (const std::exception&) {
    }
  }
};

namespace {

std::atomic<int64_t> graphs_captured{0}, graphs_replayed{0}, graphs_failed{0};

// Ends the capture of `slot` on the right device and stream (capture_end checks both)
// and instantiates it; on failure drops it and puts back what capture_end left undone
// when it threw before ending (the stream's capture, the allocators' routing into the
// pool), then rethrows.
void EndCapture(CudaGraphs& g, int slot) {
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(g.index));
  c10::cuda::setCurrentCUDAStream(g.stream);
  auto it = g.graphs.find(slot);
  if (it == g.graphs.end()) throw std::runtime_error("no capture under way");
  try {
    it->second->capture_end();
  } catch (const std::exception&) {
    const bool ended = it->second->capture_ended();
    g.graphs.erase(it);
    if (!ended) {
      cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
      if (cudaStreamIsCapturing(g.stream.stream(), &st) == cudaSuccess && st != cudaStreamCaptureStatusNone) {
        cudaGraph_t partial = nullptr;
        if (cudaStreamEndCapture(g.stream.stream(), &partial) == cudaSuccess && partial != nullptr) {
          cudaGraphDestroy(partial);
        }
      }
      try {
        c10::cuda::CUDACachingAllocator::endAllocateToPool(static_cast<c10::DeviceIndex>(g.index), g.pool);
      } catch (const std::exception&) {
      }
      try {
        at::getHostAllocator(at::kCUDA)->end_allocate_to_pool(g.pool);
      } catch (const std::exception&) {
      }
    }
    (void)cudaGetLastError();
    throw;
  }
}

// Ends a capture whose recording is not wanted and drops it.
void AbortCapture(CudaGraphs& g, int slot) {
  if (g.graphs.count(slot) == 0) return;
  try {
    EndCapture(g, slot);
  } catch (const std::exception&) {
  }
  g.graphs.erase(slot);
}

void DropAllGraphs(TorchWorkspace& w) {
  if (w.graphs) w.graphs->graphs.clear();
  std::fill(std::begin(w.gin.seen), std::end(w.gin.seen), 0);
}

}  // namespace

GraphCounts TorchCudaGraphCounts() {
  GraphCounts c;
  c.captured = graphs_captured.load();
  c.replayed = graphs_replayed.load();
  c.failed = graphs_failed.load();
  return c;
}

void GraphStepStart(TorchWorkspace& w) {
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(w.device.index));
  if (!w.graphs) {
    w.graphs = std::make_shared<CudaGraphs>(w.device.index);
    // Work queued on the legacy default stream (which this non-blocking stream does not
    // wait for) comes first. Not a device synchronize: that would invalidate another
    // thread's capture.
    at::cuda::CUDAEvent queued;
    queued.record(c10::cuda::getDefaultCUDAStream(static_cast<c10::DeviceIndex>(w.device.index)));
    queued.block(w.graphs->stream);
  }
  c10::cuda::setCurrentCUDAStream(w.graphs->stream);
  if (w.mode == TorchWorkspace::Mode::kCapture) AbortCapture(*w.graphs, static_cast<int>(w.n));
}

void GraphWorkspaceFree(TorchWorkspace& w) {
  if (w.graphs && w.mode == TorchWorkspace::Mode::kCapture) AbortCapture(*w.graphs, static_cast<int>(w.n));
}

void SyncCurrentStream(int index) {
  c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(index)).synchronize();
}

bool IsGraphStep(const TorchWorkspace& w) {
  const int64_t n = w.n;
  if (!w.dev.is_cuda() || n < 1 || n > kMaxGraphTokens || static_cast<int64_t>(w.runs.size()) != n) return false;
  const TorchKv* kv = w.runs[0].kv;
  if (kv == nullptr || kv->n_blocks == 0) return false;
  for (const TorchRun& r : w.runs) {
    if (r.kv != kv || r.blocks == nullptr) return false;
  }
  const StepShape& s = w.shape;
  return s.head_dim <= 32 * cuda::kMaxLaneDims && s.n_head_kv > 0 && s.n_head % s.n_head_kv == 0;
}


// The fixed tensors a recording reads: rope angles, the store row each token writes,
// and the rows each attends over.
void GraphInputsIn(TorchWorkspace& w, const float* rope_cos, const float* rope_sin) {
  GraphInputs& g = w.gin;
  const TorchKv& kv = *w.runs[0].kv;
  const int64_t n = w.n, half = w.shape.rope_dim / 2;
  const int64_t store_rows = static_cast<int64_t>(kv.n_blocks) * kv.spec.block_tokens;
  if (g.store_id != kv.id || g.k != kv.k.data_ptr() || g.v != kv.v.data_ptr() || g.n_blocks != kv.n_blocks ||
      !g.cos.defined() ||
      g.cos.size(2) != half || g.cos.scalar_type() != w.dtype) {
    DropAllGraphs(w);
    g.store_id = kv.id;
    g.k = kv.k.data_ptr();
    g.v = kv.v.data_ptr();
    g.n_blocks = kv.n_blocks;
    g.epoch = w.epoch;
    const auto on = at::TensorOptions().device(w.dev);
    g.cos = at::empty({kMaxGraphTokens, 1, half}, on.dtype(w.dtype));
    g.sin = at::empty({kMaxGraphTokens, 1, half}, on.dtype(w.dtype));
    g.write = at::empty({kMaxGraphTokens}, on.dtype(at::kLong));
    g.ctx_rows = at::empty({kMaxGraphTokens * store_rows}, on.dtype(at::kInt));
    g.ctx_off = at::empty({kMaxGraphTokens}, on.dtype(at::kInt));
    g.ctx_len = at::empty({kMaxGraphTokens}, on.dtype(at::kInt));
  }
  if (g.epoch != w.epoch) {  // a step buffer moved: every recording points at the old one
    DropAllGraphs(w);
    g.epoch = w.epoch;
  }
  g.cos.narrow(0, 0, n).copy_(HostF32(rope_cos, {n, 1, half}));
  g.sin.narrow(0, 0, n).copy_(HostF32(rope_sin, {n, 1, half}));
  w.cos = g.cos.narrow(0, 0, n);
  w.sin = g.sin.narrow(0, 0, n);
  const int32_t bt = kv.spec.block_tokens;
  std::vector<int64_t> write(n);
  std::vector<int32_t> rows, off(n), len(n);
  for (int64_t t = 0; t < n; ++t) {
    const int32_t* blocks = w.runs[t].blocks;
    const int32_t p = w.pos[t];
    write[t] = static_cast<int64_t>(blocks[p / bt]) * bt + p % bt;
    off[t] = static_cast<int32_t>(rows.size());
    len[t] = p + 1;
    for (int32_t q = 0; q <= p; ++q) rows.push_back(blocks[q / bt] * bt + q % bt);
  }
  const auto i32 = at::TensorOptions().dtype(at::kInt);
  g.write.narrow(0, 0, n).copy_(at::tensor(write, at::TensorOptions().dtype(at::kLong)));
  g.ctx_rows.narrow(0, 0, static_cast<int64_t>(rows.size())).copy_(at::tensor(rows, i32));
  g.ctx_off.narrow(0, 0, n).copy_(at::tensor(off, i32));
  g.ctx_len.narrow(0, 0, n).copy_(at::tensor(len, i32));
}

absl::Status GraphLayersBegin(TorchWorkspace& w) {
  const int slot = static_cast<int>(w.n);
  if (w.graphs->graphs.count(slot) != 0) {
    w.mode = TorchWorkspace::Mode::kReplay;
    return absl::OkStatus();
  }
  if (w.gin.seen[slot] < kGraphWarmup) {  // eager first: cuBLAS handles, lazily loaded kernels
    ++w.gin.seen[slot];
    return absl::OkStatus();
  }
  try {
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(w.device.index));
    CudaGraphs& g = *w.graphs;
    c10::cuda::setCurrentCUDAStream(g.stream);
    g.graphs.erase(slot);
    auto graph = std::make_unique<Graph>();
    // Thread-local: other threads (other models' steps, loads) may use the GPU meanwhile.
    graph->capture_begin(g.pool, cudaStreamCaptureModeThreadLocal);
    g.graphs[slot] = std::move(graph);
    w.mode = TorchWorkspace::Mode::kCapture;
    w.capture_failed = false;
  } catch (const std::exception&) {
    ++graphs_failed;
    w.graphs_on = false;  // this step and the workspace's later ones run eagerly
  }
  return absl::OkStatus();
}

absl::Status GraphLayersEnd(TorchWorkspace& w) {
  const TorchWorkspace::Mode mode = w.mode;
  w.mode = TorchWorkspace::Mode::kEager;
  const int slot = static_cast<int>(w.n);
  if (mode == TorchWorkspace::Mode::kCapture) {
    std::string why = w.capture_error;
    if (w.capture_failed) {
      AbortCapture(*w.graphs, slot);
    } else {
      try {
        EndCapture(*w.graphs, slot);  // and instantiates
        ++graphs_captured;
      } catch (const std::exception& e) {
        why = std::string(TorchError("graph capture", e).message());
      }
    }
    if (w.graphs->graphs.count(slot) == 0) {
      ++graphs_failed;
      w.graphs_on = false;
      return absl::AbortedError(absl::StrCat("CUDA graph of a ", w.n, "-token step not recorded (", why,
                                             "): the step runs again without graphs, as will this workspace's next"));
    }
  }
  if (mode != TorchWorkspace::Mode::kEager) {
    INGOT_TORCH_TRY("graph replay", {
      c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(w.device.index));
      c10::cuda::setCurrentCUDAStream(w.graphs->stream);
      w.graphs->graphs.at(slot)->replay();
      ++graphs_replayed;
    })
  }
  return absl::OkStatus();
}


}  // namespace ingot::kernels
