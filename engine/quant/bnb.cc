// bitsandbytes quantizers, computed as bitsandbytes 0.50.2 computes them on CPU so that
// codes, absmax and nested statistics come out bit-identical (tests/quant/bnb_test.cc
// against tests/reference/gen_quant_torch.py).
//
// 4-bit (functional.quantize_4bit -> the torch "default" op on CPU, backends/default/ops.py):
//   the weight is flattened row-major and cut into blocks of `block` elements;
//   absmax = max |x| per block; scaled = clamp(x * (1 / max(absmax, 1e-38)), -1, 1) in f32;
//   code = torch.bucketize(scaled, midpoints) with the midpoints (v[i] + v[i+1]) / 2 of the
//   table sorted by value: the number of midpoints strictly below `scaled`, so a value on a
//   midpoint takes the lower code. FP4's table is not sorted: bitsandbytes argsorts it
//   (0.0 at code 0 before -0.0 at code 8, a stable order) and maps the bucket back, so
//   0 < scaled <= 0.0026 lands on code 8 (-0.0) and scaled == 0 on code 0.
//   Two codes per byte, first element in the high nibble (kernels::CodebookMatrix).
// Double quant (compress_statistics): offset = absmax.mean(); absmax - offset goes through
//   functional.quantize_blockwise(blocksize=256) = libbitsandbytes_cpu's quantize_cpu: per
//   256-block a = max |x|; v = x * (1 / a); index = (uint16)(((v + 1) * 0.5) * 65535 + 0.5)
//   into a 65536-entry table of the nearest dynamic-map code (ties to the lower code).
//   Dequantized: DynamicMap[code] * a + offset.
// LLM.int8 (nn.Int8Params._quantize -> functional.int8_vectorwise_quant on a float16 copy):
//   SCB = max |f16(w)| per row; CB = round(f16(w) * ((1 / SCB) * 127)) (round half even).
//
// Exactness limits: the offset reproduces torch's f32 mean as single-threaded AVX2 torch
// computes it (TorchSumF32); a multi-threaded torch over more than 32768 blocks, or an
// AVX-512 torch, can differ in the offset's last bit (then in the nested scale's last bit;
// codes are unaffected unless a value sits on a rounding boundary). LLM.int8's scale is stored as f16(SCB / 127) (kAffine stores f16
// scales), so dequantized weights differ from bitsandbytes' f32 SCB by at most 2^-11
// relative; the int8 codes are exact.
// Engine files build without -mfma, so no expression below is contracted into an FMA
// (bitsandbytes' own scalar and AVX2 paths round after every operation).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "engine/quant/quant_util.h"
#include "engine/quant/quantizers.h"
#include "kernels/ggml_types.h"

