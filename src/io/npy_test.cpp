// .npy tests: round trips, hand-written files of every accepted descr and version, one case
// per rejected input (each error one line naming the file), and the fixtures' arrays.
#include "io/npy.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>

#include "core/error.h"
#include "core/file_util.h"
#include "testing.h"

namespace mamba::io {
namespace {

namespace fs = std::filesystem;

class NpyTest : public ::testing::Test {
protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = (fs::temp_directory_path() /
            ("mambacpp_io_npy_" + std::string(info->name()) + "_" + std::to_string(::getpid())))
               .string();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string file(const std::string& name) const { return path_join(dir_, name); }

  // A .npy file of the given version from a raw header dict and data (as NumPy lays it out).
  std::string write_raw(const std::string& name, const std::string& dict, const std::string& data,
                        int major = 1) {
    const size_t len_bytes = major == 1 ? 2 : 4;
    std::string header = dict;
    while ((8 + len_bytes + header.size() + 1) % 64 != 0) header += ' ';
    header += '\n';
    std::string bytes = "\x93NUMPY";
    bytes += static_cast<char>(major);
    bytes += '\0';
    const uint32_t len = static_cast<uint32_t>(header.size());
    bytes.append(reinterpret_cast<const char*>(&len), len_bytes);
    bytes += header + data;
    write_file_atomic(file(name), bytes);
    return file(name);
  }

