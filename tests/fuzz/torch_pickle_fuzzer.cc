// libFuzzer target: TorchCheckpoint::Open. An input starting with "PK" is taken as a
// whole archive (fuzzing the ZIP layer); anything else is taken as data.pkl and wrapped
// in a stored archive with byteorder and four 64-byte storage records data/0..data/3
// (fuzzing the pickle machine and tensor resolution, which archive-level mutations
// rarely reach).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "engine/formats/torch_pickle.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

void Put16(std::string& o, uint16_t v) { o.append(reinterpret_cast<const char*>(&v), 2); }
void Put32(std::string& o, uint32_t v) { o.append(reinterpret_cast<const char*>(&v), 4); }

// Stored ZIP (CRC left 0: the reader does not check stored entries).
std::string StoredZip(const std::vector<std::pair<std::string, std::string>>& entries) {
  std::string out, central;
  for (const auto& [name, data] : entries) {
    const uint32_t offset = static_cast<uint32_t>(out.size());
    Put32(out, 0x04034b50);
    for (int i = 0; i < 5; ++i) Put16(out, 0);
    Put32(out, 0);
    Put32(out, static_cast<uint32_t>(data.size()));
    Put32(out, static_cast<uint32_t>(data.size()));
    Put16(out, static_cast<uint16_t>(name.size()));
    Put16(out, 0);
    out += name + data;
    Put32(central, 0x02014b50);
    for (int i = 0; i < 6; ++i) Put16(central, 0);
    Put32(central, 0);
    Put32(central, static_cast<uint32_t>(data.size()));
    Put32(central, static_cast<uint32_t>(data.size()));
    Put16(central, static_cast<uint16_t>(name.size()));
    for (int i = 0; i < 4; ++i) Put16(central, 0);
    Put32(central, 0);
    Put32(central, offset);
    central += name;
  }
  const uint32_t cd_offset = static_cast<uint32_t>(out.size());
  out += central;
  Put32(out, 0x06054b50);
  Put16(out, 0);
  Put16(out, 0);
  Put16(out, static_cast<uint16_t>(entries.size()));
  Put16(out, static_cast<uint16_t>(entries.size()));
  Put32(out, static_cast<uint32_t>(central.size()));
  Put32(out, cd_offset);
  Put16(out, 0);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ingot::formats;
  std::string path;
  if (size >= 2 && std::memcmp(data, "PK", 2) == 0) {
    path = ingot::fuzz::WriteInput(data, size);
  } else {
    std::vector<std::pair<std::string, std::string>> entries = {
        {"archive/data.pkl", std::string(reinterpret_cast<const char*>(data), size)},
        {"archive/byteorder", "little"}};
    for (int k = 0; k < 4; ++k) {
      entries.emplace_back("archive/data/" + std::to_string(k), std::string(64, char('a' + k)));
    }
    const std::string zip = StoredZip(entries);
    path = ingot::fuzz::WriteInput(reinterpret_cast<const uint8_t*>(zip.data()), zip.size());
  }
  auto ckpt = TorchCheckpoint::Open(path);
  if (!ckpt.ok()) return 0;
  volatile uint64_t sink = (*ckpt)->root().DebugString().size();
  for (const TensorView& t : (*ckpt)->FlattenTensors()) {
    if (static_cast<uint64_t>(t.numel()) * DTypeSize(t.dtype) != t.nbytes) __builtin_trap();
    if ((*ckpt)->FindTensor(t.name) == nullptr) __builtin_trap();
    sink = sink + ingot::fuzz::Touch(t.data, t.nbytes);
  }
  return 0;
}
