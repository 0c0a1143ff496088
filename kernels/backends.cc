// The backend rows compiled into this binary. INGOT_WITH_TORCH is defined for this file
// when the torch row (kernels/torch) is built.
#include "kernels/backend.h"

namespace ingot::kernels {

#ifdef INGOT_WITH_TORCH
const Backend& TorchBackend();  // kernels/torch/torch_backend.cc
#endif

int64_t StepShape::Cols(Buf b) const {
  switch (b) {
    case Buf::kX:
    case Buf::kXn:
    case Buf::kProj:
    case Buf::kHidden: return n_embd;
    case Buf::kQ:
    case Buf::kAttn: return q_dim();
    case Buf::kK:
    case Buf::kV: return kv_dim();
    case Buf::kGate:
    case Buf::kUp: return n_ff;
    case Buf::kLogits: return vocab;
  }
  return 0;
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
