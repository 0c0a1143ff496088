// libFuzzer target: NpzFile::Open (.npy or .npz, stored or deflated) on arbitrary bytes.
#include <cstddef>
#include <cstdint>

#include "engine/formats/npz.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ingot::formats;
  auto f = NpzFile::Open(ingot::fuzz::WriteInput(data, size));
  if (!f.ok()) return 0;
  volatile uint64_t sink = 0;
  for (const TensorView& t : (*f)->tensors()) {
    if (static_cast<uint64_t>(t.numel()) * DTypeSize(t.dtype) != t.nbytes) __builtin_trap();
    sink = sink + ingot::fuzz::Touch(t.data, t.nbytes);
  }
  return 0;
}
