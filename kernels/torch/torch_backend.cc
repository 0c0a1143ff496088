// The torch backend row: libtorch on cpu and cuda:N (DESIGN.md decisions 3 and 4).
// Dense weights go through at::linear (cuBLAS on CUDA, oneDNN/MKL on the CPU), 8-bit
// rows through _weight_int8pack_mm, 4-bit affine groups and GGML Q4_0/Q4_1 through the
// tinygemm int4 kernels (layout: weight_only_layout.h). On CUDA the other quantized
// representations (GGML blocks, 1-8 bit affine groups, NF4/FP4) stay as stored and go
// through ingot's fused dequantize-GEMV kernels (kernels/cuda, torch_cuda.cc;
// $INGOT_CUDA_QUANT_KERNELS picks the policy); anything else is dequantized once at
// upload to the compute dtype and says so. Attention is SDPA per sequence over
// a paged (layer, blocks * block_tokens, kv_dim) store, rows gathered by block table. Compute dtype: f32 on the CPU (matches the native
// row closely; f32 GEMM is also the faster dense path at decode sizes there), bf16 on
// CUDA. The int4/int8 weight-only kernels always get bf16 activations and bf16 scales:
// their f32 CPU paths are a slow fallback (measured here, [M,576]x[576,1536], 2 threads:
// int4 M=1 1.03 ms f32 vs 0.04 ms bf16, M=128 101 ms vs 1.4 ms; int8 M=1 0.95 vs 0.05 ms).
//
// The only ATen translation unit of the build besides torch_cuda.cc: it must not include
// spdlog or protobuf headers (the wheel bundles its own fmt/protobuf headers). Every
// entry catches exceptions and returns a Status.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/backend.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/ggml_types.h"
#include "kernels/torch/cuda_quant.h"
#include "kernels/torch/torch_row.h"
#include "kernels/torch/weight_only_layout.h"

namespace ingot::kernels {

#ifdef INGOT_WITH_CUDA
// kernels/torch/torch_cuda.cc
int CudaDeviceCount();
absl::StatusOr<MemoryStats> CudaMemory(int index);
absl::Status CudaSynchronize(int index);
#endif

absl::Status TorchError(const char* what, const std::exception& e) {
  std::string msg = e.what();
  // ATen appends a C++ backtrace after the first line; the first line says what failed.
  if (size_t nl = msg.find('\n'); nl != std::string::npos) msg.resize(nl);
  if (msg.find("out of memory") != std::string::npos) {
    return absl::ResourceExhaustedError(absl::StrCat("torch ", what, ": ", msg));
  }
  return absl::InternalError(absl::StrCat("torch ", what, ": ", msg));
}

absl::Status StepError(TorchWorkspace& w, const char* what, const std::exception& e) {
  if (w.mode == TorchWorkspace::Mode::kCapture) {
    w.capture_failed = true;
    w.capture_error = std::string(TorchError(what, e).message());
    return absl::OkStatus();
  }
  return TorchError(what, e);
}

uint64_t NextStoreId() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1);
}

namespace {

at::Device ToAt(const Device& d) {
  return d.kind == DeviceKind::kCuda ? at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(d.index))
                                     : at::Device(at::kCPU);
}
at::ScalarType ComputeDtype(const Device& d) { return d.kind == DeviceKind::kCuda ? at::kBFloat16 : at::kFloat; }
const char* DtypeName(at::ScalarType t) {
  return t == at::kBFloat16 ? "bf16" : t == at::kHalf ? "f16" : "f32";
}

int CudaCount() {
#ifdef INGOT_WITH_CUDA
  return CudaDeviceCount();
#else
  return 0;
#endif
}

absl::Status Available(const Device& device) {
  switch (device.kind) {
    case DeviceKind::kCpu: return absl::OkStatus();
    case DeviceKind::kCuda: {
#ifndef INGOT_WITH_CUDA
      return absl::FailedPreconditionError(absl::StrCat(
          "device ", device.Name(), " is not available: this ingotd was built without CUDA (configure with -DINGOT_CUDA=ON)"));
#else
      const int count = CudaCount();
      if (count == 0) {
        return absl::FailedPreconditionError(absl::StrCat(
            "device ", device.Name(), " is not available: no CUDA device is visible (no GPU or driver on this machine)"));
      }
      if (device.index >= count) {
        return absl::FailedPreconditionError(absl::StrCat("device ", device.Name(), " is not available: ", count,
                                                          " CUDA device(s) visible (cuda:0..cuda:", count - 1, ")"));
      }
      return absl::OkStatus();
#endif
    }
    case DeviceKind::kMps:
    case DeviceKind::kMlx:
      return absl::FailedPreconditionError(absl::StrCat("device ", device.Name(),
                                                        " is not available: Apple MPS/MLX devices are not part of "
                                                        "this Linux build"));
  }
  return absl::InvalidArgumentError("unknown device kind");
}

std::vector<Device> Devices() {
  std::vector<Device> out = {Device{DeviceKind::kCpu, 0}};
  const int count = CudaCount();
  for (int i = 0; i < std::max(count, 1); ++i) out.push_back(Device{DeviceKind::kCuda, i});
  return out;
}

void SetThreads(int n) {
  if (n > 0 && at::get_num_threads() != n) at::set_num_threads(n);
}

