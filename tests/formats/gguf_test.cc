// GGUF reader/writer: round trips of every value and tensor type through our Writer,
// a file written by the gguf Python package (tests/reference/gen_gguf.py), the default
// model, and corrupt files (each prefix of a small file, patched headers, bad counts),
// which must all give INVALID_ARGUMENT naming the file, the key or tensor and the offset.
#include "engine/formats/gguf.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace ingot::gguf {
namespace {

using ::ingot::testing::DefaultModelPath;
using ::ingot::testing::SourcePath;
using ::ingot::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::AllOf;

constexpr uint64_t kHeaderSize = 24;  // magic, version, tensor count, kv count

std::string TempPath(const std::string& name) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return ::testing::TempDir() + "gguf_" + info->name() + "_" + name + ".gguf";
}

std::string WriteFile(const std::string& name, const std::string& bytes) {
  const std::string path = TempPath(name);
  std::ofstream(path, std::ios::binary).write(bytes.data(), bytes.size());
  return path;
}

template <typename T>
void Patch(std::string& bytes, size_t at, T value) {
  ASSERT_LE(at + sizeof(T), bytes.size());
  std::memcpy(bytes.data() + at, &value, sizeof(T));
}

Value Scalar(ValueType type, int64_t i) {
  Value v;
  v.type = type;
  v.i = i;
  v.u = static_cast<uint64_t>(i);
  return v;
}
Value Float(ValueType type, double f) {
  Value v;
  v.type = type;
  v.f = f;
  return v;
}
Value IntArray(ValueType elem, std::vector<int64_t> ints) {
  Value v;
  v.type = ValueType::kArray;
  v.elem_type = elem;
  v.ints = std::move(ints);
  return v;
}
Value FloatArray(ValueType elem, std::vector<double> floats) {
  Value v;
  v.type = ValueType::kArray;
  v.elem_type = elem;
  v.floats = std::move(floats);
  return v;
}

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

// A small file with a bit of everything, for the truncation and byte-flip loops.
std::string SmallFile() {
  Writer w;
  w.AddString("general.architecture", "llama");
  w.AddUint32("llama.block_count", 2);
  w.AddFloat32("llama.rope.freq_base", 10000.0f);
  w.AddBool("flag", true);
  w.AddStringArray("tokenizer.ggml.tokens", {"a", "bc", ""});
  w.Add("ids", IntArray(ValueType::kInt32, {1, -2, 3}));
  Value nested;
  nested.type = ValueType::kArray;
  nested.elem_type = ValueType::kArray;
  nested.arrays = {IntArray(ValueType::kUint8, {1, 2}), IntArray(ValueType::kUint8, {})};
  w.Add("nested", nested);
  w.AddTensor("a", GgmlType::kF32, {4, 2}, RandomBytes(32, 1));
  w.AddTensor("b", GgmlType::kQ4_0, {32}, RandomBytes(18, 2));
  return w.Serialize();
}

