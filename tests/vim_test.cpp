// Vision Mamba (issue 18): the BiMamba mixer and the whole model against a naive double-precision
// reference written here from hustvl/Vim's forward (Conv2d patches, class token insertion,
// position embeddings, Add -> norm -> mixer on an fp32 residual, final norm, head); checkpoint
// loading (safetensors round trip; the .pth and PyTorch-reference fixtures of tests/data/vim when
// present, else SKIPPED); the preprocessing against torchvision/PIL outputs (fixtures); bad input.
#include "models/vim.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/file_util.h"
#include "exec_testing.h"
#include "io/image.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "ops/device.h"
#include "testing.h"

namespace mamba {
namespace {

using models::VimConfig;
using models::VimModel;
using Vec = std::vector<double>;

Vec values(const Tensor& t) {
  const std::vector<float> f = t.to(Device::cpu).to(DType::f32).to_vector();
  return Vec(f.begin(), f.end());
}

double softplus(double x) {
  return x > 20 ? x : std::log1p(std::exp(x));
}
double silu(double x) {
  return x / (1 + std::exp(-x));
}

// y[t][o] = Σ_i x[t][i]·w[o][i] (+ b[o]); x: [rows][in] flat.
Vec matmul(const Vec& x, int64_t rows, int64_t in, const Vec& w, int64_t out, const Vec* b = nullptr) {
  Vec y(static_cast<size_t>(rows * out));
  for (int64_t t = 0; t < rows; ++t)
    for (int64_t o = 0; o < out; ++o) {
      double s = b ? (*b)[static_cast<size_t>(o)] : 0.0;
      for (int64_t i = 0; i < in; ++i)
        s += x[static_cast<size_t>(t * in + i)] * w[static_cast<size_t>(o * in + i)];
      y[static_cast<size_t>(t * out + o)] = s;
    }
  return y;
}

using Params = std::map<std::string, Vec>;

Params params_of(VimModel& m) {
  Params p;
  m.visit_params([&](const models::VimParam& q) { p[q.name] = values(*q.tensor); });
  return p;
}

struct Dims {
  int64_t d, di, n, r, k;
};

// One direction of Mamba-1 (conv + silu, x_proj, dt_proj, selective scan, gate) over xz [L][2·di]
// given in that direction's order; `s` = "" or "_b".
Vec naive_branch(const Params& p, const std::string& pre, const std::string& s, const Vec& xz, int64_t L,
                 const Dims& dm) {
  const int64_t di = dm.di, n = dm.n, r = dm.r, k = dm.k;
  const Vec& cw = p.at(pre + "conv1d" + s + ".weight");
  const Vec* cb = p.count(pre + "conv1d" + s + ".bias") ? &p.at(pre + "conv1d" + s + ".bias") : nullptr;
  Vec x(static_cast<size_t>(L * di));
  for (int64_t t = 0; t < L; ++t)
    for (int64_t c = 0; c < di; ++c) {
      double acc = cb ? (*cb)[static_cast<size_t>(c)] : 0.0;
      for (int64_t j = 0; j < k; ++j) {
        const int64_t src = t - (k - 1) + j;
        if (src >= 0) acc += cw[static_cast<size_t>(c * k + j)] * xz[static_cast<size_t>(src * 2 * di + c)];
      }
      x[static_cast<size_t>(t * di + c)] = silu(acc);
    }
  const Vec dbl = matmul(x, L, di, p.at(pre + "x_proj" + s + ".weight"), r + 2 * n);
  Vec low(static_cast<size_t>(L * r));
  for (int64_t t = 0; t < L; ++t)
    for (int64_t i = 0; i < r; ++i)
      low[static_cast<size_t>(t * r + i)] = dbl[static_cast<size_t>(t * (r + 2 * n) + i)];
  const Vec dt =
      matmul(low, L, r, p.at(pre + "dt_proj" + s + ".weight"), di, &p.at(pre + "dt_proj" + s + ".bias"));
  const Vec& A_log = p.at(pre + (s.empty() ? "A_log" : "A_b_log"));
  const Vec& D = p.at(pre + "D" + s);
  Vec y(static_cast<size_t>(L * di)), h(static_cast<size_t>(di * n), 0.0);
  for (int64_t t = 0; t < L; ++t)
    for (int64_t c = 0; c < di; ++c) {
      const double delta = softplus(dt[static_cast<size_t>(t * di + c)]),
                   u = x[static_cast<size_t>(t * di + c)];
      double out = D[static_cast<size_t>(c)] * u;
      for (int64_t j = 0; j < n; ++j) {
        const double A = -std::exp(A_log[static_cast<size_t>(c * n + j)]);
        const double B = dbl[static_cast<size_t>(t * (r + 2 * n) + r + j)];
        const double C = dbl[static_cast<size_t>(t * (r + 2 * n) + r + n + j)];
        double& hs = h[static_cast<size_t>(c * n + j)];
        hs = std::exp(delta * A) * hs + delta * B * u;
        out += C * hs;
      }
      y[static_cast<size_t>(t * di + c)] = out * silu(xz[static_cast<size_t>(t * 2 * di + di + c)]);
    }
  return y;
}

Vec flip_rows(const Vec& v, int64_t L, int64_t w) {
  Vec o(v.size());
  for (int64_t t = 0; t < L; ++t) std::copy_n(v.begin() + (L - 1 - t) * w, w, o.begin() + t * w);
  return o;
}

// The BiMamba mixer on one sequence u [L][d].
Vec naive_mixer(const Params& p, const std::string& pre, const Vec& u, int64_t L, const Dims& dm, bool bidir,
                bool divide) {
  const Vec* inb = p.count(pre + "in_proj.bias") ? &p.at(pre + "in_proj.bias") : nullptr;
  const Vec xz = matmul(u, L, dm.d, p.at(pre + "in_proj.weight"), 2 * dm.di, inb);
  Vec y = naive_branch(p, pre, "", xz, L, dm);
  if (bidir) {
    const Vec yb = flip_rows(naive_branch(p, pre, "_b", flip_rows(xz, L, 2 * dm.di), L, dm), L, dm.di);
    for (size_t i = 0; i < y.size(); ++i) y[i] = divide ? (y[i] + yb[i]) / 2 : y[i] + yb[i];
  }
  const Vec* outb = p.count(pre + "out_proj.bias") ? &p.at(pre + "out_proj.bias") : nullptr;
  return matmul(y, L, dm.di, p.at(pre + "out_proj.weight"), dm.d, outb);
}

Vec naive_norm(const Vec& x, int64_t L, int64_t d, const Vec& w, const Vec* b, bool rms, double eps) {
  Vec y(x.size());
  for (int64_t t = 0; t < L; ++t) {
    const double* row = &x[static_cast<size_t>(t * d)];
    double mean = 0, var = 0;
    if (!rms) {
      for (int64_t i = 0; i < d; ++i) mean += row[i];
      mean /= static_cast<double>(d);
    }
    for (int64_t i = 0; i < d; ++i) var += (row[i] - mean) * (row[i] - mean);
    const double inv = 1 / std::sqrt(var / static_cast<double>(d) + eps);
    for (int64_t i = 0; i < d; ++i)
      y[static_cast<size_t>(t * d + i)] =
          (row[i] - mean) * inv * w[static_cast<size_t>(i)] + (b ? (*b)[static_cast<size_t>(i)] : 0.0);
  }
  return y;
}

// Vim's forward_features + head for one image [C][H][W].
Vec naive_vim(const VimConfig& c, const Params& p, const Vec& img) {
  const int64_t d = c.embed_dim, P = c.patch_size, S = c.stride, H = c.img_size, C = c.channels;
  const Dims dm{d, c.d_inner, c.d_state, c.dt_rank, c.d_conv};
  const Vec& pw = p.at("patch_embed.proj.weight");
  const Vec& pb = p.at("patch_embed.proj.bias");
  std::vector<Vec> tokens;
  for (int64_t gy = 0; gy < c.grid_h; ++gy)
    for (int64_t gx = 0; gx < c.grid_w; ++gx) {
      Vec e(static_cast<size_t>(d));
      for (int64_t o = 0; o < d; ++o) {
        double s = pb[static_cast<size_t>(o)];
        for (int64_t ch = 0; ch < C; ++ch)
          for (int64_t ky = 0; ky < P; ++ky)
            for (int64_t kx = 0; kx < P; ++kx)
              s += pw[static_cast<size_t>(((o * C + ch) * P + ky) * P + kx)] *
                   img[static_cast<size_t>((ch * H + gy * S + ky) * H + gx * S + kx)];
        e[static_cast<size_t>(o)] = s;
      }
      tokens.push_back(e);
    }
  const int64_t M = static_cast<int64_t>(tokens.size());
  if (c.num_tokens == 1) {
    const int64_t pos = c.use_middle_cls_token ? M / 2 : 0;
    tokens.insert(tokens.begin() + pos, p.at("cls_token"));
  } else if (c.num_tokens == 2) {
    tokens.insert(tokens.begin(), p.at("cls_token_head"));
    tokens.push_back(p.at("cls_token_tail"));
  }
  const int64_t L = static_cast<int64_t>(tokens.size());
  Vec x(static_cast<size_t>(L * d));
  for (int64_t t = 0; t < L; ++t)
    for (int64_t i = 0; i < d; ++i)
      x[static_cast<size_t>(t * d + i)] =
          tokens[static_cast<size_t>(t)][static_cast<size_t>(i)] +
          (c.if_abs_pos_embed ? p.at("pos_embed")[static_cast<size_t>(t * d + i)] : 0.0);
  Vec residual, hidden;
  const double eps = c.norm_epsilon;
  auto bias = [&](const std::string& name) { return p.count(name) ? &p.at(name) : nullptr; };
  for (int64_t l = 0; l < c.depth; ++l) {
    const std::string pre = "layers." + std::to_string(l) + ".";
    if (l == 0) {
      residual = x;
    } else {
      for (size_t i = 0; i < residual.size(); ++i) residual[i] += hidden[i];
    }
    const Vec normed =
        naive_norm(residual, L, d, p.at(pre + "norm.weight"), bias(pre + "norm.bias"), c.rms_norm, eps);
    hidden = naive_mixer(p, pre + "mixer.", normed, L, dm, c.bimamba_type == "v2", c.if_devide_out);
  }
  for (size_t i = 0; i < residual.size(); ++i) residual[i] += hidden[i];
  const Vec out = naive_norm(residual, L, d, p.at("norm_f.weight"), bias("norm_f.bias"), c.rms_norm, eps);
  Vec f(static_cast<size_t>(d), 0.0);
  for (int64_t i = 0; i < d; ++i) {
    if (c.num_tokens == 1)
      f[static_cast<size_t>(i)] = out[static_cast<size_t>((c.use_middle_cls_token ? M / 2 : 0) * d + i)];
    else if (c.num_tokens == 2)
      f[static_cast<size_t>(i)] =
          (out[static_cast<size_t>(i)] + out[static_cast<size_t>((L - 1) * d + i)]) / 2;
    else if (c.final_pool_type == "none")
      f[static_cast<size_t>(i)] = out[static_cast<size_t>((L - 1) * d + i)];
    else {
      for (int64_t t = 0; t < L; ++t) f[static_cast<size_t>(i)] += out[static_cast<size_t>(t * d + i)];
      f[static_cast<size_t>(i)] /= static_cast<double>(L);
    }
  }
  return c.num_classes ? matmul(f, 1, d, p.at("head.weight"), c.num_classes, &p.at("head.bias")) : f;
}

VimConfig tiny_config(const std::function<void(nlohmann::json&)>& edit = {}) {
  nlohmann::json j = {{"img_size", 32},
                      {"patch_size", 8},
                      {"embed_dim", 16},
                      {"depth", 2},
                      {"d_state", 4},
                      {"num_classes", 5},
                      {"class_names", {"a", "b", "c", "d", "e"}}};
  if (edit) edit(j);
  return models::parse_vim_config(j, "test config");
}

Tensor random_images(int64_t b, const VimConfig& c, uint32_t seed) {
  std::mt19937 rng(seed);
  return testing::random_tensor({b, c.channels, c.img_size, c.img_size}, rng, -2.0f, 2.0f);
}

double max_rel(const Vec& a, const Vec& b) {
  double worst = 0, scale = 1e-3;
  for (double v : b) scale = std::max(scale, std::fabs(v));
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]) / scale);
  return worst;
}

