// Images for the vision models (docs/vision.md): PNG and JPEG decoding through Debian's libpng and
// libjpeg-turbo, and the evaluation transform of Vim / timm / torchvision on PIL images —
// Resize(shorter side, bicubic) with Pillow's resampling algorithm, CenterCrop, ToTensor and
// Normalize — reproduced so that pixels equal PIL's (the integer arithmetic is the same).
// Every malformed, truncated or unsupported file throws Error naming the file.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace mamba::io {

// 8-bit RGB, row-major, 3 bytes a pixel.
struct Image {
  int64_t width = 0, height = 0;
  std::vector<uint8_t> rgb;
};

// Decodes a PNG or JPEG file (chosen by its signature, not its name) into RGB like PIL's
// Image.open(f).convert("RGB"): palettes expanded, alpha dropped (not composited), grayscale
// replicated, 16-bit RGB reduced to its high byte, 16-bit grayscale clipped to 255 (Pillow's I;16
// -> RGB). CMYK JPEGs are refused. Images over 2^14 pixels a side are refused.
Image read_image(const std::string& path);
// The same from bytes in memory; `name` names them in errors.
Image decode_image(const std::vector<uint8_t>& bytes, const std::string& name);

// Writes an 8-bit RGB PNG atomically (tests and tools).
void write_png(const std::string& path, const Image& image);

// Pillow's Image.resize(size, Image.BICUBIC) for 8-bit images (ImagingResample): separable, a
// horizontal then a vertical pass, each rounding to uint8; the cubic filter (a = −0.5, support 2)
// is widened by the scale factor when downscaling (antialiasing); weights in 22-bit fixed point.
Image resize_bicubic(const Image& in, int64_t width, int64_t height);

// torchvision's CenterCrop on a PIL image at least that large: the offsets round((size − crop) / 2)
// with Python's round (half to even).
Image center_crop(const Image& in, int64_t width, int64_t height);

// The output size of torchvision's Resize(size) with an int: the shorter side becomes `size`, the
// longer int(size · long / short).
std::array<int64_t, 2> resize_shorter_size(int64_t width, int64_t height, int64_t size);  // {w, h}

// ToTensor + Normalize: [3, height, width] f32, ((p / 255) − mean[c]) / std[c] in f32 like torch.
Tensor to_normalized_tensor(const Image& in, const std::array<float, 3>& mean,
                            const std::array<float, 3>& std);

struct ImageTransform {
  int64_t resize = 256;                                  // shorter side after the bicubic resize
  int64_t crop = 224;                                    // square center crop
  std::array<float, 3> mean = {0.485f, 0.456f, 0.406f};  // ImageNet (timm IMAGENET_DEFAULT_MEAN)
  std::array<float, 3> std = {0.229f, 0.224f, 0.225f};
};

// The whole evaluation transform: [3, crop, crop] f32. An image smaller than the crop after the
// resize (only when resize < crop) is an error naming `name`.
Tensor preprocess_image(const Image& in, const ImageTransform& t, const std::string& name);

}  // namespace mamba::io
