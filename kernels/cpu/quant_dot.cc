#include "kernels/cpu/quant_dot.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/quant_dot_internal.h"

namespace ingot::kernels {
namespace internal {

// Called per DotF32 row and per KV row: one cached flag, not BestCpuLevel()'s guard.
bool CpuHasAvx2() {
  static const bool has = BestCpuLevel() >= CpuLevel::kAvx2;
  return has;
}

// Q4_0 x Q8_0: w = (q - 8) * d_w, x = q * d_x.
float VecDotQ4_0Q8_0Ref(int64_t n, const void* w, const void* x) {
  const auto* bw = static_cast<const BlockQ4_0*>(w);
  const auto* bx = static_cast<const BlockQ8_0*>(x);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK4_0; ++i) {
    int32_t sumi = 0;
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      sumi += ((bw[i].qs[j] & 0x0F) - 8) * bx[i].qs[j];
      sumi += ((bw[i].qs[j] >> 4) - 8) * bx[i].qs[j + kQK4_0 / 2];
    }
    sum += sumi * Fp16ToFp32(bw[i].d) * Fp16ToFp32(bx[i].d);
  }
  return sum;
}

// Q4_1 x Q8_1: w = q * d_w + m_w; sum(w * x) = d_w d_x sum(q_w q_x) + m_w * s_x,
// where s_x = d_x * sum(q_x) is stored in the activation block.
float VecDotQ4_1Q8_1Ref(int64_t n, const void* w, const void* x) {
  const auto* bw = static_cast<const BlockQ4_1*>(w);
  const auto* bx = static_cast<const BlockQ8_1*>(x);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK4_1; ++i) {
    int32_t sumi = 0;
    for (int j = 0; j < kQK4_1 / 2; ++j) {
      sumi += (bw[i].qs[j] & 0x0F) * bx[i].qs[j];
      sumi += (bw[i].qs[j] >> 4) * bx[i].qs[j + kQK4_1 / 2];
    }
    sum += sumi * Fp16ToFp32(bw[i].d) * Fp16ToFp32(bx[i].d) +
           Fp16ToFp32(bw[i].m) * Fp16ToFp32(bx[i].s);
  }
  return sum;
}

static inline int Q5High(const uint8_t qh[4], int j) {
  uint32_t h;
  std::memcpy(&h, qh, 4);
  return static_cast<int>((h >> j) & 1u) << 4;
}

float VecDotQ5_0Q8_0Ref(int64_t n, const void* w, const void* x) {
  const auto* bw = static_cast<const BlockQ5_0*>(w);
  const auto* bx = static_cast<const BlockQ8_0*>(x);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK5_0; ++i) {
    int32_t sumi = 0;
    for (int j = 0; j < kQK5_0 / 2; ++j) {
      const int lo = ((bw[i].qs[j] & 0x0F) | Q5High(bw[i].qh, j)) - 16;
      const int hi = ((bw[i].qs[j] >> 4) | Q5High(bw[i].qh, j + 16)) - 16;
      sumi += lo * bx[i].qs[j] + hi * bx[i].qs[j + kQK5_0 / 2];
    }
    sum += sumi * Fp16ToFp32(bw[i].d) * Fp16ToFp32(bx[i].d);
  }
  return sum;
}

float VecDotQ5_1Q8_1Ref(int64_t n, const void* w, const void* x) {
  const auto* bw = static_cast<const BlockQ5_1*>(w);
  const auto* bx = static_cast<const BlockQ8_1*>(x);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK5_1; ++i) {
    int32_t sumi = 0;
    for (int j = 0; j < kQK5_1 / 2; ++j) {
      const int lo = (bw[i].qs[j] & 0x0F) | Q5High(bw[i].qh, j);
      const int hi = (bw[i].qs[j] >> 4) | Q5High(bw[i].qh, j + 16);
      sumi += lo * bx[i].qs[j] + hi * bx[i].qs[j + kQK5_1 / 2];
    }
    sum += sumi * Fp16ToFp32(bw[i].d) * Fp16ToFp32(bx[i].d) +
           Fp16ToFp32(bw[i].m) * Fp16ToFp32(bx[i].s);
  }
  return sum;
}

