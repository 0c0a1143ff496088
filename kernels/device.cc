#include "kernels/device.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace ingot::kernels {

const char* DeviceKindName(DeviceKind kind) {
  switch (kind) {
    case DeviceKind::kCpu: return "cpu";
    case DeviceKind::kCuda: return "cuda";
    case DeviceKind::kMps: return "mps";
    case DeviceKind::kMlx: return "mlx";
  }
  return "unknown";
}

std::string Device::Name() const {
  if (kind == DeviceKind::kCuda) return absl::StrCat("cuda:", index);
  return DeviceKindName(kind);
}

absl::StatusOr<Device> ParseDevice(std::string_view name) {
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "device \"", std::string(name), "\" is not a device name; use cpu, cuda:N (N >= 0), mps or mlx"));
  };
  if (name.empty() || name == "cpu") return Device{DeviceKind::kCpu, 0};
  if (name == "mps") return Device{DeviceKind::kMps, 0};
  if (name == "mlx") return Device{DeviceKind::kMlx, 0};
  if (name == "cuda") return Device{DeviceKind::kCuda, 0};
  if (name.substr(0, 5) == "cuda:") {
    std::string_view digits = name.substr(5);
    int32_t index = -1;
    // SimpleAtoi accepts "+1" and " 1"; a device ordinal is plain digits.
    if (digits.empty() || digits.size() > 4 || digits.find_first_not_of("0123456789") != std::string_view::npos ||
        !absl::SimpleAtoi(std::string(digits), &index)) {
      return bad();
    }
    return Device{DeviceKind::kCuda, index};
  }
  return bad();
}

}  // namespace ingot::kernels
