// .npy / .npz reader (see npz.h). The header is a Python literal written by numpy's
// format.write_array_header; it is parsed here by a small scanner that accepts exactly
// what such a header can contain (quoted strings, True/False, tuples of integers).
#include "engine/formats/npz.h"

#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/common/status.h"
#include "engine/formats/zip.h"

namespace ingot::formats {
namespace {

constexpr char kNpyMagic[] = "\x93NUMPY";
constexpr size_t kNpyMagicSize = 6;

struct NpyHeader {
  std::string descr;
  bool fortran_order = false;
  std::vector<int64_t> shape;
};

// Scanner over the header dict. Errors say what was expected where.
class HeaderScanner {
 public:
  explicit HeaderScanner(std::string_view s) : s_(s) {}

  absl::Status Parse(NpyHeader& h) {
    bool seen_descr = false, seen_order = false, seen_shape = false;
    RETURN_IF_ERROR(Expect('{'));
    while (true) {
      SkipSpace();
      if (Peek() == '}') break;
      std::string key;
      RETURN_IF_ERROR(String(key));
      RETURN_IF_ERROR(Expect(':'));
      SkipSpace();
      if (key == "descr") {
        if (Peek() != '\'' && Peek() != '"') {
          return Error("descr is not a string (structured dtypes are not supported)");
        }
        RETURN_IF_ERROR(String(h.descr));
        seen_descr = true;
      } else if (key == "fortran_order") {
        RETURN_IF_ERROR(Bool(h.fortran_order));
        seen_order = true;
      } else if (key == "shape") {
        RETURN_IF_ERROR(Shape(h.shape));
        seen_shape = true;
      } else {
        return Error(absl::StrCat("unexpected key '", key, "'"));
      }
      SkipSpace();
      if (Peek() == ',') {
        ++pos_;
        continue;
      }
      if (Peek() != '}') return Error("expected ',' or '}'");
    }
    ++pos_;  // '}'
    SkipSpace();
    if (pos_ != s_.size()) return Error("unexpected text after the dict");
    if (!seen_descr || !seen_order || !seen_shape) {
      return Error("needs the keys 'descr', 'fortran_order' and 'shape'");
    }
    return absl::OkStatus();
  }

 private:
  char Peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void SkipSpace() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\t' ||
                                s_[pos_] == '\r')) {
      ++pos_;
    }
  }
  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("header ", what, " at header byte ", pos_));
  }
  absl::Status Expect(char c) {
    SkipSpace();
    if (Peek() != c) return Error(absl::StrCat("expected '", std::string(1, c), "'"));
    ++pos_;
    return absl::OkStatus();
  }
  absl::Status String(std::string& out) {
    SkipSpace();
    const char q = Peek();
    if (q != '\'' && q != '"') return Error("expected a quoted string");
    const size_t end = s_.find(q, pos_ + 1);
    if (end == std::string_view::npos) return Error("unterminated string");
    out.assign(s_.substr(pos_ + 1, end - pos_ - 1));
    pos_ = end + 1;
    return absl::OkStatus();
  }
  absl::Status Bool(bool& out) {
    if (s_.substr(pos_, 4) == "True") {
      out = true;
      pos_ += 4;
    } else if (s_.substr(pos_, 5) == "False") {
      out = false;
      pos_ += 5;
    } else {
      return Error("fortran_order is not True or False");
    }
    return absl::OkStatus();
  }
  // (), (n,), (n, m), ... ; Python 2 headers may write 3L.
  absl::Status Shape(std::vector<int64_t>& out) {
    if (Peek() != '(') return Error("shape is not a tuple");
    ++pos_;
    while (true) {
      SkipSpace();
      if (Peek() == ')') break;
      if (Peek() < '0' || Peek() > '9') return Error("shape has a non-integer dimension");
      int64_t v = 0;
      while (Peek() >= '0' && Peek() <= '9') {
        const int digit = Peek() - '0';
        if (v > (std::numeric_limits<int64_t>::max() - digit) / 10) {
          return Error("shape dimension is out of range");
        }
        v = v * 10 + digit;
        ++pos_;
      }
      if (Peek() == 'L') ++pos_;
      out.push_back(v);
      SkipSpace();
      if (Peek() == ',') {
        ++pos_;
        continue;
      }
      if (Peek() != ')') return Error("expected ',' or ')' in shape");
    }
    ++pos_;
    return absl::OkStatus();
  }

  std::string_view s_;
  size_t pos_ = 0;
};

