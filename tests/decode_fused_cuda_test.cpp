// Decode's GEMV fusions at the model level: `mambacpp logits --device cuda --dtype bf16 --prefill K`
// (a prefill, then one-token Model::step calls) writes the same bits with the fused decode path
// (RMSNorm in the in_proj / head GEMV's prologue, residual add in the out_proj GEMV's epilogue)
// as with --kernel fuse_decode=off (add + norm kernel, then the plain GEMV), on fixtures and on a
// random Mamba-3 model with MLPs.
// Label `cuda` (skipped without a device).
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <string>

#include "core/file_util.h"
#include "cuda_testing.h"
#include "exec_testing.h"
#include "io/npy.h"
#include "models/mamba3.h"
#include "models/model.h"
#include "ops/linear/linear.h"
#include "testing.h"

namespace mamba {
namespace {

// The fixtures where decode differs between the paths: Mamba-3 SISO and MIMO (fused layers and
// head), Mamba-1 (the head's fused norm), the hybrid (MLPs and attention: unfused, add + norm).
const char* const kFixtures[] = {"ssm-mamba3-siso", "ssm-mamba3-mimo", "ssm-mamba1", "ssm-hybrid"};

// Runs the command on `dir` (config.json, model.safetensors, input_ids.npy) with and without
// --kernel fuse_decode=off and returns the fused logits after checking the two are the same bits.
Tensor expect_fused_equals_unfused(const std::string& dir, const std::string& name) {
  const Tensor ids = io::read_npy(path_join(dir, "input_ids.npy"));
  const int64_t batch = ids.size(0), seq_len = ids.size(1);
  EXPECT_LE(batch, 4) << "the fused GEMV takes 1-4 rows";
  const std::string cmd = std::string(MAMBACPP_CLI) + " logits --device cuda --dtype bf16 --model " + dir +
                          " --input " + dir + "/input_ids.npy --threads 2 --prefill " +
                          std::to_string(seq_len / 2);
  const std::string fused = ::testing::TempDir() + "/decode_fused_" + name + ".npy";
  const std::string unfused = ::testing::TempDir() + "/decode_unfused_" + name + ".npy";
  EXPECT_EQ(std::system((cmd + " --output " + fused).c_str()), 0) << cmd;
  EXPECT_EQ(std::system((cmd + " --kernel fuse_decode=off --output " + unfused).c_str()), 0) << cmd;
  const Tensor a = io::read_npy(fused), b = io::read_npy(unfused);
  EXPECT_EQ(a.shape(), b.shape()) << name;
  if (a.shape() == b.shape()) {
    EXPECT_EQ(testing::max_abs_diff(a, b), 0.0f) << name;
  }
  return a;
}

// Not vacuous: both projections of every Mamba-3 layer of `model` take the decode GEMV at this
// batch, so its residual step (ops::decode_in_proj / decode_out_proj) runs fused.
void expect_mamba3_layers_fused(const std::string& dir, int64_t batch) {
  models::Model model = models::Model::load(dir);
  model.to(Device::cuda);
  model.set_matmul_dtype(DType::bf16);
  for (const models::Block& b : model.blocks())
    if (b.mixer->kind() == models::MixerKind::mamba3) {
      int projections = 0;
      b.mixer->visit_params([&](const models::ParamRef& p) {
        if (p.name != "mixer.in_proj.weight" && p.name != "mixer.out_proj.weight") return;
        ++projections;
        EXPECT_TRUE(ops::decode_gemv_applies(exec, batch, *p.tensor)) << dir << " " << p.name;
      });
      EXPECT_EQ(projections, 2) << dir;
    }
}

class DecodeFusedCuda : public ::testing::TestWithParam<const char*> {};

TEST_P(DecodeFusedCuda, SameBitsAsUnfused) {
  MAMBA_REQUIRE_CUDA();
  MAMBA_REQUIRE_FIXTURES(root);
  const std::string name = GetParam(), dir = path_join(root, name);
  expect_mamba3_layers_fused(dir, io::read_npy(path_join(dir, "input_ids.npy")).size(0));
  const Tensor logits = expect_fused_equals_unfused(dir, name);
  // And both are the model's logits (the bf16 tolerance of golden_cuda_test).
  const Tensor ref = io::read_npy(path_join(dir, "logits.npy"));
  EXPECT_LT(testing::scaled_max_diff(logits.to(Device::cuda), ref), 2e-2f) << name;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, DecodeFusedCuda, ::testing::ValuesIn(kFixtures),
                         [](const ::testing::TestParamInfo<const char*>& p) {
                           std::string s = p.param;
                           for (char& ch : s)
                             if (ch == '-') ch = '_';
                           return s;
                         });

// A random Mamba-3 model with a gated MLP per block (no fixture has one): a fused layer follows an
// MLP, whose pending output is added before the fused step reads the residual. Batch 3.
TEST(DecodeFusedCudaRandom, Mamba3WithMlp) {
  MAMBA_REQUIRE_CUDA();
  models::ModelConfig c;
  c.d_model = 64;
  c.n_layer = 3;
  c.vocab_size = 100;
  c.d_intermediate = 96;
  c.ssm_layer = models::MixerKind::mamba3;
  auto& m3 = c.section<models::Mamba3Config>();
  m3.d_state = 32;
  m3.head_dim = 16;
  m3.chunk_size = 16;
  models::finalize_model_config(c, "test:mamba3-mlp");
  const std::string dir = ::testing::TempDir() + "/decode_fused_mamba3_mlp";
  models::Model::random(c, 5).save(dir);
  std::mt19937 rng(3);
  std::uniform_int_distribution<int64_t> token(0, c.vocab_size - 1);
  Tensor ids = Tensor::empty({3, 12}, DType::i64);
  for (int64_t i = 0; i < ids.numel(); ++i) ids.data<int64_t>()[i] = token(rng);
  io::write_npy(path_join(dir, "input_ids.npy"), ids);
  expect_mamba3_layers_fused(dir, 3);
  const Tensor logits = expect_fused_equals_unfused(dir, "mamba3_mlp");
  EXPECT_EQ(logits.shape(), (Shape{3, 12, c.vocab_padded}));
}

}  // namespace
}  // namespace mamba