TEST(GgufRoundTrip, EveryValueType) {
  for (uint32_t version : {2u, 3u}) {
    SCOPED_TRACE(version);
    Writer w(version);
    w.Add("u8", Scalar(ValueType::kUint8, 255));
    w.Add("i8", Scalar(ValueType::kInt8, -128));
    w.Add("u16", Scalar(ValueType::kUint16, 65535));
    w.Add("i16", Scalar(ValueType::kInt16, -32768));
    w.AddUint32("u32", 0xffffffffu);
    w.AddInt32("i32", std::numeric_limits<int32_t>::min());
    w.AddFloat32("f32", -1.25f);
    w.AddBool("bool_t", true);
    w.AddBool("bool_f", false);
    w.AddString("str", std::string("h\xc3\xa9llo\0x", 8));
    w.AddString("empty", "");
    Value u64;
    u64.type = ValueType::kUint64;
    u64.u = std::numeric_limits<uint64_t>::max();
    w.Add("u64", u64);
    w.Add("i64", Scalar(ValueType::kInt64, std::numeric_limits<int64_t>::min()));
    w.Add("f64", Float(ValueType::kFloat64, M_PI));
    w.Add("a_u8", IntArray(ValueType::kUint8, {0, 1, 255}));
    w.Add("a_i8", IntArray(ValueType::kInt8, {-128, 0, 127}));
    w.Add("a_u16", IntArray(ValueType::kUint16, {0, 65535}));
    w.Add("a_i16", IntArray(ValueType::kInt16, {-32768, 32767}));
    w.Add("a_u32", IntArray(ValueType::kUint32, {0, 4294967295}));
    w.Add("a_i32", IntArray(ValueType::kInt32, {-2147483648LL, 2147483647}));
    w.Add("a_u64", IntArray(ValueType::kUint64, {0, -1}));  // -1: 2^64 - 1 wrapped
    w.Add("a_i64", IntArray(ValueType::kInt64, {std::numeric_limits<int64_t>::min(), 7}));
    w.Add("a_f32", FloatArray(ValueType::kFloat32, {0.5, -2.0, 1e30}));
    w.Add("a_f64", FloatArray(ValueType::kFloat64, {M_PI, -1e300}));
    w.Add("a_bool", IntArray(ValueType::kBool, {1, 0, 1}));
    w.AddStringArray("a_str", {"x", "", "yz"});
    w.Add("a_empty", IntArray(ValueType::kInt32, {}));
    Value nested;  // [[1, 2], [], [3]] of int32, then [["s"], []] of strings
    nested.type = ValueType::kArray;
    nested.elem_type = ValueType::kArray;
    nested.arrays = {IntArray(ValueType::kInt32, {1, 2}), IntArray(ValueType::kInt32, {}),
                     IntArray(ValueType::kInt32, {3})};
    w.Add("a_nested", nested);
    Value nested_str;
    nested_str.type = ValueType::kArray;
    nested_str.elem_type = ValueType::kArray;
    Value inner;
    inner.type = ValueType::kArray;
    inner.elem_type = ValueType::kString;
    inner.strings = {"s"};
    nested_str.arrays = {inner, Value{}};
    nested_str.arrays[1].type = ValueType::kArray;
    nested_str.arrays[1].elem_type = ValueType::kString;
    w.Add("a_nested_str", nested_str);

    const std::string path = TempPath("v" + std::to_string(version));
    ASSERT_OK(w.WriteTo(path));
    auto file = File::Open(path);
    ASSERT_OK(file);
    const File& f = **file;
    EXPECT_EQ(f.version(), version);
    EXPECT_EQ(f.metadata().size(), 29u);
    EXPECT_TRUE(f.tensors().empty());

    EXPECT_EQ(*f.GetInt("u8"), 255);
    EXPECT_EQ(*f.GetInt("i8"), -128);
    EXPECT_EQ(*f.GetInt("u16"), 65535);
    EXPECT_EQ(*f.GetInt("i16"), -32768);
    EXPECT_EQ(*f.GetInt("u32"), 4294967295);
    EXPECT_EQ(*f.GetInt("i32"), std::numeric_limits<int32_t>::min());
    EXPECT_EQ(*f.GetFloat("f32"), -1.25);
    EXPECT_EQ(*f.GetBool("bool_t"), true);
    EXPECT_EQ(*f.GetBool("bool_f"), false);
    EXPECT_EQ(*f.GetString("str"), std::string("h\xc3\xa9llo\0x", 8));
    EXPECT_EQ(*f.GetString("empty"), "");
    EXPECT_EQ(f.Find("u64")->u, std::numeric_limits<uint64_t>::max());
    EXPECT_EQ(f.Find("u64")->type, ValueType::kUint64);
    EXPECT_EQ(*f.GetInt("i64"), std::numeric_limits<int64_t>::min());
    EXPECT_EQ(*f.GetFloat("f64"), M_PI);
    EXPECT_EQ(*f.GetFloat("u32"), 4294967295.0);  // integers read as floats too

    EXPECT_EQ(f.Find("a_u8")->ints, (std::vector<int64_t>{0, 1, 255}));
    EXPECT_EQ(f.Find("a_i8")->ints, (std::vector<int64_t>{-128, 0, 127}));
    EXPECT_EQ(f.Find("a_u16")->ints, (std::vector<int64_t>{0, 65535}));
    EXPECT_EQ(f.Find("a_i16")->ints, (std::vector<int64_t>{-32768, 32767}));
    EXPECT_EQ(f.Find("a_u32")->ints, (std::vector<int64_t>{0, 4294967295}));
    EXPECT_EQ(f.Find("a_i32")->ints, (std::vector<int64_t>{-2147483648LL, 2147483647}));
    EXPECT_EQ(f.Find("a_u64")->ints, (std::vector<int64_t>{0, -1}));
    EXPECT_EQ(f.Find("a_i64")->ints,
              (std::vector<int64_t>{std::numeric_limits<int64_t>::min(), 7}));
    EXPECT_EQ(f.Find("a_f32")->floats, (std::vector<double>{0.5, -2.0, 1e30f}));
    EXPECT_EQ(f.Find("a_f64")->floats, (std::vector<double>{M_PI, -1e300}));
    EXPECT_EQ(f.Find("a_bool")->ints, (std::vector<int64_t>{1, 0, 1}));
    EXPECT_EQ(f.Find("a_str")->strings, (std::vector<std::string>{"x", "", "yz"}));
    EXPECT_EQ(f.Find("a_empty")->ArraySize(), 0u);
    const std::pair<const char*, ValueType> kArrayKinds[] = {
        {"a_u8", ValueType::kUint8},    {"a_i8", ValueType::kInt8},
        {"a_u16", ValueType::kUint16},  {"a_i16", ValueType::kInt16},
        {"a_u32", ValueType::kUint32},  {"a_i32", ValueType::kInt32},
        {"a_u64", ValueType::kUint64},  {"a_i64", ValueType::kInt64},
        {"a_f32", ValueType::kFloat32}, {"a_f64", ValueType::kFloat64},
        {"a_bool", ValueType::kBool},   {"a_str", ValueType::kString},
        {"a_nested", ValueType::kArray}};
    for (const auto& [key, elem] : kArrayKinds) {
      EXPECT_EQ(f.Find(key)->type, ValueType::kArray) << key;
      EXPECT_EQ(f.Find(key)->elem_type, elem) << key;
    }
    const Value& n = *f.Find("a_nested");
    ASSERT_EQ(n.ArraySize(), 3u);
    EXPECT_EQ(n.arrays[0].type, ValueType::kArray);
    EXPECT_EQ(n.arrays[0].elem_type, ValueType::kInt32);
    EXPECT_EQ(n.arrays[0].ints, (std::vector<int64_t>{1, 2}));
    EXPECT_EQ(n.arrays[1].ArraySize(), 0u);
    EXPECT_EQ(n.arrays[2].ints, (std::vector<int64_t>{3}));
    const Value& ns = *f.Find("a_nested_str");
    ASSERT_EQ(ns.ArraySize(), 2u);
    EXPECT_EQ(ns.arrays[0].strings, (std::vector<std::string>{"s"}));
    EXPECT_EQ(ns.arrays[1].ArraySize(), 0u);
    // Order is kept.
    EXPECT_EQ(f.metadata().front().first, "u8");
    EXPECT_EQ(f.metadata().back().first, "a_nested_str");
  }
}


