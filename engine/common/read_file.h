// The whole of a small file the operator names: the server's config file, its TLS
// certificates and keys, the auth tokens file, the Hugging Face cache's refs files,
// and the CLI's --tls-* / --grammar / --text files. One reader, so every caller reports
// a failure the same way: "cannot read '<path>' (<strerror text>)", which the caller
// prefixes with the config key or flag that named the file.
//
// Not for files a client names: model checkpoints, calibration files and anything else
// read on a request go through engine/formats/file_access.h (ReadFileBounded,
// OpenRegularFile), which checks the model roots, refuses FIFOs and devices and bounds
// the size. Operator files are trusted to be what the operator says they are.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace ingot {

// The file's bytes. On failure the code follows errno (NOT_FOUND for a missing file,
// PERMISSION_DENIED, FAILED_PRECONDITION for a directory, ...) and the message is
// "cannot read '<path>' (<strerror(errno)>)".
absl::StatusOr<std::string> ReadFile(const std::string& path);

}  // namespace ingot
