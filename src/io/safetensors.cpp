// Safetensors reader and writer (see safetensors.h). Layout: 8-byte little-endian header
// length N, N bytes of JSON header, then the data section that data_offsets index into.
#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/file_util.h"
#include "core/json_guard.h"
#include "core/parallel.h"
#include "io/mapped_file.h"
#include "io/torch_pickle.h"

namespace mamba::io {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");

namespace {

using nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // safetensors' own limit
constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";
constexpr const char* kTorchFile = "pytorch_model.bin";
constexpr const char* kTorchIndexFile = "pytorch_model.bin.index.json";

bool is_torch_file(const std::string& path) {
  return path.ends_with(".bin") || path.ends_with(".pt") || path.ends_with(".pth");
}

// Every dtype the safetensors format defines with a whole-byte element; only those with a
// DType can be loaded, the rest are indexed (so the file still validates) and throw on get.
struct DTypeEntry {
  const char* name;
  size_t size;
  std::optional<DType> dtype;
};
constexpr DTypeEntry kDTypes[] = {
    {"F32", 4, DType::f32},       {"BF16", 2, DType::bf16},     {"F16", 2, DType::f16},
    {"I64", 8, DType::i64},       {"I32", 4, DType::i32},       {"U8", 1, DType::u8},
    {"F64", 8, std::nullopt},     {"I16", 2, std::nullopt},     {"I8", 1, std::nullopt},
    {"U64", 8, std::nullopt},     {"U32", 4, std::nullopt},     {"U16", 2, std::nullopt},
    {"BOOL", 1, std::nullopt},    {"C64", 8, std::nullopt},     {"F8_E4M3", 1, std::nullopt},
    {"F8_E5M2", 1, std::nullopt}, {"F8_E8M0", 1, std::nullopt},
};

const DTypeEntry* find_dtype(const std::string& name) {
  for (const DTypeEntry& e : kDTypes)
    if (name == e.name) return &e;
  return nullptr;
}

const char* safetensors_name(DType dtype) {
  for (const DTypeEntry& e : kDTypes)
    if (e.dtype == dtype) return e.name;
  return "?";
}

// nlohmann's one-line message without its "[json.exception.parse_error.101] " prefix.
std::string json_error(const json::exception& e) {
  const std::string what = e.what();
  const size_t end = what.find("] ");
  return end == std::string::npos ? what : what.substr(end + 2);
}

template <typename... Args>
[[noreturn]] void fail(ErrorCode code, const std::string& file, const Args&... args) {
  throw_error(code, file, ": ", args...);
}

// A non-negative JSON integer (floats and negatives are rejected).
bool as_size(const json& j, uint64_t& out) {
  if (!j.is_number_unsigned()) return false;
  out = j.get<uint64_t>();
  return true;
}

// One header entry -> TensorInfo (offset relative to the data section until the caller adds it).
TensorInfo parse_entry(const std::string& file, const std::string& name, const json& entry,
                       size_t data_size) {
  if (!entry.is_object())
    fail(ErrorCode::parse, file, "entry '", name, "' is a JSON ", entry.type_name(),
         ", expected an object with dtype, shape and data_offsets");
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!entry.contains(key)) fail(ErrorCode::parse, file, "tensor '", name, "' has no '", key, "'");

  TensorInfo info;
  info.name = name;
  const json& dtype = entry["dtype"];
  if (!dtype.is_string())
    fail(ErrorCode::parse, file, "tensor '", name, "' dtype is a JSON ", dtype.type_name(),
         ", expected a string");
  info.stored_dtype = dtype.get<std::string>();
  const DTypeEntry* dt = find_dtype(info.stored_dtype);
  if (!dt) fail(ErrorCode::dtype, file, "tensor '", name, "' has unknown dtype '", info.stored_dtype, "'");
  info.dtype = dt->dtype;

