// bitsandbytes as transformers serializes it (save_pretrained of a model loaded with
// BitsAndBytesConfig): NF4/FP4 Params4bit (packed codes, absmax or nested absmax with its
// dynamic map, a JSON quant_state blob) <-> kCodebook, in place; LLM.int8 (int8 weight +
// SCB row absmax) <-> kAffine 8-bit rows with zero 128. Dense modules are listed in
// llm_int8_skip_modules. Two rows: 4-bit and int8 (config.json's quant_method names
// both; load_in_8bit picks).
#include <cmath>

#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/formats/layouts/read_util.h"

namespace ingot::formats::layouts {

// bitsandbytes Params4bit as transformers serializes it: packed codes in `weight`,
// absmax (u8 codes when nested), quant_map, nested_absmax/nested_quant_map and a JSON
// quant_state blob naming the type, block sizes and the nested offset.
absl::StatusOr<LinearLoad> ReadBnb4(const Checkpoint& ck, const std::string& name, int64_t rows, int64_t cols) {
  const std::string w = name + ".weight";
  const TensorView* state = nullptr;
  std::string type;
  for (const char* t : {"nf4", "fp4"}) {
    if ((state = ck.Find(absl::StrCat(w, ".quant_state.bitsandbytes__", t))) != nullptr) {
      type = t;
      break;
    }
  }
  if (state == nullptr) return Missing(ck, w + ".quant_state.bitsandbytes__nf4");
  const Json js = Json::parse(std::string(reinterpret_cast<const char*>(state->data), state->nbytes), nullptr, false);
  if (js.is_discarded() || !js.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(ck.path(), ": '", w, ".quant_state...' is not JSON"));
  }
  const int64_t block = js.value("blocksize", 64);
  const int64_t n = rows * cols;
  if (block <= 0 || cols % block != 0) {
    return absl::UnimplementedError(absl::StrCat(ck.path(), ": '", w, "' uses blocksize ", block,
                                                 ", which must divide the row of ", cols));
  }
  if (js.contains("shape") && js["shape"] != Json::array({rows, cols})) {
    return absl::InvalidArgumentError(absl::StrCat(ck.path(), ": '", w, "' quant_state shape ",
                                                   js["shape"].dump(), ", expected [", rows, ", ", cols, "]"));
  }
  ASSIGN_OR_RETURN(const TensorView* codes, Get(ck, w, {}, {DType::kU8}));
  if (static_cast<int64_t>(codes->nbytes) != n / 2) {
    return absl::InvalidArgumentError(absl::StrCat(ck.path(), ": '", w, "' holds ", codes->nbytes,
                                                   " bytes, expected ", n / 2, " for ", rows, " x ", cols));
  }
  const kernels::Codebook book = type == "nf4" ? kernels::Codebook::kNF4 : kernels::Codebook::kFP4;
  ASSIGN_OR_RETURN(const TensorView* qmap, Get(ck, w + ".quant_map", {16}, {DType::kF32}));
  for (int i = 0; i < 16; ++i) {
    if (std::fabs(FloatAt(*qmap, i) - kernels::CodebookValues(book)[i]) > 1e-6f) {
      return absl::UnimplementedError(absl::StrCat(ck.path(), ": '", w,
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
    ASSIGN_OR_RETURN(const TensorView* a, Get(ck, w + ".absmax", {blocks}, {DType::kU8}));
    ASSIGN_OR_RETURN(const TensorView* na, Get(ck, w + ".nested_absmax", {(blocks + nb - 1) / nb}, {DType::kF32}));
    ASSIGN_OR_RETURN(const TensorView* nmap, Get(ck, w + ".nested_quant_map", {256}, {DType::kF32}));
    for (int i = 0; i < 256; ++i) {
      if (std::fabs(FloatAt(*nmap, i) - kernels::DynamicMap()[i]) > 1e-6f) {
        return absl::UnimplementedError(absl::StrCat(
            ck.path(), ": '", w, ".nested_quant_map' is not bitsandbytes' dynamic map"));
      }
    }
    cb.absmax_code = a->data;
    cb.absmax_scale = reinterpret_cast<const float*>(na->data);
    cb.absmax_block = nb;
    cb.absmax_offset = js.value("nested_offset", 0.0f);
    out.bytes = static_cast<int64_t>(codes->nbytes + a->nbytes + na->nbytes);
  } else {
    ASSIGN_OR_RETURN(const TensorView* a, Get(ck, w + ".absmax", {blocks}, {DType::kF32}));
    cb.absmax = reinterpret_cast<const float*>(a->data);
    out.bytes = static_cast<int64_t>(codes->nbytes + a->nbytes);
  }
  out.representation = absl::StrCat(type, "/b", block, nested ? "+dq" : "");
  return out;
}

// LLM.int8: int8 rows and SCB (row absmax); w = q * SCB / 127.
absl::StatusOr<LinearLoad> ReadBnb8(const Checkpoint& ck, const std::string& name, int64_t rows, int64_t cols) {
  ASSIGN_OR_RETURN(const TensorView* w, Get(ck, name + ".weight", {rows, cols}, {DType::kI8}));
  ASSIGN_OR_RETURN(const TensorView* scb, Get(ck, name + ".SCB", {rows}, {DType::kF32, DType::kF16}));
  float threshold = 6.0f;
  const Json j = Json::parse(ck.quant().json.empty() ? "{}" : ck.quant().json, nullptr, false);
  if (j.is_object()) threshold = j.value("llm_int8_threshold", 6.0f);
  return Int8Rows(*w, *scb, 127.0f, threshold);
}

namespace {

// bitsandbytes as transformers serializes it.
class BnbEncoder : public LayoutEncoder {
 public:
  absl::Status Add(LayoutWriter& w, const LinearToSave& m) override {
    const std::string &name = m.name, &repr = m.repr;
    const kernels::Linear& lin = m.lin;
    const std::string weight = name + ".weight";
    constexpr const char* kHow = "quantize it with -m bitsandbytes (nf4, fp4 or 8-bit) first";
    if (IsFloatWeight(lin)) {
      w.AddDense(name, lin.ggml);
      skip_.push_back(name);
      return absl::OkStatus();
    }
    if (lin.kind == kernels::LinearKind::kCodebook) {
      const kernels::CodebookMatrix& c = lin.codebook;
      const char* type = c.book == kernels::Codebook::kNF4 ? "nf4" : "fp4";
      RETURN_IF_ERROR(Mode(name, type));
      const int64_t n = c.rows * c.cols, blocks = n / c.block;
      w.Add(weight, DType::kU8, {n / 2, 1}, c.codes);
      w.Add(weight + ".quant_map", DType::kF32, {16}, kernels::CodebookValues(c.book));
      Json state = {{"quant_type", type}, {"blocksize", c.block}, {"dtype", "float32"}, {"shape", {c.rows, c.cols}}};
      if (c.absmax_code != nullptr) {
        w.Add(weight + ".absmax", DType::kU8, {blocks}, c.absmax_code);
        w.Add(weight + ".nested_absmax", DType::kF32, {(blocks + c.absmax_block - 1) / c.absmax_block}, c.absmax_scale);
        w.Add(weight + ".nested_quant_map", DType::kF32, {256}, kernels::DynamicMap());
        state["nested_blocksize"] = c.absmax_block;
        state["nested_dtype"] = "float32";
        state["nested_offset"] = c.absmax_offset;
        double_quant_ = true;
      } else {
        w.Add(weight + ".absmax", DType::kF32, {blocks}, c.absmax);
      }
      const std::string blob = state.dump();
      w.Add(absl::StrCat(weight, ".quant_state.bitsandbytes__", type), DType::kU8,
            {static_cast<int64_t>(blob.size())}, w.Keep(blob));
      return absl::OkStatus();
    }
    if (lin.kind == kernels::LinearKind::kAffine) {
      // LLM.int8 rows: (q - 128) * scale, scale = SCB / 127.
      const kernels::AffineMatrix& a = lin.affine;
      bool rows_of_128 = a.bits == 8 && a.group == a.cols && a.zero_kind == kernels::ZeroKind::kZero && a.zero != nullptr;
      for (int64_t r = 0; rows_of_128 && r < a.rows; ++r) rows_of_128 = Fp16ToFp32(a.zero[r]) == 128.0f;
      if (!rows_of_128) return NoForm(name, repr, "bitsandbytes", kHow);
      RETURN_IF_ERROR(Mode(name, "int8"));
      int8_t* q = w.KeepArray<int8_t>(static_cast<size_t>(a.rows * a.cols));
      float* scb = w.KeepArray<float>(static_cast<size_t>(a.rows));
      for (int64_t r = 0; r < a.rows; ++r) {
        for (int64_t i = 0; i < a.cols; ++i) q[r * a.cols + i] = static_cast<int8_t>(a.q[r * a.row_bytes + i] - 128);
        scb[r] = Fp16ToFp32(a.scale[r]) * 127.0f;
      }
      w.Add(weight, DType::kI8, {a.rows, a.cols}, q);
      w.Add(name + ".SCB", DType::kF32, {a.rows}, scb);
      static const uint8_t kRowFormat = 0;
      w.Add(name + ".weight_format", DType::kU8, {}, &kRowFormat);
      if (any_int8_ && threshold_ != lin.outlier_threshold) {
        return absl::FailedPreconditionError(absl::StrCat("'", name, "' has LLM.int8 outlier threshold ",
                                                          lin.outlier_threshold, ", earlier modules ", threshold_,
                                                          "; a bitsandbytes checkpoint has one"));
      }
      threshold_ = lin.outlier_threshold;
      any_int8_ = true;
      return absl::OkStatus();
    }
    return NoForm(name, repr, "bitsandbytes", kHow);
  }

  absl::Status Finish(Json* config, std::map<std::string, std::string>*, std::map<std::string, std::string>*) override {
    ASSIGN_OR_RETURN((*config)["quantization_config"], Config());
    return absl::OkStatus();
  }

 private:
  absl::StatusOr<Json> Config() const {
    if (mode_.empty()) return NothingQuantized();
    const bool int8 = mode_ == "int8";
    Json skip = Json::array();
    for (const std::string& s : skip_) skip.push_back(s);
    return Json{{"quant_method", "bitsandbytes"},
                {"load_in_4bit", !int8},
                {"load_in_8bit", int8},
                {"bnb_4bit_quant_type", int8 ? "fp4" : mode_},
                {"bnb_4bit_use_double_quant", double_quant_},
                {"bnb_4bit_compute_dtype", "float32"},
                {"bnb_4bit_quant_storage", "uint8"},
                {"llm_int8_threshold", int8 ? threshold_ : 6.0f},  // transformers' default for 4-bit
                {"llm_int8_has_fp16_weight", false},
                {"llm_int8_skip_modules", skip_.empty() ? Json(nullptr) : skip}};
  }

  // One quantization per checkpoint, as transformers' config describes it.
  absl::Status Mode(const std::string& name, const std::string& mode) {
    if (mode_.empty()) mode_ = mode;
    if (mode_ != mode) {
      return absl::FailedPreconditionError(absl::StrCat("'", name, "' is ", mode, " but earlier modules are ", mode_,
                                                        "; a bitsandbytes checkpoint has one quantization"));
    }
    return absl::OkStatus();
  }
  std::string mode_;
  bool double_quant_ = false;
  float threshold_ = 0.0f;
  bool any_int8_ = false;
  std::vector<std::string> skip_;
};

}  // namespace

absl::Status ConfigureBnb(ConfigSource src, const Json& j, const std::string&, CheckpointQuantConfig* q) {
  if (src == ConfigSource::kHfConfig) {
    if (BoolOr(j, "load_in_8bit", false)) {
      q->layout = FindLayout("bitsandbytes-int8");
      q->bits = 8;
    } else {
      q->layout = FindLayout("bitsandbytes-4bit");
      q->bits = 4;
      q->quant_type = StrOr(j, "bnb_4bit_quant_type", "fp4");
    }
    q->skip_modules = StrList(j, "llm_int8_skip_modules");
    return absl::OkStatus();
  }
  ReadSideSettings(j, q);
  const Json& p = j.contains("weight_quant_params") && j["weight_quant_params"].is_object() ? j["weight_quant_params"] : j;
  q->quant_type = StrOr(p, "quant_type", StrOr(p, "bnb_4bit_quant_type", "nf4"));
  if (q->bits == 8) q->layout = FindLayout("bitsandbytes-int8");
  return absl::OkStatus();
}

std::unique_ptr<LayoutEncoder> NewBnbEncoder() { return std::make_unique<BnbEncoder>(); }

}  // namespace ingot::formats::layouts