float VecDotQ8_0Q8_0Ref(int64_t n, const void* w, const void* x) {
  const auto* bw = static_cast<const BlockQ8_0*>(w);
  const auto* bx = static_cast<const BlockQ8_0*>(x);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK8_0; ++i) {
    int32_t sumi = 0;
    for (int j = 0; j < kQK8_0; ++j) sumi += bw[i].qs[j] * bx[i].qs[j];
    sum += sumi * Fp16ToFp32(bw[i].d) * Fp16ToFp32(bx[i].d);
  }
  return sum;
}

}  // namespace internal

namespace {

using internal::VecDotFn;

// One row per weight type with an integer path; everything else is generic.
struct DotKernel {
  GgmlType type;
  ActType act;
  VecDotFn ref;
  VecDotFn avx2;  // one row, one token; nullptr: the reference is used
  internal::DotTokensFn avx2_tiles;  // any number of token rows, 8 weight rows per tile
  internal::DotTokensFn avx512vnni;  // any number of token rows, 16 weight rows per tile
  internal::DotTokensFn amx;         // the same tile with AMX-INT8
};

const DotKernel kDotKernels[] = {
    {GgmlType::kQ4_0, ActType::kQ8_0, internal::VecDotQ4_0Q8_0Ref, internal::VecDotQ4_0Q8_0Avx2,
     internal::DotTokensQ4_0Avx2, internal::DotTokensQ4_0Avx512Vnni, internal::DotTokensQ4_0Amx},
    {GgmlType::kQ4_1, ActType::kQ8_1, internal::VecDotQ4_1Q8_1Ref, internal::VecDotQ4_1Q8_1Avx2,
     internal::DotTokensQ4_1Avx2, internal::DotTokensQ4_1Avx512Vnni, internal::DotTokensQ4_1Amx},
    {GgmlType::kQ5_0, ActType::kQ8_0, internal::VecDotQ5_0Q8_0Ref, nullptr, nullptr, nullptr, nullptr},
    {GgmlType::kQ5_1, ActType::kQ8_1, internal::VecDotQ5_1Q8_1Ref, nullptr, nullptr, nullptr, nullptr},
    {GgmlType::kQ8_0, ActType::kQ8_0, internal::VecDotQ8_0Q8_0Ref, internal::VecDotQ8_0Q8_0Avx2,
     internal::DotTokensQ8_0Avx2, internal::DotTokensQ8_0Avx512Vnni, internal::DotTokensQ8_0Amx},
};

const DotKernel* FindKernel(GgmlType t) {
  for (const auto& k : kDotKernels) {
    if (k.type == t) return &k;
  }
  return nullptr;
}

void QuantizeRowQ8_0Ref(const float* x, BlockQ8_0* y, int64_t n) {
  for (int64_t i = 0; i < n / kQK8_0; ++i) {
    float amax = 0;
    for (int j = 0; j < kQK8_0; ++j) amax = std::max(amax, std::fabs(x[i * kQK8_0 + j]));
    const float d = amax / 127.0f;
    const float id = amax != 0 ? 127.0f / amax : 0.0f;
    y[i].d = Fp32ToFp16(d);
    for (int j = 0; j < kQK8_0; ++j) {
      y[i].qs[j] = static_cast<int8_t>(std::nearbyint(x[i * kQK8_0 + j] * id));
    }
  }
}

void QuantizeRowQ8_1Ref(const float* x, BlockQ8_1* y, int64_t n) {
  for (int64_t i = 0; i < n / kQK8_1; ++i) {
    float amax = 0;
    for (int j = 0; j < kQK8_1; ++j) amax = std::max(amax, std::fabs(x[i * kQK8_1 + j]));
    const float d = amax / 127.0f;
    const float id = amax != 0 ? 127.0f / amax : 0.0f;
    int32_t sum = 0;
    for (int j = 0; j < kQK8_1; ++j) {
      y[i].qs[j] = static_cast<int8_t>(std::nearbyint(x[i * kQK8_1 + j] * id));
      sum += y[i].qs[j];
    }
    y[i].d = Fp32ToFp16(d);
    y[i].s = Fp32ToFp16(d * static_cast<float>(sum));
  }
}

// Generic path: dequantize the row with the type table, then an f32 dot.
void DotRowsGeneric(const WeightMatrix& w, const float* x, float* y, int64_t r0, int64_t r1,
                    bool use_avx2) {
  const auto& traits = GetGgmlTypeTraits(w.type);
  if (w.type == GgmlType::kF32) {
    for (int64_t r = r0; r < r1; ++r) {
      y[r - r0] = DotF32(reinterpret_cast<const float*>(w.Row(r)), x, w.cols);
    }
    return;
  }
  thread_local std::vector<float> scratch;
  scratch.resize(static_cast<size_t>(w.cols));
  for (int64_t r = r0; r < r1; ++r) {
    traits.dequantize(w.Row(r), scratch.data(), w.cols);
    y[r - r0] = use_avx2 ? internal::DotF32Avx2(scratch.data(), x, w.cols)
                         : [&] {
                             float s = 0;
                             for (int64_t j = 0; j < w.cols; ++j) s += scratch[j] * x[j];
                             return s;
                           }();
  }
}

void DotRowsImpl(const WeightMatrix& w, const void* x_act, float* y, int64_t r0, int64_t r1,
                 bool use_avx2) {
  const DotKernel* k = FindKernel(w.type);
  if (use_avx2 && (w.type == GgmlType::kF16 || w.type == GgmlType::kBF16)) {
    const bool bf16 = w.type == GgmlType::kBF16;
    for (int64_t r = r0; r < r1; ++r) {
      y[r - r0] = internal::DotHalfF32Avx2(reinterpret_cast<const uint16_t*>(w.Row(r)),
                                           static_cast<const float*>(x_act), w.cols, bf16);
    }
    return;
  }
  if (k == nullptr) {
    DotRowsGeneric(w, static_cast<const float*>(x_act), y, r0, r1, use_avx2);
    return;
  }
  VecDotFn fn = use_avx2 && k->avx2 != nullptr ? k->avx2 : k->ref;
  for (int64_t r = r0; r < r1; ++r) y[r - r0] = fn(w.cols, w.Row(r), x_act);
}

}  // namespace

