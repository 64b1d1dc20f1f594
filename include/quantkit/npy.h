// NumPy .npy files: read and write tensors (float32, float16, float64, int8, uint8, int16, uint16,
// int32, uint32, int64, uint64, bool). Readers validate the header fully before allocating.
#pragma once

#include <string>

#include "quantkit/status.h"
#include "quantkit/tensor.h"

namespace quantkit {

StatusOr<Tensor> ReadNpy(const std::string& path);
StatusOr<Tensor> ParseNpy(const std::string& bytes, const std::string& what);
// Writes atomically (temp file + rename).
Status WriteNpy(const Tensor& t, const std::string& path);
std::string SerializeNpy(const Tensor& t);
// A file-system-safe form of a tensor name: characters outside [A-Za-z0-9._-] become '_'
// (outputs are written, and sample inputs found, as <name>.npy).
std::string SafeFileName(const std::string& name);

}  // namespace quantkit
