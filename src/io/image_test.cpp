// io/image: PNG / JPEG decoding of files this test writes with libpng / libjpeg itself, Pillow's
// bicubic resize against a naive floating-point evaluation of the same formula, torchvision's
// crop / resize-size / normalization arithmetic, and bad files refused with one line naming them.
#include "io/image.h"

#include <gtest/gtest.h>
#include <jpeglib.h>
#include <png.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/file_util.h"
#include "testing.h"

namespace mamba::io {
namespace {

Image random_image(int64_t w, int64_t h, uint32_t seed) {
  std::mt19937 rng(seed);
  Image im{w, h, std::vector<uint8_t>(static_cast<size_t>(w * h * 3))};
  for (auto& v : im.rgb) v = static_cast<uint8_t>(rng() & 0xFF);
  return im;
}

std::string temp_path(const std::string& name) {
  static const std::string dir = testing::fresh_temp_dir("io_image_test");
  return path_join(dir, name);
}

// A PNG written with libpng's low-level API in any color type / depth (rows given as bytes).
void write_png_raw(const std::string& path, int w, int h, int color, int depth,
                   const std::vector<uint8_t>& data, const std::vector<png_color>& palette = {}) {
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  png_init_io(png, f);
  png_set_IHDR(png, info, w, h, depth, color, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (!palette.empty()) png_set_PLTE(png, info, palette.data(), static_cast<int>(palette.size()));
  png_write_info(png, info);
  const size_t row = data.size() / static_cast<size_t>(h);
  for (int y = 0; y < h; ++y) png_write_row(png, const_cast<png_bytep>(data.data() + y * row));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  std::fclose(f);
}

void write_jpeg_raw(const std::string& path, const Image& im, bool gray, int quality) {
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  jpeg_compress_struct c;
  jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  jpeg_stdio_dest(&c, f);
  c.image_width = static_cast<JDIMENSION>(im.width);
  c.image_height = static_cast<JDIMENSION>(im.height);
  c.input_components = gray ? 1 : 3;
  c.in_color_space = gray ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, quality, TRUE);
  jpeg_start_compress(&c, TRUE);
  std::vector<uint8_t> row(static_cast<size_t>(im.width * 3));
  while (c.next_scanline < c.image_height) {
    const uint8_t* src = &im.rgb[static_cast<size_t>(c.next_scanline * im.width * 3)];
    if (gray)
      for (int64_t x = 0; x < im.width; ++x) row[static_cast<size_t>(x)] = src[3 * x];
    else
      std::copy(src, src + im.width * 3, row.begin());
    JSAMPROW r = row.data();
    jpeg_write_scanlines(&c, &r, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  std::fclose(f);
}

TEST(Image, PngRgbRoundTripThroughOurWriter) {
  const Image im = random_image(13, 7, 1);
  write_png(temp_path("rgb.png"), im);
  const Image back = read_image(temp_path("rgb.png"));
  EXPECT_EQ(back.width, 13);
  EXPECT_EQ(back.height, 7);
  EXPECT_EQ(back.rgb, im.rgb);
}

TEST(Image, PngColorTypesAsPilConvertRgb) {
  // RGBA: alpha dropped, not composited.
  std::vector<uint8_t> rgba = {10, 20, 30, 0, 40, 50, 60, 128, 70, 80, 90, 255};
  write_png_raw(temp_path("rgba.png"), 3, 1, PNG_COLOR_TYPE_RGB_ALPHA, 8, rgba);
  EXPECT_EQ(read_image(temp_path("rgba.png")).rgb,
            (std::vector<uint8_t>{10, 20, 30, 40, 50, 60, 70, 80, 90}));
  // Grayscale replicated.
  write_png_raw(temp_path("gray.png"), 2, 1, PNG_COLOR_TYPE_GRAY, 8, {7, 200});
  EXPECT_EQ(read_image(temp_path("gray.png")).rgb, (std::vector<uint8_t>{7, 7, 7, 200, 200, 200}));
  // Palette expanded.
  write_png_raw(temp_path("pal.png"), 2, 1, PNG_COLOR_TYPE_PALETTE, 8, {1, 0}, {{1, 2, 3}, {4, 5, 6}});
  EXPECT_EQ(read_image(temp_path("pal.png")).rgb, (std::vector<uint8_t>{4, 5, 6, 1, 2, 3}));
  // 16-bit RGB keeps the high byte; 16-bit gray clips to 255 (Pillow's I;16 -> RGB).
  write_png_raw(temp_path("rgb16.png"), 1, 1, PNG_COLOR_TYPE_RGB, 16, {0x12, 0x34, 0xAB, 0xCD, 0x00, 0xFF});
  EXPECT_EQ(read_image(temp_path("rgb16.png")).rgb, (std::vector<uint8_t>{0x12, 0xAB, 0x00}));
  write_png_raw(temp_path("gray16.png"), 2, 1, PNG_COLOR_TYPE_GRAY, 16, {0x00, 0x64, 0x01, 0x00});
  EXPECT_EQ(read_image(temp_path("gray16.png")).rgb, (std::vector<uint8_t>{100, 100, 100, 255, 255, 255}));
}

TEST(Image, JpegDecodesNearTheSource) {
  // A smooth image survives quality-100 JPEG within a few levels; gray JPEG is replicated.
  Image im{16, 16, std::vector<uint8_t>(16 * 16 * 3)};
  for (int64_t y = 0; y < 16; ++y)
    for (int64_t x = 0; x < 16; ++x)
      for (int c = 0; c < 3; ++c)
        im.rgb[static_cast<size_t>((y * 16 + x) * 3 + c)] = static_cast<uint8_t>(30 + 6 * x + 3 * y + 20 * c);
  write_jpeg_raw(temp_path("rgb.jpg"), im, false, 100);
  const Image back = read_image(temp_path("rgb.jpg"));
  ASSERT_EQ(back.width, 16);
  ASSERT_EQ(back.height, 16);
  int worst = 0;
  for (size_t i = 0; i < im.rgb.size(); ++i)
    worst = std::max(worst, std::abs(int(back.rgb[i]) - int(im.rgb[i])));
  EXPECT_LE(worst, 4);
  write_jpeg_raw(temp_path("gray.jpg"), im, true, 100);
  const Image g = read_image(temp_path("gray.jpg"));
  for (size_t i = 0; i < g.rgb.size(); i += 3) {
    EXPECT_EQ(g.rgb[i], g.rgb[i + 1]);
    EXPECT_EQ(g.rgb[i], g.rgb[i + 2]);
    EXPECT_LE(std::abs(int(g.rgb[i]) - int(im.rgb[i])), 4);
  }
}

void expect_error(const std::string& path, const std::string& fragment) {
  try {
    read_image(path);
    ADD_FAILURE() << path << ": no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(fragment), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(Image, BadFilesNameTheFile) {
  write_png(temp_path("ok.png"), random_image(32, 32, 2));
  const std::string png = read_file(temp_path("ok.png"));
  write_file_atomic(temp_path("trunc.png"), png.substr(0, png.size() / 2));
  expect_error(temp_path("trunc.png"), "invalid PNG (truncated file)");
  std::string corrupt = png;
  corrupt[20] ^= 0x55;  // IHDR payload: CRC mismatch
  write_file_atomic(temp_path("corrupt.png"), corrupt);
  expect_error(temp_path("corrupt.png"), "invalid PNG (IHDR: CRC error)");
  write_jpeg_raw(temp_path("ok.jpg"), random_image(32, 32, 3), false, 90);
  const std::string jpg = read_file(temp_path("ok.jpg"));
  write_file_atomic(temp_path("trunc.jpg"), jpg.substr(0, jpg.size() / 2));
  expect_error(temp_path("trunc.jpg"), "JPEG");
  write_file_atomic(temp_path("head.jpg"), jpg.substr(0, 40));
  expect_error(temp_path("head.jpg"), "JPEG");
  write_file_atomic(temp_path("text.png"), "hello, not an image");
  expect_error(temp_path("text.png"), "not a PNG or JPEG");
  write_file_atomic(temp_path("empty.jpg"), "");
  expect_error(temp_path("empty.jpg"), "not a PNG or JPEG");
  expect_error(temp_path("missing.png"), "missing.png");
}

// Every truncation and a few thousand byte mutations of a PNG and a JPEG: decoded or refused with
// an Error, never a crash (libpng / libjpeg longjmp out of their errors).
TEST(Image, TruncationsAndMutationsNeverCrash) {
  write_png(temp_path("m.png"), random_image(24, 17, 6));
  write_jpeg_raw(temp_path("m.jpg"), random_image(24, 17, 7), false, 80);
  std::mt19937 rng(8);
  for (const char* name : {"m.png", "m.jpg"}) {
    const std::string s = read_file(temp_path(name));
    const std::vector<uint8_t> bytes(s.begin(), s.end());
    int decoded = 0, refused = 0;
    auto attempt = [&](const std::vector<uint8_t>& b) {
      try {
        const Image im = decode_image(b, name);
        EXPECT_EQ(im.rgb.size(), static_cast<size_t>(im.width * im.height * 3));
        ++decoded;
      } catch (const Error&) {
        ++refused;
      }
    };
    for (size_t n = 0; n < bytes.size(); ++n) attempt(std::vector<uint8_t>(bytes.begin(), bytes.begin() + n));
    for (int i = 0; i < 3000; ++i) {
      std::vector<uint8_t> b = bytes;
      for (int k = 0; k < 1 + i % 4; ++k) b[rng() % b.size()] = static_cast<uint8_t>(rng());
      attempt(b);
    }
    EXPECT_GT(refused, static_cast<int>(bytes.size()) / 2) << name;  // truncations are refused
  }
}

// The resize formula evaluated directly in double precision (no fixed point): Pillow's result may
// differ by one level where a value lands near .5.
Image naive_resize(const Image& in, int64_t w, int64_t h) {
  auto cubic = [](double x) {
    x = std::fabs(x);
    const double a = -0.5;
    return x < 1 ? ((a + 2) * x - (a + 3)) * x * x + 1 : x < 2 ? (((x - 5) * x + 8) * x - 4) * a : 0.0;
  };
  auto pass = [&](const Image& src, int64_t out_n, bool horiz) {
    const int64_t in_n = horiz ? src.width : src.height;
    const double scale = double(in_n) / double(out_n), fs = std::max(scale, 1.0), support = 2 * fs;
    Image out{horiz ? out_n : src.width, horiz ? src.height : out_n, {}};
    out.rgb.resize(static_cast<size_t>(out.width * out.height * 3));
    for (int64_t y = 0; y < out.height; ++y)
      for (int64_t x = 0; x < out.width; ++x) {
        const int64_t o = horiz ? x : y;
        const double center = (o + 0.5) * scale;
        double acc[3] = {0, 0, 0}, wsum = 0;
        for (int64_t i = 0; i < in_n; ++i) {
          if (i + 0.5 < center - support || i + 0.5 > center + support) continue;
          const double wt = cubic((i - center + 0.5) / fs);
          wsum += wt;
          const int64_t sx = horiz ? i : x, sy = horiz ? y : i;
          for (int c = 0; c < 3; ++c)
            acc[c] += wt * src.rgb[static_cast<size_t>((sy * src.width + sx) * 3 + c)];
        }
        for (int c = 0; c < 3; ++c)
          out.rgb[static_cast<size_t>((y * out.width + x) * 3 + c)] =
              static_cast<uint8_t>(std::clamp(std::floor(acc[c] / wsum + 0.5), 0.0, 255.0));
      }
    return out;
  };
  const Image t = w != in.width ? pass(in, w, true) : in;
  return h != in.height ? pass(t, h, false) : t;
}

TEST(Image, BicubicResizeMatchesTheFormula) {
  const Image im = random_image(61, 47, 4);
  for (auto [w, h] :
       {std::pair<int64_t, int64_t>{20, 15}, {128, 99}, {61, 30}, {33, 47}, {7, 5}, {200, 160}}) {
    const Image a = resize_bicubic(im, w, h), b = naive_resize(im, w, h);
    ASSERT_EQ(a.rgb.size(), b.rgb.size());
    int worst = 0;
    for (size_t i = 0; i < a.rgb.size(); ++i)
      worst = std::max(worst, std::abs(int(a.rgb[i]) - int(b.rgb[i])));
    EXPECT_LE(worst, 1) << w << "x" << h;
  }
  // A constant image stays constant (weights sum to one in fixed point too).
  Image flat{40, 30, std::vector<uint8_t>(40 * 30 * 3, 173)};
  for (uint8_t v : resize_bicubic(flat, 17, 64).rgb) ASSERT_EQ(v, 173);
  EXPECT_EQ(resize_bicubic(im, 61, 47).rgb, im.rgb);
}

TEST(Image, TorchvisionSizesCropAndNormalize) {
  EXPECT_EQ(resize_shorter_size(500, 375, 256), (std::array<int64_t, 2>{341, 256}));
  EXPECT_EQ(resize_shorter_size(375, 500, 256), (std::array<int64_t, 2>{256, 341}));
  EXPECT_EQ(resize_shorter_size(640, 427, 256), (std::array<int64_t, 2>{383, 256}));  // int(383.7)
  // round((341 - 224) / 2) = round(58.5) = 58 (half to even); round(59.5) = 60.
  Image im{343, 10, std::vector<uint8_t>(343 * 10 * 3)};
  for (int64_t x = 0; x < 343; ++x) im.rgb[static_cast<size_t>(x * 3)] = static_cast<uint8_t>(x % 256);
  EXPECT_EQ(center_crop(im, 224, 10).rgb[0], 60);
  Image im2{341, 10, std::vector<uint8_t>(341 * 10 * 3)};
  for (int64_t x = 0; x < 341; ++x) im2.rgb[static_cast<size_t>(x * 3)] = static_cast<uint8_t>(x % 256);
  EXPECT_EQ(center_crop(im2, 224, 10).rgb[0], 58);
  const Image px{1, 1, {0, 128, 255}};
  const Tensor t = to_normalized_tensor(px, {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f});
  EXPECT_FLOAT_EQ(t.f32()[0], (0.0f - 0.485f) / 0.229f);
  EXPECT_FLOAT_EQ(t.f32()[1], (128.0f / 255.0f - 0.456f) / 0.224f);
  EXPECT_FLOAT_EQ(t.f32()[2], (1.0f - 0.406f) / 0.225f);
  const Tensor full = preprocess_image(random_image(300, 260, 5), {}, "x");
  EXPECT_EQ(full.shape(), (Shape{3, 224, 224}));
  try {
    preprocess_image(random_image(300, 260, 5), {.resize = 200, .crop = 224}, "small.png");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("small.png"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace mamba::io
