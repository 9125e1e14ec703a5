// SafeTensors tests: round trips per dtype, conversions, sharded checkpoints, one case per
// malformed-header check (each error must be one line naming the file), and the fixtures.
#include "io/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_util.h"
#include "testing.h"

namespace mamba::io {
namespace {

namespace fs = std::filesystem;

class SafeTensorsTest : public ::testing::Test {
protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = (fs::temp_directory_path() /
            ("mambacpp_io_st_" + std::string(info->name()) + "_" + std::to_string(::getpid())))
               .string();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string file(const std::string& name) const { return path_join(dir_, name); }

  // A safetensors file from a raw header text and data section.
  std::string write_raw(const std::string& name, const std::string& header, const std::string& data = "") {
    const uint64_t len = header.size();
    std::string bytes(reinterpret_cast<const char*>(&len), 8);
    bytes += header + data;
    write_file_atomic(file(name), bytes);
    return file(name);
  }

  std::string dir_;
};

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

Tensor make(const Shape& shape, DType dtype, float start = 0.5f) {
  Tensor t = Tensor::empty(shape, DType::f32);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.f32()[i] = start + 0.25f * static_cast<float>(i) * (i % 2 ? -1 : 1);
  return t.to(dtype);
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  const Tensor ca = a.contiguous(), cb = b.contiguous();
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(ca.raw(), cb.raw(), ca.nbytes()) == 0;
}

TEST_F(SafeTensorsTest, RoundTripEachDtype) {
  std::vector<std::pair<std::string, Tensor>> tensors = {
      {"f32", make({2, 3}, DType::f32)},
      {"bf16", make({4}, DType::bf16)},
      {"f16", make({2, 2}, DType::f16)},
      {"i64", make({3}, DType::i64, 7.0f)},
      {"i32", make({5}, DType::i32, 3.0f)},
      {"u8", make({3}, DType::u8, 9.0f)},
      {"scalar", make({}, DType::f32)},
      {"empty", make({0, 4}, DType::f32)},
      {"strided", make({3, 2}, DType::f32).transpose(0, 1)},
  };
  const std::string path = file("model.safetensors");
  save_safetensors(path, tensors, {{"format", "pt"}});

  const SafeTensors st = SafeTensors::open(path);
  EXPECT_EQ(st.size(), tensors.size());
  EXPECT_EQ(st.names().front(), "bf16");  // sorted
  EXPECT_EQ(st.metadata().at("format"), "pt");
  for (const auto& [name, tensor] : tensors) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(st.contains(name));
    const TensorInfo* info = st.find(name);
    ASSERT_NE(info, nullptr);
    EXPECT_EQ(info->dtype, tensor.dtype());
    EXPECT_EQ(info->shape, tensor.shape());
    EXPECT_EQ(info->bytes, tensor.nbytes());
    EXPECT_EQ(info->file, path);
    EXPECT_TRUE(same_bytes(st.get(name), tensor));
  }
  EXPECT_EQ(st.find("bf16")->stored_dtype, "BF16");
  EXPECT_EQ(st.find("i64")->stored_dtype, "I64");
  EXPECT_EQ(st.get("i64").data<int64_t>()[0], 7);
  // The header is padded so the data section is 8-byte aligned: get() returns views.
  EXPECT_EQ(st.find("f32")->offset % 8, 0u);
  EXPECT_EQ(st.get("f32").raw(), st.get("f32").raw());
}

TEST_F(SafeTensorsTest, SaveRejectsBadNames) {
  const Tensor t = make({2}, DType::f32);
  expect_error(
      [&] {
        save_safetensors(file("a.safetensors"), {{"x", t}, {"x", t}});
      },
      ErrorCode::invalid_argument, {"a.safetensors", "'x'", "twice"});
  expect_error(
      [&] {
        save_safetensors(file("b.safetensors"), {{"__metadata__", t}});
      },
      ErrorCode::invalid_argument, {"b.safetensors", "__metadata__"});
  EXPECT_FALSE(file_exists(file("a.safetensors")));
}

TEST_F(SafeTensorsTest, HalfTypesConvertToF32) {
  // Hand-written bits: 1.5, -2.25, 0, -inf in bf16 and f16.
  const uint16_t bf16[] = {0x3FC0, 0xC010, 0x0000, 0xFF80};
  const uint16_t f16[] = {0x3E00, 0xC080, 0x0000, 0xFC00};
  std::string data(reinterpret_cast<const char*>(bf16), 8);
  data.append(reinterpret_cast<const char*>(f16), 8);
  const std::string path = write_raw(
      "half.safetensors",
      R"({"b":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]},"h":{"dtype":"F16","shape":[4],"data_offsets":[8,16]}})",
      data);
  const SafeTensors st = SafeTensors::open(path);
  const std::vector<float> expected = {1.5f, -2.25f, 0.0f, -INFINITY};
  for (const char* name : {"b", "h"}) {
    const Tensor t = st.get_f32(name);
    EXPECT_EQ(t.dtype(), DType::f32);
    EXPECT_EQ(t.to_vector(), expected) << name;
  }
  EXPECT_EQ(st.get_f32("b", {2, 2}).shape(), (Shape{2, 2}));
  EXPECT_EQ(st.get("b").dtype(), DType::bf16);

  // Values not exact in the half types round as PyTorch does.
  const Tensor x = Tensor::from_vector({3.14159f, -1e-3f, 65504.0f, 1.0f / 3.0f}, {4});
  save_safetensors(file("r.safetensors"), {{"b", x.to(DType::bf16)}, {"h", x.to(DType::f16)}});
  const SafeTensors r = SafeTensors::open(file("r.safetensors"));
  const std::vector<float> b = r.get_f32("b").to_vector(), h = r.get_f32("h").to_vector();
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(b[i], round_bf16(x.f32()[i]));
    EXPECT_EQ(h[i], f16_to_f32(f32_to_f16(x.f32()[i])));
  }
}