ActType ActivationTypeFor(GgmlType weight_type) {
  const DotKernel* k = FindKernel(weight_type);
  return k ? k->act : ActType::kF32;
}

size_t ActivationRowBytes(ActType act, int64_t cols) {
  const int64_t nb = cols / 32;
  switch (act) {
    case ActType::kQ8_0: return internal::ActivationScalesOffset(nb, sizeof(BlockQ8_0)) + 12 * nb;
    case ActType::kQ8_1: return internal::ActivationScalesOffset(nb, sizeof(BlockQ8_1)) + 12 * nb;
    case ActType::kF32: break;
  }
  return static_cast<size_t>(cols) * sizeof(float);
}

bool DotSupported(GgmlType weight_type) {
  return FindKernel(weight_type) != nullptr || weight_type == GgmlType::kF32 ||
         GetGgmlTypeTraits(weight_type).supported;
}

namespace {

// The f32 d[nb], f32 s[nb], int32 sum[nb] after the blocks (ActivationScalesOffset).
template <class Block>
void WriteScales(Block* blocks, int64_t nb) {
  uint8_t* tail = reinterpret_cast<uint8_t*>(blocks) + internal::ActivationScalesOffset(nb, sizeof(Block));
  auto* d = reinterpret_cast<float*>(tail);
  auto* sums = reinterpret_cast<int32_t*>(tail + 8 * nb);
  for (int64_t b = 0; b < nb; ++b) {
    int32_t sum = 0;
    for (int j = 0; j < 32; ++j) sum += blocks[b].qs[j];
    d[b] = Fp16ToFp32(blocks[b].d);
    sums[b] = sum;
    if constexpr (std::is_same_v<Block, BlockQ8_1>) {
      d[nb + b] = Fp16ToFp32(blocks[b].s);
    } else {
      d[nb + b] = d[b] * static_cast<float>(sum);
    }
  }
}

void WriteActivationScales(ActType act, int64_t cols, void* out) {
  if (act == ActType::kQ8_1) WriteScales(static_cast<BlockQ8_1*>(out), cols / 32);
  if (act == ActType::kQ8_0) WriteScales(static_cast<BlockQ8_0*>(out), cols / 32);
}

}  // namespace

void PrepareActivationsRef(ActType act, const float* x, int64_t cols, void* out) {
  switch (act) {
    case ActType::kQ8_0: QuantizeRowQ8_0Ref(x, static_cast<BlockQ8_0*>(out), cols); break;
    case ActType::kQ8_1: QuantizeRowQ8_1Ref(x, static_cast<BlockQ8_1*>(out), cols); break;
    case ActType::kF32: std::memcpy(out, x, static_cast<size_t>(cols) * sizeof(float)); return;
  }
  WriteActivationScales(act, cols, out);
}

