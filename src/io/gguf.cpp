// GGUF reader and writer (gguf.h). Layout: "GGUF", version u32, tensor count u64, metadata count
// u64; the metadata (key string, type u32, value); the tensor infos (name, n_dims u32, dims u64
// innermost first, ggml type u32, offset u64 into the data section); padding to the alignment
// (general.alignment, else 32); the data section. Strings are a u64 length and the bytes.
#include "io/gguf.h"

#include <bit>
#include <cstring>
#include <vector>

#include "core/checked.h"
#include "core/error.h"
#include "core/file_util.h"
#include "core/quant_blocks.h"
#include "io/mapped_file.h"

namespace mamba::io {

static_assert(std::endian::native == std::endian::little, "GGUF data is little-endian");

namespace {

constexpr uint32_t kMaxDims = 4;  // ggml's GGML_MAX_DIMS

struct GgmlTypeEntry {
  uint32_t ggml_type;
  DType dtype;
  const char* name;
};
constexpr GgmlTypeEntry kTypes[] = {
    {0, DType::f32, "F32"},   {1, DType::f16, "F16"},    {30, DType::bf16, "BF16"}, {8, DType::q8_0, "Q8_0"},
    {2, DType::q4_0, "Q4_0"}, {12, DType::q4_k, "Q4_K"}, {14, DType::q6_k, "Q6_K"},
};

const GgmlTypeEntry* find_type(uint32_t ggml_type) {
  for (const GgmlTypeEntry& e : kTypes)
    if (e.ggml_type == ggml_type) return &e;
  return nullptr;
}

// Size in bytes of one scalar value of `type` (0 for strings and arrays).
size_t scalar_size(GgufType type) {
  switch (type) {
    case GgufType::u8:
    case GgufType::i8:
    case GgufType::boolean:
      return 1;
    case GgufType::u16:
    case GgufType::i16:
      return 2;
    case GgufType::u32:
    case GgufType::i32:
    case GgufType::f32:
      return 4;
    case GgufType::u64:
    case GgufType::i64:
    case GgufType::f64:
      return 8;
    case GgufType::string:
    case GgufType::array:
      return 0;
  }
  return 0;
}

bool is_known_type(uint32_t t) {
  return t <= static_cast<uint32_t>(GgufType::f64);
}

// A bounds-checked cursor over the mapped bytes: every read names the field it reads.
class Cursor {
public:
  Cursor(const uint8_t* data, uint64_t size, const std::string& path)
      : data_(data), size_(size), path_(path) {}

  uint64_t pos() const { return pos_; }
  uint64_t left() const { return size_ - pos_; }

