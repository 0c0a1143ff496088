// Every backend row against the plain CPU references, table-driven like llama.cpp's
// test-backend-ops: (backend, device) x representation x rows x tokens for the linear
// op, and the step ops (rms_norm, rope, attention over the KV store, add, swiglu,
// gather) on ragged shapes. Each representation is made by ingot's own quantizers from
// one random matrix; the reference is x . dequantize(W)^T in double.
//
// The same binary runs on a GPU host (tests/gpu/run.sh): every available device of
// every row is tested; a device that is not available here is reported and skipped.
// INGOT_BACKEND_TEST_DEVICES="cuda:0" restricts the devices (run.sh uses it).
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "engine/common/status.h"
#include "engine/quant/quantizers.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/qmatrix.h"
#include "kernels/cpu/quantize_ref.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/cuda/quant_view.h"
#include "kernels/torch/weight_only_layout.h"

namespace ingot::kernels {
namespace {

using quant::MethodParams;
using quant::QuantizedWeight;

struct Rep {
  const char* name;
  int64_t cols;  // input features (a multiple of the representation's group)
  std::function<absl::StatusOr<QuantizedWeight>(const float*, int64_t, int64_t)> make;
};

MethodParams Params(int bits, int64_t group) {
  MethodParams p;
  p.bits = bits;
  p.group_size = group;
  p.hqq_iters = 2;
  return p;
}

const std::vector<Rep>& Reps() {
  static const std::vector<Rep> reps = {
      {"f32", 576, [](const float* w, int64_t r, int64_t c) { return quant::QuantizeDense(w, r, c, GgmlType::kF32); }},
      {"f16", 576, [](const float* w, int64_t r, int64_t c) { return quant::QuantizeDense(w, r, c, GgmlType::kF16); }},
      {"bf16", 576, [](const float* w, int64_t r, int64_t c) { return quant::QuantizeDense(w, r, c, GgmlType::kBF16); }},
      {"q4_0", 576, [](const float* w, int64_t r, int64_t c) { return quant::QuantizeGguf(w, r, c, GgmlType::kQ4_0); }},
      {"q4_1", 544, [](const float* w, int64_t r, int64_t c) { return quant::QuantizeGguf(w, r, c, GgmlType::kQ4_1); }},
      {"q8_0", 576, [](const float* w, int64_t r, int64_t c) { return quant::QuantizeGguf(w, r, c, GgmlType::kQ8_0); }},
      {"q4_k", 768, [](const float* w, int64_t r, int64_t c) { return quant::QuantizeGguf(w, r, c, GgmlType::kQ4_K); }},
      {"q6_k", 768, [](const float* w, int64_t r, int64_t c) { return quant::QuantizeGguf(w, r, c, GgmlType::kQ6_K); }},
      {"q5_k", 768, [](const float* w, int64_t r, int64_t c) { return quant::QuantizeGguf(w, r, c, GgmlType::kQ5_K); }},
      {"q3_k (no CUDA kernel)", 768, [](const float* w, int64_t r, int64_t c) { return quant::QuantizeGguf(w, r, c, GgmlType::kQ3_K); }},
      {"hqq4/g64 (zero)", 576, [](const float* w, int64_t r, int64_t c) { return quant::QuantizeHqq(w, r, c, Params(4, 64)); }},
      {"hqq3/g64", 576, [](const float* w, int64_t r, int64_t c) { return quant::QuantizeHqq(w, r, c, Params(3, 64)); }},
      {"hqq2/g32", 576, [](const float* w, int64_t r, int64_t c) { return quant::QuantizeHqq(w, r, c, Params(2, 32)); }},
      {"mlx4/g32 (bias)", 576, [](const float* w, int64_t r, int64_t c) { return quant::QuantizeMlx(w, r, c, Params(4, 32)); }},
      {"mlx8/g64", 576, [](const float* w, int64_t r, int64_t c) { return quant::QuantizeMlx(w, r, c, Params(8, 64)); }},
      {"torchao int4/g128", 768, [](const float* w, int64_t r, int64_t c) { return quant::QuantizeTorchaoInt4(w, r, c, Params(4, 128)); }},
      {"torchao int8/row", 576, [](const float* w, int64_t r, int64_t c) { return quant::QuantizeTorchaoInt8(w, r, c, false, Params(8, 0)); }},
      {"gptq-rtn4/g32", 576, [](const float* w, int64_t r, int64_t c) { return quant::QuantizeAffineRtn(w, r, c, Params(4, 32)); }},
      {"nf4/b64+dq", 576, [](const float* w, int64_t r, int64_t c) { return quant::QuantizeBnb4(w, r, c, Params(4, 64)); }},
      {"fp4/b64", 576, [](const float* w, int64_t r, int64_t c) {
         MethodParams p = Params(4, 64);
         p.codebook = Codebook::kFP4;
         p.double_quant = false;
         return quant::QuantizeBnb4(w, r, c, p);
       }},
      {"llm.int8", 576, [](const float* w, int64_t r, int64_t c) { return quant::QuantizeBnbInt8(w, r, c, Params(8, 0)); }},
  };
  return reps;
}

// (backend, device) pairs under test: every row but native's reference role is
// tested, native too (its integer paths quantize activations to 8 bits).
struct Target {
  const Backend* backend;
  Device device;
  std::string Name() const { return std::string(backend->name) + ":" + device.Name(); }
};

std::vector<Target> Targets(std::vector<std::string>* skipped) {
  std::vector<std::string> only;
  if (const char* env = std::getenv("INGOT_BACKEND_TEST_DEVICES")) only = absl::StrSplit(env, ',', absl::SkipEmpty());
  std::vector<Target> out;
  for (const Backend* b : Backends()) {
    for (const Device& d : b->devices()) {
      if (!only.empty() && std::find(only.begin(), only.end(), d.Name()) == only.end()) continue;
      if (absl::Status s = b->available(d); !s.ok()) {
        skipped->push_back(std::string(b->name) + ":" + d.Name() + ": " + std::string(s.message()));
        continue;
      }
      out.push_back({b, d});
    }
  }
  return out;
}

// Normalized mean squared error, as test-backend-ops: sum (a - b)^2 / sum b^2.
double Nmse(const std::vector<float>& got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return den > 0 ? num / den : num;
}

// Tolerance per (row, device, representation), NMSE: f32 compute on the CPU is exact
// up to summation order; the native integer paths quantize activations to 8 bits
// (Q8_0/Q8_1 blocks); libtorch's int4/int8 weight-only kernels take bf16 activations
// and bf16 scales/zeros (8-bit mantissa, ~2e-3 relative per element), as does every
// CUDA path (bf16 compute).
double Tolerance(const Target& t, const Linear& w, const std::string& placed_as) {
  if (t.device.kind == DeviceKind::kCuda) return 3e-4;
  if (std::string(t.backend->name) == "native") {
    const bool f32_path = LinearActivation(w).type == ActType::kF32;
    return f32_path ? 1e-10 : 2e-4;
  }
  return placed_as.rfind("int", 0) == 0 ? 5e-5 : 1e-9;
}

class BackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    targets_ = Targets(&skipped_);
    for (const std::string& s : skipped_) std::printf("[ skipped ] %s\n", s.c_str());
  }
  std::vector<Target> targets_;
  std::vector<std::string> skipped_;
  ThreadPool pool_{2};
};

