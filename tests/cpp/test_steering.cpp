// SCALPEL_USES_TORCH
// Steering vectors from C++: a no-op at α = 0 (bit-identical), the edit at its
// site equal to a + α·v (per head too), the contrast vectors equal to the
// activations' own mean difference and first principal component, the file
// round trip, training on the breaker objective with the norm bound, and the
// control-vector GGUF read back with scalpel's GGUF reader. The transformers,
// steering-vectors, repeng and gguf oracles are in tests/python/test_steering.py.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "scalpel/errors.hpp"
#include "scalpel/eval/metrics.hpp"
#include "scalpel/io/gguf.hpp"
#include "scalpel/model/transformer.hpp"
#include "scalpel/steer/steering.hpp"
#include "support/test_util.hpp"
#include "support/tiny_model.hpp"

namespace {

using scalpel::SteeringVector;

std::shared_ptr<scalpel::Transformer> tiny_model(uint64_t seed = 7) { return scalpel::test::tiny_llama(seed); }

std::vector<std::vector<int64_t>> prompts(int n, int len, uint64_t seed) {
  torch::manual_seed(seed);
  std::vector<std::vector<int64_t>> out;
  for (int i = 0; i < n; ++i) {
    auto p = torch::randint(1, 50, {len + i % 3}, torch::TensorOptions().dtype(torch::kLong));
    out.emplace_back(p.data_ptr<int64_t>(), p.data_ptr<int64_t>() + p.numel());
  }
  return out;
}

TEST(Steering, ZeroAlphaIsBitIdenticalAndTheEditIsTheFormula) {
  auto m = tiny_model();
  torch::manual_seed(0);
  auto t = torch::randint(1, 50, {2, 6}, torch::TensorOptions().dtype(torch::kLong));
  auto base = m->forward(t);
  auto sv = SteeringVector::create(*m, {{"blocks.1.hook_resid_pre"}, {"blocks.1.attn.hook_z", 2}});
  sv.vectors[0] = torch::randn({32});
  sv.vectors[1] = torch::randn({8});
  {
    auto h = sv.attach(*m, 0.0);
    EXPECT_TRUE(torch::equal(m->forward(t), base));
  }
  auto resid = m->run_with_cache(t, {"blocks.1.hook_resid_pre"}).second.at("blocks.1.hook_resid_pre");
  at::Tensor seen_resid, seen_z, z_before;
  {
    auto h = sv.attach(*m, 1.5);
    auto p1 = m->add_hook("blocks.1.hook_resid_pre", [&](const at::Tensor& x, const scalpel::HookPoint&) {
      seen_resid = x.clone();
      return at::Tensor();
    });
    auto p2 = m->add_hook("blocks.1.attn.hook_z", [&](const at::Tensor& x, const scalpel::HookPoint&) {
      seen_z = x.clone();
      return at::Tensor();
    });
    m->forward(t);
  }
  EXPECT_LT((seen_resid - (resid + 1.5 * sv.vectors[0])).abs().max().item<double>(), 1e-5);
  // the z hook sees the steered residual stream: its expected value is z under the resid edit alone, plus α·v in head 2
  auto only_resid = sv;
  only_resid.sites.resize(1);
  only_resid.vectors.resize(1);
  {
    auto h = only_resid.attach(*m, 1.5);
    z_before = m->run_with_cache(t, {"blocks.1.attn.hook_z"}).second.at("blocks.1.attn.hook_z");
  }
  auto want = z_before.clone();
  want.select(2, 2) += 1.5 * sv.vectors[1];
  EXPECT_LT((seen_z - want).abs().max().item<double>(), 1e-5);
  EXPECT_TRUE(torch::equal(m->forward(t), base));  // handles removed
}

TEST(Steering, ContrastVectorsAreTheActivationsMeanDifferenceAndPrincipalComponent) {
  auto m = tiny_model();
  const auto pos = prompts(6, 5, 1), neg = prompts(6, 5, 2);
  const std::string hook = "blocks.2.hook_resid_pre";
  auto read = [&](const std::vector<std::vector<int64_t>>& ps) {
    std::vector<at::Tensor> rows;
    for (const auto& p : ps) {
      auto t = torch::tensor(p, torch::TensorOptions().dtype(torch::kLong)).unsqueeze(0);
      auto a = m->run_with_cache(t, {hook}).second.at(hook);
      rows.push_back(a[0][-1].to(torch::kDouble));
    }
    return torch::stack(rows);
  };
  const auto P = read(pos), N = read(neg);
  auto mean = SteeringVector::from_contrast(*m, {{hook}}, pos, neg);
  EXPECT_LT((mean.vectors[0].to(torch::kDouble) - (P.mean(0) - N.mean(0))).abs().max().item<double>(), 1e-4);
  auto pca = SteeringVector::from_contrast(*m, {{hook}}, pos, neg, {-1}, "pca_diff");
  auto D = P - N;
  auto cov = (D - D.mean(0)).t().matmul(D - D.mean(0));
  auto eig = torch::linalg_eigh(cov);
  auto top = std::get<1>(eig).select(1, 31);  // eigenvalues ascend
  auto got = pca.vectors[0].to(torch::kDouble);
  EXPECT_GT(std::abs(torch::dot(got / got.norm(), top).item<double>()), 0.9999);
  EXPECT_GT(torch::dot(got, P.mean(0) - N.mean(0)).item<double>(), 0.0);  // signed towards the mean difference
  EXPECT_THROW(SteeringVector::from_contrast(*m, {{hook}}, pos, prompts(3, 5, 3), {-1}, "pca_diff"), scalpel::InvalidArgument);
  EXPECT_THROW(SteeringVector::from_contrast(*m, {{hook}}, pos, neg, {-1}, "median"), scalpel::InvalidArgument);
  EXPECT_THROW(SteeringVector::create(*m, {{"blocks.9.hook_resid_pre"}}), scalpel::UnknownName);
  EXPECT_THROW(SteeringVector::create(*m, {{"blocks.0.attn.hook_z", 4}}), scalpel::InvalidArgument);
}

TEST(Steering, FileRoundTripAndControlVector) {
  auto m = tiny_model();
  auto sv = SteeringVector::create(*m, {{"blocks.1.hook_resid_post"}, {"blocks.2.hook_resid_pre"}, {"blocks.0.attn.hook_z", -1}});
  torch::manual_seed(4);
  for (auto& v : sv.vectors) v = torch::randn(v.sizes());
  sv.alpha = 0.7;
  sv.max_norm = 2.0;
  scalpel::test::TempDir dir;
  const auto path = dir.path("sv.safetensors");
  scalpel::save_intervention(sv, path);
  auto back = std::dynamic_pointer_cast<SteeringVector>(scalpel::load_intervention(path));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->alpha, 0.7);
  EXPECT_EQ(back->max_norm, 2.0);
  for (size_t i = 0; i < sv.vectors.size(); ++i) EXPECT_TRUE(torch::equal(back->vectors[i], sv.vectors[i]));
  for (const auto& v : sv.effective_vectors()) EXPECT_LE(v.norm().item<double>(), 2.0 + 1e-5);

