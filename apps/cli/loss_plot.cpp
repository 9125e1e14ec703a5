// The training-loss chart (see loss_plot.h): axes with round-number ticks, the raw loss of every
// step in a light colour and its moving average on top, text in a built-in 5x7 pixel font.
#include "loss_plot.h"

#include <mambacpp/mambacpp.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "png.h"

namespace mambacpp::cli {

namespace {

enum Color : uint8_t { kWhite, kAxis, kGrid, kRaw, kMean, kText };

// 5x7 glyphs, one byte per row (bit 4 = leftmost column). Upper case is drawn as lower case;
// g, p, q and y start at the x-height and are drawn two rows lower (descenders).
const std::array<uint8_t, 7>* glyph(char c) {
  struct Entry {
    char c;
    std::array<uint8_t, 7> rows;
  };
  static const Entry font[] = {
      {'a', {0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F}}, {'b', {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E}},
      {'c', {0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E}}, {'d', {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F}},
      {'e', {0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E}}, {'f', {0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08}},
      {'g', {0x0F, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x0E}}, {'h', {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11}},
      {'i', {0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E}}, {'j', {0x02, 0x00, 0x06, 0x02, 0x02, 0x12, 0x0C}},
      {'k', {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12}}, {'l', {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}},
      {'m', {0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11}}, {'n', {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11}},
      {'o', {0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E}}, {'p', {0x1E, 0x11, 0x11, 0x11, 0x1E, 0x10, 0x10}},
      {'q', {0x0F, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x01}}, {'r', {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10}},
      {'s', {0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E}}, {'t', {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06}},
      {'u', {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D}}, {'v', {0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04}},
      {'w', {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A}}, {'x', {0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11}},
      {'y', {0x11, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x0E}}, {'z', {0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F}},
      {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}}, {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
      {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}}, {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
      {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}}, {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
      {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}}, {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
      {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}}, {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
      {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}}, {',', {0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08}},
      {':', {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}}, {'-', {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}},
      {'/', {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00}}, {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}},
      {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}}, {'=', {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00}},
      {'+', {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00}}, {'_', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F}},
  };
  const char lc = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const Entry& e : font)
    if (e.c == lc) return &e.rows;
  return nullptr;  // space and anything else: blank
}

constexpr int kScale = 2;             // font pixels per glyph pixel
constexpr int kAdvance = 6 * kScale;  // glyph width plus one column of spacing

int text_width(const std::string& s) {
  return static_cast<int>(s.size()) * kAdvance - kScale;
}

void draw_text(PaletteImage& img, int x, const int top, const std::string& s, uint8_t color) {
  for (char c : s) {
    const int lower = std::tolower(static_cast<unsigned char>(c));
    const int y = top + (lower != 0 && std::strchr("gpqy", lower) ? 2 * kScale : 0);
    if (const auto* rows = glyph(c))
      for (int r = 0; r < 7; ++r)
        for (int col = 0; col < 5; ++col)
          if ((*rows)[static_cast<size_t>(r)] & (0x10 >> col))
            for (int dy = 0; dy < kScale; ++dy)
              for (int dx = 0; dx < kScale; ++dx) img.set(x + col * kScale + dx, y + r * kScale + dy, color);
    x += kAdvance;
  }
}

// Bresenham, `thick` pixels tall.
void draw_line(PaletteImage& img, int x0, int y0, int x1, int y1, uint8_t color, int thick = 1) {
  const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
  const int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
  int err = dx + dy;
  for (;;) {
    for (int t = 0; t < thick; ++t) img.set(x0, y0 + t, color);
    if (x0 == x1 && y0 == y1) break;
    const int e2 = 2 * err;
    if (e2 >= dy) {
      err += dy;
      x0 += sx;
    }
    if (e2 <= dx) {
      err += dx;
      y0 += sy;
    }
  }
}

// A round tick spacing giving about `target` intervals over `span`.
double nice_step(double span, int target) {
  const double raw = span / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * mag >= raw) return m * mag;
  return 10.0 * mag;
}

