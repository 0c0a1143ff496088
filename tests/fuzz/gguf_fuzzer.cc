// libFuzzer target: the GGUF reader (engine/formats/gguf.h) on arbitrary bytes.
#include <cstddef>
#include <cstdint>

#include "engine/formats/gguf.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto f = ingot::gguf::File::Open(ingot::fuzz::WriteInput(data, size));
  if (!f.ok()) return 0;
  volatile uint64_t sink = 0;
  for (const auto& [key, value] : (*f)->metadata()) {
    sink = sink + value.ArraySize() + key.size();
    (void)(*f)->GetStringOr(key, "");
    (void)(*f)->GetIntOr(key, 0);
  }
  for (const ingot::gguf::TensorInfo& t : (*f)->tensors()) {
    sink = sink + ingot::fuzz::Touch(t.data, t.nbytes) + t.NumElements();
  }
  return 0;
}
