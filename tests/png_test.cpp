// The PNG writer of `train --plot` (apps/cli/png.cpp): its zlib streams inflate back to the input
// (an independent inflater of fixed-Huffman blocks, written from RFC 1951 here), its chunks carry
// correct CRCs, and the loss charts (one run, packed runs) are PNGs of the stated size whose pixels decode.
#include "../apps/cli/png.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "../apps/cli/loss_plot.h"

namespace mambacpp::cli {
namespace {

// Reads a zlib stream whose deflate blocks use the fixed Huffman codes (BTYPE 01), as png.cpp
// writes them; fails the test on anything else.
std::vector<uint8_t> inflate_fixed(const std::string& z) {
  std::vector<uint8_t> out;
  size_t pos = 2 * 8;  // bit position, after the 2-byte zlib header
  auto bit = [&]() -> uint32_t {
    const uint32_t b = (static_cast<uint8_t>(z.at(pos / 8)) >> (pos % 8)) & 1u;
    ++pos;
    return b;
  };
  auto bits = [&](int n) {
    uint32_t v = 0;
    for (int i = 0; i < n; ++i) v |= bit() << i;
    return v;
  };
  EXPECT_EQ((static_cast<uint8_t>(z[0]) * 256 + static_cast<uint8_t>(z[1])) % 31, 0) << "zlib header check";
  static const int len_base[] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
  static const int len_extra[] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                  2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
  static const int dist_base[] = {1,    2,    3,    4,    5,    7,    9,    13,    17,    25,
                                  33,   49,   65,   97,   129,  193,  257,  385,   513,   769,
                                  1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
  for (bool last = false; !last;) {
    last = bit() != 0;
    const uint32_t type = bits(2);
    if (type != 1) {
      ADD_FAILURE() << "block type " << type << ", expected 1 (fixed Huffman)";
      return out;
    }
    for (;;) {
      uint32_t code = 0;
      for (int i = 0; i < 7; ++i) code = (code << 1) | bit();
      int symbol;
      if (code <= 0x17) {
        symbol = 256 + static_cast<int>(code);
      } else {
        code = (code << 1) | bit();
        if (code >= 0x30 && code <= 0xBF)
          symbol = static_cast<int>(code) - 0x30;
        else if (code >= 0xC0 && code <= 0xC7)
          symbol = 280 + static_cast<int>(code) - 0xC0;
        else
          symbol = 144 + static_cast<int>(((code << 1) | bit()) - 0x190);
      }
      if (symbol < 256) {
        out.push_back(static_cast<uint8_t>(symbol));
        continue;
      }
      if (symbol == 256) break;
      const int li = symbol - 257;
      const int length = len_base[li] + static_cast<int>(bits(len_extra[li]));
      uint32_t dcode = 0;
      for (int i = 0; i < 5; ++i) dcode = (dcode << 1) | bit();
      const int dextra = dcode < 4 ? 0 : static_cast<int>(dcode / 2) - 1;
      const size_t distance = static_cast<size_t>(dist_base[dcode] + static_cast<int>(bits(dextra)));
      if (distance > out.size()) {
        ADD_FAILURE() << "distance " << distance << " before the start";
        return out;
      }
      for (int i = 0; i < length; ++i) out.push_back(out[out.size() - distance]);
    }
  }
  const size_t end = (pos + 7) / 8;
  EXPECT_EQ(end + 4, z.size()) << "Adler-32 must follow the last block";
  uint32_t a = 1, b = 0;
  for (uint8_t v : out) {
    a = (a + v) % 65521u;
    b = (b + a) % 65521u;
  }
  uint32_t stored = 0;
  for (size_t i = end; i < end + 4 && i < z.size(); ++i) stored = (stored << 8) | static_cast<uint8_t>(z[i]);
  EXPECT_EQ(stored, (b << 16) | a) << "Adler-32";
  return out;
}

uint32_t be32(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(s.at(at + i));
  return v;
}

struct Chunk {
  std::string type, data;
};

// The chunks of a PNG file, checking the signature and every CRC.
std::vector<Chunk> chunks(const std::string& png) {
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  std::vector<Chunk> list;
  for (size_t at = 8; at < png.size();) {
    const uint32_t n = be32(png, at);
    Chunk c{png.substr(at + 4, 4), png.substr(at + 8, n)};
    const std::string body = png.substr(at + 4, 4 + n);
    EXPECT_EQ(be32(png, at + 8 + n), crc32(reinterpret_cast<const uint8_t*>(body.data()), body.size()))
        << c.type;
    list.push_back(c);
    at += 12 + n;
  }
  return list;
}

TEST(Png, Crc32MatchesTheStandardCheckValue) {
  const std::string s = "123456789";
  EXPECT_EQ(crc32(reinterpret_cast<const uint8_t*>(s.data()), s.size()), 0xCBF43926u);
}

TEST(Png, ZlibStreamsInflateToTheInput) {
  std::mt19937 rng(5);
  std::vector<std::vector<uint8_t>> inputs = {{}, {7}, {0, 0}, std::vector<uint8_t>(1000, 0)};
  std::vector<uint8_t> mixed;
  for (int i = 0; i < 5000; ++i) {
    const uint8_t v = static_cast<uint8_t>(rng() % 256);
    mixed.insert(mixed.end(), rng() % 3 == 0 ? 1 + rng() % 600 : 1, v);  // runs of every length
  }
  inputs.push_back(mixed);
  for (const auto& in : inputs) {
    const std::string z = zlib_compress(in);
    EXPECT_EQ(inflate_fixed(z), in) << in.size() << " bytes";
  }
  EXPECT_LT(zlib_compress(std::vector<uint8_t>(100000, 3)).size(), 2000u);  // runs compress
}

TEST(Png, LossChartIsAValidImage) {
  LossCurve curve;
  for (int s = 1; s <= 300; ++s) {
    curve.steps.push_back(s);
    curve.loss.push_back(5.5 * std::exp(-s / 80.0) + 1.5 + 0.1 * std::sin(s));
  }
  const std::string png = loss_plot_png(curve, "training loss: text, Mamba3 x 2");
  const std::vector<Chunk> list = chunks(png);
  ASSERT_EQ(list.size(), 4u);
  EXPECT_EQ(list[0].type, "IHDR");
  EXPECT_EQ(be32(list[0].data, 0), 900u);
  EXPECT_EQ(be32(list[0].data, 4), 540u);
  EXPECT_EQ(list[0].data.substr(8), std::string({8, 3, 0, 0, 0}));
  EXPECT_EQ(list[1].type, "PLTE");
  EXPECT_EQ(list[2].type, "IDAT");
  EXPECT_EQ(list[3].type, "IEND");
  const std::vector<uint8_t> raw = inflate_fixed(list[2].data);
  ASSERT_EQ(raw.size(), 540u * 901u);
  const size_t colors = list[1].data.size() / 3;
  size_t ink = 0;
  for (size_t y = 0; y < 540; ++y) {
    EXPECT_EQ(raw[y * 901], 0) << "filter byte of row " << y;
    for (size_t x = 1; x < 901; ++x) {
      ASSERT_LT(raw[y * 901 + x], colors);
      ink += raw[y * 901 + x] != 0;
    }
  }
  EXPECT_GT(ink, 5000u);  // axes, curves and text were drawn
  EXPECT_LT(png.size(), 40000u);
}

TEST(Png, RunsChartDrawsEveryRunInItsColour) {
  std::vector<NamedCurve> runs;
  for (int r = 0; r < 20; ++r) {  // more runs than the legend lists and than there are colours
    NamedCurve c{"seed" + std::to_string(r), {}};
    for (int s = 1; s <= 200; ++s) {
      c.curve.steps.push_back(s);
      c.curve.loss.push_back((3.0 + 0.1 * r) * std::exp(-s / (20.0 + 5 * r)) + 0.5);
    }
    runs.push_back(c);
  }
  const std::string png = runs_plot_png(runs, "training loss: parity, 20 runs");
  const std::vector<Chunk> list = chunks(png);
  ASSERT_EQ(list.size(), 4u);
  EXPECT_EQ(be32(list[0].data, 0), 900u);
  EXPECT_EQ(be32(list[0].data, 4), 540u);
  const size_t colors = list[1].data.size() / 3;
  ASSERT_EQ(colors, 6u + 12u);  // the chart's own 6 and 12 run colours
  const std::vector<uint8_t> raw = inflate_fixed(list[2].data);
  ASSERT_EQ(raw.size(), 540u * 901u);
  std::vector<size_t> used(colors, 0);
  for (size_t y = 0; y < 540; ++y)
    for (size_t x = 1; x < 901; ++x) {
      ASSERT_LT(raw[y * 901 + x], colors);
      ++used[raw[y * 901 + x]];
    }
  for (size_t c = 6; c < colors; ++c) EXPECT_GT(used[c], 100u) << "run colour " << c - 6 << " drawn";
  // No runs, or runs without steps: the frame and a note, still a valid image.
  EXPECT_EQ(chunks(runs_plot_png({}, "empty")).size(), 4u);
  EXPECT_EQ(chunks(runs_plot_png({NamedCurve{"a", {}}}, "empty")).size(), 4u);
}

}  // namespace
}  // namespace mambacpp::cli