// The whole model against the naive reference, for each image of a batch.
void check_model(const VimConfig& c, uint64_t seed) {
  VimModel m = VimModel::random(c, seed);
  const Params p = params_of(m);
  const Tensor images = random_images(3, c, static_cast<uint32_t>(seed));
  const Vec got = values(m.forward(exec, images));
  const int64_t out = c.num_classes ? c.num_classes : c.embed_dim;
  ASSERT_EQ(got.size(), static_cast<size_t>(3 * out));
  const Vec all = values(images);
  const int64_t plane = c.channels * c.img_size * c.img_size;
  for (int64_t b = 0; b < 3; ++b) {
    const Vec ref = naive_vim(c, p, Vec(all.begin() + b * plane, all.begin() + (b + 1) * plane));
    const Vec mine(got.begin() + b * out, got.begin() + (b + 1) * out);
    EXPECT_LT(max_rel(mine, ref), 1e-4) << "image " << b;
  }
}

TEST(Vim, MiddleClassTokenBimambaV2MatchesNaiveReference) {
  check_model(tiny_config(), 1);
}

TEST(Vim, OverlappingPatchesHeadTokenSummedDirections) {
  check_model(tiny_config([](nlohmann::json& j) {
                j["stride"] = 4;  // 7×7 overlapping 8×8 patches
                j["use_middle_cls_token"] = false;
                j["if_devide_out"] = false;
                j["bias"] = true;
              }),
              2);
}