// numpy's descr ('<f4', '|u1', '|b1', ...) -> DType.
absl::StatusOr<DType> DescrToDType(const std::string& descr) {
  const char order = descr.empty() ? '\0' : descr[0];
  const std::string kind = descr.empty() ? "" : descr.substr(1);
  static constexpr struct {
    const char* code;
    DType dtype;
  } kCodes[] = {
      {"f8", DType::kF64}, {"f4", DType::kF32}, {"f2", DType::kF16}, {"i8", DType::kI64},
      {"i4", DType::kI32}, {"i2", DType::kI16}, {"i1", DType::kI8},  {"u8", DType::kU64},
      {"u4", DType::kU32}, {"u2", DType::kU16}, {"u1", DType::kU8},  {"b1", DType::kBool},
  };
  for (const auto& c : kCodes) {
    if (kind != c.code) continue;
    const bool one_byte = DTypeSize(c.dtype) == 1;
    if (order == '<' || order == '|' || order == '=' || (order == '>' && one_byte)) {
      return c.dtype;
    }
    if (order == '>') {
      return absl::InvalidArgumentError(absl::StrCat(
          "big-endian dtype '", descr, "' is not supported; save it little-endian "
          "(arr.astype(arr.dtype.newbyteorder('<')))"));
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("dtype '", descr, "' is not supported (only bool, int8..64, uint8..64 and "
                   "float16/32/64)"));
}

}  // namespace

NpzFile::~NpzFile() = default;

absl::StatusOr<std::unique_ptr<NpzFile>> NpzFile::Open(const std::string& path) {
  std::unique_ptr<NpzFile> f(new NpzFile());
  f->path_ = path;
  ASSIGN_OR_RETURN(f->file_, MappedFile::Open(path));
  const uint8_t* base = f->file_->data();
  const uint64_t size = f->file_->size();
  if (size >= kNpyMagicSize && std::memcmp(base, kNpyMagic, kNpyMagicSize) == 0) {
    std::string name = std::filesystem::path(path).filename().string();
    if (absl::EndsWith(name, ".npy")) name.resize(name.size() - 4);
    RETURN_IF_ERROR(f->AddArray(std::move(name), base, size));
    return f;
  }
  if (size < 4 || std::memcmp(base, "PK", 2) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": neither a .npy file (\\x93NUMPY) nor a .npz archive (PK)"));
  }
  ASSIGN_OR_RETURN(f->zip_, ZipArchive::FromBuffer(path, base, size));
  for (const ZipEntry& e : f->zip_->entries()) {
    if (!absl::EndsWith(e.name, ".npy")) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": member '", e.name, "' is not a .npy array (not an .npz archive?)"));
    }
    ASSIGN_OR_RETURN(ZipBytes bytes, f->zip_->Read(e));
    if (bytes.owned) f->owned_.push_back(std::move(bytes.owned));
    RETURN_IF_ERROR(
        f->AddArray(e.name.substr(0, e.name.size() - 4), bytes.data, bytes.size));
  }
  return f;
}

absl::Status NpzFile::AddArray(std::string name, const uint8_t* data, uint64_t size) {
  auto error = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": array '", name, "': ", what));
  };
  if (size < kNpyMagicSize + 4 || std::memcmp(data, kNpyMagic, kNpyMagicSize) != 0) {
    return error("not a .npy array (no \\x93NUMPY magic)");
  }
  const uint8_t major = data[6];
  uint64_t header_len = 0, header_at = 0;
  if (major == 1) {
    header_len = static_cast<uint64_t>(data[8]) | static_cast<uint64_t>(data[9]) << 8;
    header_at = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) return error("truncated .npy header");
    uint32_t len;
    std::memcpy(&len, data + 8, 4);
    header_len = len;
    header_at = 12;
  } else {
    return error(absl::StrCat(".npy format version ", static_cast<int>(major), ".",
                              static_cast<int>(data[7]),
                              " is not supported (1, 2 and 3 are)"));
  }
  if (header_len > size - header_at) {
    return error(absl::StrCat("header length ", header_len, " runs past the end (",
                              size, " bytes)"));
  }
  NpyHeader h;
  const std::string_view text(reinterpret_cast<const char*>(data + header_at), header_len);
  if (absl::Status s = HeaderScanner(text).Parse(h); !s.ok()) return error(s.message());
  if (h.fortran_order) {
    return error("fortran_order is True; only C-order arrays are supported "
                 "(save np.ascontiguousarray(a))");
  }
  absl::StatusOr<DType> dtype = DescrToDType(h.descr);
  if (!dtype.ok()) return error(dtype.status().message());
  TensorView t;
  t.dtype = *dtype;
  t.shape = std::move(h.shape);
  const std::optional<uint64_t> numel = CheckedNumel(t.shape, DTypeSize(t.dtype));
  if (!numel) return error("shape overflows");
  t.nbytes = *numel * DTypeSize(t.dtype);
  const uint64_t data_at = header_at + header_len;
  if (t.nbytes > size - data_at) {
    return error(absl::StrCat(h.descr, " (", absl::StrJoin(t.shape, ", "), ") needs ",
                              t.nbytes, " bytes of data, ", size - data_at, " present"));
  }
  t.data = data + data_at;
  t.name = name;
  if (!index_.emplace(name, tensors_.size()).second) return error("appears twice");
  tensors_.push_back(std::move(t));
  return absl::OkStatus();
}

const TensorView* NpzFile::Find(std::string_view name) const {
  auto it = index_.find(absl::string_view(name.data(), name.size()));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace ingot::formats
