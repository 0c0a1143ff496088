// safetensors reader and writer (see safetensors.h). The checks follow the reference
// implementation (huggingface/safetensors): header at most 100 MB, every tensor's
// byte range inside the data area and equal to numel x element size, no two ranges
// overlapping. Unlike it, gaps between tensors and trailing bytes are tolerated (they
// are harmless for a reader).
#include "engine/formats/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numeric>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/common/status.h"
#include "engine/formats/file_access.h"
#include "engine/formats/mapped_file.h"
#include "nlohmann/json.hpp"

namespace ingot::formats {
namespace {

using Json = nlohmann::ordered_json;
namespace fs = std::filesystem;

constexpr uint64_t kMaxHeaderSize = 100'000'000;   // the reference's limit
constexpr uint64_t kMaxIndexSize = 256ull << 20;   // an index.json is a name map
constexpr std::string_view kMetadataKey = "__metadata__";

absl::string_view AbslView(std::string_view s) { return {s.data(), s.size()}; }

const char* JsonKind(const Json& j) { return j.type_name(); }

// A JSON integer >= 0 (unsigned or non-negative signed); false for anything else.
bool NonNegativeInt(const Json& j, uint64_t& out) {
  if (j.is_number_unsigned()) {
    out = j.get<uint64_t>();
    return true;
  }
  if (j.is_number_integer() && j.get<int64_t>() >= 0) {
    out = static_cast<uint64_t>(j.get<int64_t>());
    return true;
  }
  return false;
}

}  // namespace

// ---------------------------------------------------------------------------------
// SafetensorsFile

SafetensorsFile::~SafetensorsFile() = default;

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  ASSIGN_OR_RETURN(f->file_, MappedFile::Open(path));
  // nlohmann throws on type mismatches we did not foresee; never past this point.
  RETURN_IF_ERROR(CatchExceptions(path, [&] { return f->Parse(); }));
  return f;
}

