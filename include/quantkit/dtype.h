// Element types. The numeric values are ONNX's TensorProto.DataType codes, so conversion is a cast.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace quantkit {

enum class DType : int32_t {
  kUndefined = 0,
  kFloat32 = 1,
  kUInt8 = 2,
  kInt8 = 3,
  kUInt16 = 4,
  kInt16 = 5,
  kInt32 = 6,
  kInt64 = 7,
  kString = 8,  // not supported by the runtime; recognised so errors can name it
  kBool = 9,
  kFloat16 = 10,
  kFloat64 = 11,
  kUInt32 = 12,
  kUInt64 = 13,
  kBFloat16 = 16,
};

// Size of one element in bytes; 0 for kUndefined and kString.
size_t DTypeSize(DType t);
// "float32", "int8", ...; "dtype(N)" for unknown codes.
std::string DTypeName(DType t);
// True for the codes above except kUndefined and kString (i.e. types quantkit can hold in a Tensor).
bool IsSupportedDType(int32_t onnx_code);
bool IsFloatDType(DType t);    // f16, bf16, f32, f64
bool IsIntegerDType(DType t);  // signed and unsigned ints (not bool)

template <typename T>
struct DTypeOf;
#define QK_DTYPE_OF(T, D) \
  template <>             \
  struct DTypeOf<T> {     \
    static constexpr DType value = D; \
  };
QK_DTYPE_OF(float, DType::kFloat32)
QK_DTYPE_OF(double, DType::kFloat64)
QK_DTYPE_OF(uint8_t, DType::kUInt8)
QK_DTYPE_OF(int8_t, DType::kInt8)
QK_DTYPE_OF(uint16_t, DType::kUInt16)
QK_DTYPE_OF(int16_t, DType::kInt16)
QK_DTYPE_OF(int32_t, DType::kInt32)
QK_DTYPE_OF(uint32_t, DType::kUInt32)
QK_DTYPE_OF(int64_t, DType::kInt64)
QK_DTYPE_OF(uint64_t, DType::kUInt64)
QK_DTYPE_OF(bool, DType::kBool)
#undef QK_DTYPE_OF

}  // namespace quantkit