// x (n, cols) . dense (rows, cols)^T + bias (rows, or null), in double: the reference.
std::vector<double> ReferenceLinear(const std::vector<float>& x, const std::vector<float>& dense, const float* bias,
                                    int64_t n, int64_t rows, int64_t cols) {
  std::vector<double> want(static_cast<size_t>(n * rows));
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t r = 0; r < rows; ++r) {
      double acc = bias != nullptr ? bias[r] : 0.0;
      for (int64_t c = 0; c < cols; ++c) acc += static_cast<double>(x[t * cols + c]) * dense[r * cols + c];
      want[t * rows + r] = acc;
    }
  }
  return want;
}

// One step of a single linear layer through a backend: begin with x as the residual
// stream, then linear kX -> kQ (shape chosen so that kX has `cols` and kQ `rows`
// columns). Returns out (n, rows).
absl::StatusOr<std::vector<float>> RunLinear(const Target& t, ThreadPool& pool, const Linear& w, const float* bias,
                                             const std::vector<float>& x, int64_t n, std::string* placed_as) {
  StepShape shape;
  shape.n_embd = static_cast<int32_t>(w.cols());
  shape.n_head = static_cast<int32_t>(w.rows());
  shape.head_dim = 1;
  shape.n_head_kv = 1;
  shape.n_ff = 1;
  shape.vocab = 1;
  shape.rope_dim = 0;
  ASSIGN_OR_RETURN(Placed pw, t.backend->upload_linear(t.device, w));
  *placed_as = pw.representation;
  Placed pb;
  if (bias != nullptr) {
    ASSIGN_OR_RETURN(pb, t.backend->upload_vector(t.device, bias, w.rows()));
  }
  BackendWorkspace ws;
  void* h = ws.For(*t.backend, t.device);
  std::vector<StepToken> toks(n);
  RETURN_IF_ERROR(t.backend->begin(h, shape, x.data(), nullptr, nullptr, toks.data(), n));
  LinearJob job;
  job.w = &w;
  job.placed = pw.handle.get();
  job.bias = bias;
  job.bias_placed = pb.handle.get();
  job.in = Buf::kX;
  job.out = Buf::kQ;
  RETURN_IF_ERROR(t.backend->linear(h, pool, &job, 1, n));
  ASSIGN_OR_RETURN(const float* y, t.backend->read_rows(h, Buf::kQ, n, &ws.scratch()));
  return std::vector<float>(y, y + n * w.rows());
}

TEST_F(BackendTest, LinearMatchesDequantizedReference) {
  int cases = 0;
  for (const Rep& rep : Reps()) {
    for (int64_t rows : {1, 17, 33, 576, 1536}) {
      const int64_t cols = rep.cols;
      std::mt19937 rng(static_cast<uint32_t>(rows * 131 + cols));
      std::normal_distribution<float> nd(0.0f, 0.05f);
      std::vector<float> wf(static_cast<size_t>(rows * cols));
      for (float& v : wf) v = nd(rng);
      auto q = rep.make(wf.data(), rows, cols);
      ASSERT_TRUE(q.ok()) << rep.name << " rows " << rows << ": " << q.status();
      const Linear& w = q->view;
      const std::vector<float> dense = DequantizeAll(w);
      std::vector<float> bias(rows);
      for (float& v : bias) v = nd(rng);
      // Tokens: the CUDA GEMV (1, <= 4), its tensor-core kernel's three widths (<= 16,
      // <= 32, <= 64) and the prefill path (> 64).
      for (int64_t n : {1, 4, 9, 17, 40, 65}) {
        std::vector<float> x(static_cast<size_t>(n * cols));
        for (float& v : x) v = nd(rng) * 20.0f;
        if (rep.name == std::string("llm.int8")) x[3] = 9.0f;  // one outlier column
        const bool with_bias = rows == 17;
        const std::vector<double> want = ReferenceLinear(x, dense, with_bias ? bias.data() : nullptr, n, rows, cols);
        for (const Target& target : targets_) {
          SCOPED_TRACE(target.Name() + " " + rep.name + " rows " + std::to_string(rows) + " tokens " + std::to_string(n));
          std::string placed_as;
          auto got = RunLinear(target, pool_, w, with_bias ? bias.data() : nullptr, x, n, &placed_as);
          ASSERT_TRUE(got.ok()) << got.status();
          const double e = Nmse(*got, want);
          EXPECT_LE(e, Tolerance(target, w, placed_as)) << placed_as;
          ++cases;
        }
      }
    }
  }
  std::printf("[ backend ] %d linear cases over %zu target(s)\n", cases, targets_.size());
}

