// Image folders: decoding (libpng, libjpeg, PPM/PGM by hand), resize/crop and normalisation.
#include "quant/image_folder.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <png.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

// jpeglib.h needs FILE and size_t declared first.
#include <jpeglib.h>

namespace quantkit::quant {

namespace fs = std::filesystem;

namespace {

constexpr int64_t kMaxPixels = int64_t{1} << 28;  // 268 M pixels: refuse absurd headers before allocating

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool IsImageFile(const fs::path& p) {
  const std::string ext = Lower(p.extension().string());
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".ppm" || ext == ".pgm";
}

bool IsSampleFile(const fs::path& p) {
  const std::string ext = Lower(p.extension().string());
  return ext == ".npy" || ext == ".npz" || ext == ".pb";
}

std::vector<std::string> ImageFiles(const std::string& dir, bool* has_sample_files) {
  std::vector<std::string> files;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    if (IsImageFile(it->path())) files.push_back(it->path().string());
    if (has_sample_files && IsSampleFile(it->path())) *has_sample_files = true;
  }
  std::sort(files.begin(), files.end());
  return files;
}

// ---- PNG (libpng's simplified API; alpha composited onto black)
StatusOr<DecodedImage> DecodePng(const std::string& path) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&image, path.c_str())) {
    return InvalidArgument(fmt::format("{}: cannot decode PNG: {}", path, image.message));
  }
  DecodedImage out;
  out.height = image.height;
  out.width = image.width;
  out.channels = (image.format & PNG_FORMAT_FLAG_COLOR) ? 3 : 1;
  if (out.height * out.width > kMaxPixels || out.height == 0 || out.width == 0) {
    png_image_free(&image);
    return InvalidArgument(fmt::format("{}: image size {}x{} is not supported", path, out.width, out.height));
  }
  image.format = out.channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  out.pixels.assign(PNG_IMAGE_SIZE(image), 0);
  if (!png_image_finish_read(&image, nullptr, out.pixels.data(), 0, nullptr)) {
    const std::string msg = image.message;
    png_image_free(&image);
    return InvalidArgument(fmt::format("{}: cannot decode PNG: {}", path, msg));
  }
  return out;
}

// ---- JPEG (libjpeg with a longjmp error handler; only POD state lives across setjmp)
struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void JpegErrorExit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// libjpeg prints warnings (a truncated file, corrupt data) to stderr and goes on with made-up
// pixels: calibration data must not be made up, so a warning is an error here.
void JpegEmitMessage(j_common_ptr cinfo, int level) {
  if (level < 0) JpegErrorExit(cinfo);
}

StatusOr<DecodedImage> DecodeJpeg(const std::string& path) {
  DecodedImage out;
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) return NotFound(fmt::format("cannot open '{}'", path));
  jpeg_decompress_struct cinfo{};
  JpegError err{};
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = JpegErrorExit;
  err.mgr.emit_message = JpegEmitMessage;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return InvalidArgument(fmt::format("{}: cannot decode JPEG: {}", path, err.message));
  }
  jpeg_create_decompress(&cinfo);
  jpeg_stdio_src(&cinfo, file.get());
  jpeg_read_header(&cinfo, TRUE);
  const bool gray = cinfo.jpeg_color_space == JCS_GRAYSCALE;
  cinfo.out_color_space = gray ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  out.height = cinfo.output_height;
  out.width = cinfo.output_width;
  out.channels = cinfo.output_components;
  if (out.height * out.width > kMaxPixels || (out.channels != 1 && out.channels != 3)) {
    jpeg_destroy_decompress(&cinfo);
    return InvalidArgument(fmt::format("{}: JPEG of size {}x{} with {} components is not supported", path, out.width,
                                       out.height, out.channels));
  }
  out.pixels.resize(static_cast<size_t>(out.height * out.width * out.channels));
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = out.pixels.data() + static_cast<size_t>(cinfo.output_scanline) * out.width * out.channels;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return out;
}