namespace ingot::quant {
namespace {

using kernels::Codebook;

constexpr int64_t kNestedBlock = 256;  // bitsandbytes' block for the nested absmax
constexpr int kLutSize = 65536;        // libbitsandbytes_cpu's quantize_cpu table

// quantize_4bit's search table: midpoints of the value-sorted codebook and the code of
// each sorted position.
struct FourBitSearch {
  std::array<float, 15> bounds;
  std::array<uint8_t, 16> code_of_rank;
};

FourBitSearch MakeFourBitSearch(Codebook book) {
  const float* v = kernels::CodebookValues(book);
  FourBitSearch s;
  std::array<int, 16> order;
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [v](int a, int b) { return v[a] < v[b]; });
  for (int i = 0; i < 16; ++i) s.code_of_rank[i] = static_cast<uint8_t>(order[i]);
  for (int i = 0; i < 15; ++i) s.bounds[i] = (v[order[i]] + v[order[i + 1]]) / 2.0f;
  return s;
}

const FourBitSearch& FourBitSearchFor(Codebook book) {
  static const FourBitSearch nf4 = MakeFourBitSearch(Codebook::kNF4);
  static const FourBitSearch fp4 = MakeFourBitSearch(Codebook::kFP4);
  return book == Codebook::kNF4 ? nf4 : fp4;
}

inline uint8_t FourBitCode(const FourBitSearch& s, float scaled) {
  // torch.bucketize(right=False): the count of bounds strictly below `scaled`.
  const int rank = static_cast<int>(
      std::lower_bound(s.bounds.begin(), s.bounds.end(), scaled) - s.bounds.begin());
  return s.code_of_rank[rank];
}

// libbitsandbytes_cpu's build_quantize_lut over the dynamic map.
const std::array<uint8_t, kLutSize>& DynamicLut() {
  static const std::array<uint8_t, kLutSize> lut = [] {
    const float* code = kernels::DynamicMap();
    std::array<float, 255> mid;
    for (int i = 0; i < 255; ++i) mid[i] = 0.5f * (code[i] + code[i + 1]);
    std::array<uint8_t, kLutSize> t;
    int idx = 0;
    for (int i = 0; i < kLutSize; ++i) {
      const float val = -1.0f + (2.0f * static_cast<float>(i)) / static_cast<float>(kLutSize - 1);
      while (idx < 255 && mid[idx] < val) ++idx;
      t[i] = static_cast<uint8_t>(idx);
    }
    return t;
  }();
  return lut;
}

// quantize_blockwise(x, blocksize=256) with the dynamic map: codes (n) and per-block
// absmax (ceil(n / 256)), as libbitsandbytes_cpu computes them.
void QuantizeBlockwiseDynamic(const std::vector<float>& x, uint8_t* codes, float* absmax) {
  const auto& lut = DynamicLut();
  const int64_t n = static_cast<int64_t>(x.size());
  for (int64_t b0 = 0, bi = 0; b0 < n; b0 += kNestedBlock, ++bi) {
    const int64_t b1 = std::min(n, b0 + kNestedBlock);
    float am = 0.0f;
    for (int64_t i = b0; i < b1; ++i) {
      const float a = std::fabs(x[i]);
      if (!std::isnan(a)) am = std::max(am, a);  // bitsandbytes sanitizes NaN lanes to 0
    }
    absmax[bi] = am;
    if (am == 0.0f) {
      std::memset(codes + b0, 0, static_cast<size_t>(b1 - b0));
      continue;
    }
    const float inv = 1.0f / am;
    for (int64_t i = b0; i < b1; ++i) {
      float v = x[i] * inv;
      v = std::clamp(v, -1.0f, 1.0f);
      const float t = (v + 1.0f) * 0.5f;
      const float u = t * static_cast<float>(kLutSize - 1);
      codes[i] = lut[static_cast<uint16_t>(u + 0.5f)];
    }
  }
}

// torch's f32 sum of a contiguous vector on CPU (aten/src/ATen/native/cpu/SumKernel.cpp,
// cascade_sum -> vectorized_inner_sum) as dispatched on AVX2 (8-lane vectors): the
// vectors are summed four at a time (row_sum's ilp factor) in a 4-level cascade of
// 16-vector chunks (multi_row_sum), the four partial vectors folded, then the scalar tail
// and the 8 lanes are added in order. Single-threaded torch, or fewer than 32768 values
// (torch's grain size), gives this exact result; above that torch splits the sum across
// its threads (and AVX-512 builds use 16 lanes), so the offset can differ in its last bit.
float TorchSumF32(const float* x, int64_t n) {
  constexpr int kLanes = 8, kIlp = 4, kLevels = 4;
  using Vec = std::array<float, kLanes>;
  auto add = [](Vec& a, const float* b) {
    for (int l = 0; l < kLanes; ++l) a[l] += b[l];
  };
  const int64_t vec_size = n / kLanes;
  const int64_t size_ilp = vec_size / kIlp;
  int64_t ceil_log2 = 1;  // utils::CeilLog2
  if (size_ilp > 2) ceil_log2 = 64 - __builtin_clzll(static_cast<uint64_t>(size_ilp - 1));
  const int64_t level_power = std::max<int64_t>(4, ceil_log2 / kLevels);
  const int64_t level_step = int64_t{1} << level_power, level_mask = level_step - 1;
  Vec acc[kLevels][kIlp] = {};
  int64_t i = 0;
  for (; i + level_step <= size_ilp;) {
    for (int64_t j = 0; j < level_step; ++j, ++i) {
      for (int k = 0; k < kIlp; ++k) add(acc[0][k], x + (i * kIlp + k) * kLanes);
    }
    for (int j = 1; j < kLevels; ++j) {
      for (int k = 0; k < kIlp; ++k) {
        add(acc[j][k], acc[j - 1][k].data());
        acc[j - 1][k] = Vec{};
      }
      if ((i & (level_mask << (j * level_power))) != 0) break;
    }
  }
  for (; i < size_ilp; ++i) {
    for (int k = 0; k < kIlp; ++k) add(acc[0][k], x + (i * kIlp + k) * kLanes);
  }
  for (int j = 1; j < kLevels; ++j) {
    for (int k = 0; k < kIlp; ++k) add(acc[0][k], acc[j][k].data());
  }
  Vec partial = acc[0][0];
  for (int64_t v = size_ilp * kIlp; v < vec_size; ++v) add(partial, x + v * kLanes);
  for (int k = 1; k < kIlp; ++k) add(partial, acc[0][k].data());
  float sum = 0.0f;
  for (int64_t t = vec_size * kLanes; t < n; ++t) sum += x[t];
  for (int l = 0; l < kLanes; ++l) sum += partial[l];
  return sum;
}


}  // namespace