// What each row places on its device for each representation (printed for the closing
// note and run.sh's table): the torch row keeps int4/int8 forms it has kernels for and
// says why it dequantizes the rest.
TEST_F(BackendTest, UploadReportsRepresentationAndBytes) {
  for (const Target& target : targets_) {
    for (const Rep& rep : Reps()) {
      std::vector<float> wf(static_cast<size_t>(64 * rep.cols), 0.01f);
      for (size_t i = 0; i < wf.size(); ++i) wf[i] = std::sin(static_cast<float>(i)) * 0.05f;
      auto q = rep.make(wf.data(), 64, rep.cols);
      ASSERT_TRUE(q.ok()) << q.status();
      auto placed = target.backend->upload_linear(target.device, q->view);
      ASSERT_TRUE(placed.ok()) << placed.status();
      if (std::string(target.backend->name) == "native") {
        EXPECT_EQ(placed->bytes, 0) << "native reads the host weights in place";
        continue;
      }
      EXPECT_GT(placed->bytes, 0);
      const bool int4 = rep.name == std::string("q4_0") || rep.name == std::string("q4_1") ||
                        rep.name == std::string("hqq4/g64 (zero)") || rep.name == std::string("mlx4/g32 (bias)") ||
                        rep.name == std::string("torchao int4/g128") || rep.name == std::string("gptq-rtn4/g32");
      const bool int8 = rep.name == std::string("torchao int8/row") || rep.name == std::string("llm.int8");
      const bool dense = rep.name == std::string("f32") || rep.name == std::string("f16") || rep.name == std::string("bf16");
      const bool kept = placed->note.rfind("kept quantized", 0) == 0;
      const bool cuda = target.device.kind == DeviceKind::kCuda;
      // On CUDA every representation ingot's kernels serve stays as stored unless
      // libtorch has a good kernel for it (tinygemm int4; int8pack only with
      // INGOT_CUDA_QUANT_KERNELS=torch; =all: always ingot's), in exactly the host's bytes.
      const char* mode = std::getenv("INGOT_CUDA_QUANT_KERNELS");
      const bool all = mode != nullptr && std::string(mode) == "all";
      const bool torch_kernels = mode != nullptr && std::string(mode) == "torch";
      cuda::QuantFormat format{};
      const bool served = cuda::QuantFormatFor(q->view, &format).empty();
      if (cuda && !dense && served && (all || (!int4 && !(int8 && torch_kernels)))) {
        EXPECT_TRUE(kept) << rep.name << ": " << placed->note;
      }
      if (kept) {
        EXPECT_TRUE(cuda && served) << rep.name;
        const cuda::QuantArrays arrays = cuda::QuantArraysOf(q->view);
        int64_t host_bytes = 0;
        for (int64_t b : arrays.bytes) host_bytes += b;
        EXPECT_EQ(placed->bytes, host_bytes) << rep.name << ": the device holds what the host holds";
      } else if (int4) {
        EXPECT_EQ(placed->representation.rfind("int4pack/g", 0), 0u) << rep.name << ": " << placed->note;
        EXPECT_LT(placed->bytes, 64 * rep.cols) << "int4 keeps ~half a byte per weight";
      } else if (int8) {
        EXPECT_EQ(placed->representation, "int8pack/row") << rep.name;
      } else if (!dense) {
        EXPECT_NE(placed->note.find("dequantized for backend torch"), std::string::npos) << rep.name;
      }
      std::printf("[ upload ] %-26s %-20s -> %-14s %8lld bytes %s\n", target.Name().c_str(), rep.name,
                  placed->representation.c_str(), static_cast<long long>(placed->bytes), placed->note.c_str());
    }
  }
}