absl::Status SafetensorsFile::Parse() {
  const uint8_t* base = file_->data();
  const uint64_t size = file_->size();
  auto error = [this](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": ", what));
  };
  if (size < 8) {
    return error(absl::StrCat("file is ", size,
                              " bytes, too short for the 8-byte safetensors header length"));
  }
  uint64_t header_len = 0;
  std::memcpy(&header_len, base, 8);
  if (header_len > kMaxHeaderSize) {
    return error(absl::StrCat("header length ", header_len, " exceeds the ", kMaxHeaderSize,
                              "-byte limit (not a safetensors file?)"));
  }
  if (header_len > size - 8) {
    return error(absl::StrCat("header length ", header_len, " runs past the end of the file (",
                              size, " bytes)"));
  }
  const char* text = reinterpret_cast<const char*>(base + 8);
  Json header = Json::parse(text, text + header_len, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded()) return error("header is not valid JSON");
  if (!header.is_object()) {
    return error(absl::StrCat("header is a JSON ", JsonKind(header), ", not an object"));
  }
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = size - data_start;
  struct Range {
    uint64_t begin, end;
    size_t tensor;
  };
  std::vector<Range> ranges;
  tensors_.reserve(header.size());
  for (auto& item : header.items()) {
    // (not a structured binding: clang 14, which builds the fuzzers, cannot capture one)
    const std::string& name = item.key();
    const Json& entry = item.value();
    if (name == kMetadataKey) {
      if (!entry.is_object()) {
        return error(absl::StrCat("__metadata__ is a JSON ", JsonKind(entry),
                                  ", not an object of strings"));
      }
      for (auto& [key, value] : entry.items()) {
        if (!value.is_string()) {
          return error(absl::StrCat("__metadata__ '", key, "' is a JSON ", JsonKind(value),
                                    ", not a string"));
        }
        metadata_[key] = value.get<std::string>();
      }
      continue;
    }
    auto terror = [&](absl::string_view what) {
      return error(absl::StrCat("tensor '", name, "': ", what));
    };
    if (!entry.is_object()) {
      return terror(absl::StrCat("entry is a JSON ", JsonKind(entry), ", not an object"));
    }
    for (const char* key : {"dtype", "shape", "data_offsets"}) {
      if (!entry.contains(key)) return terror(absl::StrCat("missing '", key, "'"));
    }
    const Json& jdtype = entry["dtype"];
    const Json& jshape = entry["shape"];
    const Json& joffsets = entry["data_offsets"];
    if (!jdtype.is_string()) {
      return terror(absl::StrCat("dtype is a JSON ", JsonKind(jdtype), ", not a string"));
    }
    const std::string dtype_name = jdtype.get<std::string>();
    std::optional<DType> dtype = DTypeFromName(dtype_name);
    if (!dtype) {
      return terror(absl::StrCat("unknown dtype '", dtype_name,
                                 "' (expected F64, F32, F16, BF16, I64, I32, I16, I8, U8, "
                                 "U16, U32, U64, BOOL, F8_E4M3 or F8_E5M2)"));
    }
    TensorView t;
    t.name = name;
    t.dtype = *dtype;
    if (!jshape.is_array()) {
      return terror(absl::StrCat("shape is a JSON ", JsonKind(jshape), ", not an array"));
    }
    for (const Json& d : jshape) {
      uint64_t dim = 0;
      if (!NonNegativeInt(d, dim)) {
        return terror(absl::StrCat("shape ", jshape.dump(), " has ", d.dump(),
                                   ", not a non-negative integer"));
      }
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return terror(absl::StrCat("shape dimension ", dim, " is out of range"));
      }
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    const std::optional<uint64_t> numel = CheckedNumel(t.shape, DTypeSize(t.dtype));
    if (!numel) {
      return terror(absl::StrCat("shape ", jshape.dump(), " overflows the element count"));
    }
    const uint64_t nbytes = *numel * DTypeSize(t.dtype);
    uint64_t begin = 0, end = 0;
    if (!joffsets.is_array() || joffsets.size() != 2 || !NonNegativeInt(joffsets[0], begin) ||
        !NonNegativeInt(joffsets[1], end)) {
      return terror(absl::StrCat("data_offsets ", joffsets.dump(),
                                 " is not a pair of non-negative integers"));
    }
    if (begin > end) {
      return terror(absl::StrCat("data_offsets [", begin, ", ", end, "] are out of order"));
    }
    if (end > data_size) {
      return terror(absl::StrCat("data_offsets [", begin, ", ", end,
                                 "] run past the data area (", data_size, " bytes)"));
    }
    if (end - begin != nbytes) {
      return terror(absl::StrCat("data_offsets [", begin, ", ", end, "] hold ", end - begin,
                                 " bytes but ", DTypeName(t.dtype), " ", jshape.dump(),
                                 " needs ", nbytes));
    }
    t.data = base + data_start + begin;
    t.nbytes = nbytes;
    if (nbytes > 0) ranges.push_back({begin, end, tensors_.size()});
    index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].begin < ranges[i - 1].end) {
      return error(absl::StrCat("tensor '", tensors_[ranges[i].tensor].name, "': data [",
                                ranges[i].begin, ", ", ranges[i].end, ") overlaps tensor '",
                                tensors_[ranges[i - 1].tensor].name, "' [",
                                ranges[i - 1].begin, ", ", ranges[i - 1].end, ")"));
    }
  }
  return absl::OkStatus();
}

const TensorView* SafetensorsFile::Find(std::string_view name) const {
  auto it = index_.find(AbslView(name));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

// ---------------------------------------------------------------------------------
// Sets of files

namespace {

absl::StatusOr<Json> ReadJsonFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text,
                   ReadFileBounded(path, static_cast<int64_t>(kMaxIndexSize), "safetensors index"));
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON"));
  return j;
}

