// Dense linear algebra for GPTQ and AWQ in plain C++ (no BLAS in this build): a
// register-blocked GEMM and a blocked Cholesky / triangular inverse in double.
//
// The GEMM is compiled twice (target_clones: x86-64-v3 = AVX2+FMA, and the baseline)
// and picked at load time. Napkin math: a 6 x 16 float tile keeps 12 ymm accumulators,
// 2 loads of b + 6 broadcasts of a per 12 FMAs; with k blocked to 256 the b panel
// (256 x 16 x 4 B = 16 KiB) stays in L1 across the row tiles.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "absl/strings/str_format.h"
#include "engine/quant/affine_internal.h"

namespace ingot::quant::affine {
namespace {

constexpr int kMr = 6;        // rows of a register tile
constexpr int64_t kKc = 256;  // depth of one pass over a b panel

template <typename T>
struct VecOf {
  typedef T type __attribute__((vector_size(32)));
};

// c[0..kMr) x [0..2W) += alpha * a[0..kMr) x [0..k) * b[0..k) x [0..2W).
template <typename T>
__attribute__((always_inline)) inline void TileFull(int64_t k, T alpha, const T* a, int64_t lda,
                                                    const T* b, int64_t ldb, T* c,
                                                    int64_t ldc) {
  using V = typename VecOf<T>::type;
  constexpr int kW = 32 / sizeof(T);
  // Fully unrolled so the 12 accumulators live in registers.
  V acc[kMr][2];
#pragma GCC unroll 6
  for (int r = 0; r < kMr; ++r) acc[r][0] = acc[r][1] = V{};
  for (int64_t p = 0; p < k; ++p) {
    V b0, b1;
    std::memcpy(&b0, b + p * ldb, sizeof(V));
    std::memcpy(&b1, b + p * ldb + kW, sizeof(V));
#pragma GCC unroll 6
    for (int r = 0; r < kMr; ++r) {
      const T av = a[r * lda + p];
      acc[r][0] += av * b0;
      acc[r][1] += av * b1;
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < kMr; ++r) {
    V c0, c1;
    std::memcpy(&c0, c + r * ldc, sizeof(V));
    std::memcpy(&c1, c + r * ldc + kW, sizeof(V));
    c0 += alpha * acc[r][0];
    c1 += alpha * acc[r][1];
    std::memcpy(c + r * ldc, &c0, sizeof(V));
    std::memcpy(c + r * ldc + kW, &c1, sizeof(V));
  }
}

// Edges: any m x n block, plain loops (p outer so the inner loop is contiguous in c, b).
template <typename T>
__attribute__((always_inline)) inline void TileEdge(int64_t m, int64_t n, int64_t k, T alpha,
                                                    const T* a, int64_t lda, const T* b,
                                                    int64_t ldb, T* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t p = 0; p < k; ++p) {
      const T av = alpha * a[i * lda + p];
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] += av * b[p * ldb + j];
    }
  }
}

template <typename T>
__attribute__((always_inline)) inline void GemmBody(int64_t m, int64_t n, int64_t k, T alpha,
                                                    const T* a, int64_t lda, const T* b,
                                                    int64_t ldb, T* c, int64_t ldc) {
  constexpr int64_t kNr = 2 * (32 / sizeof(T));
  const int64_t m_full = m - m % kMr;
  const int64_t n_full = n - n % kNr;
  // The b panel is copied into contiguous storage: read in place with a power-of-two
  // row stride its lines would fall into a few L1 sets and evict each other.
  alignas(64) T panel[kKc * kNr];
  for (int64_t p0 = 0; p0 < k; p0 += kKc) {
    const int64_t kc = std::min(kKc, k - p0);
    for (int64_t j = 0; j < n_full; j += kNr) {
      for (int64_t p = 0; p < kc; ++p) {
        std::memcpy(panel + p * kNr, b + (p0 + p) * ldb + j, kNr * sizeof(T));
      }
      for (int64_t i = 0; i < m_full; i += kMr) {
        TileFull<T>(kc, alpha, a + i * lda + p0, lda, panel, kNr, c + i * ldc + j, ldc);
      }
      if (m_full < m) {
        TileEdge<T>(m - m_full, kNr, kc, alpha, a + m_full * lda + p0, lda, panel, kNr,
                    c + m_full * ldc + j, ldc);
      }
    }
    if (n_full < n) {
      TileEdge<T>(m, n - n_full, kc, alpha, a + p0, lda, b + p0 * ldb + n_full, ldb,
                  c + n_full, ldc);
    }
  }
}

}  // namespace

__attribute__((target_clones("arch=x86-64-v3", "default"))) void GemmAccF32(
    int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
    int64_t ldb, float* c, int64_t ldc) {
  GemmBody<float>(m, n, k, alpha, a, lda, b, ldb, c, ldc);
}

__attribute__((target_clones("arch=x86-64-v3", "default"))) void GemmAccF64(
    int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
    const double* b, int64_t ldb, double* c, int64_t ldc) {
  GemmBody<double>(m, n, k, alpha, a, lda, b, ldb, c, ldc);
}

