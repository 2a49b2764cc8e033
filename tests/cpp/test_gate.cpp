// SCALPEL_USES_TORCH
// Harm probes and gated interventions from C++: the probe separates what it
// was fitted on (AUROC), a threshold gate leaves a benign row of a mixed batch
// bit-identical while it steers the harmful one, a sigmoid gate learns to
// open on harmful prompts and close on benign ones through the objective, the
// file round trip, and the errors (a probe after the edit, exports that cannot
// carry a gate).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "scalpel/errors.hpp"
#include "scalpel/eval/metrics.hpp"
#include "scalpel/model/transformer.hpp"
#include "scalpel/steer/gate.hpp"
#include "scalpel/steer/steering.hpp"
#include "support/test_util.hpp"
#include "support/tiny_model.hpp"

namespace {

using scalpel::GatedIntervention;
using scalpel::HarmProbe;
using scalpel::SteeringVector;

std::shared_ptr<scalpel::Transformer> tiny_model(uint64_t seed = 7) { return scalpel::test::tiny_llama(seed); }

// Prompts of random tokens ending in `last`: "harmful" ones end in 5, benign ones in 6 (a probe on
// the embeddings separates them exactly).
std::vector<std::vector<int64_t>> ending_in(int64_t last, int n, uint64_t seed) {
  torch::manual_seed(seed);
  std::vector<std::vector<int64_t>> out;
  for (int i = 0; i < n; ++i) {
    auto p = torch::randint(10, 50, {4 + i % 3}, torch::TensorOptions().dtype(torch::kLong));  // ragged lengths
    std::vector<int64_t> v(p.data_ptr<int64_t>(), p.data_ptr<int64_t>() + p.numel());
    v.push_back(last);
    out.push_back(v);
  }
  return out;
}

TEST(Gate, ProbeSeparatesAndThresholdGateLeavesBenignRowsAlone) {
  auto m = tiny_model();
  const auto harmful = ending_in(5, 12, 1), benign = ending_in(6, 12, 2);
  auto probe = HarmProbe::fit(*m, "blocks.0.hook_resid_pre", harmful, benign);
  auto held_h = ending_in(5, 8, 3), held_b = ending_in(6, 8, 4);
  auto scores = torch::cat({probe.predict(*m, held_h), probe.predict(*m, held_b)});
  auto labels = torch::cat({torch::ones({8}), torch::zeros({8})});
  EXPECT_EQ(scalpel::auroc(scores, labels), 1.0);
  EXPECT_DOUBLE_EQ(scalpel::auroc(torch::tensor({0.1, 0.4, 0.35, 0.8}), torch::tensor({0, 0, 1, 1})), 0.75);

  auto sv = std::make_shared<SteeringVector>(SteeringVector::create(*m, {{"blocks.2.hook_resid_pre"}}));
  torch::manual_seed(5);
  sv->vectors[0] = torch::randn({32}) * 3.0;
  auto g = GatedIntervention::create(*m, sv, probe, "threshold");
  auto t = torch::stack({torch::tensor(held_h[0], torch::kLong), torch::tensor(held_b[3], torch::kLong)});  // both 4 + 0
  auto base = m->forward(t);
  at::Tensor steered_all;
  {
    auto h = sv->attach(*m);
    steered_all = m->forward(t);
  }
  at::Tensor gated;
  {
    auto h = g.attach(*m);
    gated = m->forward(t);
  }
  EXPECT_TRUE(torch::equal(gated[1], base[1]));                           // benign row: gate closed
  EXPECT_LT((gated[0] - steered_all[0]).abs().max().item<double>(), 1e-5);  // harmful row: full strength
  EXPECT_TRUE(torch::equal(m->forward(t), base));                          // detached
  auto values = g.gate_values(*m, {held_h[0], held_b[3]});
  EXPECT_EQ(values[0].item<float>(), 1.0f);
  EXPECT_EQ(values[1].item<float>(), 0.0f);

  scalpel::test::TempDir dir;
  scalpel::save_intervention(g, dir.path("g.safetensors"));  // (held_b[3]: the same length as held_h[0])
  auto back = std::dynamic_pointer_cast<GatedIntervention>(scalpel::load_intervention(dir.path("g.safetensors")));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->mode, "threshold");
  EXPECT_EQ(back->inner->kind(), "steering_vector");
  {
    auto h = back->attach(*m);
    EXPECT_TRUE(torch::equal(m->forward(t), gated));
  }
  // the probe must read before the edit runs; a gate cannot become a control vector
  auto late = probe;
  late.hook = "blocks.2.hook_resid_post";
  EXPECT_THROW(GatedIntervention::create(*m, sv, late), scalpel::InvalidArgument);
  EXPECT_THROW(scalpel::export_control_vector(*m, g, dir.path("x.gguf")), scalpel::Unsupported);
}

TEST(Gate, SigmoidGateLearnsToOpenOnHarmfulPromptsOnly) {
  auto m = tiny_model();
  const auto harmful = ending_in(5, 12, 1), benign = ending_in(6, 12, 2);
  auto probe = HarmProbe::fit(*m, "blocks.0.hook_resid_pre", harmful, benign);
  scalpel::BreakerData data;
  for (size_t i = 0; i < harmful.size(); ++i) {  // completions of different lengths: the probe must read each
    data.prompts.push_back(harmful[i]);          // prompt's own end in the left-padded teacher-forced batch
    data.harmful.push_back(i % 2 ? std::vector<int64_t>{1} : std::vector<int64_t>{1, 2, 3});
    data.neutral.push_back(i % 3 ? std::vector<int64_t>{40} : std::vector<int64_t>{40, 41});
  }
  for (const auto& p : benign) data.preserve.push_back(p);
  // a vector that lowers the harm (trained unconditionally first), then the gate around it
  auto sv = std::make_shared<SteeringVector>(SteeringVector::create(*m, {{"blocks.2.hook_resid_pre"}}));
  scalpel::TrainOptions o;
  o.steps = 40;
  o.batch_size = 12;
  o.lr = 0.1;
  o.warmup_steps = 2;
  scalpel::BreakerObjective harm_only;
  harm_only.preserve = "none";
  scalpel::train_steering(*m, *sv, data, harm_only, o);
  auto g = GatedIntervention::create(*m, sv, probe, "sigmoid", 0.0, 0.0);  // starts half open everywhere
  scalpel::BreakerObjective obj;
  obj.lambda_preserve = 10.0;
  o.lr = 0.3;
  o.steps = 60;
  auto res = scalpel::train_gate(*m, g, data, obj, o);
  EXPECT_EQ(res.steps, 60);
  const auto on = g.gate_values(*m, ending_in(5, 8, 3)).mean().item<double>();
  const auto off = g.gate_values(*m, ending_in(6, 8, 4)).mean().item<double>();
  EXPECT_GT(on, 0.8);
  EXPECT_LT(off, 0.2);
  EXPECT_FALSE(g.gate.requires_grad());
}

}  // namespace