// --- weights ---

struct TorchLinear {
  enum class Kind { kDense, kInt8, kInt4, kQuant } kind = Kind::kDense;
  std::shared_ptr<CudaQuant> quant;  // kQuant: the representation on the device (CUDA only)
  at::Tensor w;       // dense (rows, cols) compute dtype | int8 (rows, cols) | int4 packed
  at::Tensor scale;   // int8: (rows) bf16
  at::Tensor sz;      // int4: (cols / group, rows, 2) scales and zeros, bf16
  at::Tensor order;   // (cols) int64: gather x[:, order] first (act-order); undefined if none
  int64_t group = 0;
  bool cuda = false;
};

struct TorchVector {
  at::Tensor v;  // (n) compute dtype
};

int64_t Bytes(const at::Tensor& t) { return t.defined() ? static_cast<int64_t>(t.nbytes()) : 0; }

// tinygemm's CUDA packing takes innerKTiles in {2, 4, 8} with cols % (16 * innerKTiles) == 0.
int InnerKTiles(int64_t cols) {
  for (int k : {8, 4, 2}) {
    if (cols % (16 * k) == 0) return k;
  }
  return 0;
}

// Which quantized weights on CUDA stay in their representation for ingot's fused
// kernels (kernels/cuda/quant_gemv.cu), from $INGOT_CUDA_QUANT_KERNELS:
//   auto (default)  those libtorch has no good kernel for: everything but tinygemm's
//                   int4 forms. Int8 rows too: libtorch 2.11's CUDA _weight_int8pack_mm
//                   is a one-thread-per-output loop over K (aten/src/ATen/native/cuda/
//                   int8mm.cu), far from the bandwidth a decode step needs
//   torch           libtorch's int4 (tinygemm) and int8 (int8pack) kernels where they
//                   take the weight, ingot's for the rest (the benchmark's baseline)
//   all             every one the kernels serve, ahead of tinygemm int4 / int8pack
//   off             none: expanded to bf16 on the GPU at upload
enum class QuantKernels { kAuto, kTorch, kAll, kOff };
QuantKernels QuantKernelsMode() {
  const char* env = std::getenv("INGOT_CUDA_QUANT_KERNELS");
  const std::string v = env != nullptr ? env : "";
  return v == "all"     ? QuantKernels::kAll
         : v == "off"   ? QuantKernels::kOff
         : v == "torch" ? QuantKernels::kTorch
                        : QuantKernels::kAuto;
}