// ---- binary PPM (P6) / PGM (P5), maxval <= 255
StatusOr<DecodedImage> DecodePnm(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return NotFound(fmt::format("cannot open '{}'", path));
  std::string magic;
  f >> magic;
  if (magic != "P5" && magic != "P6") {
    return InvalidArgument(fmt::format("{}: not a binary PPM/PGM file (P5 or P6)", path));
  }
  int64_t values[3] = {0, 0, 0};  // width, height, maxval
  for (int64_t& v : values) {
    f >> std::ws;
    while (f.peek() == '#') {
      std::string comment;
      std::getline(f, comment);
      f >> std::ws;
    }
    if (!(f >> v)) return InvalidArgument(fmt::format("{}: bad PPM/PGM header", path));
  }
  f.get();  // the single whitespace before the pixels
  DecodedImage out;
  out.width = values[0];
  out.height = values[1];
  out.channels = magic == "P6" ? 3 : 1;
  if (out.width <= 0 || out.height <= 0 || out.height * out.width > kMaxPixels || values[2] <= 0 || values[2] > 255) {
    return InvalidArgument(fmt::format("{}: unsupported PPM/PGM ({}x{}, maxval {})", path, out.width, out.height,
                                       values[2]));
  }
  out.pixels.resize(static_cast<size_t>(out.width * out.height * out.channels));
  f.read(reinterpret_cast<char*>(out.pixels.data()), static_cast<std::streamsize>(out.pixels.size()));
  if (!f) return InvalidArgument(fmt::format("{}: pixel data is truncated", path));
  if (values[2] != 255) {
    for (uint8_t& p : out.pixels) p = static_cast<uint8_t>(std::min<int64_t>(255, (p * 255 + values[2] / 2) / values[2]));
  }
  return out;
}

bool StartsWith(const std::string& s, const char* prefix, size_t n) { return s.size() >= n && s.compare(0, n, prefix, n) == 0; }

}  // namespace

bool LooksLikeImageFolder(const std::string& dir) {
  bool has_samples = false;
  const auto files = ImageFiles(dir, &has_samples);
  return !files.empty() && !has_samples;
}

StatusOr<DecodedImage> DecodeImageFile(const std::string& path, int channels) {
  std::string head(8, '\0');
  {
    std::ifstream f(path, std::ios::binary);
    if (!f) return NotFound(fmt::format("cannot open '{}'", path));
    f.read(head.data(), 8);
    head.resize(static_cast<size_t>(f.gcount()));
  }
  StatusOr<DecodedImage> decoded = InvalidArgument(fmt::format("{}: not a PNG, JPEG, PPM or PGM file", path));
  if (StartsWith(head, "\x89PNG", 4)) decoded = DecodePng(path);
  else if (StartsWith(head, "\xFF\xD8", 2)) decoded = DecodeJpeg(path);
  else if (StartsWith(head, "P5", 2) || StartsWith(head, "P6", 2)) decoded = DecodePnm(path);
  if (!decoded.ok() || decoded->channels == channels) return decoded;
  DecodedImage in = std::move(decoded).value();
  DecodedImage out{in.height, in.width, channels, {}};
  const size_t n = static_cast<size_t>(in.height * in.width);
  out.pixels.resize(n * static_cast<size_t>(channels));
  for (size_t i = 0; i < n; ++i) {
    if (channels == 1) {  // ITU-R 601 luma, as PIL's convert("L")
      const uint8_t* p = &in.pixels[3 * i];
      out.pixels[i] = static_cast<uint8_t>((p[0] * 299 + p[1] * 587 + p[2] * 114 + 500) / 1000);
    } else {
      out.pixels[3 * i] = out.pixels[3 * i + 1] = out.pixels[3 * i + 2] = in.pixels[i];
    }
  }
  return out;
}

