// Small file helpers shared by every writer of output files.
#pragma once

#include <string>

#include "quantkit/status.h"

namespace quantkit {

// Writes bytes to path via a temp file in the same directory + rename: never a partial file.
Status WriteFileAtomically(const std::string& path, const std::string& bytes);

}  // namespace quantkit