TEST_F(SafeTensorsTest, UnalignedDataIsCopied) {
  // A 9-byte header puts the data at file offset 17: not aligned for f32.
  const float values[] = {1.0f, -2.0f};
  std::string header = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  while (header.size() % 8 != 1) header += ' ';
  ASSERT_EQ(header.size() % 8, 1u);
  const SafeTensors st = SafeTensors::open(
      write_raw("u.safetensors", header, std::string(reinterpret_cast<const char*>(values), 8)));
  const Tensor view = st.get("w");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(view.raw()) % 4, 0u);
  EXPECT_EQ(view.to_vector(), (std::vector<float>{1.0f, -2.0f}));
  EXPECT_EQ(st.get_f32("w", {2}).to_vector(), (std::vector<float>{1.0f, -2.0f}));
}

TEST_F(SafeTensorsTest, GetErrors) {
  const std::string path = file("model.safetensors");
  save_safetensors(path, {{"w", make({2, 3}, DType::f32)}, {"ids", make({3}, DType::i64)}});
  const SafeTensors st = SafeTensors::open(path);
  EXPECT_EQ(st.find("nope"), nullptr);
  EXPECT_FALSE(st.contains("nope"));
  expect_error([&] { st.get("nope"); }, ErrorCode::not_found, {path, "missing tensor 'nope'"});
  expect_error([&] { st.get_f32("nope", {1}); }, ErrorCode::not_found, {path, "missing tensor 'nope'"});
  expect_error(
      [&] {
        st.get_f32("w", {3, 2});
      },
      ErrorCode::shape, {path + ": tensor 'w' has shape [2, 3], expected [3, 2]"});
  expect_error([&] { st.get_f32("ids"); }, ErrorCode::dtype,
               {path, "'ids'", "I64", "expected F32, BF16 or F16"});
}

