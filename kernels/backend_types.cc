// The plain parts of the backend table (kernels/backend.h) that the rows share: step
// buffer shapes and KV row sizes. In ingot_kernels, so the native row links without
// the table of rows (kernels/backends.cc).
#include "kernels/backend.h"
#include "kernels/ggml_types.h"

namespace ingot::kernels {

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

const char* KvDtypeName(KvDtype d) {
  switch (d) {
    case KvDtype::kF32: return "f32";
    case KvDtype::kF16: return "f16";
    case KvDtype::kQ8_0: return "q8_0";
  }
  return "?";
}

int64_t KvRowBytes(KvDtype d, int32_t kv_dim) {
  switch (d) {
    case KvDtype::kF32: return int64_t{4} * kv_dim;
    case KvDtype::kF16: return int64_t{2} * kv_dim;
    case KvDtype::kQ8_0: return static_cast<int64_t>(kv_dim / kQK8_0) * static_cast<int64_t>(sizeof(BlockQ8_0));
  }
  return 0;
}

}  // namespace ingot::kernels