// A small step: two sequences, one continuing a prompt (three new tokens at positions
// 5..7 over a cache holding 0..4), one decoding at position 2; GQA 4 heads over 2 kv
// heads, head_dim 16 with rope on the first 12 features (partial rope), both rope
// layouts. The past keys/values are written through the backend's own attention op
// (identity rope), so the store's layout stays the backend's business.
// Every store dtype a target holds (a target that refuses one says so: torch on cpu and
// native with head_dim 16 refuse q8_0); the reference reads the same dtype's rows.
TEST_F(BackendTest, StepOpsMatchReferences) {
  for (KvDtype kv_dtype : {KvDtype::kF32, KvDtype::kF16, KvDtype::kQ8_0})
  for (bool neox : {false, true}) {
    StepShape s;
    s.n_embd = 48;
    s.n_head = 4;
    s.n_head_kv = 2;
    s.head_dim = 16;
    s.n_ff = 40;
    s.vocab = 7;
    s.rope_dim = 12;
    s.rope_neox = neox;
    const int32_t n_layer = 2, layer = 1, kvd = s.kv_dim(), qd = s.q_dim(), half = s.rope_dim / 2;
    std::mt19937 rng(neox ? 7 : 3);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    auto randv = [&](size_t count) {
      std::vector<float> v(count);
      for (float& f : v) f = nd(rng);
      return v;
    };
    const std::vector<int32_t> step_pos = {5, 6, 7, 2};  // a, a, a, b
    const int64_t n = 4;
    std::vector<float> x = randv(n * s.n_embd), norm_w = randv(s.n_embd);
    std::vector<float> q = randv(n * qd), k = randv(n * kvd), v = randv(n * kvd);
    std::vector<float> gate = randv(n * s.n_ff), up = randv(n * s.n_ff);
    std::vector<float> cos_t(n * half), sin_t(n * half);
    for (int64_t t = 0; t < n; ++t) {
      for (int i = 0; i < half; ++i) {
        const double th = step_pos[t] * std::pow(10000.0, -2.0 * i / s.rope_dim);
        cos_t[t * half + i] = static_cast<float>(std::cos(th));
        sin_t[t * half + i] = static_cast<float>(std::sin(th));
      }
    }
    // Past rows: a at 0..4, b at 0..1 (rows 0..4 and 5..6 here).
    std::vector<float> past_k = randv(7 * kvd), past_v = randv(7 * kvd), past_q = randv(7 * qd);

    // --- reference ---
    std::vector<float> ref_xn(x.size());
    RmsNormRef(x.data(), norm_w.data(), ref_xn.data(), n, s.n_embd, 1e-5f);
    std::vector<float> ref_q = q, ref_k = k;
    RopeRef(ref_q.data(), cos_t.data(), sin_t.data(), n, s.n_head, s.head_dim, s.rope_dim, neox);
    RopeRef(ref_k.data(), cos_t.data(), sin_t.data(), n, s.n_head_kv, s.head_dim, s.rope_dim, neox);
    // Paged stores of 4-token blocks, tables out of order: a = blocks {1, 0}, b = {2, 3}.
    KvSpec spec;
    spec.n_layer = n_layer;
    spec.kv_dim = kvd;
    spec.head_dim = s.head_dim;
    spec.block_tokens = 4;
    spec.dtype = kv_dtype;
    const int32_t blocks_a[2] = {1, 0}, blocks_b[2] = {2, 3};
    CpuKvStore ref_kv(spec);
    ref_kv.Reserve(4);
    for (int r = 0; r < 7; ++r) {
      const int32_t* bt = r < 5 ? blocks_a : blocks_b;
      const int p = r < 5 ? r : r - 5;
      ref_kv.Store(&past_k[r * kvd], ref_kv.At(bt, layer, 0, p));
      ref_kv.Store(&past_v[r * kvd], ref_kv.At(bt, layer, 1, p));
    }
    for (int64_t t = 0; t < n; ++t) {
      const int32_t* bt = t < 3 ? blocks_a : blocks_b;
      ref_kv.Store(&ref_k[t * kvd], ref_kv.At(bt, layer, 0, step_pos[t]));
      ref_kv.Store(&v[t * kvd], ref_kv.At(bt, layer, 1, step_pos[t]));
    }
    std::vector<float> ref_attn(n * qd);
    CpuKvStore* stores[4] = {&ref_kv, &ref_kv, &ref_kv, &ref_kv};
    const int32_t* tables[4] = {blocks_a, blocks_a, blocks_a, blocks_b};
    AttentionRef(AttentionArgs{ref_q.data(), ref_attn.data(), step_pos.data(), stores, tables, n, layer, s.n_head,
                               s.n_head_kv, s.head_dim});
    std::vector<double> ref_sw(n * s.n_ff);
    for (size_t i = 0; i < ref_sw.size(); ++i) ref_sw[i] = gate[i] / (1.0 + std::exp(-static_cast<double>(gate[i]))) * up[i];
    auto as_double = [](const std::vector<float>& f) { return std::vector<double>(f.begin(), f.end()); };

    for (const Target& t : targets_) {
      SCOPED_TRACE(t.Name() + (neox ? " neox" : " interleaved") + " kv " + KvDtypeName(kv_dtype));
      const Backend& be = *t.backend;
      // CUDA computes in bf16; its q8_0 store quantizes bf16-rounded keys, so a code may
      // sit one step from the reference's.
      const double tol = t.device.kind == DeviceKind::kCuda ? (kv_dtype == KvDtype::kQ8_0 ? 1e-3 : 2e-4) : 1e-9;
      auto kv = be.new_kv(t.device, spec);
      if (kv_dtype != KvDtype::kF32 && !kv.ok() && kv.status().code() == absl::StatusCode::kInvalidArgument) {
        if (neox) std::printf("[ kv ] %s refuses %s: %s\n", t.Name().c_str(), KvDtypeName(kv_dtype),
                              std::string(kv.status().message()).c_str());
        continue;
      }
      ASSERT_TRUE(kv.ok()) << kv.status();
      ASSERT_TRUE(be.reserve_kv(*kv, 3).ok());
      BackendWorkspace ws;
      void* h = ws.For(be, t.device);
      auto read = [&](Buf b, int64_t rows) {
        auto r = be.read_rows(h, b, rows, &ws.scratch());
        EXPECT_TRUE(r.ok()) << r.status();
        return r.ok() ? std::vector<float>(*r, *r + rows * s.Cols(b)) : std::vector<float>();
      };
      {  // the past, with identity rope (cos 1, sin 0)
        std::vector<StepToken> past;
        for (int p = 0; p < 5; ++p) past.push_back({p, *kv, blocks_a});
        for (int p = 0; p < 2; ++p) past.push_back({p, *kv, blocks_b});
        std::vector<float> px(7 * s.n_embd, 0.0f), pc(7 * half, 1.0f), ps(7 * half, 0.0f);
        ASSERT_TRUE(be.begin(h, s, px.data(), pc.data(), ps.data(), past.data(), 7).ok());
        ASSERT_TRUE(be.write_rows(h, Buf::kQ, past_q.data(), 7).ok());
        ASSERT_TRUE(be.write_rows(h, Buf::kK, past_k.data(), 7).ok());
        ASSERT_TRUE(be.write_rows(h, Buf::kV, past_v.data(), 7).ok());
        ASSERT_TRUE(be.rope(h).ok());
        ASSERT_TRUE(be.attention(h, pool_, layer).ok());
      }
      // Growing the store keeps what its blocks hold.
      auto grown = be.reserve_kv(*kv, 4);
      ASSERT_TRUE(grown.ok() && *grown == 4);
      std::vector<StepToken> toks = {{5, *kv, blocks_a}, {6, *kv, blocks_a}, {7, *kv, blocks_a}, {2, *kv, blocks_b}};
      ASSERT_TRUE(be.begin(h, s, x.data(), cos_t.data(), sin_t.data(), toks.data(), n).ok());
      auto pw = be.upload_vector(t.device, norm_w.data(), s.n_embd);
      ASSERT_TRUE(pw.ok());
      ASSERT_TRUE(be.rms_norm(h, Buf::kX, Buf::kXn, n, norm_w.data(), pw->handle.get(), 1e-5f).ok());
      EXPECT_LE(Nmse(read(Buf::kXn, n), as_double(ref_xn)), tol) << "rms_norm";
      ASSERT_TRUE(be.write_rows(h, Buf::kQ, q.data(), n).ok());
      ASSERT_TRUE(be.write_rows(h, Buf::kK, k.data(), n).ok());
      ASSERT_TRUE(be.write_rows(h, Buf::kV, v.data(), n).ok());
      ASSERT_TRUE(be.rope(h).ok());
      EXPECT_LE(Nmse(read(Buf::kQ, n), as_double(ref_q)), tol) << "rope q";
      EXPECT_LE(Nmse(read(Buf::kK, n), as_double(ref_k)), tol) << "rope k";
      ASSERT_TRUE(be.attention(h, pool_, layer).ok());
      EXPECT_LE(Nmse(read(Buf::kAttn, n), as_double(ref_attn)), tol) << "attention";
      ASSERT_TRUE(be.write_rows(h, Buf::kGate, gate.data(), n).ok());
      ASSERT_TRUE(be.write_rows(h, Buf::kUp, up.data(), n).ok());
      ASSERT_TRUE(be.swiglu(h).ok());
      EXPECT_LE(Nmse(read(Buf::kGate, n), ref_sw), tol) << "swiglu";
      ASSERT_TRUE(be.add(h, Buf::kX, Buf::kX, n).ok());
      std::vector<double> twice(x.size());
      for (size_t i = 0; i < x.size(); ++i) twice[i] = 2.0 * x[i];
      EXPECT_LE(Nmse(read(Buf::kX, n), twice), tol) << "add";
      const int64_t pick[2] = {3, 1};
      ASSERT_TRUE(be.gather_rows(h, Buf::kX, Buf::kHidden, pick, 2).ok());
      std::vector<double> picked;
      for (int64_t r : pick) {
        for (int i = 0; i < s.n_embd; ++i) picked.push_back(twice[r * s.n_embd + i]);
      }
      EXPECT_LE(Nmse(read(Buf::kHidden, 2), picked), tol) << "gather_rows";
      if (be.add_rms_norm != nullptr) {  // kX (= 2x now) += kProj, then kXn = RMSNorm(kX)
        std::vector<float> proj = randv(n * s.n_embd), sum(x.size()), ref_sum_xn(x.size());
        ASSERT_TRUE(be.write_rows(h, Buf::kProj, proj.data(), n).ok());
        ASSERT_TRUE(be.add_rms_norm(h, Buf::kX, Buf::kProj, n, Buf::kXn, norm_w.data(), pw->handle.get(), 1e-5f).ok());
        for (size_t i = 0; i < x.size(); ++i) sum[i] = static_cast<float>(twice[i]) + proj[i];
        RmsNormRef(sum.data(), norm_w.data(), ref_sum_xn.data(), n, s.n_embd, 1e-5f);
        EXPECT_LE(Nmse(read(Buf::kX, n), as_double(sum)), tol) << "add_rms_norm: the sum";
        EXPECT_LE(Nmse(read(Buf::kXn, n), as_double(ref_sum_xn)), tol) << "add_rms_norm: the norm";
      }
      be.free_kv(*kv);
    }
  }
}

