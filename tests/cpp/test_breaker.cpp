// SCALPEL_USES_TORCH
// Circuit breakers from C++: a no-op at zero strength (bit-identical), the
// edit at its site equal to the formula, merge equal to attach, the file round
// trip, the model check, and training through train/'s loop. The transformers
// and peft oracles are in tests/python/test_breaker.py.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "scalpel/errors.hpp"
#include "scalpel/eval/metrics.hpp"
#include "scalpel/model/transformer.hpp"
#include "scalpel/steer/breaker.hpp"
#include "support/test_util.hpp"
#include "support/tiny_model.hpp"

namespace {

using scalpel::BreakerSite;
using scalpel::CircuitBreaker;

std::shared_ptr<scalpel::Transformer> tiny_model(uint64_t seed = 7) { return scalpel::test::tiny_llama(seed); }

at::Tensor tokens() { return torch::randint(1, 50, {2, 7}, torch::TensorOptions().dtype(torch::kLong)); }

void randomize(CircuitBreaker& cb, double scale = 0.3) {
  torch::manual_seed(11);
  for (auto& a : cb.adapters) {
    a.A = torch::randn(a.A.sizes()) * scale;
    a.B = torch::randn(a.B.sizes()) * scale;
  }
}

const std::vector<BreakerSite> kSites{{"blocks.1.attn.hook_z", 2}, {"blocks.0.attn.hook_z", -1},
                                      {"blocks.1.mlp.hook_post"},  {"blocks.0.hook_attn_out"},
                                      {"blocks.2.hook_mlp_out"}};

TEST(Breaker, ZeroStrengthIsBitIdentical) {
  auto m = tiny_model();
  torch::manual_seed(0);
  auto t = tokens();
  auto base = m->forward(t);
  auto cb = CircuitBreaker::create(*m, kSites, 3);
  {
    auto h = cb.attach(*m);  // B = 0
    EXPECT_TRUE(torch::equal(m->forward(t), base));
  }
  randomize(cb);
  {
    auto h = cb.attach(*m, 0.0);
    EXPECT_TRUE(torch::equal(m->forward(t), base));
  }
  {
    auto h = cb.attach(*m);
    EXPECT_GT((m->forward(t) - base).abs().max().item<double>(), 1e-3);
  }
  EXPECT_TRUE(torch::equal(m->forward(t), base));  // the handle removed the hooks
}

TEST(Breaker, EditAtTheSiteIsTheFormula) {
  auto m = tiny_model();
  torch::manual_seed(1);
  auto t = tokens();
  auto cb = CircuitBreaker::create(*m, {{"blocks.1.attn.hook_z", 3}}, 2);
  randomize(cb);
  const std::string site = "blocks.1.attn.hook_z";
  auto before = m->run_with_cache(t, {site}).second.at(site);
  at::Tensor seen;
  auto h = cb.attach(*m, 1.5);
  auto probe = m->add_hook(site, [&](const at::Tensor& x, const scalpel::HookPoint&) {
    seen = x.clone();
    return at::Tensor();
  });
  m->forward(t);
  auto want = before.clone();
  const auto& a = cb.adapters[0];
  want.select(2, 3) += 1.5 * torch::matmul(torch::matmul(before.select(2, 3), a.A.t()), a.B.t());
  EXPECT_LT((seen - want).abs().max().item<double>(), 1e-5);
  EXPECT_TRUE(torch::equal(seen.narrow(2, 0, 3), before.narrow(2, 0, 3)));  // other heads untouched
}

TEST(Breaker, MergeEqualsAttach) {
  auto m = tiny_model();
  torch::manual_seed(2);
  auto t = tokens();
  auto cb = CircuitBreaker::create(*m, kSites, 2);
  randomize(cb);
  at::Tensor attached;
  {
    auto h = cb.attach(*m, 0.8);
    attached = m->forward(t);
  }
  ASSERT_EQ(cb.merge_blocker(*m), "");
  cb.merge(*m, 0.8);
  EXPECT_LT((m->forward(t) - attached).abs().max().item<double>(), 1e-4);
  auto resid = CircuitBreaker::create(*m, {{"blocks.1.hook_resid_mid"}}, 2);
  EXPECT_THROW(resid.merge(*m), scalpel::Unsupported);
}

TEST(Breaker, FileRoundTripAndModelCheck) {
  auto m = tiny_model();
  auto cb = CircuitBreaker::create(*m, kSites, 3);
  randomize(cb);
  cb.delta = 0.5;
  scalpel::test::TempDir tmp;
  scalpel::save_intervention(cb, tmp.path("cb.safetensors"));
  auto back = std::dynamic_pointer_cast<CircuitBreaker>(scalpel::load_intervention(tmp.path("cb.safetensors")));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->delta, 0.5);
  ASSERT_EQ(back->adapters.size(), cb.adapters.size());
  for (size_t i = 0; i < cb.adapters.size(); ++i) {
    EXPECT_TRUE(torch::equal(back->adapters[i].A, cb.adapters[i].A));
    EXPECT_TRUE(torch::equal(back->adapters[i].B, cb.adapters[i].B));
    EXPECT_EQ(back->adapters[i].site.head, cb.adapters[i].site.head);
  }
  auto other = tiny_model(8);
  EXPECT_THROW(back->attach(*other), scalpel::InvalidArgument);
  EXPECT_NO_THROW(back->attach(*other, std::nullopt, /*check_model=*/false));
}

TEST(Breaker, TrainingLowersTheMarginAndFreezesTheModel) {
  auto m = tiny_model();
  const auto data = scalpel::test::tiny_harm_data();
  const auto before = scalpel::harm_score(*m, data.prompts, data.harmful, data.neutral);
  const auto w = m->residual_writers().back().tensor.clone();
  auto cb = CircuitBreaker::create(*m, {{"blocks.2.mlp.hook_post"}}, 4);
  scalpel::TrainOptions o;
  o.steps = 40;
  o.batch_size = 6;
  o.lr = 3e-2;
  o.warmup_steps = 2;
  auto res = scalpel::train_breaker(*m, cb, data, {}, o);
  EXPECT_EQ(res.steps, 40);
  EXPECT_EQ(res.parts.at("harm").size(), 40u);
  at::Tensor after;
  {
    auto h = cb.attach(*m);
    after = scalpel::harm_score(*m, data.prompts, data.harmful, data.neutral);
  }
  EXPECT_LT(after.mean().item<double>(), before.mean().item<double>() - 1.0);
  EXPECT_TRUE(torch::equal(m->residual_writers().back().tensor, w));
  EXPECT_FALSE(cb.adapters[0].B.requires_grad());
}

}  // namespace