  const json& shape = entry["shape"];
  if (!shape.is_array())
    fail(ErrorCode::parse, file, "tensor '", name, "' shape is a JSON ", shape.type_name(),
         ", expected an array");
  uint64_t numel = 1;
  for (const json& d : shape) {
    uint64_t n = 0;
    if (!as_size(d, n) || n > (uint64_t{1} << 62))
      fail(ErrorCode::parse, file, "tensor '", name, "' shape ", json_excerpt(shape),
           " must hold non-negative integers");
    if (__builtin_mul_overflow(numel, n, &numel) || numel > (uint64_t{1} << 62))
      fail(ErrorCode::parse, file, "tensor '", name, "' shape of ", shape.size(), " dimensions is too large");
    info.shape.push_back(static_cast<int64_t>(n));
  }

  const json& offsets = entry["data_offsets"];
  uint64_t begin = 0, end = 0;
  if (!offsets.is_array() || offsets.size() != 2 || !as_size(offsets[0], begin) ||
      !as_size(offsets[1], end) || begin > end)
    fail(ErrorCode::parse, file, "tensor '", name, "' data_offsets ", json_excerpt(offsets),
         ", expected [begin, end] with 0 <= begin <= end");
  if (end > data_size)
    fail(ErrorCode::parse, file, "tensor '", name, "' bytes [", begin, ", ", end,
         ") run past the end of the data (", data_size, " bytes)");
  const uint64_t expected = numel * dt->size;
  if (end - begin != expected)
    fail(ErrorCode::shape, file, "tensor '", name, "' has ", end - begin, " bytes, expected ", expected,
         " (shape ", shape_str(info.shape), " of ", dt->name, ")");
  info.file = file;
  info.offset = begin;
  info.bytes = end - begin;
  return info;
}

// Validates the header of one mapped file and returns its tensors (absolute offsets).
std::map<std::string, TensorInfo> parse_header(const std::string& file, const Buffer& mapping,
                                               std::map<std::string, std::string>& metadata) {
  const auto* bytes = static_cast<const unsigned char*>(mapping.data());
  const size_t size = mapping.bytes();
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes, 8);
  if (header_len > kMaxHeaderBytes)
    fail(ErrorCode::parse, file, "header length ", header_len, " exceeds the ", kMaxHeaderBytes,
         "-byte limit (file is ", size, " bytes); not a safetensors file?");
  if (header_len > size - 8)
    fail(ErrorCode::parse, file, "header length ", header_len, " runs past the end of the file (", size,
         " bytes)");

  check_json_depth(std::string_view(reinterpret_cast<const char*>(bytes) + 8, header_len), file);
  json header;
  try {
    header = json::parse(bytes + 8, bytes + 8 + header_len);
  } catch (const json::exception& e) {
    fail(ErrorCode::parse, file, "header is not valid JSON (", json_error(e), ")");
  }
  if (!header.is_object())
    fail(ErrorCode::parse, file, "header is a JSON ", header.type_name(), ", expected an object");

  const size_t data_begin = 8 + header_len;
  const size_t data_size = size - data_begin;
  std::map<std::string, TensorInfo> tensors;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (!value.is_object())
        fail(ErrorCode::parse, file, "__metadata__ is a JSON ", value.type_name(), ", expected a string map");
      for (const auto& [mkey, mvalue] : value.items()) {
        if (!mvalue.is_string())
          fail(ErrorCode::parse, file, "__metadata__ '", mkey, "' is a JSON ", mvalue.type_name(),
               ", expected a string");
        metadata.emplace(mkey, mvalue.get<std::string>());
      }
      continue;
    }
    tensors.emplace(key, parse_entry(file, key, value, data_size));
  }

  // Overlapping byte ranges mean a corrupt (or hostile) file.
  std::vector<const TensorInfo*> by_offset;
  for (const auto& [name, info] : tensors)
    if (info.bytes > 0) by_offset.push_back(&info);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const TensorInfo& a = *by_offset[i - 1];
    const TensorInfo& b = *by_offset[i];
    if (b.offset < a.offset + a.bytes)
      fail(ErrorCode::parse, file, "tensors '", a.name, "' [", a.offset, ", ", a.offset + a.bytes, ") and '",
           b.name, "' [", b.offset, ", ", b.offset + b.bytes, ") overlap");
  }
  for (auto& [name, info] : tensors) info.offset += data_begin;
  return tensors;
}

