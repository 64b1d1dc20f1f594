// Image folders as calibration data: every PNG, JPEG or binary PPM/PGM file under a directory
// (sub-folders included, e.g. one per class), in sorted path order, decoded and preprocessed as
// ImagePreprocessing (include/quantkit/calibration.h) says into one [1, C, H, W] or [1, H, W, C]
// float32 tensor for the model's single input.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "quant/dataset.h"
#include "quantkit/calibration.h"
#include "quantkit/ir.h"
#include "quantkit/status.h"

namespace quantkit::quant {

// True if `dir` (or a sub-folder) holds image files and no .npy/.npz/.pb sample files.
bool LooksLikeImageFolder(const std::string& dir);

struct DecodedImage {
  int64_t height = 0, width = 0, channels = 0;  // channels 1 (gray) or 3 (RGB)
  std::vector<uint8_t> pixels;                 // interleaved, row-major
};
// Decodes a PNG, JPEG or binary PPM (P6) / PGM (P5) file to `channels` (1: gray, 3: RGB;
// converted if the file has the other). Errors name the file.
StatusOr<DecodedImage> DecodeImageFile(const std::string& path, int channels);

// Bilinear resize (half-pixel centres, edge clamped) of the centre-cropped region: the image is
// scaled to resized_h x resized_w, then rows [top, top + out_h) and columns [left, left + out_w)
// are kept. Returns out_h * out_w * channels floats (interleaved), pixel values unchanged (0..255).
std::vector<float> ResizeBilinear(const DecodedImage& image, int64_t resized_h, int64_t resized_w, int64_t top,
                                  int64_t left, int64_t out_h, int64_t out_w);

class ImageFolder {
 public:
  // `input` is the model's only input (float32, rank 4). The spec is completed from its shape
  // (size, layout, channels) and checked against it.
  static StatusOr<ImageFolder> Open(const std::string& dir, const ValueInfo& input, const ImagePreprocessing& spec);
  size_t size() const { return files_.size(); }
  const std::string& SampleName(size_t i) const { return files_[i]; }
  StatusOr<Sample> Read(size_t i) const;
  // The preprocessing in effect, one line (for the log).
  std::string Describe() const;

 private:
  std::string input_name_;
  ImagePreprocessing spec_;  // completed: height, width, layout set; mean/std one per channel
  int64_t channels_ = 3;
  std::vector<std::string> files_;
};

}  // namespace quantkit::quant