  void need(uint64_t n, const std::string& field) const {
    if (n > left())
      throw_error(ErrorCode::parse, path_, ": ", field, " at byte ", pos_, " needs ", n,
                  " bytes, the file has ", left(), " left (", size_, " bytes)");
  }
  template <typename T>
  T read(const std::string& field) {
    need(sizeof(T), field);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const std::string& field) {
    const uint64_t n = read<uint64_t>(field + " length");
    need(n, field);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(n));
    pos_ += n;
    return s;
  }

private:
  const uint8_t* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
  const std::string& path_;
};

GgufValue read_scalar(Cursor& c, GgufType type, const std::string& field) {
  GgufValue v;
  v.type = type;
  switch (type) {
    case GgufType::u8:
      v.u = c.read<uint8_t>(field);
      break;
    case GgufType::i8:
      v.i = c.read<int8_t>(field);
      break;
    case GgufType::u16:
      v.u = c.read<uint16_t>(field);
      break;
    case GgufType::i16:
      v.i = c.read<int16_t>(field);
      break;
    case GgufType::u32:
      v.u = c.read<uint32_t>(field);
      break;
    case GgufType::i32:
      v.i = c.read<int32_t>(field);
      break;
    case GgufType::f32:
      v.f = c.read<float>(field);
      break;
    case GgufType::boolean:
      v.u = c.read<uint8_t>(field) != 0;
      break;
    case GgufType::string:
      v.s = c.read_string(field);
      break;
    case GgufType::u64:
      v.u = c.read<uint64_t>(field);
      break;
    case GgufType::i64:
      v.i = c.read<int64_t>(field);
      break;
    case GgufType::f64:
      v.f = c.read<double>(field);
      break;
    case GgufType::array:
      break;  // handled by read_value
  }
  return v;
}

GgufValue read_value(Cursor& c, const std::string& path, const std::string& key) {
  const std::string field = "metadata '" + key + "'";
  const uint32_t raw_type = c.read<uint32_t>(field + " type");
  if (!is_known_type(raw_type))
    throw_error(ErrorCode::parse, path, ": ", field, " has type ", raw_type, ", expected 0..12");
  const auto type = static_cast<GgufType>(raw_type);
  if (type != GgufType::array) return read_scalar(c, type, field);
  const uint32_t raw_elem = c.read<uint32_t>(field + " element type");
  if (!is_known_type(raw_elem) || raw_elem == static_cast<uint32_t>(GgufType::array))
    throw_error(ErrorCode::parse, path, ": ", field, " has array element type ", raw_elem,
                ", expected 0..12 but not 9 (nested arrays)");
  const auto elem = static_cast<GgufType>(raw_elem);
  const uint64_t n = c.read<uint64_t>(field + " array length");
  // Each element takes at least its scalar size (a string at least its 8-byte length).
  const uint64_t min_bytes =
      checked_mul(n, static_cast<uint64_t>(elem == GgufType::string ? 8 : scalar_size(elem)),
                  (path + ": " + field + " bytes").c_str());
  c.need(min_bytes, field + " (" + std::to_string(n) + " elements)");
  check_allocation(checked_mul(n, static_cast<uint64_t>(sizeof(GgufValue)), (path + ": " + field).c_str()),
                   path + ": " + field);
  GgufValue v;
  v.type = GgufType::array;
  v.array_type = elem;
  v.array.reserve(static_cast<size_t>(n));
  for (uint64_t k = 0; k < n; ++k) v.array.push_back(read_scalar(c, elem, field));
  return v;
}

bool is_int(GgufType t) {
  return t == GgufType::u8 || t == GgufType::i8 || t == GgufType::u16 || t == GgufType::i16 ||
         t == GgufType::u32 || t == GgufType::i32 || t == GgufType::u64 || t == GgufType::i64 ||
         t == GgufType::boolean;
}
bool is_signed(GgufType t) {
  return t == GgufType::i8 || t == GgufType::i16 || t == GgufType::i32 || t == GgufType::i64;
}

}  // namespace

const char* gguf_type_name(GgufType type) {
  static const char* const names[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                      "bool", "string", "array", "u64", "i64", "f64"};
  const auto i = static_cast<uint32_t>(type);
  return i < 13 ? names[i] : "?";
}

GgufValue GgufValue::of_u32(uint32_t v) {
  GgufValue x;
  x.type = GgufType::u32;
  x.u = v;
  return x;
}
GgufValue GgufValue::of_i32(int32_t v) {
  GgufValue x;
  x.type = GgufType::i32;
  x.i = v;
  return x;
}
GgufValue GgufValue::of_u64(uint64_t v) {
  GgufValue x;
  x.type = GgufType::u64;
  x.u = v;
  return x;
}
GgufValue GgufValue::of_f32(float v) {
  GgufValue x;
  x.type = GgufType::f32;
  x.f = v;
  return x;
}
GgufValue GgufValue::of_bool(bool v) {
  GgufValue x;
  x.type = GgufType::boolean;
  x.u = v;
  return x;
}
GgufValue GgufValue::of_string(std::string v) {
  GgufValue x;
  x.type = GgufType::string;
  x.s = std::move(v);
  return x;
}
GgufValue GgufValue::of_array(GgufType element_type, std::vector<GgufValue> values) {
  GgufValue x;
  x.type = GgufType::array;
  x.array_type = element_type;
  x.array = std::move(values);
  return x;
}

uint32_t ggml_type_of(DType dtype) {
  for (const GgmlTypeEntry& e : kTypes)
    if (e.dtype == dtype) return e.ggml_type;
  throw_error(ErrorCode::unsupported, "GGUF: no ggml type for dtype ", dtype_name(dtype));
}

