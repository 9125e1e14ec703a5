// PyTorch zip checkpoints through a restricted unpickler (see torch_pickle.h). The zip reader
// handles exactly what torch.save writes (stored entries, zip64 when large); the unpickler is
// a plain loop over opcodes with explicit stack, mark and memo bounds, no recursion, and
// builds only None/bool/int/float/str/tuple/list/dict values, storages and tensor views.
#include "io/torch_pickle.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <set>
#include <unordered_map>

#include "core/error.h"
#include "io/mapped_file.h"
#include "io/zip_archive.h"

namespace mamba::io {

static_assert(std::endian::native == std::endian::little, "torch storages are read as little-endian");

namespace {

constexpr size_t kMaxPickleBytes = size_t{256} << 20;  // a 2.8B state dict pickles to ~100 KB
constexpr size_t kMaxStack = size_t{1} << 20;          // stack entries and open MARKs
constexpr size_t kMaxValues = size_t{1} << 22;         // objects one pickle may create
constexpr size_t kMaxMemo = size_t{1} << 22;
constexpr size_t kMaxDims = 64;

template <typename... Args>
[[noreturn]] void fail(ErrorCode code, const std::string& file, const Args&... args) {
  throw_error(code, file, ": ", args...);
}

// ---------------------------------------------------------------------------------------------
// Restricted unpickler

struct StorageType {
  const char* name;  // torch.<name>
  const char* stored;
  size_t size;
  std::optional<DType> dtype;
};
constexpr StorageType kStorageTypes[] = {
    {"FloatStorage", "F32", 4, DType::f32},   {"BFloat16Storage", "BF16", 2, DType::bf16},
    {"HalfStorage", "F16", 2, DType::f16},    {"DoubleStorage", "F64", 8, std::nullopt},
    {"LongStorage", "I64", 8, DType::i64},    {"IntStorage", "I32", 4, DType::i32},
    {"ShortStorage", "I16", 2, std::nullopt}, {"CharStorage", "I8", 1, std::nullopt},
    {"ByteStorage", "U8", 1, DType::u8},      {"BoolStorage", "BOOL", 1, std::nullopt},
    {"UntypedStorage", "U8", 1, DType::u8},
};

enum class Kind : uint8_t {
  none,
  boolean,
  integer,
  floating,
  string,
  tuple,
  list,
  dict,
  global,
  storage,
  tensor
};
enum class Global : uint8_t {
  ordered_dict,
  rebuild_tensor_v2,
  rebuild_parameter,
  rebuild_parameter_with_state,
  storage_type
};

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::none:
      return "None";
    case Kind::boolean:
      return "bool";
    case Kind::integer:
      return "int";
    case Kind::floating:
      return "float";
    case Kind::string:
      return "str";
    case Kind::tuple:
      return "tuple";
    case Kind::list:
      return "list";
    case Kind::dict:
      return "dict";
    case Kind::global:
      return "global";
    case Kind::storage:
      return "storage";
    case Kind::tensor:
      return "tensor";
  }
  return "?";
}

using Id = uint32_t;

struct Value {
  Kind kind = Kind::none;
  Global global = Global::ordered_dict;
  int64_t i = 0;  // integer / boolean
  double f = 0;
  std::string s;          // str; global "module.name"; storage key
  std::vector<Id> items;  // tuple / list; dict: key, value, key, value, ...
  int dtype = -1;         // storage type (index in kStorageTypes) of a global, storage or tensor
  uint64_t numel = 0;     // storage elements
  Id storage = 0;         // tensor
  int64_t offset = 0;
  Shape shape, stride;
};

class Unpickler {
public:
  Unpickler(const std::string& file, const unsigned char* data, size_t size)
      : file_(file), p_(data), n_(size) {}

  std::vector<Value> values;

