// Model fingerprints and the state-file format (see state_io.h). Loading validates before it
// allocates: sizes are bounded by the bytes present, every tensor is checked against the model's
// own new_state(), and any damage is reported as one-line Error naming the file.
#include "runtime/state_io.h"

#include <cstdio>
#include <cstring>
#include <map>

#include "core/error.h"
#include "core/file_util.h"
#include "core/parallel.h"
#include "runtime/hash.h"

namespace mamba::runtime {
namespace {

constexpr char kMagic[8] = {'M', 'A', 'M', 'B', 'A', 'S', 'T', '\0'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderBytes = 8 + 4 + 4 + 3 * 8 + 8 + 8 + 8;
constexpr size_t kFingerprintBlock = size_t(1) << 20;  // weights are hashed in 1 MiB blocks

// KV caches grow with the sequence: stored trimmed to `position` entries along dim 1.
bool grows_with_sequence(std::string_view name) {
  return name == "k_cache" || name == "v_cache";
}

uint32_t dtype_code(DType d) {
  return static_cast<uint32_t>(d);
}

class Writer {
public:
  template <typename T>
  void put(T value) {
    out_.append(reinterpret_cast<const char*>(&value), sizeof value);
  }
  void put_record(const std::string& name, const Tensor& tensor) {
    const Tensor t = (tensor.device() == Device::cpu ? tensor : tensor.to(Device::cpu)).contiguous();
    put<uint32_t>(static_cast<uint32_t>(name.size()));
    out_ += name;
    put<uint32_t>(dtype_code(t.dtype()));
    put<uint32_t>(static_cast<uint32_t>(t.dim()));
    for (int64_t d : t.shape()) put<int64_t>(d);
    out_.append(static_cast<const char*>(t.raw()), t.nbytes());
  }
  std::string& str() { return out_; }

private:
  std::string out_;
};

// A record as found in the file: its bytes still point into the input.
struct Record {
  DType dtype = DType::f32;
  Shape shape;
  std::string_view data;
  bool used = false;
};

class Reader {
public:
  Reader(std::string_view bytes, const std::string& source) : bytes_(bytes), source_(source) {}
  template <typename T>
  T get(const char* what) {
    T value;
    std::memcpy(&value, take(sizeof value, what).data(), sizeof value);
    return value;
  }
  std::string_view take(size_t n, const char* what) {
    if (n > bytes_.size() - pos_)
      throw_error(ErrorCode::parse, source_, ": truncated state file (", what, " needs ", n,
                  " bytes at offset ", pos_, ", ", bytes_.size() - pos_, " left)");
    std::string_view s = bytes_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  std::pair<std::string, Record> record() {
    const auto name_len = get<uint32_t>("record name length");
    std::string name(take(name_len, "record name"));
    Record r;
    const auto dtype = get<uint32_t>("dtype");
    if (dtype > dtype_code(DType::u8))
      throw_error(ErrorCode::parse, source_, ": tensor '", name, "' has unknown dtype code ", dtype);
    r.dtype = static_cast<DType>(dtype);
    const auto ndim = get<uint32_t>("ndim");
    if (ndim > 8)
      throw_error(ErrorCode::parse, source_, ": tensor '", name, "' has ", ndim, " dims (at most 8)");
    uint64_t bytes = dtype_size(r.dtype);
    for (uint32_t i = 0; i < ndim; ++i) {
      const auto d = get<int64_t>("shape");
      if (d < 0 || (d > 0 && bytes > (bytes_.size() / static_cast<uint64_t>(d))))
        throw_error(ErrorCode::parse, source_, ": tensor '", name, "' has an impossible shape (dim ", d, ")");
      r.shape.push_back(d);
      bytes *= static_cast<uint64_t>(d);
    }
    r.data = take(bytes, name.c_str());
    return {std::move(name), std::move(r)};
  }
  size_t offset() const { return pos_; }

private:
  std::string_view bytes_;
  size_t pos_ = 0;
  const std::string& source_;
};

// Takes the record `name` out of `records`, checking dtype and shape; returns an owned tensor.
Tensor adopt(std::map<std::string, Record>& records, const std::string& name, DType dtype, const Shape& shape,
             const std::string& source) {
  auto it = records.find(name);
  if (it == records.end())
    throw_error(ErrorCode::parse, source, ": missing tensor '", name, "' (expected ", dtype_name(dtype), " ",
                shape_str(shape), ")");
  Record& r = it->second;
  if (r.dtype != dtype || r.shape != shape)
    throw_error(ErrorCode::shape, source, ": tensor '", name, "' is ", dtype_name(r.dtype), " ",
                shape_str(r.shape), ", this model's state expects ", dtype_name(dtype), " ",
                shape_str(shape));
  r.used = true;
  Tensor t = Tensor::empty(shape, dtype);
  if (t.nbytes() > 0) std::memcpy(t.raw(), r.data.data(), t.nbytes());
  return t;
}

void check_fingerprint(const Fingerprint& found, const Fingerprint& expected, const std::string& source) {
  if (found == expected) return;
  const char* what = found.config != expected.config   ? "config"
                     : found.params != expected.params ? "parameter names or shapes"
                                                       : "weights";
  throw_error(ErrorCode::invalid_argument, source, ": state was saved by model ", found.str(),
              ", not by this model ", expected.str(), " (", what, " differ)");
}

// Checks magic, version and checksum; returns the bytes before the checksum.
std::string_view check_envelope(std::string_view bytes, const std::string& source) {
  if (bytes.size() < 8 || std::memcmp(bytes.data(), kMagic, 8) != 0)
    throw_error(ErrorCode::parse, source, ": not a mambacpp state file (bad magic)");
  if (bytes.size() < kHeaderBytes + 8)
    throw_error(ErrorCode::parse, source, ": truncated state file (", bytes.size(),
                " bytes, the header alone needs ", kHeaderBytes + 8, ")");
  uint32_t version;
  std::memcpy(&version, bytes.data() + 8, 4);
  if (version != kVersion)
    throw_error(ErrorCode::unsupported, source, ": state format version ", version,
                ", this build reads version ", kVersion);
  const std::string_view body = bytes.substr(0, bytes.size() - 8);
  uint64_t stored;
  std::memcpy(&stored, bytes.data() + body.size(), 8);
  if (stored != hash_string(body))
    throw_error(ErrorCode::parse, source, ": checksum mismatch (state file truncated or corrupted)");
  return body;
}

}  // namespace

uint64_t Fingerprint::combined() const {
  return hash_combine(hash_combine(config, params), weights);
}

std::string Fingerprint::str() const {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(combined()));
  return buf;
}

Fingerprint fingerprint(const models::Model& model) {
  Fingerprint fp;
  const models::ModelConfig& c = model.config();
  fp.config = hash_string(models::to_mamba_ssm_json(c).dump(), static_cast<uint64_t>(c.format));
  fp.params = hash_string("params");
  struct Block {
    const char* data;
    size_t bytes;
  };
  std::vector<Tensor> weights;  // contiguous f32 views of every parameter, in visit order
  std::vector<Block> blocks;
  // Model::visit_params is non-const because it also fills tensors; here it only reads.
  const_cast<models::Model&>(model).visit_params([&](const models::ParamRef& p) {
    fp.params = hash_combine(fp.params, hash_string(p.name));
    for (int64_t d : p.shape) fp.params = hash_combine(fp.params, static_cast<uint64_t>(d));
    const Tensor& w = *p.tensor;  // a device model's weights are hashed from a host copy
    weights.push_back((w.device() == Device::cpu ? w : w.to(Device::cpu)).contiguous());
  });
  for (const Tensor& w : weights)
    for (size_t off = 0; off < w.nbytes(); off += kFingerprintBlock)
      blocks.push_back(
          {static_cast<const char*>(w.raw()) + off, std::min(kFingerprintBlock, w.nbytes() - off)});
  std::vector<uint64_t> block_hash(blocks.size());
  parallel_for(static_cast<int64_t>(blocks.size()),
               [&](int64_t i) { block_hash[i] = hash_bytes(blocks[i].data, blocks[i].bytes); });
  fp.weights = hash_bytes(block_hash.data(), block_hash.size() * sizeof(uint64_t), blocks.size());
  return fp;
}

std::string state_to_bytes(const models::Model& model, const Fingerprint& fp, const SessionState& s) {
  MAMBA_CHECK(s.state.layers.size() == static_cast<size_t>(model.config().n_layer));
  Writer w;
  w.str().append(kMagic, 8);
  w.put<uint32_t>(kVersion);
  w.put<uint32_t>(0);
  for (uint64_t h : {fp.config, fp.params, fp.weights}) w.put<uint64_t>(h);
  w.put<int64_t>(s.state.position);
  w.put<int64_t>(s.state.batch);
  const size_t count_at = w.str().size();
  w.put<uint64_t>(0);  // n_records, patched below
  uint64_t n_records = 0;
  if (s.logits.defined()) {
    w.put_record("logits", s.logits);
    ++n_records;
  }
  Tensor tokens = Tensor::empty({static_cast<int64_t>(s.tokens.size())}, DType::i32);
  if (!s.tokens.empty()) std::memcpy(tokens.raw(), s.tokens.data(), tokens.nbytes());
  w.put_record("tokens", tokens);
  ++n_records;
  for (size_t i = 0; i < s.state.layers.size(); ++i) {
    models::LayerState layer = s.state.layers[i];  // shallow copy: visit() needs a mutable object
    layer.visit([&](const char* name, Tensor& t) {
      const Tensor kept = grows_with_sequence(name) ? t.slice(1, 0, s.state.position) : t;
      w.put_record("layers." + std::to_string(i) + "." + name, kept);
      ++n_records;
    });
  }
  std::memcpy(w.str().data() + count_at, &n_records, 8);
  w.put<uint64_t>(hash_string(w.str()));
  return std::move(w.str());
}

SessionState state_from_bytes(const models::Model& model, const Fingerprint& fp, std::string_view bytes,
                              const std::string& source) {
  Reader in(check_envelope(bytes, source), source);
  in.take(16, "header");  // magic and version, checked above
  Fingerprint found;
  found.config = in.get<uint64_t>("fingerprint");
  found.params = in.get<uint64_t>("fingerprint");
  found.weights = in.get<uint64_t>("fingerprint");
  check_fingerprint(found, fp, source);
  SessionState s;
  s.state = model.new_state(1);  // the reference shapes; the tensors are replaced below
  s.state.position = in.get<int64_t>("position");
  s.state.batch = in.get<int64_t>("batch");
  if (s.state.position < 0 || s.state.batch < 1)
    throw_error(ErrorCode::parse, source, ": invalid position ", s.state.position, " or batch ",
                s.state.batch);
  const auto n_records = in.get<uint64_t>("record count");
  std::map<std::string, Record> records;
  for (uint64_t i = 0; i < n_records; ++i) {
    auto [name, record] = in.record();
    if (!records.emplace(name, record).second)
      throw_error(ErrorCode::parse, source, ": tensor '", name, "' appears twice");
  }
  const int64_t batch = s.state.batch;
  if (records.count("logits"))
    s.logits = adopt(records, "logits", DType::f32, {batch, model.config().vocab_padded}, source);
  const Tensor tokens = records.count("tokens")
                            ? adopt(records, "tokens", DType::i32, records["tokens"].shape, source)
                            : Tensor();
  if (tokens.defined() && tokens.dim() != 1)
    throw_error(ErrorCode::shape, source, ": 'tokens' has shape ", shape_str(tokens.shape()),
                ", expected [n]");
  if (tokens.defined()) s.tokens.assign(tokens.data<int32_t>(), tokens.data<int32_t>() + tokens.numel());
  for (size_t i = 0; i < s.state.layers.size(); ++i) {
    s.state.layers[i].visit([&](const char* name, Tensor& t) {
      Shape shape = t.shape();
      shape[0] = batch;
      if (grows_with_sequence(name)) shape[1] = s.state.position;
      t = adopt(records, "layers." + std::to_string(i) + "." + name, DType::f32, shape, source);
      if (model.device() != Device::cpu) t = t.to(model.device());
    });
  }
  for (const auto& [name, r] : records)
    if (!r.used)
      throw_error(ErrorCode::parse, source, ": unexpected tensor '", name,
                  "' (not part of this model's state)");
  if (in.offset() != bytes.size() - 8)
    throw_error(ErrorCode::parse, source, ": ", bytes.size() - 8 - in.offset(), " unexpected trailing bytes");
  return s;
}

void save_state(const std::string& path, const models::Model& model, const Fingerprint& fp,
                const SessionState& s) {
  write_file_atomic(path, state_to_bytes(model, fp, s));
}

SessionState load_state(const std::string& path, const models::Model& model, const Fingerprint& fp) {
  return state_from_bytes(model, fp, read_file(path), path);
}

}  // namespace mamba::runtime
