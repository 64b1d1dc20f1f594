// Label-free accuracy metrics between a reference output (FP32 model) and a candidate output
// (quantized model): SQNR, cosine similarity, max abs error, top-1 agreement.
#pragma once

#include <cstdint>

#include "quantkit/status.h"
#include "quantkit/tensor.h"

namespace quantkit::quant {

// Accumulates over many samples (streaming: constant memory).
class OutputComparison {
 public:
  // Adds one pair of outputs; shapes and element counts must match.
  Status Add(const Tensor& reference, const Tensor& candidate);

  // 10*log10(sum ref^2 / sum (ref - cand)^2); +inf when identical.
  double sqnr_db() const;
  double cosine() const;  // sum(ref*cand) / (|ref| |cand|); 1 when both are zero
  double max_abs_error() const { return max_abs_; }
  // Classifier-like outputs (rank >= 2, last dim > 1): fraction of rows whose argmax agrees.
  bool has_top1() const { return rows_ > 0; }
  double top1_agreement() const { return rows_ ? static_cast<double>(agree_) / rows_ : 0.0; }
  int64_t rows() const { return rows_; }
  int64_t elements() const { return elements_; }  // element pairs added so far

 private:
  double signal_ = 0, noise_ = 0, dot_ = 0, ref_sq_ = 0, cand_sq_ = 0, max_abs_ = 0;
  int64_t rows_ = 0, agree_ = 0, elements_ = 0;
  bool nan_mismatch_ = false;
};

}  // namespace quantkit::quant
