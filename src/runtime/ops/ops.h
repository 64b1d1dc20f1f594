// Registration entry points of the op families (one .cc each in this folder).
#pragma once

#include "runtime/kernel.h"

namespace quantkit::rt {

void RegisterElementwiseOps(KernelRegistry& r);  // elementwise.cc: math, activations, compare, logic, Cast
void RegisterReductionOps(KernelRegistry& r);    // reduce_norm.cc: Reduce*, ArgMax, Softmax, norms
void RegisterTensorOps(KernelRegistry& r);       // tensor_ops.cc: shape/layout/indexing, Pad, Resize
void RegisterNnOps(KernelRegistry& r);           // nn.cc: Conv, ConvTranspose, Gemm, MatMul, pooling
void RegisterRnnOps(KernelRegistry& r);          // rnn.cc: LSTM, GRU, RNN
void RegisterControlFlowOps(KernelRegistry& r);  // control_flow.cc: If, Loop, sequences
void RegisterQuantOps(KernelRegistry& r);        // quant_ops.cc: QuantizeLinear & co., integer ops
void RegisterFusedQuantOps(KernelRegistry& r);   // fused_quant_ops.cc: com.quantkit fused integer ops

}  // namespace quantkit::rt
