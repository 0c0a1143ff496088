// .npy / .npz reader: files written by numpy.save / savez / savez_compressed
// (tests/reference/gen_containers.py; expected bytes from numpy in expected.json), the
// arrays numpy can write but ingot refuses (Fortran order, big-endian, complex), and
// files corrupted here, which must give INVALID_ARGUMENT naming the file and array.
#include "engine/formats/npz.h"

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
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

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string WriteFile(const std::string& name, const std::string& bytes) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string path = ::testing::TempDir() + "npz_" + info->name() + "_" + name;
  std::ofstream(path, std::ios::binary).write(bytes.data(), bytes.size());
  return path;
}

void ReplaceAll(std::string& s, const std::string& from, const std::string& to) {
  ASSERT_EQ(from.size(), to.size());
  size_t n = 0;
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + 1)) {
    s.replace(at, from.size(), to);
    ++n;
  }
  ASSERT_GT(n, 0u) << from;
}

void ExpectArraysMatch(const NpzFile& f, const nlohmann::json& want) {
  ASSERT_EQ(f.tensors().size(), want.size());
  for (const TensorView& t : f.tensors()) {
    SCOPED_TRACE(t.name);
    ASSERT_TRUE(want.contains(t.name));
    const nlohmann::json& w = want[t.name];
    EXPECT_EQ(DTypeName(t.dtype), w["dtype"].get<std::string>());
    EXPECT_EQ(t.shape, w["shape"].get<std::vector<int64_t>>());
    EXPECT_EQ(t.nbytes, static_cast<size_t>(t.numel()) * DTypeSize(t.dtype));
    EXPECT_EQ(Hex(t.data, t.nbytes), w["hex"].get<std::string>());
    EXPECT_EQ(f.Find(t.name), &t);
  }
  EXPECT_EQ(f.Find("absent"), nullptr);
}

TEST(NpzTest, SavezStoredAndCompressed) {
  for (const char* name : {"arrays.npz", "arrays_compressed.npz"}) {
    SCOPED_TRACE(name);
    auto f = NpzFile::Open(SourcePath(kDir + name));
    ASSERT_OK(f);
    ExpectArraysMatch(**f, Expected(name)["arrays"]);
    EXPECT_EQ((*f)->Find("scalar")->shape.size(), 0u);
    EXPECT_EQ((*f)->Find("empty")->numel(), 0);
    EXPECT_NE((*f)->Find("arr_0"), nullptr);  // positional savez argument
  }
}

TEST(NpzTest, SingleNpy) {
  auto f = NpzFile::Open(SourcePath(kDir + "single.npy"));
  ASSERT_OK(f);
  ExpectArraysMatch(**f, Expected("single.npy")["arrays"]);
}

TEST(NpzTest, RefusesWhatItCannotRepresent) {
  struct Case {
    const char* file;
    const char* message;
  };
  const Case cases[] = {
      {"fortran.npy", "array 'fortran': fortran_order is True"},
      {"big_endian.npy", "array 'big_endian': big-endian dtype '>f4'"},
      {"complex.npy", "array 'complex': dtype '<c8' is not supported"},
      {"dtypes.safetensors", "neither a .npy file"},
  };
  for (const Case& c : cases) {
    const std::string path = SourcePath(kDir + c.file);
    EXPECT_THAT(NpzFile::Open(path), StatusIs(absl::StatusCode::kInvalidArgument,
                                              AllOf(HasSubstr(path), HasSubstr(c.message))));
  }
  EXPECT_THAT(NpzFile::Open(SourcePath(kDir + "absent.npz")),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(NpzTest, MalformedNpyHeaders) {
  const std::string good = ReadAll(SourcePath(kDir + "single.npy"));
  const size_t header_len = static_cast<uint8_t>(good[8]) | static_cast<uint8_t>(good[9]) << 8;
  const std::string header = good.substr(10, header_len);
  auto with_header = [&](std::string h) {
    h.resize(header_len, ' ');
    return WriteFile("h.npy", good.substr(0, 10) + h + good.substr(10 + header_len));
  };
  struct Case {
    std::string header;
    std::string message;
  };
  const Case cases[] = {
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", "needs 24 bytes of data, 16 present"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, -2), }", "non-integer dimension"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", "out of range"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", "overflows"},
      // Empty, but the other dimensions overflow (found by tests/fuzz/npz_fuzzer).
      {"{'descr': '=f4', 'fortran_order': False, 'shape': (15, 84544, 62734, 0, 84544, 310, 84), }",
       "overflows"},
      {"{'descr': '<f4', 'fortran_order': False, }", "needs the keys"},
      {"{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2, 2), }", "not True or False"},
      {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", "structured"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), 'x': 1}", "unexpected key 'x'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2) ", "expected ',' or '}'"},
      {"{'descr' '<f4', 'fortran_order': False, 'shape': (2, 2) }", "expected ':'"},
      {"['descr']", "expected '{'"},
      {"{'descr': '|O', 'fortran_order': False, 'shape': (2, 2), }", "dtype '|O'"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.header);
    const std::string path = with_header(c.header);
    EXPECT_THAT(NpzFile::Open(path),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr(path), HasSubstr("array 'npz_MalformedNpyHeaders_h'"),
                               HasSubstr(c.message))));
  }
  // The unmodified header through the same path reads (the cases above are the only change).
  ASSERT_OK(NpzFile::Open(with_header(header)));
  std::string v9 = good;
  v9[6] = 9;
  EXPECT_THAT(NpzFile::Open(WriteFile("v9.npy", v9)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("version 9.0")));
  std::string long_header = good;
  long_header[9] = '\x7f';
  EXPECT_THAT(NpzFile::Open(WriteFile("long.npy", long_header)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("runs past the end")));
}

