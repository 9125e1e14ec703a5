// torch.save checkpoints: views and dtypes, zip64 and protocol 4, nesting, the fixture models
// read through SafeTensors::open bit for bit, sharding, and hostile files (each refused with a
// one-line error), plus truncation / byte-mutation sweeps that must never crash. The data in
// tests/data/torch_pickle comes from make_pickles.py (standard library only).
#include "io/torch_pickle.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>

#include "core/error.h"
#include "core/file_util.h"
#include "io/safetensors.h"
#include "testing.h"

namespace mamba::io {
namespace {

namespace fs = std::filesystem;

std::string data_path(const std::string& name) {
  return std::string(MAMBACPP_TORCH_PICKLE_DATA) + "/" + name;
}

// Runs fn, expecting an Error with `code` whose one-line message holds every fragment.
void expect_error(const std::function<void()>& fn, ErrorCode code,
                  const std::vector<std::string>& fragments) {
  try {
    fn();
    ADD_FAILURE() << "no error thrown; expected " << error_code_name(code);
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(e.code(), code) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "multi-line message: " << msg;
    for (const std::string& f : fragments)
      EXPECT_NE(msg.find(f), std::string::npos) << "'" << f << "' not in: " << msg;
  }
}

class TempDir {
public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = (fs::temp_directory_path() /
             ("mambacpp_io_pkl_" + std::string(info->name()) + "_" + std::to_string(::getpid())))
                .string();
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_join(path_, name); }

private:
  std::string path_;
};

const TorchTensor& find(const TorchCheckpoint& ckpt, const std::string& name) {
  for (const TorchTensor& t : ckpt.tensors)
    if (t.name == name) return t;
  throw_error(ErrorCode::not_found, "no tensor ", name);
}

template <typename T>
std::vector<T> values(const TorchTensor& t) {
  std::vector<T> out(t.bytes / sizeof(T));
  if (t.bytes) std::memcpy(out.data(), t.data->data(), t.bytes);
  return out;
}

// views.bin: storage 0 holds 0..23 as f32; see make_pickles.py views_state_dict.
void check_views(const std::string& path) {
  SCOPED_TRACE(path);
  const TorchCheckpoint ckpt = read_torch_checkpoint(path);
  std::vector<std::string> names;
  for (const TorchTensor& t : ckpt.tensors) names.push_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"tied.a", "tied.c", "tied.b", "view.transpose", "view.slice",
                                             "view.row", "view.expand", "view.scalar", "view.empty",
                                             "dtype.f16", "dtype.bf16", "dtype.f64", "dtype.i64", "dtype.i32",
                                             "dtype.u8", "dtype.bool"}));

  std::vector<float> iota(24);
  for (int i = 0; i < 24; ++i) iota[i] = static_cast<float>(i);
  for (const char* name : {"tied.a", "tied.b", "tied.c"}) {
    const TorchTensor& t = find(ckpt, name);
    EXPECT_EQ(t.stored_dtype, "F32");
    EXPECT_EQ(t.dtype, DType::f32);
    EXPECT_EQ(t.shape, (Shape{4, 6}));
    EXPECT_EQ(values<float>(t), iota) << name;
  }
  // Tied weights are zero-copy views of the one storage.
  EXPECT_EQ(find(ckpt, "tied.a").data->data(), find(ckpt, "tied.b").data->data());

  std::vector<float> transpose, slice, expand;
  for (int r = 0; r < 6; ++r)
    for (int c = 0; c < 4; ++c) transpose.push_back(static_cast<float>(c * 6 + r));
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 3; ++c) slice.push_back(static_cast<float>(7 + 6 * r + 2 * c));
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 2; ++c) expand.push_back(static_cast<float>(3 + c));
  EXPECT_EQ(find(ckpt, "view.transpose").shape, (Shape{6, 4}));
  EXPECT_EQ(values<float>(find(ckpt, "view.transpose")), transpose);
  EXPECT_EQ(find(ckpt, "view.slice").shape, (Shape{2, 3}));
  EXPECT_EQ(values<float>(find(ckpt, "view.slice")), slice);
  EXPECT_EQ(values<float>(find(ckpt, "view.row")), (std::vector<float>{12, 13, 14, 15, 16, 17}));
  EXPECT_EQ(find(ckpt, "view.expand").shape, (Shape{3, 2}));
  EXPECT_EQ(values<float>(find(ckpt, "view.expand")), expand);
  EXPECT_EQ(find(ckpt, "view.scalar").shape, Shape{});
  EXPECT_EQ(values<float>(find(ckpt, "view.scalar")), std::vector<float>{5});
  EXPECT_EQ(find(ckpt, "view.empty").shape, (Shape{0, 6}));
  EXPECT_EQ(find(ckpt, "view.empty").bytes, 0u);

  EXPECT_EQ(find(ckpt, "dtype.f64").stored_dtype, "F64");
  EXPECT_EQ(find(ckpt, "dtype.f64").dtype, std::nullopt);
  EXPECT_EQ(values<double>(find(ckpt, "dtype.f64")), (std::vector<double>{0.25, 4.0}));
  EXPECT_EQ(values<int64_t>(find(ckpt, "dtype.i64")), (std::vector<int64_t>{-1, int64_t{1} << 40, 7}));
  EXPECT_EQ(values<int32_t>(find(ckpt, "dtype.i32")), (std::vector<int32_t>{-5, 9}));
  EXPECT_EQ(values<uint8_t>(find(ckpt, "dtype.u8")), (std::vector<uint8_t>{0, 1, 254, 255}));
  EXPECT_EQ(find(ckpt, "dtype.bool").stored_dtype, "BOOL");
  EXPECT_EQ(find(ckpt, "dtype.bf16").stored_dtype, "BF16");
  EXPECT_EQ(find(ckpt, "dtype.f16").stored_dtype, "F16");
}