  const auto gguf = dir.path("cv.gguf");
  EXPECT_THROW(scalpel::export_control_vector(*m, sv, gguf), scalpel::Unsupported);  // the z site
  sv.sites.pop_back();
  sv.vectors.pop_back();
  scalpel::export_control_vector(*m, sv, gguf);
  scalpel::GGUFFile f(gguf);
  EXPECT_EQ(f.architecture(), "controlvector");
  EXPECT_EQ(f.get("controlvector.model_hint").as_string(), "llama");
  EXPECT_EQ(f.get("controlvector.layer_count").as_int(), 1);
  ASSERT_EQ(f.tensors().size(), 1u);  // resid_post of 1 and resid_pre of 2 are block 1's output
  EXPECT_EQ(f.tensors()[0].name, "direction.1");
  const auto eff = sv.effective_vectors();
  auto want = (eff[0] + eff[1]) * 0.7;
  auto got = torch::from_blob(const_cast<uint8_t*>(f.tensor_data("direction.1")), {32}, torch::kFloat).clone();
  EXPECT_LT((got - want).abs().max().item<double>(), 1e-6);
  EXPECT_THROW(scalpel::export_control_vector(*m, sv, gguf), scalpel::InvalidArgument);  // exists
  auto zero = SteeringVector::create(*m, {{"blocks.0.hook_resid_post"}});
  EXPECT_THROW(scalpel::export_control_vector(*m, zero, gguf, std::nullopt, true), scalpel::Unsupported);  // block 0
}

TEST(Steering, TrainingLowersTheMarginWithinTheNormBound) {
  auto m = tiny_model();
  const auto data = scalpel::test::tiny_harm_data();
  const auto before = scalpel::harm_score(*m, data.prompts, data.harmful, data.neutral);
  auto sv = SteeringVector::create(*m, {{"blocks.2.hook_resid_pre"}});
  sv.max_norm = 3.0;
  scalpel::TrainOptions o;
  o.steps = 40;
  o.batch_size = 6;
  o.lr = 0.1;
  o.warmup_steps = 2;
  scalpel::BreakerObjective obj;
  obj.preserve = "none";
  auto res = scalpel::train_steering(*m, sv, data, obj, o);
  EXPECT_EQ(res.steps, 40);
  at::Tensor after;
  {
    auto h = sv.attach(*m);
    after = scalpel::harm_score(*m, data.prompts, data.harmful, data.neutral);
  }
  EXPECT_LT(after.mean().item<double>(), before.mean().item<double>() - 0.5);
  EXPECT_LE(sv.effective_vectors()[0].norm().item<double>(), 3.0 + 1e-5);
  EXPECT_FALSE(sv.vectors[0].requires_grad());
  sv.alpha = 0.0;
  EXPECT_THROW(scalpel::train_steering(*m, sv, data, obj, o), scalpel::InvalidArgument);
}

}  // namespace
