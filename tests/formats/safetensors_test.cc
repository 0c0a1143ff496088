// safetensors reader/writer: files written by safetensors.torch.save_file and by
// huggingface_hub's sharded writer (tests/reference/gen_containers.py; expected bytes
// from torch in expected.json), our writer's round trip, and corrupt files built here,
// which must all give INVALID_ARGUMENT naming the file and the tensor.
#include "engine/formats/safetensors.h"

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace ingot::formats {
namespace {

using ::ingot::testing::SourcePath;
using ::ingot::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

const std::string kDir = "tests/data/formats/containers/";

nlohmann::json Expected() {
  std::ifstream in(SourcePath(kDir + "expected.json"));
  return nlohmann::json::parse(in);
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

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string TempDir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string dir = ::testing::TempDir() + "safetensors_" + info->name();
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), bytes.size());
  return path;
}

// A safetensors file from a header text and a data area, as a writer would lay it out.
std::string Build(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

void ExpectTensorMatches(const TensorView& t, const nlohmann::json& want) {
  SCOPED_TRACE(t.name);
  EXPECT_EQ(DTypeName(t.dtype), want["dtype"].get<std::string>());
  EXPECT_EQ(t.shape, want["shape"].get<std::vector<int64_t>>());
  EXPECT_EQ(t.nbytes, static_cast<size_t>(t.numel()) * DTypeSize(t.dtype));
  EXPECT_EQ(Hex(t.data, t.nbytes), want["hex"].get<std::string>());
}

TEST(DTypeTest, NamesRoundTrip) {
  for (int i = 0; i < kDTypeCount; ++i) {
    const DType t = static_cast<DType>(i);
    ASSERT_TRUE(DTypeFromName(DTypeName(t)).has_value()) << DTypeName(t);
    EXPECT_EQ(*DTypeFromName(DTypeName(t)), t);
    EXPECT_GT(DTypeSize(t), 0u);
  }
  EXPECT_FALSE(DTypeFromName("f32").has_value());  // exact spelling only
  EXPECT_EQ(DTypeSize(DType::kBF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kF8E5M2), 1u);
}

TEST(DTypeTest, CheckedNumel) {
  EXPECT_EQ(CheckedNumel({}, 4), 1u);
  EXPECT_EQ(CheckedNumel({2, 3}, 4), 6u);
  EXPECT_EQ(CheckedNumel({2, 0, 3}, 4), 0u);
  EXPECT_EQ(CheckedNumel({2, -1}, 4), std::nullopt);
  EXPECT_EQ(CheckedNumel({int64_t{1} << 31, int64_t{1} << 31}, 1), 1ull << 62);
  EXPECT_EQ(CheckedNumel({int64_t{1} << 31, int64_t{1} << 31}, 4), std::nullopt);  // bytes
  EXPECT_EQ(CheckedNumel({int64_t{1} << 40, int64_t{1} << 40, 0}, 1), std::nullopt);
  TensorView t;
  t.shape = {int64_t{1} << 40, int64_t{1} << 40, 0};
  EXPECT_EQ(t.numel(), 0);  // no overflow before the zero
}

TEST(SafetensorsTest, ReadsEveryDtypeWrittenBySafetensors) {
  const nlohmann::json want = Expected()["dtypes.safetensors"];
  auto f = SafetensorsFile::Open(SourcePath(kDir + "dtypes.safetensors"));
  ASSERT_OK(f);
  ASSERT_EQ((*f)->tensors().size(), want["tensors"].size());
  for (const TensorView& t : (*f)->tensors()) {
    ASSERT_TRUE(want["tensors"].contains(t.name)) << t.name;
    ExpectTensorMatches(t, want["tensors"][t.name]);
    EXPECT_EQ((*f)->Find(t.name), &t);
  }
  EXPECT_EQ((*f)->Find("absent"), nullptr);
  EXPECT_EQ((*f)->Find("scalar")->shape.size(), 0u);
  EXPECT_EQ((*f)->Find("scalar")->numel(), 1);
  EXPECT_EQ((*f)->Find("empty")->numel(), 0);
  std::map<std::string, std::string> meta = want["metadata"];
  EXPECT_EQ((*f)->metadata(), meta);
}

TEST(SafetensorsTest, ShardedSetFromDirectoryAndFromIndex) {
  const nlohmann::json want = Expected()["sharded"];
  const std::string dir = SourcePath(kDir + "sharded");
  for (const std::string& path : {dir, dir + "/model.safetensors.index.json"}) {
    SCOPED_TRACE(path);
    auto set = SafetensorsSet::Open(path);
    ASSERT_OK(set);
    std::vector<std::string> files;
    for (const std::string& f : (*set)->files()) files.push_back(fs::path(f).filename());
    EXPECT_EQ(files, want["files"].get<std::vector<std::string>>());
    ASSERT_EQ((*set)->tensors().size(), want["tensors"].size());
    for (const TensorView* t : (*set)->tensors()) {
      ASSERT_TRUE(want["tensors"].contains(t->name)) << t->name;
      ExpectTensorMatches(*t, want["tensors"][t->name]);
      EXPECT_EQ((*set)->Find(t->name), t);
    }
    EXPECT_EQ((*set)->Find("nope"), nullptr);
    EXPECT_EQ((*set)->metadata().at("format"), "pt");
  }
}

TEST(SafetensorsTest, SetFromSingleFileAndDirectory) {
  const std::string src = SourcePath(kDir + "dtypes.safetensors");
  auto single = SafetensorsSet::Open(src);
  ASSERT_OK(single);
  EXPECT_EQ((*single)->files(), std::vector<std::string>{src});
  const std::string dir = TempDir();
  fs::copy_file(src, dir + "/model.safetensors");
  auto from_dir = SafetensorsSet::Open(dir);
  ASSERT_OK(from_dir);
  EXPECT_EQ((*from_dir)->tensors().size(), (*single)->tensors().size());
  EXPECT_EQ((*from_dir)->metadata().at("format"), "pt");
  // One other *.safetensors is taken too; two without an index are ambiguous.
  fs::rename(dir + "/model.safetensors", dir + "/weights.safetensors");
  ASSERT_OK(SafetensorsSet::Open(dir));
  fs::copy_file(src, dir + "/other.safetensors");
  EXPECT_THAT(SafetensorsSet::Open(dir),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ambiguous")));
  EXPECT_THAT(SafetensorsSet::Open(TempDir() + "/missing"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing")));
  EXPECT_THAT(SafetensorsSet::Open(TempDir()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no model.safetensors")));
}

TEST(SafetensorsTest, WriterRoundTripsAndAlignsData) {
  auto src = SafetensorsFile::Open(SourcePath(kDir + "dtypes.safetensors"));
  ASSERT_OK(src);
  const std::string path = TempDir() + "/out.safetensors";
  ASSERT_OK(WriteSafetensors(path, (*src)->tensors(), (*src)->metadata()));
  auto back = SafetensorsFile::Open(path);
  ASSERT_OK(back);
  EXPECT_EQ((*back)->metadata(), (*src)->metadata());
  ASSERT_EQ((*back)->tensors().size(), (*src)->tensors().size());
  const std::string bytes = ReadAll(path);
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  EXPECT_EQ(header_len % 8, 0u);
  const uint8_t* base = reinterpret_cast<const uint8_t*>(bytes.data());
  size_t prev_size = 16;
  for (const TensorView& t : (*back)->tensors()) {
    const TensorView* s = (*src)->Find(t.name);
    ASSERT_NE(s, nullptr) << t.name;
    EXPECT_EQ(t.dtype, s->dtype);
    EXPECT_EQ(t.shape, s->shape);
    EXPECT_EQ(Hex(t.data, t.nbytes), Hex(s->data, s->nbytes));
    // Laid out largest element first, so each tensor is aligned to its element size.
    EXPECT_LE(DTypeSize(t.dtype), prev_size) << t.name;
    prev_size = DTypeSize(t.dtype);
    const auto j = nlohmann::json::parse(bytes.substr(8, header_len));
    const uint64_t begin = j[t.name]["data_offsets"][0];
    EXPECT_EQ((8 + header_len + begin) % DTypeSize(t.dtype), 0u) << t.name;
    EXPECT_EQ(std::memcmp(base + 8 + header_len + begin, s->data, s->nbytes), 0);
  }
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST(SafetensorsTest, WriterRejectsInconsistentTensors) {
  const std::string path = TempDir() + "/bad.safetensors";
  const uint8_t bytes[8] = {};
  TensorView t{"w", DType::kF32, {3}, bytes, 8};  // 3 x F32 needs 12 bytes
  EXPECT_THAT(WriteSafetensors(path, {t}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(path), HasSubstr("'w'"), HasSubstr("8 bytes"))));
  TensorView a{"x", DType::kU8, {8}, bytes, 8};
  EXPECT_THAT(WriteSafetensors(path, {a, a}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("twice")));
  TensorView m{"__metadata__", DType::kU8, {8}, bytes, 8};
  EXPECT_THAT(WriteSafetensors(path, {m}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("__metadata__")));
  EXPECT_FALSE(fs::exists(path));
}

TEST(SafetensorsTest, EveryTruncationIsRejected) {
  const std::string good = ReadAll(SourcePath(kDir + "dtypes.safetensors"));
  const std::string path = TempDir() + "/cut.safetensors";
  uint64_t header_len = 0;
  std::memcpy(&header_len, good.data(), 8);
  // Every cut through the length, every 3rd through the header, then every 11th byte
  // of the data (file writes are slow here).
  for (size_t n = 0; n < good.size(); n += n < 16 ? 1 : n < 8 + header_len ? 3 : 11) {
    WriteFile(path, good.substr(0, n));
    auto f = SafetensorsFile::Open(path);
    ASSERT_THAT(f, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(path))) << n;
    if (n < 8) {
      EXPECT_THAT(f, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("too short")));
    }
  }
}

TEST(SafetensorsTest, HeaderLengthOutOfRange) {
  std::string bytes = ReadAll(SourcePath(kDir + "dtypes.safetensors"));
  const std::string path = TempDir() + "/len.safetensors";
  uint64_t len = bytes.size() - 7;
  std::memcpy(bytes.data(), &len, 8);
  EXPECT_THAT(SafetensorsFile::Open(WriteFile(path, bytes)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(path), HasSubstr("runs past the end"))));
  len = uint64_t{1} << 40;
  std::memcpy(bytes.data(), &len, 8);
  EXPECT_THAT(SafetensorsFile::Open(WriteFile(path, bytes)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exceeds")));
}

TEST(SafetensorsTest, MalformedHeadersNameFileAndTensor) {
  const std::string path = TempDir() + "/bad.safetensors";
  const std::string data(64, '\x01');
  struct Case {
    std::string header;
    std::string message;
  };
  const Case cases[] = {
      {R"({"w": {"dtype": "F32", "shape": [2])", "not valid JSON"},
      {R"([1, 2])", "not an object"},
      {R"({"w": {"shape": [2], "data_offsets": [0, 8]}})", "tensor 'w': missing 'dtype'"},
      {R"({"w": {"dtype": "F32", "data_offsets": [0, 8]}})", "tensor 'w': missing 'shape'"},
      {R"({"w": {"dtype": "F32", "shape": [2]}})", "tensor 'w': missing 'data_offsets'"},
      {R"({"w": [1]})", "tensor 'w': entry is a JSON array"},
      {R"({"w": {"dtype": "F128", "shape": [2], "data_offsets": [0, 8]}})",
       "tensor 'w': unknown dtype 'F128'"},
      {R"({"w": {"dtype": 3, "shape": [2], "data_offsets": [0, 8]}})",
       "tensor 'w': dtype is a JSON number"},
      {R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})",
       "tensor 'w': data_offsets [8, 0] are out of order"},
      {R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [60, 68]}})",
       "tensor 'w': data_offsets [60, 68] run past the data area (64 bytes)"},
      {R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})",
       "tensor 'w': data_offsets [0, 8] hold 8 bytes but F32 [3] needs 12"},
      {R"({"w": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 4]}})",
       "needs 8"},
      {R"({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})",
       "tensor 'w': shape [-2] has -2, not a non-negative integer"},
      {R"({"w": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}})",
       "not a non-negative integer"},
      {R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}})",
       "tensor 'w': shape [4294967296,4294967296] overflows"},
      {R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 0], "data_offsets": [0, 0]}})",
       "tensor 'w': shape [4294967296,4294967296,0] overflows"},
      {R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, -8]}})",
       "tensor 'w': data_offsets [0,-8] is not a pair"},
      {R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", "not a pair"},
      {R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
           "w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})",
       "tensor 'w': data [8, 16) overlaps tensor 'a' [0, 16)"},
      {R"({"__metadata__": {"k": 1}})", "__metadata__ 'k' is a JSON number, not a string"},
      {R"({"__metadata__": [1]})", "__metadata__ is a JSON array"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.header);
    EXPECT_THAT(SafetensorsFile::Open(WriteFile(path, Build(c.header, data))),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr(path), HasSubstr(c.message))));
  }
  // Zero-size tensors may share an offset; gaps are tolerated.
  auto ok = SafetensorsFile::Open(WriteFile(
      path, Build(R"({"e": {"dtype": "F32", "shape": [0], "data_offsets": [8, 8]},
                      "a": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]},
                      "b": {"dtype": "I16", "shape": [2, 2], "data_offsets": [16, 24]}})",
                  data)));
  ASSERT_OK(ok);
  EXPECT_EQ((*ok)->tensors()[0].name, "e");  // header order
  EXPECT_EQ((*ok)->Find("b")->nbytes, 8u);
  EXPECT_THAT(SafetensorsFile::Open(TempDir() + "/nope"),
              StatusIs(absl::StatusCode::kNotFound));
}