TEST_F(SafeTensorsTest, UnsupportedDtypeThrowsOnlyWhenRequested) {
  const std::string path = write_raw(
      "f64.safetensors",
      R"({"d":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"f":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
      std::string(12, '\0'));
  const SafeTensors st = SafeTensors::open(path);
  ASSERT_NE(st.find("d"), nullptr);
  EXPECT_FALSE(st.find("d")->dtype.has_value());
  EXPECT_EQ(st.find("d")->stored_dtype, "F64");
  EXPECT_EQ(st.get_f32("f").to_vector(), std::vector<float>{0.0f});
  expect_error([&] { st.get("d"); }, ErrorCode::unsupported, {path, "'d'", "F64", "not supported"});
  expect_error([&] { st.get_f32("d"); }, ErrorCode::dtype, {path, "'d'", "F64"});
}

TEST_F(SafeTensorsTest, MalformedFiles) {
  struct Case {
    std::string name, header, data;
    ErrorCode code;
    std::vector<std::string> fragments;
  };
  const std::string ok_entry = R"("dtype":"F32","shape":[2],"data_offsets":[0,8])";
  const std::vector<Case> cases = {
      {"not_json", "{\"a\": ", "", ErrorCode::parse, {"not valid JSON"}},
      {"not_object", "[1, 2]", "", ErrorCode::parse, {"header is a JSON array, expected an object"}},
      {"entry_not_object", R"({"a": 3})", "", ErrorCode::parse, {"'a'", "expected an object"}},
      {"no_dtype",
       R"({"a":{"shape":[2],"data_offsets":[0,8]}})",
       std::string(8, '\0'),
       ErrorCode::parse,
       {"tensor 'a' has no 'dtype'"}},
      {"no_shape",
       R"({"a":{"dtype":"F32","data_offsets":[0,8]}})",
       std::string(8, '\0'),
       ErrorCode::parse,
       {"tensor 'a' has no 'shape'"}},
      {"no_offsets",
       R"({"a":{"dtype":"F32","shape":[2]}})",
       std::string(8, '\0'),
       ErrorCode::parse,
       {"tensor 'a' has no 'data_offsets'"}},
      {"unknown_dtype",
       R"({"a":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}})",
       std::string(8, '\0'),
       ErrorCode::dtype,
       {"tensor 'a' has unknown dtype 'Q7'"}},
      {"dtype_not_string",
       R"({"a":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})",
       std::string(8, '\0'),
       ErrorCode::parse,
       {"'a'", "dtype", "expected a string"}},
      {"shape_negative",
       R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})",
       std::string(8, '\0'),
       ErrorCode::parse,
       {"'a'", "shape [-2]", "non-negative"}},
      {"shape_not_array",
       R"({"a":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})",
       std::string(8, '\0'),
       ErrorCode::parse,
       {"'a'", "shape", "expected an array"}},
      {"offsets_reversed",
       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})",
       std::string(8, '\0'),
       ErrorCode::parse,
       {"'a'", "data_offsets [8,0]", "begin <= end"}},
      {"offsets_one",
       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8]}})",
       std::string(8, '\0'),
       ErrorCode::parse,
       {"'a'", "data_offsets [8]"}},
      {"offsets_float",
       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8.0]}})",
       std::string(8, '\0'),
       ErrorCode::parse,
       {"'a'", "data_offsets"}},
      {"past_end",
       "{\"x\":{" + ok_entry + "}}",
       std::string(4, '\0'),
       ErrorCode::parse,
       {"tensor 'x' bytes [0, 8) run past the end of the data (4 bytes)"}},
      {"byte_count",
       R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
       std::string(8, '\0'),
       ErrorCode::shape,
       {"tensor 'x' has 8 bytes, expected 12", "[3]", "F32"}},
      {"overlap",
       "{\"x\":{" + ok_entry + R"(},"y":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       std::string(12, '\0'),
       ErrorCode::parse,
       {"'x'", "'y'", "overlap"}},
      {"metadata_not_string",
       R"({"__metadata__":{"format":1}})",
       "",
       ErrorCode::parse,
       {"__metadata__ 'format'", "expected a string"}},
      {"metadata_not_object", R"({"__metadata__":[]})", "", ErrorCode::parse, {"__metadata__", "string map"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = write_raw(c.name + ".safetensors", c.header, c.data);
    expect_error([&] { SafeTensors::open(path); }, c.code,
                 [&] {
                   std::vector<std::string> f = c.fragments;
                   f.push_back(path + ": ");
                   return f;
                 }());
  }
}

