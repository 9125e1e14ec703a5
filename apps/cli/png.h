// A minimal PNG writer for the CLI's plots (train --plot): 8-bit palette images, compressed with
// a small deflate (fixed Huffman codes, runs of a repeated byte as distance-1 matches), which is
// enough for flat-coloured charts (a 900x540 plot is a few KiB) and needs no library.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace mambacpp::cli {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
};

// A width x height image of palette indices (row-major), with its palette (at most 256 colours).
struct PaletteImage {
  int width = 0, height = 0;
  std::vector<Rgb> palette;
  std::vector<uint8_t> pixels;

  PaletteImage(int w, int h, std::vector<Rgb> colors, uint8_t background);
  void set(int x, int y, uint8_t color) {
    if (x >= 0 && y >= 0 && x < width && y < height) pixels[static_cast<size_t>(y) * width + x] = color;
  }
};

// The zlib stream (RFC 1950/1951) of `data`: fixed-Huffman deflate with run-length matches.
std::string zlib_compress(const std::vector<uint8_t>& data);
// CRC-32 as PNG chunks use it.
uint32_t crc32(const uint8_t* data, size_t n, uint32_t crc = 0);

// The bytes of a PNG file holding `image`.
std::string encode_png(const PaletteImage& image);

}  // namespace mambacpp::cli