TEST(GgufRoundTrip, EveryTensorType) {
  for (uint64_t alignment : {32u, 64u, 1u}) {
    SCOPED_TRACE(alignment);
    Writer w;
    if (alignment != 32) w.SetAlignment(alignment);
    struct Expected {
      std::string name;
      GgmlType type;
      std::vector<int64_t> dims;
      std::string data;
    };
    std::vector<Expected> expected;
    for (uint32_t raw = 0; raw < static_cast<uint32_t>(GgmlType::kCount); ++raw) {
      const GgmlTypeTraits& t = GetGgmlTypeTraits(raw);
      if (t.block_size == 0) continue;
      const std::vector<int64_t> dims = {2 * t.block_size, 3};
      Expected e{std::string("t.") + t.name, static_cast<GgmlType>(raw), dims,
                 RandomBytes(GgmlRowSize(static_cast<GgmlType>(raw), dims[0]) * 3, raw)};
      w.AddTensor(e.name, e.type, e.dims, e.data);
      expected.push_back(std::move(e));
    }
    // Odd shapes: 1-D with a single element, 4-D.
    expected.push_back({"scalar", GgmlType::kF32, {1}, RandomBytes(4, 100)});
    expected.push_back({"four_d", GgmlType::kF16, {3, 1, 2, 5}, RandomBytes(60, 101)});
    for (size_t i = expected.size() - 2; i < expected.size(); ++i) {
      w.AddTensor(expected[i].name, expected[i].type, expected[i].dims, expected[i].data);
    }
    ASSERT_GE(expected.size(), 20u);

    const std::string path = WriteFile("tensors", w.Serialize());
    auto file = File::Open(path);
    ASSERT_OK(file);
    const File& f = **file;
    EXPECT_EQ(f.alignment(), alignment);
    ASSERT_EQ(f.tensors().size(), expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
      const TensorInfo& t = f.tensors()[i];
      SCOPED_TRACE(expected[i].name);
      EXPECT_EQ(t.name, expected[i].name);
      EXPECT_EQ(t.type, expected[i].type);
      EXPECT_EQ(t.dims, expected[i].dims);
      EXPECT_EQ(t.nbytes, expected[i].data.size());
      EXPECT_EQ(t.offset % alignment, 0u);
      ASSERT_NE(t.data, nullptr);
      EXPECT_EQ(std::string(reinterpret_cast<const char*>(t.data), t.nbytes),
                expected[i].data);
      EXPECT_EQ(f.FindTensor(t.name), &t);
    }
    EXPECT_EQ(f.FindTensor("nope"), nullptr);
  }
}