std::string tick_text(double v, double step) {
  char buf[32];
  const int decimals = step >= 1 ? 0 : step >= 0.1 ? 1 : 2;
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

}  // namespace

LossCurve read_loss_csv(const std::string& path) {
  std::istringstream in(mambacpp::read_file(path));
  std::string line;
  if (!std::getline(in, line) || line.rfind("step,lr,loss", 0) != 0)
    mambacpp::throw_error(ErrorCode::parse, path, ": expected a train log with header 'step,lr,loss,...'");
  LossCurve c;
  for (int number = 2; std::getline(in, line); ++number) {
    if (line.empty()) continue;
    char* end = nullptr;
    const double step = std::strtod(line.c_str(), &end);
    const size_t lr_end = line.find(',', line.find(',') + 1);
    const double loss = lr_end == std::string::npos ? NAN : std::strtod(line.c_str() + lr_end + 1, nullptr);
    if (*end != ',' || !std::isfinite(loss))
      mambacpp::throw_error(ErrorCode::parse, path, ":", number, ": expected 'step,lr,loss,...', found '",
                            line, "'");
    c.steps.push_back(step);
    c.loss.push_back(loss);
  }
  return c;
}

namespace {

constexpr int kW = 900, kH = 540;

// The plot area with its value ranges: loss on y (rounded out to ticks), steps on x from 0.
struct Frame {
  int x0 = 90, x1 = kW - 24, y0 = kH - 70, y1 = 56;  // y0 at the bottom
  double lo = 0, hi = 1, s_hi = 1;
  int px(double s) const { return x0 + static_cast<int>(std::lround(s / s_hi * (x1 - x0))); }
  int py(double v) const { return y0 - static_cast<int>(std::lround((v - lo) / (hi - lo) * (y0 - y1))); }
};

// Title, grid, ticks and axis labels for losses in [lo, hi] over steps [0, s_hi].
Frame draw_frame(PaletteImage& img, const std::string& title, double lo, double hi, double s_hi) {
  Frame f;
  draw_text(img, (kW - text_width(title)) / 2, 12, title, kText);
  if (hi - lo < 1e-9) hi = lo + 1.0;
  const double ystep = nice_step(hi - lo, 6);
  f.lo = std::floor(lo / ystep) * ystep;
  f.hi = std::ceil(hi / ystep) * ystep;
  f.s_hi = std::max(s_hi, 1.0);
  const double xstep = std::max(1.0, nice_step(f.s_hi, 8));  // steps are whole numbers
  for (double v = f.lo; v <= f.hi + ystep / 2; v += ystep) {
    draw_line(img, f.x0, f.py(v), f.x1, f.py(v), kGrid);
    const std::string t = tick_text(v, ystep);
    draw_text(img, f.x0 - 10 - text_width(t), f.py(v) - 7, t, kText);
  }
  for (double st = 0; st <= f.s_hi + xstep / 2; st += xstep) {
    draw_line(img, f.px(st), f.y0, f.px(st), f.y1, kGrid);
    const std::string t = tick_text(st, xstep);
    draw_text(img, f.px(st) - text_width(t) / 2, f.y0 + 10, t, kText);
  }
  draw_line(img, f.x0, f.y0, f.x1, f.y0, kAxis);
  draw_line(img, f.x0, f.y0, f.x0, f.y1, kAxis);
  draw_text(img, (f.x0 + f.x1 - text_width("step")) / 2, kH - 28, "step", kText);
  draw_text(img, 8, f.y1 - 28, "loss", kText);
  return f;
}

// Centred moving average over about 1/40 of the run.
std::vector<double> moving_average(const std::vector<double>& v) {
  const size_t n = v.size(), half = std::max<size_t>(1, n / 80);
  std::vector<double> mean(n);
  for (size_t i = 0; i < n; ++i) {
    const size_t a = i >= half ? i - half : 0, b = std::min(n - 1, i + half);
    double sum = 0;
    for (size_t k = a; k <= b; ++k) sum += v[k];
    mean[i] = sum / static_cast<double>(b - a + 1);
  }
  return mean;
}

void draw_curve(PaletteImage& img, const Frame& f, const std::vector<double>& steps,
                const std::vector<double>& y, uint8_t color, int thick) {
  for (size_t i = 1; i < steps.size(); ++i)
    draw_line(img, f.px(steps[i - 1]), f.py(y[i - 1]), f.px(steps[i]), f.py(y[i]), color, thick);
}

const std::vector<Rgb> kBasePalette = {{255, 255, 255}, {60, 60, 60},  {228, 228, 228},
                                       {160, 196, 232}, {20, 80, 170}, {30, 30, 30}};
// Distinct line colours of the runs chart (cycled past 12 runs).
const std::vector<Rgb> kRunColors = {{31, 119, 180},  {255, 127, 14}, {44, 160, 44},   {214, 39, 40},
                                     {148, 103, 189}, {140, 86, 75},  {227, 119, 194}, {127, 127, 127},
                                     {188, 189, 34},  {23, 190, 207}, {0, 0, 128},     {128, 0, 0}};

}  // namespace

