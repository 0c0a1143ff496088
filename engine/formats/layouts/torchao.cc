// torchao's tensor subclasses as checkpoints hold them (read only): Int8Tensor as
// transformers 5 saves it, the CPU int4 Int4OpaqueTensor as torch.save pickles it, and
// the CUDA int4 Int4TilePackedTo4dTensor either way.
#include "engine/formats/layouts/torchao.h"

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "engine/common/status.h"
#include "engine/formats/layouts/read_util.h"

namespace ingot::formats::layouts {

const char* Int4CpuPackingName(Int4CpuPacking p) {
  switch (p) {
    case Int4CpuPacking::kDefault: return "default";
    case Int4CpuPacking::kAvx2: return "avx2";
    case Int4CpuPacking::kAvx512: return "avx512";
  }
  return "?";
}

bool ParseInt4CpuPacking(std::string_view name, Int4CpuPacking* out) {
  const std::string n = absl::AsciiStrToLower(absl::string_view(name.data(), name.size()));
  for (Int4CpuPacking p : {Int4CpuPacking::kDefault, Int4CpuPacking::kAvx2, Int4CpuPacking::kAvx512}) {
    if (n == Int4CpuPackingName(p)) {
      *out = p;
      return true;
    }
  }
  return false;
}

Int4CpuPacking DetectInt4CpuPacking() {
  Int4CpuPacking best = Int4CpuPacking::kDefault;
#if defined(__x86_64__) || defined(__i386__)
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma")) {
    best = Int4CpuPacking::kAvx512;
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    best = Int4CpuPacking::kAvx2;
  }
#endif
  Int4CpuPacking named;
  const char* env = std::getenv("ATEN_CPU_CAPABILITY");
  if (env != nullptr && ParseInt4CpuPacking(env, &named)) return named;
  return best;
}

void UnpackInt4Cpu(const uint8_t* packed, int64_t n, int64_t k, Int4CpuPacking p, uint8_t* codes) {
  const int64_t block = p == Int4CpuPacking::kAvx512 ? 64 : 32;
  for (int64_t b0 = 0; b0 < n; b0 += block) {
    const int64_t nb = std::min(block, n - b0);
    const uint8_t* src = packed + b0 * k / 2;
    uint8_t* dst = codes + b0 * k;  // (nb, k)
    for (int64_t c = 0; c < k; ++c) {
      const uint8_t* row = src + c * nb / 2;  // nb / 2 bytes of column c
      // Byte j holds rows lo(j) (low nibble) and hi(j) (high nibble) of the block.
      auto put = [&](int64_t j, int64_t lo, int64_t hi) {
        dst[lo * k + c] = row[j] & 15;
        dst[hi * k + c] = row[j] >> 4;
      };
      if (nb == block && p == Int4CpuPacking::kAvx512) {
        for (int64_t d = 0; d < 16; ++d) {
          put(d, d, d + 32);
          put(16 + d, d + 16, d + 48);
        }
      } else if (nb == block && p == Int4CpuPacking::kAvx2) {
        for (int64_t d = 0; d < 16; ++d) put(d, d, d + 16);
      } else {
        for (int64_t j = 0; j < nb / 2; ++j) put(j, 2 * j, 2 * j + 1);
      }
    }
  }
}

Int4TileSlot Int4TileAt(int64_t n, int64_t k, int64_t k_padded, int inner_k_tiles) {
  const int64_t super = inner_k_tiles * 16;  // k per (nTile, kOuter) block
  const int64_t r = k % super, r2 = r % 32;
  const int64_t t = (n % 8) * 4 + (r2 / 2) % 4;
  const int64_t j = r2 / 8 + 4 * (r2 % 2);
  const int64_t words = inner_k_tiles / 2;  // per lane
  const int64_t word = (((n / 8) * (k_padded / super) + k / super) * 32 + t) * words + r / 32;
  return {word, static_cast<int>(4 * j)};
}

