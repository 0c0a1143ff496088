#include "engine/quant/checkpoint_linear.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/common/status.h"
#include "engine/quant/quant_util.h"
#include "engine/quant/quantizers.h"
#include "kernels/ggml_types.h"
#include "nlohmann/json.hpp"

namespace ingot::quant {
namespace {
using formats::DType;
using formats::TensorView;
using Json = nlohmann::json;

std::string Shape(const std::vector<int64_t>& s) { return absl::StrCat("[", absl::StrJoin(s, ", "), "]"); }

template <typename T>
T LoadAt(const uint8_t* p, int64_t i) {  // tensor data may be unaligned
  T v;
  std::memcpy(&v, p + i * static_cast<int64_t>(sizeof(T)), sizeof(T));
  return v;
}

bool IsFloat(DType d) { return d == DType::kF32 || d == DType::kF16 || d == DType::kBF16; }

float FloatAt(const TensorView& t, int64_t i) {
  switch (t.dtype) {
    case DType::kF32: return LoadAt<float>(t.data, i);
    case DType::kF16: return Fp16ToFp32(LoadAt<uint16_t>(t.data, i));
    case DType::kBF16: return Bf16ToFp32(LoadAt<uint16_t>(t.data, i));
    default: return 0.0f;
  }
}

class Reader {
 public:
  explicit Reader(std::shared_ptr<const Checkpoint> ck) : ck_(std::move(ck)) {
    if (ck_->quant().method == CheckpointQuant::kIngot) {
      const Json j = Json::parse(ck_->quant().json, nullptr, false);
      if (j.is_object() && j.contains("modules") && j["modules"].is_object()) ingot_ = j["modules"];
    }
  }

  absl::StatusOr<LinearLoad> Load(const std::string& name, int64_t rows, int64_t cols) const {
    const CheckpointQuantConfig& q = ck_->quant();
    // Modules a tool leaves dense (lm_head, skipped modules) keep a plain .weight.
    const TensorView* dense = ck_->Find(name + ".weight");
    const bool is_dense = dense != nullptr && IsFloat(dense->dtype) &&
                          ck_->Find(name + ".weight.absmax") == nullptr && ck_->Find(name + ".SCB") == nullptr &&
                          ck_->Find(name + ".scales") == nullptr && ck_->Find(name + ".W_q") == nullptr;
    if (is_dense || q.method == CheckpointQuant::kNone) {
      ASSIGN_OR_RETURN(LinearLoad out, Dense(name, rows, cols));
      if (auto it = ingot_.find(name); it != ingot_.end() && it->is_object()) {
        if (it->contains("representation") && (*it)["representation"].is_string()) {
          out.representation = (*it)["representation"].get<std::string>();
        }
      }
      return out;
    }
    switch (q.method) {
      case CheckpointQuant::kBnb4: return Bnb4(name, rows, cols);
      case CheckpointQuant::kBnb8: return Bnb8(name, rows, cols);
      case CheckpointQuant::kGptq: return Gptq(name, rows, cols);
      case CheckpointQuant::kAwq: return Awq(name, rows, cols);
      case CheckpointQuant::kMlx: return Mlx(name, rows, cols);
      case CheckpointQuant::kHqq: return Hqq(name, rows, cols);
      case CheckpointQuant::kQuanto: return Quanto(name, rows, cols);
      case CheckpointQuant::kTorchao: return Torchao(name, rows, cols);
      case CheckpointQuant::kIngot: return Ingot(name, rows, cols);
      default:
        return absl::UnimplementedError(absl::StrCat(ck_->path(), ": '", name, "' is stored as ",
                                                     CheckpointQuantName(q.method),
                                                     ", which this build does not load yet"));
    }
  }

 private:
  absl::Status Missing(const std::string& t) const {
    return absl::InvalidArgumentError(absl::StrCat(ck_->path(), ": missing tensor '", t, "'"));
  }
  absl::StatusOr<const TensorView*> Get(const std::string& t, std::vector<int64_t> shape,
                                        std::initializer_list<DType> dtypes) const {
    const TensorView* v = ck_->Find(t);
    if (v == nullptr) return Missing(t);
    if (!shape.empty() && v->shape != shape) {
      return absl::InvalidArgumentError(absl::StrCat(ck_->path(), ": tensor '", t, "' has shape ",
                                                     Shape(v->shape), ", expected ", Shape(shape)));
    }
    bool ok = false;
    std::vector<std::string> names;
    for (DType d : dtypes) {
      ok |= v->dtype == d;
      names.push_back(formats::DTypeName(d));
    }
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(ck_->path(), ": tensor '", t, "' has dtype ",
                                                     formats::DTypeName(v->dtype), ", expected ",
                                                     absl::StrJoin(names, " or ")));
    }
    return v;
  }
  // Wraps an owned QuantizedWeight as a load.
  static LinearLoad Own(QuantizedWeight qw) {
    LinearLoad out;
    out.w = qw.view;
    out.representation = qw.representation;
    out.bytes = qw.bytes();
    out.owner = std::make_shared<QuantizedWeight>(std::move(qw));
    return out;
  }
  // f16 copies of a (groups, rows) tensor transposed to row-major (rows, groups).
  static void Transposed(const TensorView& t, int64_t groups, int64_t rows, uint16_t* out) {
    for (int64_t g = 0; g < groups; ++g) {
      for (int64_t r = 0; r < rows; ++r) out[r * groups + g] = Fp32ToFp16(FloatAt(t, g * rows + r));
    }
  }

