// torch.save checkpoints: archives written by torch.save (protocols 2 and 4), hqq's
// HQQLinear state dict, plain pickles of protocols 0/2/5 in torch's zip layout
// (tests/reference/gen_containers.py; expected tensor bytes and values from torch and
// pickle in expected.json); a pickle that calls os.system and the legacy format, which
// must be refused; and archives and pickles corrupted here, which must give
// INVALID_ARGUMENT naming the file and the tensor (or the global).
#include "engine/formats/torch_pickle.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "engine/formats/zip.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace ingot::formats {
namespace {

using ::ingot::testing::SourcePath;
using ::ingot::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using Kind = PickleValue::Kind;

const std::string kDir = "tests/data/formats/containers/";

nlohmann::json Expected(const std::string& file) {
  std::ifstream in(SourcePath(kDir + "expected.json"));
  return nlohmann::json::parse(in)[file];
}

std::string Hex(const uint8_t* p, size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s += d[p[i] >> 4];
    s += d[p[i] & 15];
  }
  return s;
}

std::string TempPath(const std::string& name) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return ::testing::TempDir() + "torch_" + info->name() + "_" + name;
}

std::string WriteFile(const std::string& name, const std::string& bytes) {
  const std::string path = TempPath(name);
  std::ofstream(path, std::ios::binary).write(bytes.data(), bytes.size());
  return path;
}

uint32_t Crc32(const std::string& s) {
  uint32_t c = 0xffffffffu;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return ~c;
}

// A stored (uncompressed) ZIP archive. With `zip64`, every central directory size and
// offset is saturated and given in a ZIP64 extra field, and the directory is found
// through a ZIP64 end record and locator (what writers do past 4 GiB).
std::string StoredZip(const std::vector<std::pair<std::string, std::string>>& entries,
                      bool zip64 = false) {
  auto u16 = [](std::string& o, uint16_t v) { o.append(reinterpret_cast<char*>(&v), 2); };
  auto u32 = [](std::string& o, uint32_t v) { o.append(reinterpret_cast<char*>(&v), 4); };
  auto u64 = [](std::string& o, uint64_t v) { o.append(reinterpret_cast<char*>(&v), 8); };
  const uint32_t kSat = 0xffffffffu;
  std::string out, central;
  for (const auto& [name, data] : entries) {
    const uint32_t offset = out.size();
    u32(out, 0x04034b50);
    u16(out, 20); u16(out, 0); u16(out, 0); u16(out, 0); u16(out, 0);
    u32(out, Crc32(data)); u32(out, data.size()); u32(out, data.size());
    u16(out, name.size()); u16(out, 0);
    out += name + data;
    u32(central, 0x02014b50);
    u16(central, 45); u16(central, 45); u16(central, 0); u16(central, 0);
    u16(central, 0); u16(central, 0);
    u32(central, Crc32(data));
    u32(central, zip64 ? kSat : data.size()); u32(central, zip64 ? kSat : data.size());
    u16(central, name.size()); u16(central, zip64 ? 28 : 0); u16(central, 0); u16(central, 0);
    u16(central, 0); u32(central, 0); u32(central, zip64 ? kSat : offset);
    central += name;
    if (zip64) {  // usize, csize, offset: the saturated fields, in this order
      u16(central, 1); u16(central, 24);
      u64(central, data.size()); u64(central, data.size()); u64(central, offset);
    }
  }
  const uint32_t cd_offset = out.size();
  out += central;
  if (zip64) {
    const uint64_t record = out.size();
    u32(out, 0x06064b50); u64(out, 44); u16(out, 45); u16(out, 45); u32(out, 0); u32(out, 0);
    u64(out, entries.size()); u64(out, entries.size());
    u64(out, central.size()); u64(out, cd_offset);
    u32(out, 0x07064b50); u32(out, 0); u64(out, record); u32(out, 1);
  }
  u32(out, 0x06054b50);
  u16(out, 0); u16(out, 0);
  u16(out, zip64 ? 0xffff : entries.size()); u16(out, zip64 ? 0xffff : entries.size());
  u32(out, zip64 ? kSat : central.size()); u32(out, zip64 ? kSat : cd_offset); u16(out, 0);
  return out;
}