void UnpackInt4Tile(const uint8_t* packed, int64_t k_padded, int inner_k_tiles, int64_t rows, int64_t cols,
                    uint8_t* codes) {
  for (int64_t n = 0; n < rows; ++n) {
    for (int64_t k = 0; k < cols; ++k) {
      const Int4TileSlot s = Int4TileAt(n, k, k_padded, inner_k_tiles);
      codes[n * cols + k] = static_cast<uint8_t>(LoadAt<uint32_t>(packed, s.word) >> s.shift & 15);
    }
  }
}

namespace {

// A subclass attribute under either name it is stored by: transformers' safetensors
// flattening (`<module>._weight_<attr>`) or a torch.save pickle, whose wrapper subclass
// reads as its attribute dict (`<module>.weight.<attr>`, engine/formats/torch_pickle.cc).
std::string Attr(const Checkpoint& ck, const std::string& name, const char* attr) {
  std::string flat = absl::StrCat(name, "._weight_", attr);
  if (ck.Find(flat) != nullptr) return flat;
  std::string pickled = absl::StrCat(name, ".weight.", attr);
  return ck.Find(pickled) != nullptr ? pickled : flat;
}

// tinygemm's int4 groups: codes (rows, cols) in 0..15 and scale_and_zero (cols/G,
// sz_rows, 2) with [g][r] = {scale, zero} (sz_rows >= rows: the packed rows, padding
// included), w = (q - 8) * scale + zero. Stored as kAffine 4-bit kBias, bias = zero -
// 8 * scale, scale and bias rounded to f16 once (as ingot's own TORCHAO_INT4).
LinearLoad Int4TinygemmGroups(const uint8_t* codes, const TensorView& sz, int64_t sz_rows, int64_t rows, int64_t cols,
                              int64_t group) {
  const int64_t groups = cols / group;
  QuantizedWeight qw;
  const size_t row_bytes = static_cast<size_t>(cols / 2);
  uint8_t* q = qw.Alloc<uint8_t>(static_cast<size_t>(rows) * row_bytes);
  uint16_t* scale = qw.Alloc<uint16_t>(static_cast<size_t>(rows * groups));
  uint16_t* bias = qw.Alloc<uint16_t>(static_cast<size_t>(rows * groups));
  for (int64_t r = 0; r < rows; ++r) {
    PackCodes(codes + r * cols, cols, 4, q + r * row_bytes);
    for (int64_t g = 0; g < groups; ++g) {
      const float s = FloatAt(sz, (g * sz_rows + r) * 2), z = FloatAt(sz, (g * sz_rows + r) * 2 + 1);
      scale[r * groups + g] = Fp32ToFp16(s);
      bias[r * groups + g] = Fp32ToFp16(z - 8.0f * s);
    }
  }
  SetAffineView(qw, 4, rows, cols, group, kernels::ZeroKind::kBias, q, scale, bias);
  qw.representation = absl::StrCat("affine4/g", group);
  return Own(std::move(qw));
}

// Int4OpaqueTensor (torchao.prototype.quantization.int4, PrototypeInt4WeightOnlyConfig's
// CPU weight, tinygemm's math): qdata (rows, cols/2) uint8 codes packed by
// _convert_weight_to_int4pack_for_cpu (torchao.h), scale_and_zero (cols/G, rows, 2) f32
// (Int4TinygemmGroups).
absl::StatusOr<LinearLoad> ReadTorchaoInt4(const Checkpoint& ck, const std::string& name, int64_t rows,
                                           int64_t cols) {
  const int64_t group = ck.quant().group_size;
  if (group <= 0 || cols % group != 0 || rows % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(ck.path(), ": '", name, "' of ", rows, " x ", cols,
                                                   " does not fit torchao int4 groups of ", group));
  }
  for (const char* da8w4 : {"qzeros", "compensation"}) {
    if (ck.Find(Attr(ck, name, da8w4)) != nullptr) {
      return absl::UnimplementedError(absl::StrCat(
          ck.path(), ": '", name, "' is an Int4OpaqueTensor of the int8-activation (da8w4) form; only the "
          "weight-only one (PrototypeInt4WeightOnlyConfig) is read"));
    }
  }
  const int64_t groups = cols / group;
  ASSIGN_OR_RETURN(const TensorView* packed, Get(ck, Attr(ck, name, "qdata"), {rows, cols / 2}, {DType::kU8}));
  ASSIGN_OR_RETURN(const TensorView* sz, Get(ck, Attr(ck, name, "scale_and_zero"), {groups, rows, 2},
                                             {DType::kF32, DType::kF16, DType::kBF16}));
  const Int4CpuPacking packing = DetectInt4CpuPacking();
  std::vector<uint8_t> codes(static_cast<size_t>(rows * cols));
  UnpackInt4Cpu(packed->data, rows, cols, packing, codes.data());
  return Int4TinygemmGroups(codes.data(), *sz, rows, rows, cols, group);
}