TEST(NpzTest, EveryTruncationIsRejected) {
  for (const char* name : {"single.npy", "arrays.npz", "arrays_compressed.npz"}) {
    const std::string good = ReadAll(SourcePath(kDir + name));
    const size_t step = good.size() < 1000 ? 1 : 17;  // file writes are slow here
    for (size_t n = 0; n < good.size(); n += step) {
      const std::string path = WriteFile("cut", good.substr(0, n));
      EXPECT_THAT(NpzFile::Open(path),
                  StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(path)))
          << name << " cut at " << n;
    }
  }
}

TEST(NpzTest, DamagedArchivesNameTheMember) {
  // A member that is not .npy (renamed in both the local and the central header).
  std::string bytes = ReadAll(SourcePath(kDir + "arrays.npz"));
  ReplaceAll(bytes, "f32.npy", "f32.txt");
  std::string path = WriteFile("renamed.npz", bytes);
  EXPECT_THAT(NpzFile::Open(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(path), HasSubstr("member 'f32.txt'"))));
  // A member whose local header names another entry.
  bytes = ReadAll(SourcePath(kDir + "arrays.npz"));
  const size_t local = bytes.find("f32.npy");
  bytes.replace(local, 7, "f33.npy");
  path = WriteFile("local.npz", bytes);
  EXPECT_THAT(NpzFile::Open(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("entry 'f32.npy'"), HasSubstr("names another entry"))));
  // Corrupt deflate data in one member: the zip layer names it.
  auto zip = ZipArchive::Open(SourcePath(kDir + "arrays_compressed.npz"));
  ASSERT_OK(zip);
  const ZipEntry* e = (*zip)->Find("f64.npy");
  ASSERT_NE(e, nullptr);
  ASSERT_EQ(e->method, 8);
  bytes = ReadAll(SourcePath(kDir + "arrays_compressed.npz"));
  for (uint64_t i = 0; i < e->compressed_size; ++i) bytes[e->data_offset + i] ^= 0x5a;
  path = WriteFile("deflate.npz", bytes);
  EXPECT_THAT(NpzFile::Open(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(path), HasSubstr("entry 'f64.npy'"))));
  // A single flipped bit in the inflated data is caught by the CRC.
  bytes = ReadAll(SourcePath(kDir + "arrays_compressed.npz"));
  const size_t crc_at = e->local_header_offset + 14;
  bytes[crc_at] ^= 1;
  // Patch the central directory's copy too (the local one is not read).
  const std::string central_sig("PK\x01\x02", 4);
  for (size_t at = bytes.find(central_sig); at != std::string::npos;
       at = bytes.find(central_sig, at + 1)) {
    if (bytes.compare(at + 46, 7, "f64.npy") == 0) bytes[at + 16] ^= 1;
  }
  path = WriteFile("crc.npz", bytes);
  EXPECT_THAT(NpzFile::Open(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("entry 'f64.npy'"), HasSubstr("CRC-32"))));
}

}  // namespace
}  // namespace ingot::formats
