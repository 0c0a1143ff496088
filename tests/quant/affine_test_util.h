// Helpers for the affine-group quantizer tests (rtn_test, gptq_test, awq_test,
// awq_clip_test): the golden data of tests/reference/gen_quant_gptq.py and
// gen_quant_awq.py, and a plain decoder of kAffine.
#pragma once

#include <cmath>
#include <cstdint>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "engine/quant/quantizers.h"
#include "gtest/gtest.h"
#include "kernels/ggml_types.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace ingot::quant::testing {

// tests/data/quant/<dir>/: gptq (tests/reference/gen_quant_gptq.py: RTN, GPTQ, AWQ
// without duo scaling) or awq (gen_quant_awq.py: AWQ duo scaling and clipping).
inline std::string QuantDataPath(const std::string& name, const std::string& dir = "gptq") {
  return ::ingot::testing::SourcePath("tests/data/quant/" + dir + "/" + name);
}

inline std::string GptqDataPath(const std::string& name) { return QuantDataPath(name); }

inline nlohmann::json LoadQuantIndex(const std::string& dir) {
  std::ifstream f(QuantDataPath("index.json", dir));
  EXPECT_TRUE(f.good()) << "missing " << QuantDataPath("index.json", dir)
                        << "; regenerate with tests/reference/gen_quant_" << dir << ".py";
  return nlohmann::json::parse(f);
}

inline nlohmann::json LoadGptqIndex() { return LoadQuantIndex("gptq"); }

// A raw little-endian array of T (this machine is little-endian).
template <typename T>
std::vector<T> LoadRaw(const std::string& name, size_t count, const std::string& dir = "gptq") {
  std::vector<T> v(count);
  std::ifstream f(QuantDataPath(name, dir), std::ios::binary);
  EXPECT_TRUE(f.good()) << "missing " << QuantDataPath(name, dir);
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(count * sizeof(T)));
  EXPECT_EQ(static_cast<size_t>(f.gcount()), count * sizeof(T)) << name;
  return v;
}

inline std::vector<float> LoadF16AsF32(const std::string& name, size_t count,
                                       const std::string& dir = "gptq") {
  const std::vector<uint16_t> h = LoadRaw<uint16_t>(name, count, dir);
  std::vector<float> out(count);
  for (size_t i = 0; i < count; ++i) out[i] = Fp16ToFp32(h[i]);
  return out;
}

inline uint32_t CodeAt(const kernels::AffineMatrix& m, int64_t r, int64_t c) {
  const uint8_t* row = m.q + static_cast<size_t>(r) * m.row_bytes;
  const int64_t bit = c * m.bits;
  uint32_t v = row[bit >> 3] >> (bit & 7);
  if ((bit & 7) + m.bits > 8) v |= static_cast<uint32_t>(row[(bit >> 3) + 1]) << (8 - (bit & 7));
  return v & ((1u << m.bits) - 1u);
}
inline float ScaleAt(const kernels::AffineMatrix& m, int64_t r, int64_t c) {
  return Fp16ToFp32(m.scale[r * m.groups_per_row() + c / m.group]);
}
inline float ZeroAt(const kernels::AffineMatrix& m, int64_t r, int64_t c) {
  return Fp16ToFp32(m.zero[r * m.groups_per_row() + c / m.group]);
}

// w = (q - zero) * scale, the kZero definition, decoded without the kernels.
inline std::vector<float> Dequantize(const kernels::AffineMatrix& m) {
  std::vector<float> out(static_cast<size_t>(m.rows * m.cols));
  for (int64_t r = 0; r < m.rows; ++r) {
    for (int64_t c = 0; c < m.cols; ++c) {
      out[r * m.cols + c] =
          (static_cast<float>(CodeAt(m, r, c)) - ZeroAt(m, r, c)) * ScaleAt(m, r, c);
    }
  }
  return out;
}

// The calibration inputs of an AWQ vector as the peer saw them: `x` (tokens, cols) f16
// samples and the per-column mean |x| under `mean_key`, from the index's `dir`.
inline CalibrationStats AwqInputsFromIndex(const nlohmann::json& a, const std::string& mean_key,
                                           const std::string& dir) {
  const int64_t cols = a["cols"], tokens = a["tokens"];
  CalibrationStats calib;
  calib.cols = cols;
  calib.samples = LoadF16AsF32(a["x"], tokens * cols, dir);
  calib.n_samples = tokens;
  calib.tokens = tokens;
  calib.act_abs_mean = LoadRaw<float>(a[mean_key], cols, dir);
  return calib;
}

// sum over tokens of x x^T in double (the CalibrationStats definition).
inline CalibrationStats StatsFromInputs(const std::vector<float>& x, int64_t tokens,
                                        int64_t cols) {
  CalibrationStats s;
  s.cols = cols;
  s.tokens = tokens;
  s.hessian.assign(static_cast<size_t>(cols * cols), 0.0);
  for (int64_t t = 0; t < tokens; ++t) {
    const float* xt = &x[t * cols];
    for (int64_t i = 0; i < cols; ++i) {
      const double xi = xt[i];
      double* hi = &s.hessian[i * cols];
      for (int64_t j = 0; j <= i; ++j) hi[j] += xi * xt[j];
    }
  }
  for (int64_t i = 0; i < cols; ++i) {
    for (int64_t j = i + 1; j < cols; ++j) s.hessian[i * cols + j] = s.hessian[j * cols + i];
  }
  s.act_abs_mean.assign(static_cast<size_t>(cols), 0.0f);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t c = 0; c < cols; ++c) s.act_abs_mean[c] += std::fabs(x[t * cols + c]);
  }
  for (float& v : s.act_abs_mean) v /= static_cast<float>(tokens);
  s.samples = x;
  s.n_samples = tokens;
  return s;
}

// Correlated inputs: `factors` latent Gaussians mixed into `cols` channels plus noise,
// channel magnitudes log-normal (so H is far from diagonal and badly scaled).
inline std::vector<float> CorrelatedInputs(int64_t tokens, int64_t cols, int64_t factors,
                                           uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> mix(static_cast<size_t>(factors * cols)), mag(static_cast<size_t>(cols));
  for (float& v : mix) v = nd(gen) / 4.0f;
  for (float& v : mag) v = std::exp(0.7f * nd(gen));
  std::vector<float> x(static_cast<size_t>(tokens * cols)), z(static_cast<size_t>(factors));
  for (int64_t t = 0; t < tokens; ++t) {
    for (float& v : z) v = nd(gen);
    for (int64_t c = 0; c < cols; ++c) {
      float s = 0.3f * nd(gen);
      for (int64_t f = 0; f < factors; ++f) s += z[f] * mix[f * cols + c];
      x[t * cols + c] = s * mag[c];
    }
  }
  return x;
}

inline std::vector<float> RandomWeights(int64_t rows, int64_t cols, uint32_t seed,
                                        float sigma = 0.05f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> nd(0.0f, sigma);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (float& v : w) v = nd(gen);
  return w;
}

// tr((W - Q) H (W - Q)^T) with H = sum x x^T: the output error GPTQ minimizes.
inline double HessianError(const std::vector<float>& w, const std::vector<float>& q, int64_t rows,
                           int64_t cols, const std::vector<double>& h) {
  double total = 0.0;
  std::vector<double> d(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) d[c] = static_cast<double>(w[r * cols + c]) - q[r * cols + c];
    for (int64_t i = 0; i < cols; ++i) {
      double s = 0.0;
      for (int64_t j = 0; j < cols; ++j) s += h[i * cols + j] * d[j];
      total += d[i] * s;
    }
  }
  return total;
}

}  // namespace ingot::quant::testing