absl::StatusOr<Placed> UploadLinear(const Device& device, const Linear& w) {
  if (absl::Status s = Available(device); !s.ok()) return s;
  INGOT_TORCH_TRY("upload", {
    const at::Device dev = ToAt(device);
    const at::ScalarType dtype = ComputeDtype(device);
    auto t = std::make_shared<TorchLinear>();
    t->cuda = device.kind == DeviceKind::kCuda;
    const int64_t rows = w.rows(), cols = w.cols();
    Placed p;
    std::string why_not;
    if (w.kind == LinearKind::kAffine && w.input_order != nullptr) {
      std::vector<int64_t> order(w.input_order, w.input_order + cols);
      t->order = at::tensor(order, at::TensorOptions().dtype(at::kLong)).to(dev);
    }
    // On CUDA: the representation itself, multiplied by ingot's kernels (returns false
    // with the reason in cuda_why_not when they do not serve it).
    std::string cuda_why_not;
    const QuantKernels mode = t->cuda ? QuantKernelsMode() : QuantKernels::kOff;
    auto keep_quantized = [&]() -> bool {
#ifdef INGOT_WITH_CUDA
      auto q = std::make_shared<CudaQuant>();
      if (std::string why = UploadQuantOnCuda(w, device.index, q.get()); !why.empty()) {
        cuda_why_not = why;
        return false;
      }
      t->kind = TorchLinear::Kind::kQuant;
      p.representation = w.kind == LinearKind::kAffine     ? absl::StrCat("affine", w.affine.bits, "/g", w.affine.group)
                         : w.kind == LinearKind::kCodebook ? absl::StrCat(w.codebook.book == Codebook::kNF4 ? "nf4" : "fp4",
                                                                          "/b", w.codebook.block)
                                                           : std::string(cuda::QuantFormatName(q->format));
      p.note = "kept quantized: ingot CUDA kernels";
      t->quant = std::move(q);
      return true;
#else
      return false;
#endif
    };
    Int8Layout i8;
    Int4Layout i4;
    std::string int8_reason;
    // 8-bit affine rows (torchao int8 weight-only, LLM.int8): ingot's kernel in auto.
    const bool int8_rows = w.kind == LinearKind::kAffine && w.affine.bits == 8;
    if ((mode == QuantKernels::kAll || (mode == QuantKernels::kAuto && int8_rows)) && keep_quantized()) {
      // served by the fused kernels
    } else if (int8_reason = ToInt8Layout(w, &i8); int8_reason.empty()) {
      t->kind = TorchLinear::Kind::kInt8;
      t->w = at::from_blob(i8.codes.data(), {rows, cols}, at::TensorOptions().dtype(at::kChar)).to(dev).clone();
      t->scale = HostF32(i8.scale.data(), {rows}).to(dev, at::kBFloat16).clone();
      p.representation = "int8pack/row";
    } else if (std::string int4_reason = ToInt4Layout(w, &i4); int4_reason.empty()) {
      try {
        const int64_t groups = cols / i4.group;
        at::Tensor codes = at::from_blob(i4.codes.data(), {rows, cols}, at::TensorOptions().dtype(at::kByte));
        if (t->cuda) {
          const int ik = InnerKTiles(cols);
          if (ik == 0) throw std::runtime_error(absl::StrCat("cols ", cols, " is not a multiple of 32"));
          // Two codes per byte, even column in the high nibble (tinygemm's CUDA input).
          at::Tensor even = codes.slice(1, 0, cols, 2).to(at::kInt), odd = codes.slice(1, 1, cols, 2).to(at::kInt);
          at::Tensor packed = (even.bitwise_left_shift(4).bitwise_or(odd)).to(at::kByte).to(dev);
          t->w = at::_convert_weight_to_int4pack(packed, ik);
        } else {
          t->w = at::_convert_weight_to_int4pack_for_cpu(codes.to(at::kInt), 1);
        }
        at::Tensor s = HostF32(i4.scale.data(), {groups, rows}), z = HostF32(i4.zero.data(), {groups, rows});
        t->sz = at::stack({s, z}, -1).to(dev, at::kBFloat16).contiguous();
        t->group = i4.group;
        t->kind = TorchLinear::Kind::kInt4;
        p.representation = absl::StrCat("int4pack/g", i4.group);
      } catch (const std::exception& e) {
        std::string msg = e.what();
        if (size_t nl = msg.find('\n'); nl != std::string::npos) msg.resize(nl);
        why_not = absl::StrCat("int4 kernels refuse this shape (", msg, ")");
      }
    } else {
      why_not = int4_reason;
    }
    if (t->kind == TorchLinear::Kind::kDense) {
      if (w.kind == LinearKind::kGgml &&
          (w.ggml.type == GgmlType::kF32 || w.ggml.type == GgmlType::kF16 || w.ggml.type == GgmlType::kBF16)) {
        const at::ScalarType src = w.ggml.type == GgmlType::kF32   ? at::kFloat
                                   : w.ggml.type == GgmlType::kF16 ? at::kHalf
                                                                   : at::kBFloat16;
        at::Tensor host = at::from_blob(const_cast<uint8_t*>(w.ggml.data), {rows, cols},
                                        {static_cast<int64_t>(w.ggml.row_bytes / at::elementSize(src)), 1},
                                        at::TensorOptions().dtype(src));
        t->w = host.to(dev, dtype).contiguous();
        if (t->w.data_ptr() == host.data_ptr()) t->w = t->w.clone();  // never alias the mapping
        if (src != dtype) p.note = absl::StrCat("converted from ", DtypeName(src), " for backend torch");
        p.representation = DtypeName(dtype);
      } else if ((mode == QuantKernels::kAuto || mode == QuantKernels::kTorch) && keep_quantized()) {
        // no libtorch kernel for it: ingot's
      } else {
        bool stored_order = false;
#ifdef INGOT_WITH_CUDA
        if (t->cuda) {
          // Expanded on the GPU from the stored representation (the kernels' decoders),
          // columns in stored order (the act-order gather stays).
          CudaQuant q;
          if (UploadQuantOnCuda(w, device.index, &q).empty()) {
            t->w = QuantToBf16OnCuda(q, device.index);
            stored_order = true;
          }
        }
#endif
        if (!t->w.defined()) {
          std::vector<float> dense = DequantizeAll(w);
          t->w = HostF32(dense.data(), {rows, cols}).to(dev, dtype).clone();
        }
        if (!stored_order) t->order = at::Tensor();  // dequantized in the input's own order
        p.note = absl::StrCat("dequantized for backend torch (", why_not, " has no libtorch kernel",
                              cuda_why_not.empty() ? "" : "; ", cuda_why_not, ")");
        p.representation = DtypeName(dtype);
      }
    }
    p.bytes = Bytes(t->w) + Bytes(t->scale) + Bytes(t->sz) + Bytes(t->order) + (t->quant ? t->quant->bytes : 0);
#ifdef INGOT_WITH_CUDA
    if (t->cuda) SyncCurrentStream(device.index);  // a step may run on another thread's stream
#endif
    p.handle = std::move(t);
    return p;
  })
}

absl::StatusOr<Placed> UploadVector(const Device& device, const float* v, int64_t n) {
  if (absl::Status s = Available(device); !s.ok()) return s;
  INGOT_TORCH_TRY("upload", {
    auto t = std::make_shared<TorchVector>();
    t->v = HostF32(v, {n}).to(ToAt(device), ComputeDtype(device)).clone();
#ifdef INGOT_WITH_CUDA
    if (device.kind == DeviceKind::kCuda) SyncCurrentStream(device.index);
#endif
    Placed p;
    p.representation = DtypeName(ComputeDtype(device));
    p.bytes = Bytes(t->v);
    p.handle = std::move(t);
    return p;
  })
}

// --- KV stores ---