TEST(TorchPickle, ViewsDtypesAndTiedWeights) {
  check_views(data_path("views.bin"));
}
TEST(TorchPickle, Zip64Archive) {
  check_views(data_path("views_zip64.bin"));
}
TEST(TorchPickle, Protocol4Opcodes) {
  check_views(data_path("views_proto4.bin"));
}

TEST(TorchPickle, SafeTensorsInterfaceOnAFile) {
  const SafeTensors st = SafeTensors::open(data_path("views.bin"));
  EXPECT_EQ(st.size(), 16u);
  EXPECT_TRUE(st.contains("view.slice"));
  EXPECT_EQ(st.find("view.slice")->file, data_path("views.bin"));
  const Tensor slice = st.get_f32("view.slice", {2, 3});
  EXPECT_EQ(std::vector<float>(slice.f32(), slice.f32() + 6), (std::vector<float>{7, 9, 11, 13, 15, 17}));
  const Tensor f16 = st.get_f32("dtype.f16");
  EXPECT_EQ(f16.f32()[0], 1.5f);
  EXPECT_EQ(f16.f32()[1], -3.0f);
  const Tensor bf16 = st.get_f32("dtype.bf16");
  EXPECT_EQ(std::vector<float>(bf16.f32(), bf16.f32() + 3), (std::vector<float>{1.0f, -2.0f, 0.5f}));
  const Tensor i64 = st.get("dtype.i64");
  EXPECT_EQ(i64.dtype(), DType::i64);
  EXPECT_EQ(i64.data<int64_t>()[1], int64_t{1} << 40);
  EXPECT_EQ(st.get_f32("view.scalar").f32()[0], 5.0f);
  expect_error([&] { st.get("dtype.f64"); }, ErrorCode::unsupported, {"views.bin", "dtype.f64", "F64"});
  expect_error([&] { st.get_f32("dtype.i32"); }, ErrorCode::dtype, {"dtype.i32", "I32"});
  expect_error([&] { st.get_f32("tied.a", {6, 4}); }, ErrorCode::shape, {"tied.a", "[4, 6]"});
}

TEST(TorchPickle, NestedTrainingCheckpoint) {
  const TorchCheckpoint ckpt =
      read_torch_checkpoint(data_path("nested.bin"));  // {"state_dict": ..., "epoch": 3}
  ASSERT_EQ(ckpt.tensors.size(), 1u);
  EXPECT_EQ(ckpt.tensors[0].name, "w");
  EXPECT_EQ(ckpt.tensors[0].shape, (Shape{2, 2}));
  EXPECT_EQ(values<float>(ckpt.tensors[0]), (std::vector<float>{1, 2, 3, 4}));
}

// Every tensor of `original` (safetensors) is in `torch` with the same dtype, shape and bytes.
void expect_same_tensors(const SafeTensors& torch, const SafeTensors& original) {
  for (const std::string& name : original.names()) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(torch.contains(name));
    const TensorInfo& a = *torch.find(name);
    const TensorInfo& b = *original.find(name);
    EXPECT_EQ(a.stored_dtype, b.stored_dtype);
    EXPECT_EQ(a.shape, b.shape);
    ASSERT_EQ(a.bytes, b.bytes);
    const Tensor ta = torch.get(name), tb = original.get(name);
    EXPECT_EQ(std::memcmp(ta.raw(), tb.raw(), a.bytes), 0);
  }
}