// Int4TilePackedTo4dTensor (torchao/quantization/quantize_/workflows/int4/
// int4_tile_packed_to_4d_tensor.py, Int4WeightOnlyConfig(int4_packing_format=
// "tile_packed_to_4d"); class path torchao.quantization.Int4TilePackedTo4dTensor).
// from_hp pads the bf16 weight with zeros to N = rows rounded up to 8 (ntile) and K =
// cols rounded up to 1024, quantizes with tinygemm's qparams (or HQQ's) and packs with
// ATen's CUDA _convert_weight_to_int4pack(., 8): qdata int32 (N/8, K/128, 32, 4)
// (UnpackInt4Tile), scale_and_zero bf16 (K/G, N, 2) with [g][r] = {scale, zero}, w =
// (q - 8) * scale + zero. Attributes block_size [1, G] and the unpadded shape; the
// optional act_pre_scale (activations multiplied by it first) is not read. Stored by
// torch.save as _rebuild_wrapper_subclass with its __dict__ as state (qdata,
// scale_and_zero, block_size, act_pre_scale), and by torchao's flatten_tensor_state_dict
// (torchao/prototype/safetensors/safetensors_support.py; the class is in
// safetensors_utils.py's ALLOWED_TENSORS_SUBCLASSES), which transformers 5's
// save_pretrained calls, as `<module>._weight_qdata` / `_weight_scale_and_zero` with
// metadata `<module>.weight` = {"_type": "Int4TilePackedTo4dTensor", "_data":
// {"block_size": [1, G], "shape": [rows, cols]}, "_tensor_data_names": [...]} (not read:
// the config says the class). Both seen on a CPU rehearsal of tests/gpu/torchao_int4.sh.
absl::StatusOr<LinearLoad> ReadTorchaoInt4Tile(const Checkpoint& ck, const std::string& name, int64_t rows,
                                               int64_t cols) {
  const int64_t group = ck.quant().group_size;
  const std::string qname = Attr(ck, name, "qdata");
  if (ck.Find(Attr(ck, name, "act_pre_scale")) != nullptr) {
    return absl::UnimplementedError(absl::StrCat(ck.path(), ": '", name, "' is an Int4TilePackedTo4dTensor with an "
                                                 "act_pre_scale (AWQ/SmoothQuant-style activation scaling), not read"));
  }
  ASSIGN_OR_RETURN(const TensorView* packed, Get(ck, qname, {}, {DType::kI32}));
  const std::vector<int64_t>& ps = packed->shape;
  const int inner = ps.size() == 4 ? static_cast<int>(ps[3] * 2) : 0;
  const int64_t n_padded = ps.size() == 4 ? ps[0] * 8 : 0, k_padded = ps.size() == 4 ? ps[1] * inner * 16 : 0;
  if (ps.size() != 4 || ps[2] != 32 || (inner != 2 && inner != 4 && inner != 8) || n_padded < rows ||
      k_padded < cols || group <= 0 || cols % group != 0 || k_padded % group != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        ck.path(), ": '", qname, "' has shape ", Shape(ps), ", which is not tinygemm's tile packing (N/8, K/(I*16), "
        "32, I/2), I in 2/4/8, of a ", rows, " x ", cols, " weight in groups of ", group));
  }
  ASSIGN_OR_RETURN(const TensorView* sz, Get(ck, Attr(ck, name, "scale_and_zero"), {k_padded / group, n_padded, 2},
                                             {DType::kBF16, DType::kF16, DType::kF32}));
  std::vector<uint8_t> codes(static_cast<size_t>(rows * cols));
  UnpackInt4Tile(packed->data, k_padded, inner, rows, cols, codes.data());
  return Int4TinygemmGroups(codes.data(), *sz, n_padded, rows, cols, group);
}