absl::StatusOr<void*> NewKv(const Device& device, const KvSpec& spec) {
  if (absl::Status s = Available(device); !s.ok()) return s;
  const bool q8 = spec.dtype == KvDtype::kQ8_0;
  if (q8 && device.kind != DeviceKind::kCuda) {
    return absl::InvalidArgumentError(
        "kv_cache_dtype q8_0 is served by backend native on cpu and by torch on cuda (ingot's paged attention "
        "kernel); torch on cpu stores f32 or f16");
  }
  if (q8 && spec.kv_dim % 32 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("kv_cache_dtype q8_0 needs kv_dim % 32 == 0 (kv_dim ", spec.kv_dim, ")"));
  }
  auto* kv = new TorchKv();
  kv->spec = spec;
  kv->dev = ToAt(device);
  kv->q8 = q8;
  kv->dtype = q8 ? at::kByte : spec.dtype == KvDtype::kF16 ? at::kHalf : at::kFloat;
  kv->width = q8 ? KvRowBytes(spec.dtype, spec.kv_dim) : spec.kv_dim;
  return kv;
}

absl::StatusOr<int32_t> ReserveKv(void* p, int32_t blocks) {
  auto* kv = static_cast<TorchKv*>(p);
  if (blocks <= kv->n_blocks) return kv->n_blocks;
  INGOT_TORCH_TRY("kv reserve", {
    const int64_t rows = static_cast<int64_t>(blocks) * kv->spec.block_tokens;
    auto opts = at::TensorOptions().device(kv->dev).dtype(kv->dtype);
    at::Tensor k = at::empty({kv->spec.n_layer, rows, kv->width}, opts);
    at::Tensor v = at::empty({kv->spec.n_layer, rows, kv->width}, opts);
    if (kv->n_blocks > 0) {
      const int64_t old = static_cast<int64_t>(kv->n_blocks) * kv->spec.block_tokens;
      k.narrow(1, 0, old).copy_(kv->k);
      v.narrow(1, 0, old).copy_(kv->v);
    }
    kv->k = std::move(k);
    kv->v = std::move(v);
    kv->n_blocks = blocks;
    return blocks;
  })
}

absl::Status CopyKvBlock(void* p, int32_t src, int32_t dst, int32_t tokens) {
  auto* kv = static_cast<TorchKv*>(p);
  INGOT_TORCH_TRY("kv copy", {
    const int64_t bt = kv->spec.block_tokens;
    kv->k.narrow(1, dst * bt, tokens).copy_(kv->k.narrow(1, src * bt, tokens));
    kv->v.narrow(1, dst * bt, tokens).copy_(kv->v.narrow(1, src * bt, tokens));
    return absl::OkStatus();
  })
}

void FreeKv(void* p) { delete static_cast<TorchKv*>(p); }
int64_t KvBytes(const void* p) {
  const auto* kv = static_cast<const TorchKv*>(p);
  return Bytes(kv->k) + Bytes(kv->v);
}

// --- a step ---

TorchWorkspace& W(void* ws) { return *static_cast<TorchWorkspace*>(ws); }

void* NewWorkspace(const Device& device) {
  auto* w = new TorchWorkspace();
  w->device = device;
  w->dev = ToAt(device);
  w->dtype = ComputeDtype(device);
#ifdef INGOT_WITH_CUDA
  const char* graphs = std::getenv("INGOT_CUDA_GRAPHS");
  w->graphs_on = device.kind == DeviceKind::kCuda && graphs != nullptr &&
                 (std::string(graphs) == "1" || std::string(graphs) == "on");
#endif
  return w;
}
void FreeWorkspace(void* ws) {
#ifdef INGOT_WITH_CUDA
  GraphWorkspaceFree(W(ws));
#endif
  delete static_cast<TorchWorkspace*>(ws);
}