TEST(TorchPickle, FixtureModelsMatchSafetensorsBitForBit) {
  MAMBA_REQUIRE_FIXTURES(fixtures);
  for (const char* model : {"ssm-mamba1", "ssm-mamba2"}) {
    SCOPED_TRACE(model);
    const std::string dir = data_path(model);
    ASSERT_FALSE(file_exists(path_join(dir, "model.safetensors")));
    const SafeTensors torch = SafeTensors::open(dir);  // falls back to pytorch_model.bin
    EXPECT_EQ(torch.find("backbone.embedding.weight")->file, path_join(dir, "pytorch_model.bin"));
    const SafeTensors original = SafeTensors::open(path_join(fixtures, model));
    EXPECT_EQ(torch.size(), original.size() + 1);  // + lm_head.weight, tied to the embedding
    expect_same_tensors(torch, original);
    const Tensor emb = torch.get_f32("backbone.embedding.weight");
    const Tensor head = torch.get_f32("lm_head.weight");
    EXPECT_EQ(std::memcmp(emb.raw(), head.raw(), emb.nbytes()), 0);
  }
}

// A real torch.save output, when given: MAMBACPP_TORCH_BIN=dir with pytorch_model.bin and the
// same weights as model.safetensors (e.g. from save_pretrained(safe_serialization=...) both ways).
TEST(TorchPickle, RealTorchSaveWhenGiven) {
  const char* dir = std::getenv("MAMBACPP_TORCH_BIN");
  if (!dir) GTEST_SKIP() << "set MAMBACPP_TORCH_BIN to a folder with pytorch_model.bin (+ model.safetensors)";
  const TorchCheckpoint ckpt = read_torch_checkpoint(path_join(dir, "pytorch_model.bin"));
  EXPECT_FALSE(ckpt.tensors.empty());
  if (file_exists(path_join(dir, "model.safetensors")))
    expect_same_tensors(SafeTensors::open(path_join(dir, "pytorch_model.bin")),
                        SafeTensors::open(path_join(dir, "model.safetensors")));
}

TEST(TorchPickle, ShardedIndexAndSafetensorsPrecedence) {
  TempDir tmp;
  fs::copy_file(data_path("views.bin"), tmp.file("pytorch_model-00001-of-00002.bin"));
  fs::copy_file(data_path("nested.bin"), tmp.file("pytorch_model-00002-of-00002.bin"));
  std::string map;
  for (const TorchTensor& t : read_torch_checkpoint(data_path("views.bin")).tensors)
    map += "\"" + t.name + "\": \"pytorch_model-00001-of-00002.bin\", ";
  map += "\"w\": \"pytorch_model-00002-of-00002.bin\"";
  write_file_atomic(tmp.file("pytorch_model.bin.index.json"), "{\"weight_map\": {" + map + "}}");
  const SafeTensors st = SafeTensors::open(tmp.path());
  EXPECT_EQ(st.size(), 17u);
  EXPECT_EQ(st.get_f32("w").f32()[3], 4.0f);
  EXPECT_EQ(st.find("w")->file, tmp.file("pytorch_model-00002-of-00002.bin"));
  EXPECT_EQ(st.get_f32("view.row").f32()[0], 12.0f);

  // A weight_map naming a tensor its shard lacks is refused, as for safetensors shards.
  write_file_atomic(tmp.file("pytorch_model.bin.index.json"),
                    "{\"weight_map\": {\"w\": \"pytorch_model-00001-of-00002.bin\"}}");
  expect_error([&] { SafeTensors::open(tmp.path()); }, ErrorCode::parse, {"weight_map", "'w'"});

  // model.safetensors wins over pytorch_model.bin.
  fs::copy_file(data_path("nested.bin"), tmp.file("pytorch_model.bin"));
  save_safetensors(tmp.file("model.safetensors"), {{"only_st", Tensor::from_vector({1.0f}, {1})}});
  const SafeTensors both = SafeTensors::open(tmp.path());
  EXPECT_TRUE(both.contains("only_st"));
  EXPECT_FALSE(both.contains("w"));
}

TEST(TorchPickle, EmptyDirectoryNamesEveryCandidate) {
  TempDir tmp;
  expect_error([&] { SafeTensors::open(tmp.path()); }, ErrorCode::not_found,
               {"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"});
}

struct BadCase {
  const char* file;
  ErrorCode code;
  std::vector<std::string> fragments;
};