// The entries of a real archive, to rebuild it with changes.
std::vector<std::pair<std::string, std::string>> Entries(const std::string& path) {
  auto zip = ZipArchive::Open(path);
  EXPECT_OK(zip);
  std::vector<std::pair<std::string, std::string>> out;
  for (const ZipEntry& e : (*zip)->entries()) {
    auto bytes = (*zip)->Read(e);
    EXPECT_OK(bytes);
    out.emplace_back(e.name, std::string(reinterpret_cast<const char*>(bytes->data), bytes->size));
  }
  return out;
}

void ExpectTensorsMatch(const TorchCheckpoint& ckpt, const nlohmann::json& want) {
  const std::vector<TensorView> flat = ckpt.FlattenTensors();
  std::map<std::string, const TensorView*> by_name;
  for (const TensorView& t : flat) by_name[t.name] = &t;
  EXPECT_EQ(by_name.size(), flat.size()) << "duplicate paths";
  ASSERT_EQ(flat.size(), want.size());
  for (auto& [name, w] : want.items()) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(by_name.count(name)) << "missing " << name;
    const TensorView& t = *by_name[name];
    EXPECT_EQ(DTypeName(t.dtype), w["dtype"].get<std::string>());
    EXPECT_EQ(t.shape, w["shape"].get<std::vector<int64_t>>());
    EXPECT_EQ(t.nbytes, static_cast<size_t>(t.numel()) * DTypeSize(t.dtype));
    EXPECT_EQ(Hex(t.data, t.nbytes), w["hex"].get<std::string>());
    ASSERT_NE(ckpt.FindTensor(name), nullptr);
    EXPECT_EQ(ckpt.FindTensor(name)->data, t.data);
  }
}

class StateDictTest : public ::testing::TestWithParam<std::string> {};

TEST_P(StateDictTest, TensorsMatchTorch) {
  const nlohmann::json want = Expected(GetParam());
  auto ckpt = TorchCheckpoint::Open(SourcePath(kDir + GetParam()));
  ASSERT_OK(ckpt);
  ExpectTensorsMatch(**ckpt, want["tensors"]);
}

