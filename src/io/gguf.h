// GGUF files (llama.cpp's format, version 2 and 3): read (memory-mapped, every size checked
// against the file) and write (atomically). Tensor shapes are in PyTorch order here (GGUF lists
// dimensions innermost first; we reverse them). `get` returns a zero-copy view into the read-only
// mapping, block formats (q8_0, q4_0, q4_k) included; every malformed input throws `Error` naming
// the file, the field, what was expected and what was found.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace mamba::io {

// GGUF metadata value types (the numbers are the file's).
enum class GgufType : uint32_t {
  u8 = 0,
  i8 = 1,
  u16 = 2,
  i16 = 3,
  u32 = 4,
  i32 = 5,
  f32 = 6,
  boolean = 7,
  string = 8,
  array = 9,
  u64 = 10,
  i64 = 11,
  f64 = 12,
};
const char* gguf_type_name(GgufType type);

// One metadata value: integers in `i` (signed types) or `u` (unsigned, bool), floats in `f`,
// strings in `s`, arrays in `array` (elements of `array_type`).
struct GgufValue {
  GgufType type = GgufType::u32;
  int64_t i = 0;
  uint64_t u = 0;
  double f = 0.0;
  std::string s;
  GgufType array_type = GgufType::u32;
  std::vector<GgufValue> array;

  static GgufValue of_u32(uint32_t v);
  static GgufValue of_i32(int32_t v);
  static GgufValue of_u64(uint64_t v);
  static GgufValue of_f32(float v);
  static GgufValue of_bool(bool v);
  static GgufValue of_string(std::string v);
  static GgufValue of_array(GgufType element_type, std::vector<GgufValue> values);
};

struct GgufTensorInfo {
  std::string name;
  Shape shape;          // PyTorch order (the file's dimensions reversed)
  uint32_t ggml_type;   // as stored
  DType dtype;          // f32, f16, bf16, q8_0, q4_0 or q4_k
  uint64_t offset = 0;  // absolute byte offset in the file
  uint64_t bytes = 0;
};

// ggml type numbers of the types we read and write.
uint32_t ggml_type_of(DType dtype);

// Usage:
//   auto g = mamba::io::GgufFile::open("model.gguf");
//   int64_t d_model = g.get_int("mamba2.embedding_length");
//   Tensor w = g.get("blk.0.ssm_in.weight");  // [d_in_proj, d_model], maybe q8_0, a view
class GgufFile {
public:
  static GgufFile open(const std::string& path);

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find(const std::string& name) const;  // nullptr when absent
  bool has(const std::string& key) const { return metadata_.count(key) != 0; }

  // Typed metadata: throws Error(not_found) naming the key when absent (unless a default is
  // given) and Error(parse) naming the expected and found types on a mismatch. get_int takes
  // any integer type (and bool), get_float any float or integer.
  int64_t get_int(const std::string& key) const;
  int64_t get_int(const std::string& key, int64_t fallback) const;
  double get_float(const std::string& key) const;
  double get_float(const std::string& key, double fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;
  std::string get_string(const std::string& key) const;
  const GgufValue& get_array(const std::string& key, GgufType element_type) const;

  // The stored tensor, a view of the mapping (never write through it). Throws not_found.
  Tensor get(const std::string& name) const;
  // The stored tensor as an owned copy, read from the file (pread) without touching the mapping.
  Tensor read(const std::string& name) const;
  // An owned f32 copy (F32/F16/BF16 converted, block formats dequantized), checked against
  // `expected` (the same number of values in PyTorch order; a GGUF [1, n] for an [n] is fine
  // when `reshape` is true). Throws not_found / shape.
  Tensor get_f32(const std::string& name, const Shape& expected, bool reshape = false) const;

private:
  const GgufTensorInfo& lookup(const std::string& name) const;
  const GgufValue& value(const std::string& key) const;

  std::string path_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::shared_ptr<Buffer> data_;
};

// A GGUF to write: metadata in insertion order, then tensors (CPU, contiguous, of a type that
// ggml_type_of knows; shapes in PyTorch order), aligned to `alignment` (32, GGUF's default).
struct GgufWriter {
  std::vector<std::pair<std::string, GgufValue>> metadata;
  std::vector<std::pair<std::string, Tensor>> tensors;
  uint64_t alignment = 32;

  void set(const std::string& key, GgufValue value);
  void add(const std::string& name, Tensor tensor);
  // Writes the whole file through write_file_atomic (temp file, fsync, rename).
  void write(const std::string& path) const;
};

}  // namespace mamba::io
