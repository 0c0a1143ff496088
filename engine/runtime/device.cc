#include "engine/runtime/device.h"

#include "absl/strings/str_cat.h"
#include "engine/common/status.h"

namespace ingot {

using kernels::Backend;
using kernels::Backends;
using kernels::Device;
using kernels::DeviceKind;

namespace {

// OK when some row serves `device`; otherwise the most specific refusal (a row that
// knows the device kind says more than native's "cpu only").
absl::Status Serveable(const Device& device) {
  if (device.kind == DeviceKind::kMps || device.kind == DeviceKind::kMlx) {
    return absl::FailedPreconditionError(absl::StrCat(
        "device ", device.Name(), " is not available: Apple MPS/MLX devices are not part of this Linux build"));
  }
  absl::Status best = absl::FailedPreconditionError(absl::StrCat(
      "device ", device.Name(), " is not available: this ingotd was built without CUDA (and without the torch "
      "backend that serves cuda:N; configure with -DINGOT_CUDA=ON)"));
  for (const Backend* b : Backends()) {
    absl::Status s = b->available(device);
    if (s.ok()) return s;
    if (std::string(b->name) != "native") best = s;
  }
  return best;
}

}  // namespace

absl::StatusOr<quant::DeviceCaps> ResolveDevice(const std::string& name) {
  ASSIGN_OR_RETURN(Device device, kernels::ParseDevice(name));
  quant::DeviceCaps caps;
  caps.device = device;
  caps.name = device.Name();
  caps.kind = device.kind;
  absl::Status s = Serveable(device);
  caps.available = s.ok();
  caps.reason = std::string(s.message());
  return caps;
}

absl::StatusOr<const Backend*> ChooseBackend(const std::string& backend, const Device& device) {
  const Backend* row = nullptr;
  if (backend.empty() || backend == "auto") {
    if (device.kind == DeviceKind::kCpu) return &kernels::NativeBackend();
    RETURN_IF_ERROR(Serveable(device));
    for (const Backend* b : Backends()) {
      if (b->available(device).ok()) return b;
    }
    return absl::InternalError("no backend serves " + device.Name());
  }
  if (backend != "native" && backend != "torch") {
    return absl::InvalidArgumentError(
        absl::StrCat("backend '", backend, "' is not one of auto, native, torch"));
  }
  if (device.kind == DeviceKind::kMps || device.kind == DeviceKind::kMlx) return Serveable(device);
  row = kernels::FindBackend(backend);
  if (row == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("backend ", backend, " is not built into this ingotd (configure with -DINGOT_TORCH=ON)"));
  }
  RETURN_IF_ERROR(row->available(device));
  return row;
}

std::vector<DeviceReport> ListDevices() {
  std::vector<Device> devices;
  auto add = [&](const Device& d) {
    for (const Device& e : devices) {
      if (e == d) return;
    }
    devices.push_back(d);
  };
  for (const Backend* b : Backends()) {
    for (const Device& d : b->devices()) add(d);
  }
  add(Device{DeviceKind::kCuda, 0});  // named even when no row knows CUDA, with the reason
  add(Device{DeviceKind::kMps, 0});
  add(Device{DeviceKind::kMlx, 0});
  std::vector<DeviceReport> out;
  for (const Device& d : devices) {
    DeviceReport r;
    r.device = d;
    for (const Backend* b : Backends()) {
      if (!b->available(d).ok()) continue;
      r.backends.push_back(b->name);
      if (!r.available) {
        absl::StatusOr<kernels::MemoryStats> m = b->memory(d);
        if (m.ok()) r.memory = *m;
      }
      r.available = true;
    }
    if (!r.available) r.reason = std::string(Serveable(d).message());
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace ingot