absl::Status Begin(void* ws, const StepShape& shape, const float* x_host, const float* rope_cos,
                   const float* rope_sin, const StepToken* tokens, int64_t n) {
  TorchWorkspace& w = W(ws);
  INGOT_TORCH_TRY("begin", {
#ifdef INGOT_WITH_CUDA
    if (w.graphs_on) GraphStepStart(w);
#endif
    w.mode = TorchWorkspace::Mode::kEager;
    w.capture_failed = false;
    if (shape.n_embd != w.shape.n_embd || shape.n_ff != w.shape.n_ff || shape.q_dim() != w.shape.q_dim() ||
        shape.kv_dim() != w.shape.kv_dim() || shape.vocab != w.shape.vocab) {
      for (at::Tensor& t : w.buf) t = at::Tensor();
      ++w.epoch;
    }
    w.shape = shape;
    w.n = n;
    w.pos.resize(n);
    w.runs.clear();
    for (int64_t t = 0; t < n; ++t) {
      w.pos[t] = tokens[t].pos;
      auto* kv = static_cast<TorchKv*>(tokens[t].kv);
      if (!w.runs.empty() && w.runs.back().kv == kv && w.runs.back().blocks == tokens[t].blocks) {
        TorchRun& r = w.runs.back();
        r.last = std::max(r.last, tokens[t].pos);
        ++r.len;
      } else {
        w.runs.push_back(TorchRun{t, 1, kv, tokens[t].blocks, tokens[t].pos});
      }
    }
    w.graph_step = false;
#ifdef INGOT_WITH_CUDA
    w.graph_step = w.graphs_on && IsGraphStep(w);
#endif
    // Graph steps of every size share one allocation of the step buffers.
    const int64_t cap = w.graph_step ? kMaxGraphTokens : n;
    for (int b = 0; b < kBufCount; ++b) {
      if (static_cast<Buf>(b) != Buf::kHidden && static_cast<Buf>(b) != Buf::kLogits) w.Ensure(static_cast<Buf>(b), cap);
    }
    w.B(Buf::kX, n).copy_(HostF32(x_host, {n, shape.n_embd}));
#ifdef INGOT_WITH_CUDA
    if (w.graph_step) {
      GraphInputsIn(w, rope_cos, rope_sin);
      return absl::OkStatus();
    }
#endif
    const int64_t half = shape.rope_dim / 2;
    w.cos = HostF32(rope_cos, {n, 1, half}).to(w.dev, w.dtype);
    w.sin = HostF32(rope_sin, {n, 1, half}).to(w.dev, w.dtype);
    // Store rows through the block tables: written rows per token, read rows 0..last.
    std::vector<int64_t> idx;
    for (TorchRun& r : w.runs) {
      if (r.kv == nullptr || r.blocks == nullptr) continue;  // a step without attention (tests)
      const int32_t bt = r.kv->spec.block_tokens;
      auto row = [&](int32_t p) { return static_cast<int64_t>(r.blocks[p / bt]) * bt + p % bt; };
      idx.resize(r.len);
      for (int64_t i = 0; i < r.len; ++i) idx[i] = row(w.pos[r.t0 + i]);
      r.write = at::tensor(idx, at::TensorOptions().dtype(at::kLong)).to(w.dev);
      idx.resize(r.last + 1);
      for (int32_t p = 0; p <= r.last; ++p) idx[p] = row(p);
      r.read = at::tensor(idx, at::TensorOptions().dtype(at::kLong)).to(w.dev);
    }
    // ingot's paged attention on CUDA: for a q8_0 store (libtorch has no 8-bit
    // attention), or every store with $INGOT_CUDA_ATTENTION=ingot.
    w.paged_kernel = false;
    if (w.dev.is_cuda()) {
      const char* env = std::getenv("INGOT_CUDA_ATTENTION");
      const bool want = env != nullptr && std::string(env) == "ingot";
      for (const TorchRun& r : w.runs) w.paged_kernel |= r.kv != nullptr && r.blocks != nullptr && (r.kv->q8 || want);
    }
    if (w.paged_kernel) {
      std::vector<int32_t> rows, off(n), len(n);
      for (const TorchRun& r : w.runs) {
        if (r.kv == nullptr || r.blocks == nullptr) continue;
        const int32_t bt = r.kv->spec.block_tokens, base = static_cast<int32_t>(rows.size());
        for (int32_t p = 0; p <= r.last; ++p) rows.push_back(r.blocks[p / bt] * bt + p % bt);
        for (int64_t i = 0; i < r.len; ++i) {
          off[r.t0 + i] = base;
          len[r.t0 + i] = w.pos[r.t0 + i] + 1;
        }
      }
      auto i32 = at::TensorOptions().dtype(at::kInt);
      w.ctx_rows = at::tensor(rows, i32).to(w.dev);
      w.ctx_off = at::tensor(off, i32).to(w.dev);
      w.ctx_len = at::tensor(len, i32).to(w.dev);
    }
    return absl::OkStatus();
  })
}

absl::Status RmsNorm(void* ws, Buf in, Buf out, int64_t rows, const float*, const void* w_placed, float eps) {
  TorchWorkspace& w = W(ws);
  INGOT_TORCH_STEP(w, "rms_norm", {
    const at::Tensor& weight = static_cast<const TorchVector*>(w_placed)->v;
#ifdef INGOT_WITH_CUDA
    if (RmsNormOnCuda(w.B(in, rows), weight, w.B(out, rows), eps)) return absl::OkStatus();
#endif
    w.B(out, rows).copy_(at::rms_norm(w.B(in, rows), {w.shape.n_embd}, weight, static_cast<double>(eps)));
    return absl::OkStatus();
  })
}

#ifdef INGOT_WITH_CUDA
// Jobs over one input, each a weight kept in its representation with no bias or column
// order, as one launch of ingot's kernels (swiglu: gate/up ending in SwiGLU). false:
// not this case, nothing done.
bool GroupOnCuda(TorchWorkspace& w, const LinearJob* jobs, int n_jobs, int64_t rows, bool swiglu) {
  if (!w.dev.is_cuda() || n_jobs < 2 || n_jobs > cuda::kMaxGemvGroup) return false;
  const CudaQuant* q[cuda::kMaxGemvGroup];
  at::Tensor out[cuda::kMaxGemvGroup];
  for (int j = 0; j < n_jobs; ++j) {
    const auto* t = static_cast<const TorchLinear*>(jobs[j].placed);
    if (t == nullptr || t->kind != TorchLinear::Kind::kQuant || t->order.defined() || jobs[j].bias_placed != nullptr ||
        jobs[j].in != jobs[0].in) {
      return false;
    }
    q[j] = t->quant.get();
    out[j] = w.B(jobs[j].out, rows);
  }
  return QuantLinearGroupOnCuda(w.B(jobs[0].in, rows), q, out, n_jobs, swiglu);
}
#endif