// A torchao enum field of a serialized config: {"_type": "Int4PackingFormat", "_data":
// "TILE_PACKED_TO_4D"} (ConfigJSONEncoder writes an enum's name) or a plain string
// ("tile_packed_to_4d": Int4WeightOnlyConfig takes the str enum's value, which then
// serializes as a string); upper-cased, "" when absent or of another form.
std::string EnumField(const Json& fields, const char* key) {
  auto it = fields.find(key);
  if (it == fields.end()) return "";
  const Json* v = &*it;
  if (v->is_object()) {
    auto d = v->find("_data");
    if (d == v->end()) return "";
    v = &*d;
  }
  return v->is_string() ? absl::AsciiStrToUpper(v->get<std::string>()) : "";
}

}  // namespace

// torchao's Int8Tensor as transformers 5 flattens it into safetensors (the tensor's
// attributes as `<module>._weight_<attr>`, its class in the file's metadata) or torch.save
// pickles it (`<module>.weight.<attr>`, see Attr):
// _weight_qdata (rows, cols) int8, _weight_scale and _weight_zero_point (rows, G) for G
// groups of cols / G inputs (PerRow: G = 1); w = (q - zero_point) * scale. Stored as
// kAffine 8-bit codes q + 128 with zero 128 + zero_point (ingot's int8/row when G = 1).
absl::StatusOr<LinearLoad> ReadTorchao(const Checkpoint& ck, const std::string& name, int64_t rows, int64_t cols) {
  if (ck.quant().bits == 4) {
    return ck.quant().quant_type == "Int4WeightOnlyConfig" ? ReadTorchaoInt4Tile(ck, name, rows, cols)
                                                            : ReadTorchaoInt4(ck, name, rows, cols);
  }
  const std::string scale_name = Attr(ck, name, "scale");
  ASSIGN_OR_RETURN(const TensorView* q8, Get(ck, Attr(ck, name, "qdata"), {rows, cols}, {DType::kI8}));
  ASSIGN_OR_RETURN(const TensorView* sc, Get(ck, scale_name, {}, {DType::kF32, DType::kF16, DType::kBF16}));
  const TensorView* zp = ck.Find(Attr(ck, name, "zero_point"));
  const int64_t n_groups = sc->numel();
  if (sc->shape.empty() || sc->shape[0] != rows || n_groups % rows != 0 || cols % (n_groups / rows) != 0 ||
      (zp != nullptr && (zp->numel() != n_groups || zp->dtype != DType::kI8))) {
    return absl::InvalidArgumentError(absl::StrCat(ck.path(), ": '", scale_name, "' has shape ", Shape(sc->shape),
                                                   zp != nullptr ? absl::StrCat(" and zero_point ", Shape(zp->shape)) : "",
                                                   ", which do not group a ", rows, " x ", cols, " int8 weight"));
  }
  return Int8Groups(*q8, *sc, zp, 1.0f, 0.0f);
}