std::vector<float> ResizeBilinear(const DecodedImage& image, int64_t resized_h, int64_t resized_w, int64_t top,
                                  int64_t left, int64_t out_h, int64_t out_w) {
  const int64_t c = image.channels;
  std::vector<float> out(static_cast<size_t>(out_h * out_w * c));
  const double sy = static_cast<double>(image.height) / static_cast<double>(resized_h);
  const double sx = static_cast<double>(image.width) / static_cast<double>(resized_w);
  for (int64_t y = 0; y < out_h; ++y) {
    const double fy = std::clamp((static_cast<double>(y + top) + 0.5) * sy - 0.5, 0.0, static_cast<double>(image.height - 1));
    const int64_t y0 = static_cast<int64_t>(fy), y1 = std::min(y0 + 1, image.height - 1);
    const double wy = fy - static_cast<double>(y0);
    for (int64_t x = 0; x < out_w; ++x) {
      const double fx =
          std::clamp((static_cast<double>(x + left) + 0.5) * sx - 0.5, 0.0, static_cast<double>(image.width - 1));
      const int64_t x0 = static_cast<int64_t>(fx), x1 = std::min(x0 + 1, image.width - 1);
      const double wx = fx - static_cast<double>(x0);
      for (int64_t k = 0; k < c; ++k) {
        const auto px = [&](int64_t yy, int64_t xx) {
          return static_cast<double>(image.pixels[static_cast<size_t>((yy * image.width + xx) * c + k)]);
        };
        const double v = (1 - wy) * ((1 - wx) * px(y0, x0) + wx * px(y0, x1)) + wy * ((1 - wx) * px(y1, x0) + wx * px(y1, x1));
        out[static_cast<size_t>((y * out_w + x) * c + k)] = static_cast<float>(v);
      }
    }
  }
  return out;
}

StatusOr<ImageFolder> ImageFolder::Open(const std::string& dir, const ValueInfo& input, const ImagePreprocessing& spec) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return NotFound(fmt::format("data directory '{}' does not exist", dir));
  ImageFolder folder;
  folder.input_name_ = input.name;
  folder.spec_ = spec;
  ImagePreprocessing& s = folder.spec_;
  if (input.dtype != DType::kFloat32) {
    return InvalidArgument(fmt::format("image folder '{}': input '{}' is {}; images are fed as float32", dir, input.name,
                                       DTypeName(input.dtype)));
  }
  if (!input.has_shape || input.shape.size() != 4) {
    return InvalidArgument(fmt::format("image folder '{}': input '{}' must have rank 4 ([N,C,H,W] or [N,H,W,C])", dir,
                                       input.name));
  }
  const auto known = [&](size_t d) { return input.shape[d].known() ? input.shape[d].value : int64_t{-1}; };
  if (known(0) > 1) {
    return InvalidArgument(fmt::format("image folder '{}': input '{}' has a fixed batch of {}; images are fed one at a time",
                                       dir, input.name, known(0)));
  }
  if (s.layout.empty()) s.layout = (known(1) == 1 || known(1) == 3) ? "NCHW" : (known(3) == 1 || known(3) == 3) ? "NHWC" : "NCHW";
  if (s.layout != "NCHW" && s.layout != "NHWC") {
    return InvalidArgument(fmt::format("unknown layout '{}' (NCHW or NHWC)", s.layout));
  }
  const bool nchw = s.layout == "NCHW";
  const int64_t c_dim = known(nchw ? 1 : 3), h_dim = known(nchw ? 2 : 1), w_dim = known(nchw ? 3 : 2);
  folder.channels_ = c_dim > 0 ? c_dim : 3;
  if (folder.channels_ != 1 && folder.channels_ != 3) {
    return InvalidArgument(fmt::format("input '{}' has {} channels in layout {}; images give 1 or 3", input.name,
                                       folder.channels_, s.layout));
  }
  if (s.height <= 0) s.height = h_dim;
  if (s.width <= 0) s.width = w_dim;
  if (s.height <= 0 || s.width <= 0) {
    return InvalidArgument(fmt::format("input '{}' has no fixed height/width: give the image size (--image-size HxW)",
                                       input.name));
  }
  if ((h_dim > 0 && h_dim != s.height) || (w_dim > 0 && w_dim != s.width)) {
    return InvalidArgument(fmt::format("image size {}x{} does not fit input '{}' ({}x{} in layout {})", s.height, s.width,
                                       input.name, h_dim, w_dim, s.layout));
  }
  if (s.resize_shorter < 0 || (s.resize_shorter > 0 && s.resize_shorter < std::min(s.height, s.width))) {
    return InvalidArgument(fmt::format("resize-shorter {} is smaller than the crop {}x{}", s.resize_shorter, s.height, s.width));
  }
  if (s.color != "RGB" && s.color != "BGR") return InvalidArgument(fmt::format("unknown color order '{}' (RGB or BGR)", s.color));
  for (auto* v : {&s.mean, &s.std}) {
    const char* what = v == &s.mean ? "mean" : "std";
    if (v->size() == 1) v->assign(static_cast<size_t>(folder.channels_), (*v)[0]);
    if (v->size() != static_cast<size_t>(folder.channels_)) {
      return InvalidArgument(fmt::format("{} has {} values; input '{}' has {} channels", what, v->size(), input.name,
                                         folder.channels_));
    }
  }
  for (double v : s.std)
    if (!(v != 0) || !std::isfinite(v)) return InvalidArgument(fmt::format("std values must be finite and non-zero"));
  if (!std::isfinite(s.scale)) return InvalidArgument("scale must be finite");
  folder.files_ = ImageFiles(dir, nullptr);
  if (folder.files_.empty()) {
    return InvalidArgument(fmt::format("data directory '{}' holds no images (.png, .jpg, .jpeg, .ppm, .pgm)", dir));
  }
  return folder;
}