// The grouped and fused linear ops as the forward pass calls them: q/k/v over one input
// in one linear call (one launch on CUDA where the formats agree), gate/up through
// linear_swiglu (one kernel on CUDA), against x . dequantize(W)^T in double. Token
// counts cover the CUDA GEMV (1, 3), its tensor-core kernel (9, 16, 40) and the tile +
// GEMM path (70); rows are not multiples of the kernels' 4 and 16.
TEST_F(BackendTest, GroupedAndFusedLinearsMatchReference) {
  StepShape s;
  s.n_head = 6;
  s.n_head_kv = 3;
  s.head_dim = 34;  // q 204 rows, k/v 102
  s.n_ff = 88;
  s.vocab = 1;
  s.rope_dim = 0;
  int cases = 0;
  for (const Rep& rep : Reps()) {
    const std::string name = rep.name;
    if (name != "q4_0" && name != "q4_k" && name != "nf4/b64+dq" && name != "hqq4/g64 (zero)") continue;
    s.n_embd = static_cast<int32_t>(rep.cols);
    const int64_t cols = rep.cols;
    std::mt19937 rng(static_cast<uint32_t>(cols + name.size()));
    std::normal_distribution<float> nd(0.0f, 0.05f);
    const int64_t wrows[5] = {s.q_dim(), s.kv_dim(), s.kv_dim(), s.n_ff, s.n_ff};
    std::vector<QuantizedWeight> ws;
    std::vector<std::vector<float>> dense;
    for (int64_t r : wrows) {
      std::vector<float> wf(static_cast<size_t>(r * cols));
      for (float& v : wf) v = nd(rng);
      auto q = rep.make(wf.data(), r, cols);
      ASSERT_TRUE(q.ok()) << q.status();
      dense.push_back(DequantizeAll(q->view));
      ws.push_back(std::move(*q));
    }
    for (int64_t n : {1, 3, 9, 16, 40, 70}) {
      std::vector<float> x(static_cast<size_t>(n * cols));
      for (float& v : x) v = nd(rng) * 20.0f;
      std::vector<std::vector<double>> want(5);
      for (int i = 0; i < 5; ++i) want[i] = ReferenceLinear(x, dense[i], nullptr, n, wrows[i], cols);
      std::vector<double> want_sw(want[3].size());
      for (size_t i = 0; i < want_sw.size(); ++i) want_sw[i] = want[3][i] / (1.0 + std::exp(-want[3][i])) * want[4][i];
      for (const Target& target : targets_) {
        SCOPED_TRACE(target.Name() + " " + name + " tokens " + std::to_string(n));
        const Backend& be = *target.backend;
        std::vector<Placed> placed;
        for (const QuantizedWeight& q : ws) {
          auto p = be.upload_linear(target.device, q.view);
          ASSERT_TRUE(p.ok()) << p.status();
          placed.push_back(std::move(*p));
        }
        const double tol = Tolerance(target, ws[0].view, placed[0].representation);
        BackendWorkspace bws;
        void* h = bws.For(be, target.device);
        std::vector<StepToken> toks(n);
        ASSERT_TRUE(be.begin(h, s, x.data(), nullptr, nullptr, toks.data(), n).ok());
        auto job = [&](int i, Buf out) {
          LinearJob j;
          j.w = &ws[i].view;
          j.placed = placed[i].handle.get();
          j.in = Buf::kX;
          j.out = out;
          return j;
        };
        auto read = [&](Buf b) {
          auto r = be.read_rows(h, b, n, &bws.scratch());
          EXPECT_TRUE(r.ok()) << r.status();
          return r.ok() ? std::vector<float>(*r, *r + n * s.Cols(b)) : std::vector<float>();
        };
        const LinearJob qkv[3] = {job(0, Buf::kQ), job(1, Buf::kK), job(2, Buf::kV)};
        const absl::Status st = be.linear(h, pool_, qkv, 3, n);
        ASSERT_TRUE(st.ok()) << st;
        EXPECT_LE(Nmse(read(Buf::kQ), want[0]), tol) << "q";
        EXPECT_LE(Nmse(read(Buf::kK), want[1]), tol) << "k";
        EXPECT_LE(Nmse(read(Buf::kV), want[2]), tol) << "v";
        const LinearJob gate_up[2] = {job(3, Buf::kGate), job(4, Buf::kUp)};
        if (be.linear_swiglu != nullptr) {
          const absl::Status st = be.linear_swiglu(h, pool_, gate_up, n);
          ASSERT_TRUE(st.ok()) << st;
        } else {
          ASSERT_TRUE(be.linear(h, pool_, gate_up, 2, n).ok());
          ASSERT_TRUE(be.swiglu(h).ok());
        }
        EXPECT_LE(Nmse(read(Buf::kGate), want_sw), 4 * tol + 1e-9) << "gate/up + swiglu";
        ++cases;
      }
    }
  }
  EXPECT_GT(cases, 0);
}