  Id run() {
    for (;;) {
      op_pos_ = pos_;
      const uint8_t op = byte();
      switch (op) {
        case 0x80: {  // PROTO
          const uint8_t v = byte();
          if (v > 5) bad(ErrorCode::unsupported, "pickle protocol ", int{v}, " is not supported");
          break;
        }
        case 0x95:
          u64();
          break;     // FRAME: a size hint
        case '.': {  // STOP
          const Id result = pop();
          return result;
        }
        case '}':
          push(make(Kind::dict));
          break;
        case ']':
          push(make(Kind::list));
          break;
        case ')':
          push(make(Kind::tuple));
          break;
        case '(':
          if (marks_.size() >= kMaxStack) bad(ErrorCode::parse, "more than ", kMaxStack, " open MARKs");
          marks_.push_back(stack_.size());
          break;
        case 't': {
          std::vector<Id> items = pop_mark();
          const Id t = make(Kind::tuple);
          values[t].items = std::move(items);
          push(t);
          break;
        }
        case 0x85:
        case 0x86:
        case 0x87: {  // TUPLE1..3
          const size_t k = op - 0x84u;
          std::vector<Id> items(k);
          for (size_t j = k; j-- > 0;) items[j] = pop();
          const Id t = make(Kind::tuple);
          values[t].items = std::move(items);
          push(t);
          break;
        }
        case 's': {  // SETITEM
          const Id v = pop(), k = pop();
          Value& d = expect_top(Kind::dict, "SETITEM");
          d.items.push_back(k);
          d.items.push_back(v);
          break;
        }
        case 'u': {  // SETITEMS
          const std::vector<Id> items = pop_mark();
          if (items.size() % 2) bad(ErrorCode::parse, "SETITEMS with an odd number of items");
          Value& d = expect_top(Kind::dict, "SETITEMS");
          d.items.insert(d.items.end(), items.begin(), items.end());
          break;
        }
        case 'a': {  // APPEND
          const Id v = pop();
          expect_top(Kind::list, "APPEND").items.push_back(v);
          break;
        }
        case 'e': {  // APPENDS
          const std::vector<Id> items = pop_mark();
          Value& l = expect_top(Kind::list, "APPENDS");
          l.items.insert(l.items.end(), items.begin(), items.end());
          break;
        }
        case 'X':
          push_string(u32());
          break;  // BINUNICODE
        case 0x8c:
          push_string(byte());
          break;  // SHORT_BINUNICODE
        case 0x8d:
          push_string(u64());
          break;  // BINUNICODE8
        case 'J':
          push_int(static_cast<int32_t>(u32()));
          break;  // BININT
        case 'K':
          push_int(byte());
          break;     // BININT1
        case 'M': {  // BININT2
          need(2);
          push_int(rd16(p_ + pos_));
          pos_ += 2;
          break;
        }
        case 0x8a:
          push_long(byte());
          break;      // LONG1
        case 0x8b: {  // LONG4
          const auto len = static_cast<int32_t>(u32());
          if (len < 0) bad(ErrorCode::parse, "LONG4 with negative length");
          push_long(static_cast<uint64_t>(len));
          break;
        }
        case 0x88:
        case 0x89: {  // NEWTRUE, NEWFALSE
          const Id b = make(Kind::boolean);
          values[b].i = op == 0x88;
          push(b);
          break;
        }
        case 'N':
          push(make(Kind::none));
          break;
        case 'G': {  // BINFLOAT: big-endian double
          need(8);
          uint64_t bits = 0;
          for (int j = 0; j < 8; ++j) bits = (bits << 8) | p_[pos_ + j];
          pos_ += 8;
          const Id f = make(Kind::floating);
          values[f].f = std::bit_cast<double>(bits);
          push(f);
          break;
        }
        case 'q':
          memo_put(byte());
          break;  // BINPUT
        case 'r':
          memo_put(u32());
          break;  // LONG_BINPUT
        case 0x94:
          memo_put(memo_.size());
          break;  // MEMOIZE
        case 'h':
          push(memo_get(byte()));
          break;  // BINGET
        case 'j':
          push(memo_get(u32()));
          break;  // LONG_BINGET
        case '0':
          pop();
          break;  // POP
        case '1':
          push(top());
          break;  // DUP
        case '2':
          pop_mark();
          break;     // POP_MARK
        case 'c': {  // GLOBAL
          const std::string module = line(), name = line();
          push(resolve(module, name));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          const Id name = pop(), module = pop();
          if (values[name].kind != Kind::string || values[module].kind != Kind::string)
            bad(ErrorCode::parse, "STACK_GLOBAL needs two strings");
          const std::string n = values[name].s, m = values[module].s;
          push(resolve(m, n));
          break;
        }
        case 'R': {  // REDUCE
          const Id args = pop(), callable = pop();
          push(reduce(callable, args));
          break;
        }
        case 'b': {  // BUILD: only an OrderedDict's __dict__ (a state dict's _metadata) is accepted
          const Id state = pop();
          const Value& obj = values[top()];
          if (obj.kind != Kind::dict)
            bad(ErrorCode::unsupported, "refusing BUILD (__setstate__) on a ", kind_name(obj.kind),
                " with a ", kind_name(values[state].kind));
          break;
        }
        case 'Q': {  // BINPERSID
          const Id pid = pop();
          push(persistent_load(pid));
          break;
        }
        default:
          refuse_opcode(op);
      }
    }
  }

private:
  template <typename... Args>
  [[noreturn]] void bad(ErrorCode code, const Args&... args) const {
    fail(code, file_, "data.pkl byte ", op_pos_, ": ", args...);
  }

