// The native backend row: ingot's fused CPU kernels reading weights in place (no
// upload, no copy), step buffers as plain f32 vectors. Per layer of a decode step: five
// parallel regions (q/k/v, attention, o, gate/up, down); norms, rope and residual adds
// are cheap and run on the calling thread.
#include <cstring>
#include <fstream>
#include <new>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/backend.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/qmatrix.h"
#include "kernels/cpu/thread_pool.h"

namespace ingot::kernels {
namespace {

struct NativeWorkspace {
  StepShape shape;
  int64_t n = 0;
  std::vector<float> buf[kBufCount];
  std::vector<float> rope_cos, rope_sin;  // (n, rope_dim / 2)
  std::vector<int32_t> pos;               // (n)
  std::vector<CpuKvStore*> kv;            // (n)
  std::vector<const int32_t*> blocks;     // (n) block tables
  std::vector<uint8_t> act;               // prepared activations
  float* B(Buf b) { return buf[static_cast<int>(b)].data(); }
};

NativeWorkspace& W(void* ws) { return *static_cast<NativeWorkspace*>(ws); }

absl::Status Available(const Device& device) {
  if (device.kind == DeviceKind::kCpu) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("backend native runs on cpu only, not ", device.Name(), " (use backend torch)"));
}

std::vector<Device> Devices() { return {Device{DeviceKind::kCpu, 0}}; }

absl::StatusOr<Placed> UploadLinear(const Device& device, const Linear& w) {
  if (device.kind != DeviceKind::kCpu) return Available(device);
  return Placed{};  // read in place
}

absl::StatusOr<Placed> UploadVector(const Device& device, const float*, int64_t) {
  if (device.kind != DeviceKind::kCpu) return Available(device);
  return Placed{};
}

void* NewWorkspace(const Device&) { return new NativeWorkspace(); }
void FreeWorkspace(void* ws) { delete static_cast<NativeWorkspace*>(ws); }

absl::Status Begin(void* ws, const StepShape& shape, const float* x_host, const float* rope_cos,
                   const float* rope_sin, const StepToken* tokens, int64_t n) {
  NativeWorkspace& w = W(ws);
  w.shape = shape;
  w.n = n;
  for (int b = 0; b < kBufCount; ++b) {
    const Buf buf = static_cast<Buf>(b);
    if (buf == Buf::kHidden || buf == Buf::kLogits) continue;  // sized by gather_rows
    w.buf[b].resize(static_cast<size_t>(n * shape.Cols(buf)));
  }
  std::memcpy(w.B(Buf::kX), x_host, sizeof(float) * n * shape.n_embd);
  const size_t half = static_cast<size_t>(shape.rope_dim / 2);
  w.rope_cos.assign(rope_cos, rope_cos + n * half);
  w.rope_sin.assign(rope_sin, rope_sin + n * half);
  w.pos.resize(n);
  w.kv.resize(n);
  w.blocks.resize(n);
  for (int64_t t = 0; t < n; ++t) {
    w.pos[t] = tokens[t].pos;
    w.kv[t] = static_cast<CpuKvStore*>(tokens[t].kv);
    w.blocks[t] = tokens[t].blocks;
  }
  return absl::OkStatus();
}

absl::Status Norm(void* ws, Buf in, Buf out, int64_t rows, const float* weight, const void*, float eps) {
  NativeWorkspace& w = W(ws);
  RmsNorm(w.B(in), weight, w.B(out), rows, w.shape.n_embd, eps);
  return absl::OkStatus();
}

absl::Status LinearOp(void* ws, ThreadPool& pool, const LinearJob* jobs, int n_jobs, int64_t rows) {
  NativeWorkspace& w = W(ws);
  MatMulJob mm[8];
  if (n_jobs > 8) return absl::InternalError("native linear: more than 8 jobs in one call");
  for (int j = 0; j < n_jobs; ++j) mm[j] = MatMulJob{jobs[j].w, w.B(jobs[j].in), w.B(jobs[j].out), jobs[j].bias};
  MatMul(pool, mm, static_cast<size_t>(n_jobs), rows, w.act);
  return absl::OkStatus();
}

absl::Status RopeOp(void* ws) {
  NativeWorkspace& w = W(ws);
  const StepShape& s = w.shape;
  Rope(w.B(Buf::kQ), w.rope_cos.data(), w.rope_sin.data(), w.n, s.n_head, s.head_dim, s.rope_dim, s.rope_neox);
  Rope(w.B(Buf::kK), w.rope_cos.data(), w.rope_sin.data(), w.n, s.n_head_kv, s.head_dim, s.rope_dim, s.rope_neox);
  return absl::OkStatus();
}

absl::Status AttentionOp(void* ws, ThreadPool& pool, int32_t layer) {
  NativeWorkspace& w = W(ws);
  const int64_t kvd = w.shape.kv_dim();
  const float* k = w.B(Buf::kK);
  const float* v = w.B(Buf::kV);
  for (int64_t t = 0; t < w.n; ++t) {
    const CpuKvStore& kv = *w.kv[t];
    kv.Store(k + t * kvd, kv.At(w.blocks[t], layer, 0, w.pos[t]));
    kv.Store(v + t * kvd, kv.At(w.blocks[t], layer, 1, w.pos[t]));
  }
  AttentionArgs a;
  a.q = w.B(Buf::kQ);
  a.out = w.B(Buf::kAttn);
  a.pos = w.pos.data();
  a.kv = w.kv.data();
  a.blocks = w.blocks.data();
  a.n = w.n;
  a.layer = layer;
  a.n_head = w.shape.n_head;
  a.n_head_kv = w.shape.n_head_kv;
  a.head_dim = w.shape.head_dim;
  Attention(a, pool);
  return absl::OkStatus();
}

absl::Status Add(void* ws, Buf y, Buf x, int64_t rows) {
  NativeWorkspace& w = W(ws);
  float* py = w.B(y);
  const float* px = w.B(x);
  const int64_t count = rows * w.shape.Cols(y);
  for (int64_t i = 0; i < count; ++i) py[i] += px[i];
  return absl::OkStatus();
}

absl::Status SwiGluOp(void* ws) {
  NativeWorkspace& w = W(ws);
  SwiGlu(w.B(Buf::kGate), w.B(Buf::kUp), w.n * w.shape.n_ff);
  return absl::OkStatus();
}

absl::Status GatherRows(void* ws, Buf in, Buf out, const int64_t* rows, int64_t m) {
  NativeWorkspace& w = W(ws);
  const int64_t cols = w.shape.Cols(in);
  w.buf[static_cast<int>(out)].resize(static_cast<size_t>(m * cols));
  if (out == Buf::kHidden) w.buf[static_cast<int>(Buf::kLogits)].resize(static_cast<size_t>(m) * w.shape.vocab);
  for (int64_t i = 0; i < m; ++i) std::memcpy(w.B(out) + i * cols, w.B(in) + rows[i] * cols, cols * sizeof(float));
  return absl::OkStatus();
}

absl::Status WriteRows(void* ws, Buf b, const float* host, int64_t rows) {
  NativeWorkspace& w = W(ws);
  std::vector<float>& buf = w.buf[static_cast<int>(b)];
  const size_t count = static_cast<size_t>(rows * w.shape.Cols(b));
  if (buf.size() < count) buf.resize(count);
  std::memcpy(buf.data(), host, count * sizeof(float));
  return absl::OkStatus();
}

absl::StatusOr<const float*> ReadRows(void* ws, Buf b, int64_t, std::vector<float>*) { return W(ws).B(b); }

absl::StatusOr<void*> NewKv(const Device& device, const KvSpec& spec) {
  if (device.kind != DeviceKind::kCpu) return Available(device);
  if (spec.dtype == KvDtype::kQ8_0 && (spec.kv_dim % kQK8_0 != 0 || spec.head_dim % kQK8_0 != 0)) {
    return absl::InvalidArgumentError(absl::StrCat("kv_cache_dtype q8_0 needs head_dim a multiple of 32 (head_dim ",
                                                   spec.head_dim, ")"));
  }
  return new CpuKvStore(spec);
}
absl::StatusOr<int32_t> ReserveKv(void* kv, int32_t blocks) {
  auto* c = static_cast<CpuKvStore*>(kv);
  try {
    c->Reserve(blocks);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cpu: no memory for ", blocks, " KV blocks of ", c->block_bytes, " bytes"));
  }
  return c->n_blocks;
}
absl::Status CopyKvBlock(void* kv, int32_t src, int32_t dst, int32_t tokens) {
  static_cast<CpuKvStore*>(kv)->CopyBlock(src, dst, tokens);
  return absl::OkStatus();
}
void FreeKv(void* kv) { delete static_cast<CpuKvStore*>(kv); }
int64_t KvBytes(const void* kv) { return static_cast<const CpuKvStore*>(kv)->bytes(); }

absl::StatusOr<MemoryStats> Memory(const Device& device) {
  if (device.kind != DeviceKind::kCpu) return Available(device);
  MemoryStats s;
  std::ifstream in("/proc/meminfo");
  std::string key, unit;
  int64_t kb = 0;
  while (in >> key >> kb) {
    std::getline(in, unit);
    if (key == "MemTotal:") s.total_bytes = kb * 1024;
    if (key == "MemAvailable:") s.free_bytes = kb * 1024;
  }
  return s;
}

absl::Status Synchronize(const Device&) { return absl::OkStatus(); }

const Backend kNative = {
    .name = "native",
    .available = Available,
    .devices = Devices,
    .upload_linear = UploadLinear,
    .upload_vector = UploadVector,
    .new_workspace = NewWorkspace,
    .free_workspace = FreeWorkspace,
    .begin = Begin,
    .rms_norm = Norm,
    .linear = LinearOp,
    .rope = RopeOp,
    .attention = AttentionOp,
    .add = Add,
    .swiglu = SwiGluOp,
    .gather_rows = GatherRows,
    .write_rows = WriteRows,
    .read_rows = ReadRows,
    .layers_begin = nullptr,  // nothing to record: ops run as they are called
    .layers_end = nullptr,
    .add_rms_norm = nullptr,  // the plain ops: nothing to launch, nothing to save
    .linear_swiglu = nullptr,
    .new_kv = NewKv,
    .reserve_kv = ReserveKv,
    .copy_kv_block = CopyKvBlock,
    .free_kv = FreeKv,
    .kv_bytes = KvBytes,
    .memory = Memory,
    .synchronize = Synchronize,
};

}  // namespace

const Backend& NativeBackend() { return kNative; }

}  // namespace ingot::kernels