// Integers are kept as decimal strings in the JSON (uint64 does not fit a double).
int64_t JsonInt(const nlohmann::json& j) {
  const std::string s = j.get<std::string>();
  return s[0] == '-' ? std::stoll(s) : static_cast<int64_t>(std::stoull(s));
}

void ExpectValue(const Value& v, const std::string& type, const nlohmann::json& j) {
  if (type.rfind("array:", 0) == 0) {
    ASSERT_EQ(v.type, ValueType::kArray);
    const std::string elem = type.substr(6);
    ASSERT_EQ(ValueTypeName(v.elem_type), elem);
    ASSERT_EQ(v.ArraySize(), j.size());
    for (size_t k = 0; k < j.size(); ++k) {
      SCOPED_TRACE(k);
      if (elem == "array") {
        ASSERT_EQ(v.arrays[k].elem_type, ValueType::kInt32);  // Python ints
        ASSERT_EQ(v.arrays[k].ints.size(), j[k].size());
        for (size_t m = 0; m < j[k].size(); ++m) EXPECT_EQ(v.arrays[k].ints[m], JsonInt(j[k][m]));
      } else if (elem == "string") {
        EXPECT_EQ(v.strings[k], j[k].get<std::string>());
      } else if (elem == "float32" || elem == "float64") {
        EXPECT_EQ(v.floats[k], j[k].get<double>());
      } else if (elem == "bool") {
        EXPECT_EQ(v.ints[k], j[k].get<bool>() ? 1 : 0);
      } else {
        EXPECT_EQ(v.ints[k], JsonInt(j[k]));
      }
    }
    return;
  }
  ASSERT_EQ(ValueTypeName(v.type), type);
  if (type == "string") {
    EXPECT_EQ(v.s, j.get<std::string>());
  } else if (type == "float32" || type == "float64") {
    EXPECT_EQ(v.f, j.get<double>());
  } else if (type == "bool") {
    EXPECT_EQ(v.i, j.get<bool>() ? 1 : 0);
  } else if (j.is_string()) {
    EXPECT_EQ(v.i, JsonInt(j));
    EXPECT_EQ(v.u, static_cast<uint64_t>(JsonInt(j)));
  } else {
    EXPECT_EQ(v.i, j.get<int64_t>());
  }
}

// A file written by the gguf Python package's GGUFWriter (tests/reference/gen_gguf.py);
// peer_writer.json lists what it wrote.
TEST(GgufPeer, ReadsGgufPythonWriter) {
  auto file = File::Open(SourcePath("tests/data/gguf/peer_writer.gguf"));
  ASSERT_OK(file);
  const File& f = **file;
  std::ifstream in(SourcePath("tests/data/gguf/peer_writer.json"));
  ASSERT_TRUE(in.good());
  const nlohmann::json doc = nlohmann::json::parse(in);
  EXPECT_EQ(f.version(), doc["version"].get<uint32_t>());
  EXPECT_EQ(f.alignment(), doc["alignment"].get<uint64_t>());
  ASSERT_EQ(f.metadata().size(), doc["metadata"].size());
  for (size_t i = 0; i < doc["metadata"].size(); ++i) {
    const nlohmann::json& m = doc["metadata"][i];
    const std::string key = m["key"].get<std::string>();
    SCOPED_TRACE(key);
    EXPECT_EQ(f.metadata()[i].first, key);
    const Value* v = f.Find(key);
    ASSERT_NE(v, nullptr);
    ExpectValue(*v, m["type"].get<std::string>(), m["value"]);
  }
  ASSERT_EQ(f.tensors().size(), doc["tensors"].size());
  for (const nlohmann::json& jt : doc["tensors"]) {
    const std::string name = jt["name"].get<std::string>();
    SCOPED_TRACE(name);
    const TensorInfo* t = f.FindTensor(name);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(static_cast<uint32_t>(t->type), jt["type"].get<uint32_t>());
    EXPECT_EQ(t->dims, jt["dims"].get<std::vector<int64_t>>());
    const std::string hex = jt["hex"].get<std::string>();
    ASSERT_EQ(t->nbytes * 2, hex.size());
    EXPECT_EQ(t->offset % 64, 0u);
    std::string bytes;
    for (size_t k = 0; k < hex.size(); k += 2) {
      bytes.push_back(static_cast<char>(std::stoi(hex.substr(k, 2), nullptr, 16)));
    }
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(t->data), t->nbytes), bytes);
  }
}