  [[noreturn]] void refuse_opcode(uint8_t op) const {
    static const std::map<uint8_t, const char*> kNames = {
        {'i', "INST"},
        {'o', "OBJ"},
        {0x81, "NEWOBJ"},
        {0x92, "NEWOBJ_EX"},
        {'P', "PERSID"},
        {'I', "INT"},
        {'L', "LONG"},
        {'F', "FLOAT"},
        {'S', "STRING"},
        {'T', "BINSTRING"},
        {'U', "SHORT_BINSTRING"},
        {'V', "UNICODE"},
        {'p', "PUT"},
        {'g', "GET"},
        {0x82, "EXT1"},
        {0x83, "EXT2"},
        {0x84, "EXT4"},
        {'B', "BINBYTES"},
        {'C', "SHORT_BINBYTES"},
        {0x8e, "BINBYTES8"},
        {0x8f, "EMPTY_SET"},
        {0x90, "ADDITEMS"},
        {0x91, "FROZENSET"},
        {0x96, "BYTEARRAY8"},
        {0x97, "NEXT_BUFFER"},
        {0x98, "READONLY_BUFFER"},
        {'d', "DICT"},
        {'l', "LIST"},
    };
    auto it = kNames.find(op);
    static const char* hex = "0123456789abcdef";
    const std::string code = std::string("0x") + hex[op >> 4] + hex[op & 15];
    if (it != kNames.end())
      bad(ErrorCode::unsupported, "refusing pickle opcode ", it->second, " (", code,
          "); a torch.save state dict never needs it");
    bad(ErrorCode::parse, "unknown pickle opcode ", code);
  }

  void need(size_t k) const {
    if (k > n_ - pos_) bad(ErrorCode::parse, "truncated pickle (", n_, " bytes)");
  }
  uint8_t byte() {
    need(1);
    return p_[pos_++];
  }
  uint32_t u32() {
    need(4);
    const uint32_t v = rd32(p_ + pos_);
    pos_ += 4;
    return v;
  }
  uint64_t u64() {
    need(8);
    const uint64_t v = rd64(p_ + pos_);
    pos_ += 8;
    return v;
  }
  std::string line() {
    const size_t start = pos_;
    while (pos_ < n_ && p_[pos_] != '\n') {
      if (pos_ - start > 256) bad(ErrorCode::parse, "GLOBAL name longer than 256 bytes");
      ++pos_;
    }
    if (pos_ >= n_) bad(ErrorCode::parse, "truncated pickle (", n_, " bytes)");
    return std::string(reinterpret_cast<const char*>(p_ + start), pos_++ - start);
  }

