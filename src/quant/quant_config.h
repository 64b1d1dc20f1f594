// QuantizeOptions as JSON: read from a --config file, written into the output model's
// metadata_props so the exact settings of a result can be reproduced. Keys are the CLI flag names
// with '_' for '-': mode, op_types, exclude, weight_type, per_channel, weight_range,
// activation_granularity, format.
#pragma once

#include <string>

#include "quantkit/quantize.h"
#include "quantkit/status.h"

namespace quantkit::quant {

// Applies the keys present in a JSON object over `options` (absent keys keep their value).
// Unknown keys and wrong types are errors naming `what` (e.g. the file) and the key.
Status ApplyQuantizeConfigJson(const std::string& json_text, const std::string& what, QuantizeOptions* options);
// Reads a JSON config file and applies it over `options`.
Status ApplyQuantizeConfigFile(const std::string& path, QuantizeOptions* options);
// Every setting, as one JSON object (compact, keys sorted).
std::string QuantizeOptionsToJson(const QuantizeOptions& options);
// Records the settings (key "quantkit.quantization", JSON), QUANTKIT_VERSION ("quantkit.version") and
// the input file's sha256 ("quantkit.source_sha256") in metadata_props, replacing earlier values.
void SetQuantizationMetadata(Model& model, const QuantizeOptions& options, const std::string& source_sha256);

}  // namespace quantkit::quant
