// The GGML type table and its reference dequantizers against golden vectors from the
// gguf Python package (tests/reference/gen_gguf.py writes tests/data/gguf/dequant_*.bin).
// The test loops over the table: a type marked supported must have golden data (or be
// listed in kNoPeerDequantizer with a peer-derived check of its own).
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/ggml_types.h"
#include "tests/test_util.h"

namespace ingot {
namespace {

using ::ingot::testing::SourcePath;

// gguf.quants has no dequantizer for these; checked below from Q8_0's golden data.
const std::set<GgmlType> kNoPeerDequantizer = {GgmlType::kQ8_1, GgmlType::kQ8_K};

struct GoldenCase {
  int64_t n = 0;       // elements
  std::string bytes;   // packed blocks
  std::vector<float> values;  // gguf.quants.dequantize(bytes), (n)
};

std::string GoldenPath(const GgmlTypeTraits& t) {
  std::string name = t.name;
  for (char& c : name) c = static_cast<char>(std::tolower(c));
  return SourcePath("tests/data/gguf/dequant_" + name + ".bin");
}

// Layout: see tests/reference/gen_gguf.py.
bool LoadGolden(const std::string& path, uint32_t type, std::vector<GoldenCase>& cases) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string buf = ss.str();
  size_t pos = 0;
  auto read_u32 = [&](uint32_t& v) {
    if (pos + 4 > buf.size()) return false;
    std::memcpy(&v, buf.data() + pos, 4);
    pos += 4;
    return true;
  };
  uint32_t file_type = 0, n_cases = 0;
  if (buf.compare(0, 4, "IDQ1") != 0) return false;
  pos = 4;
  if (!read_u32(file_type) || !read_u32(n_cases) || file_type != type) return false;
  for (uint32_t c = 0; c < n_cases; ++c) {
    GoldenCase g;
    uint32_t n = 0, nbytes = 0;
    if (!read_u32(n) || !read_u32(nbytes)) return false;
    if (pos + nbytes + 4ull * n > buf.size()) return false;
    g.n = n;
    g.bytes = buf.substr(pos, nbytes);
    pos += nbytes;
    g.values.resize(n);
    std::memcpy(g.values.data(), buf.data() + pos, 4ull * n);
    pos += 4ull * n;
    cases.push_back(std::move(g));
  }
  return pos == buf.size();
}

// Distance in units in the last place (same-sign floats; 0 for equal values).
int64_t UlpDistance(float a, float b) {
  if (a == b) return 0;
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  if ((ia < 0) != (ib < 0)) return std::numeric_limits<int32_t>::max();
  return std::llabs(static_cast<int64_t>(ia) - ib);
}

std::vector<float> Dequantize(const GgmlTypeTraits& t, const std::string& bytes, int64_t n) {
  std::vector<float> out(n, std::nanf(""));
  t.dequantize(bytes.data(), out.data(), n);
  return out;
}

TEST(GgmlTypeTable, RowsAreConsistent) {
  int known = 0;
  for (uint32_t raw = 0; raw < static_cast<uint32_t>(GgmlType::kCount) + 5; ++raw) {
    const GgmlTypeTraits& t = GetGgmlTypeTraits(raw);
    ASSERT_NE(t.name, nullptr);
    if (t.block_size == 0) {
      EXPECT_FALSE(t.supported) << raw;
      continue;
    }
    ++known;
    EXPECT_GT(t.type_size, 0u) << t.name;
    EXPECT_EQ(t.supported, t.dequantize != nullptr) << t.name;
    EXPECT_EQ(GgmlRowSize(static_cast<GgmlType>(raw), 3 * t.block_size), 3 * t.type_size)
        << t.name;
    EXPECT_EQ(&GetGgmlTypeTraits(static_cast<GgmlType>(raw)), &t);
  }
  EXPECT_EQ(known, 32);  // every type ggml still defines below kCount
  EXPECT_STREQ(GetGgmlTypeTraits(GgmlType::kQ4_K).name, "q4_K");
  EXPECT_FALSE(GetGgmlTypeTraits(1000u).supported);
}

// Every supported type against the peer, whole buffers and block by block.
TEST(GgmlDequantize, MatchesGgufPythonPackage) {
  int tested = 0;
  for (uint32_t raw = 0; raw < static_cast<uint32_t>(GgmlType::kCount); ++raw) {
    const GgmlTypeTraits& t = GetGgmlTypeTraits(raw);
    if (!t.supported || kNoPeerDequantizer.count(static_cast<GgmlType>(raw))) continue;
    SCOPED_TRACE(t.name);
    std::vector<GoldenCase> cases;
    ASSERT_TRUE(LoadGolden(GoldenPath(t), raw, cases))
        << GoldenPath(t) << " missing or malformed: run tests/reference/regenerate.sh gguf";
    ASSERT_FALSE(cases.empty());
    for (size_t c = 0; c < cases.size(); ++c) {
      const GoldenCase& g = cases[c];
      ASSERT_EQ(g.bytes.size(), GgmlRowSize(static_cast<GgmlType>(raw), g.n));
      const std::vector<float> got = Dequantize(t, g.bytes, g.n);
      // Bit-exact: same integer codes, same float operations in the same order.
      for (int64_t i = 0; i < g.n; ++i) {
        ASSERT_EQ(UlpDistance(got[i], g.values[i]), 0)
            << "case " << c << " element " << i << ": " << got[i] << " vs "
            << g.values[i];
      }
      // Block by block gives the same floats (each block is independent).
      const size_t block_bytes = t.type_size;
      for (int64_t b = 0; b < g.n / t.block_size; ++b) {
        const std::vector<float> one =
            Dequantize(t, g.bytes.substr(b * block_bytes, block_bytes), t.block_size);
        ASSERT_EQ(0, std::memcmp(one.data(), got.data() + b * t.block_size,
                                 4 * t.block_size))
            << "block " << b;
      }
    }
    ++tested;
  }
  EXPECT_GE(tested, 20);
}

// Q8_1 and Q8_K: the same int8 codes and scale as Q8_0 must give Q8_0's golden values.
TEST(GgmlDequantize, Q8_1AndQ8_KAgreeWithQ8_0Golden) {
  const GgmlTypeTraits& q8_0 = GetGgmlTypeTraits(GgmlType::kQ8_0);
  std::vector<GoldenCase> cases;
  ASSERT_TRUE(LoadGolden(GoldenPath(q8_0), static_cast<uint32_t>(GgmlType::kQ8_0), cases));
  for (const GoldenCase& g : cases) {
    const auto* src = reinterpret_cast<const BlockQ8_0*>(g.bytes.data());
    const int64_t nb = g.n / kQK8_0;
    std::vector<BlockQ8_1> q8_1(nb);
    for (int64_t b = 0; b < nb; ++b) {
      q8_1[b].d = src[b].d;
      q8_1[b].s = 0x7bff;  // the sum field does not enter the values
      std::memcpy(q8_1[b].qs, src[b].qs, kQK8_0);
    }
    std::vector<float> got(g.n);
    GetGgmlTypeTraits(GgmlType::kQ8_1).dequantize(q8_1.data(), got.data(), g.n);
    EXPECT_EQ(got, g.values);

    // Q8_K has one f32 scale per 256 values: take block b's scale for all eight
    // blocks' codes; block b's values must then match the golden ones.
    for (int64_t b = 0; b + 8 <= nb; b += 8) {
      BlockQ8_K k{};
      k.d = Fp16ToFp32(src[b].d);
      std::vector<float> expect;
      for (int j = 0; j < 8; ++j) {
        std::memcpy(k.qs + 32 * j, src[b + j].qs, 32);
        for (int i = 0; i < 32; ++i) expect.push_back(k.d * src[b + j].qs[i]);
      }
      std::vector<float> out(kQK_K);
      GetGgmlTypeTraits(GgmlType::kQ8_K).dequantize(&k, out.data(), kQK_K);
      EXPECT_EQ(out, expect);
      EXPECT_EQ(std::vector<float>(g.values.begin() + 32 * b,
                                   g.values.begin() + 32 * b + 32),
                std::vector<float>(expect.begin(), expect.begin() + 32));
    }
  }
}

// fp16 -> f32 -> fp16 is the identity on all 65536 bit patterns but NaNs (which stay NaN).
TEST(Fp16, RoundTripsEveryBitPattern) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = Fp16ToFp32(static_cast<ggml_half>(h));
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0) {
      ASSERT_TRUE(std::isnan(f)) << h;
      ASSERT_TRUE(std::isnan(Fp16ToFp32(Fp32ToFp16(f)))) << h;
      continue;
    }
    ASSERT_EQ(Fp32ToFp16(f), h) << h << " -> " << f;
  }
}

