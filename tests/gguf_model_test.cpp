// GGUF models against the f32 safetensors model they were written from (Model::save_gguf ->
// Model::load_gguf, as `mambacpp quantize` does), for every fixture llama.cpp's mamba / mamba2
// architectures hold and every weight type: logits of the whole sequence (max |Δ|, mean KL of
// the softmax, top-1 agreement), prefill-then-step equal to the whole pass, and greedy tokens.
// The bounds are the measured values with headroom (docs/quantization.md has the table).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>

#include "core/error.h"
#include "core/file_util.h"
#include "exec_testing.h"
#include "io/gguf.h"
#include "io/npy.h"
#include "models/model.h"
#include "testing.h"

namespace mamba {
namespace {

using testing::exec;

struct Metrics {
  double max_abs = 0, mean_kl = 0, top1 = 0;
};

// logits [batch, seq, vocab] of a quantized model against the reference's.
Metrics compare(const Tensor& ref, const Tensor& got) {
  const std::vector<float> a = ref.to_vector(), b = got.to_vector();
  const int64_t vocab = ref.size(-1), rows = ref.numel() / vocab;
  Metrics m;
  for (int64_t r = 0; r < rows; ++r) {
    const float* p = a.data() + r * vocab;
    const float* q = b.data() + r * vocab;
    double pmax = p[0], qmax = q[0];
    int64_t parg = 0, qarg = 0;
    for (int64_t v = 0; v < vocab; ++v) {
      m.max_abs = std::max(m.max_abs, std::fabs(double(p[v]) - q[v]));
      if (p[v] > pmax) pmax = p[v], parg = v;
      if (q[v] > qmax) qmax = q[v], qarg = v;
    }
    double zp = 0, zq = 0;
    for (int64_t v = 0; v < vocab; ++v) zp += std::exp(p[v] - pmax), zq += std::exp(q[v] - qmax);
    double kl = 0;
    for (int64_t v = 0; v < vocab; ++v) {
      const double lp = p[v] - pmax - std::log(zp), lq = q[v] - qmax - std::log(zq);
      kl += std::exp(lp) * (lp - lq);
    }
    m.mean_kl += kl / static_cast<double>(rows);
    m.top1 += (parg == qarg ? 1.0 : 0.0) / static_cast<double>(rows);
  }
  return m;
}

// 16 greedy steps after the first 8 ids of sequence 0: each step's logits, and the tokens fed —
// the model's own argmax, or `forced` (teacher forcing along another model's greedy path).
struct Greedy {
  std::vector<int64_t> tokens;
  std::vector<std::vector<float>> logits;
};
Greedy greedy(const models::Model& model, const Tensor& ids, const std::vector<int64_t>* forced = nullptr) {
  models::State state = model.new_state(1);
  Tensor logits = model.forward(exec, ids.slice(0, 0, 1).slice(1, 0, 8).contiguous(), state, 1);
  Greedy g;
  for (size_t k = 0; k < 16; ++k) {
    g.logits.push_back(logits.to_vector());
    const std::vector<float>& l = g.logits.back();
    g.tokens.push_back(std::max_element(l.begin(), l.end()) - l.begin());
    Tensor id = Tensor::empty({1}, DType::i64);
    id.data<int64_t>()[0] = forced ? (*forced)[k] : g.tokens.back();
    logits = model.step(exec, id, state);
  }
  return g;
}

// The gap between the largest and the second largest logit.
float top2_gap(const std::vector<float>& l) {
  std::vector<float> s = l;
  std::partial_sort(s.begin(), s.begin() + 2, s.end(), std::greater<float>());
  return s[0] - s[1];
}

struct Bound {
  DType dtype;
  double max_abs, mean_kl, top1;
};

// Measured on the fixtures (tiny random-weight models; docs/quantization.md has the table), with
// headroom: f32 is exact; bf16 and q8_0 keep the logits within ~0.03 / ~0.1; 4-bit types move
// them by up to ~1.2 (a step is 1/16 of each 32-value block's range, ~16x q8_0's error), which
// flips the near-ties of these random models' flat distributions (top-1 ≥ 0.52 measured).
const Bound kBounds[] = {
    {DType::f32, 1e-5, 1e-9, 1.0}, {DType::bf16, 0.06, 5e-5, 0.95}, {DType::q8_0, 0.2, 5e-4, 0.9},
    {DType::q4_0, 2.0, 0.06, 0.4}, {DType::q4_k, 2.0, 0.06, 0.4},
};

class GgufModel : public ::testing::TestWithParam<const char*> {};

TEST_P(GgufModel, QuantizedLogitsStayCloseToF32) {
  MAMBA_REQUIRE_FIXTURES(root);
  const std::string dir = path_join(root, GetParam());
  const std::string tmp = testing::fresh_temp_dir("gguf_model_test");
  const models::Model f32 = models::Model::load(dir);
  const Tensor ids = io::read_npy(path_join(dir, "input_ids.npy"));
  models::State st = f32.new_state(ids.size(0));
  const Tensor ref = f32.forward(exec, ids, st);
  const Greedy ref_greedy = greedy(f32, ids);
  for (const Bound& b : kBounds) {
    SCOPED_TRACE(std::string(GetParam()) + " " + dtype_name(b.dtype));
    const std::string path = path_join(tmp, std::string(dtype_name(b.dtype)) + ".gguf");
    f32.save_gguf(path, b.dtype);
    models::Model q = models::Model::load(path);
    EXPECT_EQ(q.config().vocab_padded, f32.config().vocab_padded);
    // The embedding is used as stored (no f32 copy): ops::embedding decodes the rows it reads; so
    // is Granite's MLP gate | up, stored as two tensors (their rows one after the other).
    q.visit_params([&](const models::ParamRef& p) {
      const bool gate_up = p.name.find("shared_mlp.input_linear.weight") != std::string::npos;
      if (p.name == q.config().embedding_name() || gate_up) {
        EXPECT_EQ(p.tensor->dtype() == DType::f32, b.dtype == DType::f32)
            << p.name << " " << dtype_name(p.tensor->dtype());
      }
    });
    models::State qs = q.new_state(ids.size(0));
    const Tensor got = q.forward(exec, ids, qs);
    // The same weights used from the file's mapping (--mmap): the same logits, bit for bit.
    const models::Model mapped = models::Model::load(path, {.gguf_mapped = true});
    models::State ms = mapped.new_state(ids.size(0));
    const Tensor got_mapped = mapped.forward(exec, ids, ms);
    ASSERT_EQ(got_mapped.numel(), got.numel());
    EXPECT_EQ(std::memcmp(got_mapped.raw(), got.raw(), sizeof(float) * static_cast<size_t>(got.numel())), 0);
    const Metrics m = compare(ref, got);
    // Greedy tokens: the quantized model's own continuation (reported), and along f32's path a
    // different argmax only where f32's own top-2 gap is within the type's logit error.
    const Greedy own = greedy(q, ids);
    int same = 0;
    for (size_t k = 0; k < own.tokens.size() && own.tokens[k] == ref_greedy.tokens[k]; ++k) ++same;
    const Greedy forced = greedy(q, ids, &ref_greedy.tokens);
    for (size_t k = 0; k < forced.tokens.size(); ++k)
      if (forced.tokens[k] != ref_greedy.tokens[k]) {
        EXPECT_LT(top2_gap(ref_greedy.logits[k]), 2 * b.max_abs) << "greedy step " << k;
      }
    std::printf(
        "gguf %-22s %-5s max|dlogit| %.3e  mean KL %.3e  top-1 %.3f  greedy prefix %2d/16  %lld bytes\n",
        GetParam(), dtype_name(b.dtype), m.max_abs, m.mean_kl, m.top1, same,
        static_cast<long long>(std::ifstream(path, std::ios::ate | std::ios::binary).tellg()));
    EXPECT_LT(m.max_abs, b.max_abs);
    EXPECT_LT(m.mean_kl, b.mean_kl);
    EXPECT_GE(m.top1, b.top1 - 1e-9);
    if (b.dtype == DType::f32) {
      EXPECT_EQ(own.tokens, ref_greedy.tokens);
    }
    // Prefill then one-token steps equal the whole pass on the quantized model too.
    models::State ps = q.new_state(ids.size(0));
    const int64_t k = ids.size(1) / 2;
    q.forward(exec, ids.slice(1, 0, k).contiguous(), ps);
    const Tensor step = q.step(exec, ids.select(1, k).contiguous(), ps);
    EXPECT_LT(testing::max_abs_diff(step, got.select(1, k).contiguous()), 2e-4f);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GgufModel,
                         ::testing::Values("ssm-mamba1", "ssm-mamba2", "hf-mamba1", "hf-mamba2",
                                           "families/falcon-mamba", "families/mamba2-grouped",
                                           // the hybrids, in llama.cpp's granitehybrid / jamba /
                                           // falcon-h1 / nemotron_h_moe names
                                           "families/bamba", "families/granite-4-h", "families/jamba",
                                           "families/falcon-h1", "families/nemotron-h"),
                         [](const auto& param_info) {
                           std::string n = param_info.param;
                           for (char& c : n)
                             if (c == '/' || c == '-') c = '_';
                           return n;
                         });

// The fixtures' rows (64, 128 values) are no whole q4_k block, so there every q4_k tensor falls
// back to q4_0; random-weight models 256 wide run q4_k itself (in_proj, x_proj, out_proj, head).
TEST(GgufModelRandom, Q4KAtWidth256) {
  const std::string tmp = testing::fresh_temp_dir("gguf_model_q4k");
  for (const char* arch : {"mamba1", "mamba2"}) {
    models::ModelConfig c;
    ASSERT_TRUE(models::bench_model_config(arch, 256, 2, 0, c));
    c.vocab_size = c.vocab_padded = 512;
    c.tie_embeddings = std::string(arch) == "mamba2";  // one tied head (q4_k embedding read in place)
    const models::Model f32 = models::Model::random(c, 11);
    std::mt19937 rng(2);
    Tensor ids = Tensor::empty({1, 24}, DType::i64);
    for (int64_t i = 0; i < 24; ++i) ids.data<int64_t>()[i] = static_cast<int64_t>(rng() % 512);
    models::State st = f32.new_state(1);
    const Tensor ref = f32.forward(exec, ids, st);
    for (DType t : {DType::q4_k, DType::q4_0, DType::q8_0}) {
      const std::string path = path_join(tmp, std::string(arch) + dtype_name(t) + ".gguf");
      f32.save_gguf(path, t);
      EXPECT_EQ(io::GgufFile::open(path).find("blk.0.ssm_in.weight")->dtype, t);
      const models::Model q = models::Model::load(path);
      models::State qs = q.new_state(1);
      const Metrics m = compare(ref, q.forward(exec, ids, qs));
      std::printf("gguf random-%s-256 %-5s max|dlogit| %.3e  mean KL %.3e  top-1 %.3f\n", arch, dtype_name(t),
                  m.max_abs, m.mean_kl, m.top1);
      EXPECT_LT(m.mean_kl, t == DType::q8_0 ? 1e-4 : 5e-3) << arch << " " << dtype_name(t);
    }
  }
}

// Models llama.cpp's architectures cannot hold are refused with the reason, naming the file.
TEST(GgufModelRefusals, UnsupportedModelsNameWhatIsMissing) {
  MAMBA_REQUIRE_FIXTURES(root);
  const std::string tmp = testing::fresh_temp_dir("gguf_model_refusals");
  for (const char* name : {"ssm-hybrid", "ssm-mamba3-siso", "families/zamba2"}) {
    const models::Model m = models::Model::load(path_join(root, name));
    try {
      m.save_gguf(path_join(tmp, "x.gguf"), DType::q8_0);
      ADD_FAILURE() << name << " was written";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::unsupported) << e.what();
      EXPECT_NE(std::string(e.what()).find("GGUF cannot hold"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(file_exists(path_join(tmp, "x.gguf")));
  }
}

// A GGUF of another architecture, or one missing a tensor, is a one-line error.
TEST(GgufModelRefusals, WrongArchitectureAndMissingTensor) {
  const std::string tmp = testing::fresh_temp_dir("gguf_model_arch");
  io::GgufWriter w;
  w.set("general.architecture", io::GgufValue::of_string("llama"));
  w.write(path_join(tmp, "llama.gguf"));
  EXPECT_THROW(
      {
        try {
          models::Model::load(path_join(tmp, "llama.gguf"));
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find(
                        "general.architecture is 'llama', expected mamba, mamba2, granitehybrid"),
                    std::string::npos)
              << e.what();
          throw;
        }
      },
      Error);
  MAMBA_REQUIRE_FIXTURES(root);
  const models::Model m = models::Model::load(path_join(root, "hf-mamba2"));
  m.save_gguf(path_join(tmp, "m2.gguf"), DType::f32);
  // Drop one tensor by rewriting the file without it.
  const io::GgufFile g = io::GgufFile::open(path_join(tmp, "m2.gguf"));
  io::GgufWriter w2;
  for (const auto& [k, v] : g.metadata()) w2.set(k, v);
  for (const io::GgufTensorInfo& t : g.tensors())
    if (t.name != "blk.1.ssm_d") w2.add(t.name, g.get(t.name).copy());
  w2.write(path_join(tmp, "m2_missing.gguf"));
  try {
    models::Model::load(path_join(tmp, "m2_missing.gguf"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::not_found);
    EXPECT_NE(std::string(e.what()).find("missing tensor 'blk.1.ssm_d' (expected shape [8, 1])"),
              std::string::npos)
        << e.what();
  }
}

// A hybrid GGUF whose block_count is not the file's: refused before any per-layer work.
TEST(GgufModelRefusals, HybridBlockCountMustMatchTheFile) {
  MAMBA_REQUIRE_FIXTURES(root);
  const std::string tmp = testing::fresh_temp_dir("gguf_model_blocks");
  models::Model::load(path_join(root, "families/jamba")).save_gguf(path_join(tmp, "jamba.gguf"), DType::f32);
  const io::GgufFile g = io::GgufFile::open(path_join(tmp, "jamba.gguf"));
  for (auto [count, message] :
       {std::pair<uint32_t, const char*>{5, "missing tensor 'blk.4.attn_norm.weight'"},
        {1u << 24, "block_count at most 2^16"}}) {
    io::GgufWriter w;
    for (const auto& [k, v] : g.metadata())
      w.set(k, k == "jamba.block_count" ? io::GgufValue::of_u32(count) : v);
    for (const io::GgufTensorInfo& t : g.tensors()) w.add(t.name, g.get(t.name).copy());
    w.write(path_join(tmp, "bad.gguf"));
    try {
      models::Model::load(path_join(tmp, "bad.gguf"));
      ADD_FAILURE() << count;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace mamba
