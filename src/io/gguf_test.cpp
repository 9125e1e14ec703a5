// GGUF reader and writer: a written file read back (metadata of every type, arrays, a custom
// alignment, tensors of every supported type as zero-copy views), and malformed files refused
// with one-line errors naming the field: every truncation, bad magic / version / type / offset /
// alignment, duplicates, nested arrays, too many dimensions, counts larger than the file.
#include "io/gguf.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <random>

#include "core/error.h"
#include "core/file_util.h"
#include "core/quant_blocks.h"
#include "io/mapped_file.h"
#include "testing.h"

namespace mamba::io {
namespace {

std::string temp_path(const std::string& name) {
  static const std::string dir = testing::fresh_temp_dir("gguf_test");
  return path_join(dir, name);
}

GgufWriter sample_writer(uint64_t alignment) {
  GgufWriter w;
  w.alignment = alignment;
  w.set("general.architecture", GgufValue::of_string("mamba2"));
  if (alignment != 32) w.set("general.alignment", GgufValue::of_u32(static_cast<uint32_t>(alignment)));
  w.set("u32", GgufValue::of_u32(7));
  w.set("i32", GgufValue::of_i32(-3));
  w.set("u64", GgufValue::of_u64(1ull << 40));
  w.set("f32", GgufValue::of_f32(0.5f));
  w.set("flag", GgufValue::of_bool(true));
  GgufValue f64;
  f64.type = GgufType::f64;
  f64.f = 1e-300;
  w.set("f64", f64);
  GgufValue i8;
  i8.type = GgufType::i8;
  i8.i = -100;
  w.set("i8", i8);
  w.set("names",
        GgufValue::of_array(GgufType::string, {GgufValue::of_string("a"), GgufValue::of_string("bc")}));
  w.set("ids", GgufValue::of_array(GgufType::i32, {GgufValue::of_i32(1), GgufValue::of_i32(-2)}));
  std::mt19937 rng(5);
  const Tensor w32 = testing::random_tensor({3, 256}, rng);
  w.add("w.f32", w32);
  w.add("w.bf16", w32.to(DType::bf16));
  w.add("w.f16", w32.to(DType::f16));
  for (DType t : {DType::q8_0, DType::q4_0, DType::q4_k}) {
    Tensor q = Tensor::empty({3, 256}, t);
    for (int r = 0; r < 3; ++r)
      quantize_row(t, w32.f32() + 256 * r, 256, static_cast<uint8_t*>(q.raw()) + r * dtype_bytes(t, 256));
    w.add(std::string("w.") + dtype_name(t), q);
  }
  w.add("scalar", Tensor::full({}, 2.0f));
  return w;
}

TEST(Gguf, RoundTripsMetadataAndTensors) {
  for (uint64_t alignment : {32, 64}) {
    const std::string path = temp_path("sample" + std::to_string(alignment) + ".gguf");
    sample_writer(alignment).write(path);
    const GgufFile g = GgufFile::open(path);
    EXPECT_EQ(g.version(), 3u);
    EXPECT_EQ(g.alignment(), alignment);
    EXPECT_EQ(g.data_offset() % alignment, 0u);
    EXPECT_EQ(g.get_string("general.architecture"), "mamba2");
    EXPECT_EQ(g.get_int("u32"), 7);
    EXPECT_EQ(g.get_int("i32"), -3);
    EXPECT_EQ(g.get_int("u64"), int64_t{1} << 40);
    EXPECT_EQ(g.get_int("i8"), -100);
    EXPECT_EQ(g.get_float("f32"), 0.5);
    EXPECT_EQ(g.get_float("f64"), 1e-300);
    EXPECT_TRUE(g.get_bool("flag", false));
    EXPECT_EQ(g.get_int("missing", 9), 9);
    EXPECT_EQ(g.get_array("names", GgufType::string).array[1].s, "bc");
    EXPECT_EQ(g.get_array("ids", GgufType::i32).array[1].i, -2);
    const Tensor ref = g.get_f32("w.f32", {3, 256});
    for (const char* name : {"w.f32", "w.bf16", "w.f16", "w.q8_0", "w.q4_0", "w.q4_k"}) {
      const GgufTensorInfo* t = g.find(name);
      ASSERT_NE(t, nullptr) << name;
      EXPECT_EQ(t->shape, (Shape{3, 256})) << name;
      EXPECT_EQ(t->offset % alignment, 0u) << name;
      EXPECT_EQ(g.get(name).dtype(), t->dtype) << name;
      EXPECT_LT(testing::max_abs_diff(g.get_f32(name, {3, 256}), ref), t->dtype == DType::f32 ? 1e-30f : 0.2f)
          << name;
    }
    EXPECT_EQ(g.get_f32("scalar", {}).f32()[0], 2.0f);
    EXPECT_EQ(g.get_f32("w.f32", {768}, /*reshape=*/true).numel(), 768);
    try {
      g.get_f32("w.f32", {256, 3});
      FAIL() << "shape mismatch accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::shape);
      EXPECT_NE(std::string(e.what()).find("'w.f32' has shape [3, 256], expected [256, 3]"),
                std::string::npos)
          << e.what();
    }
  }
}

// Throws Error with `needle` in its one-line message (and never anything else).
void expect_refused(const std::string& bytes, const std::string& needle) {
  const std::string path = temp_path("bad.gguf");
  write_file_atomic(path, bytes);
  try {
    GgufFile::open(path);
    FAIL() << "accepted; expected an error containing: " << needle;
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(needle), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    EXPECT_EQ(what.rfind(path, 0), 0u) << what;  // names the file first
  }
}

template <typename T>
void poke(std::string& s, size_t at, T v) {
  std::memcpy(s.data() + at, &v, sizeof(T));
}

std::string header(uint64_t n_tensors, uint64_t n_kv) {
  std::string s = "GGUF";
  s.append("\3\0\0\0", 4);
  s.append(reinterpret_cast<const char*>(&n_tensors), 8);
  s.append(reinterpret_cast<const char*>(&n_kv), 8);
  return s;
}
template <typename T>
void put(std::string& s, T v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof(T));
}
void put_str(std::string& s, const std::string& v) {
  put<uint64_t>(s, v.size());
  s += v;
}

TEST(Gguf, EveryTruncationIsRefusedCleanly) {
  const std::string path = temp_path("whole.gguf");
  sample_writer(32).write(path);
  const std::string whole = read_file(path);
  // Every prefix up to the data, then a few inside it.
  for (size_t n = 0; n < whole.size(); n += (n < 700 ? 1 : 97)) {
    write_file_atomic(temp_path("cut.gguf"), whole.substr(0, n));
    try {
      GgufFile::open(temp_path("cut.gguf"));
      ADD_FAILURE() << "a file cut at " << n << " of " << whole.size() << " bytes was accepted";
    } catch (const Error&) {
    }
  }
}

TEST(Gguf, MalformedHeadersNameTheField) {
  std::string s = header(0, 0);
  std::string bad = s;
  bad[0] = 'X';
  expect_refused(bad, "magic is not \"GGUF\"");
  bad = s;
  poke<uint32_t>(bad, 4, 4);
  expect_refused(bad, "version is 4, expected 2 or 3");
  expect_refused(header(0, uint64_t{1} << 60), "metadata (1152921504606846976 pairs)");
  expect_refused(header(1000, 0), "tensor infos (1000)");

  s = header(0, 2);
  put_str(s, "k");
  put<uint32_t>(s, 4);
  put<uint32_t>(s, 1);
  put_str(s, "k");
  put<uint32_t>(s, 4);
  put<uint32_t>(s, 2);
  expect_refused(s, "metadata key 'k' appears twice");

  s = header(0, 1);
  put_str(s, "a");
  put<uint32_t>(s, 9);
  put<uint32_t>(s, 9);
  put<uint64_t>(s, 0);
  expect_refused(s, "nested arrays");

  s = header(0, 1);
  put_str(s, "a");
  put<uint32_t>(s, 9);
  put<uint32_t>(s, 8);
  put<uint64_t>(s, uint64_t{1} << 40);
  expect_refused(s, "metadata 'a' (1099511627776 elements)");

  s = header(0, 1);
  put_str(s, "a");
  put<uint32_t>(s, 13);
  put<uint32_t>(s, 0);
  expect_refused(s, "metadata 'a' has type 13, expected 0..12");

  s = header(0, 1);
  put_str(s, "general.alignment");
  put<uint32_t>(s, 4);
  put<uint32_t>(s, 48);
  expect_refused(s, "general.alignment is u32 48, expected a u32 power of two");
}

std::string one_tensor(uint32_t n_dims, uint64_t ne0, uint32_t type, uint64_t offset, size_t data_bytes) {
  std::string s = header(1, 0);
  put_str(s, "t");
  put<uint32_t>(s, n_dims);
  for (uint32_t d = 0; d < n_dims; ++d) put<uint64_t>(s, d == 0 ? ne0 : 1);
  put<uint32_t>(s, type);
  put<uint64_t>(s, offset);
  s.append((32 - s.size() % 32) % 32, '\0');
  s.append(data_bytes, '\0');
  return s;
}

TEST(Gguf, MalformedTensorInfosNameTheTensor) {
  EXPECT_NO_THROW({
    write_file_atomic(temp_path("ok.gguf"), one_tensor(1, 32, 8, 0, 34));
    GgufFile::open(temp_path("ok.gguf"));
  });
  expect_refused(one_tensor(5, 32, 0, 0, 128), "tensor 't' has 5 dimensions, expected at most 4");
  expect_refused(one_tensor(1, 32, 13, 0, 128), "tensor 't' has ggml type 13, expected one of");
  expect_refused(one_tensor(1, 33, 8, 0, 128), "rows of 33 values, expected a multiple of 32");
  expect_refused(one_tensor(1, 32, 8, 16, 128), "tensor 't' offset is 16, expected a multiple of 32");
  expect_refused(one_tensor(1, 32, 0, 0, 127), "tensor 't' [32] needs bytes");
  expect_refused(one_tensor(1, 32, 0, 1ull << 62, 128), "needs bytes");
  expect_refused(one_tensor(2, uint64_t{1} << 62, 0, 0, 128),
                 "tensor 't' bytes: 4611686018427387904 * 4 overflows");

  std::string dup = header(2, 0);
  for (int k = 0; k < 2; ++k) {
    put_str(dup, "t");
    put<uint32_t>(dup, 1);
    put<uint64_t>(dup, 8);
    put<uint32_t>(dup, 0);
    put<uint64_t>(dup, 0);
  }
  dup.append(64, '\0');
  expect_refused(dup, "tensor 't' appears twice");
}

TEST(Gguf, MetadataTypeMismatchNamesKeyAndTypes) {
  const std::string path = temp_path("types.gguf");
  sample_writer(32).write(path);
  const GgufFile g = GgufFile::open(path);
  try {
    g.get_int("general.architecture");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("metadata 'general.architecture' is string, expected an integer"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(g.get_string("nope"), Error);
  EXPECT_THROW(g.get_array("ids", GgufType::string), Error);
}

// The GGUF loader's weights: ranges of a file read into one 2 MiB-aligned, zeroed buffer; a
// range past the end of the file is an Error(io) naming the path.
TEST(Gguf, HugePageBufferTakesFileRanges) {
  const std::string path = temp_path("ranges.bin");
  std::string bytes(100000, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>((i * 131 + 7) % 251);
  write_file_atomic(path, bytes);
  const size_t n = (size_t{3} << 20) + 5;
  std::shared_ptr<Buffer> buf = huge_page_buffer(n);
  ASSERT_EQ(buf->bytes(), n);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(buf->data()) % (size_t{2} << 20), 0u);
  auto* p = static_cast<char*>(buf->data());
  EXPECT_EQ(p[0], 0);
  EXPECT_EQ(p[n - 1], 0);
  read_file_ranges(path, {{10, 5000, p + 64}, {90000, 10000, p + (size_t{2} << 20) + 1}});
  EXPECT_EQ(std::memcmp(p + 64, bytes.data() + 10, 5000), 0);
  EXPECT_EQ(std::memcmp(p + (size_t{2} << 20) + 1, bytes.data() + 90000, 10000), 0);
  EXPECT_EQ(p[63], 0);
  EXPECT_EQ(p[64 + 5000], 0);
  try {
    read_file_ranges(path, {{99990, 11, p}});
    FAIL() << "a range past the end was read";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::io);
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace mamba::io