TEST_P(StateDictTest, ViewsShareTheirStorage) {
  auto ckpt = TorchCheckpoint::Open(SourcePath(kDir + GetParam()));
  ASSERT_OK(ckpt);
  const TorchCheckpoint& c = **ckpt;
  const TensorView* base = c.FindTensor("base");
  ASSERT_NE(base, nullptr);
  // base[1:3] is a contiguous view at storage offset 6: no copy.
  EXPECT_EQ(c.FindTensor("rows")->data, base->data + 6 * 4);
  // Strided views were copied out of the storage.
  for (const char* name : {"col", "transposed", "step", "expanded"}) {
    const TensorView* t = c.FindTensor(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_TRUE(t->data < base->data || t->data >= base->data + base->nbytes) << name;
  }
  // One tensor object saved under two keys is one node.
  EXPECT_EQ(c.FindTensor("tied_a")->data, c.FindTensor("tied_b")->data);
  EXPECT_EQ(c.root().Get("tied_a"), c.root().Get("tied_b"));
  EXPECT_EQ(c.root().Get("tied_a")->AsTensor()->name, "tied_a");
}

TEST_P(StateDictTest, PlainValuesAndAccessors) {
  const nlohmann::json want = Expected(GetParam());
  auto ckpt = TorchCheckpoint::Open(SourcePath(kDir + GetParam()));
  ASSERT_OK(ckpt);
  const PickleValue& root = (*ckpt)->root();
  ASSERT_TRUE(root.is_dict());
  std::vector<std::string> keys;
  for (const auto& [k, v] : root.entries()) keys.push_back(*k->AsString());
  EXPECT_EQ(keys, want["root_keys"].get<std::vector<std::string>>());  // OrderedDict order

  auto meta = root.GetDict("meta");
  ASSERT_OK(meta);
  for (auto& [key, value] : want["meta"].items()) {
    SCOPED_TRACE(key);
    if (value.is_boolean()) {
      EXPECT_EQ(*(*meta)->GetBool(key), value.get<bool>());
      EXPECT_EQ((*meta)->Get(key)->kind(), Kind::kBool);
    } else if (value.is_number_integer()) {
      EXPECT_EQ(*(*meta)->GetInt(key), value.get<int64_t>());
    } else if (value.is_number_float()) {
      EXPECT_EQ(*(*meta)->GetDouble(key), value.get<double>());
    } else if (value.is_string()) {
      EXPECT_EQ(*(*meta)->GetString(key), value.get<std::string>());
    } else {
      EXPECT_TRUE((*meta)->Get(key)->is_none());
    }
  }
  EXPECT_EQ(*(*meta)->GetInts("shape"), (std::vector<int64_t>{4, 6}));
  EXPECT_EQ((*meta)->Get("compute_dtype")->AsTorchDType(), DType::kF16);
  EXPECT_EQ(*(*meta)->Get("compute_dtype")->AsGlobal(), "torch.float16");
  EXPECT_EQ((*meta)->Get("unpack_view_dtype")->AsTorchDType(), DType::kU8);
  EXPECT_EQ(*(*meta)->GetString("device"), "cpu");
  auto scale = (*meta)->GetTensor("scale");
  ASSERT_OK(scale);
  EXPECT_EQ((*scale)->name, "meta.scale");
  auto nested = (*meta)->GetDict("zero_scale");
  ASSERT_OK(nested);
  EXPECT_EQ(*(*nested)->GetInt("nbits"), 8);
  EXPECT_THAT((*meta)->GetInt("packing"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("'packing'"), HasSubstr("not an int"))));
  EXPECT_THAT((*meta)->GetInt("absent"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(root.GetTensor("meta"), StatusIs(absl::StatusCode::kInvalidArgument));

  const PickleValue* pair = root.Get("pair");
  ASSERT_NE(pair, nullptr);
  EXPECT_EQ(pair->kind(), Kind::kTuple);
  ASSERT_EQ(pair->size(), 2u);
  EXPECT_TRUE(pair->At(0)->is_tensor());
  EXPECT_EQ(*pair->At(1)->AsString(), want["pair_1"].get<std::string>());
  EXPECT_EQ(pair->At(2), nullptr);
  std::vector<int64_t> tags;
  for (const PickleValue* t : root.Get("tags")->items()) tags.push_back(*t->AsInt());
  std::sort(tags.begin(), tags.end());
  EXPECT_EQ(tags, want["tags"].get<std::vector<int64_t>>());
  const std::string* blob = root.Get("blob")->AsBytes();
  ASSERT_NE(blob, nullptr);
  EXPECT_EQ(Hex(reinterpret_cast<const uint8_t*>(blob->data()), blob->size()),
            want["blob"].get<std::string>());
  EXPECT_TRUE(root.Get("by_index")->Get(int64_t{1})->is_tensor());
  EXPECT_EQ(root.Get("missing"), nullptr);
}

INSTANTIATE_TEST_SUITE_P(Protocols, StateDictTest,
                         ::testing::Values("state_dict.pt", "state_dict_p4.pt"));

TEST(TorchCheckpointTest, BareTensorRoot) {
  auto ckpt = TorchCheckpoint::Open(SourcePath(kDir + "tensor.pt"));
  ASSERT_OK(ckpt);
  EXPECT_TRUE((*ckpt)->root().is_tensor());
  ExpectTensorsMatch(**ckpt, Expected("tensor.pt")["tensors"]);
}

TEST(TorchCheckpointTest, HqqLinearStateDict) {
  auto ckpt = TorchCheckpoint::Open(SourcePath(kDir + "hqq_linear.pt"));
  ASSERT_OK(ckpt);
  ExpectTensorsMatch(**ckpt, Expected("hqq_linear.pt")["tensors"]);
  const TensorView* nbits = (*ckpt)->FindTensor("nbits");
  ASSERT_NE(nbits, nullptr);
  EXPECT_EQ(nbits->shape.size(), 0u);  // 0-d int32
  int32_t v;
  std::memcpy(&v, nbits->data, 4);
  EXPECT_EQ(v, 4);
}

// Plain values as gen_containers.py's plain(): dicts as {"dict": [[k, v], ...]},
// tuples and sets as lists, bytes as {"bytes": hex}.
void ExpectPlainEquals(const PickleValue& v, const nlohmann::json& want, const std::string& at) {
  SCOPED_TRACE(at + " = " + v.DebugString());
  if (want.is_null()) {
    EXPECT_TRUE(v.is_none());
  } else if (want.is_boolean()) {
    ASSERT_EQ(v.kind(), Kind::kBool);
    EXPECT_EQ(*v.AsBool(), want.get<bool>());
  } else if (want.is_number_integer()) {
    ASSERT_EQ(v.kind(), Kind::kInt);
    EXPECT_EQ(*v.AsInt(), want.get<int64_t>());
  } else if (want.is_number_float()) {
    ASSERT_EQ(v.kind(), Kind::kFloat);
    EXPECT_EQ(*v.AsDouble(), want.get<double>());
  } else if (want.is_string()) {
    ASSERT_NE(v.AsString(), nullptr);
    EXPECT_EQ(*v.AsString(), want.get<std::string>());
  } else if (want.is_array()) {
    ASSERT_TRUE(v.is_sequence());
    std::vector<const PickleValue*> items = v.items();
    ASSERT_EQ(items.size(), want.size());
    for (size_t i = 0; i < items.size(); ++i) {
      ExpectPlainEquals(*items[i], want[i], at + "[" + std::to_string(i) + "]");
    }
  } else if (want.contains("bytes")) {
    ASSERT_NE(v.AsBytes(), nullptr);
    EXPECT_EQ(Hex(reinterpret_cast<const uint8_t*>(v.AsBytes()->data()), v.AsBytes()->size()),
              want["bytes"].get<std::string>());
  } else {
    ASSERT_TRUE(v.is_dict());
    const nlohmann::json& kv = want["dict"];
    ASSERT_EQ(v.entries().size(), kv.size());
    for (size_t i = 0; i < kv.size(); ++i) {
      ExpectPlainEquals(*v.entries()[i].first, kv[i][0], at + ".key" + std::to_string(i));
      ExpectPlainEquals(*v.entries()[i].second, kv[i][1], at + "." + kv[i][0].dump());
    }
  }
}

TEST(TorchCheckpointTest, PlainPicklesOfEveryProtocol) {
  for (const char* name : {"plain_p0.pt", "plain_p2.pt", "plain_p5.pt"}) {
    SCOPED_TRACE(name);
    auto ckpt = TorchCheckpoint::Open(SourcePath(kDir + name));
    ASSERT_OK(ckpt);
    nlohmann::json want = Expected(name)["plain"];
    // Sets come back in pickle order; the generator sorted them.
    for (auto& kv : want["dict"]) {
      if (kv[0] == "set" || kv[0] == "frozen") {
        const PickleValue* s = (*ckpt)->root().Get(kv[0].get<std::string>());
        ASSERT_NE(s, nullptr);
        std::vector<nlohmann::json> got;
        for (const PickleValue* e : s->items()) {
          got.push_back(e->AsInt() ? nlohmann::json(*e->AsInt()) : nlohmann::json(*e->AsString()));
        }
        std::sort(got.begin(), got.end());
        kv[1] = got;
      }
    }
    ExpectPlainEquals((*ckpt)->root(), want, "root");
    EXPECT_TRUE((*ckpt)->FlattenTensors().empty());
  }
}

TEST(TorchCheckpointTest, RefusesCodeExecution) {
  const std::string path = SourcePath(kDir + "evil.pt");
  EXPECT_THAT(TorchCheckpoint::Open(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(path), HasSubstr("pickle references 'posix.system'"),
                             HasSubstr("only tensors and plain containers are allowed"))));
}

TEST(TorchCheckpointTest, LegacyFormatIsUnimplemented) {
  const std::string path = SourcePath(kDir + "legacy.pt");
  EXPECT_THAT(TorchCheckpoint::Open(path),
              StatusIs(absl::StatusCode::kUnimplemented,
                       AllOf(HasSubstr(path), HasSubstr("legacy torch.save format"))));
  EXPECT_THAT(TorchCheckpoint::Open(SourcePath(kDir + "dtypes.safetensors")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a torch.save zip")));
  EXPECT_THAT(TorchCheckpoint::Open(TempPath("absent.pt")), StatusIs(absl::StatusCode::kNotFound));
}

TEST(TorchCheckpointTest, EveryTruncationIsRejected) {
  std::ifstream in(SourcePath(kDir + "tensor.pt"), std::ios::binary);
  const std::string good(std::istreambuf_iterator<char>(in), {});
  for (size_t n = 0; n < good.size(); n += 7) {
    const std::string path = WriteFile("cut.pt", good.substr(0, n));
    EXPECT_THAT(TorchCheckpoint::Open(path),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(path)))
        << n;
  }
}

// Archive-level damage to state_dict.pt.
TEST(TorchCheckpointTest, DamagedArchivesNameTheTensor) {
  const auto entries = Entries(SourcePath(kDir + "state_dict.pt"));
  auto rebuild = [&](auto edit) {
    auto copy = entries;
    edit(copy);
    return WriteFile("damaged.pt", StoredZip(copy));
  };
  // Sanity: the rebuilt archive reads, also with ZIP64 directory fields.
  ASSERT_OK(TorchCheckpoint::Open(rebuild([](auto&) {})));
  {
    const std::string path64 = WriteFile("zip64.pt", StoredZip(entries, /*zip64=*/true));
    auto ckpt = TorchCheckpoint::Open(path64);
    ASSERT_OK(ckpt);
    ExpectTensorsMatch(**ckpt, Expected("state_dict.pt")["tensors"]);
    std::string bytes = StoredZip(entries, true);
    const size_t z64 = bytes.rfind(std::string("PK\x06\x06", 4));
    ASSERT_NE(z64, std::string::npos);
    bytes[z64 + 48] ^= 0x40;  // ZIP64 central directory offset
    const std::string bad = WriteFile("zip64_bad.pt", bytes);
    EXPECT_THAT(TorchCheckpoint::Open(bad),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(bad)));
  }

  std::string path = rebuild([](auto& e) {
    e.erase(std::remove_if(e.begin(), e.end(),
                           [](const auto& x) { return x.first == "state_dict/data/0"; }),
            e.end());
  });
  EXPECT_THAT(TorchCheckpoint::Open(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(path), HasSubstr("tensor 'base'"),
                             HasSubstr("'state_dict/data/0' is missing"))));
  path = rebuild([](auto& e) {
    for (auto& x : e) {
      if (x.first == "state_dict/data/0") x.second.resize(40);
    }
  });
  EXPECT_THAT(TorchCheckpoint::Open(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("tensor 'base'"),
                             HasSubstr("declares 24 elements but its record has 40 bytes"))));
  path = rebuild([](auto& e) {
    for (auto& x : e) {
      if (x.first == "state_dict/byteorder") x.second = "big";
    }
  });
  EXPECT_THAT(TorchCheckpoint::Open(path),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("big-endian")));
  path = rebuild([](auto& e) {
    for (auto& x : e) {
      if (x.first == "state_dict/data.pkl") x.first = "state_dict/other.pkl";
    }
  });
  EXPECT_THAT(TorchCheckpoint::Open(path),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no <name>/data.pkl")));
  // Every cut of the pickle fails cleanly.
  std::string pkl;
  for (const auto& x : entries) {
    if (x.first == "state_dict/data.pkl") pkl = x.second;
  }
  ASSERT_FALSE(pkl.empty());
  for (size_t n = 0; n < pkl.size(); n += n < 150 ? 1 : 13) {
    path = rebuild([&](auto& e) {
      for (auto& x : e) {
        if (x.first == "state_dict/data.pkl") x.second = pkl.substr(0, n);
      }
    });
    EXPECT_THAT(TorchCheckpoint::Open(path),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr(path), HasSubstr("data.pkl byte"))))
        << n;
  }
}