// Halfway between two neighbouring halves rounds to the even one; just off halfway
// rounds to the nearer one. Covers subnormals, normals and the overflow to infinity.
TEST(Fp16, RoundsToNearestEven) {
  for (uint32_t h = 0; h < 0x7c00; ++h) {
    const float lo = Fp16ToFp32(static_cast<ggml_half>(h));
    const float hi = h + 1 == 0x7c00 ? 65536.0f  // where the next step would be
                                     : Fp16ToFp32(static_cast<ggml_half>(h + 1));
    const float mid = lo + (hi - lo) / 2;  // exact in f32
    const uint16_t even = (h & 1) ? h + 1 : h;
    ASSERT_EQ(Fp32ToFp16(mid), even) << h;
    ASSERT_EQ(Fp32ToFp16(-mid), even | 0x8000) << h;
    ASSERT_EQ(Fp32ToFp16(std::nextafter(mid, 0.0f)), h) << h;
    ASSERT_EQ(Fp32ToFp16(std::nextafter(mid, 1e30f)), h + 1) << h;
  }
  EXPECT_EQ(Fp32ToFp16(1e30f), 0x7c00);
  EXPECT_EQ(Fp32ToFp16(-INFINITY), 0xfc00);
  EXPECT_EQ(Fp32ToFp16(1e-30f), 0);
}

TEST(Bf16, IsTheTopHalfOfF32) {
  for (uint32_t h = 0; h < 65536; h += 7) {
    const float f = Bf16ToFp32(static_cast<ggml_bf16>(h));
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    ASSERT_EQ(bits, h << 16);
  }
}

}  // namespace
}  // namespace ingot
