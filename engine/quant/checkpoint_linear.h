// Linear layers read from a checkpoint in the layout the tool that wrote it uses,
// mapped onto ingot's representations (kernels/cpu/qmatrix.h) without dequantizing:
//   dense f32/f16/bf16          -> kGgml F32/F16/BF16, in place
//   bitsandbytes 4-bit          -> kCodebook (nf4/fp4, nested absmax), in place
//   bitsandbytes LLM.int8       -> kAffine 8-bit rows (zero 128) + outlier threshold
//   GPTQ (AutoGPTQ/GPTQModel)   -> kAffine k-bit groups, integer zeros
//   AWQ GEMM                    -> kAffine k-bit groups, integer zeros
//   MLX                         -> kAffine k-bit groups with bias, codes in place
//   HQQ                         -> kAffine k-bit groups, float zeros
//   optimum-quanto              -> kAffine (int8 rows; int2/int4 groups with shift)
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "engine/model/checkpoint.h"
#include "engine/model/llama.h"

namespace ingot::quant {

// A loader for LlamaModel::FromCheckpoint over `checkpoint` (kept alive by the loads).
LinearLoader CheckpointLinearLoader(std::shared_ptr<const Checkpoint> checkpoint);

}  // namespace ingot::quant