// torchao's quantization_config as transformers writes it: quant_type is the config
// class serialized by torchao ({"default": {"_type": "Int8WeightOnlyConfig", "_data":
// {...}}}, transformers 4.5x+/5) or, from older releases, a string
// ("int8_weight_only"). The int8 configs are read (the weight is an Int8Tensor either
// way; the dynamic one also quantizes activations per token, which ingot's int8 path
// does per block of 32), PrototypeInt4WeightOnlyConfig (Int4OpaqueTensor, TINYGEMM
// or HQQ qparams) and Int4WeightOnlyConfig with int4_packing_format "tile_packed_to_4d"
// (Int4TilePackedTo4dTensor, the same qparams); other int4 configs are refused by name.
absl::Status ConfigureTorchao(ConfigSource, const Json& j, const std::string& where, CheckpointQuantConfig* q) {
  std::string type;
  const Json* data = nullptr;  // the config class's fields
  if (auto it = j.find("quant_type"); it != j.end()) {
    if (it->is_string()) {
      type = it->get<std::string>();
    } else if (it->is_object()) {
      const Json* cfg = it->contains("default") ? &(*it)["default"] : nullptr;
      if (cfg == nullptr && it->size() == 1) cfg = &it->begin().value();
      if (cfg != nullptr && cfg->is_object() && cfg->contains("_type") && (*cfg)["_type"].is_string()) {
        type = (*cfg)["_type"].get<std::string>();
        if (auto d = cfg->find("_data"); d != cfg->end() && d->is_object()) data = &*d;
      }
      if (it->size() > 1) {
        return absl::UnimplementedError(absl::StrCat(
            where, ": torchao quant_type with per-module configs is not supported (one default config)"));
      }
    }
  }
  static constexpr const char* kInt8[] = {"Int8WeightOnlyConfig", "Int8DynamicActivationInt8WeightConfig",
                                          "int8_weight_only", "int8_dynamic_activation_int8_weight"};
  for (const char* t : kInt8) {
    if (type == t) {
      q->quant_type = type;
      q->bits = 8;
      return absl::OkStatus();
    }
  }
  if (type == "PrototypeInt4WeightOnlyConfig" || type == "Int4WeightOnlyConfig") {
    static const Json kNone = Json::object();
    const Json& fields = data != nullptr ? *data : kNone;
    // The algorithm only chooses scale and zero: the stored tensor and the kernel that
    // applies it are the same for both.
    const std::string algo = EnumField(fields, "int4_choose_qparams_algorithm");
    if (fields.contains("int4_choose_qparams_algorithm") && algo != "TINYGEMM" && algo != "HQQ") {
      return absl::UnimplementedError(absl::StrCat(
          where, ": torchao ", type, " with int4_choose_qparams_algorithm ",
          fields["int4_choose_qparams_algorithm"].dump(), " is not supported (TINYGEMM, HQQ)"));
    }
    if (type == "Int4WeightOnlyConfig") {
      // Int4WeightOnlyConfig's default packing is "plain" (Int4Tensor, mslk's); only
      // the tinygemm tiles (Int4TilePackedTo4dTensor, made on CUDA) are read. ntile 16
      // is the ROCm packing (n-tiles of 16, 64 lanes), not read.
      const std::string packing = EnumField(fields, "int4_packing_format");
      const int64_t ntile = IntOr(fields, "int4_tile_packed_ntile", 8);
      if (packing != "TILE_PACKED_TO_4D" || ntile != 8) {
        return absl::UnimplementedError(absl::StrCat(
            where, ": torchao Int4WeightOnlyConfig with int4_packing_format '",
            packing.empty() ? std::string("PLAIN (default)") : packing, "' and int4_tile_packed_ntile ", ntile,
            " is not supported (only \"tile_packed_to_4d\" with ntile 8: Int4TilePackedTo4dTensor as CUDA packs it)"));
      }
    }
    q->quant_type = type;
    q->bits = 4;
    q->group_size = IntOr(fields, "group_size", 128);
    return absl::OkStatus();
  }
  // Int4WeightOnlyConfig's other packings are made only on CUDA, XPU or NPU by torchao 0.18 and
  // need the CUDA-only mslk package (plain, preshuffled), so no checkpoint of theirs has been read here.
  return absl::UnimplementedError(absl::StrCat(
      where, ": torchao quant_type '", type.empty() ? std::string("(missing)") : type,
      "' is not supported (Int8WeightOnlyConfig, Int8DynamicActivationInt8WeightConfig, and for int4 "
      "PrototypeInt4WeightOnlyConfig, torchao 0.18's CPU form, and Int4WeightOnlyConfig with "
      "int4_packing_format \"tile_packed_to_4d\", its CUDA tinygemm form)"));
}

}  // namespace ingot::formats::layouts
