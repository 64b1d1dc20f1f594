// Tensor storage, shape helpers and the default aligned allocator.
#include "quantkit/tensor.h"

#include <fmt/format.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include "quantkit/float16.h"

namespace quantkit {

int64_t NumElements(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string ShapeToString(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ",";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

Status CheckShape(const Shape& shape, DType dtype, const std::string& what, uint64_t max_bytes) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return InvalidArgument(fmt::format("{}: negative dimension in shape {}", what, ShapeToString(shape)));
    if (d != 0 && n > max_bytes / static_cast<uint64_t>(d)) {
      return ResourceExhausted(fmt::format("{}: shape {} is too large", what, ShapeToString(shape)));
    }
    n *= static_cast<uint64_t>(d);
  }
  const uint64_t elem = DTypeSize(dtype) ? DTypeSize(dtype) : 1;
  if (n > max_bytes / elem) {
    return ResourceExhausted(fmt::format("{}: shape {} of {} needs {} bytes, over the limit of {}", what,
                                         ShapeToString(shape), DTypeName(dtype), n * elem, max_bytes));
  }
  return Status::Ok();
}

namespace {

class AlignedAllocator final : public Allocator {
 public:
  std::shared_ptr<Buffer> Allocate(size_t bytes) override {
    const size_t cap = (bytes + 63) / 64 * 64;
    void* p = cap ? ::operator new(cap, std::align_val_t(64), std::nothrow) : nullptr;
    if (cap && !p) return nullptr;
    return std::shared_ptr<Buffer>(new Buffer{p, cap}, [](Buffer* b) {
      if (b->data) ::operator delete(b->data, std::align_val_t(64));
      delete b;
    });
  }
};

}  // namespace

Allocator* DefaultAllocator() {
  static AlignedAllocator alloc;
  return &alloc;
}

Tensor::Tensor(DType dtype, Shape shape, Allocator* alloc) {
  auto t = Create(dtype, std::move(shape), alloc, "tensor");
  if (!t.ok()) throw std::bad_alloc();  // programming error: callers with untrusted shapes use Create
  *this = std::move(t).value();
}

StatusOr<Tensor> Tensor::CreateUninitialized(DType dtype, Shape shape, Allocator* alloc,
                                             const std::string& what) {
  if (DTypeSize(dtype) == 0) return Unimplemented(fmt::format("{}: unsupported dtype {}", what, DTypeName(dtype)));
  QK_RETURN_IF_ERROR(CheckShape(shape, dtype, what));
  Tensor t;
  t.dtype_ = dtype;
  t.numel_ = NumElements(shape);
  t.shape_ = std::move(shape);
  t.buffer_ = (alloc ? alloc : DefaultAllocator())->Allocate(t.nbytes());
  if (!t.buffer_) {
    return ResourceExhausted(fmt::format("{}: cannot allocate {} bytes for shape {} (memory limit)", what,
                                         t.nbytes(), ShapeToString(t.shape_)));
  }
  return t;
}

StatusOr<Tensor> Tensor::Create(DType dtype, Shape shape, Allocator* alloc, const std::string& what) {
  auto t = CreateUninitialized(dtype, std::move(shape), alloc, what);
  if (t.ok() && t->nbytes()) std::memset(t->raw_data(), 0, t->nbytes());
  return t;
}

Tensor Tensor::Reshaped(Shape shape) const {
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::Clone(Allocator* alloc) const {
  if (!defined()) return {};
  auto t = CreateUninitialized(dtype_, shape_, alloc, "clone");
  if (!t.ok()) throw std::bad_alloc();
  if (nbytes()) std::memcpy(t->raw_data(), raw_data(), nbytes());
  return std::move(t).value();
}

double Tensor::GetAsDouble(int64_t i) const {
  switch (dtype_) {
    case DType::kFloat32: return data<float>()[i];
    case DType::kFloat64: return data<double>()[i];
    case DType::kFloat16: return HalfToFloat(data<uint16_t>()[i]);
    case DType::kBFloat16: return BFloat16ToFloat(data<uint16_t>()[i]);
    case DType::kUInt8: return data<uint8_t>()[i];
    case DType::kInt8: return data<int8_t>()[i];
    case DType::kUInt16: return data<uint16_t>()[i];
    case DType::kInt16: return data<int16_t>()[i];
    case DType::kInt32: return data<int32_t>()[i];
    case DType::kUInt32: return data<uint32_t>()[i];
    case DType::kInt64: return static_cast<double>(data<int64_t>()[i]);
    case DType::kUInt64: return static_cast<double>(data<uint64_t>()[i]);
    case DType::kBool: return data<bool>()[i] ? 1.0 : 0.0;
    default: return 0.0;
  }
}

int64_t Tensor::GetAsInt64(int64_t i) const {
  switch (dtype_) {
    case DType::kInt64: return data<int64_t>()[i];
    case DType::kUInt64: return static_cast<int64_t>(data<uint64_t>()[i]);
    case DType::kInt32: return data<int32_t>()[i];
    case DType::kUInt32: return data<uint32_t>()[i];
    case DType::kInt16: return data<int16_t>()[i];
    case DType::kUInt16: return data<uint16_t>()[i];
    case DType::kInt8: return data<int8_t>()[i];
    case DType::kUInt8: return data<uint8_t>()[i];
    case DType::kBool: return data<bool>()[i];
    default: return static_cast<int64_t>(GetAsDouble(i));
  }
}

std::vector<int64_t> Tensor::ToInt64Vector() const {
  std::vector<int64_t> v(static_cast<size_t>(numel_));
  for (int64_t i = 0; i < numel_; ++i) v[i] = GetAsInt64(i);
  return v;
}

std::vector<float> Tensor::ToFloatVector() const {
  std::vector<float> v(static_cast<size_t>(numel_));
  for (int64_t i = 0; i < numel_; ++i) v[i] = static_cast<float>(GetAsDouble(i));
  return v;
}

}  // namespace quantkit