// A shard name from an index: relative, no "..", so an index cannot reach outside
// its directory.
bool SafeShardName(const std::string& name) {
  if (name.empty() || name[0] == '/') return false;
  for (const auto& part : fs::path(name)) {
    if (part == "..") return false;
  }
  return true;
}

}  // namespace

absl::Status SafetensorsSet::AddFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(path));
  for (const TensorView& t : file->tensors()) {
    auto [it, inserted] = index_.emplace(t.name, &t);
    if (!inserted) {
      const SafetensorsFile* other = nullptr;
      for (const auto& f : files_) {
        if (f->Find(t.name) == it->second) other = f.get();
      }
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", t.name, "' is in two shards: ", other ? other->path() : "?", " and ",
          path));
    }
  }
  files_.push_back(std::move(file));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SafetensorsSet>> SafetensorsSet::Open(
    const std::string& file_or_dir) {
  std::error_code ec;
  const fs::file_status st = fs::status(file_or_dir, ec);
  if (ec || !fs::exists(st)) {
    return absl::NotFoundError(absl::StrCat(file_or_dir, ": no such file or directory"));
  }
  std::string target = file_or_dir;
  if (fs::is_directory(st)) {
    const fs::path dir(file_or_dir);
    std::vector<std::string> indexes, files;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      const std::string name = e.path().filename().string();
      if (absl::EndsWith(name, ".safetensors.index.json")) indexes.push_back(e.path().string());
      if (absl::EndsWith(name, ".safetensors")) files.push_back(e.path().string());
    }
    std::sort(indexes.begin(), indexes.end());
    std::sort(files.begin(), files.end());
    if (fs::exists(dir / "model.safetensors.index.json")) {
      target = (dir / "model.safetensors.index.json").string();
    } else if (fs::exists(dir / "model.safetensors")) {
      target = (dir / "model.safetensors").string();
    } else if (indexes.size() == 1) {
      target = indexes[0];
    } else if (indexes.empty() && files.size() == 1) {
      target = files[0];
    } else if (indexes.empty() && files.empty()) {
      return absl::NotFoundError(absl::StrCat(
          file_or_dir, ": no model.safetensors, model.safetensors.index.json or other "
                       "*.safetensors file in this directory"));
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          file_or_dir, ": ambiguous checkpoint: ", indexes.size(), " index files and ",
          files.size(), " safetensors files but no model.safetensors[.index.json]; pass "
          "the file to load"));
    }
  }
  std::unique_ptr<SafetensorsSet> set(new SafetensorsSet());
  if (!absl::EndsWith(target, ".index.json")) {
    RETURN_IF_ERROR(set->AddFile(target));
    return set;
  }

  ASSIGN_OR_RETURN(Json index, ReadJsonFile(target));
  auto error = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(target, ": ", what));
  };
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
    return error("no \"weight_map\" object (tensor name -> shard file)");
  }
  const Json& weight_map = index["weight_map"];
  std::set<std::string> shards;  // sorted: model-00001-of-0000N first
  for (auto& [name, shard] : weight_map.items()) {
    if (!shard.is_string()) {
      return error(absl::StrCat("weight_map['", name, "'] is a JSON ", JsonKind(shard),
                                ", not a file name"));
    }
    const std::string s = shard.get<std::string>();
    if (!SafeShardName(s)) {
      return error(absl::StrCat("weight_map['", name, "'] = '", s,
                                "' is not a file name relative to the index"));
    }
    shards.insert(s);
  }
  if (shards.empty()) return error("weight_map is empty");
  const fs::path dir = fs::path(target).parent_path();
  std::map<std::string, const SafetensorsFile*> by_shard;
  for (const std::string& shard : shards) {
    const std::string path = (dir / shard).string();
    if (!fs::exists(path)) {
      std::string example;
      for (auto& [name, s] : weight_map.items()) {
        if (s == shard) {
          example = name;
          break;
        }
      }
      return error(absl::StrCat("shard '", shard, "' (holding '", example,
                                "' and others) is missing: no file ", path));
    }
    RETURN_IF_ERROR(set->AddFile(path));
    by_shard[shard] = set->files_.back().get();
  }
  for (auto& [name, shard] : weight_map.items()) {
    const SafetensorsFile* f = by_shard[shard.get<std::string>()];
    if (f->Find(name) == nullptr) {
      return error(absl::StrCat("weight_map puts tensor '", name, "' in ", f->path(),
                                ", which does not contain it"));
    }
  }
  return set;
}