// A KV store shape for the attention tests: blocks of 16 positions.
KvSpec AttentionKvSpec(KvDtype dtype, int32_t layers, int32_t kv_heads, int32_t hd) {
  KvSpec spec;
  spec.n_layer = layers;
  spec.kv_dim = kv_heads * hd;
  spec.head_dim = hd;
  spec.block_tokens = 16;
  spec.dtype = dtype;
  return spec;
}

// The native row's kernels against their references on ragged shapes.
TEST(CpuOps, FastMatchesReference) {
  ThreadPool pool(2);
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int64_t d : {1, 17, 576, 1025}) {
    std::vector<float> x(3 * d), w(d), a(3 * d), b(3 * d);
    for (float& f : x) f = nd(rng);
    for (float& f : w) f = nd(rng);
    RmsNorm(x.data(), w.data(), a.data(), 3, d, 1e-6f);
    RmsNormRef(x.data(), w.data(), b.data(), 3, d, 1e-6f);
    for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-5f * (1 + std::fabs(b[i]))) << d;
  }
  // SwiGLU: the dispatched path (AVX2's polynomial exponential where the CPU has it)
  // against the libm loop and a double-precision SiLU, ragged lengths, large |x| too.
  {
    std::uniform_real_distribution<float> wide(-30.0f, 30.0f);
    for (int64_t n : {1, 7, 8, 9, 1536, 1543}) {
      std::vector<float> g(n), u(n);
      for (float& f : g) f = wide(rng);
      for (float& f : u) f = nd(rng);
      g[0] = n > 1 ? 100.0f : -100.0f;
      std::vector<float> fast = g, ref = g;
      SwiGlu(fast.data(), u.data(), n);
      SwiGluRef(ref.data(), u.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const double x = g[i];
        const double want = x / (1.0 + std::exp(-x)) * u[i];
        ASSERT_NEAR(fast[i], want, 1e-6 * std::fabs(want) + 1e-30) << "n " << n << " x " << x;
        ASSERT_NEAR(ref[i], want, 1e-6 * std::fabs(want) + 1e-30) << "n " << n << " x " << x;
      }
    }
  }
  // Attention over paged rows in every store dtype: the fast path against the reference
  // (both decode the same stored rows), and f16 / q8_0 against f32 within their rounding.
  for (int len : {1, 17, 33, 70}) {
    const int32_t heads = 9, kv_heads = 3, hd = 64;
    std::vector<float> krows(static_cast<size_t>(len) * kv_heads * hd), vrows(krows.size());
    for (float& f : krows) f = nd(rng);
    for (float& f : vrows) f = nd(rng);
    std::vector<float> q(2 * heads * hd);
    for (float& f : q) f = nd(rng);
    std::vector<float> f32_out;
    for (KvDtype dtype : {KvDtype::kF32, KvDtype::kF16, KvDtype::kQ8_0}) {
      SCOPED_TRACE(std::string(KvDtypeName(dtype)) + " len " + std::to_string(len));
      const KvSpec spec = AttentionKvSpec(dtype, 2, kv_heads, hd);
      CpuKvStore kv(spec);
      const int32_t nb = (len + 15) / 16;
      kv.Reserve(nb + 1);
      std::vector<int32_t> table;  // reversed: blocks nb, nb-1, ..., 1
      for (int32_t b = nb; b >= 1; --b) table.push_back(b);
      for (int p = 0; p < len; ++p) {
        kv.Store(&krows[p * spec.kv_dim], kv.At(table.data(), 1, 0, p));
        kv.Store(&vrows[p * spec.kv_dim], kv.At(table.data(), 1, 1, p));
      }
      // Two tokens of the same sequence (positions len-2 and len-1 when len > 1).
      const int32_t pos[2] = {std::max(0, len - 2), len - 1};
      std::vector<float> o1(2 * heads * hd), o2(2 * heads * hd);
      CpuKvStore* stores[2] = {&kv, &kv};
      const int32_t* tables[2] = {table.data(), table.data()};
      AttentionArgs args{q.data(), o1.data(), pos, stores, tables, 2, 1, heads, kv_heads, hd};
      Attention(args, pool);
      args.out = o2.data();
      AttentionRef(args);
      for (size_t i = 0; i < o1.size(); ++i) ASSERT_NEAR(o1[i], o2[i], 1e-5f);
      if (dtype == KvDtype::kF32) {
        f32_out = o2;
      } else {
        // Outputs are convex mixtures of unit-normal values: absolute errors.
        const float tol = dtype == KvDtype::kF16 ? 5e-3f : 5e-2f;
        for (size_t i = 0; i < o2.size(); ++i) ASSERT_NEAR(o2[i], f32_out[i], tol);
      }
    }
  }
}