TEST(Vim, MeanPoolLayerNormForwardOnlyAndDoubleToken) {
  check_model(tiny_config([](nlohmann::json& j) {
                j["if_cls_token"] = false;
                j["final_pool_type"] = "mean";
                j["rms_norm"] = false;
                j["bimamba_type"] = "none";
                j["depth"] = 3;
              }),
              3);
  check_model(tiny_config([](nlohmann::json& j) {
                j["use_double_cls_token"] = true;
                j["num_classes"] = 0;
                j.erase("class_names");
              }),
              4);
  check_model(tiny_config([](nlohmann::json& j) {
                j["if_cls_token"] = false;
                j["final_pool_type"] = "none";
                j["if_abs_pos_embed"] = false;
              }),
              5);
}

// The backward direction is the Mamba-1 op over the reversed sequence with the `_b` weights: the
// mixer equals the naive two-direction reference, and swapping the weight sets while reversing
// the input reverses the output.
TEST(Vim, BidirectionalMixerIsMamba1OnTheFlippedSequence) {
  const VimConfig c = tiny_config([](nlohmann::json& j) { j["d_state"] = 6; });
  VimModel m = VimModel::random(c, 7);
  const Params p = params_of(m);
  const models::VimMixer& mixer = m.mixer(1);
  const int64_t L = 11, d = c.embed_dim;
  std::mt19937 rng(3);
  const Tensor u = testing::random_tensor({2, L, d}, rng);
  const Vec got = values(mixer.forward(exec, u)), uv = values(u);
  const Dims dm{d, c.d_inner, c.d_state, c.dt_rank, c.d_conv};
  for (int64_t b = 0; b < 2; ++b) {
    const Vec ref = naive_mixer(p, "layers.1.mixer.",
                                Vec(uv.begin() + b * L * d, uv.begin() + (b + 1) * L * d), L, dm, true, true);
    EXPECT_LT(max_rel(Vec(got.begin() + b * L * d, got.begin() + (b + 1) * L * d), ref), 1e-5);
  }
  models::VimMixer swapped = mixer;
  std::swap(swapped.fwd, swapped.bwd);
  Tensor u_rev = Tensor::empty(u.shape());
  for (int64_t t = 0; t < L; ++t) u_rev.select(1, t).copy_from(u.select(1, L - 1 - t));
  const Tensor y_rev = swapped.forward(exec, u_rev);
  const Tensor y = mixer.forward(exec, u);
  Tensor y_back = Tensor::empty(y.shape());
  for (int64_t t = 0; t < L; ++t) y_back.select(1, t).copy_from(y_rev.select(1, L - 1 - t));
  EXPECT_LT(testing::max_abs_diff(y_back, y), 1e-5f);
  // And the backward weights matter: a forward-only mixer differs.
  models::VimMixer forward_only = mixer;
  forward_only.bidirectional = false;
  EXPECT_GT(testing::max_abs_diff(forward_only.forward(exec, u), y), 1e-3f);
}

