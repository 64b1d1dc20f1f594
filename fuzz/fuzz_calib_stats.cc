// Fuzz target: text -> calibration statistics reader (CalibrationStatsFromJson). Statistics that
// load must give ranges for every method without crashing, and must save and load back.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "quantkit/calibration.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto stats = quantkit::CalibrationStatsFromJson(text, "fuzz.json");
  if (!stats.ok()) return 0;
  for (auto method : {quantkit::CalibrationMethod::kMinMax, quantkit::CalibrationMethod::kMovingAverage,
                      quantkit::CalibrationMethod::kPercentile, quantkit::CalibrationMethod::kEntropy,
                      quantkit::CalibrationMethod::kMse}) {
    quantkit::RangeOptions ranges = stats->settings.ranges;
    ranges.method = method;
    (void)quantkit::ComputeRanges(*stats, ranges);
  }
  auto again = quantkit::CalibrationStatsFromJson(quantkit::CalibrationStatsToJson(*stats), "again.json");
  if (!again.ok()) std::abort();  // what was accepted must survive a save/load round trip
  return 0;
}
