// SCALPEL_USES_TORCH
// Directions from C++: ridge residualization against the normal equations, and
// the weight edit against the inference-time ablation (all writes, and from a
// layer on). NumPy and transformers oracles are in tests/python/test_sra.py.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "scalpel/steer/directions.hpp"
#include "scalpel/errors.hpp"
#include "scalpel/model/transformer.hpp"

namespace {

std::shared_ptr<scalpel::Transformer> tiny_model() {
  return scalpel::Transformer::from_config(
      R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32, "intermediate_size": 48,
          "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 50,
          "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "tie_word_embeddings": false})",
      7, 0.2);
}

TEST(Directions, RidgeMatchesTheNormalEquations) {
  torch::manual_seed(0);
  auto v = torch::randn({40}, torch::kDouble);
  auto A = torch::randn({5, 40}, torch::kDouble);
  for (double lam : {0.0, 0.5, 20.0}) {
    auto r = scalpel::ridge_residualize(v, A, lam);
    auto beta = torch::linalg_solve(A.matmul(A.t()) + lam * torch::eye(5, torch::kDouble), A.matmul(v));
    auto clean = v - A.t().matmul(beta);
    EXPECT_LT((r.clean - clean).abs().max().item<double>(), 1e-9) << lam;
    for (int i = 0; i < 5; ++i) EXPECT_NEAR(r.coefficients[static_cast<size_t>(i)], beta[i].item<double>(), 1e-9);
  }
  auto gcv = scalpel::ridge_residualize(v, A);
  EXPECT_EQ(gcv.gcv_lambdas.size(), 60u);
  EXPECT_GT(gcv.lambda, 0.0);
  EXPECT_THROW(scalpel::ridge_residualize(v, A.narrow(1, 0, 39)), scalpel::ShapeError);
}

TEST(Directions, WeightEditEqualsAblationFromEveryLayer) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(1);
  auto v = torch::randn({32});
  auto tokens = torch::randint(0, 50, {2, 9});
  for (int64_t from : {0, 2}) {
    auto model = tiny_model();
    auto plain = model->forward(tokens);
    at::Tensor hooked;
    {
      auto h = scalpel::ablate_direction(*model, v, 1.0, from);
      hooked = model->forward(tokens);
    }
    EXPECT_GT((hooked - plain).abs().max().item<double>(), 1e-3);
    auto edited = scalpel::orthogonalize_weights(*model, v, 1.0, from);
    EXPECT_EQ(edited.size(), from == 0 ? 7u : 2u);
    EXPECT_LT((model->forward(tokens) - hooked).abs().max().item<double>(), 1e-4) << from;
  }
  auto model = tiny_model();
  EXPECT_THROW(scalpel::ablate_direction(*model, v, 1.0, 3), scalpel::InvalidArgument);
  EXPECT_THROW(scalpel::orthogonalize_weights(*model, torch::zeros({32})), scalpel::InvalidArgument);
}

TEST(Directions, ActivationsStopAfterTheLastBlockRead) {
  torch::NoGradGuard no_grad;
  auto model = tiny_model();
  auto tokens = torch::randint(0, 50, {1, 7});
  auto [logits, full] = model->run_with_cache(tokens);
  auto [resid, cache] = model->run_with_cache(tokens, {"blocks.0.hook_mlp_out", "blocks.1.hook_resid_pre"}, {}, false, 1);
  // (hooking every point takes the unfused attention path: equal up to float rounding)
  EXPECT_LT((resid - full.at("blocks.1.hook_resid_pre")).abs().max().item<double>(), 1e-5);  // block 1 never ran
  EXPECT_EQ(cache.count("blocks.1.hook_resid_pre"), 0u);
  EXPECT_LT((cache.at("blocks.0.hook_mlp_out") - full.at("blocks.0.hook_mlp_out")).abs().max().item<double>(), 1e-5);
  EXPECT_THROW(model->run_with_cache(tokens, {}, {}, false, 4), scalpel::InvalidArgument);
  std::vector<std::vector<int64_t>> prompts{{3, 4, 5, 6}, {7, 8, 9}};
  auto acts = scalpel::collect_activations(*model, prompts, {"blocks.0.hook_resid_post"}, {-1});
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto c = model->run_with_cache(torch::tensor(prompts[i]).unsqueeze(0), {"blocks.0.hook_resid_post"}).second;
    EXPECT_LT((acts[static_cast<int64_t>(i)][0][0] - c.at("blocks.0.hook_resid_post")[0][-1]).abs().max().item<double>(),
              1e-5);
  }
  EXPECT_THROW(scalpel::collect_activations(*model, prompts, {"blocks.x.hook_resid_pre"}, {-1}), scalpel::UnknownName);
}

}  // namespace