  std::string dir_;
};

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

template <typename T>
std::string as_bytes(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

TEST_F(NpyTest, RoundTrip) {
  std::mt19937 rng(1);
  const Tensor f = testing::random_tensor({2, 3, 4}, rng);
  Tensor ids = Tensor::empty({2, 5}, DType::i64);
  for (int64_t i = 0; i < 10; ++i) ids.data<int64_t>()[i] = (i * 7919) - 20000000000LL;
  const std::vector<std::pair<std::string, Tensor>> cases = {
      {"f32", f},
      {"i64", ids},
      {"scalar", Tensor::full({}, 2.5f)},
      {"vector", Tensor::from_vector({1, 2, 3, 4, 5}, {5})},
      {"empty", Tensor::zeros({0, 3})},
      {"transposed", f.transpose(0, 2)},
      {"i32", ids.to(DType::i32)},
      {"f16", f.to(DType::f16)},
  };
  for (const auto& [name, tensor] : cases) {
    SCOPED_TRACE(name);
    const std::string path = file(name + ".npy");
    write_npy(path, tensor);
    const std::string bytes = read_file(path);
    EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
    const size_t header_end =
        10 + static_cast<unsigned char>(bytes[8]) + 256 * static_cast<unsigned char>(bytes[9]);
    EXPECT_EQ(header_end % 64, 0u);
    EXPECT_EQ(bytes[header_end - 1], '\n');
    const Tensor back = read_npy(path);
    EXPECT_EQ(back.dtype(), tensor.dtype());
    EXPECT_EQ(back.shape(), tensor.shape());
    EXPECT_EQ(back.to_vector(), tensor.to_vector());
  }
  EXPECT_NE(read_file(file("vector.npy")).find("'shape': (5,), }"), std::string::npos);
  EXPECT_NE(read_file(file("scalar.npy")).find("'shape': (), }"), std::string::npos);
  EXPECT_EQ(read_npy(file("i64.npy")).data<int64_t>()[9], 9 * 7919 - 20000000000LL);
  expect_error([&] { write_npy(file("b.npy"), f.to(DType::bf16)); }, ErrorCode::unsupported,
               {"b.npy", "bf16"});
}

TEST_F(NpyTest, EveryDescrAndVersion) {
  const std::vector<double> f8 = {0.5, -1e10, 3.141592653589793};
  Tensor t = read_npy(
      write_raw("f8.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", as_bytes(f8)));
  EXPECT_EQ(t.dtype(), DType::f32);
  EXPECT_EQ(t.to_vector(), (std::vector<float>{0.5f, -1e10f, 3.14159265f}));

  t = read_npy(write_raw("i4.npy", "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 1), }",
                         as_bytes(std::vector<int32_t>{-7, 1 << 30})));
  EXPECT_EQ(t.dtype(), DType::i32);
  EXPECT_EQ(t.shape(), (Shape{2, 1}));
  EXPECT_EQ(t.data<int32_t>()[1], 1 << 30);

  t = read_npy(write_raw("f2.npy", "{'descr': '<f2', 'fortran_order': False, 'shape': (2,), }",
                         as_bytes(std::vector<uint16_t>{0x3E00, 0xC080})));
  EXPECT_EQ(t.dtype(), DType::f16);
  EXPECT_EQ(t.to_vector(), (std::vector<float>{1.5f, -2.25f}));

  t = read_npy(
      write_raw("u1.npy", "{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }", "\x01\x02\xff"));
  EXPECT_EQ(t.dtype(), DType::u8);
  EXPECT_EQ(t.to_vector(), (std::vector<float>{1, 2, 255}));

  // Versions 2.0 and 3.0 (4-byte header length), keys in any order, double quotes, Python 2 longs.
  for (int major : {2, 3}) {
    std::string name = "v";  // built in steps: GCC 12 reports a false -Wrestrict on "v" + to_string(...)
    name += std::to_string(major);
    name += ".npy";
    t = read_npy(write_raw(name, "{\"shape\": (2L, 2L), \"fortran_order\": False, \"descr\": \"<i8\"}",
                           as_bytes(std::vector<int64_t>{1, -2, 3, -4}), major));
    EXPECT_EQ(t.dtype(), DType::i64);
    EXPECT_EQ(t.shape(), (Shape{2, 2}));
    EXPECT_EQ(t.to_vector(), (std::vector<float>{1, -2, 3, -4}));
  }

  // Extra bytes after the data are ignored, as NumPy does.
  t = read_npy(write_raw("extra.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (), }",
                         as_bytes(std::vector<float>{4.0f, 9.0f})));
  EXPECT_EQ(t.shape(), Shape{});
  EXPECT_EQ(t.to_vector(), std::vector<float>{4.0f});
}

TEST_F(NpyTest, RejectsBadInput) {
  const std::string f4 = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  const std::string data(24, '\0');
  auto check = [&](const std::string& path, ErrorCode code, std::vector<std::string> fragments) {
    fragments.push_back(path + ": ");
    expect_error([&] { read_npy(path); }, code, fragments);
  };

  write_file_atomic(file("magic.npy"), std::string("PK\x03\x04 not numpy at all"));
  check(file("magic.npy"), ErrorCode::parse, {"bad magic"});
  write_file_atomic(file("tiny.npy"), std::string("\x93NU"));
  check(file("tiny.npy"), ErrorCode::parse, {"bad magic"});

  std::string bytes = read_file(write_raw("trunc.npy", f4, data));
  write_file_atomic(file("trunc.npy"), bytes.substr(0, 40));
  check(file("trunc.npy"), ErrorCode::parse, {"truncated header", "header length 118", "(40 bytes)"});
  write_file_atomic(file("trunc.npy"), bytes.substr(0, 9));
  check(file("trunc.npy"), ErrorCode::parse, {"truncated header", "9 bytes"});

  bytes[6] = 4;
  write_file_atomic(file("v4.npy"), bytes);
  check(file("v4.npy"), ErrorCode::unsupported, {"version 4.0"});

  check(write_raw("dict1.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3}", data),
        ErrorCode::parse, {"cannot parse the header dict", "'shape': (2, 3}"});
  check(write_raw("dict2.npy", "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,)}", data),
        ErrorCode::parse, {"cannot parse the header dict", "True or False"});
  check(write_raw("dict3.npy", "['descr', '<f4']", data), ErrorCode::parse, {"cannot parse the header dict"});
  check(write_raw("dict4.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}", data),
        ErrorCode::parse, {"cannot parse the header dict", "non-negative integer"});
  check(write_raw("nokey.npy", "{'descr': '<f4', 'fortran_order': False}", data), ErrorCode::parse,
        {"header dict has no 'shape'"});
  check(write_raw("fortran.npy", "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", data),
        ErrorCode::unsupported, {"fortran_order"});
  check(write_raw("big.npy", "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", data),
        ErrorCode::unsupported, {"big-endian descr '>f4'"});
  check(write_raw("c8.npy", "{'descr': '<c8', 'fortran_order': False, 'shape': (2, 3), }", data),
        ErrorCode::unsupported, {"descr '<c8' is not supported"});
  check(write_raw("short.npy", f4, std::string(20, '\0')), ErrorCode::parse,
        {"data is 20 bytes, expected 24", "[2, 3]", "'<f4'"});
  check(file("absent.npy"), ErrorCode::io, {"cannot open"});
}

TEST(NpyFixtures, InputIdsAndLogits) {
  MAMBA_REQUIRE_FIXTURES(dir);
  int n_models = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string model = entry.path().string();
    if (!file_exists(model + "/input_ids.npy")) continue;
    SCOPED_TRACE(model);
    ++n_models;
    const Tensor ids = read_npy(model + "/input_ids.npy");
    const Tensor logits = read_npy(model + "/logits.npy");
    ASSERT_EQ(ids.dtype(), DType::i64);
    ASSERT_EQ(ids.dim(), 2);  // [batch, seq_len]
    ASSERT_EQ(logits.dtype(), DType::f32);
    ASSERT_EQ(logits.dim(), 3);  // [batch, seq_len, vocab]
    EXPECT_EQ(logits.size(0), ids.size(0));
    EXPECT_EQ(logits.size(1), ids.size(1));
    for (int64_t i = 0; i < ids.numel(); ++i) {
      ASSERT_GE(ids.data<int64_t>()[i], 0);
      ASSERT_LT(ids.data<int64_t>()[i], logits.size(2));
    }
    for (float v : logits.to_vector()) ASSERT_TRUE(std::isfinite(v));
  }
  EXPECT_GE(n_models, 1);

  const Tensor ids = read_npy(dir + "/hf-mamba1/input_ids.npy");
  EXPECT_EQ(ids.shape(), (Shape{2, 40}));
  EXPECT_EQ(read_npy(dir + "/hf-mamba1/logits.npy").shape(), (Shape{2, 40, 300}));
}

}  // namespace
}  // namespace mamba::io
