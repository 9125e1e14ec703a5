// PNG writer (see png.h).
#include "png.h"

#include <mambacpp/mambacpp.h>

#include <algorithm>

namespace mambacpp::cli {

namespace {

// Deflate's bit order: values LSB first, Huffman codes MSB first.
class BitWriter {
public:
  void bits(uint32_t value, int n) {
    for (int i = 0; i < n; ++i) put((value >> i) & 1u);
  }
  void code(uint32_t code, int n) {
    for (int i = n - 1; i >= 0; --i) put((code >> i) & 1u);
  }
  std::string finish() {
    if (used_ > 0) out_.push_back(static_cast<char>(cur_));
    used_ = 0;
    cur_ = 0;
    return std::move(out_);
  }

private:
  void put(uint32_t bit) {
    cur_ |= static_cast<uint8_t>(bit << used_);
    if (++used_ == 8) {
      out_.push_back(static_cast<char>(cur_));
      cur_ = 0;
      used_ = 0;
    }
  }
  std::string out_;
  uint8_t cur_ = 0;
  int used_ = 0;
};

// The fixed literal/length code of RFC 1951 section 3.2.6.
void literal_length(BitWriter& w, int symbol) {
  if (symbol < 144)
    w.code(0x30 + symbol, 8);
  else if (symbol < 256)
    w.code(0x190 + (symbol - 144), 9);
  else if (symbol < 280)
    w.code(symbol - 256, 7);
  else
    w.code(0xC0 + (symbol - 280), 8);
}

// A match of `length` (3..258) at distance 1.
void match(BitWriter& w, int length) {
  static constexpr std::array<int, 29> base = {3,  4,  5,  6,   7,   8,   9,   10,  11, 13,
                                               15, 17, 19, 23,  27,  31,  35,  43,  51, 59,
                                               67, 83, 99, 115, 131, 163, 195, 227, 258};
  static constexpr std::array<int, 29> extra = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                                2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
  int i = 28;
  while (base[static_cast<size_t>(i)] > length) --i;
  literal_length(w, 257 + i);
  w.bits(static_cast<uint32_t>(length - base[static_cast<size_t>(i)]), extra[static_cast<size_t>(i)]);
  w.code(0, 5);  // distance code 0: distance 1, no extra bits
}

void append_u32(std::string& s, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) s.push_back(static_cast<char>((v >> shift) & 0xFF));
}

void append_chunk(std::string& png, const char* type, const std::string& data) {
  append_u32(png, static_cast<uint32_t>(data.size()));
  const std::string body = std::string(type, 4) + data;
  png += body;
  append_u32(png, crc32(reinterpret_cast<const uint8_t*>(body.data()), body.size()));
}

}  // namespace

PaletteImage::PaletteImage(int w, int h, std::vector<Rgb> colors, uint8_t background)
    : width(w), height(h), palette(std::move(colors)), pixels(static_cast<size_t>(w) * h, background) {
  if (w <= 0 || h <= 0 || palette.empty() || palette.size() > 256 || background >= palette.size())
    mambacpp::throw_error(ErrorCode::invalid_argument, "png: bad image ", w, "x", h, " with ", palette.size(),
                          " colours");
}

uint32_t crc32(const uint8_t* data, size_t n, uint32_t crc) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ data[i]) & 0xFFu] ^ (crc >> 8);
  return ~crc;
}

std::string zlib_compress(const std::vector<uint8_t>& data) {
  BitWriter w;
  w.bits(1, 1);  // BFINAL: one block
  w.bits(1, 2);  // BTYPE 01: fixed Huffman codes
  for (size_t i = 0; i < data.size();) {
    // A run of the previous byte: copy it from distance 1.
    size_t run = 0;
    if (i > 0)
      while (run < 258 && i + run < data.size() && data[i + run] == data[i - 1]) ++run;
    if (run >= 3) {
      match(w, static_cast<int>(run));
      i += run;
    } else {
      literal_length(w, data[i]);
      ++i;
    }
  }
  literal_length(w, 256);  // end of block
  std::string out = {static_cast<char>(0x78), static_cast<char>(0x01)};
  out += w.finish();
  uint32_t a = 1, b = 0;  // Adler-32 of the uncompressed data
  for (uint8_t byte : data) {
    a = (a + byte) % 65521u;
    b = (b + a) % 65521u;
  }
  append_u32(out, (b << 16) | a);
  return out;
}

std::string encode_png(const PaletteImage& image) {
  std::string png = "\x89PNG\r\n\x1a\n";
  std::string ihdr;
  append_u32(ihdr, static_cast<uint32_t>(image.width));
  append_u32(ihdr, static_cast<uint32_t>(image.height));
  ihdr += std::string{8, 3, 0, 0, 0};  // 8-bit palette indices, deflate, adaptive filters, no interlace
  append_chunk(png, "IHDR", ihdr);
  std::string plte;
  for (const Rgb& c : image.palette)
    plte += std::string{static_cast<char>(c.r), static_cast<char>(c.g), static_cast<char>(c.b)};
  append_chunk(png, "PLTE", plte);
  std::vector<uint8_t> raw;
  raw.reserve(static_cast<size_t>(image.width + 1) * image.height);
  for (int y = 0; y < image.height; ++y) {
    raw.push_back(0);  // filter: none
    const auto row = image.pixels.begin() + static_cast<std::ptrdiff_t>(y) * image.width;
    raw.insert(raw.end(), row, row + image.width);
  }
  append_chunk(png, "IDAT", zlib_compress(raw));
  append_chunk(png, "IEND", "");
  return png;
}

}  // namespace mambacpp::cli