// Hand-written pickles in a torch archive with one 16-byte storage record.
std::string PickleArchive(const std::string& pkl) {
  return WriteFile("pickle.pt", StoredZip({{"a/data.pkl", pkl},
                                           {"a/byteorder", "little"},
                                           {"a/data/0", std::string(16, '\x01')}}));
}

// GLOBAL torch._utils._rebuild_tensor_v2 with storage ('storage', FloatStorage, '0',
// 'cpu', 4), then `tail` (offset, size, stride, requires_grad, hooks), as torch writes.
// (Literals are split where a hex escape is followed by a hex digit.)
std::string TensorPickle(const std::string& tail) {
  using namespace std::string_literals;
  return "\x80\x02}(X\x01\x00\x00\x00w"
         "ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage"
         "ctorch\nFloatStorage\nX\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuK\x04tQ"s +
         tail + "tRu.";
}

TEST(TorchCheckpointTest, HandWrittenPickles) {
  using namespace std::string_literals;
  using std::string;
  // A well-formed tensor: offset 1, size (3,), stride (1,).
  const string path = PickleArchive(TensorPickle("K\x01K\x03\x85K\x01\x85\x89N"s));
  auto ok = TorchCheckpoint::Open(path);
  ASSERT_OK(ok);
  EXPECT_EQ((*ok)->FindTensor("w")->shape, (std::vector<int64_t>{3}));
  const TensorView* w = (*ok)->FindTensor("w");
  std::string ones;
  for (int i = 0; i < 12; ++i) ones += "01";
  EXPECT_EQ(Hex(w->data, w->nbytes), ones);
  struct Case {
    string pkl;
    string message;
  };
  const Case cases[] = {
      {TensorPickle("K\x00K\x05\x85K\x01\x85\x89N"s),
       "tensor 'w': size (5,), stride (1,) and offset 0 reach past its storage '0' of 4 F32"},
      {TensorPickle("K\x02K\x02K\x02\x86K\x02K\x01\x86\x89N"s), "reach past"},
      {TensorPickle("K\x00K\x02\x85K\x01K\x01\x86\x89N"s), "do not match"},
      {TensorPickle("K\x00J\xff\xff\xff\xff\x85K\x01\x85\x89N"s), "must be non-negative"},
      {TensorPickle("K\x00K\x02\x85\x89N"s), "takes 6 arguments, got 5"},
      // size (2^32, 2^32, 0): empty, but the other dimensions overflow.
      {TensorPickle("K\x00\x8a\x05\x00\x00\x00\x00\x01\x8a\x05\x00\x00\x00\x00\x01K\x00\x87"
                    "K\x01K\x01K\x01\x87\x89N"s),
       "tensor 'w': size (4294967296, 4294967296, 0) overflows the element count"},
      {"\x80\x02]q\x00h\x00" "a."s, "'0' contains itself"},
      {"\x80\x02}q\x00X\x01\x00\x00\x00kh\x00s."s, "'k' contains itself"},
      {"cbuiltins\neval\n."s, "pickle references 'builtins.eval'"},
      {"c__builtin__\ngetattr\n."s, "pickle references '__builtin__.getattr'"},
      {"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x8c\x06system\x93."s,
       "pickle references 'os.system'"},
      {"ctorch\nload\n."s, "pickle references 'torch.load'"},
      {"ctorch\nfloat16\n)R."s, "torch.float16 is not callable"},
      {"ccollections\nOrderedDict\nK\x01\x85R."s, "collections.OrderedDict called with (1,)"},
      {"N0."s, "stack underflow"},
      {"t."s, "no MARK"},
      {"K\x01"s, "ends without a STOP"},
      {"h\x05."s, "memo key 5 was never stored"},
      {"\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01."s, "does not fit in 64 bits"},
      {"\xff."s, "unknown opcode 0xff"},
      {"\x82\x01."s, "extension-registry"},
      {"X\xff\xff\xff\x7f"s, "runs past the end of the pickle"},
      {"(X\x07\x00\x00\x00storageK\x01X\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuK\x01tQ."s,
       "not a torch storage class"},
      {"(X\x06\x00\x00\x00tensorK\x01tQ."s, "unsupported persistent id"},
      {"]K\x01K\x02s."s, "SETITEM(S) on a list"},
      {"}K\x01" "a."s, "APPEND(S) on a dict"},
      {"]}b."s, "BUILD on a list"},
      {"\x80\x06."s, "protocol 6"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.message);
    const string p = PickleArchive(c.pkl);
    EXPECT_THAT(TorchCheckpoint::Open(p),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr(p), HasSubstr(c.message))));
  }
}