GgufFile GgufFile::open(const std::string& path) {
  GgufFile g;
  g.path_ = path;
  g.data_ = map_file(path, 24, "expected at least the 24-byte GGUF header");
  const auto* bytes = static_cast<const uint8_t*>(g.data_->data());
  const uint64_t size = g.data_->bytes();
  if (std::memcmp(bytes, "GGUF", 4) != 0)
    throw_error(ErrorCode::parse, path, ": magic is not \"GGUF\" (not a GGUF file)");
  Cursor c(bytes, size, path);
  c.read<uint32_t>("magic");
  g.version_ = c.read<uint32_t>("version");
  if (g.version_ != 2 && g.version_ != 3)
    throw_error(ErrorCode::unsupported, path, ": version is ", g.version_, ", expected 2 or 3");
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("metadata count");
  // A metadata pair takes at least 8 + 4 + 1 bytes, a tensor info at least 8 + 4 + 4 + 8.
  c.need(
      checked_add(checked_mul(n_kv, uint64_t{13}, (path + ": GGUF metadata").c_str()),
                  checked_mul(n_tensors, uint64_t{24}, (path + ": GGUF tensors").c_str()),
                  (path + ": GGUF header").c_str()),
      "metadata (" + std::to_string(n_kv) + " pairs) and tensor infos (" + std::to_string(n_tensors) + ")");
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = c.read_string("metadata key " + std::to_string(k));
    GgufValue v = read_value(c, path, key);
    if (!g.metadata_.emplace(key, std::move(v)).second)
      throw_error(ErrorCode::parse, path, ": metadata key '", key, "' appears twice");
  }
  if (auto it = g.metadata_.find("general.alignment"); it != g.metadata_.end()) {
    const GgufValue& a = it->second;
    if (a.type != GgufType::u32 || a.u == 0 || (a.u & (a.u - 1)) != 0)
      throw_error(ErrorCode::parse, path, ": general.alignment is ", gguf_type_name(a.type), " ",
                  a.type == GgufType::u32 ? std::to_string(a.u) : std::string("value"),
                  ", expected a u32 power of two");
    g.alignment_ = a.u;
  }
  g.tensors_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensorInfo t;
    t.name = c.read_string("tensor " + std::to_string(k) + " name");
    const std::string field = "tensor '" + t.name + "'";
    const uint32_t n_dims = c.read<uint32_t>(field + " dimension count");
    if (n_dims > kMaxDims)
      throw_error(ErrorCode::parse, path, ": ", field, " has ", n_dims, " dimensions, expected at most ",
                  kMaxDims);
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = c.read<uint64_t>(field + " dimension");
      if (ne > static_cast<uint64_t>(INT64_MAX))
        throw_error(ErrorCode::parse, path, ": ", field, " dimension ", d, " is ", ne,
                    ", expected below 2^63");
      numel = checked_mul(numel, ne, (path + ": " + field + " values").c_str());
      t.shape.insert(t.shape.begin(), static_cast<int64_t>(ne));
    }
    t.ggml_type = c.read<uint32_t>(field + " type");
    const GgmlTypeEntry* e = find_type(t.ggml_type);
    if (!e)
      throw_error(ErrorCode::unsupported, path, ": ", field, " has ggml type ", t.ggml_type,
                  ", expected one of F32 (0), F16 (1), BF16 (30), Q8_0 (8), Q4_0 (2), Q4_K (12), Q6_K (14)");
    t.dtype = e->dtype;
    const uint64_t block = static_cast<uint64_t>(dtype_block_values(t.dtype));
    const uint64_t row = t.shape.empty() ? 1 : static_cast<uint64_t>(t.shape.back());
    if (row % block != 0)
      throw_error(ErrorCode::parse, path, ": ", field, " of type ", e->name, " has rows of ", row,
                  " values, expected a multiple of ", block);
    t.bytes = checked_mul(numel / block, static_cast<uint64_t>(dtype_block_bytes(t.dtype)),
                          (path + ": " + field + " bytes").c_str());
    t.offset = c.read<uint64_t>(field + " offset");
    if (t.offset % g.alignment_ != 0)
      throw_error(ErrorCode::parse, path, ": ", field, " offset is ", t.offset, ", expected a multiple of ",
                  g.alignment_, " (the alignment)");
    if (!g.index_.emplace(t.name, g.tensors_.size()).second)
      throw_error(ErrorCode::parse, path, ": tensor '", t.name, "' appears twice");
    g.tensors_.push_back(std::move(t));
  }
  const uint64_t header_end = c.pos();
  g.data_offset_ = checked_add(header_end, (g.alignment_ - header_end % g.alignment_) % g.alignment_,
                               (path + ": GGUF data").c_str());
  for (GgufTensorInfo& t : g.tensors_) {
    t.offset = checked_add(g.data_offset_, t.offset, (path + ": tensor '" + t.name + "' offset").c_str());
    const uint64_t end = checked_add(t.offset, t.bytes, (path + ": tensor '" + t.name + "' end").c_str());
    if (end > size)
      throw_error(ErrorCode::parse, path, ": tensor '", t.name, "' ", shape_str(t.shape), " needs bytes [",
                  t.offset, ", ", end, "), expected within the file's ", size, " bytes");
  }
  return g;
}