absl::Status LinearOp(void* ws, ThreadPool& pool, const LinearJob* jobs, int n_jobs, int64_t rows) {
  TorchWorkspace& w = W(ws);
  if (w.dev.is_cpu()) SetThreads(pool.size());
  INGOT_TORCH_STEP(w, "linear", {
#ifdef INGOT_WITH_CUDA
    if (GroupOnCuda(w, jobs, n_jobs, rows, /*swiglu=*/false)) return absl::OkStatus();
#endif
    for (int j = 0; j < n_jobs; ++j) {
      const LinearJob& job = jobs[j];
      const auto* t = static_cast<const TorchLinear*>(job.placed);
      // Thrown, not returned: inside a capture it must end the recording (StepError).
      if (t == nullptr) throw std::runtime_error("weight was not uploaded to this backend");
      at::Tensor x = w.B(job.in, rows);
      if (t->order.defined()) x = x.index_select(1, t->order);
      // The dense and ingot-kernel paths write the step's buffer in place (one kernel
      // per layer, not a GEMM and a copy); libtorch's int8/int4 ops have no out= form.
      at::Tensor out = w.B(job.out, rows);
      at::Tensor y;
      switch (t->kind) {
        case TorchLinear::Kind::kDense:
          if (x.scalar_type() == t->w.scalar_type() && out.scalar_type() == t->w.scalar_type()) {
            at::mm_out(out, x, t->w.t());
          } else {
            y = at::linear(x, t->w);
          }
          break;
        case TorchLinear::Kind::kInt8:
          y = at::_weight_int8pack_mm(x.to(at::kBFloat16).contiguous(), t->w, t->scale);
          break;
        case TorchLinear::Kind::kQuant:
#ifdef INGOT_WITH_CUDA
          QuantLinearOnCuda(x, *t->quant, out);
          break;
#else
          throw std::runtime_error("a CUDA-kept weight in a build without CUDA");
#endif
        case TorchLinear::Kind::kInt4: {
          const at::Tensor xb = x.to(at::kBFloat16).contiguous();
          y = t->cuda ? at::_weight_int4pack_mm(xb, t->w, t->group, t->sz)
                      : at::_weight_int4pack_mm_for_cpu(xb, t->w, t->group, t->sz);
          break;
        }
      }
      if (y.defined()) {
        if (job.bias_placed != nullptr) y.add_(static_cast<const TorchVector*>(job.bias_placed)->v);
        out.copy_(y);
      } else if (job.bias_placed != nullptr) {
        out.add_(static_cast<const TorchVector*>(job.bias_placed)->v);
      }
    }
    return absl::OkStatus();
  })
}

void RotateHeads(TorchWorkspace& w, Buf b, int32_t heads) {
  const StepShape& s = w.shape;
  const int64_t half = s.rope_dim / 2;
  at::Tensor r = w.B(b, w.n).view({w.n, heads, s.head_dim}).narrow(2, 0, s.rope_dim);
  at::Tensor a, c;
  if (s.rope_neox) {
    a = r.narrow(2, 0, half);
    c = r.narrow(2, half, half);
  } else {
    at::Tensor pairs = r.unflatten(2, {half, 2});
    a = pairs.select(3, 0);
    c = pairs.select(3, 1);
  }
  at::Tensor na = a * w.cos - c * w.sin;
  at::Tensor nc = a * w.sin + c * w.cos;
  a.copy_(na);
  c.copy_(nc);
}

absl::Status RopeOp(void* ws) {
  TorchWorkspace& w = W(ws);
  INGOT_TORCH_STEP(w, "rope", {
#ifdef INGOT_WITH_CUDA
    const StepShape& s = w.shape;
    if (RopeOnCuda(w.B(Buf::kQ, w.n), s.n_head, w.B(Buf::kK, w.n), s.n_head_kv, s.head_dim, s.rope_dim, s.rope_neox,
                   w.cos, w.sin)) {
      return absl::OkStatus();
    }
#endif
    RotateHeads(w, Buf::kQ, w.shape.n_head);
    RotateHeads(w, Buf::kK, w.shape.n_head_kv);
    return absl::OkStatus();
  })
}

// Rows `write` of one layer's stores ks/vs = k/v: ingot's KV store kernel on CUDA (one
// launch for both, Q8_0 included), index_copy_ in the store's dtype otherwise.
void StoreStepKv(const TorchWorkspace& w, const TorchKv& kv, const at::Tensor& k, const at::Tensor& v,
                 const at::Tensor& write, at::Tensor& ks, at::Tensor& vs) {
#ifdef INGOT_WITH_CUDA
  if (w.dev.is_cuda() && StoreKvRowsOnCuda(k, v, write, ks, vs, kv.q8)) return;
#endif
  ks.index_copy_(0, write, k.to(kv.dtype));
  vs.index_copy_(0, write, v.to(kv.dtype));
}

