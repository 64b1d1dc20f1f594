#include "runtime/kernels/qdepthwise.h"

#include "runtime/kernels/qdepthwise_internal.h"

namespace quantkit::kernels {
namespace {

void AccumulateRowRef(const int16_t* const* src, const int32_t* w, int64_t taps, int64_t n, int32_t bias,
                      int32_t* acc) {
  qdepthwise::AccumulateRowPortable(src, w, taps, n, bias, acc);
}

void RequantizeRowRef(int32_t* acc, int64_t n, float multiplier, float lo, float hi, int32_t zp, uint8_t* y) {
  qdepthwise::RequantizeRowPortable(acc, n, multiplier, lo, hi, zp, y);
}

}  // namespace

int64_t QDepthwisePlaneElems(const QDepthwiseShape& s) {
  const qdepthwise::PlaneLayout p = qdepthwise::Layout(s);
  return p.rows * p.row_len;
}

int64_t QDepthwiseRowElems(const QDepthwiseShape& s) { return qdepthwise::PaddedOutputCols(s); }

void QDepthwiseConv2D(const QDepthwiseShape& s, const QDepthwiseChannel& c, int16_t* plane, int32_t* acc_row,
                      QGemmIsa isa) {
  if (s.OH <= 0 || s.OW <= 0) return;
  if (isa != QGemmIsa::kRef) return qdepthwise::RunAvx2(s, c, plane, acc_row);
  qdepthwise::Dispatch<AccumulateRowRef, RequantizeRowRef>(s, c, plane, acc_row);
}

// Output widths up to this take the lane kernel. On Zen 3 at one thread: 7 wide (MobileNetV2's
// 960 channels) 0.111 ms against 0.154 on the plane kernel; 14 wide (384 channels) 0.109 against
// 0.103 once the plane kernel's fill and requantize were vectorized whole (minimums of 3 runs).
constexpr int64_t kLanesMaxWidth = 8;

bool QDepthwiseUseLanes(const QDepthwiseShape& s, QGemmIsa isa) {
  return isa != QGemmIsa::kRef && s.OW <= kLanesMaxWidth && s.KH * s.KW <= qdepthwise::kLanesMaxTaps;
}

int64_t QDepthwiseLanesPlaneElems(const QDepthwiseShape& s) {
  const qdepthwise::LanesLayout l = qdepthwise::Lanes(s);
  return l.rows * l.cols * kQDepthwiseLanes;
}

int64_t QDepthwiseLanesAccElems(const QDepthwiseShape& s) { return s.OH * s.OW * kQDepthwiseLanes; }

void QDepthwiseConv2DLanes(const QDepthwiseShape& s, const QDepthwiseChannel* c, int n, int16_t* plane,
                           int32_t* acc_lanes, int32_t* row) {
  if (s.OH <= 0 || s.OW <= 0 || n <= 0) return;
  qdepthwise::RunLanesAvx2(s, c, n, plane, acc_lanes, row);
}

}  // namespace quantkit::kernels