const GgufTensorInfo* GgufFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensorInfo& GgufFile::lookup(const std::string& name) const {
  const GgufTensorInfo* t = find(name);
  if (!t) throw_error(ErrorCode::not_found, path_, ": missing tensor '", name, "'");
  return *t;
}

const GgufValue& GgufFile::value(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) throw_error(ErrorCode::not_found, path_, ": missing metadata key '", key, "'");
  return it->second;
}

int64_t GgufFile::get_int(const std::string& key) const {
  const GgufValue& v = value(key);
  if (!is_int(v.type))
    throw_error(ErrorCode::parse, path_, ": metadata '", key, "' is ", gguf_type_name(v.type),
                ", expected an integer");
  if (is_signed(v.type)) return v.i;
  if (v.u > static_cast<uint64_t>(INT64_MAX))
    throw_error(ErrorCode::parse, path_, ": metadata '", key, "' is ", v.u, ", expected below 2^63");
  return static_cast<int64_t>(v.u);
}

int64_t GgufFile::get_int(const std::string& key, int64_t fallback) const {
  return has(key) ? get_int(key) : fallback;
}

double GgufFile::get_float(const std::string& key) const {
  const GgufValue& v = value(key);
  if (v.type == GgufType::f32 || v.type == GgufType::f64) return v.f;
  if (is_int(v.type)) return static_cast<double>(get_int(key));
  throw_error(ErrorCode::parse, path_, ": metadata '", key, "' is ", gguf_type_name(v.type),
              ", expected a number");
}

double GgufFile::get_float(const std::string& key, double fallback) const {
  return has(key) ? get_float(key) : fallback;
}

bool GgufFile::get_bool(const std::string& key, bool fallback) const {
  return has(key) ? get_int(key) != 0 : fallback;
}

std::string GgufFile::get_string(const std::string& key) const {
  const GgufValue& v = value(key);
  if (v.type != GgufType::string)
    throw_error(ErrorCode::parse, path_, ": metadata '", key, "' is ", gguf_type_name(v.type),
                ", expected a string");
  return v.s;
}

const GgufValue& GgufFile::get_array(const std::string& key, GgufType element_type) const {
  const GgufValue& v = value(key);
  if (v.type != GgufType::array || v.array_type != element_type)
    throw_error(
        ErrorCode::parse, path_, ": metadata '", key, "' is ", gguf_type_name(v.type),
        v.type == GgufType::array ? std::string(" of ") + gguf_type_name(v.array_type) : std::string(),
        ", expected an array of ", gguf_type_name(element_type));
  return v;
}

Tensor GgufFile::get(const std::string& name) const {
  const GgufTensorInfo& t = lookup(name);
  return Tensor::from_buffer(data_, static_cast<size_t>(t.offset), t.shape, t.dtype);
}

Tensor GgufFile::read(const std::string& name) const {
  const GgufTensorInfo& t = lookup(name);
  Tensor out = Tensor::empty(t.shape, t.dtype);
  read_file_ranges(path_, {{t.offset, static_cast<size_t>(t.bytes), out.raw()}});
  return out;
}