absl::Status AttentionOp(void* ws, ThreadPool&, int32_t layer) {
  TorchWorkspace& w = W(ws);
  INGOT_TORCH_STEP(w, "attention", {
    const StepShape& s = w.shape;
    const int64_t hd = s.head_dim;
    at::Tensor q_all = w.B(Buf::kQ, w.n), k_all = w.B(Buf::kK, w.n), v_all = w.B(Buf::kV, w.n);
    at::Tensor out_all = w.B(Buf::kAttn, w.n);
#ifdef INGOT_WITH_CUDA
    if (w.graph_step) {  // every token its own sequence in one store: one store, one kernel
      TorchKv& kv = *w.runs[0].kv;
      at::Tensor ks = kv.k.select(0, layer), vs = kv.v.select(0, layer);
      const at::Tensor write = w.gin.write.narrow(0, 0, w.n);
      StoreStepKv(w, kv, k_all, v_all, write, ks, vs);
      PagedAttentionOnCuda(q_all, out_all, ks, vs, kv.q8, kv.dtype, w.gin.ctx_rows, w.gin.ctx_off.narrow(0, 0, w.n),
                           w.gin.ctx_len.narrow(0, 0, w.n), s.n_head, s.n_head_kv, static_cast<int32_t>(hd));
      return absl::OkStatus();
    }
#endif
    for (const TorchRun& r : w.runs) {
      TorchKv& kv = *r.kv;
      at::Tensor ks = kv.k.select(0, layer), vs = kv.v.select(0, layer);  // (rows, width)
      StoreStepKv(w, kv, k_all.narrow(0, r.t0, r.len), v_all.narrow(0, r.t0, r.len), r.write, ks, vs);
      if (w.paged_kernel) {
#ifdef INGOT_WITH_CUDA
        PagedAttentionOnCuda(q_all.narrow(0, r.t0, r.len), out_all.narrow(0, r.t0, r.len), ks, vs, kv.q8, kv.dtype,
                             w.ctx_rows, w.ctx_off.narrow(0, r.t0, r.len), w.ctx_len.narrow(0, r.t0, r.len), s.n_head,
                             s.n_head_kv, static_cast<int32_t>(hd));
        continue;
#endif
      }
      const int64_t len = r.last + 1;
      at::Tensor kr = ks.index_select(0, r.read).to(w.dtype), vr = vs.index_select(0, r.read).to(w.dtype);
      // (1, heads, tokens, head_dim)
      at::Tensor q = q_all.narrow(0, r.t0, r.len).view({r.len, s.n_head, hd}).transpose(0, 1).unsqueeze(0);
      at::Tensor k = kr.view({len, s.n_head_kv, hd}).transpose(0, 1).unsqueeze(0);
      at::Tensor v = vr.view({len, s.n_head_kv, hd}).transpose(0, 1).unsqueeze(0);
      std::optional<at::Tensor> mask;
      if (r.len > 1) {
        std::vector<int64_t> qpos(r.len);
        for (int64_t i = 0; i < r.len; ++i) qpos[i] = w.pos[r.t0 + i];
        at::Tensor qp = at::tensor(qpos, at::TensorOptions().dtype(at::kLong)).to(w.dev).unsqueeze(1);
        mask = at::arange(len, at::TensorOptions().device(w.dev).dtype(at::kLong)).unsqueeze(0).le(qp);
      }
      at::Tensor o = at::scaled_dot_product_attention(q, k, v, mask, 0.0, false, std::nullopt,
                                                      /*enable_gqa=*/s.n_head != s.n_head_kv);
      out_all.narrow(0, r.t0, r.len).copy_(o.squeeze(0).transpose(0, 1).reshape({r.len, s.q_dim()}));
    }
    return absl::OkStatus();
  })
}

absl::Status Add(void* ws, Buf y, Buf x, int64_t rows) {
  TorchWorkspace& w = W(ws);
  INGOT_TORCH_STEP(w, "add", {
    w.B(y, rows).add_(w.B(x, rows));
    return absl::OkStatus();
  })
}

// y += x, then out = RMSNorm(y): one kernel on CUDA (the residual add and the next
// norm), the two ops otherwise.
absl::Status AddRmsNormOp(void* ws, Buf y, Buf x, int64_t rows, Buf out, const float* norm, const void* norm_placed,
                          float eps) {
#ifdef INGOT_WITH_CUDA
  TorchWorkspace& w = W(ws);
  {
    INGOT_TORCH_STEP(w, "add_rms_norm", {
      const at::Tensor& weight = static_cast<const TorchVector*>(norm_placed)->v;
      if (AddRmsNormOnCuda(w.B(y, rows), w.B(x, rows), weight, w.B(out, rows), eps)) return absl::OkStatus();
    })
  }
#endif
  if (absl::Status s = Add(ws, y, x, rows); !s.ok()) return s;
  return RmsNorm(ws, y, out, rows, norm, norm_placed, eps);
}

absl::Status SwiGluOp(void* ws) {
  TorchWorkspace& w = W(ws);
  INGOT_TORCH_STEP(w, "swiglu", {
    at::Tensor g = w.B(Buf::kGate, w.n);
#ifdef INGOT_WITH_CUDA
    if (SwiGluOnCuda(g, w.B(Buf::kUp, w.n))) return absl::OkStatus();
#endif
    at::silu_(g);
    g.mul_(w.B(Buf::kUp, w.n));
    return absl::OkStatus();
  })
}