TEST(Vim, SaveLoadRoundTripAndClassNames) {
  const VimConfig c = tiny_config();
  const VimModel m = VimModel::random(c, 9);
  const std::string dir = testing::fresh_temp_dir("vim_roundtrip");
  m.save(dir);
  const VimModel back = VimModel::load(dir);
  const Tensor x = random_images(2, c, 1);
  EXPECT_EQ(testing::max_abs_diff(back.forward(exec, x), m.forward(exec, x)), 0.0f);
  EXPECT_EQ(back.config().class_names, c.class_names);
  // The checkpoint file itself may be named, config.json beside it.
  EXPECT_EQ(VimModel::load(path_join(dir, "model.safetensors")).config().depth, 2);
}

#ifdef MAMBACPP_VIM_PTH
// A .pth as hustvl/Vim releases it ({"model": state dict, "optimizer": ..., "epoch": ...}, zip
// format; tests/data/vim_pth/make_vim_pth.py writes it without torch) through the restricted
// unpickler: the same weights, so the same logits, as the safetensors copy; both match the reference.
TEST(Vim, PthCheckpointUnderModelKey) {
  const std::string dir = MAMBACPP_VIM_PTH;
  const VimModel st = VimModel::load(dir);  // model.safetensors is preferred in a folder
  const VimModel pth = VimModel::load(path_join(dir, "model.pth"));
  const Tensor x = random_images(2, st.config(), 21);
  const Tensor a = pth.forward(exec, x);
  EXPECT_EQ(testing::max_abs_diff(a, st.forward(exec, x)), 0.0f);
  VimModel copy = VimModel::load(path_join(dir, "model.pth"));
  const Params p = params_of(copy);
  const Vec all = values(x), got = values(a);
  const int64_t plane = 3 * 32 * 32;
  for (int64_t b = 0; b < 2; ++b)
    EXPECT_LT(max_rel(Vec(got.begin() + b * 5, got.begin() + (b + 1) * 5),
                      naive_vim(st.config(), p, Vec(all.begin() + b * plane, all.begin() + (b + 1) * plane))),
              1e-4);
}
#endif

