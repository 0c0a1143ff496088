// Reads tests/data/quant/torch/ (tests/reference/gen_quant_torch.py): the index of cases
// produced by bitsandbytes, torchao and optimum-quanto, and their raw little-endian
// arrays. Shared by bnb_test.cc, torchao_test.cc and quanto_test.cc.
#pragma once

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/ggml_types.h"
#include "kernels/cpu/qmatrix.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace ingot::testing {

class TorchGolden {
 public:
  static const TorchGolden& Get() {
    static const TorchGolden g;
    return g;
  }
  bool ok() const { return ok_; }
  const nlohmann::json& index() const { return index_; }

  // Every case whose "method" is `method`.
  std::vector<nlohmann::json> Cases(const std::string& method) const {
    std::vector<nlohmann::json> out;
    if (!ok_) return out;
    for (const auto& c : index_["cases"]) {
      if (c["method"] == method) out.push_back(c);
    }
    return out;
  }

  template <typename T>
  std::vector<T> Read(const std::string& file) const {
    std::ifstream in(Dir() + file, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string buf = ss.str();
    std::vector<T> v(buf.size() / sizeof(T));
    if (!v.empty()) std::memcpy(v.data(), buf.data(), v.size() * sizeof(T));
    return v;
  }
  std::vector<float> Input(const std::string& name) const {
    return Read<float>(index_["inputs"][name]["file"].get<std::string>());
  }

 private:
  TorchGolden() {
    std::ifstream in(Dir() + "index.json");
    if (!in) return;
    index_ = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    ok_ = !index_.is_discarded() && index_.contains("cases");
  }
  static std::string Dir() { return SourcePath("tests/data/quant/torch/"); }

  nlohmann::json index_;
  bool ok_ = false;
};

inline float HalfToFloat(uint16_t h) { return Fp16ToFp32(h); }

// Dequantized rows [0, n_rows) of a Linear through the kernels' reference.
inline std::vector<float> DequantizeRows(const kernels::Linear& w, int64_t n_rows) {
  std::vector<float> out(static_cast<size_t>(n_rows * w.cols()));
  for (int64_t r = 0; r < n_rows; ++r) kernels::LinearDequantizeRow(w, r, out.data() + r * w.cols());
  return out;
}

// y = W x for one token through LinearPrepare + LinearDotRowsRef (ref = true) or
// LinearDotRows.
inline std::vector<float> MatVec(const kernels::Linear& w, const float* x, bool ref) {
  const kernels::ActivationSpec spec = kernels::LinearActivation(w);
  std::vector<uint8_t> act(kernels::LinearActivationBytes(spec, w.cols()) + 64);
  kernels::LinearPrepare(spec, x, w.cols(), act.data());
  std::vector<float> y(static_cast<size_t>(w.rows()));
  if (ref) {
    kernels::LinearDotRowsRef(w, act.data(), y.data(), 0, w.rows());
  } else {
    kernels::LinearDotRows(w, act.data(), y.data(), 0, w.rows());
  }
  return y;
}

// Bits per weight of a quantized weight's owned storage.
template <typename Q>
double BitsPerWeight(const Q& q, int64_t rows, int64_t cols) {
  return 8.0 * static_cast<double>(q.bytes()) / static_cast<double>(rows * cols);
}

}  // namespace ingot::testing
