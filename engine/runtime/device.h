// Devices and backends as the engine sees them: the one place that turns a device name
// into what this build and machine can do with it (load, quantization validation,
// config checks and GetServerInfo all ask here). Parsing is kernels::ParseDevice;
// availability is the backend rows' answer.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/quant/config.h"
#include "kernels/backend.h"

namespace ingot {

// INVALID_ARGUMENT for a name that is no device; otherwise the device with
// available = false and the reason when no backend of this build can serve it here.
absl::StatusOr<quant::DeviceCaps> ResolveDevice(const std::string& name);

// The backend a load asks for on `device`: "auto" or "" -> native on cpu, torch on
// cuda:N. INVALID_ARGUMENT for an unknown backend name; FAILED_PRECONDITION (with the
// reason) when it is not built in or cannot serve the device.
absl::StatusOr<const kernels::Backend*> ChooseBackend(const std::string& backend, const kernels::Device& device);

struct DeviceReport {
  kernels::Device device;
  bool available = false;
  std::string reason;                 // why not (when no backend can serve it)
  std::vector<std::string> backends;  // rows that can serve it
  kernels::MemoryStats memory;
};
// Every device some backend knows of (cpu first), plus mps and mlx with their reason.
std::vector<DeviceReport> ListDevices();

}  // namespace ingot