TEST(Vim, ClassNamesFromClassesTxtOrId2label) {
  const std::string dir = testing::fresh_temp_dir("vim_names");
  VimModel::random(tiny_config([](nlohmann::json& j) { j.erase("class_names"); }), 3).save(dir);
  EXPECT_TRUE(VimModel::load(dir).config().class_names.empty());
  write_file_atomic(path_join(dir, "classes.txt"), "cat\ndog\r\nfox\nowl\nbee\n");
  EXPECT_EQ(VimModel::load(dir).config().class_names,
            (std::vector<std::string>{"cat", "dog", "fox", "owl", "bee"}));
  write_file_atomic(path_join(dir, "classes.txt"), "cat\ndog\n");
  try {
    VimModel::load(dir);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("classes.txt: 2 class names, expected num_classes 5"),
              std::string::npos)
        << e.what();
  }
  const VimConfig c =
      models::parse_vim_config({{"num_classes", 3}, {"id2label", {{"2", "z"}, {"0", "x"}}}}, "cfg");
  EXPECT_EQ(c.class_names, (std::vector<std::string>{"x", "", "z"}));
}

void expect_error(const std::function<void()>& fn, const std::vector<std::string>& fragments) {
  try {
    fn();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(Vim, BadCheckpointsAndInputsNameTheProblem) {
  const VimConfig c = tiny_config();
  const VimModel m = VimModel::random(c, 11);
  const std::string dir = testing::fresh_temp_dir("vim_bad");
  m.save(dir);
  const io::SafeTensors st = io::SafeTensors::open(dir);
  std::vector<std::pair<std::string, Tensor>> all;
  for (const std::string& n : st.names()) all.emplace_back(n, st.get_f32(n));
  auto write_without = [&](const std::string& drop, const std::string& reshape, const std::string& extra) {
    std::vector<std::pair<std::string, Tensor>> t;
    for (const auto& [n, v] : all) {
      if (n == drop) continue;
      t.emplace_back(n, n == reshape ? v.view({v.numel()}) : v);
    }
    if (!extra.empty()) t.emplace_back(extra, Tensor::zeros({3}));
    io::save_safetensors(path_join(dir, "model.safetensors"), t);
  };
  write_without("layers.1.mixer.x_proj_b.weight", "", "");
  expect_error([&] { VimModel::load(dir); }, {"model.safetensors", "layers.1.mixer.x_proj_b.weight"});
  write_without("", "layers.0.mixer.A_b_log", "");
  expect_error([&] { VimModel::load(dir); }, {"layers.0.mixer.A_b_log", "[32, 4]"});
  write_without("", "", "layers.2.mixer.D");
  expect_error([&] { VimModel::load(dir); }, {"unexpected tensor 'layers.2.mixer.D'", "depth 2"});
  write_file_atomic(path_join(dir, "config.json"), R"({"img_size": 32, "patch_size": "8"})");
  expect_error([&] { VimModel::load(dir); }, {"config.json", "patch_size", "integer"});
  write_file_atomic(path_join(dir, "config.json"), R"({"img_size": 30, "patch_size": 8})");
  expect_error([&] { VimModel::load(dir); }, {"config.json", "stride 8", "img_size 30"});
  write_file_atomic(path_join(dir, "config.json"), R"({"if_rope": true})");
  expect_error([&] { VimModel::load(dir); }, {"config.json", "if_rope"});
  expect_error(
      [&] {
        m.forward(exec, Tensor::zeros({1, 3, 64, 64}));
      },
      {"[batch, 3, 32, 32]", "[1, 3, 64, 64]"});
  expect_error([&] { VimModel::load(path_join(dir, "nothing")); }, {"nothing"});
}

#ifdef MAMBACPP_CLI
TEST(Vim, ClassifyCommand) {
  const VimConfig c = tiny_config();
  const std::string dir = testing::fresh_temp_dir("vim_cli");
  VimModel::random(c, 13).save(path_join(dir, "model"));
  std::filesystem::create_directories(path_join(dir, "imgs"));
  std::mt19937 rng(5);
  for (int i = 0; i < 3; ++i) {
    io::Image im{40 + 7 * i, 50, std::vector<uint8_t>(static_cast<size_t>((40 + 7 * i) * 50 * 3))};
    for (auto& v : im.rgb) v = static_cast<uint8_t>(rng() & 0xFF);
    io::write_png(path_join(dir, "imgs/im" + std::to_string(i) + ".png"), im);
  }
  const std::string model = " -m " + path_join(dir, "model");
  const std::string img = path_join(dir, "imgs/im1.png");
  testing::CliResult r =
      testing::run_cli(MAMBACPP_CLI, "classify" + model + " --image " + img + " --top-k 3");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(testing::count_lines(r.out), 4u) << r.out;  // the file, then 3 classes
  EXPECT_NE(r.out.find("1. class "), std::string::npos) << r.out;
  // The printed top class is the arg-max of the logits the library computes.
  const Tensor x = io::preprocess_image(io::read_image(img), {36, 32}, img);
  const Vec logits = values(VimModel::load(path_join(dir, "model")).forward(exec, x.view({1, 3, 32, 32})));
  const auto top = std::max_element(logits.begin(), logits.end()) - logits.begin();
  EXPECT_NE(r.out.find("1. class " + std::to_string(top) + " "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(c.class_names[static_cast<size_t>(top)]), std::string::npos) << r.out;
  const std::string npy = path_join(dir, "logits.npy");
  r = testing::run_cli(MAMBACPP_CLI,
                       "classify" + model + " --dir " + path_join(dir, "imgs") + " --batch 2 -o " + npy);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(testing::count_lines(r.out), 3u) << r.out;
  EXPECT_NE(r.err.find("images/s"), std::string::npos) << r.err;
  EXPECT_EQ(io::read_npy(npy).shape(), (Shape{3, 5}));
  // A truncated image: non-zero exit, one line naming the file.
  const std::string bytes = read_file(img);
  write_file_atomic(path_join(dir, "imgs/bad.png"), bytes.substr(0, bytes.size() / 3));
  r = testing::run_cli(MAMBACPP_CLI, "classify" + model + " --dir " + path_join(dir, "imgs"));
  EXPECT_NE(r.status, 0);
  EXPECT_EQ(testing::count_lines(r.err), 1u) << r.err;
  EXPECT_NE(r.err.find("bad.png"), std::string::npos) << r.err;
  r = testing::run_cli(MAMBACPP_CLI, "classify" + model);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("--image"), std::string::npos) << r.err;
  r = testing::run_cli(MAMBACPP_CLI,
                       "classify --bench --bench-batch 1 --bench-batch 2 --iters 1 --threads 1");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.out.find("batch    2:"), std::string::npos) << r.out;
}
#endif

// ---- Fixtures from scripts/vim_reference.py (float64 PyTorch on the GPU machine). ----

#ifndef MAMBACPP_VIM_FIXTURES
#define MAMBACPP_VIM_FIXTURES ""
#endif

// MAMBACPP_VIM_FIXTURES in the environment overrides the checkout's folder (a binary run elsewhere).
std::string vim_fixtures() {
  const char* env = std::getenv("MAMBACPP_VIM_FIXTURES");
  return env && *env ? env : MAMBACPP_VIM_FIXTURES;
}

TEST(VimFixture, LogitsMatchThePyTorchReference) {
  const std::string root = vim_fixtures();
  if (!file_exists(path_join(root, "inputs.npy")))
    GTEST_SKIP() << root
                 << "/inputs.npy absent: the model fixtures need PyTorch, run scripts/vim_reference.py "
                 << "on a machine that has it (docs/vision.md)";
  const Tensor inputs = io::read_npy(path_join(root, "inputs.npy"));
  int checked = 0;
  for (const auto& e : std::filesystem::directory_iterator(path_join(root, "models"))) {
    const std::string dir = e.path().string();
    if (!file_exists(path_join(dir, "logits.npy"))) continue;
    const VimModel m = VimModel::load(dir);
    const Tensor want = io::read_npy(path_join(dir, "logits.npy"));
    const Tensor got = m.forward(exec, inputs);
    ASSERT_EQ(got.shape(), want.shape()) << dir;
    EXPECT_LT(testing::max_abs_diff(got, want), 1e-4f) << dir;
    ++checked;
    if (!ops::device_available(Device::cuda)) continue;
    // On a GPU machine: the same ops through their CUDA paths, f32 then bf16 GEMM weights. All of
    // it on cuda_exec's stream, the copies back to the host included: the test binary binds its
    // own Exec to this thread (exec_testing.h), and a copy on that stream would not wait for the
    // work queued on cuda_exec's (one Exec per thread; a GPU run read logits before they were written).
    ops::Exec cuda_exec(Device::cuda);
    const ops::ExecScope bind(cuda_exec);
    VimModel gpu = VimModel::load(dir);
    gpu.to(Device::cuda);
    const float f32_err = testing::max_abs_diff(gpu.forward(cuda_exec, inputs).to(Device::cpu), want);
    const Tensor f32_features = gpu.features(cuda_exec, inputs).to(Device::cpu);
    std::mt19937 rng(11);
    const Tensor u =
        testing::random_tensor({2, gpu.config().seq_len, gpu.config().embed_dim}, rng).to(Device::cuda);
    const Tensor f32_mixer = gpu.mixer(0).forward(cuda_exec, u).to(Device::cpu);
    gpu.set_matmul_dtype(DType::bf16);
    const float mixer_err =
        testing::max_abs_diff(gpu.mixer(0).forward(cuda_exec, u).to(Device::cpu), f32_mixer);
    const float bf16_err = testing::max_abs_diff(gpu.forward(cuda_exec, inputs).to(Device::cpu), want);
    // Where a bf16 difference comes from: the features (patch embedding and blocks) or the head.
    const float features_err =
        testing::max_abs_diff(gpu.features(cuda_exec, inputs).to(Device::cpu), f32_features);
    EXPECT_LT(f32_err, 1e-4f) << dir << " (cuda f32)";
    EXPECT_LT(bf16_err, 2e-2f) << dir << " (cuda bf16; features differ by " << features_err
                               << ", the first mixer on random input by " << mixer_err << ")";
    std::printf("%s: cuda f32 max |err| %.3g, bf16 %.3g (features %.3g, first mixer %.3g of %.3g)\n",
                dir.c_str(), f32_err, bf16_err, features_err, mixer_err,
                testing::max_abs_diff(f32_mixer, Tensor::zeros(f32_mixer.shape())));
  }
  EXPECT_GE(checked, 3);
}

TEST(VimFixture, PreprocessingMatchesTorchvisionOnPil) {
  const std::string dir = path_join(vim_fixtures(), "images");
  if (!file_exists(path_join(dir, "manifest.json")))
    GTEST_SKIP() << dir << "/manifest.json absent: run scripts/vim_reference.py --images-only (Pillow)";
  const nlohmann::json man = nlohmann::json::parse(read_file(path_join(dir, "manifest.json")));
  int checked = 0;
  for (const auto& item : man.at("images")) {
    const std::string src = path_join(dir, item.at("file").get<std::string>());
    const io::Image im = io::read_image(src);
    // Resize(256, bicubic) + CenterCrop(224) pixels, stored losslessly as PNG by the script.
    const auto [w, h] = io::resize_shorter_size(im.width, im.height, 256);
    const io::Image crop = io::center_crop(io::resize_bicubic(im, w, h), 224, 224);
    const io::Image want = io::read_image(path_join(dir, item.at("crop224").get<std::string>()));
    int worst = 0;
    for (size_t i = 0; i < crop.rgb.size(); ++i)
      worst = std::max(worst, std::abs(int(crop.rgb[i]) - int(want.rgb[i])));
    EXPECT_EQ(worst, 0) << src << ": pixels differ from PIL after Resize(256) + CenterCrop(224)";
    // The full transform at a small size, normalized, against torchvision's tensor.
    const io::ImageTransform t{item.at("resize").get<int64_t>(), item.at("crop").get<int64_t>()};
    const Tensor got = io::preprocess_image(im, t, src);
    const Tensor ref = io::read_npy(path_join(dir, item.at("tensor").get<std::string>()));
    EXPECT_LE(testing::max_abs_diff(got, ref), 1.0f / 255.0f) << src;
    ++checked;
  }
  EXPECT_GE(checked, 3);
}

}  // namespace
}  // namespace mamba
