// torch.save checkpoints (the zip format, PyTorch >= 1.6) read WITHOUT executing code.
// The archive holds <prefix>/data.pkl (a pickle), <prefix>/byteorder and one record
// <prefix>/data/<key> per storage. A small pickle machine (every opcode of protocols
// 0-5 but the extension registry, out-of-band buffers, text persistent ids and escaped
// text STRINGs, none of which torch writes) builds a tree of plain values; the only
// globals it accepts are the few that torch.save emits for tensors and plain
// containers:
//   collections.OrderedDict, builtins/__builtin__ set and frozenset (-> lists),
//   torch._utils._rebuild_tensor / _rebuild_tensor_v2 / _rebuild_tensor_v3 /
//   _rebuild_parameter / _rebuild_parameter_with_state,
//   torch._tensor._rebuild_from_type_v2 (tensors carrying Python attributes),
//   torch.<X>Storage and torch[.storage].UntypedStorage (in persistent ids),
//   torch.<dtype> (torch.float16, ...), torch.Size (-> tuple), torch.device
//   (-> "cpu" / "cuda:0"), _codecs.encode (how protocol 2 writes bytes).
// Anything else is INVALID_ARGUMENT naming the global; nothing is ever imported or
// called. Tensor data is a view into the archive when contiguous; strided tensors
// (transposes, expands) become owned contiguous copies.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/formats/tensor.h"

namespace ingot::formats {

class MappedFile;
class ZipArchive;
class PickleMachine;

// One node of the unpickled tree. Nodes are owned by the TorchCheckpoint; children are
// pointers to other nodes (a value stored twice in the pickle, e.g. a tied weight, is
// one node reachable by two paths).
class PickleValue {
 public:
  enum class Kind : uint8_t {
    kNone, kBool, kInt, kFloat, kString, kBytes,
    kList,     // also sets and frozensets
    kTuple,    // also torch.Size
    kDict,     // dict and OrderedDict, insertion order
    kTensor,
    kGlobal,   // an allowed global used as a value, e.g. torch.float16
    kStorage,  // a bare storage (only inside tensors in practice)
  };
  using Entry = std::pair<const PickleValue*, const PickleValue*>;

  Kind kind() const { return kind_; }
  static const char* KindName(Kind k);
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_sequence() const { return kind_ == Kind::kList || kind_ == Kind::kTuple; }
  bool is_tensor() const { return kind_ == Kind::kTensor; }

  // Scalars: nullopt / null when of another kind.
  std::optional<int64_t> AsInt() const;     // int, or bool as 0/1
  std::optional<bool> AsBool() const;       // bool, or int 0/1
  std::optional<double> AsDouble() const;   // float or int
  const std::string* AsString() const;      // str
  const std::string* AsBytes() const;       // bytes / bytearray
  const TensorView* AsTensor() const;       // name: the first dotted path reaching it
  const std::string* AsGlobal() const;      // "torch.float16"
  std::optional<DType> AsTorchDType() const;  // torch.float16 -> kF16, ...

  // Containers.
  const std::vector<const PickleValue*>& items() const { return items_; }  // list/tuple
  const std::vector<Entry>& entries() const { return entries_; }           // dict
  size_t size() const { return kind_ == Kind::kDict ? entries_.size() : items_.size(); }
  const PickleValue* Get(std::string_view key) const;  // dict with a str key; else null
  const PickleValue* Get(int64_t key) const;           // dict with an int key; else null
  const PickleValue* At(size_t i) const;               // list/tuple element; else null

  // Dict lookups for readers of config/meta dicts: NOT_FOUND when the key is absent
  // (or this is not a dict), INVALID_ARGUMENT when the value is of another kind.
  absl::StatusOr<int64_t> GetInt(std::string_view key) const;
  absl::StatusOr<bool> GetBool(std::string_view key) const;
  absl::StatusOr<double> GetDouble(std::string_view key) const;
  absl::StatusOr<std::string> GetString(std::string_view key) const;
  absl::StatusOr<const TensorView*> GetTensor(std::string_view key) const;
  absl::StatusOr<const PickleValue*> GetDict(std::string_view key) const;
  // Ints of a list/tuple value (shapes): INVALID_ARGUMENT if any is not an int.
  absl::StatusOr<std::vector<int64_t>> GetInts(std::string_view key) const;

  // Short Python-like rendering ({'a': 1, 'w': tensor(F32[2, 3])}), for messages and
  // debugging; deep or long values are elided.
  std::string DebugString() const;

 private:
  friend class PickleMachine;
  friend class TorchCheckpoint;
  void AppendDebug(std::string& out, int depth) const;

  Kind kind_ = Kind::kNone;
  bool b_ = false;
  int64_t i_ = 0;
  double f_ = 0;
  std::string s_;  // str, bytes, global name, storage key
  std::vector<const PickleValue*> items_;
  std::vector<Entry> entries_;
  TensorView tensor_;
  int32_t spec_ = -1;  // tensors: the machine's pending (storage, size, stride) spec
};

class TorchCheckpoint {
 public:
  // NOT_FOUND when missing; UNIMPLEMENTED for the legacy (non-zip) torch.save format
  // and big-endian archives; INVALID_ARGUMENT naming the file (and the tensor's dotted
  // path or the offending global) for anything malformed or disallowed.
  static absl::StatusOr<std::unique_ptr<TorchCheckpoint>> Open(const std::string& path);
  ~TorchCheckpoint();
  TorchCheckpoint(const TorchCheckpoint&) = delete;
  TorchCheckpoint& operator=(const TorchCheckpoint&) = delete;

  const std::string& path() const { return path_; }
  const PickleValue& root() const { return *root_; }
  // Every tensor reachable through nested dicts/lists/tuples, named by the dotted path
  // of dict keys and sequence indices ("model.layers.0.self_attn.q_proj.weight",
  // "layer.meta.scale", "list.3"); a root that is itself a tensor is named "".
  // In depth-first order of first insertion; a shared tensor appears once per path.
  std::vector<TensorView> FlattenTensors() const { return flat_; }
  const TensorView* FindTensor(std::string_view dotted_path) const;  // null if absent

 private:
  friend class PickleMachine;
  TorchCheckpoint();

  std::string path_;
  std::unique_ptr<MappedFile> file_;
  std::unique_ptr<ZipArchive> zip_;  // over file_
  std::vector<std::unique_ptr<PickleValue>> nodes_;
  std::vector<std::unique_ptr<uint8_t[]>> owned_;  // inflated records, strided copies
  const PickleValue* root_ = nullptr;
  std::vector<TensorView> flat_;
  std::unordered_map<std::string_view, size_t> flat_index_;  // keys view flat_ names
};

}  // namespace ingot::formats
