// The backend rows compiled into this binary. INGOT_WITH_TORCH is defined for this file
// when the torch row (kernels/torch) is built.
#include "kernels/backend.h"

namespace ingot::kernels {

#ifdef INGOT_WITH_TORCH
const Backend& TorchBackend();        // kernels/torch/torch_backend.cc
GraphCounts TorchCudaGraphCounts();  // likewise
#endif

GraphCounts CudaGraphCounts() {
#ifdef INGOT_WITH_TORCH
  return TorchCudaGraphCounts();
#else
  return {};
#endif
}

const std::vector<const Backend*>& Backends() {
  static const std::vector<const Backend*> rows = {
      &NativeBackend(),
#ifdef INGOT_WITH_TORCH
      &TorchBackend(),
#endif
  };
  return rows;
}

bool BuiltWithCuda() {
#ifdef INGOT_WITH_CUDA
  return true;
#else
  return false;
#endif
}

const Backend* FindBackend(std::string_view name) {
  for (const Backend* b : Backends()) {
    if (name == b->name) return b;
  }
  return nullptr;
}

BackendWorkspace::~BackendWorkspace() {
  if (ws_ != nullptr) backend_->free_workspace(ws_);
}

void* BackendWorkspace::For(const Backend& backend, const Device& device) {
  if (ws_ != nullptr && backend_ == &backend && device_ == device) return ws_;
  if (ws_ != nullptr) backend_->free_workspace(ws_);
  backend_ = &backend;
  device_ = device;
  ws_ = backend.new_workspace(device);
  return ws_;
}

}  // namespace ingot::kernels
