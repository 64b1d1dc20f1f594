// OutputComparison: sums in double so long streams do not lose precision.
#include "quant/metrics.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>

namespace quantkit::quant {

Status OutputComparison::Add(const Tensor& ref, const Tensor& cand) {
  if (ref.numel() != cand.numel()) {
    return InvalidArgument(fmt::format("outputs differ in size: reference {} vs candidate {}", ShapeToString(ref.shape()),
                                       ShapeToString(cand.shape())));
  }
  elements_ += ref.numel();
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const double r = ref.GetAsDouble(i), c = cand.GetAsDouble(i);
    if (std::isnan(r) || std::isnan(c)) {
      nan_mismatch_ |= std::isnan(r) != std::isnan(c);
      continue;
    }
    const double d = r - c;
    signal_ += r * r;
    noise_ += d * d;
    dot_ += r * c;
    ref_sq_ += r * r;
    cand_sq_ += c * c;
    max_abs_ = std::max(max_abs_, std::fabs(d));
  }
  if (ref.rank() >= 2 && ref.shape().back() > 1 && ref.shape() == cand.shape()) {
    const int64_t cols = ref.shape().back();
    const int64_t rows = ref.numel() / cols;
    for (int64_t row = 0; row < rows; ++row) {
      int64_t ar = 0, ac = 0;
      for (int64_t k = 1; k < cols; ++k) {
        if (ref.GetAsDouble(row * cols + k) > ref.GetAsDouble(row * cols + ar)) ar = k;
        if (cand.GetAsDouble(row * cols + k) > cand.GetAsDouble(row * cols + ac)) ac = k;
      }
      agree_ += ar == ac;
      ++rows_;
    }
  }
  return Status::Ok();
}

double OutputComparison::sqnr_db() const {
  if (nan_mismatch_) return -std::numeric_limits<double>::infinity();
  if (noise_ == 0) return std::numeric_limits<double>::infinity();
  if (signal_ == 0) return -std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(signal_ / noise_);
}

double OutputComparison::cosine() const {
  if (ref_sq_ == 0 && cand_sq_ == 0) return 1.0;
  if (ref_sq_ == 0 || cand_sq_ == 0) return 0.0;
  return dot_ / (std::sqrt(ref_sq_) * std::sqrt(cand_sq_));
}

}  // namespace quantkit::quant