bool is_directory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return "";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// The shard files named by an index's weight_map, and the map itself (tensor -> shard path).
std::map<std::string, std::string> read_weight_map(const std::string& index_path) {
  json index;
  try {
    const std::string text = read_file(index_path);
    check_json_depth(text, index_path);
    index = json::parse(text);
  } catch (const json::exception& e) {
    fail(ErrorCode::parse, index_path, "not valid JSON (", json_error(e), ")");
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    fail(ErrorCode::parse, index_path, "expected an object with a 'weight_map' object");
  const std::string dir = parent_dir(index_path);
  std::map<std::string, std::string> weight_map;
  for (const auto& [name, shard] : index["weight_map"].items()) {
    if (!shard.is_string() || shard.get<std::string>().empty())
      fail(ErrorCode::parse, index_path, "weight_map '", name, "' is ", json_excerpt(shard),
           ", expected a file name");
    weight_map.emplace(name, path_join(dir, shard.get<std::string>()));
  }
  return weight_map;
}

void copy_to_f32(const TensorInfo& info, const unsigned char* src, float* dst) {
  const int64_t n = shape_numel(info.shape);
  constexpr int64_t kBlock = 1 << 16;
  // memcpy per element: mapped data need not be aligned for its dtype.
  parallel_for((n + kBlock - 1) / kBlock, [&](int64_t block) {
    const int64_t lo = block * kBlock, hi = std::min(n, lo + kBlock);
    if (info.dtype == DType::f32) {
      std::memcpy(dst + lo, src + lo * 4, static_cast<size_t>(hi - lo) * 4);
      return;
    }
    for (int64_t i = lo; i < hi; ++i) {
      uint16_t h;
      std::memcpy(&h, src + i * 2, 2);
      dst[i] = info.dtype == DType::bf16 ? bf16_to_f32(h) : f16_to_f32(h);
    }
  });
}

}  // namespace

SafeTensors SafeTensors::open(const std::string& path) {
  SafeTensors st;
  st.path_ = path;
  std::vector<std::string> files;
  std::map<std::string, std::string> weight_map;
  std::string index_path;
  if (is_directory(path)) {
    if (file_exists(path_join(path, kSingleFile))) {
      files.push_back(path_join(path, kSingleFile));
    } else if (file_exists(path_join(path, kIndexFile))) {
      index_path = path_join(path, kIndexFile);
    } else if (file_exists(path_join(path, kTorchFile))) {
      files.push_back(path_join(path, kTorchFile));
    } else if (file_exists(path_join(path, kTorchIndexFile))) {
      index_path = path_join(path, kTorchIndexFile);
    } else {
      fail(ErrorCode::not_found, path, "directory holds neither ", kSingleFile, " nor ", kIndexFile, " (nor ",
           kTorchFile, " or ", kTorchIndexFile, ")");
    }
  } else if (path.ends_with(".json")) {
    index_path = path;
  } else {
    files.push_back(path);
  }
  if (!index_path.empty()) {
    weight_map = read_weight_map(index_path);
    std::set<std::string> shards;
    for (const auto& [name, shard] : weight_map) shards.insert(shard);
    files.assign(shards.begin(), shards.end());
  }

  for (const std::string& file : files) {
    if (is_torch_file(file)) {
      for (TorchTensor& t : read_torch_checkpoint(file).tensors) {
        TensorInfo info{t.name, t.stored_dtype, t.dtype, t.shape, file, 0, t.bytes};
        auto [it, inserted] = st.tensors_.emplace(t.name, std::move(info));
        if (!inserted)
          fail(ErrorCode::parse, index_path, "tensor '", t.name, "' is stored in both ", it->second.file,
               " and ", file);
        st.torch_data_.emplace(t.name, std::move(t.data));
      }
      continue;
    }
    std::shared_ptr<Buffer> mapping = map_file(file, 8, "shorter than the 8-byte header length");
    for (auto& [name, info] : parse_header(file, *mapping, st.metadata_)) {
      auto [it, inserted] = st.tensors_.emplace(name, info);
      if (!inserted)
        fail(ErrorCode::parse, index_path, "tensor '", name, "' is stored in both ", it->second.file, " and ",
             file);
    }
    st.files_.emplace(file, std::move(mapping));
  }
  for (const auto& [name, shard] : weight_map) {
    auto it = st.tensors_.find(name);
    if (it == st.tensors_.end() || it->second.file != shard)
      fail(ErrorCode::parse, index_path, "weight_map puts tensor '", name, "' in ", shard,
           ", which does not hold it");
  }
  return st;
}

