// .npy reader and writer (see npy.h). Layout: "\x93NUMPY", major, minor, header length
// (u16 for 1.0, u32 for 2.0/3.0), a Python dict literal padded to 64 bytes, then the data.
#include "io/npy.h"

#include <algorithm>
#include <bit>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

#include "core/error.h"
#include "core/file_util.h"

namespace mamba::io {

static_assert(std::endian::native == std::endian::little, ".npy data is read as little-endian");

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;

template <typename... Args>
[[noreturn]] void fail(ErrorCode code, const std::string& file, const Args&... args) {
  throw_error(code, file, ": ", args...);
}

struct NpyDescr {
  const char* descr;
  size_t item_size;
  DType dtype;  // what the tensor holds ('<f8' is converted to f32)
};
constexpr NpyDescr kDescrs[] = {
    {"<f4", 4, DType::f32}, {"<f8", 8, DType::f32}, {"<f2", 2, DType::f16},
    {"<i8", 8, DType::i64}, {"<i4", 4, DType::i32}, {"|u1", 1, DType::u8},
};

struct NpyHeader {
  std::optional<std::string> descr;
  std::optional<bool> fortran_order;
  std::optional<Shape> shape;
};

// Parses the header dict, e.g. {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }.
// Only the literals NumPy writes are accepted: quoted strings, True/False, tuples of ints.
class HeaderParser {
public:
  HeaderParser(const std::string& file, const std::string& text) : file_(file), text_(text) {}

  NpyHeader parse() {
    NpyHeader header;
    expect('{');
    while (!accept('}')) {
      const std::string key = parse_string();
      expect(':');
      if (key == "descr") {
        header.descr = parse_string();
      } else if (key == "fortran_order") {
        header.fortran_order = parse_bool();
      } else if (key == "shape") {
        header.shape = parse_shape();
      } else {
        error("unexpected key '" + key + "'");
      }
      if (!accept(',')) {
        expect('}');
        break;
      }
    }
    skip_space();
    if (pos_ != text_.size()) error("trailing characters");
    return header;
  }

private:
  [[noreturn]] void error(const std::string& what) const {
    std::string shown;  // the header on one line, control characters replaced
    for (char c : text_.substr(0, 60)) shown += std::isprint(static_cast<unsigned char>(c)) ? c : ' ';
    while (!shown.empty() && shown.back() == ' ') shown.pop_back();
    fail(ErrorCode::parse, file_, "cannot parse the header dict at character ", pos_, " (", what,
         "): ", shown);
  }

  void skip_space() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  bool accept(char c) {
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!accept(c)) error(std::string("expected '") + c + "'");
  }
  bool accept_word(const char* word) {
    skip_space();
    const size_t n = std::strlen(word);
    if (text_.compare(pos_, n, word) != 0) return false;
    pos_ += n;
    return true;
  }

  std::string parse_string() {
    skip_space();
    if (pos_ >= text_.size() || (text_[pos_] != '\'' && text_[pos_] != '"'))
      error("expected a quoted string");
    const char quote = text_[pos_++];
    const size_t end = text_.find(quote, pos_);
    if (end == std::string::npos) error("unterminated string");
    std::string s = text_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return s;
  }

  bool parse_bool() {
    if (accept_word("True")) return true;
    if (accept_word("False")) return false;
    error("expected True or False");
  }

  // "()", "(5,)", "(2, 3)"; Python 2 wrote longs as "3L".
  Shape parse_shape() {
    Shape shape;
    expect('(');
    while (!accept(')')) {
      skip_space();
      const size_t start = pos_;
      int64_t n = 0;
      while (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) {
        if (n > (int64_t{1} << 50)) error("dimension too large");
        n = n * 10 + (text_[pos_++] - '0');
      }
      if (pos_ == start) error("expected a non-negative integer");
      if (pos_ < text_.size() && text_[pos_] == 'L') ++pos_;
      shape.push_back(n);
      if (!accept(',')) {
        expect(')');
        break;
      }
    }
    return shape;
  }

  const std::string& file_;
  const std::string& text_;
  size_t pos_ = 0;
};

std::string shape_tuple(const Shape& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

}  // namespace