// The tiled attention on a mixed batch: a prompt chunk of 37 tokens (three tiles), one
// decode token and a chunk of 5, in every store dtype and head size (64: the tiled AVX2
// path; 80: its 8-float tails; 36: the plain loops), at both levels. Against the double
// reference, and each token run alone must give the very same bits as in the batch:
// a sequence's tokens must not depend on what it was batched with.
TEST(CpuOps, AttentionTilesMatchAloneAndReference) {
  ThreadPool pool(2);
  std::mt19937 rng(12);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  struct Run {
    int32_t len, first, n;  // a sequence of len positions; tokens first..first+n-1 attend
  };
  const Run runs[3] = {{40, 3, 37}, {70, 69, 1}, {17, 12, 5}};
  for (int32_t hd : {64, 80, 36}) {
    const int32_t heads = 6, kv_heads = 2;
    for (KvDtype dtype : {KvDtype::kF32, KvDtype::kF16, KvDtype::kQ8_0}) {
      if (dtype == KvDtype::kQ8_0 && hd % 32 != 0) continue;
      SCOPED_TRACE(std::string(KvDtypeName(dtype)) + " hd " + std::to_string(hd));
      const KvSpec spec = AttentionKvSpec(dtype, 1, kv_heads, hd);
      CpuKvStore kv(spec);
      kv.Reserve(20);
      std::vector<std::vector<int32_t>> tables(3);
      int32_t next_block = 19;  // blocks handed out downwards, interleaved across sequences
      std::vector<float> row(spec.kv_dim);
      for (int s = 0; s < 3; ++s) {
        for (int32_t b = 0; b < (runs[s].len + 15) / 16; ++b) tables[s].push_back(next_block--);
        for (int32_t p = 0; p < runs[s].len; ++p) {
          for (int kind = 0; kind < 2; ++kind) {
            for (float& f : row) f = nd(rng);
            kv.Store(row.data(), kv.At(tables[s].data(), 0, kind, p));
          }
        }
      }
      std::vector<int32_t> pos;
      std::vector<CpuKvStore*> stores;
      std::vector<const int32_t*> tabs;
      for (int s = 0; s < 3; ++s) {
        for (int32_t i = 0; i < runs[s].n; ++i) {
          pos.push_back(runs[s].first + i);
          stores.push_back(&kv);
          tabs.push_back(tables[s].data());
        }
      }
      const int64_t n = static_cast<int64_t>(pos.size());
      const int64_t qd = int64_t{heads} * hd;
      std::vector<float> q(n * qd), ref(n * qd);
      for (float& f : q) f = nd(rng);
      AttentionArgs args{q.data(), ref.data(), pos.data(), stores.data(), tabs.data(), n, 0, heads, kv_heads, hd};
      AttentionRef(args);
      for (CpuLevel level : {CpuLevel::kRef, CpuLevel::kAvx2}) {
        if (!CpuHasLevel(level)) continue;
        SCOPED_TRACE(CpuLevelName(level));
        std::vector<float> batch(n * qd), alone(qd);
        args.out = batch.data();
        Attention(args, pool, level);
        for (size_t i = 0; i < batch.size(); ++i) ASSERT_NEAR(batch[i], ref[i], 1e-5f) << i;
        for (int64_t t = 0; t < n; ++t) {
          AttentionArgs one{q.data() + t * qd, alone.data(), &pos[t], &stores[t], &tabs[t], 1, 0, heads,
                            kv_heads, hd};
          Attention(one, pool, level);
          ASSERT_EQ(std::memcmp(alone.data(), batch.data() + t * qd, alone.size() * sizeof(float)), 0)
              << "token " << t << " at " << pos[t];
        }
      }
    }
  }
}