TEST(TorchPickle, HostileAndMalformedFilesAreRefused) {
  const std::vector<BadCase> cases = {
      {"os_system.bin", ErrorCode::unsupported, {"refusing global 'os.system'"}},
      {"builtins_eval.bin", ErrorCode::unsupported, {"refusing global 'builtins.eval'"}},
      {"posix_system.bin", ErrorCode::unsupported, {"refusing global 'posix.system'"}},
      {"stack_global.bin", ErrorCode::unsupported, {"refusing global 'subprocess.Popen'"}},
      {"inst.bin", ErrorCode::unsupported, {"refusing pickle opcode INST"}},
      {"obj.bin", ErrorCode::unsupported, {"refusing global 'os.system'"}},  // OBJ needs a GLOBAL first
      {"nested_global.bin", ErrorCode::unsupported, {"refusing global 'builtins.exec'"}},
      {"memo_out_of_range.bin", ErrorCode::parse, {"memo index 7"}},
      {"stack_underflow.bin", ErrorCode::parse, {"stack underflow"}},
      {"no_stop.bin", ErrorCode::parse, {"truncated pickle"}},
      {"truncated.bin", ErrorCode::parse, {"end-of-central-directory"}},
      {"bad_entry_size.bin", ErrorCode::parse, {"data/0 has 12 bytes", "declares 4 x 4-byte"}},
      {"absurd_shape.bin", ErrorCode::shape, {"too large"}},
      {"past_storage.bin", ErrorCode::shape, {"runs past its storage of 4 elements"}},
      {"negative_stride.bin", ErrorCode::shape, {"non-negative"}},
      {"legacy.bin", ErrorCode::unsupported, {"legacy torch.save format"}},
  };
  TempDir tmp;
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.file);
    const std::string path = data_path(std::string("bad/") + c.file);
    std::vector<std::string> fragments = c.fragments;
    fragments.push_back(path);
    expect_error([&] { read_torch_checkpoint(path); }, c.code, fragments);
    // The same refusal through the directory fallback.
    fs::copy_file(path, tmp.file("pytorch_model.bin"), fs::copy_options::overwrite_existing);
    expect_error([&] { SafeTensors::open(tmp.path()); }, c.code, c.fragments);
  }
}

TEST(TorchPickle, SpecialFilesAreRefused) {
  TempDir tmp;
  write_file_atomic(tmp.file("empty.bin"), "");
  expect_error([&] { read_torch_checkpoint(tmp.file("empty.bin")); }, ErrorCode::parse,
               {"empty.bin", "empty"});
  write_file_atomic(tmp.file("text.bin"), "hello, not a zip");
  expect_error([&] { read_torch_checkpoint(tmp.file("text.bin")); }, ErrorCode::parse, {"not a zip archive"});
  expect_error([&] { read_torch_checkpoint(tmp.file("missing.bin")); }, ErrorCode::io, {"missing.bin"});
  expect_error([&] { read_torch_checkpoint(tmp.path()); }, ErrorCode::io, {"not a regular file"});
}

std::shared_ptr<Buffer> load_bytes(const std::string& path) {
  const std::string bytes = read_file(path);
  auto buf = Buffer::allocate(bytes.size());
  std::memcpy(buf->data(), bytes.data(), bytes.size());
  return buf;
}

// Parses `bytes`; anything but success or mamba::Error (a crash, another exception) fails.
void parse_or_error(const std::shared_ptr<Buffer>& bytes) {
  try {
    const TorchCheckpoint ckpt = read_torch_checkpoint(bytes, "fuzz.bin");
    for (const TorchTensor& t : ckpt.tensors) ASSERT_EQ(t.data->bytes(), t.bytes);
  } catch (const Error&) {
  }
}

TEST(TorchPickle, TruncationsAndByteMutationsNeverCrash) {
  for (const char* name : {"views.bin", "views_proto4.bin", "views_zip64.bin", "nested.bin"}) {
    SCOPED_TRACE(name);
    const std::shared_ptr<Buffer> good = load_bytes(data_path(name));
    const auto* src = static_cast<const unsigned char*>(good->data());
    const size_t n = good->bytes();
    for (size_t len = 0; len < n; ++len) {
      auto cut = Buffer::allocate(len);
      if (len) std::memcpy(cut->data(), src, len);
      parse_or_error(cut);
    }
    auto copy = Buffer::allocate(n);
    auto* dst = static_cast<unsigned char*>(copy->data());
    std::memcpy(dst, src, n);
    for (size_t i = 0; i < n; ++i) {
      for (const int v : {0x00, 0x01, 0x7f, 0x80, 0xff, src[i] + 1}) {
        dst[i] = static_cast<unsigned char>(v);
        parse_or_error(copy);
      }
      dst[i] = src[i];
    }
  }
}

}  // namespace
}  // namespace mamba::io