// torchao's weights pickle as _rebuild_from_type_v2(_rebuild_wrapper_subclass, Class,
// (...), state) (tests/data/formats/torchao-int4-g32, torch.save by torch 2.15): an
// allow-listed class reads as its state dict, so its tensors list as NAME.weight.<attr>.
// Anything else about such a call is refused, and classes off the list stay unknown.
TEST(TorchCheckpointTest, TorchaoWrapperSubclassReadsAsItsState) {
  using namespace std::string_literals;
  auto ck = TorchCheckpoint::Open(SourcePath("tests/data/formats/torchao-int4-g32/pytorch_model.bin"));
  ASSERT_OK(ck);
  const std::string w = "model.layers.0.self_attn.q_proj.weight";
  const TensorView* qdata = (*ck)->FindTensor(w + ".qdata");
  const TensorView* sz = (*ck)->FindTensor(w + ".scale_and_zero");
  ASSERT_TRUE(qdata != nullptr && sz != nullptr);
  EXPECT_EQ(qdata->dtype, DType::kU8);
  EXPECT_EQ(qdata->shape, (std::vector<int64_t>{64, 32}));
  EXPECT_EQ(sz->dtype, DType::kF32);
  EXPECT_EQ(sz->shape, (std::vector<int64_t>{2, 64, 2}));
  EXPECT_EQ((*ck)->FindTensor(w), nullptr);
  EXPECT_NE((*ck)->FindTensor("model.embed_tokens.weight"), nullptr);

  struct Case {
    std::string pkl;
    std::string message;
  };
  const std::string v2 = "ctorch._tensor\n_rebuild_from_type_v2\n("s;
  const Case cases[] = {
      // An allowed class rebuilt by a tensor rebuild, or with a state that is not a dict.
      {v2 + "ctorch._utils\n_rebuild_tensor_v2\nctorchao.prototype.quantization.int4\nInt4OpaqueTensor\n)}tR."s,
       "torch._tensor._rebuild_from_type_v2 called with"},
      {v2 + "ctorch._utils\n_rebuild_wrapper_subclass\nctorchao.quantization\nInt8Tensor\n)]tR."s,
       "torch._tensor._rebuild_from_type_v2 called with"},
      // The CUDA int4 class is on the list (its misuse is refused as a call, not as an
      // unknown global); tests/quant/torchao_tile_test.cc reads a real one.
      {v2 + "ctorch._utils\n_rebuild_tensor_v2\nctorchao.quantization\nInt4TilePackedTo4dTensor\n)}tR."s,
       "torch._tensor._rebuild_from_type_v2 called with"},
      // A wrapper subclass rebuild of a plain tensor class.
      {v2 + "ctorch._utils\n_rebuild_wrapper_subclass\nctorch\nTensor\n)}tR."s,
       "torch._tensor._rebuild_from_type_v2 called with"},
      {"ctorch._utils\n_rebuild_wrapper_subclass\n)R."s, "_rebuild_wrapper_subclass is not callable"},
      {"ctorchao.dtypes\nAffineQuantizedTensor\n."s, "pickle references 'torchao.dtypes.AffineQuantizedTensor'"},
      {"ctorch.serialization\n_get_layout\nK\x01\x85R."s, "_get_layout called with (1,)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.message);
    const std::string p = PickleArchive(c.pkl);
    EXPECT_THAT(TorchCheckpoint::Open(p),
                StatusIs(absl::StatusCode::kInvalidArgument, AllOf(HasSubstr(p), HasSubstr(c.message))));
  }
}

TEST(TorchCheckpointTest, ShortLongsAndTextOpcodes) {
  // LONG1 of 9 bytes whose top byte is sign extension; INT/LONG text; GET text.
  const std::string pkl = std::string("(\x8a\x09\xff\xff\xff\xff\xff\xff\xff\x7f\x00", 12) +
                          "I-12\nL123L\nF0.25\np7\ng7\nI01\nl.";
  auto ckpt = TorchCheckpoint::Open(PickleArchive(pkl));
  ASSERT_OK(ckpt);
  const PickleValue& root = (*ckpt)->root();
  ASSERT_EQ(root.size(), 6u);
  EXPECT_EQ(*root.At(0)->AsInt(), INT64_MAX);
  EXPECT_EQ(*root.At(1)->AsInt(), -12);
  EXPECT_EQ(*root.At(2)->AsInt(), 123);
  EXPECT_EQ(*root.At(3)->AsDouble(), 0.25);
  EXPECT_EQ(root.At(4), root.At(3));
  EXPECT_EQ(*root.At(5)->AsBool(), true);
}

TEST(TorchCheckpointTest, RepeatedDictKeysReplaceInPlace) {
  using namespace std::string_literals;
  // {'a': 1, 'b': 2, 1: 4, 'a': 3} -> {'a': 3, 'b': 2, 1: 4}, as in Python.
  const std::string pkl = "}(X\x01\x00\x00\x00" "aK\x01X\x01\x00\x00\x00" "bK\x02K\x01K\x04"
                          "X\x01\x00\x00\x00" "aK\x03u."s;
  auto ckpt = TorchCheckpoint::Open(PickleArchive(pkl));
  ASSERT_OK(ckpt);
  const PickleValue& root = (*ckpt)->root();
  ASSERT_EQ(root.size(), 3u);
  EXPECT_EQ(*root.entries()[0].first->AsString(), "a");
  EXPECT_EQ(*root.GetInt("a"), 3);
  EXPECT_EQ(*root.GetInt("b"), 2);
  EXPECT_EQ(*root.Get(int64_t{1})->AsInt(), 4);
  EXPECT_EQ(root.DebugString(), "{'a': 3, 'b': 2, 1: 4}");
}

}  // namespace
}  // namespace ingot::formats
