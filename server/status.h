// The one place where engine statuses become gRPC statuses.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace ingot::server {

// absl::Status -> grpc::Status, code for code, message kept. Every handler goes
// through this; none builds a grpc::Status from an engine error by hand.
grpc::Status ToGrpcStatus(const absl::Status& status);

// "OK", "NOT_FOUND", ...: the name used in logs and in metric labels.
const char* GrpcCodeName(grpc::StatusCode code);

}  // namespace ingot::server
