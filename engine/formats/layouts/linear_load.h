// One linear layer as a checkpoint layout's reader hands it to the weights loader
// (LoadCheckpointWeights, engine/model/load.h): small on purpose, so engine/model sees
// only this of the layouts (engine/formats/layouts/layout.h has the rows).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/cpu/qmatrix.h"

namespace ingot {

struct LinearLoad {
  kernels::Linear w;
  std::string representation;  // "bf16", "nf4/b64+dq", "affine4/g128", ...
  int64_t bytes = 0;
  std::shared_ptr<const void> owner;  // storage the view points into (null: the checkpoint's)
};
// Builds the linear module `name` (HF naming: "model.layers.3.self_attn.q_proj",
// "lm_head") of shape rows x cols from a checkpoint's tensors.
using LinearLoader =
    std::function<absl::StatusOr<LinearLoad>(const std::string& name, int64_t rows, int64_t cols)>;

}  // namespace ingot