// An f16 KV store writes the reference's bits (F16C where the CPU has it): normal,
// subnormal, halfway, overflowing and signed-zero values, and rows with a NaN.
TEST(CpuOps, KvStoreF16MatchesReference) {
  std::mt19937 rng(13);
  std::uniform_real_distribution<float> exponent(-30.0f, 18.0f);
  KvSpec spec;
  spec.n_layer = 1;
  spec.kv_dim = 203;  // an 8-float tail of 3
  spec.head_dim = 7;
  spec.block_tokens = 16;
  spec.dtype = KvDtype::kF16;
  CpuKvStore kv(spec);
  kv.Reserve(1);
  for (int trial = 0; trial < 64; ++trial) {
    std::vector<float> x(spec.kv_dim);
    for (float& f : x) f = ((rng() & 1) ? -1.0f : 1.0f) * std::exp2(exponent(rng));
    x[0] = -0.0f;
    x[1] = 65520.0f;                 // halfway to the next f16 past 65504: rounds to inf
    x[2] = 1.0f + std::exp2(-11.0f);  // halfway between two f16s: to even
    x[3] = std::exp2(-24.0f) * 1.5f;  // subnormal halfway
    if (trial % 4 == 3) x[rng() % x.size()] = std::nanf("");
    std::vector<uint8_t> want(kv.row_bytes);
    QuantizeRowF16Ref(x.data(), want.data(), spec.kv_dim);
    kv.Store(x.data(), kv.Row(0, 0, 0, 0));
    ASSERT_EQ(std::memcmp(kv.Row(0, 0, 0, 0), want.data(), want.size()), 0) << "trial " << trial;
  }
}

TEST(BackendTable, NativeIsFirstAndDevicesParse) {
  ASSERT_FALSE(Backends().empty());
  EXPECT_EQ(Backends()[0], &NativeBackend());
  EXPECT_EQ(FindBackend("native"), &NativeBackend());
  EXPECT_EQ(FindBackend("nope"), nullptr);
  EXPECT_TRUE(NativeBackend().available(Device{DeviceKind::kCpu, 0}).ok());
  EXPECT_EQ(NativeBackend().available(Device{DeviceKind::kCuda, 0}).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ParseDevice("cuda:3")->index, 3);
  EXPECT_EQ(ParseDevice("cuda")->Name(), "cuda:0");
  EXPECT_EQ(ParseDevice("")->Name(), "cpu");
  EXPECT_EQ(ParseDevice("mps")->kind, DeviceKind::kMps);
  for (const char* bad : {"gpu", "cuda:", "cuda:-1", "cuda:+1", "cuda:1x", "CPU", "tpu:0", "cuda:99999"}) {
    EXPECT_EQ(ParseDevice(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
#ifdef INGOT_TEST_WITH_TORCH
  ASSERT_NE(FindBackend("torch"), nullptr);
  const Backend& torch = *FindBackend("torch");
  EXPECT_TRUE(torch.available(Device{DeviceKind::kCpu, 0}).ok());
  const absl::Status mps = torch.available(Device{DeviceKind::kMps, 0});
  EXPECT_EQ(mps.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(mps.message().find("not part of this Linux build"), std::string::npos) << mps;
#endif
}

}  // namespace
}  // namespace ingot::kernels