  absl::StatusOr<LinearLoad> Dense(const std::string& name, int64_t rows, int64_t cols) const {
    ASSIGN_OR_RETURN(const TensorView* t, Get(name + ".weight", {rows, cols}, {DType::kF32, DType::kF16, DType::kBF16}));
    LinearLoad out;
    out.w.kind = kernels::LinearKind::kGgml;
    kernels::WeightMatrix& w = out.w.ggml;
    w.type = t->dtype == DType::kF32 ? GgmlType::kF32 : t->dtype == DType::kF16 ? GgmlType::kF16 : GgmlType::kBF16;
    w.rows = rows;
    w.cols = cols;
    w.row_bytes = static_cast<size_t>(cols) * formats::DTypeSize(t->dtype);
    w.data = t->data;
    out.representation = t->dtype == DType::kF32 ? "f32" : t->dtype == DType::kF16 ? "f16" : "bf16";
    out.bytes = static_cast<int64_t>(t->nbytes);
    return out;
  }

  // bitsandbytes Params4bit as transformers serializes it: packed codes in `weight`,
  // absmax (u8 codes when nested), quant_map, nested_absmax/nested_quant_map and a JSON
  // quant_state blob naming the type, block sizes and the nested offset.
  absl::StatusOr<LinearLoad> Bnb4(const std::string& name, int64_t rows, int64_t cols) const {
    const std::string w = name + ".weight";
    const TensorView* state = nullptr;
    std::string type;
    for (const char* t : {"nf4", "fp4"}) {
      if ((state = ck_->Find(absl::StrCat(w, ".quant_state.bitsandbytes__", t))) != nullptr) {
        type = t;
        break;
      }
    }
    if (state == nullptr) return Missing(w + ".quant_state.bitsandbytes__nf4");
    const Json js = Json::parse(std::string(reinterpret_cast<const char*>(state->data), state->nbytes), nullptr, false);
    if (js.is_discarded() || !js.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(ck_->path(), ": '", w, ".quant_state...' is not JSON"));
    }
    const int64_t block = js.value("blocksize", 64);
    const int64_t n = rows * cols;
    if (block <= 0 || cols % block != 0) {
      return absl::UnimplementedError(absl::StrCat(ck_->path(), ": '", w, "' uses blocksize ", block,
                                                   ", which must divide the row of ", cols));
    }
    if (js.contains("shape") && js["shape"] != Json::array({rows, cols})) {
      return absl::InvalidArgumentError(absl::StrCat(ck_->path(), ": '", w, "' quant_state shape ",
                                                     js["shape"].dump(), ", expected [", rows, ", ", cols, "]"));
    }
    ASSIGN_OR_RETURN(const TensorView* codes, Get(w, {}, {DType::kU8}));
    if (static_cast<int64_t>(codes->nbytes) != n / 2) {
      return absl::InvalidArgumentError(absl::StrCat(ck_->path(), ": '", w, "' holds ", codes->nbytes,
                                                     " bytes, expected ", n / 2, " for ", rows, " x ", cols));
    }
    const kernels::Codebook book = type == "nf4" ? kernels::Codebook::kNF4 : kernels::Codebook::kFP4;
    ASSIGN_OR_RETURN(const TensorView* qmap, Get(w + ".quant_map", {16}, {DType::kF32}));
    for (int i = 0; i < 16; ++i) {
      if (std::fabs(FloatAt(*qmap, i) - kernels::CodebookValues(book)[i]) > 1e-6f) {
        return absl::UnimplementedError(absl::StrCat(ck_->path(), ": '", w,
                                                     ".quant_map' is not bitsandbytes' ", type, " table"));
      }
    }
    LinearLoad out;
    out.w.kind = kernels::LinearKind::kCodebook;
    kernels::CodebookMatrix& cb = out.w.codebook;
    cb.book = book;
    cb.rows = rows;
    cb.cols = cols;
    cb.block = block;
    cb.codes = codes->data;
    const int64_t blocks = n / block;
    const bool nested = js.contains("nested_blocksize");
    if (nested) {
      const int64_t nb = js.value("nested_blocksize", 256);
      ASSIGN_OR_RETURN(const TensorView* a, Get(w + ".absmax", {blocks}, {DType::kU8}));
      ASSIGN_OR_RETURN(const TensorView* na, Get(w + ".nested_absmax", {(blocks + nb - 1) / nb}, {DType::kF32}));
      ASSIGN_OR_RETURN(const TensorView* nmap, Get(w + ".nested_quant_map", {256}, {DType::kF32}));
      for (int i = 0; i < 256; ++i) {
        if (std::fabs(FloatAt(*nmap, i) - kernels::DynamicMap()[i]) > 1e-6f) {
          return absl::UnimplementedError(absl::StrCat(
              ck_->path(), ": '", w, ".nested_quant_map' is not bitsandbytes' dynamic map"));
        }
      }
      cb.absmax_code = a->data;
      cb.absmax_scale = reinterpret_cast<const float*>(na->data);
      cb.absmax_block = nb;
      cb.absmax_offset = js.value("nested_offset", 0.0f);
      out.bytes = static_cast<int64_t>(codes->nbytes + a->nbytes + na->nbytes);
    } else {
      ASSIGN_OR_RETURN(const TensorView* a, Get(w + ".absmax", {blocks}, {DType::kF32}));
      cb.absmax = reinterpret_cast<const float*>(a->data);
      out.bytes = static_cast<int64_t>(codes->nbytes + a->nbytes);
    }
    out.representation = absl::StrCat(type, "/b", block, nested ? "+dq" : "");
    return out;
  }

  // LLM.int8: int8 rows and SCB (row absmax); w = q * SCB / 127.
  absl::StatusOr<LinearLoad> Bnb8(const std::string& name, int64_t rows, int64_t cols) const {
    ASSIGN_OR_RETURN(const TensorView* w, Get(name + ".weight", {rows, cols}, {DType::kI8}));
    ASSIGN_OR_RETURN(const TensorView* scb, Get(name + ".SCB", {rows}, {DType::kF32, DType::kF16}));
    float threshold = 6.0f;
    const Json j = Json::parse(ck_->quant().json.empty() ? "{}" : ck_->quant().json, nullptr, false);
    if (j.is_object()) threshold = j.value("llm_int8_threshold", 6.0f);
    return Int8Rows(*w, *scb, 127.0f, threshold);
  }

  // Signed int8 rows (rows, cols) with one scale per row, w = q * row_scale[r] / divisor:
  // kAffine 8-bit codes q + 128 with zero 128 (ingot's int8/row).
  static LinearLoad Int8Rows(const TensorView& q8, const TensorView& row_scale, float divisor,
                             float outlier_threshold) {
    return Int8Groups(q8, row_scale, nullptr, divisor, outlier_threshold);
  }
  // The same over G groups per row (`scale` (rows, G), each of cols / G inputs, checked
  // by the caller), with an int8 zero point per group when `zero_point` is given:
  // w = (q - zero_point) * scale / divisor, codes q + 128 with zero 128 + zero_point.
  static LinearLoad Int8Groups(const TensorView& q8, const TensorView& scale_t, const TensorView* zero_point,
                               float divisor, float outlier_threshold) {
    const int64_t rows = q8.shape[0], cols = q8.shape[1], n_groups = scale_t.numel();
    const int64_t group = cols / (n_groups / rows);
    QuantizedWeight qw;
    uint8_t* q = qw.Alloc<uint8_t>(static_cast<size_t>(rows * cols));
    uint16_t* scale = qw.Alloc<uint16_t>(static_cast<size_t>(n_groups));
    uint16_t* zero = qw.Alloc<uint16_t>(static_cast<size_t>(n_groups));
    for (int64_t i = 0; i < rows * cols; ++i) q[i] = static_cast<uint8_t>(static_cast<int8_t>(q8.data[i]) + 128);
    for (int64_t g = 0; g < n_groups; ++g) {
      scale[g] = Fp32ToFp16(FloatAt(scale_t, g) / divisor);
      const int zp = zero_point != nullptr ? static_cast<int8_t>(zero_point->data[g]) : 0;
      zero[g] = Fp32ToFp16(128.0f + static_cast<float>(zp));
    }
    SetAffineView(qw, 8, rows, cols, group, kernels::ZeroKind::kZero, q, scale, zero);
    qw.view.outlier_threshold = outlier_threshold;
    qw.representation = group == cols ? "int8/row" : absl::StrCat("affine8/g", group);
    return Own(std::move(qw));
  }

  // Codes as an LSB-first bitstream over consecutive int32 words (AutoGPTQ's layout for
  // 2/4/8 bits, and for 3 bits, where a code may straddle two words); `along_rows`: the
  // stream runs down dimension 0 (GPTQ qweight), else along dimension 1 (qzeros, AWQ).
  // `order` (AWQ) permutes the 32/bits slots of each word.
  static int32_t Code(const TensorView& t, int64_t i, int64_t j, int64_t width, int bits, bool along_rows,
                      const int* order) {
    int64_t k = along_rows ? i : j;  // index along the packed dimension
    if (order != nullptr) {
      const int per = 32 / bits;
      k = (k / per) * per + order[k % per];
    }
    const int64_t bit = k * bits, w = bit / 32;
    const int shift = static_cast<int>(bit % 32);
    auto word = [&](int64_t n) { return LoadAt<uint32_t>(t.data, along_rows ? n * width + j : i * width + n); };
    uint64_t v = word(w) >> shift;
    if (shift + bits > 32) v |= static_cast<uint64_t>(word(w + 1)) << (32 - shift);
    return static_cast<int32_t>(v & ((1u << bits) - 1));
  }

  // AutoGPTQ / GPTQModel: qweight (cols*bits/32, rows) int32, qzeros (groups,
  // rows*bits/32), scales (groups, rows) f16, g_idx (cols). gptq v1 stores zero - 1.
  absl::StatusOr<LinearLoad> Gptq(const std::string& name, int64_t rows, int64_t cols) const {
    const CheckpointQuantConfig& qc = ck_->quant();
    const int bits = qc.bits;
    if (bits != 2 && bits != 3 && bits != 4 && bits != 8) {
      return absl::UnimplementedError(absl::StrCat(ck_->path(), ": GPTQ ", bits,
                                                   "-bit packing is not supported (2, 3, 4, 8)"));
    }
    const int64_t group = qc.group_size > 0 ? qc.group_size : cols;
    if (cols % group != 0 || (cols * bits) % 32 != 0 || (rows * bits) % 32 != 0) {
      return absl::InvalidArgumentError(absl::StrCat(ck_->path(), ": '", name, "' of ", rows, " x ", cols,
                                                     " does not fit GPTQ group size ", group, " at ", bits, " bits"));
    }
    const int64_t groups = cols / group;
    ASSIGN_OR_RETURN(const TensorView* qweight, Get(name + ".qweight", {cols * bits / 32, rows}, {DType::kI32}));
    ASSIGN_OR_RETURN(const TensorView* qzeros, Get(name + ".qzeros", {groups, rows * bits / 32}, {DType::kI32}));
    ASSIGN_OR_RETURN(const TensorView* scales, Get(name + ".scales", {groups, rows}, {DType::kF16, DType::kF32, DType::kBF16}));
    const TensorView* g_idx = ck_->Find(name + ".g_idx");
    std::vector<int32_t> gi(cols);
    for (int64_t c = 0; c < cols; ++c) gi[c] = static_cast<int32_t>(c / group);
    bool permuted = false, order_regrouped = false;
    if (g_idx != nullptr) {
      if (g_idx->shape != std::vector<int64_t>{cols} || g_idx->dtype != DType::kI32) {
        return absl::InvalidArgumentError(absl::StrCat(ck_->path(), ": tensor '", name, ".g_idx' has shape ",
                                                       Shape(g_idx->shape), " dtype ", formats::DTypeName(g_idx->dtype),
                                                       ", expected [", cols, "] I32"));
      }
      for (int64_t c = 0; c < cols; ++c) {
        const int32_t g = LoadAt<int32_t>(g_idx->data, c);
        if (g < 0 || g >= groups) {
          return absl::InvalidArgumentError(absl::StrCat(ck_->path(), ": '", name, ".g_idx'[", c, "] = ", g,
                                                         " is outside [0, ", groups, ")"));
        }
        permuted |= g != gi[c];
        gi[c] = g;
      }
    }
    const bool v2 = qc.json.find("gptq_v2") != std::string::npos;
    auto zero_of = [&](int64_t g, int64_t r) {
      return Code(*qzeros, g, r, rows * bits / 32, bits, false, nullptr) + (v2 ? 0 : 1);
    };
    QuantizedWeight qw;
    // act-order: a column's group is g_idx[c], not c / group. When every group has
    // `group` columns (as GPTQ makes them), the columns are stored regrouped (sorted by
    // group, stably) and the kernels gather the activations into that order.
    std::vector<int32_t> order(cols);
    for (int64_t c = 0; c < cols; ++c) order[c] = static_cast<int32_t>(c);
    if (permuted) {
      std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return gi[a] < gi[b]; });
      order_regrouped = true;
      for (int64_t j = 0; j < cols && order_regrouped; ++j) order_regrouped = gi[order[j]] == j / group;
    }
    if (permuted && !order_regrouped) {
      // Groups of uneven size: stored per column in f16 (exactly the values GPTQ's
      // dequantization gives, at 16 bits per weight).
      uint16_t* wd = qw.Alloc<uint16_t>(static_cast<size_t>(rows * cols));
      for (int64_t c = 0; c < cols; ++c) {
        for (int64_t r = 0; r < rows; ++r) {
          const int32_t q = Code(*qweight, c, r, rows, bits, true, nullptr);
          wd[r * cols + c] = Fp32ToFp16(static_cast<float>(q - zero_of(gi[c], r)) * FloatAt(*scales, gi[c] * rows + r));
        }
      }
      qw.view.kind = kernels::LinearKind::kGgml;
      qw.view.ggml = {GgmlType::kF16, rows, cols, static_cast<size_t>(cols) * 2, reinterpret_cast<const uint8_t*>(wd)};
      qw.representation = "f16 (gptq act-order)";
      return Own(std::move(qw));
    }
    const size_t row_bytes = static_cast<size_t>((cols * bits + 7) / 8);
    uint8_t* q = qw.Alloc<uint8_t>(row_bytes * rows);
    uint16_t* scale = qw.Alloc<uint16_t>(static_cast<size_t>(rows * groups));
    uint16_t* zero = qw.Alloc<uint16_t>(static_cast<size_t>(rows * groups));
    std::vector<uint8_t> codes(cols);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < cols; ++j) {
        codes[j] = static_cast<uint8_t>(Code(*qweight, order[j], r, rows, bits, true, nullptr));
      }
      PackCodes(codes.data(), cols, bits, q + r * row_bytes);
      for (int64_t g = 0; g < groups; ++g) {
        scale[r * groups + g] = Fp32ToFp16(FloatAt(*scales, g * rows + r));
        zero[r * groups + g] = Fp32ToFp16(static_cast<float>(zero_of(g, r)));
      }
    }
    SetAffineView(qw, bits, rows, cols, group, kernels::ZeroKind::kZero, q, scale, zero);
    qw.representation = absl::StrCat("affine", bits, "/g", group);
    if (order_regrouped) {
      int32_t* input_order = qw.Alloc<int32_t>(static_cast<size_t>(cols));
      std::copy(order.begin(), order.end(), input_order);
      qw.view.input_order = input_order;
      qw.representation += "+act-order";
    }
    return Own(std::move(qw));
  }

  // AutoAWQ GEMM: qweight (cols, rows*bits/32) int32 packed along the outputs in AWQ's
  // interleaved order, qzeros (groups, rows*bits/32), scales (groups, rows).
  absl::StatusOr<LinearLoad> Awq(const std::string& name, int64_t rows, int64_t cols) const {
    const CheckpointQuantConfig& qc = ck_->quant();
    if (qc.bits != 4) {
      return absl::UnimplementedError(absl::StrCat(ck_->path(), ": AWQ GEMM ", qc.bits, "-bit is not supported (4)"));
    }
    static constexpr int kReverseOrder[8] = {0, 4, 1, 5, 2, 6, 3, 7};
    const int64_t group = qc.group_size > 0 ? qc.group_size : cols;
    if (cols % group != 0 || rows % 8 != 0) {
      return absl::InvalidArgumentError(absl::StrCat(ck_->path(), ": '", name, "' of ", rows, " x ", cols,
                                                     " does not fit AWQ group size ", group));
    }
    const int64_t groups = cols / group;
    ASSIGN_OR_RETURN(const TensorView* qweight, Get(name + ".qweight", {cols, rows / 8}, {DType::kI32}));
    ASSIGN_OR_RETURN(const TensorView* qzeros, Get(name + ".qzeros", {groups, rows / 8}, {DType::kI32}));
    ASSIGN_OR_RETURN(const TensorView* scales, Get(name + ".scales", {groups, rows}, {DType::kF16, DType::kF32, DType::kBF16}));
    QuantizedWeight qw;
    const size_t row_bytes = static_cast<size_t>(cols / 2);
    uint8_t* q = qw.Alloc<uint8_t>(row_bytes * rows);
    uint16_t* scale = qw.Alloc<uint16_t>(static_cast<size_t>(rows * groups));
    uint16_t* zero = qw.Alloc<uint16_t>(static_cast<size_t>(rows * groups));
    std::vector<uint8_t> codes(cols);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        codes[c] = static_cast<uint8_t>(Code(*qweight, c, r, rows / 8, 4, false, kReverseOrder));
      }
      PackCodes(codes.data(), cols, 4, q + r * row_bytes);
      for (int64_t g = 0; g < groups; ++g) {
        scale[r * groups + g] = Fp32ToFp16(FloatAt(*scales, g * rows + r));
        zero[r * groups + g] = Fp32ToFp16(static_cast<float>(Code(*qzeros, g, r, rows / 8, 4, false, kReverseOrder)));
      }
    }
    SetAffineView(qw, 4, rows, cols, group, kernels::ZeroKind::kZero, q, scale, zero);
    qw.representation = absl::StrCat("affine4/g", group);
    return Own(std::move(qw));
  }

  // MLX: weight (rows, cols*bits/32) uint32 holding an LSB-first bitstream per row (the
  // kAffine layout, read in place), scales and biases (rows, cols/group); w = q*s + b.
  absl::StatusOr<LinearLoad> Mlx(const std::string& name, int64_t rows, int64_t cols) const {
    const CheckpointQuantConfig& qc = ck_->quant();
    const int bits = qc.bits;
    const int64_t group = qc.group_size;
    if (bits < 2 || bits > 8 || group <= 0 || cols % group != 0 || (cols * bits) % 32 != 0) {
      return absl::InvalidArgumentError(absl::StrCat(ck_->path(), ": '", name, "' of ", rows, " x ", cols,
                                                     " does not fit MLX bits ", bits, " group ", group));
    }
    const int64_t groups = cols / group;
    ASSIGN_OR_RETURN(const TensorView* w, Get(name + ".weight", {rows, cols * bits / 32}, {DType::kU32}));
    ASSIGN_OR_RETURN(const TensorView* s, Get(name + ".scales", {rows, groups}, {DType::kF16, DType::kF32, DType::kBF16}));
    ASSIGN_OR_RETURN(const TensorView* b, Get(name + ".biases", {rows, groups}, {DType::kF16, DType::kF32, DType::kBF16}));
    QuantizedWeight qw;
    uint16_t* scale = qw.Alloc<uint16_t>(static_cast<size_t>(rows * groups));
    uint16_t* bias = qw.Alloc<uint16_t>(static_cast<size_t>(rows * groups));
    for (int64_t i = 0; i < rows * groups; ++i) {
      scale[i] = Fp32ToFp16(FloatAt(*s, i));
      bias[i] = Fp32ToFp16(FloatAt(*b, i));
    }
    SetAffineView(qw, bits, rows, cols, group, kernels::ZeroKind::kBias, w->data, scale, bias);
    qw.representation = absl::StrCat("mlx", bits, "/g", group);
    LinearLoad out = Own(std::move(qw));
    out.bytes += static_cast<int64_t>(w->nbytes);
    return out;
  }

  // HQQ (axis 1): W reshaped to (rows*cols/group, group) rows of one group each, packed
  // along that first dimension in 8/bits slices (slice i of `step` group rows sits at
  // bit 8 - bits*(i+1)); scale and zero (n_groups, 1); w = (q - zero) * scale. The
  // native qmodel.pt nests the same tensors under each module's dict, the transformers
  // layout flattens them; bits and group size follow from the shapes in both.
  absl::StatusOr<LinearLoad> Hqq(const std::string& name, int64_t rows, int64_t cols) const {
    const std::string p = ck_->Find(name + ".W_q") != nullptr ? name + "." : name + ".weight.";
    ASSIGN_OR_RETURN(const TensorView* wq, Get(p + "W_q", {}, {DType::kU8, DType::kI32}));
    ASSIGN_OR_RETURN(const TensorView* sc, Get(p + "scale", {}, {DType::kF16, DType::kF32, DType::kBF16}));
    ASSIGN_OR_RETURN(const TensorView* ze, Get(p + "zero", {}, {DType::kF16, DType::kF32, DType::kBF16}));
    if (wq->dtype != DType::kU8) {
      return absl::UnimplementedError(absl::StrCat(ck_->path(), ": '", p, "W_q' uses HQQ's 32-bit packing "
                                                   "(3-bit), which this build does not load"));
    }
    if (sc->shape.size() != 2 || sc->shape[1] != 1 || sc->shape != ze->shape) {
      return absl::UnimplementedError(absl::StrCat(ck_->path(), ": '", p, "scale' has shape ", Shape(sc->shape),
                                                   "; only HQQ axis=1 (n_groups, 1) is supported"));
    }
    const int64_t n_groups = sc->shape[0];
    if (n_groups <= 0 || (rows * cols) % n_groups != 0 || wq->shape.size() != 2) {
      return absl::InvalidArgumentError(absl::StrCat(ck_->path(), ": '", p, "scale' of ", n_groups,
                                                     " groups does not fit ", rows, " x ", cols));
    }
    const int64_t group = rows * cols / n_groups;
    const int64_t step = wq->shape[0];
    if (cols % group != 0 || wq->shape[1] != group || n_groups % step != 0) {
      return absl::InvalidArgumentError(absl::StrCat(ck_->path(), ": '", p, "W_q' has shape ", Shape(wq->shape),
                                                     " for ", n_groups, " groups of ", group));
    }
    const int64_t slices = n_groups / step;
    int bits = 0;
    for (int b : {8, 4, 2, 1}) {
      if (8 / b == slices) bits = b;
    }
    if (bits == 0) {
      return absl::InvalidArgumentError(absl::StrCat(ck_->path(), ": '", p, "W_q' packs ", slices,
                                                     " groups per byte, not an HQQ bit width"));
    }
    QuantizedWeight qw;
    const size_t row_bytes = static_cast<size_t>((cols * bits + 7) / 8);
    const int64_t gpr = cols / group;
    uint8_t* q = qw.Alloc<uint8_t>(row_bytes * rows);
    uint16_t* scale = qw.Alloc<uint16_t>(static_cast<size_t>(n_groups));
    uint16_t* zero = qw.Alloc<uint16_t>(static_cast<size_t>(n_groups));
    std::vector<uint8_t> codes(cols);
    const uint8_t mask = static_cast<uint8_t>((1u << bits) - 1);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t gi = 0; gi < gpr; ++gi) {
        const int64_t g = r * gpr + gi;
        const int shift = 8 - bits * static_cast<int>(g / step + 1);
        const uint8_t* src = wq->data + (g % step) * group;
        for (int64_t j = 0; j < group; ++j) codes[gi * group + j] = (src[j] >> shift) & mask;
      }
      PackCodes(codes.data(), cols, bits, q + r * row_bytes);
    }
    for (int64_t g = 0; g < n_groups; ++g) {
      scale[g] = Fp32ToFp16(FloatAt(*sc, g));
      zero[g] = Fp32ToFp16(FloatAt(*ze, g));
    }
    SetAffineView(qw, bits, rows, cols, group, kernels::ZeroKind::kZero, q, scale, zero);
    qw.representation = absl::StrCat("affine", bits, "/g", group);
    return Own(std::move(qw));
  }

  // optimum-quanto: qint8 weight._data (rows, cols) int8 with per-row _scale, w = q*s;
  // qint4/qint2 grouped along the inputs: (n_groups, group) codes packed along the
  // first dimension (slice i at bit bits*i) in weight._data._data, _scale and _shift
  // (n_groups, 1): w = q * scale - shift.
  absl::StatusOr<LinearLoad> Quanto(const std::string& name, int64_t rows, int64_t cols) const {
    const std::string p = name + ".weight.";
    ASSIGN_OR_RETURN(const TensorView* sc, Get(p + "_scale", {}, {DType::kF16, DType::kF32, DType::kBF16}));
    QuantizedWeight qw;
    if (const TensorView* d8 = ck_->Find(p + "_data"); d8 != nullptr && d8->dtype == DType::kI8) {
      if (d8->shape != std::vector<int64_t>{rows, cols} || sc->numel() != rows) {
        return absl::InvalidArgumentError(absl::StrCat(ck_->path(), ": '", p, "_data' has shape ", Shape(d8->shape),
                                                       " and _scale ", Shape(sc->shape), " for ", rows, " x ", cols));
      }
      return Int8Rows(*d8, *sc, 1.0f, 0.0f);
    }
    ASSIGN_OR_RETURN(const TensorView* data, Get(p + "_data._data", {}, {DType::kU8}));
    ASSIGN_OR_RETURN(const TensorView* sh, Get(p + "_shift", {}, {DType::kF16, DType::kF32, DType::kBF16}));
    const int64_t n_groups = sc->numel();
    if (n_groups <= 0 || (rows * cols) % n_groups != 0 || sh->numel() != n_groups || data->shape.size() != 2) {
      return absl::InvalidArgumentError(absl::StrCat(ck_->path(), ": '", p, "_scale' of ", n_groups,
                                                     " groups does not fit ", rows, " x ", cols));
    }
    const int64_t group = rows * cols / n_groups;
    const int64_t step = data->shape[0];
    int bits = 0;
    for (int b : {4, 2}) {
      if ((n_groups + 8 / b - 1) / (8 / b) == step) bits = b;
    }
    if (bits == 0 || cols % group != 0 || data->shape[1] != group) {
      return absl::InvalidArgumentError(absl::StrCat(ck_->path(), ": '", p, "_data._data' has shape ",
                                                     Shape(data->shape), " for ", n_groups, " groups of ", group));
    }
    const size_t row_bytes = static_cast<size_t>((cols * bits + 7) / 8);
    const int64_t gpr = cols / group;
    uint8_t* q = qw.Alloc<uint8_t>(row_bytes * rows);
    uint16_t* scale = qw.Alloc<uint16_t>(static_cast<size_t>(n_groups));
    uint16_t* bias = qw.Alloc<uint16_t>(static_cast<size_t>(n_groups));
    std::vector<uint8_t> codes(cols);
    const uint8_t mask = static_cast<uint8_t>((1u << bits) - 1);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t gi = 0; gi < gpr; ++gi) {
        const int64_t g = r * gpr + gi;
        const uint8_t* src = data->data + (g % step) * group;
        const int shift = bits * static_cast<int>(g / step);
        for (int64_t j = 0; j < group; ++j) codes[gi * group + j] = (src[j] >> shift) & mask;
      }
      PackCodes(codes.data(), cols, bits, q + r * row_bytes);
    }
    for (int64_t g = 0; g < n_groups; ++g) {
      scale[g] = Fp32ToFp16(FloatAt(*sc, g));
      bias[g] = Fp32ToFp16(-FloatAt(*sh, g));
    }
    SetAffineView(qw, bits, rows, cols, group, kernels::ZeroKind::kBias, q, scale, bias);
    qw.representation = absl::StrCat("quanto", bits, "/g", group);
    return Own(std::move(qw));
  }

  // torchao's Int8Tensor as transformers 5 flattens it into safetensors (the tensor's
  // attributes as `<module>._weight_<attr>`, its class in the file's metadata):
  // _weight_qdata (rows, cols) int8, _weight_scale and _weight_zero_point (rows, G) for G
  // groups of cols / G inputs (PerRow: G = 1); w = (q - zero_point) * scale. Stored as
  // kAffine 8-bit codes q + 128 with zero 128 + zero_point (ingot's int8/row when G = 1).
  absl::StatusOr<LinearLoad> Torchao(const std::string& name, int64_t rows, int64_t cols) const {
    const std::string p = name + "._weight_";
    ASSIGN_OR_RETURN(const TensorView* q8, Get(p + "qdata", {rows, cols}, {DType::kI8}));
    ASSIGN_OR_RETURN(const TensorView* sc, Get(p + "scale", {}, {DType::kF32, DType::kF16, DType::kBF16}));
    const TensorView* zp = ck_->Find(p + "zero_point");
    const int64_t n_groups = sc->numel();
    if (sc->shape.empty() || sc->shape[0] != rows || n_groups % rows != 0 || cols % (n_groups / rows) != 0 ||
        (zp != nullptr && (zp->numel() != n_groups || zp->dtype != DType::kI8))) {
      return absl::InvalidArgumentError(absl::StrCat(ck_->path(), ": '", p, "scale' has shape ", Shape(sc->shape),
                                                     zp != nullptr ? absl::StrCat(" and zero_point ", Shape(zp->shape)) : "",
                                                     ", which do not group a ", rows, " x ", cols, " int8 weight"));
    }
    return Int8Groups(*q8, *sc, zp, 1.0f, 0.0f);
  }

  // ingot's own layout (LlamaModel::SaveCheckpoint): the module's entry in
  // quantization_config.json names its representation; the tensors are that
  // representation's arrays, used in place.
  absl::StatusOr<LinearLoad> Ingot(const std::string& name, int64_t rows, int64_t cols) const {
    const std::string where = ck_->dir() + "/quantization_config.json";
    auto it = ingot_.find(name);
    if (it == ingot_.end() || !it->is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": no entry for module '", name, "'"));
    }
    const Json& s = *it;
    auto bad = [&](const std::string& what) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": module '", name, "': ", what));
    };
    // Typed reads: a field of another type reads as absent (and is then refused).
    auto int_of = [&](const char* key) -> int64_t {
      return s.contains(key) && s[key].is_number_integer() ? s[key].get<int64_t>() : -1;
    };
    auto str_of = [&](const char* key, const std::string& def) {
      return s.contains(key) && s[key].is_string() ? s[key].get<std::string>() : def;
    };
    auto float_of = [&](const char* key) {
      return s.contains(key) && s[key].is_number() ? s[key].get<float>() : 0.0f;
    };
    auto flag = [&](const char* key) { return s.contains(key) && s[key].is_boolean() && s[key].get<bool>(); };
    const std::string kind = str_of("kind", ""), w = name + ".weight";
    LinearLoad out;
    // Bytes of the module's tensors, as the other loaders count them.
    auto get = [&](const std::string& t, std::vector<int64_t> shape, DType d) -> absl::StatusOr<const TensorView*> {
      ASSIGN_OR_RETURN(const TensorView* v, Get(t, std::move(shape), {d}));
      out.bytes += static_cast<int64_t>(v->nbytes);
      return v;
    };
    out.representation = str_of("representation", kind);
    if (kind == "ggml") {
      const int64_t id = int_of("type_id");
      const GgmlTypeTraits& t = GetGgmlTypeTraits(static_cast<uint32_t>(id < 0 || id > 1024 ? 1024 : id));
      if (id < 0 || id > 1024 || !t.supported || str_of("type", "") != t.name) {
        return bad(absl::StrCat("GGML type ", str_of("type", "?"), " (id ", id, ") is not one this build reads"));
      }
      if (cols % t.block_size != 0) return bad(absl::StrCat(cols, " columns are not whole ", t.name, " blocks"));
      kernels::WeightMatrix& m = out.w.ggml;
      m.type = static_cast<GgmlType>(id);
      m.rows = rows;
      m.cols = cols;
      m.row_bytes = GgmlRowSize(m.type, cols);
      ASSIGN_OR_RETURN(const TensorView* q, get(w, {rows, static_cast<int64_t>(m.row_bytes)}, DType::kU8));
      m.data = q->data;
      out.w.kind = kernels::LinearKind::kGgml;
    } else if (kind == "affine") {
      kernels::AffineMatrix& a = out.w.affine;
      a.bits = static_cast<int32_t>(std::clamp<int64_t>(int_of("bits"), -1, 64));
      a.group = int_of("group_size");
      if (a.bits < 1 || a.bits > 8 || a.group <= 0 || cols % a.group != 0 || int_of("cols") != cols) {
        return bad(absl::StrCat("bits ", a.bits, ", group_size ", a.group, ", cols ", int_of("cols"),
                                " do not describe a ", rows, " x ", cols, " affine matrix"));
      }
      const std::string zero = str_of("zero", "");
      if (zero != "zero" && zero != "bias") return bad("zero must be \"zero\" or \"bias\"");
      a.zero_kind = zero == "zero" ? kernels::ZeroKind::kZero : kernels::ZeroKind::kBias;
      a.rows = rows;
      a.cols = cols;
      a.row_bytes = static_cast<size_t>((cols * a.bits + 7) / 8);
      const int64_t g = cols / a.group;
      ASSIGN_OR_RETURN(const TensorView* q, get(w, {rows, static_cast<int64_t>(a.row_bytes)}, DType::kU8));
      ASSIGN_OR_RETURN(const TensorView* sc, get(name + ".scales", {rows, g}, DType::kF16));
      a.q = q->data;
      a.scale = reinterpret_cast<const uint16_t*>(sc->data);
      if (ck_->Find(name + ".zeros") != nullptr) {
        ASSIGN_OR_RETURN(const TensorView* z, get(name + ".zeros", {rows, g}, DType::kF16));
        a.zero = reinterpret_cast<const uint16_t*>(z->data);
      }
      out.w.kind = kernels::LinearKind::kAffine;
      out.w.outlier_threshold = float_of("outlier_threshold");
      if (flag("input_order")) {
        // The kernels gather activations through it: it must be a permutation of the columns.
        ASSIGN_OR_RETURN(const TensorView* order, get(name + ".input_order", {cols}, DType::kI32));
        std::vector<bool> seen(static_cast<size_t>(cols), false);
        for (int64_t j = 0; j < cols; ++j) {
          const int32_t c = LoadAt<int32_t>(order->data, j);
          if (c < 0 || c >= cols || seen[c]) return bad(absl::StrCat("input_order is not a permutation of the ", cols, " columns"));
          seen[c] = true;
        }
        out.w.input_order = reinterpret_cast<const int32_t*>(order->data);
      }
    } else if (kind == "codebook") {
      kernels::CodebookMatrix& c = out.w.codebook;
      const std::string book = str_of("book", "");
      if (book != "nf4" && book != "fp4") return bad("book must be nf4 or fp4");
      c.book = book == "nf4" ? kernels::Codebook::kNF4 : kernels::Codebook::kFP4;
      c.rows = rows;
      c.cols = cols;
      c.block = int_of("block");
      if (c.block <= 0 || cols % c.block != 0 || c.block % 2 != 0 || int_of("rows") != rows ||
          int_of("cols") != cols) {
        return bad(absl::StrCat("block ", c.block, ", shape ", int_of("rows"), " x ", int_of("cols"),
                                " do not describe a ", rows, " x ", cols, " codebook matrix"));
      }
      const int64_t n = rows * cols, blocks = n / c.block;
      ASSIGN_OR_RETURN(const TensorView* codes, get(w, {n / 2}, DType::kU8));
      c.codes = codes->data;
      if (ck_->Find(name + ".absmax_code") != nullptr) {
        c.absmax_block = int_of("absmax_block");
        if (c.absmax_block <= 0 || c.absmax_block > (1 << 20)) return bad("absmax_block must be in [1, 2^20]");
        c.absmax_offset = float_of("absmax_offset");
        ASSIGN_OR_RETURN(const TensorView* code, get(name + ".absmax_code", {blocks}, DType::kU8));
        ASSIGN_OR_RETURN(const TensorView* scale,
                         get(name + ".absmax_scale", {(blocks + c.absmax_block - 1) / c.absmax_block}, DType::kF32));
        c.absmax_code = code->data;
        c.absmax_scale = reinterpret_cast<const float*>(scale->data);
      } else {
        ASSIGN_OR_RETURN(const TensorView* absmax, get(name + ".absmax", {blocks}, DType::kF32));
        c.absmax = reinterpret_cast<const float*>(absmax->data);
      }
      out.w.kind = kernels::LinearKind::kCodebook;
    } else {
      return bad(absl::StrCat("kind '", kind, "' is not ggml, affine or codebook"));
    }
    return out;
  }

  std::shared_ptr<const Checkpoint> ck_;
  Json ingot_ = Json::object();  // quantization_config.json "modules" of an ingot layout
};

}  // namespace

LinearLoader CheckpointLinearLoader(std::shared_ptr<const Checkpoint> checkpoint) {
  auto reader = std::make_shared<Reader>(std::move(checkpoint));
  return [reader](const std::string& name, int64_t rows, int64_t cols) { return reader->Load(name, rows, cols); };
}

}  // namespace ingot::quant
