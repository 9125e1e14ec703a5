// Tensor::copy_from over strided layouts: the row-by-row path (same dtype, rows contiguous on
// both sides: column slices, either side strided) and the element-by-element one (a transpose,
// a dtype change, rows of one element) against the values read by index.
#include <gtest/gtest.h>

#include "core/tensor.h"

namespace mamba {
namespace {

// a[i][j][k] of a [2, 5, 7] tensor filled 0, 1, 2, ...
float at(int64_t i, int64_t j, int64_t k) {
  return static_cast<float>((i * 5 + j) * 7 + k);
}

Tensor iota() {
  std::vector<float> v(70);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i);
  return Tensor::from_vector(v, {2, 5, 7});
}

TEST(TensorCopy, ColumnSliceMadeContiguous) {
  const Tensor s = iota().slice(2, 2, 6);  // strides [35, 7, 1]: rows of 4 contiguous
  const Tensor c = s.contiguous();
  ASSERT_TRUE(c.is_contiguous());
  const std::vector<float> v = c.to_vector();
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 5; ++j)
      for (int64_t k = 0; k < 4; ++k) EXPECT_EQ(v[(i * 5 + j) * 4 + k], at(i, j, k + 2)) << i << j << k;
}

TEST(TensorCopy, IntoAColumnSlice) {
  Tensor big = Tensor::zeros({2, 5, 7});
  std::vector<float> src(2 * 5 * 3);
  for (size_t i = 0; i < src.size(); ++i) src[i] = 100.0f + static_cast<float>(i);
  big.slice(2, 3, 6).copy_from(Tensor::from_vector(src, {2, 5, 3}));
  const std::vector<float> v = big.to_vector();
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 5; ++j)
      for (int64_t k = 0; k < 7; ++k) {
        const float want = k >= 3 && k < 6 ? src[(i * 5 + j) * 3 + (k - 3)] : 0.0f;
        EXPECT_EQ(v[(i * 5 + j) * 7 + k], want) << i << j << k;
      }
}

TEST(TensorCopy, TransposeDtypeChangeAndSingleColumns) {
  const Tensor t = iota().transpose(1, 2).contiguous();  // [2, 7, 5]: the last stride was 7
  const std::vector<float> vt = t.to_vector();
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t k = 0; k < 7; ++k)
      for (int64_t j = 0; j < 5; ++j) EXPECT_EQ(vt[(i * 7 + k) * 5 + j], at(i, j, k));
  Tensor b = Tensor::empty({2, 5, 4}, DType::bf16);
  b.copy_from(iota().slice(2, 1, 5));  // f32 -> bf16 (exact: small integers)
  const std::vector<float> vb = b.to_vector();
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 5; ++j)
      for (int64_t k = 0; k < 4; ++k) EXPECT_EQ(vb[(i * 5 + j) * 4 + k], at(i, j, k + 1));
  const std::vector<float> v1 = iota().slice(2, 6, 7).contiguous().to_vector();  // rows of one
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 5; ++j) EXPECT_EQ(v1[i * 5 + j], at(i, j, 6));
}

}  // namespace
}  // namespace mamba