std::string loss_plot_png(const LossCurve& curve, const std::string& title) {
  PaletteImage img(kW, kH, kBasePalette, kWhite);
  if (curve.steps.empty()) {
    const Frame f = draw_frame(img, title, 0, 1, 1);
    draw_text(img, f.x0 + 20, (f.y0 + f.y1) / 2, "no steps logged", kText);
    return encode_png(img);
  }
  const Frame f = draw_frame(img, title, *std::min_element(curve.loss.begin(), curve.loss.end()),
                             *std::max_element(curve.loss.begin(), curve.loss.end()), curve.steps.back());
  draw_curve(img, f, curve.steps, curve.loss, kRaw, 1);
  draw_curve(img, f, curve.steps, moving_average(curve.loss), kMean, 2);
  const std::string legend = "light: every step, dark: moving average";
  draw_text(img, f.x1 - text_width(legend) - 8, f.y1 + 8, legend, kText);
  return encode_png(img);
}

std::string runs_plot_png(const std::vector<NamedCurve>& runs, const std::string& title) {
  std::vector<Rgb> palette = kBasePalette;
  palette.insert(palette.end(), kRunColors.begin(), kRunColors.end());
  PaletteImage img(kW, kH, palette, kWhite);
  double lo = INFINITY, hi = -INFINITY, s_hi = 1;
  for (const NamedCurve& r : runs)
    for (size_t i = 0; i < r.curve.steps.size(); ++i) {
      lo = std::min(lo, r.curve.loss[i]);
      hi = std::max(hi, r.curve.loss[i]);
      s_hi = std::max(s_hi, r.curve.steps[i]);
    }
  if (!(lo <= hi)) {
    const Frame f = draw_frame(img, title, 0, 1, 1);
    draw_text(img, f.x0 + 20, (f.y0 + f.y1) / 2, "no steps logged", kText);
    return encode_png(img);
  }
  const Frame f = draw_frame(img, title, lo, hi, s_hi);
  // One moving average per run in its colour; the legend lists them down the top right.
  constexpr size_t kLegendRows = 16;
  for (size_t k = 0; k < runs.size(); ++k) {
    const uint8_t color = static_cast<uint8_t>(kBasePalette.size() + k % kRunColors.size());
    draw_curve(img, f, runs[k].curve.steps, moving_average(runs[k].curve.loss), color, 2);
    if (k >= kLegendRows) continue;
    const std::string name = k + 1 == kLegendRows && runs.size() > kLegendRows
                                 ? "and " + std::to_string(runs.size() - k) + " more"
                                 : runs[k].name;
    const int y = f.y1 + 8 + static_cast<int>(k) * 18, x = f.x1 - text_width(name) - 8;
    draw_line(img, x - 30, y + 7, x - 8, y + 7, color, 3);
    draw_text(img, x, y, name, kText);
  }
  return encode_png(img);
}

}  // namespace mambacpp::cli