std::vector<std::string> SafeTensors::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, info] : tensors_) out.push_back(name);
  return out;
}

const TensorInfo* SafeTensors::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

const std::shared_ptr<Buffer>& SafeTensors::data_of(const TensorInfo& info) const {
  if (!torch_data_.empty()) {
    auto it = torch_data_.find(info.name);
    if (it != torch_data_.end()) return it->second;
  }
  return files_.at(info.file);
}

const TensorInfo& SafeTensors::lookup(const std::string& name) const {
  const TensorInfo* info = find(name);
  if (!info) fail(ErrorCode::not_found, path_, "missing tensor '", name, "'");
  return *info;
}

Tensor SafeTensors::get(const std::string& name) const {
  const TensorInfo& info = lookup(name);
  if (!info.dtype)
    fail(ErrorCode::unsupported, info.file, "tensor '", name, "' has dtype ", info.stored_dtype,
         ", which is not supported (F32, BF16, F16, I64, I32, U8)");
  const std::shared_ptr<Buffer>& mapping = data_of(info);
  const char* src = static_cast<const char*>(mapping->data()) + info.offset;
  if (reinterpret_cast<uintptr_t>(src) % dtype_size(*info.dtype) == 0)
    return Tensor::from_buffer(mapping, info.offset, info.shape, *info.dtype);
  Tensor out = Tensor::empty(info.shape, *info.dtype);
  std::memcpy(out.raw(), src, info.bytes);
  return out;
}

Tensor SafeTensors::get_f32(const std::string& name) const {
  const TensorInfo& info = lookup(name);
  if (info.dtype != DType::f32 && info.dtype != DType::bf16 && info.dtype != DType::f16)
    fail(ErrorCode::dtype, info.file, "tensor '", name, "' is ", info.stored_dtype,
         ", expected F32, BF16 or F16");
  Tensor out = Tensor::empty(info.shape);
  const auto* src = static_cast<const unsigned char*>(data_of(info)->data()) + info.offset;
  copy_to_f32(info, src, out.f32());
  return out;
}

Tensor SafeTensors::get_f32(const std::string& name, const Shape& expected) const {
  const TensorInfo& info = lookup(name);
  if (info.shape != expected)
    fail(ErrorCode::shape, info.file, "tensor '", name, "' has shape ", shape_str(info.shape), ", expected ",
         shape_str(expected));
  return get_f32(name);
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  size_t data_size = 0;
  std::set<std::string> seen;
  for (const auto& [name, tensor] : tensors) {
    if (name.empty() || name == "__metadata__")
      fail(ErrorCode::invalid_argument, path, "invalid tensor name '", name, "'");
    if (!seen.insert(name).second) fail(ErrorCode::invalid_argument, path, "tensor '", name, "' given twice");
    if (!tensor.defined()) fail(ErrorCode::invalid_argument, path, "tensor '", name, "' is undefined");
    header[name] = {{"dtype", safetensors_name(tensor.dtype())},
                    {"shape", tensor.shape()},
                    {"data_offsets", {data_size, data_size + tensor.nbytes()}}};
    data_size += tensor.nbytes();
  }
  std::string header_text = header.dump();
  header_text.append((8 - header_text.size() % 8) % 8, ' ');  // keeps the data 8-byte aligned

  std::vector<char> out(8 + header_text.size() + data_size);
  const uint64_t header_len = header_text.size();
  std::memcpy(out.data(), &header_len, 8);
  std::memcpy(out.data() + 8, header_text.data(), header_text.size());
  char* dst = out.data() + 8 + header_text.size();
  for (const auto& [name, tensor] : tensors) {
    const Tensor cpu = (tensor.device() == Device::cpu ? tensor : tensor.to(Device::cpu)).contiguous();
    if (cpu.nbytes() > 0) std::memcpy(dst, cpu.raw(), cpu.nbytes());
    dst += cpu.nbytes();
  }
  write_file_atomic(path, out.data(), out.size());
}

}  // namespace mamba::io