std::vector<const TensorView*> SafetensorsSet::tensors() const {
  std::vector<const TensorView*> out;
  out.reserve(index_.size());
  for (const auto& f : files_) {
    for (const TensorView& t : f->tensors()) out.push_back(&t);
  }
  return out;
}

const TensorView* SafetensorsSet::Find(std::string_view name) const {
  auto it = index_.find(AbslView(name));
  return it == index_.end() ? nullptr : it->second;
}

const std::map<std::string, std::string>& SafetensorsSet::metadata() const {
  return files_.front()->metadata();  // Open never returns an empty set
}

std::vector<std::string> SafetensorsSet::files() const {
  std::vector<std::string> out;
  for (const auto& f : files_) out.push_back(f->path());
  return out;
}

// ---------------------------------------------------------------------------------
// Writer

absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorView>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  auto error = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
  };
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return DTypeSize(tensors[a].dtype) > DTypeSize(tensors[b].dtype);
  });
  std::set<std::string_view> names;
  Json header = Json::object();
  if (!metadata.empty()) {
    Json meta = Json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header[std::string(kMetadataKey)] = std::move(meta);
  }
  uint64_t offset = 0;
  for (size_t i : order) {
    const TensorView& t = tensors[i];
    if (t.name == kMetadataKey) return error("a tensor cannot be named __metadata__");
    if (!names.insert(t.name).second) {
      return error(absl::StrCat("tensor '", t.name, "' appears twice"));
    }
    if (DTypeSize(t.dtype) == 0) return error(absl::StrCat("tensor '", t.name, "': bad dtype"));
    const std::optional<uint64_t> numel = CheckedNumel(t.shape, DTypeSize(t.dtype));
    if (!numel) {
      return error(absl::StrCat("tensor '", t.name, "': shape [", absl::StrJoin(t.shape, ", "),
                                "] has a negative dimension or overflows"));
    }
    if (*numel * DTypeSize(t.dtype) != t.nbytes) {
      return error(absl::StrCat("tensor '", t.name, "': ", t.nbytes, " bytes for ",
                                DTypeName(t.dtype), " x ", *numel, " elements"));
    }
    if (t.nbytes > 0 && t.data == nullptr) {
      return error(absl::StrCat("tensor '", t.name, "': no data"));
    }
    header[t.name] = {{"dtype", DTypeName(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.nbytes}}};
    offset += t.nbytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    return error(absl::StrCat("a tensor name or metadata string is not valid UTF-8 (",
                              e.what(), ")"));
  }
  text.resize((text.size() + 7) / 8 * 8, ' ');  // data area starts 8-byte aligned
  const std::string tmp = path + ".tmp";
  std::FILE* out = std::fopen(tmp.c_str(), "wb");
  if (out == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(tmp, ": cannot create: ", std::strerror(errno)));
  }
  const uint64_t header_len = text.size();
  bool ok = std::fwrite(&header_len, 8, 1, out) == 1 &&
            std::fwrite(text.data(), 1, text.size(), out) == text.size();
  for (size_t i : order) {
    if (!ok) break;
    const TensorView& t = tensors[i];
    ok = t.nbytes == 0 || std::fwrite(t.data, 1, t.nbytes, out) == t.nbytes;
  }
  ok = std::fclose(out) == 0 && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": write failed: ", std::strerror(err)));
  }
  return absl::OkStatus();
}

}  // namespace ingot::formats