namespace {
constexpr int64_t kNb = 64;  // block of the Cholesky and the triangular inverse

absl::Status NotPositiveDefinite(int64_t j, double d) {
  return absl::FailedPreconditionError(absl::StrFormat(
      "Cholesky failed at column %d (pivot %g): the damped Hessian is not positive "
      "definite; raise gptq_damp or calibrate on more tokens",
      j, d));
}
}  // namespace

absl::Status CholeskyLower(double* a, int64_t n) {
  std::vector<double> panel_t;
  for (int64_t k0 = 0; k0 < n; k0 += kNb) {
    const int64_t b = std::min(kNb, n - k0);
    const int64_t k1 = k0 + b;
    // Diagonal block, unblocked (earlier blocks were applied by the trailing updates).
    for (int64_t j = k0; j < k1; ++j) {
      double d = a[j * n + j];
      for (int64_t p = k0; p < j; ++p) d -= a[j * n + p] * a[j * n + p];
      if (!(d > 0.0) || !std::isfinite(d)) return NotPositiveDefinite(j, d);
      d = std::sqrt(d);
      a[j * n + j] = d;
      for (int64_t i = j + 1; i < k1; ++i) {
        double s = a[i * n + j];
        for (int64_t p = k0; p < j; ++p) s -= a[i * n + p] * a[j * n + p];
        a[i * n + j] = s / d;
      }
    }
    // Panel below it: L21 = A21 L11^-T.
    for (int64_t i = k1; i < n; ++i) {
      double* row = a + i * n;
      for (int64_t j = k0; j < k1; ++j) {
        double s = row[j];
        const double* lj = a + j * n;
        for (int64_t p = k0; p < j; ++p) s -= row[p] * lj[p];
        row[j] = s / lj[j];
      }
    }
    // Trailing lower triangle: A22 -= L21 L21^T, by strips of rows.
    const int64_t m = n - k1;
    if (m == 0) continue;
    panel_t.assign(static_cast<size_t>(b * m), 0.0);  // (b, m) = L21^T
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t p = 0; p < b; ++p) panel_t[p * m + i] = a[(k1 + i) * n + k0 + p];
    }
    constexpr int64_t kStrip = 96;
    for (int64_t i0 = 0; i0 < m; i0 += kStrip) {
      const int64_t h = std::min(kStrip, m - i0);
      GemmAccF64(h, i0 + h, b, -1.0, a + (k1 + i0) * n + k0, n, panel_t.data(), m,
                 a + (k1 + i0) * n + k1, n);
    }
  }
  return absl::OkStatus();
}

namespace {
// x = l^-1 for lower-triangular l (n x n); x's strict upper triangle is zero.
void InvertLower(const double* l, int64_t n, double* x) {
  std::fill(x, x + n * n, 0.0);
  std::vector<double> t;
  for (int64_t k0 = 0; k0 < n; k0 += kNb) {
    const int64_t b = std::min(kNb, n - k0);
    const int64_t k1 = k0 + b;
    // Diagonal block: X_kk = L_kk^-1, column by column.
    for (int64_t j = k0; j < k1; ++j) {
      x[j * n + j] = 1.0 / l[j * n + j];
      for (int64_t i = j + 1; i < k1; ++i) {
        double s = 0.0;
        for (int64_t p = j; p < i; ++p) s += l[i * n + p] * x[p * n + j];
        x[i * n + j] = -s / l[i * n + i];
      }
    }
    if (k0 == 0) continue;
    // X[k, :k0] = -X_kk (L[k, :k0] X[:k0, :k0]); X[:k0, :k0] is lower, so the column
    // chunk starting at jc needs only p >= jc.
    t.assign(static_cast<size_t>(b * k0), 0.0);  // (b, k0)
    for (int64_t jc = 0; jc < k0; jc += kNb) {
      const int64_t w = std::min(kNb, k0 - jc);
      GemmAccF64(b, w, k0 - jc, 1.0, l + k0 * n + jc, n, x + jc * n + jc, n, t.data() + jc, k0);
    }
    for (int64_t r = 0; r < b; ++r) {
      double* xr = x + (k0 + r) * n;
      for (int64_t s = 0; s <= r; ++s) {
        const double f = -x[(k0 + r) * n + k0 + s];
        const double* ts = t.data() + s * k0;
        for (int64_t j = 0; j < k0; ++j) xr[j] += f * ts[j];
      }
    }
  }
}
}  // namespace

absl::Status UpperCholeskyOfInverse(std::vector<double>& h, int64_t n, std::vector<double>* u) {
  // J H J (both orders reversed), factor, invert; U = J L^-1 J is upper with
  // U^T U = J L^-T L^-1 J = (J L L^T J)^-1 = H^-1.
  std::vector<double> r(static_cast<size_t>(n * n));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j <= i; ++j) r[i * n + j] = h[(n - 1 - i) * n + (n - 1 - j)];
  }
  if (absl::Status s = CholeskyLower(r.data(), n); !s.ok()) return s;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = i + 1; j < n; ++j) r[i * n + j] = 0.0;
  }
  InvertLower(r.data(), n, h.data());
  u->assign(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = i; j < n; ++j) (*u)[i * n + j] = h[(n - 1 - i) * n + (n - 1 - j)];
  }
  return absl::OkStatus();
}

}  // namespace ingot::quant::affine