  Id make(Kind kind) {
    if (values.size() >= kMaxValues)
      bad(ErrorCode::parse, "pickle creates more than ", kMaxValues, " objects");
    values.emplace_back();
    values.back().kind = kind;
    return static_cast<Id>(values.size() - 1);
  }
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  void push(Id id) {
    if (stack_.size() >= kMaxStack) bad(ErrorCode::parse, "pickle stack deeper than ", kMaxStack);
    stack_.push_back(id);
  }
  Id top() const {
    if (stack_.size() <= floor()) bad(ErrorCode::parse, "pickle stack underflow");
    return stack_.back();
  }
  Id pop() {
    const Id id = top();
    stack_.pop_back();
    return id;
  }
  std::vector<Id> pop_mark() {
    if (marks_.empty()) bad(ErrorCode::parse, "no MARK on the pickle stack");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Id> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  Value& expect_top(Kind kind, const char* op) {
    Value& v = values[top()];
    if (v.kind != kind)
      bad(ErrorCode::parse, op, " on a ", kind_name(v.kind), ", expected a ", kind_name(kind));
    return v;
  }
  void push_string(uint64_t len) {
    need(len);
    const Id s = make(Kind::string);
    values[s].s.assign(reinterpret_cast<const char*>(p_ + pos_), len);
    pos_ += len;
    push(s);
  }
  void push_int(int64_t v) {
    const Id i = make(Kind::integer);
    values[i].i = v;
    push(i);
  }
  void push_long(uint64_t len) {  // little-endian two's complement
    if (len > 8) bad(ErrorCode::unsupported, "integer wider than 64 bits");
    need(len);
    uint64_t v = 0;
    for (size_t j = 0; j < len; ++j) v |= static_cast<uint64_t>(p_[pos_ + j]) << (8 * j);
    if (len > 0 && len < 8 && (p_[pos_ + len - 1] & 0x80)) v |= ~uint64_t{0} << (8 * len);
    pos_ += len;
    push_int(static_cast<int64_t>(v));
  }
  void memo_put(uint64_t index) {
    if (memo_.size() >= kMaxMemo && !memo_.count(index))
      bad(ErrorCode::parse, "more than ", kMaxMemo, " memo entries");
    memo_[index] = top();
  }
  Id memo_get(uint64_t index) const {
    auto it = memo_.find(index);
    if (it == memo_.end()) bad(ErrorCode::parse, "memo index ", index, " was never stored");
    return it->second;
  }

  Id resolve(const std::string& module, const std::string& name) {
    const Id g = make(Kind::global);
    Value& v = values[g];
    v.s = module + "." + name;
    if (module == "collections" && name == "OrderedDict") {
      v.global = Global::ordered_dict;
    } else if (module == "torch._utils" && name == "_rebuild_tensor_v2") {
      v.global = Global::rebuild_tensor_v2;
    } else if (module == "torch._utils" && name == "_rebuild_parameter") {
      v.global = Global::rebuild_parameter;
    } else if (module == "torch._utils" && name == "_rebuild_parameter_with_state") {
      v.global = Global::rebuild_parameter_with_state;
    } else {
      for (size_t t = 0; t < std::size(kStorageTypes); ++t)
        if (module == "torch" && name == kStorageTypes[t].name) {
          v.global = Global::storage_type;
          v.dtype = static_cast<int>(t);
          return g;
        }
      bad(ErrorCode::unsupported, "refusing global '", printable(module), ".", printable(name),
          "' (only torch tensor-rebuild globals are allowed; nothing is executed)");
    }
    return g;
  }

  const Value& arg(const Value& args, size_t i, Kind kind, const char* what) const {
    const Value& a = values[args.items[i]];
    if (a.kind != kind)
      bad(ErrorCode::parse, what, " is a ", kind_name(a.kind), ", expected a ", kind_name(kind));
    return a;
  }

  Shape int_tuple(const Value& args, size_t i, const char* what) const {
    const Value& t = values[args.items[i]];
    if (t.kind != Kind::tuple && t.kind != Kind::list)
      bad(ErrorCode::parse, what, " is a ", kind_name(t.kind), ", expected a tuple of ints");
    if (t.items.size() > kMaxDims)
      bad(ErrorCode::shape, what, " has ", t.items.size(), " dims (max ", kMaxDims, ")");
    Shape out;
    for (Id d : t.items) {
      const Value& v = values[d];
      if (v.kind != Kind::integer || v.i < 0) bad(ErrorCode::shape, what, " must hold non-negative ints");
      out.push_back(v.i);
    }
    return out;
  }

  Id reduce(Id callable_id, Id args_id) {
    const Value& callable = values[callable_id];
    if (callable.kind != Kind::global)
      bad(ErrorCode::unsupported, "refusing REDUCE on a ", kind_name(callable.kind),
          " (only allowed globals)");
    if (values[args_id].kind != Kind::tuple) bad(ErrorCode::parse, "REDUCE arguments are not a tuple");
    const Value& args = values[args_id];
    switch (callable.global) {
      case Global::ordered_dict:
        if (!args.items.empty()) bad(ErrorCode::unsupported, "collections.OrderedDict called with arguments");
        return make(Kind::dict);
      case Global::rebuild_parameter:
      case Global::rebuild_parameter_with_state: {
        const size_t n = callable.global == Global::rebuild_parameter ? 3 : 4;
        if (args.items.size() != n)
          bad(ErrorCode::parse, callable.s, " takes ", n, " arguments, got ", args.items.size());
        arg(args, 0, Kind::tensor, "parameter data");
        return args.items[0];
      }
      case Global::rebuild_tensor_v2: {
        if (args.items.size() != 6 && args.items.size() != 7)
          bad(ErrorCode::parse, "_rebuild_tensor_v2 takes 6 or 7 arguments, got ", args.items.size());
        const Id storage = args.items[0];
        const Value& st = arg(args, 0, Kind::storage, "tensor storage");
        const int64_t offset = arg(args, 1, Kind::integer, "storage offset").i;
        Shape shape = int_tuple(args, 2, "tensor size");
        Shape stride = int_tuple(args, 3, "tensor stride");
        if (offset < 0) bad(ErrorCode::shape, "negative storage offset ", offset);
        if (shape.size() != stride.size())
          bad(ErrorCode::shape, "tensor size ", shape_str(shape), " and stride ", shape_str(stride),
              " differ in rank");
        // Numel and the last element the view touches must stay inside the storage.
        uint64_t numel = 1, last = static_cast<uint64_t>(offset);
        bool overflow = false;
        for (size_t d = 0; d < shape.size(); ++d) {
          const auto n = static_cast<uint64_t>(shape[d]);
          overflow |= __builtin_mul_overflow(numel, n, &numel);
          uint64_t reach = 0;
          if (n > 0) overflow |= __builtin_mul_overflow(n - 1, static_cast<uint64_t>(stride[d]), &reach);
          overflow |= __builtin_add_overflow(last, reach, &last);
        }
        if (overflow || numel > (uint64_t{1} << 62))
          bad(ErrorCode::shape, "tensor size ", shape_str(shape), " is too large");
        if (numel > 0 && last >= st.numel)
          bad(ErrorCode::shape, "tensor view (offset ", offset, ", size ", shape_str(shape), ", stride ",
              shape_str(stride), ") runs past its storage of ", st.numel, " elements");
        const Id t = make(Kind::tensor);
        Value& v = values[t];
        v.storage = storage;
        v.dtype = values[storage].dtype;
        v.offset = offset;
        v.shape = std::move(shape);
        v.stride = std::move(stride);
        return t;
      }
      case Global::storage_type:
        break;
    }
    bad(ErrorCode::unsupported, "refusing to call ", callable.s);
  }

  // ('storage', torch.<T>Storage, key, location, numel) -> a storage value, one per key.
  Id persistent_load(Id pid_id) {
    const Value& pid = values[pid_id];
    if (pid.kind != Kind::tuple || pid.items.size() != 5 || values[pid.items[0]].kind != Kind::string ||
        values[pid.items[0]].s != "storage")
      bad(ErrorCode::unsupported, "persistent id is not ('storage', type, key, location, numel)");
    const Value& type = arg(pid, 1, Kind::global, "storage type");
    if (type.global != Global::storage_type)
      bad(ErrorCode::unsupported, "persistent id names ", type.s, ", not a storage type");
    const std::string key = arg(pid, 2, Kind::string, "storage key").s;  // a copy: make() below reallocates
    arg(pid, 3, Kind::string, "storage location");
    const int64_t numel = arg(pid, 4, Kind::integer, "storage size").i;
    if (numel < 0) bad(ErrorCode::shape, "storage '", printable(key), "' has negative size ", numel);
    auto it = storages_.find(key);
    if (it != storages_.end()) {
      const Value& s = values[it->second];
      if (s.dtype != type.dtype || s.numel != static_cast<uint64_t>(numel))
        bad(ErrorCode::parse, "storage '", printable(key),
            "' is declared twice with different types or sizes");
      return it->second;
    }
    const int dtype = type.dtype;
    const Id s = make(Kind::storage);
    values[s].s = key;
    values[s].dtype = dtype;
    values[s].numel = static_cast<uint64_t>(numel);
    storages_.emplace(key, s);
    return s;
  }

  std::string file_;
  const unsigned char* p_;
  size_t n_;
  size_t pos_ = 0, op_pos_ = 0;
  std::vector<Id> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Id> memo_;
  std::map<std::string, Id> storages_;
};

bool is_contiguous(const Shape& shape, const Shape& stride) {
  int64_t expected = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    if (shape[d] != 1 && stride[d] != expected) return false;
    expected *= shape[d];
  }
  return true;
}

