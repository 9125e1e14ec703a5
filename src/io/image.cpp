// PNG / JPEG decoding (libpng, libjpeg-turbo) and Pillow's bicubic resampling (image.h).
// libpng and libjpeg report errors by longjmp: each decoder keeps C++ objects with destructors
// out of the frames a longjmp crosses, records the library's message and throws after the jump.
#include "io/image.h"

#include <jpeglib.h>
// jerror.h after jpeglib.h: it needs its types
#include <jerror.h>
#include <png.h>

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstring>

#include "core/checked.h"
#include "core/error.h"
#include "core/file_util.h"

namespace mamba::io {
namespace {

constexpr int64_t kMaxSide = 1 << 14;

void check_size(int64_t w, int64_t h, const std::string& name) {
  if (w <= 0 || h <= 0 || w > kMaxSide || h > kMaxSide)
    throw_error(ErrorCode::unsupported, name, ": image size ", w, "x", h, " (expected 1..", kMaxSide,
                " pixels a side)");
  // The header's size is checked against the allocation ceiling before the pixels are allocated:
  // a 100-byte file may claim 16384 x 16384 (the RGB buffer, and a 16-bit PNG's rows, twice that).
  check_allocation(static_cast<uint64_t>(w) * static_cast<uint64_t>(h) * 6, name + ": decoded pixels");
}

// ---- PNG ----

struct PngRead {
  const uint8_t* data;
  size_t size, pos;
  char error[200];
};

void png_read_fn(png_structp png, png_bytep out, size_t n) {
  auto* r = static_cast<PngRead*>(png_get_io_ptr(png));
  if (n > r->size - r->pos) png_error(png, "truncated file");
  std::memcpy(out, r->data + r->pos, n);
  r->pos += n;
}

void png_error_fn(png_structp png, png_const_charp msg) {
  auto* r = static_cast<PngRead*>(png_get_error_ptr(png));
  std::snprintf(r->error, sizeof r->error, "%s", msg);
  png_longjmp(png, 1);
}

void png_warning_fn(png_structp, png_const_charp) {}  // benign chunk complaints: PIL ignores them too

// Decodes into `out` (resized once the header is known); returns false with r.error set.
// Only trivially destructible locals live in this frame across setjmp.
bool decode_png(PngRead& r, Image& out, bool& too_large) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &r, png_error_fn, png_warning_fn);
  if (!png) {
    std::snprintf(r.error, sizeof r.error, "libpng could not start");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  // volatile: written after setjmp and freed after a longjmp back to it
  png_bytep* volatile rows = nullptr;
  uint8_t* volatile wide = nullptr;  // 16-bit grayscale rows before clipping
  if (!info || setjmp(png_jmpbuf(png))) {
    if (!info) std::snprintf(r.error, sizeof r.error, "libpng could not start");
    std::free(rows);
    std::free(wide);
    png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
    return false;
  }
  png_set_read_fn(png, &r, png_read_fn);
  png_set_user_limits(png, kMaxSide, kMaxSide);
  png_read_info(png, info);
  const png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  const int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
  if (w > kMaxSide || h > kMaxSide) {
    too_large = true;
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  // Pillow opens 16-bit grayscale as I;16 and clips it to 255 in convert("RGB"); every other
  // 16-bit layout keeps its high byte.
  const bool gray16 = color == PNG_COLOR_TYPE_GRAY && depth == 16;
  if (!gray16) png_set_strip_16(png);
  png_set_expand(png);  // palette -> RGB, gray < 8 bits -> 8, tRNS -> alpha
  png_set_strip_alpha(png);
  if (!gray16) png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  const size_t rowbytes = png_get_rowbytes(png, info);
  out.width = w;
  out.height = h;
  out.rgb.assign(static_cast<size_t>(w) * h * 3, 0);  // may throw bad_alloc: nothing to unwind yet
  if (rowbytes != static_cast<size_t>(w) * (gray16 ? 2 : 3)) png_error(png, "unexpected row layout");
  rows = static_cast<png_bytep*>(std::malloc(sizeof(png_bytep) * h));
  if (gray16) wide = static_cast<uint8_t*>(std::malloc(rowbytes * h));
  if (!rows || (gray16 && !wide)) png_error(png, "out of memory");
  for (png_uint_32 y = 0; y < h; ++y)
    rows[y] = gray16 ? wide + y * rowbytes : out.rgb.data() + static_cast<size_t>(y) * w * 3;
  png_read_image(png, rows);
  png_read_end(png, nullptr);
  if (gray16)
    for (size_t i = 0; i < static_cast<size_t>(w) * h; ++i) {
      const unsigned v = (static_cast<unsigned>(wide[2 * i]) << 8) | wide[2 * i + 1];  // big-endian
      const uint8_t c = static_cast<uint8_t>(std::min(v, 255u));
      out.rgb[3 * i] = out.rgb[3 * i + 1] = out.rgb[3 * i + 2] = c;
    }
  std::free(rows);
  std::free(wide);
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

// ---- JPEG ----

struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  bool hit_eof;  // libjpeg warned that the data ended early
};

void jpeg_error_exit(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<JpegError*>(cinfo->err);
  cinfo->err->format_message(cinfo, e->message);
  std::longjmp(e->jump, 1);
}

// Warnings are not printed; a premature end of data is remembered and refused below.
void jpeg_silent(j_common_ptr cinfo, int level) {
  if (level >= 0) return;  // trace messages
  auto* e = reinterpret_cast<JpegError*>(cinfo->err);
  if (cinfo->err->msg_code == JWRN_JPEG_EOF) e->hit_eof = true;
}

enum class JpegResult { ok, error, cmyk, too_large, truncated };

JpegResult decode_jpeg(const std::vector<uint8_t>& bytes, Image& out, JpegError& err) {
  jpeg_decompress_struct cinfo;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_error_exit;
  err.mgr.emit_message = jpeg_silent;
  err.message[0] = 0;
  err.hit_eof = false;
  JSAMPROW row = nullptr;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return JpegResult::error;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&cinfo, TRUE);
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    jpeg_destroy_decompress(&cinfo);
    return JpegResult::cmyk;
  }
  if (cinfo.image_width > kMaxSide || cinfo.image_height > kMaxSide) {
    jpeg_destroy_decompress(&cinfo);
    return JpegResult::too_large;
  }
  cinfo.out_color_space = JCS_RGB;  // grayscale is replicated, YCbCr converted (PIL: the same library)
  cinfo.dct_method = JDCT_ISLOW;
  cinfo.do_fancy_upsampling = TRUE;
  jpeg_start_decompress(&cinfo);
  out.width = cinfo.output_width;
  out.height = cinfo.output_height;
  out.rgb.assign(static_cast<size_t>(out.width) * out.height * 3, 0);
  while (cinfo.output_scanline < cinfo.output_height) {
    row = out.rgb.data() + static_cast<size_t>(cinfo.output_scanline) * out.width * 3;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  // libjpeg pads a truncated stream with gray and only warns (JWRN_JPEG_EOF); PIL refuses it.
  const bool truncated = err.hit_eof;
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return truncated ? JpegResult::truncated : JpegResult::ok;
}

// ---- Pillow's resampling (libImaging/Resample.c), 8 bits per channel. ----

constexpr int kPrecisionBits = 32 - 8 - 2;

double bicubic_filter(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// Per output pixel: the first input index, the count, and `ksize` fixed-point weights.
struct Coeffs {
  int64_t ksize = 0;
  std::vector<int64_t> first, count;
  std::vector<int32_t> weights;
};

Coeffs precompute(int64_t in_size, int64_t out_size) {
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = 2.0 * filterscale;
  Coeffs c;
  c.ksize = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  c.first.resize(out_size);
  c.count.resize(out_size);
  c.weights.assign(static_cast<size_t>(out_size * c.ksize), 0);
  std::vector<double> k(static_cast<size_t>(c.ksize));
  for (int64_t xx = 0; xx < out_size; ++xx) {
    const double center = (static_cast<double>(xx) + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    // C's (int) truncation toward zero, as in Resample.c
    int64_t xmin = static_cast<int64_t>(static_cast<int>(center - support + 0.5));
    if (xmin < 0) xmin = 0;
    int64_t xmax = static_cast<int64_t>(static_cast<int>(center + support + 0.5));
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int64_t x = 0; x < xmax; ++x) {
      const double w = bicubic_filter((static_cast<double>(x + xmin) - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (int64_t x = 0; x < c.ksize; ++x) {
      const double v = x < xmax && ww != 0.0 ? k[x] / ww : 0.0;
      // normalize_coeffs_8bpc: round half away from zero into 22-bit fixed point
      c.weights[xx * c.ksize + x] = v < 0 ? static_cast<int32_t>(-0.5 + v * (1 << kPrecisionBits))
                                          : static_cast<int32_t>(0.5 + v * (1 << kPrecisionBits));
    }
    c.first[xx] = xmin;
    c.count[xx] = xmax;
  }
  return c;
}

uint8_t clip8(int32_t v) {
  const int32_t s = v >> kPrecisionBits;  // arithmetic shift, as Pillow's lookup index
  return static_cast<uint8_t>(s < 0 ? 0 : s > 255 ? 255 : s);
}

// One separable pass along x (horizontal) or y, over the whole image.
Image resample_pass(const Image& in, int64_t out_size, bool horizontal) {
  const Coeffs c = precompute(horizontal ? in.width : in.height, out_size);
  Image out;
  out.width = horizontal ? out_size : in.width;
  out.height = horizontal ? in.height : out_size;
  out.rgb.assign(static_cast<size_t>(out.width * out.height * 3), 0);
  for (int64_t y = 0; y < out.height; ++y)
    for (int64_t x = 0; x < out.width; ++x) {
      const int64_t o = horizontal ? x : y;
      const int32_t* k = &c.weights[o * c.ksize];
      int32_t acc[3] = {1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1)};
      for (int64_t i = 0; i < c.count[o]; ++i) {
        const int64_t sx = horizontal ? c.first[o] + i : x, sy = horizontal ? y : c.first[o] + i;
        const uint8_t* p = &in.rgb[static_cast<size_t>((sy * in.width + sx) * 3)];
        for (int ch = 0; ch < 3; ++ch) acc[ch] += static_cast<int32_t>(p[ch]) * k[i];
      }
      uint8_t* q = &out.rgb[static_cast<size_t>((y * out.width + x) * 3)];
      for (int ch = 0; ch < 3; ++ch) q[ch] = clip8(acc[ch]);
    }
  return out;
}

}  // namespace

Image decode_image(const std::vector<uint8_t>& bytes, const std::string& name) {
  static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  Image out;
  if (bytes.size() >= 8 && std::memcmp(bytes.data(), png_sig, 8) == 0) {
    PngRead r{bytes.data(), bytes.size(), 0, {0}};
    bool too_large = false;
    if (!decode_png(r, out, too_large)) {
      if (too_large) check_size(kMaxSide + 1, kMaxSide + 1, name);
      throw_error(ErrorCode::parse, name, ": invalid PNG (", r.error, ")");
    }
  } else if (bytes.size() >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF) {
    JpegError err;
    switch (decode_jpeg(bytes, out, err)) {
      case JpegResult::ok:
        break;
      case JpegResult::error:
        throw_error(ErrorCode::parse, name, ": invalid JPEG (", err.message, ")");
      case JpegResult::cmyk:
        throw_error(ErrorCode::unsupported, name, ": CMYK JPEG (expected RGB or grayscale)");
      case JpegResult::too_large:
        check_size(kMaxSide + 1, kMaxSide + 1, name);
        break;
      case JpegResult::truncated:
        throw_error(ErrorCode::parse, name, ": truncated JPEG (the data ends early)");
    }
  } else {
    throw_error(ErrorCode::unsupported, name, ": not a PNG or JPEG file (expected the signature ",
                "89 50 4E 47 or FF D8 FF, found ", bytes.size() < 4 ? "fewer than 4 bytes" : "other bytes",
                ")");
  }
  check_size(out.width, out.height, name);
  return out;
}

Image read_image(const std::string& path) {
  const std::string s = read_file(path);
  return decode_image(std::vector<uint8_t>(s.begin(), s.end()), path);
}

void write_png(const std::string& path, const Image& image) {
  check_size(image.width, image.height, path);
  MAMBA_CHECK(image.rgb.size() == static_cast<size_t>(image.width * image.height * 3));
  std::string bytes;
  png_image pi;
  std::memset(&pi, 0, sizeof pi);
  pi.version = PNG_IMAGE_VERSION;
  pi.width = static_cast<png_uint_32>(image.width);
  pi.height = static_cast<png_uint_32>(image.height);
  pi.format = PNG_FORMAT_RGB;
  png_alloc_size_t size = 0;
  if (!png_image_write_to_memory(&pi, nullptr, &size, 0, image.rgb.data(), 0, nullptr))
    throw_error(ErrorCode::io, path, ": PNG encoding failed (", pi.message, ")");
  bytes.resize(size);
  if (!png_image_write_to_memory(&pi, bytes.data(), &size, 0, image.rgb.data(), 0, nullptr))
    throw_error(ErrorCode::io, path, ": PNG encoding failed (", pi.message, ")");
  bytes.resize(size);
  write_file_atomic(path, bytes);
}

Image resize_bicubic(const Image& in, int64_t width, int64_t height) {
  check_size(width, height, "resize");
  // Pillow skips a pass whose size does not change (the box is the whole image).
  Image tmp = width != in.width ? resample_pass(in, width, /*horizontal=*/true) : in;
  return height != in.height ? resample_pass(tmp, height, /*horizontal=*/false) : tmp;
}

Image center_crop(const Image& in, int64_t width, int64_t height) {
  MAMBA_CHECK(width <= in.width && height <= in.height);
  // Python's round(): half to even, which std::nearbyint does in the default rounding mode.
  const auto top = static_cast<int64_t>(std::nearbyint(static_cast<double>(in.height - height) / 2.0));
  const auto left = static_cast<int64_t>(std::nearbyint(static_cast<double>(in.width - width) / 2.0));
  Image out;
  out.width = width;
  out.height = height;
  out.rgb.resize(static_cast<size_t>(width * height * 3));
  for (int64_t y = 0; y < height; ++y)
    std::memcpy(&out.rgb[static_cast<size_t>(y * width * 3)],
                &in.rgb[static_cast<size_t>(((top + y) * in.width + left) * 3)],
                static_cast<size_t>(width * 3));
  return out;
}

std::array<int64_t, 2> resize_shorter_size(int64_t width, int64_t height, int64_t size) {
  const int64_t shorter = std::min(width, height), longer = std::max(width, height);
  // Python: int(size * long / short), a true division then truncation
  const auto new_long =
      static_cast<int64_t>(static_cast<double>(size * longer) / static_cast<double>(shorter));
  return width <= height ? std::array<int64_t, 2>{size, new_long} : std::array<int64_t, 2>{new_long, size};
}

Tensor to_normalized_tensor(const Image& in, const std::array<float, 3>& mean,
                            const std::array<float, 3>& std) {
  Tensor t = Tensor::empty({3, in.height, in.width});
  float* p = t.f32();
  const int64_t n = in.width * in.height;
  for (int ch = 0; ch < 3; ++ch)
    for (int64_t i = 0; i < n; ++i) {
      const float v = static_cast<float>(in.rgb[static_cast<size_t>(3 * i + ch)]) / 255.0f;
      p[ch * n + i] = (v - mean[ch]) / std[ch];
    }
  return t;
}

Tensor preprocess_image(const Image& in, const ImageTransform& t, const std::string& name) {
  const auto [w, h] = resize_shorter_size(in.width, in.height, t.resize);
  check_size(w, h, name + " after the resize to " + std::to_string(t.resize));
  if (w < t.crop || h < t.crop)
    throw_error(ErrorCode::shape, name, ": ", w, "x", h, " after the resize is smaller than the ", t.crop,
                "x", t.crop, " crop");
  // torchvision returns the image itself when the size already matches
  const Image resized = (w == in.width && h == in.height) ? in : resize_bicubic(in, w, h);
  return to_normalized_tensor(center_crop(resized, t.crop, t.crop), t.mean, t.std);
}

}  // namespace mamba::io