void PrepareActivations(ActType act, const float* x, int64_t cols, void* out) {
  if (!internal::CpuHasAvx2()) return PrepareActivationsRef(act, x, cols, out);
  switch (act) {
    case ActType::kQ8_0: internal::QuantizeRowQ8_0Avx2(x, static_cast<BlockQ8_0*>(out), cols); break;
    case ActType::kQ8_1: internal::QuantizeRowQ8_1Avx2(x, static_cast<BlockQ8_1*>(out), cols); break;
    case ActType::kF32: std::memcpy(out, x, static_cast<size_t>(cols) * sizeof(float)); return;
  }
  WriteActivationScales(act, cols, out);
}

void DotRows(const WeightMatrix& w, const void* x_act, float* y, int64_t r0, int64_t r1) {
  DotRowsImpl(w, x_act, y, r0, r1, internal::CpuHasAvx2());
}

void DotRowsTokens(const WeightMatrix& w, const uint8_t* x_act, size_t x_stride, int64_t n_tok,
                   float* y, int64_t y_stride, int64_t r0, int64_t r1, CpuLevel level) {
  const DotKernel* k = FindKernel(w.type);
  if (level == CpuLevel::kRef) {
    for (int64_t t = 0; t < n_tok; ++t) DotRowsRef(w, x_act + t * x_stride, y + t * y_stride + r0, r0, r1);
    return;
  }
  if (level >= CpuLevel::kAvx512Vnni && k != nullptr && k->avx512vnni != nullptr) {
    internal::DotTokensAmxThenVnni<WeightMatrix>(level >= CpuLevel::kAmx ? k->amx : nullptr, k->avx512vnni, w,
                                                 x_act, x_stride, n_tok, y, y_stride, r0, r1);
    return;
  }
  if (k != nullptr && k->avx2_tiles != nullptr) {
    k->avx2_tiles(w, x_act, x_stride, n_tok, y, y_stride, r0, r1);
    return;
  }
  const bool half = w.type == GgmlType::kF16 || w.type == GgmlType::kBF16;
  if (half && n_tok > 1) {
    // Row-outer: a row (a few KB) stays in L1 while every token of the batch reads it.
    for (int64_t r = r0; r < r1; ++r) {
      const auto* row = reinterpret_cast<const uint16_t*>(w.Row(r));
      for (int64_t t = 0; t < n_tok; ++t) {
        y[t * y_stride + r] = internal::DotHalfF32Avx2(row, reinterpret_cast<const float*>(x_act + t * x_stride),
                                                       w.cols, w.type == GgmlType::kBF16);
      }
    }
    return;
  }
  if (k == nullptr && n_tok > 1 && w.type != GgmlType::kF32) {
    // Types without an integer kernel (F16, BF16, K-quants...): dequantize each row once
    // for the whole batch, not once per token.
    const auto& traits = GetGgmlTypeTraits(w.type);
    thread_local std::vector<float> row;
    row.resize(static_cast<size_t>(w.cols));
    for (int64_t r = r0; r < r1; ++r) {
      traits.dequantize(w.Row(r), row.data(), w.cols);
      for (int64_t t = 0; t < n_tok; ++t) {
        y[t * y_stride + r] = DotF32(row.data(), reinterpret_cast<const float*>(x_act + t * x_stride), w.cols);
      }
    }
    return;
  }
  for (int64_t t = 0; t < n_tok; ++t) DotRowsImpl(w, x_act + t * x_stride, y + t * y_stride + r0, r0, r1, true);
}

void DotRowsTokens(const WeightMatrix& w, const uint8_t* x_act, size_t x_stride, int64_t n_tok,
                   float* y, int64_t y_stride, int64_t r0, int64_t r1) {
  DotRowsTokens(w, x_act, x_stride, n_tok, y, y_stride, r0, r1, BestCpuLevel());
}

void DotRowsRef(const WeightMatrix& w, const void* x_act, float* y, int64_t r0, int64_t r1) {
  DotRowsImpl(w, x_act, y, r0, r1, false);
}

const char* DotImplementation() { return CpuLevelName(BestCpuLevel()); }

float DotF32(const float* a, const float* b, int64_t n) {
  if (internal::CpuHasAvx2()) return internal::DotF32Avx2(a, b, n);
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

}  // namespace ingot::kernels