// Copies the sharded checkpoint to a temp dir for editing.
std::string CopySharded() {
  const std::string dir = TempDir() + "/ckpt";
  fs::copy(SourcePath(kDir + "sharded"), dir);
  return dir;
}

TEST(SafetensorsTest, MissingShardIsNamed) {
  const std::string dir = CopySharded();
  fs::remove(dir + "/model-00002-of-00004.safetensors");
  EXPECT_THAT(SafetensorsSet::Open(dir),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("model.safetensors.index.json"),
                             HasSubstr("shard 'model-00002-of-00004.safetensors'"),
                             HasSubstr("missing"))));
}

TEST(SafetensorsTest, TensorInTwoShardsIsRejected) {
  const std::string dir = CopySharded();
  auto s1 = SafetensorsFile::Open(dir + "/model-00001-of-00004.safetensors");
  ASSERT_OK(s1);
  const TensorView dup = (*s1)->tensors()[0];
  auto s2 = SafetensorsFile::Open(dir + "/model-00002-of-00004.safetensors");
  ASSERT_OK(s2);
  std::vector<TensorView> with_dup = (*s2)->tensors();
  with_dup.push_back(dup);
  ASSERT_OK(WriteSafetensors(dir + "/model-00002-of-00004.safetensors", with_dup, {}));
  EXPECT_THAT(SafetensorsSet::Open(dir),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("'" + dup.name + "' is in two shards"),
                             HasSubstr("model-00001-of-00004.safetensors"),
                             HasSubstr("model-00002-of-00004.safetensors"))));
}

