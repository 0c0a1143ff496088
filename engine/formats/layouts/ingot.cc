// ingot's own layout (what SaveModel writes as "ingot"): each linear module's tensors
// under its HF name in the representation it has in memory, used in place when read:
//   dense     NAME.weight  F32/F16/BF16 (rows, cols)
//   ggml      NAME.weight  U8 (rows, row_bytes), GGML blocks
//   affine    NAME.weight  U8 (rows, row_bytes) code bitstream,
//             NAME.scales / NAME.zeros  F16 (rows, groups), NAME.input_order I32 (act-order)
//   codebook  NAME.weight  U8 (rows * cols / 2), NAME.absmax F32, or NAME.absmax_code U8 +
//             NAME.absmax_scale F32 (double quant)
// and quantization_config.json {"quant_method": "ingot", "version": 1, "modules": {NAME:
// {"kind", "representation", and the kind's parameters}}}, written when any module is
// not plain F32/F16/BF16.
#include <algorithm>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/formats/layouts/read_util.h"

namespace ingot::formats::layouts {
namespace {

// ingot's own layout (SaveCheckpoint, engine/model/save.h): the module's entry in
// quantization_config.json names its representation; the tensors are that
// representation's arrays, used in place.
absl::StatusOr<LinearLoad> ReadIngot(const Checkpoint& ck, const Json& modules, const std::string& name, int64_t rows,
                                     int64_t cols) {
  const std::string where = ck.dir() + "/quantization_config.json";
  auto it = modules.find(name);
  if (it == modules.end() || !it->is_object()) {
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
    ASSIGN_OR_RETURN(const TensorView* v, Get(ck, t, std::move(shape), {d}));
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
    if (ck.Find(name + ".zeros") != nullptr) {
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
    if (ck.Find(name + ".absmax_code") != nullptr) {
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

// A linear module (or the embedding) in its in-memory representation.
class IngotEncoder : public LayoutEncoder {
 public:
  absl::Status Add(LayoutWriter& out, const LinearToSave& s) override {
    const std::string &name = s.name, &repr = s.repr;
    const kernels::Linear& w = s.lin;
    Json spec = {{"representation", repr}};
    const std::string weight = name + ".weight";
    switch (w.kind) {
      case kernels::LinearKind::kGgml: {
        const kernels::WeightMatrix& m = w.ggml;
        if (IsFloatType(m.type)) {
          out.AddDense(name, m);
          // A plain HF tensor: an entry only to keep a representation name the dense
          // loader would not give it.
          if (repr != GetGgmlTypeTraits(m.type).name) modules_[name] = {{"representation", repr}};
          return absl::OkStatus();
        }
        out.Add(weight, DType::kU8, {m.rows, static_cast<int64_t>(m.row_bytes)}, m.data);
        spec["kind"] = "ggml";
        spec["type"] = GetGgmlTypeTraits(m.type).name;
        spec["type_id"] = static_cast<int>(m.type);
        break;
      }
      case kernels::LinearKind::kAffine: {
        const kernels::AffineMatrix& a = w.affine;
        const int64_t g = a.groups_per_row();
        out.Add(weight, DType::kU8, {a.rows, static_cast<int64_t>(a.row_bytes)}, a.q);
        out.Add(name + ".scales", DType::kF16, {a.rows, g}, a.scale);
        if (a.zero != nullptr) out.Add(name + ".zeros", DType::kF16, {a.rows, g}, a.zero);
        spec["kind"] = "affine";
        spec["bits"] = a.bits;
        spec["cols"] = a.cols;
        spec["group_size"] = a.group;
        spec["zero"] = a.zero_kind == kernels::ZeroKind::kZero ? "zero" : "bias";
        if (w.outlier_threshold > 0) spec["outlier_threshold"] = w.outlier_threshold;
        if (w.input_order != nullptr) {
          out.Add(name + ".input_order", DType::kI32, {a.cols}, w.input_order);
          spec["input_order"] = true;
        }
        break;
      }
      case kernels::LinearKind::kCodebook: {
        const kernels::CodebookMatrix& c = w.codebook;
        const int64_t n = c.rows * c.cols, blocks = n / c.block;
        out.Add(weight, DType::kU8, {n / 2}, c.codes);
        spec["kind"] = "codebook";
        spec["book"] = c.book == kernels::Codebook::kNF4 ? "nf4" : "fp4";
        spec["rows"] = c.rows;
        spec["cols"] = c.cols;
        spec["block"] = c.block;
        if (c.absmax_code == nullptr) {
          out.Add(name + ".absmax", DType::kF32, {blocks}, c.absmax);
        } else {
          out.Add(name + ".absmax_code", DType::kU8, {blocks}, c.absmax_code);
          out.Add(name + ".absmax_scale", DType::kF32, {(blocks + c.absmax_block - 1) / c.absmax_block}, c.absmax_scale);
          spec["absmax_block"] = c.absmax_block;
          spec["absmax_offset"] = c.absmax_offset;
        }
        break;
      }
    }
    modules_[name] = std::move(spec);
    return absl::OkStatus();
  }

  absl::Status Finish(Json*, std::map<std::string, std::string>* files, std::map<std::string, std::string>*) override {
    if (!modules_.empty()) {
      (*files)["quantization_config.json"] = Json{{"quant_method", "ingot"}, {"version", 1}, {"modules", modules_}}.dump(1);
    }
    return absl::OkStatus();
  }

 private:
  Json modules_ = Json::object();  // quantization_config.json "modules"
};

}  // namespace

// Modules stored dense are read as dense, keeping the representation name the entry
// gives them.
LinearLoader IngotReader(std::shared_ptr<const Checkpoint> ck) {
  Json modules = Json::object();
  const Json j = Json::parse(ck->quant().json, nullptr, false);
  if (j.is_object() && j.contains("modules") && j["modules"].is_object()) modules = j["modules"];
  auto m = std::make_shared<const Json>(std::move(modules));
  return [ck, m](const std::string& name, int64_t rows, int64_t cols) -> absl::StatusOr<LinearLoad> {
    if (!StoredDense(*ck, name)) return ReadIngot(*ck, *m, name, rows, cols);
    ASSIGN_OR_RETURN(LinearLoad out, ReadDense(*ck, name, rows, cols));
    if (auto it = m->find(name); it != m->end() && it->is_object()) {
      if (it->contains("representation") && (*it)["representation"].is_string()) {
        out.representation = (*it)["representation"].get<std::string>();
      }
    }
    return out;
  };
}

bool IngotClaims(const Json& j) { return StrOr(j, "quant_method", "") == "ingot"; }

absl::Status ConfigureIngot(ConfigSource, const Json& j, const std::string& where, CheckpointQuantConfig*) {
  if (IntOr(j, "version", 0) != 1 || !j.contains("modules") || !j["modules"].is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": an ingot layout needs \"version\": 1 and a \"modules\" object"));
  }
  return absl::OkStatus();
}

std::unique_ptr<LayoutEncoder> NewIngotEncoder() { return std::make_unique<IngotEncoder>(); }

}  // namespace ingot::formats::layouts
