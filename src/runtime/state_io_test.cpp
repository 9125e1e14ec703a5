// State files: exact round trip on every fixture model; refusal (an Error, never a crash) of a
// state from another model, of every truncation and of bit flips anywhere; fingerprints.
#include <gtest/gtest.h>

#include <cstring>

#include "core/error.h"
#include "core/file_util.h"
#include "io/npy.h"
#include "models/mamba1.h"
#include "runtime/hash.h"
#include "runtime/session.h"
#include "testing.h"

namespace mamba::runtime {
namespace {

const char* const kFixtures[] = {"hf-mamba1",       "hf-mamba2",       "ssm-mamba1", "ssm-mamba2",
                                 "ssm-mamba3-siso", "ssm-mamba3-mimo", "ssm-hybrid"};

std::vector<int32_t> some_ids(int n) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back((i * 37 + 11) % 250);
  return ids;
}

// Expects `fn` to throw mamba::Error whose message contains every one of `parts`.
template <typename Fn>
void expect_error(Fn&& fn, std::initializer_list<std::string> parts, const std::string& context) {
  try {
    fn();
    ADD_FAILURE() << context << ": no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << context << ": " << msg;
  }
}

class StateFile : public ::testing::TestWithParam<const char*> {};

TEST_P(StateFile, RoundTripIsExact) {
  MAMBA_REQUIRE_FIXTURES(root);
  const models::Model model = models::Model::load(path_join(root, GetParam()));
  Session a(model);
  a.prefill(some_ids(23));
  const std::string path = ::testing::TempDir() + "/state_" + GetParam() + ".mstate";
  a.save_state(path);
  Session b(model);
  b.load_state(path);
  EXPECT_EQ(b.position(), 23);
  EXPECT_EQ(b.history(), a.history());
  EXPECT_EQ(testing::max_abs_diff(b.logits(), a.logits()), 0.0f);
  const auto& la = a.session_state().state.layers;
  const auto& lb = b.session_state().state.layers;
  ASSERT_EQ(la.size(), lb.size());
  for (size_t i = 0; i < la.size(); ++i) {
    models::LayerState x = la[i], y = lb[i];
    std::vector<Tensor> xs, ys;
    x.visit([&](const char*, Tensor& t) { xs.push_back(t); });
    y.visit([&](const char*, Tensor& t) { ys.push_back(t); });
    ASSERT_EQ(xs.size(), ys.size());
    for (size_t k = 0; k < xs.size(); ++k) {
      const Tensor kept =
          xs[k].size(1) > ys[k].size(1) ? xs[k].slice(1, 0, ys[k].size(1)) : xs[k];  // KV capacity
      EXPECT_EQ(testing::max_abs_diff(kept.contiguous(), ys[k]), 0.0f) << "layer " << i;
    }
  }
  EXPECT_EQ(b.state_bytes(), a.state_bytes());
}

TEST_P(StateFile, DamagedFilesAreRefused) {
  MAMBA_REQUIRE_FIXTURES(root);
  const models::Model model = models::Model::load(path_join(root, GetParam()));
  Session a(model);
  a.prefill(some_ids(9));
  const std::string good = a.state_bytes();
  Session b(model);
  for (size_t n = 0; n < good.size(); n += 1 + n / 3)
    expect_error([&] { b.load_state_bytes(std::string_view(good).substr(0, n)); }, {"<bytes>"},
                 "truncated to " + std::to_string(n));
  for (size_t at = 0; at < good.size(); at += 1 + at / 5) {
    std::string bad = good;
    bad[at] ^= static_cast<char>(1 << (at % 8));
    expect_error([&] { b.load_state_bytes(bad); }, {"<bytes>"}, "bit flip at " + std::to_string(at));
  }
  const std::string path = ::testing::TempDir() + "/truncated_" + GetParam() + ".mstate";
  write_file_atomic(path, good.substr(0, good.size() / 2));
  expect_error([&] { b.load_state(path); }, {path, "checksum"}, "truncated file");
  EXPECT_EQ(b.position(), 0);  // a refused load leaves the session as it was
}

INSTANTIATE_TEST_SUITE_P(Fixtures, StateFile, ::testing::ValuesIn(kFixtures),
                         [](const ::testing::TestParamInfo<const char*>& p) {
                           std::string s = p.param;
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

TEST(StateFileErrors, OtherModelIsRefusedNamingBothFingerprints) {
  MAMBA_REQUIRE_FIXTURES(root);
  const models::Model m2 = models::Model::load(path_join(root, "ssm-mamba2"));
  const models::Model h2 = models::Model::load(path_join(root, "hf-mamba2"));
  Session a(m2);
  a.prefill(some_ids(5));
  const std::string path = ::testing::TempDir() + "/other_model.mstate";
  a.save_state(path);
  Session b(h2);
  expect_error([&] { b.load_state(path); }, {path, a.fingerprint().str(), b.fingerprint().str()},
               "other model");
  EXPECT_NE(a.fingerprint(), b.fingerprint());
}

TEST(StateFileErrors, ValidChecksumWrongShapeIsRefused) {
  MAMBA_REQUIRE_FIXTURES(root);
  const models::Model model = models::Model::load(path_join(root, "ssm-mamba1"));
  Session a(model);
  a.prefill(some_ids(4));
  std::string bytes = a.state_bytes();
  const int64_t batch = 3;  // header: magic 8, version 4, 0 4, fingerprint 24, position 8, batch 8
  std::memcpy(bytes.data() + 48, &batch, 8);
  const uint64_t sum = hash_string(std::string_view(bytes).substr(0, bytes.size() - 8));
  std::memcpy(bytes.data() + bytes.size() - 8, &sum, 8);
  Session b(model);
  expect_error([&] { b.load_state_bytes(bytes); }, {"logits", "[1, ", "[3, "}, "batch changed");
}

TEST(Fingerprint, DependsOnWeightsAndIsStable) {
  models::ModelConfig c;
  c.d_model = 32;
  c.n_layer = 2;
  c.vocab_size = 64;
  c.section<models::Mamba1Config>().d_state = 4;
  models::finalize_model_config(c, "test");
  const models::Model a = models::Model::random(c, 1), b = models::Model::random(c, 1),
                      d = models::Model::random(c, 2);
  EXPECT_EQ(fingerprint(a), fingerprint(b));
  EXPECT_EQ(fingerprint(a).config, fingerprint(d).config);
  EXPECT_EQ(fingerprint(a).params, fingerprint(d).params);
  EXPECT_NE(fingerprint(a).weights, fingerprint(d).weights);
  EXPECT_EQ(fingerprint(a).str().size(), 16u);
}

}  // namespace
}  // namespace mamba::runtime