Tensor read_npy(const std::string& path) {
  const std::string bytes = read_file(path);
  if (bytes.size() < kMagicLen + 2 || bytes.compare(0, kMagicLen, kMagic) != 0)
    fail(ErrorCode::parse, path, "not a .npy file (bad magic; expected \\x93NUMPY)");
  const int major = static_cast<unsigned char>(bytes[6]), minor = static_cast<unsigned char>(bytes[7]);
  if (major < 1 || major > 3 || minor != 0)
    fail(ErrorCode::unsupported, path, "unsupported .npy version ", major, ".", minor,
         ", expected 1.0, 2.0 or 3.0");
  const size_t len_bytes = major == 1 ? 2 : 4;
  const size_t prefix = 8 + len_bytes;
  if (bytes.size() < prefix)
    fail(ErrorCode::parse, path, "truncated header: file is ", bytes.size(), " bytes, the preamble needs ",
         prefix);
  uint32_t header_len = 0;
  std::memcpy(&header_len, bytes.data() + 8, len_bytes);
  if (prefix + header_len > bytes.size())
    fail(ErrorCode::parse, path, "truncated header: header length ", header_len,
         " runs past the end of the file (", bytes.size(), " bytes)");

  const std::string text = bytes.substr(prefix, header_len);
  const NpyHeader header = HeaderParser(path, text).parse();
  if (!header.descr) fail(ErrorCode::parse, path, "header dict has no 'descr'");
  if (!header.fortran_order) fail(ErrorCode::parse, path, "header dict has no 'fortran_order'");
  if (!header.shape) fail(ErrorCode::parse, path, "header dict has no 'shape'");
  if (*header.fortran_order)
    fail(ErrorCode::unsupported, path, "fortran_order arrays are not supported (save in C order)");
  const NpyDescr* descr = nullptr;
  for (const NpyDescr& d : kDescrs)
    if (*header.descr == d.descr) descr = &d;
  if (!descr && !header.descr->empty() && header.descr->front() == '>')
    fail(ErrorCode::unsupported, path, "big-endian descr '", *header.descr, "' is not supported");
  if (!descr)
    fail(ErrorCode::unsupported, path, "descr '", *header.descr,
         "' is not supported (expected '<f4', '<f8', '<f2', '<i8', '<i4' or '|u1')");

  const Shape& shape = *header.shape;
  // The product of the non-zero dimensions is bounded too: a zero dimension makes an empty array,
  // but the strides of the others are still products of them (fuzzing found (4e9, 0, 4e9)).
  uint64_t numel = 1, span = 1;
  for (int64_t d : shape)
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel) ||
        __builtin_mul_overflow(span, static_cast<uint64_t>(std::max<int64_t>(d, 1)), &span) ||
        span > (uint64_t{1} << 50))
      fail(ErrorCode::parse, path, "shape ", shape_str(shape), " is too large");
  const size_t needed = numel * descr->item_size;
  const size_t found = bytes.size() - prefix - header_len;
  if (found < needed)
    fail(ErrorCode::parse, path, "data is ", found, " bytes, expected ", needed, " for shape ",
         shape_str(shape), " of '", descr->descr, "'");

  Tensor out = Tensor::empty(shape, descr->dtype);
  const char* src = bytes.data() + prefix + header_len;
  if (std::string_view(descr->descr) == "<f8") {
    float* dst = out.f32();
    for (size_t i = 0; i < numel; ++i) {
      double v;
      std::memcpy(&v, src + i * 8, 8);
      dst[i] = static_cast<float>(v);
    }
  } else if (needed > 0) {
    std::memcpy(out.raw(), src, needed);
  }
  return out;
}

void write_npy(const std::string& path, const Tensor& tensor) {
  MAMBA_CHECK(tensor.defined(), "write_npy of an undefined tensor");
  const char* descr = nullptr;
  for (const NpyDescr& d : kDescrs)  // the size test skips '<f8', which is only read
    if (d.dtype == tensor.dtype() && d.item_size == dtype_size(d.dtype)) descr = d.descr;
  if (!descr) fail(ErrorCode::unsupported, path, "cannot write ", dtype_name(tensor.dtype()), " to .npy");

  std::string header = std::string("{'descr': '") + descr +
                       "', 'fortran_order': False, 'shape': " + shape_tuple(tensor.shape()) + ", }";
  // NumPy pads so the data starts on a 64-byte boundary; the header ends with '\n'.
  const size_t preamble = kMagicLen + 2 + 2;
  header.append(63 - (preamble + header.size()) % 64, ' ');
  header += '\n';
  MAMBA_CHECK(header.size() < 65536);

  const Tensor cpu = (tensor.device() == Device::cpu ? tensor : tensor.to(Device::cpu)).contiguous();
  std::string out(kMagic, kMagicLen);
  out += '\x01';
  out += '\x00';
  const uint16_t header_len = static_cast<uint16_t>(header.size());
  out.append(reinterpret_cast<const char*>(&header_len), 2);
  out += header;
  out.append(static_cast<const char*>(cpu.raw()), cpu.nbytes());
  write_file_atomic(path, out);
}

}  // namespace mamba::io