absl::StatusOr<QuantizedWeight> QuantizeBnb4(const float* w, int64_t rows, int64_t cols,
                                             const MethodParams& params) {
  if (auto s = CheckMatrix(w, rows, cols, "bitsandbytes 4-bit"); !s.ok()) return s;
  const int64_t block = params.group_size;
  // bitsandbytes' accepted block sizes (quantize_4bit raises for others).
  if (block < 32 || block > 4096 || (block & (block - 1)) != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "bitsandbytes 4-bit: blocksize %d is not one of 32, 64, ..., 4096", block));
  }
  if (cols % block != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "bitsandbytes 4-bit: blocksize %d does not divide the row length %d; pick a blocksize "
        "that divides it or skip this layer", block, cols));
  }
  if (params.codebook != Codebook::kNF4 && params.codebook != Codebook::kFP4) {
    return absl::InvalidArgumentError("bitsandbytes 4-bit: quant_type must be nf4 or fp4");
  }
  const int64_t n = rows * cols;  // even: block >= 32 divides cols
  const int64_t blocks = n / block;
  const FourBitSearch& search = FourBitSearchFor(params.codebook);

  QuantizedWeight qw;
  uint8_t* codes = qw.Alloc<uint8_t>(static_cast<size_t>(n / 2));
  std::vector<float> absmax(static_cast<size_t>(blocks));
  for (int64_t b = 0; b < blocks; ++b) {
    const float* x = w + b * block;
    float am = 0.0f;
    for (int64_t i = 0; i < block; ++i) am = std::max(am, std::fabs(x[i]));
    absmax[b] = am;
    const float inv = 1.0f / std::max(am, 1e-38f);
    uint8_t* out = codes + b * block / 2;
    for (int64_t i = 0; i < block; i += 2) {
      const float s0 = std::clamp(x[i] * inv, -1.0f, 1.0f);
      const float s1 = std::clamp(x[i + 1] * inv, -1.0f, 1.0f);
      out[i / 2] = static_cast<uint8_t>(FourBitCode(search, s0) << 4 | FourBitCode(search, s1));
    }
  }

  kernels::CodebookMatrix& m = qw.view.codebook;
  qw.view.kind = kernels::LinearKind::kCodebook;
  m.book = params.codebook;
  m.rows = rows;
  m.cols = cols;
  m.block = block;
  m.codes = codes;
  const char* book = params.codebook == Codebook::kNF4 ? "nf4" : "fp4";
  if (!params.double_quant) {
    float* am = qw.Alloc<float>(absmax.size());
    std::copy(absmax.begin(), absmax.end(), am);
    m.absmax = am;
    qw.representation = absl::StrFormat("%s/b%d", book, block);
    return qw;
  }
  // torch's absmax.mean(): its f32 cascade sum divided by the count in f32.
  const float offset = TorchSumF32(absmax.data(), blocks) / static_cast<float>(blocks);
  std::vector<float> centered(absmax.size());
  for (size_t i = 0; i < absmax.size(); ++i) centered[i] = absmax[i] - offset;
  const int64_t outer = (blocks + kNestedBlock - 1) / kNestedBlock;
  uint8_t* am_code = qw.Alloc<uint8_t>(static_cast<size_t>(blocks));
  float* am_scale = qw.Alloc<float>(static_cast<size_t>(outer));
  QuantizeBlockwiseDynamic(centered, am_code, am_scale);
  m.absmax_code = am_code;
  m.absmax_scale = am_scale;
  m.absmax_block = kNestedBlock;
  m.absmax_offset = offset;
  qw.representation = absl::StrFormat("%s/b%d+dq", book, block);
  return qw;
}

