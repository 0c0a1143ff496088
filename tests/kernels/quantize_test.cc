// The GGUF reference quantizers (kernels/cpu/quantize_ref.h) against llama.cpp's own
// bytes (ggml_quantize_chunk with no imatrix, which the generator checked is what
// llama_model_quantize writes; tests/reference/gen_quant_gguf.py writes
// tests/data/quant/gguf/), then round trips through the reference dequantizers.
//   explicit cases: stored f32 inputs (random, heavy-tailed, and awkward rows: zeros,
//                   constants, one sign, tiny/huge/subnormal, ties), bytes compared
//                   block by block;
//   stress:         1024 x 1024 values from a PRNG both sides implement, compared by
//                   FNV-1a hashes of each 64-row chunk of llama.cpp's bytes.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/ggml_types.h"
#include "kernels/cpu/quantize_ref.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace ingot {
namespace {

using ::ingot::testing::SourcePath;
using json = nlohmann::json;

// The types ingot promises to write exactly as llama.cpp does.
const GgmlType kExactTypes[] = {
    GgmlType::kF32,  GgmlType::kF16,  GgmlType::kBF16, GgmlType::kQ4_0, GgmlType::kQ4_1,
    GgmlType::kQ5_0, GgmlType::kQ5_1, GgmlType::kQ8_0, GgmlType::kQ2_K, GgmlType::kQ3_K,
    GgmlType::kQ4_K, GgmlType::kQ5_K, GgmlType::kQ6_K};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string TypeKey(GgmlType type) {  // index.json keys: gguf-py's names ("Q4_K", "BF16")
  std::string name = GetGgmlTypeTraits(type).name;
  for (char& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return name;
}

struct Case {
  std::string name;
  int64_t rows = 0, cols = 0;
  std::vector<float> x;  // rows x cols
};

struct Golden {
  json index;
  std::vector<Case> cases;
  std::map<std::string, std::string> expected;  // type key -> bytes of every case
};

const Golden& LoadGolden() {
  static const Golden* golden = [] {
    auto* g = new Golden;
    const std::string dir = SourcePath("tests/data/quant/gguf/");
    const std::string index = ReadFile(dir + "index.json");
    if (index.empty()) return g;
    g->index = json::parse(index);
    const std::string inputs = ReadFile(dir + "inputs.f32");
    for (const json& c : g->index["cases"]) {
      Case k;
      k.name = c["name"];
      k.rows = c["rows"];
      k.cols = c["cols"];
      const size_t off = c["offset"].get<size_t>() * 4, n = k.rows * k.cols;
      if (off + 4 * n > inputs.size()) continue;
      k.x.resize(n);
      std::memcpy(k.x.data(), inputs.data() + off, 4 * n);
      g->cases.push_back(std::move(k));
    }
    for (const auto& [key, t] : g->index["types"].items()) {
      g->expected[key] = ReadFile(dir + t["file"].get<std::string>());
    }
    return g;
  }();
  return *golden;
}

std::string Quantize(GgmlType type, const float* x, int64_t rows, int64_t cols) {
  const size_t row_bytes = GgmlRowSize(type, cols);
  std::string out(row_bytes * rows, '\0');
  for (int64_t r = 0; r < rows; ++r) {
    GetQuantizeRowFn(type)(x + r * cols, out.data() + r * row_bytes, cols);
  }
  return out;
}

std::vector<float> Dequantize(GgmlType type, const std::string& bytes, int64_t n) {
  std::vector<float> out(n, std::nanf(""));
  GetGgmlTypeTraits(type).dequantize(bytes.data(), out.data(), n);
  return out;
}

uint64_t Fnv1a64(const uint8_t* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

std::string Hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// The stress matrix of gen_quant_gguf.py (its docstring has the recipe).
uint64_t Mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
uint64_t Stream(uint64_t base, uint64_t i) { return Mix(base + (i + 1) * 0x9e3779b97f4a7c15ull); }

std::vector<float> StressMatrix(uint64_t seed, int64_t rows, int64_t cols) {
  constexpr uint64_t kK2 = 0xd1b54a32d192ed03ull, kK3 = 0x8cb92ba72f3d8dd7ull,
                     kK4 = 0xa0761d6478bd642full, kM21 = (1u << 21) - 1;
  std::vector<float> x(rows * cols);
  for (int64_t row = 0; row < rows; ++row) {
    const int e_row = static_cast<int>(Stream(seed ^ kK3, row) % 21) - 14;
    const float scale = std::ldexp(1.0f, e_row - 20);
    for (int64_t c = 0; c < cols; ++c) {
      const uint64_t i = row * cols + c;
      const uint64_t r = Stream(seed, i), r2 = Stream(seed ^ kK2, i);
      const int64_t s = static_cast<int64_t>((r & kM21) + ((r >> 21) & kM21) + ((r >> 42) & kM21)) -
                        (3 << 20);
      float v = static_cast<float>(s) * scale;
      switch (row % 8) {
        case 4: {
          const int e = static_cast<int>(Stream(seed ^ kK4, row * (cols / 32) + c / 32) % 7) - 4;
          v *= std::ldexp(1.0f, e);
          break;
        }
        case 5: v = std::fabs(v); break;
        case 6: if (r2 & 1) v = 0; break;
        case 7: if (((r2 >> 1) & 31) == 0) v *= 32.0f; break;
        default: break;
      }
      x[i] = v;
    }
  }
  return x;
}

TEST(QuantizeRef, TableCoversTheExactTypes) {
  const Golden& g = LoadGolden();
  ASSERT_FALSE(g.cases.empty())
      << "tests/data/quant/gguf missing: run tests/reference/regenerate.sh quant_gguf";
  int quantizable = 0;
  for (uint32_t raw = 0; raw < static_cast<uint32_t>(GgmlType::kCount); ++raw) {
    const auto type = static_cast<GgmlType>(raw);
    if (GetQuantizeRowFn(type) == nullptr) continue;
    ++quantizable;
    EXPECT_TRUE(g.index["types"].contains(TypeKey(type)))
        << TypeKey(type) << " has a quantizer but no golden bytes from llama.cpp";
    EXPECT_TRUE(GetGgmlTypeTraits(type).supported) << TypeKey(type);
  }
  EXPECT_EQ(quantizable, static_cast<int>(std::size(kExactTypes)));
  for (GgmlType type : kExactTypes) {
    EXPECT_NE(GetQuantizeRowFn(type), nullptr) << TypeKey(type);
    // The generator checked that llama_model_quantize (what llama-quantize runs) writes
    // the bytes of ggml_quantize_chunk, the peer of the tests below.
    if (type == GgmlType::kF32) continue;  // no F32 target in llama_ftype
    const json& m = g.index["llama_model_quantize"];
    ASSERT_TRUE(m.contains(TypeKey(type))) << TypeKey(type);
    EXPECT_TRUE(m[TypeKey(type)]["agrees"].get<bool>()) << TypeKey(type);
  }
}

// Every type, every stored case, block by block against llama.cpp's bytes.
TEST(QuantizeRef, MatchesLlamaCppBytes) {
  const Golden& g = LoadGolden();
  ASSERT_FALSE(g.cases.empty());
  int64_t blocks_compared = 0;
  for (GgmlType type : kExactTypes) {
    const std::string key = TypeKey(type);
    SCOPED_TRACE(key);
    ASSERT_TRUE(g.index["types"].contains(key));
    const json& t = g.index["types"][key];
    const GgmlTypeTraits& traits = GetGgmlTypeTraits(type);
    ASSERT_EQ(t["ggml_type"].get<uint32_t>(), static_cast<uint32_t>(type));
    ASSERT_EQ(t["block_size"].get<int64_t>(), traits.block_size);
    ASSERT_EQ(t["type_size"].get<size_t>(), traits.type_size);
    const std::string& expected = g.expected.at(key);
    int tested = 0;
    for (size_t c = 0; c < g.cases.size(); ++c) {
      const Case& k = g.cases[c];
      const int64_t off = t["offsets"][c];
      if (off < 0) {
        EXPECT_NE(k.cols % traits.block_size, 0) << k.name;
        continue;
      }
      const std::string got = Quantize(type, k.x.data(), k.rows, k.cols);
      ASSERT_LE(off + got.size(), expected.size()) << k.name;
      const std::string want = expected.substr(off, got.size());
      for (size_t b = 0; b < got.size() / traits.type_size; ++b) {
        const size_t at = b * traits.type_size;
        if (got.compare(at, traits.type_size, want, at, traits.type_size) == 0) continue;
        size_t byte = at;
        while (got[byte] == want[byte]) ++byte;
        FAIL() << k.name << ": block " << b << " (row " << b * traits.block_size / k.cols
               << ") differs first at byte " << byte - at << ": "
               << int(static_cast<uint8_t>(got[byte])) << " vs llama.cpp's "
               << int(static_cast<uint8_t>(want[byte]));
      }
      // The whole case in one call gives the same bytes (blocks are independent).
      std::string all(got.size(), '\0');
      GetQuantizeRowFn(type)(k.x.data(), all.data(), k.rows * k.cols);
      EXPECT_EQ(all, got) << k.name;
      blocks_compared += static_cast<int64_t>(got.size() / traits.type_size);
      ++tested;
    }
    EXPECT_GE(tested, traits.block_size == kQK_K ? 23 : 24);
  }
  std::printf("compared %lld blocks with llama.cpp's bytes\n",
              static_cast<long long>(blocks_compared));
}

TEST(QuantizeRef, StressMatchesLlamaCppHashes) {
  const Golden& g = LoadGolden();
  ASSERT_FALSE(g.cases.empty());
  const json& s = g.index["stress"];
  const int64_t rows = s["rows"], cols = s["cols"], chunk_rows = s["chunk_rows"];
  const std::vector<float> x = StressMatrix(s["seed"].get<uint64_t>(), rows, cols);
  ASSERT_EQ(Hex(Fnv1a64(reinterpret_cast<const uint8_t*>(x.data()), 4 * x.size())),
            s["input_fnv1a64"].get<std::string>())
      << "the stress generator drifted from gen_quant_gguf.py's";
  for (GgmlType type : kExactTypes) {
    const std::string key = TypeKey(type);
    SCOPED_TRACE(key);
    const std::string got = Quantize(type, x.data(), rows, cols);
    const size_t chunk = GgmlRowSize(type, cols) * chunk_rows;
    const json& want = s["types"][key];
    ASSERT_EQ(want.size(), got.size() / chunk);
    for (size_t c = 0; c < want.size(); ++c) {
      EXPECT_EQ(Hex(Fnv1a64(reinterpret_cast<const uint8_t*>(got.data()) + c * chunk, chunk)),
                want[c].get<std::string>())
          << "rows [" << c * chunk_rows << ", " << (c + 1) * chunk_rows << ")";
    }
  }
}

// Normalized RMS error (rms(dequant - x) / rms(x)) each type stays under on Gaussian
// rows: about 1.3x the worst this test measures (the test prints it).
double NrmseBound(GgmlType type) {
  switch (type) {
    case GgmlType::kF32: return 0.0;
    case GgmlType::kF16: return 3e-4;
    case GgmlType::kBF16: return 2.5e-3;
    case GgmlType::kQ8_0: return 0.009;
    case GgmlType::kQ6_K: return 0.024;
    case GgmlType::kQ5_K: return 0.048;
    case GgmlType::kQ5_0: case GgmlType::kQ5_1: return 0.065;
    case GgmlType::kQ4_K: return 0.095;
    case GgmlType::kQ4_0: case GgmlType::kQ4_1: return 0.13;
    case GgmlType::kQ3_K: return 0.2;
    case GgmlType::kQ2_K: return 0.4;
    default: return 0.0;
  }
}

double Nrmse(const std::vector<float>& x, const std::vector<float>& y) {
  double err = 0, ref = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    err += (double(y[i]) - x[i]) * (double(y[i]) - x[i]);
    ref += double(x[i]) * x[i];
  }
  return ref > 0 ? std::sqrt(err / ref) : std::sqrt(err);
}

std::vector<float> Gaussian(uint64_t seed, int64_t n, float scale) {
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t r = Stream(seed, i);
    const double u1 = ((r >> 11) + 0.5) / 9007199254740992.0, u2 = (r & 0xffff) / 65536.0;
    x[i] = static_cast<float>(std::sqrt(-2 * std::log(u1)) * std::cos(6.283185307179586 * u2)) * scale;
  }
  return x;
}

// Round trips over awkward shapes and magnitudes: one row or three, one block or many,
// scales from 1e-2 to 1e3 (inside fp16's range for every type's scales).
TEST(QuantizeRef, RoundTripWithinTypeError) {
  for (GgmlType type : kExactTypes) {
    const int64_t block = GetGgmlTypeTraits(type).block_size;
    double worst = 0;
    for (int64_t rows : {1, 3}) {
      for (int64_t blocks : {1, 2, 7}) {
        for (float scale : {1e-2f, 1.0f, 1e3f}) {
          SCOPED_TRACE(TypeKey(type) + " rows " + std::to_string(rows) + " blocks " +
                       std::to_string(blocks) + " scale " + std::to_string(scale));
          const int64_t cols = blocks * (block == 1 ? 32 : block);
          const std::vector<float> x = Gaussian(rows * 131 + blocks, rows * cols, scale);
          const std::string q = Quantize(type, x.data(), rows, cols);
          ASSERT_EQ(q.size(), GgmlRowSize(type, cols) * rows);
          const std::vector<float> y = Dequantize(type, q, rows * cols);
          for (float v : y) ASSERT_TRUE(std::isfinite(v));
          worst = std::max(worst, Nrmse(x, y));
          EXPECT_LE(Nrmse(x, y), NrmseBound(type));
        }
      }
    }
    std::printf("%-5s worst normalized RMS error %.4g (bound %.4g)\n", TypeKey(type).c_str(),
                worst, NrmseBound(type));
  }
}

// Degenerate rows: zeros stay zeros, constants and one-signed rows keep the type's error,
// tiny values quantize to (near) zero without NaNs.
TEST(QuantizeRef, RoundTripDegenerateRows) {
  const int64_t n = 512;
  const std::vector<float> g = Gaussian(7, n, 1.0f);
  std::vector<float> neg(n), pos(n), tiny(n), zeros(n, 0.0f), constant(n, 0.75f),
      negative_constant(n, -2.5f);
  for (int64_t i = 0; i < n; ++i) {
    neg[i] = -std::fabs(g[i]);
    pos[i] = std::fabs(g[i]) + 0.25f;
    tiny[i] = g[i] * 1e-30f;
  }
  for (GgmlType type : kExactTypes) {
    SCOPED_TRACE(TypeKey(type));
    auto round_trip = [&](const std::vector<float>& x) {
      return Dequantize(type, Quantize(type, x.data(), 1, n), n);
    };
    EXPECT_EQ(round_trip(zeros), zeros);
    for (const auto* x : {&constant, &negative_constant, &neg, &pos}) {
      EXPECT_LE(Nrmse(*x, round_trip(*x)), NrmseBound(type));
    }
    for (float v : round_trip(tiny)) {
      ASSERT_TRUE(std::isfinite(v));
      ASSERT_LE(std::fabs(v), 1e-20f);
    }
  }
}

TEST(QuantizeRef, Bf16RoundsToNearestEven) {
  EXPECT_EQ(Fp32ToBf16(1.0f), 0x3f80);
  EXPECT_EQ(Fp32ToBf16(std::ldexp(1.0f, -8) + 1.0f), 0x3f80);    // tie, even stays
  EXPECT_EQ(Fp32ToBf16(std::ldexp(3.0f, -8) + 1.0f), 0x3f82);    // tie, odd rounds up
  EXPECT_EQ(Fp32ToBf16(-std::numeric_limits<float>::infinity()), 0xff80);
  EXPECT_EQ(Fp32ToBf16(std::nanf("")) & 0x7fc0, 0x7fc0);
  EXPECT_EQ(Fp32ToFp16Ggml(std::nanf("")), 0x7e00);
  EXPECT_EQ(Fp32ToFp16Ggml(-std::nanf("")), 0xfe00);
}

}  // namespace
}  // namespace ingot
