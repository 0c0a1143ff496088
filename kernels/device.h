// Devices as data (DESIGN.md decision 3): a model is pinned to one of these through a
// backend (kernels/backend.h). This is the one parser of device names; which devices
// exist on this machine and build is the backends' answer (engine/runtime/device.h).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace ingot::kernels {

enum class DeviceKind : uint8_t {
  kCpu,   // "cpu"
  kCuda,  // "cuda:N" ("cuda" = "cuda:0")
  kMps,   // "mps": Apple GPUs, named so a request gets a reason, never available here
  kMlx,   // "mlx": Apple MLX, likewise
};
const char* DeviceKindName(DeviceKind kind);

struct Device {
  DeviceKind kind = DeviceKind::kCpu;
  int32_t index = 0;  // cuda ordinal; 0 elsewhere
  // "cpu", "cuda:1", "mps", "mlx": the canonical spelling.
  std::string Name() const;
  bool operator==(const Device& o) const { return kind == o.kind && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
};

// "cpu", "cuda", "cuda:N", "mps", "mlx" (case-sensitive; empty means cpu).
// INVALID_ARGUMENT names anything else and lists the accepted spellings.
absl::StatusOr<Device> ParseDevice(std::string_view name);

}  // namespace ingot::kernels