Tensor GgufFile::get_f32(const std::string& name, const Shape& expected, bool reshape) const {
  const GgufTensorInfo& t = lookup(name);
  const bool same = reshape ? shape_numel(t.shape) == shape_numel(expected) : t.shape == expected;
  if (!same)
    throw_error(ErrorCode::shape, path_, ": tensor '", name, "' has shape ", shape_str(t.shape),
                ", expected ", shape_str(expected));
  // Read with pread, not through the mapping: a page cache of large folios maps a whole folio
  // (up to 2 MiB) into the resident set for each small tensor touched (a 130M hybrid's A, D, conv
  // and norms held 84 MiB of the mapping that way while loading).
  Tensor out = Tensor::empty(expected);
  if (t.dtype == DType::f32) {
    read_file_ranges(path_, {{t.offset, static_cast<size_t>(t.bytes), out.raw()}});
    return out;
  }
  std::vector<uint8_t> raw(static_cast<size_t>(t.bytes));
  read_file_ranges(path_, {{t.offset, raw.size(), raw.data()}});
  dequantize_row(t.dtype, raw.data(), out.numel(), out.f32());
  return out;
}

void GgufWriter::set(const std::string& key, GgufValue value) {
  metadata.emplace_back(key, std::move(value));
}

void GgufWriter::add(const std::string& name, Tensor tensor) {
  tensors.emplace_back(name, std::move(tensor));
}

namespace {

template <typename T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}
void put_string(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out += s;
}
void put_scalar(std::string& out, GgufType type, const GgufValue& v) {
  switch (type) {
    case GgufType::u8:
    case GgufType::boolean:
      return put<uint8_t>(out, static_cast<uint8_t>(v.u));
    case GgufType::i8:
      return put<int8_t>(out, static_cast<int8_t>(v.i));
    case GgufType::u16:
      return put<uint16_t>(out, static_cast<uint16_t>(v.u));
    case GgufType::i16:
      return put<int16_t>(out, static_cast<int16_t>(v.i));
    case GgufType::u32:
      return put<uint32_t>(out, static_cast<uint32_t>(v.u));
    case GgufType::i32:
      return put<int32_t>(out, static_cast<int32_t>(v.i));
    case GgufType::f32:
      return put<float>(out, static_cast<float>(v.f));
    case GgufType::u64:
      return put<uint64_t>(out, v.u);
    case GgufType::i64:
      return put<int64_t>(out, v.i);
    case GgufType::f64:
      return put<double>(out, v.f);
    case GgufType::string:
      return put_string(out, v.s);
    case GgufType::array:
      MAMBA_CHECK(false, "nested GGUF arrays are not written");
  }
}
void pad_to(std::string& out, uint64_t alignment) {
  out.append((alignment - out.size() % alignment) % alignment, '\0');
}

}  // namespace

void GgufWriter::write(const std::string& path) const {
  MAMBA_CHECK(alignment > 0 && (alignment & (alignment - 1)) == 0);
  std::string out = "GGUF";
  put<uint32_t>(out, 3);
  put<uint64_t>(out, tensors.size());
  put<uint64_t>(out, metadata.size());
  for (const auto& [key, v] : metadata) {
    put_string(out, key);
    put<uint32_t>(out, static_cast<uint32_t>(v.type));
    if (v.type == GgufType::array) {
      put<uint32_t>(out, static_cast<uint32_t>(v.array_type));
      put<uint64_t>(out, v.array.size());
      for (const GgufValue& e : v.array) put_scalar(out, v.array_type, e);
    } else {
      put_scalar(out, v.type, v);
    }
  }
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    MAMBA_CHECK(t.device() == Device::cpu && t.is_contiguous(), name);
    put_string(out, name);
    put<uint32_t>(out, static_cast<uint32_t>(t.dim()));
    for (int64_t d = t.dim() - 1; d >= 0; --d) put<uint64_t>(out, static_cast<uint64_t>(t.size(d)));
    put<uint32_t>(out, ggml_type_of(t.dtype()));
    put<uint64_t>(out, offset);
    offset += t.nbytes();
    offset += (alignment - offset % alignment) % alignment;
  }
  pad_to(out, alignment);
  for (const auto& [name, t] : tensors) {
    out.append(static_cast<const char*>(t.raw()), t.nbytes());
    pad_to(out, alignment);
  }
  write_file_atomic(path, out);
}

}  // namespace mamba::io
