// Dispatch for the canonical Linear views (qmatrix.h): activation preparation, exact
// dequantization, LLM.int8 outliers, byte accounting and the codebook tables. The
// integer kernels are in qmatrix_ref.cc (plain loops) and qmatrix_avx2.cc.
#include "kernels/cpu/qmatrix.h"

#include <cmath>
#include <cstddef>
#include <cstring>
#include <vector>

#include "kernels/cpu/qmatrix_internal.h"
#include "kernels/cpu/quant_dot_internal.h"

namespace ingot::kernels {
namespace {

// bitsandbytes get_4bit_type("nf4"): float32 of the published constants.
constexpr float kNf4[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

// bitsandbytes get_4bit_type("fp4"): [0, 0.0625, 8, 12, 4, 6, 2, 3, -0, ...] / 12 in
// float32 (E2M1 with bias: the sign is bit 3).
constexpr float kFp4[16] = {
    0.0f, 0.0625f / 12.0f, 8.0f / 12.0f, 12.0f / 12.0f,
    4.0f / 12.0f, 6.0f / 12.0f, 2.0f / 12.0f, 3.0f / 12.0f,
    -0.0f, -0.0625f / 12.0f, -8.0f / 12.0f, -12.0f / 12.0f,
    -4.0f / 12.0f, -6.0f / 12.0f, -2.0f / 12.0f, -3.0f / 12.0f};

// bitsandbytes create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8) as torch
// computes it in float32 (linspace with a double step, means and powers of ten in
// float32), sorted: 127 negative values, 0, 127 positive values, 1.0.
constexpr float kDynamicMap[256] = {
    -0.99296874f, -0.9789063f, -0.96484375f, -0.9507812f, -0.93671876f, -0.92265624f,
    -0.9085938f, -0.89453125f, -0.8804687f, -0.86640626f, -0.85234374f, -0.8382813f,
    -0.82421875f, -0.8101562f, -0.79609376f, -0.78203124f, -0.7679688f, -0.75390625f,
    -0.7398437f, -0.72578126f, -0.7117188f, -0.6976563f, -0.68359375f, -0.6695312f,
    -0.65546876f, -0.6414063f, -0.6273438f, -0.61328125f, -0.5992187f, -0.58515626f,
    -0.5710938f, -0.5570313f, -0.54296875f, -0.5289062f, -0.5148437f, -0.50078124f, -0.4867187f,
    -0.47265625f, -0.45859373f, -0.44453126f, -0.43046874f, -0.41640624f, -0.40234375f,
    -0.38828123f, -0.37421876f, -0.36015624f, -0.34609374f, -0.33203125f, -0.31796873f,
    -0.30390626f, -0.28984374f, -0.27578127f, -0.26171875f, -0.24765624f, -0.23359375f,
    -0.21953125f, -0.20546874f, -0.19140625f, -0.17734376f, -0.16328125f, -0.14921875f,
    -0.13515624f, -0.12109375f, -0.107031256f, -0.09859375f, -0.09578126f, -0.092968754f,
    -0.09015625f, -0.08734375f, -0.08453125f, -0.08171876f, -0.07890625f, -0.07609375f,
    -0.07328125f, -0.070468746f, -0.067656256f, -0.06484375f, -0.06203125f, -0.059218753f,
    -0.05640625f, -0.05359375f, -0.05078125f, -0.04796875f, -0.04515625f, -0.042343747f,
    -0.03953125f, -0.036718752f, -0.03390625f, -0.03109375f, -0.028281251f, -0.02546875f,
    -0.02265625f, -0.019843752f, -0.01703125f, -0.01421875f, -0.01140625f, -0.00971875f,
    -0.009156249f, -0.00859375f, -0.00803125f, -0.00746875f, -0.00690625f, -0.00634375f,
    -0.00578125f, -0.0052187503f, -0.0046562497f, -0.00409375f, -0.0035312497f, -0.00296875f,
    -0.00240625f, -0.00184375f, -0.0012812499f, -0.0009437501f, -0.00083125f, -0.00071875006f,
    -0.0006062501f, -0.00049375003f, -0.00038125002f, -0.00026875004f, -0.00015625001f,
    -8.875e-05f, -6.625e-05f, -4.375e-05f, -2.1249998e-05f, -7.75e-06f, -3.2500002e-06f,
    -5.5000004e-07f, 0.0f, 5.5000004e-07f, 3.2500002e-06f, 7.75e-06f, 2.1249998e-05f, 4.375e-05f,
    6.625e-05f, 8.875e-05f, 0.00015625001f, 0.00026875004f, 0.00038125002f, 0.00049375003f,
    0.0006062501f, 0.00071875006f, 0.00083125f, 0.0009437501f, 0.0012812499f, 0.00184375f,
    0.00240625f, 0.00296875f, 0.0035312497f, 0.00409375f, 0.0046562497f, 0.0052187503f,
    0.00578125f, 0.00634375f, 0.00690625f, 0.00746875f, 0.00803125f, 0.00859375f, 0.009156249f,
    0.00971875f, 0.01140625f, 0.01421875f, 0.01703125f, 0.019843752f, 0.02265625f, 0.02546875f,
    0.028281251f, 0.03109375f, 0.03390625f, 0.036718752f, 0.03953125f, 0.042343747f,
    0.04515625f, 0.04796875f, 0.05078125f, 0.05359375f, 0.05640625f, 0.059218753f, 0.06203125f,
    0.06484375f, 0.067656256f, 0.070468746f, 0.07328125f, 0.07609375f, 0.07890625f, 0.08171876f,
    0.08453125f, 0.08734375f, 0.09015625f, 0.092968754f, 0.09578126f, 0.09859375f, 0.107031256f,
    0.12109375f, 0.13515624f, 0.14921875f, 0.16328125f, 0.17734376f, 0.19140625f, 0.20546874f,
    0.21953125f, 0.23359375f, 0.24765624f, 0.26171875f, 0.27578127f, 0.28984374f, 0.30390626f,
    0.31796873f, 0.33203125f, 0.34609374f, 0.36015624f, 0.37421876f, 0.38828123f, 0.40234375f,
    0.41640624f, 0.43046874f, 0.44453126f, 0.45859373f, 0.47265625f, 0.4867187f, 0.50078124f,
    0.5148437f, 0.5289062f, 0.54296875f, 0.5570313f, 0.5710938f, 0.58515626f, 0.5992187f,
    0.61328125f, 0.6273438f, 0.6414063f, 0.65546876f, 0.6695312f, 0.68359375f, 0.6976563f,
    0.7117188f, 0.72578126f, 0.7398437f, 0.75390625f, 0.7679688f, 0.78203124f, 0.79609376f,
    0.8101562f, 0.82421875f, 0.8382813f, 0.85234374f, 0.86640626f, 0.8804687f, 0.89453125f,
    0.9085938f, 0.92265624f, 0.93671876f, 0.9507812f, 0.96484375f, 0.9789063f, 0.99296874f, 1.0f,
};

struct Int8Books {
  int8_t nf4[16];
  int8_t fp4[16];
  Int8Books() {
    for (int i = 0; i < 16; ++i) {
      nf4[i] = static_cast<int8_t>(std::lround(kNf4[i] * 127.0f));
      fp4[i] = static_cast<int8_t>(std::lround(kFp4[i] * 127.0f));
    }
  }
};
const Int8Books& Books() {
  static const Int8Books books;
  return books;
}

size_t OutlierBytes(int64_t cols) {
  return sizeof(internal::OutlierList) + static_cast<size_t>(cols) * sizeof(internal::OutlierEntry);
}

bool HasOutlierSection(const ActivationSpec& spec) {
  return spec.outlier_threshold > 0 && spec.type != ActType::kF32;
}

// The f32 path: dequantize the row, then an f32 dot (shapes the integer paths skip).
void DotRowsDequantized(const Linear& w, const float* x, float* y, int64_t r0, int64_t r1) {
  thread_local std::vector<float> row;
  row.resize(static_cast<size_t>(w.cols()));
  for (int64_t r = r0; r < r1; ++r) {
    LinearDequantizeRow(w, r, row.data());
    y[r - r0] = DotF32(row.data(), x, w.cols());
  }
}

// LLM.int8: the outlier columns in f32 against the exact dequantized weights.
void AddOutliers(const AffineMatrix& a, const internal::OutlierList* out, float* y, int64_t r0,
                 int64_t r1) {
  if (out == nullptr || out->count == 0) return;
  for (int64_t r = r0; r < r1; ++r) {
    float s = 0;
    for (int32_t i = 0; i < out->count; ++i) {
      s += out->entries()[i].value * internal::AffineWeight(a, r, out->entries()[i].col);
    }
    y[r - r0] += s;
  }
}

// One to four tokens through the integer path of w (kAffine / kCodebook).
void IntegerDotTokens(const Linear& w, const ActivationSpec& spec, const void* const* x_act,
                      int n_tok, float* const* y, int64_t r0, int64_t r1, bool use_avx2) {
  if (w.kind == LinearKind::kAffine) {
    const BlockQ8_1* x[4];
    for (int k = 0; k < n_tok; ++k) x[k] = static_cast<const BlockQ8_1*>(x_act[k]);
    if (use_avx2) {
      internal::AffineDotRowsAvx2(w.affine, x, n_tok, y, r0, r1);
    } else {
      internal::AffineDotRowsRef(w.affine, x, n_tok, y, r0, r1);
    }
    for (int k = 0; k < n_tok; ++k) {
      AddOutliers(w.affine, internal::FindOutliers(spec, x_act[k], w.cols()), y[k], r0, r1);
    }
    return;
  }
  const BlockQ8_0* x[4];
  for (int k = 0; k < n_tok; ++k) x[k] = static_cast<const BlockQ8_0*>(x_act[k]);
  if (use_avx2) {
    internal::CodebookDotRowsAvx2(w.codebook, x, n_tok, y, r0, r1);
  } else {
    internal::CodebookDotRowsRef(w.codebook, x, n_tok, y, r0, r1);
  }
}

void LinearDotRowsImpl(const Linear& w, const void* x_act, float* y, int64_t r0, int64_t r1,
                       bool use_avx2) {
  if (w.kind == LinearKind::kGgml) {
    if (use_avx2) {
      DotRows(w.ggml, x_act, y, r0, r1);
    } else {
      DotRowsRef(w.ggml, x_act, y, r0, r1);
    }
    return;
  }
  const ActivationSpec spec = LinearActivation(w);
  if (spec.type == ActType::kF32) {
    DotRowsDequantized(w, static_cast<const float*>(x_act), y, r0, r1);
    return;
  }
  const void* xs[1] = {x_act};
  float* ys[1] = {y};
  IntegerDotTokens(w, spec, xs, 1, ys, r0, r1, use_avx2);
}

}  // namespace

namespace internal {

const OutlierList* FindOutliers(const ActivationSpec& spec, const void* x_act, int64_t cols) {
  if (!HasOutlierSection(spec)) return nullptr;
  return reinterpret_cast<const OutlierList*>(static_cast<const uint8_t*>(x_act) +
                                              ActivationRowBytes(spec.type, cols));
}

bool AffineIntegerPath(const AffineMatrix& a) {
  return a.bits >= 1 && a.bits <= 8 && a.cols > 0 && a.cols % 32 == 0 && a.group > 0 &&
         a.group % 16 == 0 && a.cols % a.group == 0;
}

bool CodebookIntegerPath(const CodebookMatrix& m) {
  return m.block > 0 && m.block % 32 == 0 && m.cols % m.block == 0;
}

float AffineWeight(const AffineMatrix& a, int64_t r, int64_t c) {
  const float q = static_cast<float>(
      AffineCode(a.q + static_cast<size_t>(r) * a.row_bytes, a.bits, c));
  const int64_t gi = r * a.groups_per_row() + c / a.group;
  const float scale = Fp16ToFp32(a.scale[gi]);
  const float zero = a.zero != nullptr ? Fp16ToFp32(a.zero[gi]) : 0.0f;
  return a.zero_kind == ZeroKind::kZero ? (q - zero) * scale : q * scale + zero;
}

void AffineGroupConstants(const AffineMatrix& a, int64_t gi, float* scale, float* m_eff) {
  const float s = Fp16ToFp32(a.scale[gi]);
  const float zero = a.zero != nullptr ? Fp16ToFp32(a.zero[gi]) : 0.0f;
  float m = a.zero_kind == ZeroKind::kZero ? -zero * s : zero;
  if (a.bits == 8) m += 128.0f * s;
  *scale = s;
  *m_eff = m;
}

const int8_t* CodebookInt8(Codebook book) {
  return book == Codebook::kNF4 ? Books().nf4 : Books().fp4;
}

float CodebookAbsmax(const CodebookMatrix& m, int64_t b) {
  if (m.absmax_code == nullptr) return m.absmax[b];
  return kDynamicMap[m.absmax_code[b]] * m.absmax_scale[b / m.absmax_block] + m.absmax_offset;
}

}  // namespace internal

const float* CodebookValues(Codebook book) { return book == Codebook::kNF4 ? kNf4 : kFp4; }

const float* DynamicMap() { return kDynamicMap; }

int64_t Linear::rows() const {
  switch (kind) {
    case LinearKind::kGgml: return ggml.rows;
    case LinearKind::kAffine: return affine.rows;
    case LinearKind::kCodebook: return codebook.rows;
  }
  return 0;
}

int64_t Linear::cols() const {
  switch (kind) {
    case LinearKind::kGgml: return ggml.cols;
    case LinearKind::kAffine: return affine.cols;
    case LinearKind::kCodebook: return codebook.cols;
  }
  return 0;
}

// kAffine: codes + f16 scale (+ f16 zero when present) per group.
// kCodebook: 4-bit codes + f32 absmax per block, or with double quantization one code
// byte per block + f32 scale per absmax_block blocks + the f32 offset (the 256-entry
// dynamic map is shared, not counted).
int64_t Linear::bytes() const {
  switch (kind) {
    case LinearKind::kGgml: return ggml.rows * static_cast<int64_t>(ggml.row_bytes);
    case LinearKind::kAffine: {
      const int64_t groups = affine.rows * affine.groups_per_row();
      return affine.rows * static_cast<int64_t>(affine.row_bytes) + groups * 2 +
             (affine.zero != nullptr ? groups * 2 : 0) +
             (input_order != nullptr ? affine.cols * 4 : 0);
    }
    case LinearKind::kCodebook: {
      const int64_t n = codebook.rows * codebook.cols;
      const int64_t blocks = codebook.block > 0 ? n / codebook.block : 0;
      if (codebook.absmax_code == nullptr) return n / 2 + blocks * 4;
      const int64_t outer = (blocks + codebook.absmax_block - 1) / codebook.absmax_block;
      return n / 2 + blocks + outer * 4 + 4;
    }
  }
  return 0;
}

ActivationSpec LinearActivation(const Linear& w) {
  switch (w.kind) {
    case LinearKind::kGgml: return {ActivationTypeFor(w.ggml.type), 0.0f};
    case LinearKind::kAffine:
      // The f32 path dequantizes rows in the input's order: no gather there.
      if (!internal::AffineIntegerPath(w.affine)) return {ActType::kF32, 0.0f};
      return {ActType::kQ8_1, w.outlier_threshold > 0 ? w.outlier_threshold : 0.0f, w.input_order};
    case LinearKind::kCodebook:
      if (!internal::CodebookIntegerPath(w.codebook)) return {ActType::kF32, 0.0f};
      return {ActType::kQ8_0, 0.0f};
  }
  return {};
}

size_t LinearActivationBytes(const ActivationSpec& spec, int64_t cols) {
  return ActivationRowBytes(spec.type, cols) + (HasOutlierSection(spec) ? OutlierBytes(cols) : 0);
}

void LinearPrepare(const ActivationSpec& spec, const float* x, int64_t cols, void* out) {
  if (spec.input_order != nullptr) {
    thread_local std::vector<float> gathered;
    gathered.resize(static_cast<size_t>(cols));
    for (int64_t j = 0; j < cols; ++j) gathered[j] = x[spec.input_order[j]];
    ActivationSpec stored = spec;
    stored.input_order = nullptr;
    LinearPrepare(stored, gathered.data(), cols, out);
    return;
  }
  if (!HasOutlierSection(spec)) {
    PrepareActivations(spec.type, x, cols, out);
    return;
  }
  // Outlier columns leave the int8 blocks (so they do not set the block scales) and go
  // to the list.
  thread_local std::vector<float> inliers;
  inliers.assign(x, x + cols);
  auto* list = reinterpret_cast<internal::OutlierList*>(static_cast<uint8_t*>(out) +
                                                        ActivationRowBytes(spec.type, cols));
  int32_t n = 0;
  for (int64_t c = 0; c < cols; ++c) {
    if (std::fabs(x[c]) > spec.outlier_threshold) {
      list->entries()[n].col = static_cast<int32_t>(c);
      list->entries()[n].value = x[c];
      ++n;
      inliers[c] = 0.0f;
    }
  }
  list->count = n;
  list->reserved = 0;
  PrepareActivations(spec.type, inliers.data(), cols, out);
}

void LinearDotRows(const Linear& w, const void* x_act, float* y, int64_t r0, int64_t r1) {
  LinearDotRowsImpl(w, x_act, y, r0, r1, internal::CpuHasAvx2());
}

void LinearDotRowsRef(const Linear& w, const void* x_act, float* y, int64_t r0, int64_t r1) {
  LinearDotRowsImpl(w, x_act, y, r0, r1, false);
}

void LinearDotRowsTokens(const Linear& w, const uint8_t* x_act, size_t x_stride, int64_t n_tok,
                         float* y, int64_t y_stride, int64_t r0, int64_t r1, CpuLevel level) {
  if (w.kind == LinearKind::kGgml) {
    DotRowsTokens(w.ggml, x_act, x_stride, n_tok, y, y_stride, r0, r1, level);
    return;
  }
  const ActivationSpec spec = LinearActivation(w);
  if (spec.type == ActType::kF32) {
    // The f32 path: dequantize each row once for all tokens.
    thread_local std::vector<float> row;
    row.resize(static_cast<size_t>(w.cols()));
    for (int64_t r = r0; r < r1; ++r) {
      LinearDequantizeRow(w, r, row.data());
      for (int64_t t = 0; t < n_tok; ++t) {
        y[t * y_stride + r] =
            DotF32(row.data(), reinterpret_cast<const float*>(x_act + t * x_stride), w.cols());
      }
    }
    return;
  }
  if (w.kind == LinearKind::kAffine) {
    bool tiled = true;
    if (level >= CpuLevel::kAvx512Vnni && internal::AffineTokensAvx512Vnni(w.affine)) {
      internal::DotTokensAmxThenVnni<AffineMatrix>(
          level >= CpuLevel::kAmx ? internal::AffineDotTokensAmx : nullptr, internal::AffineDotTokensAvx512Vnni,
          w.affine, x_act, x_stride, n_tok, y, y_stride, r0, r1);
    } else if (level >= CpuLevel::kAvx2 && internal::AffineTokensAvx2(w.affine)) {
      internal::AffineDotTokensAvx2(w.affine, x_act, x_stride, n_tok, y, y_stride, r0, r1);
    } else {
      tiled = false;
    }
    if (tiled) {
      for (int64_t t = 0; t < n_tok; ++t) {
        AddOutliers(w.affine, internal::FindOutliers(spec, x_act + t * x_stride, w.cols()), y + t * y_stride + r0,
                    r0, r1);
      }
      return;
    }
  }
  const bool avx2 = level >= CpuLevel::kAvx2;
  int64_t t = 0;
  if (avx2) {
    // Each unpacked weight block serves four tokens.
    for (; t + 4 <= n_tok; t += 4) {
      const void* xs[4];
      float* ys[4];
      for (int k = 0; k < 4; ++k) {
        xs[k] = x_act + (t + k) * x_stride;
        ys[k] = y + (t + k) * y_stride + r0;
      }
      IntegerDotTokens(w, spec, xs, 4, ys, r0, r1, true);
    }
  }
  for (; t < n_tok; ++t) {
    LinearDotRowsImpl(w, x_act + t * x_stride, y + t * y_stride + r0, r0, r1, avx2);
  }
}

void LinearDotRowsTokens(const Linear& w, const uint8_t* x_act, size_t x_stride, int64_t n_tok,
                         float* y, int64_t y_stride, int64_t r0, int64_t r1) {
  LinearDotRowsTokens(w, x_act, x_stride, n_tok, y, y_stride, r0, r1, BestCpuLevel());
}

uint32_t AffineCodeAt(const AffineMatrix& a, int64_t r, int64_t c) {
  return internal::AffineCode(a.q + static_cast<size_t>(r) * a.row_bytes, a.bits, c);
}

float CodebookBlockAbsmax(const CodebookMatrix& m, int64_t b) { return internal::CodebookAbsmax(m, b); }

void LinearDequantizeRow(const Linear& w, int64_t r, float* out) {
  switch (w.kind) {
    case LinearKind::kGgml:
      GetGgmlTypeTraits(w.ggml.type).dequantize(w.ggml.Row(r), out, w.ggml.cols);
      return;
    case LinearKind::kAffine: {
      const AffineMatrix& a = w.affine;
      if (w.input_order != nullptr) {
        thread_local std::vector<float> stored;
        stored.resize(static_cast<size_t>(a.cols));
        Linear plain = w;
        plain.input_order = nullptr;
        LinearDequantizeRow(plain, r, stored.data());
        for (int64_t j = 0; j < a.cols; ++j) out[w.input_order[j]] = stored[j];
        return;
      }
      const uint8_t* row = a.q + static_cast<size_t>(r) * a.row_bytes;
      for (int64_t g = 0; g < a.groups_per_row(); ++g) {
        const int64_t gi = r * a.groups_per_row() + g;
        const float scale = Fp16ToFp32(a.scale[gi]);
        const float zero = a.zero != nullptr ? Fp16ToFp32(a.zero[gi]) : 0.0f;
        for (int64_t c = g * a.group; c < (g + 1) * a.group; ++c) {
          const float q = static_cast<float>(internal::AffineCode(row, a.bits, c));
          out[c] = a.zero_kind == ZeroKind::kZero ? (q - zero) * scale : q * scale + zero;
        }
      }
      return;
    }
    case LinearKind::kCodebook: {
      const CodebookMatrix& m = w.codebook;
      const float* book = CodebookValues(m.book);
      const int64_t base = r * m.cols;
      float absmax = 0;
      for (int64_t c = 0; c < m.cols; ++c) {
        const int64_t i = base + c;
        if (c == 0 || i % m.block == 0) absmax = internal::CodebookAbsmax(m, i / m.block);
        const uint8_t byte = m.codes[i / 2];
        const int code = (i % 2 == 0) ? (byte >> 4) : (byte & 15);
        out[c] = book[code] * absmax;
      }
      return;
    }
  }
}

const char* LinearImplementation() { return CpuLevelName(BestCpuLevel()); }

}  // namespace ingot::kernels
