// Hostile input classes of issue 16, beside the fuzzers: FIFOs and folders named as input files
// (refused at once, never a hang), the allocation ceiling, checked size arithmetic, the JSON
// nesting limit and short excerpts in error messages.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "core/checked.h"
#include "core/error.h"
#include "core/file_util.h"
#include "core/json_guard.h"
#include "core/tensor.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "models/model.h"
#include "testing.h"
#include "tokenizer/tokenizer.h"

namespace mamba {
namespace {

namespace fs = std::filesystem;

// Expects `fn` to throw Error with `code` and a message containing `part`, within 10 s (a FIFO
// opened for reading would block forever: SIGALRM then kills the test instead of hanging CI).
template <typename F>
void expect_error(F&& fn, ErrorCode code, const std::string& part) {
  ::alarm(10);
  try {
    fn();
    ADD_FAILURE() << "no error (expected '" << part << "')";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
  }
  ::alarm(0);
}

TEST(HostileInput, FifosAndFoldersAreNotReadAsFiles) {
  const std::string dir = testing::fresh_temp_dir("hostile_fifo");
  for (const char* name : {"config.json", "model.safetensors", "tokenizer.json", "a.npy", "s.mstate"})
    ASSERT_EQ(::mkfifo((dir + "/" + name).c_str(), 0600), 0) << name;
  expect_error([&] { models::Model::load(dir); }, ErrorCode::io, "not a regular file");
  expect_error([&] { io::SafeTensors::open(dir + "/model.safetensors"); }, ErrorCode::io,
               "not a regular file");
  expect_error([&] { tok::Tokenizer::from_file(dir + "/tokenizer.json"); }, ErrorCode::io,
               "not a regular file");
  expect_error([&] { io::read_npy(dir + "/a.npy"); }, ErrorCode::io, "not a regular file");
  expect_error([&] { read_file(dir + "/s.mstate"); }, ErrorCode::io, "not a regular file");
  fs::create_directories(dir + "/folder.json");
  expect_error([&] { read_file(dir + "/folder.json"); }, ErrorCode::io, "not a regular file");
  fs::remove_all(dir);
}

TEST(HostileInput, ByteSizesParseOrNameTheVariable) {
  EXPECT_EQ(parse_byte_size("1", "X"), uint64_t{1});
  EXPECT_EQ(parse_byte_size("512M", "X"), uint64_t{512} << 20);
  EXPECT_EQ(parse_byte_size("3g", "X"), uint64_t{3} << 30);
  EXPECT_EQ(parse_byte_size("2T", "X"), uint64_t{2} << 40);
  for (const char* bad : {"", "0", "M", "12Q", "1MB", "-5", " 5", "1.5G"})
    expect_error([&] { parse_byte_size(bad, "MAMBACPP_MAX_ALLOC_BYTES"); }, ErrorCode::parse,
                 "MAMBACPP_MAX_ALLOC_BYTES is \"");
  expect_error([] { parse_byte_size("99999999999999999999", "X"); }, ErrorCode::parse, "too large");
  expect_error([] { parse_byte_size("20000000T", "X"); }, ErrorCode::parse, "too large");
}

TEST(HostileInput, AllocationsAboveTheCeilingAreErrors) {
  set_memory_ceiling(uint64_t{1} << 20);
  expect_error([] { Tensor::empty({1024, 1024}); }, ErrorCode::out_of_range, "memory ceiling of 1048576");
  EXPECT_NO_THROW(Tensor::empty({256, 256}));  // 256 KiB
  set_memory_ceiling(0);                       // back to physical memory
  EXPECT_GT(memory_ceiling(), uint64_t{1} << 20);
  // numel · element size past 2^64 (2^62 f32 elements) and numel past 2^63 never reach the allocator.
  expect_error(
      [] {
        Tensor::empty({int64_t{1} << 31, int64_t{1} << 31});
      },
      ErrorCode::out_of_range, "tensor bytes");
  expect_error([] { Tensor::empty({int64_t{1} << 62, 4}); }, ErrorCode::shape, "too many elements");
}

TEST(HostileInput, CheckedArithmetic) {
  EXPECT_EQ(checked_mul(int64_t{1} << 31, int64_t{1} << 31, "x"), int64_t{1} << 62);
  expect_error([] { checked_mul(int64_t{1} << 32, int64_t{1} << 32, "rows * cols"); },
               ErrorCode::out_of_range, "rows * cols");
  expect_error([] { checked_mul(int64_t{-1}, int64_t{2}, "n"); }, ErrorCode::out_of_range, "negative");
  expect_error([] { checked_add(INT64_MAX, int64_t{1}, "end"); }, ErrorCode::out_of_range, "end");
  EXPECT_EQ(checked_add(uint64_t{1}, uint64_t{2}, "x"), 3u);
  expect_error([] { checked_mul(UINT64_MAX, uint64_t{2}, "bytes"); }, ErrorCode::out_of_range, "bytes");
  EXPECT_EQ(checked_to_int64(1536.0, 0, 1 << 20, "w"), 1536);
  for (double bad : {1e308, -1e308, double(NAN), double(INFINITY), 2e6})
    expect_error([&] { checked_to_int64(bad, 0, 1 << 20, "expand * d_model"); }, ErrorCode::parse,
                 "expand * d_model");
}

TEST(HostileInput, JsonDepthAndExcerpts) {
  EXPECT_EQ(json_nesting_depth("{\"a\": [1, {\"b\": []}]}"), 4);
  EXPECT_EQ(json_nesting_depth("\"[[[[\\\"[[\" [1]"), 1);  // brackets inside strings do not count
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_EQ(json_nesting_depth(deep), kMaxJsonDepth + 1);  // the scan stops past the limit
  expect_error([&] { check_json_depth(deep, "x.json"); }, ErrorCode::parse,
               "x.json: JSON nested deeper than 128");
  EXPECT_NO_THROW(check_json_depth(std::string(128, '[') + std::string(128, ']'), "ok.json"));

  EXPECT_EQ(json_excerpt(nlohmann::json::array({8, 0})), "[8,0]");
  EXPECT_EQ(json_excerpt(nlohmann::json::array({1, 2, 3, 4, 5, 6, 7, 8, 9})), "an array of 9 elements");
  EXPECT_EQ(json_excerpt(nlohmann::json::array({std::string(100, 'y')})), "an array of 1 elements");
  EXPECT_EQ(json_excerpt(nlohmann::json::object()), "{}");
  EXPECT_EQ(json_excerpt(nlohmann::json(std::string(500, 'x'))), "\"" + std::string(40, 'x') + "...\"");
  EXPECT_EQ(json_excerpt(nlohmann::json(12)), "12");
}

TEST(HostileInput, ConfigDimensionsAreBoundedByField) {
  const std::string dir = testing::fresh_temp_dir("hostile_config");
  auto load = [&](const std::string& text) {
    write_file_atomic(dir + "/config.json", text);
    models::Model::load(dir);
  };
  expect_error([&] { load(R"({"d_model": 64, "n_layer": 2147483648, "vocab_size": 100})"); },
               ErrorCode::parse, "n_layer is 2147483648, above the limit of 65536");
  expect_error([&] { load(R"({"d_model": 64, "n_layer": 1, "vocab_size": 72057594037927936})"); },
               ErrorCode::parse, "vocab_size");
  expect_error(
      [&] { load(R"({"d_model": 64, "n_layer": 1, "vocab_size": 9, "ssm_cfg": {"expand": 1e308}})"); },
      ErrorCode::parse, "expand * d_model");
  expect_error(
      [&] {
        load(R"({"model_type": "mamba2", "hidden_size": 64, "num_hidden_layers": 1, "vocab_size": 9,
                 "num_heads": 4611686018427387904, "head_dim": 4})");
      },
      ErrorCode::parse, "num_heads");
  expect_error(
      [&] { load(R"({"d_model": 64, "n_layer": 1, "vocab_size": 9, "ssm_cfg": {"d_state": 1e12}})"); },
      ErrorCode::parse, "ssm_cfg.d_state");
  // A wrong type quotes a short excerpt, never the whole value.
  try {
    load("{\"d_model\": \"" + std::string(10000, 'x') + "\"}");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_LT(std::string(e.what()).size(), 300u) << e.what();
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace mamba