TEST_F(SafeTensorsTest, MalformedLengths) {
  write_file_atomic(file("short.safetensors"), std::string("\x05\0\0\0\0", 5));
  expect_error([&] { SafeTensors::open(file("short.safetensors")); }, ErrorCode::parse,
               {file("short.safetensors"), "file is 5 bytes", "shorter than the 8-byte header length"});

  const std::string past = write_raw("past.safetensors", "{}");
  std::string bytes = read_file(past);
  bytes[0] = 100;  // header length 100, file is 10 bytes
  write_file_atomic(past, bytes);
  expect_error([&] { SafeTensors::open(past); }, ErrorCode::parse,
               {past, "header length 100 runs past the end of the file (10 bytes)"});

  bytes[5] = 1;  // header length 2^40 + 100
  write_file_atomic(past, bytes);
  expect_error([&] { SafeTensors::open(past); }, ErrorCode::parse,
               {past, "header length", "100000000-byte limit"});

  expect_error([&] { SafeTensors::open(file("absent.safetensors")); }, ErrorCode::io,
               {file("absent.safetensors"), "cannot open"});
  expect_error([&] { SafeTensors::open(dir_); }, ErrorCode::not_found,
               {dir_, "model.safetensors", "model.safetensors.index.json"});
}

TEST_F(SafeTensorsTest, DirectoryWithSingleFile) {
  save_safetensors(file("model.safetensors"), {{"w", make({2}, DType::f32)}});
  const SafeTensors st = SafeTensors::open(dir_);
  EXPECT_EQ(st.names(), std::vector<std::string>{"w"});
  EXPECT_EQ(st.find("w")->file, file("model.safetensors"));
}

TEST_F(SafeTensorsTest, ShardedIndex) {
  const std::string shard1 = "model-00001-of-00002.safetensors", shard2 = "model-00002-of-00002.safetensors";
  const Tensor a = make({2, 3}, DType::f32), b = make({4}, DType::bf16), c = make({3}, DType::f32, -1.0f);
  save_safetensors(file(shard1), {{"a", a}, {"b", b}}, {{"format", "pt"}});
  save_safetensors(file(shard2), {{"c", c}});
  nlohmann::json index = {{"metadata", {{"total_size", 40}}},
                          {"weight_map", {{"a", shard1}, {"b", shard1}, {"c", shard2}}}};
  write_file_atomic(file("model.safetensors.index.json"), index.dump(2));

  for (const std::string& path : {dir_, file("model.safetensors.index.json")}) {
    SCOPED_TRACE(path);
    const SafeTensors st = SafeTensors::open(path);
    EXPECT_EQ(st.names(), (std::vector<std::string>{"a", "b", "c"}));
    EXPECT_EQ(st.find("a")->file, file(shard1));
    EXPECT_EQ(st.find("c")->file, file(shard2));
    EXPECT_TRUE(same_bytes(st.get("a"), a));
    EXPECT_TRUE(same_bytes(st.get("b"), b));
    EXPECT_EQ(st.get_f32("c", {3}).to_vector(), c.to_vector());
    EXPECT_EQ(st.metadata().at("format"), "pt");
    expect_error([&] { st.get("d"); }, ErrorCode::not_found, {path, "missing tensor 'd'"});
  }

  // The index names a shard that does not hold the tensor, a missing shard, no weight_map.
  const std::string index_path = file("model.safetensors.index.json");
  index["weight_map"]["c"] = shard1;
  write_file_atomic(index_path, index.dump());
  expect_error([&] { SafeTensors::open(dir_); }, ErrorCode::parse,
               {index_path, "weight_map puts tensor 'c' in", shard1, "does not hold it"});
  index["weight_map"]["c"] = "model-00003-of-00002.safetensors";
  write_file_atomic(index_path, index.dump());
  expect_error([&] { SafeTensors::open(dir_); }, ErrorCode::io,
               {"model-00003-of-00002.safetensors", "cannot open"});
  write_file_atomic(index_path, std::string(R"({"metadata": {}})"));
  expect_error([&] { SafeTensors::open(dir_); }, ErrorCode::parse, {index_path, "weight_map"});
  write_file_atomic(index_path, std::string("{"));
  expect_error([&] { SafeTensors::open(dir_); }, ErrorCode::parse, {index_path, "not valid JSON"});
}