// Copies a strided view (bounds already checked against the storage) into contiguous bytes.
void gather(const unsigned char* base, size_t elem, int64_t offset, const Shape& shape, const Shape& stride,
            unsigned char* dst) {
  if (shape.empty()) {
    std::memcpy(dst, base + static_cast<size_t>(offset) * elem, elem);
    return;
  }
  const size_t nd = shape.size();
  const int64_t inner = shape[nd - 1], inner_stride = stride[nd - 1];
  const int64_t outer = shape_numel(shape) / std::max<int64_t>(inner, 1);
  if (inner == 0) return;
  std::vector<int64_t> idx(nd - 1, 0);
  for (int64_t o = 0; o < outer; ++o) {
    int64_t src = offset;
    for (size_t d = 0; d + 1 < nd; ++d) src += idx[d] * stride[d];
    for (int64_t j = 0; j < inner; ++j, dst += elem)
      std::memcpy(dst, base + static_cast<size_t>(src + j * inner_stride) * elem, elem);
    for (size_t d = nd - 1; d-- > 0;) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}

}  // namespace

TorchCheckpoint read_torch_checkpoint(std::shared_ptr<Buffer> bytes, const std::string& file) {
  const auto* data = static_cast<const unsigned char*>(bytes->data());
  const ZipArchive zip(file, data, bytes->bytes());
  const std::string& prefix = zip.prefix();

  const ZipEntry* pkl = zip.find(prefix + "/data.pkl");
  if (!pkl) {
    if (zip.find(prefix + "/constants.pkl"))
      fail(ErrorCode::unsupported, file,
           "a TorchScript archive (torch.jit.save), not a torch.save checkpoint");
    fail(ErrorCode::parse, file, "zip archive has no ", prefix, "/data.pkl; not a torch.save checkpoint");
  }
  if (const ZipEntry* order = zip.find(prefix + "/byteorder")) {
    const std::string value(reinterpret_cast<const char*>(data + order->offset),
                            std::min<size_t>(order->size, 16));
    if (value != "little")
      fail(ErrorCode::unsupported, file, "byteorder is '", printable(value),
           "'; only little-endian checkpoints load");
  }
  if (pkl->size > kMaxPickleBytes)
    fail(ErrorCode::parse, file, "data.pkl is ", pkl->size, " bytes, over the ", kMaxPickleBytes,
         "-byte limit");

  Unpickler up(file, data + pkl->offset, pkl->size);
  const Id root = up.run();
  const std::vector<Value>& values = up.values;

  // The state dict: the root itself, else root["state_dict"] or root["model"].
  auto has_tensor = [&](const Value& d) {
    for (size_t j = 1; j < d.items.size(); j += 2)
      if (values[d.items[j]].kind == Kind::tensor) return true;
    return false;
  };
  const Value* dict = &values[root];
  if (dict->kind != Kind::dict)
    fail(ErrorCode::parse, file, "checkpoint holds a ", kind_name(dict->kind), ", expected a state dict");
  if (!has_tensor(*dict)) {
    const Value* found = nullptr;
    for (const char* key : {"state_dict", "model"}) {
      for (size_t j = 0; j + 1 < dict->items.size() && !found; j += 2) {
        const Value& k = values[dict->items[j]];
        const Value& v = values[dict->items[j + 1]];
        if (k.kind == Kind::string && k.s == key && v.kind == Kind::dict) found = &v;
      }
      if (found) break;
    }
    if (!found || !has_tensor(*found))
      fail(ErrorCode::parse, file,
           "checkpoint holds no tensors (neither a state dict nor one under 'state_dict' or "
           "'model')");
    dict = found;
  }

  std::map<std::string, size_t> index;  // name -> position in out.tensors
  TorchCheckpoint out;
  out.file = file;
  for (size_t j = 0; j + 1 < dict->items.size(); j += 2) {
    const Value& k = values[dict->items[j]];
    const Value& t = values[dict->items[j + 1]];
    if (t.kind != Kind::tensor) continue;
    if (k.kind != Kind::string)
      fail(ErrorCode::parse, file, "state dict key is a ", kind_name(k.kind), ", expected a str");
    const Value& st = values[t.storage];
    const StorageType& type = kStorageTypes[st.dtype];
    const ZipEntry* entry = zip.find(prefix + "/data/" + st.s);
    if (!entry)
      fail(ErrorCode::parse, file, "tensor '", printable(k.s), "': storage data/", printable(st.s),
           " is missing");
    uint64_t storage_bytes = 0;
    if (__builtin_mul_overflow(st.numel, type.size, &storage_bytes) || entry->size != storage_bytes)
      fail(ErrorCode::parse, file, "tensor '", printable(k.s), "': data/", printable(st.s), " has ",
           entry->size, " bytes, but its storage declares ", st.numel, " x ", type.size, "-byte elements");

    TorchTensor tensor;
    tensor.name = k.s;
    tensor.stored_dtype = type.stored;
    tensor.dtype = type.dtype;
    tensor.shape = t.shape;
    tensor.bytes = static_cast<size_t>(shape_numel(t.shape)) * type.size;
    const unsigned char* base = data + entry->offset;
    if (is_contiguous(t.shape, t.stride) || tensor.bytes == 0) {
      const unsigned char* begin =
          tensor.bytes == 0 ? base : base + static_cast<size_t>(t.offset) * type.size;
      tensor.data = Buffer::borrow(const_cast<unsigned char*>(begin), tensor.bytes, bytes);
    } else {
      tensor.data = Buffer::allocate(tensor.bytes);
      gather(base, type.size, t.offset, t.shape, t.stride, static_cast<unsigned char*>(tensor.data->data()));
    }
    auto [it, inserted] = index.emplace(tensor.name, out.tensors.size());
    if (inserted)
      out.tensors.push_back(std::move(tensor));
    else
      out.tensors[it->second] = std::move(tensor);  // a repeated key: the last one wins, as in Python
  }
  return out;
}

TorchCheckpoint read_torch_checkpoint(const std::string& path) {
  return read_torch_checkpoint(map_file(path, 1, "expected a torch.save zip archive"), path);
}

}  // namespace mamba::io