TEST(SafetensorsTest, IndexProblemsAreNamed) {
  const std::string dir = CopySharded();
  const std::string index = dir + "/model.safetensors.index.json";
  nlohmann::json j = nlohmann::json::parse(ReadAll(index));
  const std::string first = j["weight_map"].begin().key();
  const std::string first_shard = j["weight_map"].begin().value();
  // An index entry pointing at a shard that lacks the tensor.
  nlohmann::json moved = j;
  moved["weight_map"]["not.in.any.shard"] = first_shard;
  WriteFile(index, moved.dump());
  EXPECT_THAT(SafetensorsSet::Open(dir),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("'not.in.any.shard'"), HasSubstr(first_shard),
                             HasSubstr("does not contain it"))));
  nlohmann::json escape = j;
  escape["weight_map"][first] = "../outside.safetensors";
  WriteFile(index, escape.dump());
  EXPECT_THAT(SafetensorsSet::Open(dir),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a file name")));
  WriteFile(index, R"({"metadata": {}})");
  EXPECT_THAT(SafetensorsSet::Open(dir),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("weight_map")));
  WriteFile(index, "{not json");
  EXPECT_THAT(SafetensorsSet::Open(dir),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(index), HasSubstr("not valid JSON"))));
  // A corrupt shard is reported with its own path.
  WriteFile(index, j.dump());
  WriteFile(dir + "/" + first_shard, "garbage");
  EXPECT_THAT(SafetensorsSet::Open(dir),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(first_shard)));
}

}  // namespace
}  // namespace ingot::formats