TEST_F(SafeTensorsTest, ShardsMayNotRepeatATensor) {
  save_safetensors(file("s1.safetensors"), {{"a", make({2}, DType::f32)}});
  save_safetensors(file("s2.safetensors"), {{"a", make({2}, DType::f32)}, {"b", make({2}, DType::f32)}});
  const nlohmann::json index = {{"weight_map", {{"a", "s1.safetensors"}, {"b", "s2.safetensors"}}}};
  write_file_atomic(file("model.safetensors.index.json"), index.dump());
  expect_error([&] { SafeTensors::open(dir_); }, ErrorCode::parse, {"tensor 'a' is stored in both"});
}

TEST_F(SafeTensorsTest, ViewsOutliveTheReader) {
  save_safetensors(file("model.safetensors"), {{"w", make({3}, DType::f32)}});
  Tensor w;
  {
    const SafeTensors st = SafeTensors::open(file("model.safetensors"));
    w = st.get("w");
  }
  EXPECT_EQ(w.to_vector(), make({3}, DType::f32).to_vector());
}

TEST(SafeTensorsFixtures, Bf16Checkpoint) {
  MAMBA_REQUIRE_FIXTURES(dir);
  const std::string path = dir + "/ssm-mamba3-siso/model.safetensors";
  const SafeTensors st = SafeTensors::open(path);
  EXPECT_EQ(st.metadata().at("format"), "pt");
  ASSERT_GT(st.size(), 0u);
  for (const std::string& name : st.names()) {
    SCOPED_TRACE(name);
    EXPECT_EQ(st.find(name)->dtype, DType::bf16);
    const Tensor raw = st.get(name);
    const Tensor f32 = st.get_f32(name, raw.shape());
    EXPECT_EQ(f32.to_vector(), raw.to_vector());
    for (float v : f32.to_vector()) ASSERT_TRUE(std::isfinite(v));
  }
  EXPECT_EQ(st.find("backbone.embedding.weight")->shape, (Shape{304, 64}));
}

TEST(SafeTensorsFixtures, EveryFixtureFileOpensAndResaves) {
  MAMBA_REQUIRE_FIXTURES(dir);
  int n_files = 0;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.path().extension() != ".safetensors") continue;
    SCOPED_TRACE(entry.path().string());
    ++n_files;
    const SafeTensors st = SafeTensors::open(entry.path().string());
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const std::string& name : st.names()) tensors.emplace_back(name, st.get(name));
    const std::string copy =
        (fs::temp_directory_path() / ("mambacpp_io_resave_" + std::to_string(::getpid()) + ".safetensors"))
            .string();
    save_safetensors(copy, tensors, st.metadata());
    const SafeTensors again = SafeTensors::open(copy);
    EXPECT_EQ(again.names(), st.names());
    for (const auto& [name, tensor] : tensors) EXPECT_TRUE(same_bytes(again.get(name), tensor)) << name;
    fs::remove(copy);
  }
  EXPECT_GE(n_files, 2);
}

}  // namespace
}  // namespace mamba::io