std::string ImageFolder::Describe() const {
  const ImagePreprocessing& s = spec_;
  std::string resize = s.resize_shorter > 0 ? fmt::format("resize shorter side to {}, centre crop {}x{}", s.resize_shorter,
                                                          s.height, s.width)
                                            : fmt::format("resize to {}x{}", s.height, s.width);
  return fmt::format("{} images, {}, {} {}, {} channel(s), x = (pixel * {:g} - mean [{}]) / std [{}]", files_.size(),
                     resize, s.layout, s.color, channels_, s.scale, fmt::join(s.mean, ", "), fmt::join(s.std, ", "));
}

StatusOr<Sample> ImageFolder::Read(size_t i) const {
  const std::string& path = files_.at(i);
  QK_ASSIGN_OR_RETURN(DecodedImage img, DecodeImageFile(path, static_cast<int>(channels_)));
  const ImagePreprocessing& s = spec_;
  int64_t resized_h = s.height, resized_w = s.width, top = 0, left = 0;
  if (s.resize_shorter > 0) {
    const double f = static_cast<double>(s.resize_shorter) / static_cast<double>(std::min(img.height, img.width));
    resized_h = std::max<int64_t>(s.height, std::llround(static_cast<double>(img.height) * f));
    resized_w = std::max<int64_t>(s.width, std::llround(static_cast<double>(img.width) * f));
    top = std::llround(static_cast<double>(resized_h - s.height) / 2.0);
    left = std::llround(static_cast<double>(resized_w - s.width) / 2.0);
  }
  const std::vector<float> hwc = ResizeBilinear(img, resized_h, resized_w, top, left, s.height, s.width);
  const bool nchw = s.layout == "NCHW";
  const int64_t c = channels_, hw = s.height * s.width;
  Tensor t(DType::kFloat32, nchw ? Shape{1, c, s.height, s.width} : Shape{1, s.height, s.width, c});
  float* out = t.data<float>();
  for (int64_t p = 0; p < hw; ++p) {
    for (int64_t k = 0; k < c; ++k) {
      const int64_t src_k = (s.color == "BGR" && c == 3) ? 2 - k : k;  // decoded pixels are RGB
      const double v = (hwc[static_cast<size_t>(p * c + src_k)] * s.scale - s.mean[k]) / s.std[k];
      out[nchw ? k * hw + p : p * c + k] = static_cast<float>(v);
    }
  }
  Sample sample;
  sample.emplace_back(input_name_, std::move(t));
  return sample;
}

}  // namespace quantkit::quant