// Gate and up over one input, then SwiGLU: one kernel on CUDA where ingot's kernels hold
// both weights, the three ops otherwise.
absl::Status LinearSwiGluOp(void* ws, ThreadPool& pool, const LinearJob* gate_up, int64_t rows) {
#ifdef INGOT_WITH_CUDA
  TorchWorkspace& w = W(ws);
  {
    INGOT_TORCH_STEP(w, "linear_swiglu", {
      if (gate_up[0].out == Buf::kGate && GroupOnCuda(w, gate_up, 2, rows, /*swiglu=*/true)) return absl::OkStatus();
    })
  }
#endif
  if (absl::Status s = LinearOp(ws, pool, gate_up, 2, rows); !s.ok()) return s;
  return SwiGluOp(ws);
}

// Host traffic cannot be part of a recording (layers_begin promised there is none).
absl::Status NotRecording(const TorchWorkspace& w, const char* what) {
  if (w.mode == TorchWorkspace::Mode::kEager) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("torch ", what, " between layers_begin and layers_end (a recorded step has no host traffic)"));
}

absl::Status GatherRows(void* ws, Buf in, Buf out, const int64_t* rows, int64_t m) {
  TorchWorkspace& w = W(ws);
  if (absl::Status s = NotRecording(w, "gather_rows"); !s.ok()) return s;
  INGOT_TORCH_TRY("gather", {
    w.m = m;
    w.Ensure(out, std::max<int64_t>(m, 1));
    if (out == Buf::kHidden) w.Ensure(Buf::kLogits, std::max<int64_t>(m, 1));
    std::vector<int64_t> idx(rows, rows + m);
    at::Tensor it = at::tensor(idx, at::TensorOptions().dtype(at::kLong)).to(w.dev);
    w.B(out, m).copy_(w.B(in, w.n).index_select(0, it));
    return absl::OkStatus();
  })
}

absl::Status WriteRows(void* ws, Buf b, const float* host, int64_t rows) {
  TorchWorkspace& w = W(ws);
  if (absl::Status s = NotRecording(w, "write_rows"); !s.ok()) return s;
  INGOT_TORCH_TRY("write", {
    w.Ensure(b, rows);
    w.B(b, rows).copy_(HostF32(host, {rows, w.shape.Cols(b)}));
    return absl::OkStatus();
  })
}

absl::StatusOr<const float*> ReadRows(void* ws, Buf b, int64_t rows, std::vector<float>* scratch) {
  TorchWorkspace& w = W(ws);
  if (absl::Status s = NotRecording(w, "read_rows"); !s.ok()) return s;
  INGOT_TORCH_TRY("read", {
    at::Tensor t = w.B(b, rows);
    if (w.dev.is_cpu() && w.dtype == at::kFloat && t.is_contiguous()) return t.data_ptr<float>();
    at::Tensor host = t.to(at::kCPU, at::kFloat).contiguous();
    scratch->resize(static_cast<size_t>(host.numel()));
    std::memcpy(scratch->data(), host.data_ptr<float>(), scratch->size() * sizeof(float));
    return scratch->data();
  })
}

// Recording a step's layers: CUDA graphs (torch_cuda.cc); nothing on the CPU.
absl::Status LayersBegin(void* ws) {
#ifdef INGOT_WITH_CUDA
  if (W(ws).graph_step && W(ws).graphs_on) return GraphLayersBegin(W(ws));
#endif
  return absl::OkStatus();
}

absl::Status LayersEnd(void* ws) {
#ifdef INGOT_WITH_CUDA
  return GraphLayersEnd(W(ws));
#else
  return absl::OkStatus();
#endif
}

absl::StatusOr<MemoryStats> Memory(const Device& device) {
  if (absl::Status s = Available(device); !s.ok()) return s;
  if (device.kind == DeviceKind::kCuda) {
#ifdef INGOT_WITH_CUDA
    return CudaMemory(device.index);
#endif
  }
  return NativeBackend().memory(device);
}

absl::Status Synchronize(const Device& device) {
#ifdef INGOT_WITH_CUDA
  if (device.kind == DeviceKind::kCuda) return CudaSynchronize(device.index);
#endif
  return absl::OkStatus();
}

const Backend kTorch = {
    .name = "torch",
    .available = Available,
    .devices = Devices,
    .upload_linear = UploadLinear,
    .upload_vector = UploadVector,
    .new_workspace = NewWorkspace,
    .free_workspace = FreeWorkspace,
    .begin = Begin,
    .rms_norm = RmsNorm,
    .linear = LinearOp,
    .rope = RopeOp,
    .attention = AttentionOp,
    .add = Add,
    .swiglu = SwiGluOp,
    .gather_rows = GatherRows,
    .write_rows = WriteRows,
    .read_rows = ReadRows,
    .layers_begin = LayersBegin,
    .layers_end = LayersEnd,
    .add_rms_norm = AddRmsNormOp,
    .linear_swiglu = LinearSwiGluOp,
    .new_kv = NewKv,
    .reserve_kv = ReserveKv,
    .copy_kv_block = CopyKvBlock,
    .free_kv = FreeKv,
    .kv_bytes = KvBytes,
    .memory = Memory,
    .synchronize = Synchronize,
};

}  // namespace

const Backend& TorchBackend() { return kTorch; }

#ifndef INGOT_WITH_CUDA
GraphCounts TorchCudaGraphCounts() { return {}; }
#endif

}  // namespace ingot::kernels
