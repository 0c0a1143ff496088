// spdlog set-up for ingotd: one stderr logger, plain or one JSON object per line.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace ingot::server {

// `level`: trace, debug, info, warn, error, critical or off. INVALID_ARGUMENT for
// another value. With `json`, each line is {"ts","level","thread","msg"}.
absl::Status ConfigureLogging(const std::string& level, bool json);

}  // namespace ingot::server