// Our Writer and the peer's agree byte for byte on the same content.
TEST(GgufPeer, WriterMatchesPeerBytes) {
  const std::string peer_path = SourcePath("tests/data/gguf/peer_writer.gguf");
  auto peer = File::Open(peer_path);
  ASSERT_OK(peer);
  Writer w;
  for (const auto& [key, value] : (*peer)->metadata()) {
    if (key == "general.alignment") {
      w.SetAlignment(value.u);
    } else {
      w.Add(key, value);
    }
  }
  for (const TensorInfo& t : (*peer)->tensors()) {
    w.AddTensor(t.name, t.type, t.dims,
                std::string(reinterpret_cast<const char*>(t.data), t.nbytes));
  }
  std::ifstream in(peer_path, std::ios::binary);
  const std::string expected((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  const std::string ours = w.Serialize();
  ASSERT_EQ(ours.size(), expected.size());
  EXPECT_TRUE(ours == expected);
}

TEST(GgufGetters, KindsAndDefaults) {
  Writer w;
  w.AddString("s", "x");
  w.AddUint32("n", 7);
  w.AddFloat32("f", 0.25f);
  w.AddBool("b", true);
  auto file = File::Open(WriteFile("getters", w.Serialize()));
  ASSERT_OK(file);
  const File& f = **file;
  EXPECT_THAT(f.GetString("missing"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("'missing'")));
  EXPECT_THAT(f.GetString("n"), StatusIs(absl::StatusCode::kInvalidArgument,
                                         AllOf(HasSubstr("'n'"), HasSubstr("uint32"))));
  EXPECT_THAT(f.GetInt("s"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(f.GetInt("b"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(f.GetBool("n"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(f.GetFloat("s"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(*f.GetFloat("n"), 7.0);
  EXPECT_EQ(f.GetStringOr("s", "d"), "x");
  EXPECT_EQ(f.GetStringOr("n", "d"), "d");
  EXPECT_EQ(f.GetIntOr("n", 1), 7);
  EXPECT_EQ(f.GetIntOr("missing", 1), 1);
  EXPECT_EQ(f.GetFloatOr("f", 1), 0.25);
  EXPECT_EQ(f.GetFloatOr("s", 1), 1);
  EXPECT_EQ(f.GetBoolOr("b", false), true);
  EXPECT_EQ(f.GetBoolOr("missing", false), false);
}

// The real default model (scripts/fetch_model.sh).
TEST(GgufDefaultModel, MetadataAndTensors) {
  const std::string path = DefaultModelPath();
  if (!std::ifstream(path).good()) GTEST_SKIP() << path << " absent";
  auto file = File::Open(path);
  ASSERT_OK(file);
  const File& f = **file;
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(*f.GetString("general.architecture"), "llama");
  EXPECT_EQ(*f.GetInt("llama.block_count"), 30);
  EXPECT_EQ(*f.GetInt("llama.embedding_length"), 576);
  const Value* tokens = f.Find("tokenizer.ggml.tokens");
  ASSERT_NE(tokens, nullptr);
  EXPECT_EQ(tokens->elem_type, ValueType::kString);
  EXPECT_EQ(tokens->ArraySize(), 49152u);
  EXPECT_EQ(f.tensors().size(), 272u);
  const TensorInfo* embd = f.FindTensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_EQ(embd->dims, (std::vector<int64_t>{576, 49152}));
  uint64_t total = 0;
  for (const TensorInfo& t : f.tensors()) {
    EXPECT_EQ(t.offset % f.alignment(), 0u) << t.name;
    EXPECT_LE(t.offset + t.nbytes, f.file_size()) << t.name;
    EXPECT_EQ(t.nbytes, GgmlRowSize(t.type, t.dims[0]) * (t.NumElements() / t.dims[0]))
        << t.name;
    total += t.nbytes;
  }
  EXPECT_GT(total, f.file_size() / 2);
  // The first embedding row dequantizes to small finite numbers.
  const GgmlTypeTraits& traits = GetGgmlTypeTraits(embd->type);
  ASSERT_TRUE(traits.supported) << traits.name;
  std::vector<float> row(576);
  traits.dequantize(embd->data, row.data(), 576);
  for (float x : row) {
    ASSERT_TRUE(std::isfinite(x));
    ASSERT_LT(std::fabs(x), 100.0f);
  }
}

// ---------------------------------------------------------------------------------
// Corrupt files: INVALID_ARGUMENT with the path, the place and the offset; no crash.

::testing::Matcher<absl::Status> Invalid(const std::string& path,
                                         const std::string& substr) {
  return StatusIs(absl::StatusCode::kInvalidArgument,
                  AllOf(HasSubstr(path), HasSubstr(substr), HasSubstr("byte offset")));
}

absl::Status OpenStatus(const std::string& path) { return File::Open(path).status(); }

TEST(GgufCorrupt, MissingFileIsNotFound) {
  const std::string path = TempPath("does_not_exist");
  EXPECT_THAT(File::Open(path),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(path)));
}

TEST(GgufCorrupt, DirectoryAndEmptyFile) {
  EXPECT_THAT(File::Open(::testing::TempDir()),
              StatusIs(absl::StatusCode::kInvalidArgument));
  const std::string path = WriteFile("empty", "");
  EXPECT_THAT(OpenStatus(path), Invalid(path, "truncated"));
}

TEST(GgufCorrupt, EveryPrefixIsRejectedWithoutCrashing) {
  const std::string bytes = SmallFile();
  auto whole = File::Open(WriteFile("whole", bytes));
  ASSERT_OK(whole);
  // Past the end of the last tensor's data only alignment padding is cut.
  const TensorInfo& last = (*whole)->tensors().back();
  const uint64_t needed = last.offset + last.nbytes;
  const std::string path = TempPath("prefix");
  for (size_t n = 0; n < bytes.size(); ++n) {
    std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), n);
    const absl::Status s = OpenStatus(path);
    if (n < needed) {
      ASSERT_THAT(s, Invalid(path, "")) << "prefix " << n;
    } else {
      ASSERT_TRUE(s.ok() || s.code() == absl::StatusCode::kInvalidArgument) << s;
    }
  }
}

// The real model cut inside the metadata (tokenizer arrays), the tensor infos and the
// tensor data: each gives INVALID_ARGUMENT, never a crash.
TEST(GgufCorrupt, DefaultModelTruncated) {
  const std::string model = DefaultModelPath();
  std::ifstream in(model, std::ios::binary);
  if (!in.good()) GTEST_SKIP() << model << " absent";
  auto file = File::Open(model);
  ASSERT_OK(file);
  const uint64_t data_start = (*file)->tensors().front().offset;
  const uint64_t size = (*file)->file_size();
  std::vector<uint64_t> cuts = {0, 3, 8, 23, 24, 100, 1000, data_start - 1, size - 1};
  std::mt19937_64 rng(7);
  for (int i = 0; i < 40; ++i) cuts.push_back(rng() % data_start);
  for (int i = 0; i < 3; ++i) cuts.push_back(data_start + rng() % (size - data_start));
  std::string bytes(size, '\0');
  in.read(bytes.data(), size);
  const std::string path = TempPath("model_prefix");
  for (uint64_t n : cuts) {
    std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), n);
    ASSERT_THAT(OpenStatus(path), Invalid(path, "")) << "cut at " << n;
  }
  std::remove(path.c_str());
}

TEST(GgufCorrupt, ByteFlipsNeverCrash) {
  const std::string bytes = SmallFile();
  const std::string path = TempPath("flip");
  int rejected = 0;
  for (size_t at = 0; at < bytes.size(); ++at) {
    for (uint8_t value : {0x00, 0x7f, 0x80, 0xff}) {
      std::string b = bytes;
      if (static_cast<uint8_t>(b[at]) == value) continue;
      b[at] = static_cast<char>(value);
      std::ofstream(path, std::ios::binary | std::ios::trunc).write(b.data(), b.size());
      const absl::Status s = OpenStatus(path);
      ASSERT_TRUE(s.ok() || s.code() == absl::StatusCode::kInvalidArgument)
          << "byte " << at << " = " << int{value} << ": " << s;
      rejected += !s.ok();
    }
  }
  EXPECT_GT(rejected, 100);
}

TEST(GgufCorrupt, BadMagic) {
  std::string b = SmallFile();
  b[0] = 'X';
  const std::string path = WriteFile("magic", b);
  EXPECT_THAT(OpenStatus(path), Invalid(path, "bad magic"));
}

TEST(GgufCorrupt, Versions) {
  std::string b = SmallFile();
  Patch<uint32_t>(b, 4, 1);
  std::string path = WriteFile("v1", b);
  EXPECT_THAT(OpenStatus(path), Invalid(path, "version 1 is not supported"));
  Patch<uint32_t>(b, 4, 4);
  path = WriteFile("v4", b);
  EXPECT_THAT(OpenStatus(path), Invalid(path, "unsupported GGUF version 4"));
  Patch<uint32_t>(b, 4, 0x03000000);
  path = WriteFile("big_endian", b);
  EXPECT_THAT(OpenStatus(path), Invalid(path, "big-endian"));
}

TEST(GgufCorrupt, HugeCounts) {
  std::string b = SmallFile();
  Patch<uint64_t>(b, 16, uint64_t{1} << 62);
  std::string path = WriteFile("kv_count", b);
  EXPECT_THAT(OpenStatus(path), Invalid(path, "metadata count"));
  b = SmallFile();
  Patch<uint64_t>(b, 8, ~uint64_t{0});
  path = WriteFile("tensor_count", b);
  EXPECT_THAT(OpenStatus(path), Invalid(path, "tensor count"));
}

TEST(GgufCorrupt, StringLengthBeyondFile) {
  Writer w;
  w.AddString("key", "value");
  std::string b = w.Serialize();
  // key length at 24, key at 32, type at 35, value length at 39.
  Patch<uint64_t>(b, 39, 1000000);
  std::string path = WriteFile("value", b);
  EXPECT_THAT(OpenStatus(path),
              Invalid(path, "key 'key': string length 1000000 exceeds"));
  Patch<uint64_t>(b, 24, ~uint64_t{0});
  path = WriteFile("key", b);
  EXPECT_THAT(OpenStatus(path), Invalid(path, "metadata pair 0: key length"));
}

TEST(GgufCorrupt, UnknownValueType) {
  Writer w;
  w.AddUint32("k", 1);
  std::string b = w.Serialize();
  Patch<uint32_t>(b, kHeaderSize + 8 + 1, 99);
  std::string path = WriteFile("type", b);
  EXPECT_THAT(OpenStatus(path), Invalid(path, "key 'k': unknown value type 99"));
  w = Writer();
  w.Add("arr", IntArray(ValueType::kInt32, {1}));
  b = w.Serialize();
  Patch<uint32_t>(b, kHeaderSize + 8 + 3 + 4, 13);
  path = WriteFile("elem_type", b);
  EXPECT_THAT(OpenStatus(path),
              Invalid(path, "key 'arr': unknown array element type 13"));
}

TEST(GgufCorrupt, ArrayCountAndNesting) {
  Writer w;
  w.AddStringArray("toks", {"a", "b"});
  std::string b = w.Serialize();
  Patch<uint64_t>(b, kHeaderSize + 8 + 4 + 4 + 4, uint64_t{1} << 40);
  std::string path = WriteFile("count", b);
  EXPECT_THAT(OpenStatus(path), Invalid(path, "key 'toks': array of 1099511627776"));

  // The error names the element that failed: cut inside the second string.
  w = Writer();
  w.AddStringArray("toks", {"a", std::string(100, 'b')});
  b = w.Serialize();
  b.resize(kHeaderSize + 8 + 4 + 4 + 4 + 8 + 9 + 8 + 10);
  path = WriteFile("element", b);
  EXPECT_THAT(OpenStatus(path), Invalid(path, "key 'toks'[1]: string length 100"));

  Value deep = IntArray(ValueType::kUint8, {1});
  for (int i = 0; i < 20; ++i) {
    Value outer;
    outer.type = ValueType::kArray;
    outer.elem_type = ValueType::kArray;
    outer.arrays.push_back(std::move(deep));
    deep = std::move(outer);
  }
  w = Writer();
  w.Add("deep", deep);
  path = WriteFile("deep", w.Serialize());
  EXPECT_THAT(OpenStatus(path), Invalid(path, "nested deeper"));
}

TEST(GgufCorrupt, DuplicateKeysAndTensors) {
  Writer w;
  w.AddUint32("k", 1);
  w.AddUint32("k", 2);
  std::string path = WriteFile("key", w.Serialize());
  EXPECT_THAT(OpenStatus(path), Invalid(path, "key 'k': duplicate key"));
  w = Writer();
  w.AddTensor("t", GgmlType::kF32, {1}, "abcd");
  w.AddTensor("t", GgmlType::kF32, {1}, "abcd");
  path = WriteFile("tensor", w.Serialize());
  EXPECT_THAT(OpenStatus(path), Invalid(path, "tensor 't': duplicate tensor"));
}

TEST(GgufCorrupt, BadTensorInfos) {
  Writer w;
  w.AddTensor("unknown", static_cast<GgmlType>(4), {32}, std::string(18, '\0'));
  std::string path = WriteFile("type", w.Serialize());
  EXPECT_THAT(OpenStatus(path), Invalid(path, "tensor 'unknown': unknown tensor type 4"));

  w = Writer();
  w.AddTensor("big", GgmlType::kF32, {int64_t{1} << 40, int64_t{1} << 40}, "");
  path = WriteFile("overflow", w.Serialize());
  EXPECT_THAT(OpenStatus(path), Invalid(path, "tensor 'big': element count overflows"));

  w = Writer();
  w.AddTensor("neg", GgmlType::kF32, {-1}, "");
  path = WriteFile("negative", w.Serialize());
  EXPECT_THAT(OpenStatus(path), Invalid(path, "tensor 'neg': dims[0]"));

  w = Writer();
  w.AddTensor("five", GgmlType::kF32, {1, 1, 1, 1, 1}, "abcd");
  path = WriteFile("n_dims", w.Serialize());
  EXPECT_THAT(OpenStatus(path), Invalid(path, "tensor 'five': n_dims 5"));

  w = Writer();
  w.AddTensor("ragged", GgmlType::kQ4_0, {33}, std::string(18, '\0'));
  path = WriteFile("block", w.Serialize());
  EXPECT_THAT(OpenStatus(path), Invalid(path, "q4_0 block size 32"));
}

TEST(GgufCorrupt, TensorDataPastEndAndMisaligned) {
  Writer w;
  w.AddTensor("a", GgmlType::kF32, {8}, std::string(32, '\1'));
  w.AddTensor("b", GgmlType::kF32, {8}, std::string(32, '\2'));
  const std::string good = w.Serialize();
  // Tensor infos: "a" at 24: len 8, name 1, n_dims 4, dim 8, type 4, offset 8.
  const size_t offset_a = kHeaderSize + 8 + 1 + 4 + 8 + 4;
  const size_t offset_b = offset_a + 8 + 8 + 1 + 4 + 8 + 4;

  std::string b = good;
  b.resize(b.size() - 32);
  std::string path = WriteFile("short", b);
  EXPECT_THAT(OpenStatus(path), Invalid(path, "tensor 'b': data"));
  EXPECT_THAT(OpenStatus(path), Invalid(path, "past the end"));

  b = good;
  Patch<uint64_t>(b, offset_b, uint64_t{1} << 60);
  path = WriteFile("far", b);
  EXPECT_THAT(OpenStatus(path), Invalid(path, "tensor 'b': data"));

  b = good;
  Patch<uint64_t>(b, offset_a, 4);
  path = WriteFile("misaligned", b);
  EXPECT_THAT(OpenStatus(path),
              Invalid(path, "tensor 'a': data offset 4 is not a multiple of the alignment 32"));
  EXPECT_THAT(OpenStatus(path), Invalid(path, "byte offset " + std::to_string(offset_a)));
}

TEST(GgufCorrupt, BadAlignment) {
  for (uint32_t a : {0u, 3u, 48u}) {
    Writer w;
    w.AddUint32("general.alignment", a);
    const std::string path = WriteFile("align" + std::to_string(a), w.Serialize());
    EXPECT_THAT(OpenStatus(path), Invalid(path, "key 'general.alignment'"));
  }
  Writer w;
  w.AddString("general.alignment", "32");
  const std::string path = WriteFile("align_string", w.Serialize());
  EXPECT_THAT(OpenStatus(path), Invalid(path, "must be an integer"));
}

}  // namespace
}  // namespace ingot::gguf
