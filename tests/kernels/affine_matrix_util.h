// Random affine matrices for the kernel tests (qmatrix_test.cc, tile_amx_test.cc): codes,
// f16 scales and zeros (or biases) for a shape, and guarded copies that end at a page a
// kernel faults on when it reads past them.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "kernels/cpu/qmatrix.h"
#include "kernels/ggml_types.h"
#include "tests/test_util.h"

namespace ingot::kernels {

struct AffineCase {
  int bits;
  int64_t rows, cols, group;
  ZeroKind kind;
  bool has_zero;
};

struct AffineStore {
  std::vector<uint8_t> q;
  std::vector<uint16_t> scale, zero;
  Linear w;
};

inline AffineStore MakeAffine(const AffineCase& c, std::mt19937& rng) {
  AffineStore s;
  AffineMatrix& a = s.w.affine;
  s.w.kind = LinearKind::kAffine;
  a.bits = c.bits;
  a.rows = c.rows;
  a.cols = c.cols;
  a.group = c.group;
  a.zero_kind = c.kind;
  a.row_bytes = static_cast<size_t>((c.cols * c.bits + 7) / 8);
  std::uniform_int_distribution<int> byte(0, 255);
  s.q.resize(a.row_bytes * c.rows);
  for (auto& b : s.q) b = static_cast<uint8_t>(byte(rng));
  const int64_t groups = c.rows * (c.cols / c.group);
  std::uniform_real_distribution<float> scale(0.002f, 0.05f), unit(0.0f, 1.0f);
  const float qmax = static_cast<float>((1 << c.bits) - 1);
  for (int64_t g = 0; g < groups; ++g) {
    const float sc = scale(rng);
    s.scale.push_back(Fp32ToFp16(sc));
    // Zeros anywhere in the code range (HQQ's are fractional); biases as -zero * scale.
    const float z = unit(rng) * qmax;
    s.zero.push_back(Fp32ToFp16(c.kind == ZeroKind::kZero ? z : -z * sc));
  }
  a.q = s.q.data();
  a.scale = s.scale.data();
  a.zero = c.has_zero ? s.zero.data() : nullptr;
  return s;
}

// Copies of an affine matrix's codes, scales and zeros that each end at a guard page (a
// kernel reading past any of them faults); s.w points at them while this lives.
struct GuardedAffine {
  std::unique_ptr<ingot::testing::GuardedBytes> q, scale, zero;
  explicit GuardedAffine(AffineStore& s) {
    auto copy = [](const void* src, size_t bytes, std::unique_ptr<ingot::testing::GuardedBytes>* dst) {
      *dst = std::make_unique<ingot::testing::GuardedBytes>(bytes);
      std::memcpy((*dst)->data(), src, bytes);
      return (*dst)->data();
    };
    s.w.affine.q = copy(s.q.data(), s.q.size(), &q);
    s.w.affine.scale = reinterpret_cast<const uint16_t*>(copy(s.scale.data(), 2 * s.scale.size(), &scale));
    if (s.w.affine.zero != nullptr) {
      s.w.affine.zero = reinterpret_cast<const uint16_t*>(copy(s.zero.data(), 2 * s.zero.size(), &zero));
    }
  }
};

}  // namespace ingot::kernels
