// Tensor: a dtype, a shape and a reference-counted, 64-byte aligned buffer.
// Copies share the buffer (cheap); Clone() makes a deep copy. Buffers may come from an
// Allocator (the runtime's pool), which gets them back when the last Tensor lets go.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "quantkit/dtype.h"
#include "quantkit/status.h"

namespace quantkit {

using Shape = std::vector<int64_t>;

// Number of elements of a shape (1 for a scalar). Caller must have validated the shape.
int64_t NumElements(const Shape& shape);
// Validates dims (non-negative) and that the byte size stays below max_bytes; names `what` in errors.
Status CheckShape(const Shape& shape, DType dtype, const std::string& what,
                  uint64_t max_bytes = uint64_t{1} << 40);
std::string ShapeToString(const Shape& shape);

// Raw aligned memory. Not for direct use: Tensors own buffers.
struct Buffer {
  void* data = nullptr;
  size_t capacity = 0;
};

// Hands out buffers. The default allocator uses aligned new/delete; the runtime's pool reuses them.
class Allocator {
 public:
  virtual ~Allocator() = default;
  // Returns a buffer of at least `bytes` bytes (aligned to 64), or nullptr if a limit is exceeded.
  virtual std::shared_ptr<Buffer> Allocate(size_t bytes) = 0;
};
Allocator* DefaultAllocator();

class Tensor {
 public:
  Tensor() = default;
  // Allocates zero-initialised storage from `alloc` (default allocator if null).
  Tensor(DType dtype, Shape shape, Allocator* alloc = nullptr);
  // Like the constructor but returns an error naming `what` instead of failing on bad shapes/limits.
  static StatusOr<Tensor> Create(DType dtype, Shape shape, Allocator* alloc, const std::string& what);
  // Uninitialised storage (for outputs that the kernel overwrites completely).
  static StatusOr<Tensor> CreateUninitialized(DType dtype, Shape shape, Allocator* alloc,
                                              const std::string& what);

  template <typename T>
  static Tensor FromVector(const std::vector<T>& values, Shape shape);
  template <typename T>
  static Tensor Scalar(T value) { return FromVector<T>({value}, {}); }

  bool defined() const { return dtype_ != DType::kUndefined; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t dim(size_t i) const { return shape_[i]; }
  size_t rank() const { return shape_.size(); }
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return static_cast<size_t>(numel_) * DTypeSize(dtype_); }

  void* raw_data() { return static_cast<char*>(buffer_ ? buffer_->data : nullptr) + offset_; }
  const void* raw_data() const {
    return static_cast<const char*>(buffer_ ? buffer_->data : nullptr) + offset_;
  }
  template <typename T>
  T* data() { return static_cast<T*>(raw_data()); }
  template <typename T>
  const T* data() const { return static_cast<const T*>(raw_data()); }
  template <typename T>
  std::span<const T> values() const { return {data<T>(), static_cast<size_t>(numel_)}; }

  // Same buffer, new shape (element count must match).
  Tensor Reshaped(Shape shape) const;
  Tensor Clone(Allocator* alloc = nullptr) const;
  // True if both refer to the same memory.
  bool SharesBufferWith(const Tensor& other) const { return buffer_ && buffer_ == other.buffer_; }

  // Element i converted to double / int64 (any numeric dtype). For attributes and small tensors.
  double GetAsDouble(int64_t i) const;
  int64_t GetAsInt64(int64_t i) const;
  // Reads a 0-D or 1-D integer tensor into a vector (for shapes, axes, pads...).
  std::vector<int64_t> ToInt64Vector() const;
  std::vector<float> ToFloatVector() const;

 private:
  DType dtype_ = DType::kUndefined;
  Shape shape_;
  int64_t numel_ = 0;
  std::shared_ptr<Buffer> buffer_;
  size_t offset_ = 0;
};

template <typename T>
Tensor Tensor::FromVector(const std::vector<T>& values, Shape shape) {
  Tensor t(DTypeOf<T>::value, std::move(shape));
  T* out = t.data<T>();
  for (size_t i = 0; i < values.size() && static_cast<int64_t>(i) < t.numel(); ++i) out[i] = values[i];
  return t;
}

}  // namespace quantkit