absl::StatusOr<QuantizedWeight> QuantizeBnbInt8(const float* w, int64_t rows, int64_t cols,
                                                const MethodParams& params) {
  if (auto s = CheckMatrix(w, rows, cols, "bitsandbytes int8"); !s.ok()) return s;
  if (!(params.int8_threshold >= 0.0f) || std::isinf(params.int8_threshold)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "bitsandbytes int8: outlier threshold %g must be finite and >= 0 (0 disables the "
        "mixed-precision decomposition; bitsandbytes' default is 6.0)", params.int8_threshold));
  }
  QuantizedWeight qw;
  uint8_t* q = qw.Alloc<uint8_t>(static_cast<size_t>(rows * cols));
  uint16_t* scale = qw.Alloc<uint16_t>(static_cast<size_t>(rows));
  uint16_t* zero = qw.Alloc<uint16_t>(static_cast<size_t>(rows));
  const uint16_t zero128 = Fp32ToFp16(128.0f);
  std::vector<float> h(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = w + r * cols;
    float scb = 0.0f;  // SCB: row absmax of the float16 weight
    for (int64_t c = 0; c < cols; ++c) {
      h[c] = Fp16ToFp32(Fp32ToFp16(x[c]));
      scb = std::max(scb, std::fabs(h[c]));
    }
    // 127.0 / row_stats is Tensor.__rtruediv__: reciprocal() * 127.
    const float factor = (1.0f / scb) * 127.0f;
    uint8_t* qr = q + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      const float v = std::nearbyint(h[c] * factor);  // round half to even
      // A zero row gives 0 * inf = NaN, which torch's int8 cast turns into 0.
      const int iv = std::isnan(v) ? 0 : static_cast<int>(v);
      qr[c] = static_cast<uint8_t>(iv + 128);
    }
    // bitsandbytes dequantizes CB * SCB * (1/127) in f32; ingot keeps that scale in f16.
    scale[r] = Fp32ToFp16(scb * 7.874015718698502e-3f);
    zero[r] = zero128;
  }
  kernels::AffineMatrix& a = qw.view.affine;
  qw.view.kind = kernels::LinearKind::kAffine;
  a.bits = 8;
  a.rows = rows;
  a.cols = cols;
  a.group = cols;
  a.zero_kind = kernels::ZeroKind::kZero;
  a.row_bytes = static_cast<size_t>(cols);
  a.q = q;
  a.scale = scale;
  a.zero = zero;
  qw.view.outlier_threshold = params.int8_threshold;
  qw.representation = params.int8_threshold > 0
                          ? absl::StrFormat("int8/row+outliers>%g", params.int8_threshold)
                          : "int8/row";
  return qw;
}

}  // namespace ingot::quant
