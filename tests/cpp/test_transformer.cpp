// SCALPEL_USES_TORCH
// The hooked transformer from C++: hook semantics, RAII removal, caching, and
// KV-cache generation equal to full recomputation. (Numerical parity with
// transformers is tested from Python, where the oracle lives.)
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "scalpel/errors.hpp"
#include "scalpel/model/transformer.hpp"

namespace {

scalpel::ModelConfig tiny_config() {
  scalpel::ModelConfig c;
  c.architecture = "llama";
  c.n_layers = 2;
  c.d_model = 32;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.d_head = 8;
  c.d_mlp = 48;
  c.d_vocab = 50;
  c.n_ctx = 64;
  c.rotary_dim = 8;
  return c;
}

// Random weights under the Llama names.
std::map<std::string, at::Tensor> tiny_weights(const scalpel::ModelConfig& c) {
  torch::manual_seed(0);
  auto r = [](std::vector<int64_t> shape) { return torch::randn(shape) * 0.2; };
  std::map<std::string, at::Tensor> w;
  w["model.embed_tokens.weight"] = r({c.d_vocab, c.d_model});
  w["lm_head.weight"] = r({c.d_vocab, c.d_model});
  w["model.norm.weight"] = 1 + r({c.d_model});
  for (int64_t l = 0; l < c.n_layers; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    w[p + "input_layernorm.weight"] = 1 + r({c.d_model});
    w[p + "post_attention_layernorm.weight"] = 1 + r({c.d_model});
    w[p + "self_attn.q_proj.weight"] = r({c.n_heads * c.d_head, c.d_model});
    w[p + "self_attn.k_proj.weight"] = r({c.n_kv_heads * c.d_head, c.d_model});
    w[p + "self_attn.v_proj.weight"] = r({c.n_kv_heads * c.d_head, c.d_model});
    w[p + "self_attn.o_proj.weight"] = r({c.d_model, c.n_heads * c.d_head});
    w[p + "mlp.gate_proj.weight"] = r({c.d_mlp, c.d_model});
    w[p + "mlp.up_proj.weight"] = r({c.d_mlp, c.d_model});
    w[p + "mlp.down_proj.weight"] = r({c.d_model, c.d_mlp});
  }
  return w;
}

struct TinyModel : ::testing::Test {
  scalpel::ModelConfig cfg = tiny_config();
  scalpel::Transformer model{cfg, tiny_weights(cfg), at::kFloat};
  at::Tensor tokens = torch::randint(0, 50, {2, 9}, torch::TensorOptions().dtype(torch::kLong));
};

}  // namespace

TEST_F(TinyModel, IdentityHooksAreBitIdentical) {
  auto plain = model.forward(tokens);
  std::vector<std::pair<std::string, scalpel::HookFn>> hooks;
  for (const auto& n : model.hook_names())
    if (n.find("attn_scores") == std::string::npos && n.find("pattern") == std::string::npos &&
        n.find("result") == std::string::npos)
      hooks.emplace_back(n, [](const at::Tensor& x, const scalpel::HookPoint&) { return x; });
  auto handle = model.add_hooks(hooks);
  EXPECT_TRUE(torch::equal(model.forward(tokens), plain));
}

TEST_F(TinyModel, HandleRemovesHooksAlsoOnException) {
  auto plain = model.forward(tokens);
  try {
    auto h = model.add_hook("blocks.0.hook_resid_pre", [](const at::Tensor&, const scalpel::HookPoint&) -> at::Tensor {
      throw std::runtime_error("boom");
    });
    model.forward(tokens);
    FAIL() << "the hook should have thrown";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "boom");
  }
  EXPECT_FALSE(model.hook_point("blocks.0.hook_resid_pre").active());
  EXPECT_TRUE(torch::equal(model.forward(tokens), plain));
}

TEST_F(TinyModel, ZeroAblationChangesOutputAndCacheHasShapes) {
  auto plain = model.forward(tokens);
  {
    auto h = model.add_hook("blocks.1.attn.hook_z", [](const at::Tensor& z, const scalpel::HookPoint&) {
      auto out = z.clone();
      out.select(2, 1).zero_();  // ablate head 1
      return out;
    });
    EXPECT_GT((model.forward(tokens) - plain).abs().max().item<float>(), 1e-4f);
  }
  auto [logits, cache] = model.run_with_cache(tokens, {"blocks.0.attn.hook_k", "blocks.1.attn.hook_result"});
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(cache["blocks.0.attn.hook_k"].sizes(), (std::vector<int64_t>{2, 9, 2, 8}));
  EXPECT_EQ(cache["blocks.1.attn.hook_result"].sizes(), (std::vector<int64_t>{2, 9, 4, 32}));
  EXPECT_LT((logits - plain).abs().max().item<float>(), 1e-5f);
}

TEST_F(TinyModel, UnknownHookNameListsNearest) {
  try {
    model.add_hook("blocks.0.hook_resid_pr", [](const at::Tensor& x, const scalpel::HookPoint&) { return x; });
    FAIL();
  } catch (const scalpel::UnknownName& e) {
    EXPECT_NE(std::string(e.what()).find("blocks.0.hook_resid_pre"), std::string::npos) << e.what();
  }
}

TEST_F(TinyModel, BadTokensAreClearErrors) {
  EXPECT_THROW(model.forward(torch::tensor({1, 2, 3})), scalpel::ShapeError);
  EXPECT_THROW(model.forward(torch::tensor({{1, 50}})), scalpel::InvalidArgument);
  EXPECT_THROW(model.forward(torch::ones({1, 3})), scalpel::InvalidArgument);
}

TEST_F(TinyModel, CachedGenerationEqualsFullRecomputation) {
  scalpel::GenerateOptions opt;
  opt.max_new_tokens = 8;
  std::vector<std::vector<int64_t>> prompts = {{3, 4, 5, 6, 7}, {9, 8}};
  auto res = model.generate(prompts, opt);
  for (size_t i = 0; i < prompts.size(); ++i) {
    std::vector<int64_t> seq = prompts[i];
    for (int64_t step = 0; step < opt.max_new_tokens; ++step) {
      auto logits = model.forward(torch::tensor(seq).unsqueeze(0));
      seq.push_back(logits[0][-1].argmax().item<int64_t>());
    }
    std::vector<int64_t> expected(seq.begin() + static_cast<long>(prompts[i].size()), seq.end());
    EXPECT_EQ(res.new_tokens[i], expected) << "row " << i;
  }
}

TEST_F(TinyModel, HooksActAtEveryDecodeStep) {
  int calls = 0;
  auto h = model.add_hook("blocks.0.hook_resid_post", [&](const at::Tensor& x, const scalpel::HookPoint&) {
    ++calls;
    return at::Tensor();
  });
  scalpel::GenerateOptions opt;
  opt.max_new_tokens = 5;
  model.generate({{1, 2, 3}}, opt);
  EXPECT_EQ(calls, 5);  // one prefill + four decode steps
}

TEST_F(TinyModel, SamplingIsReproducibleForASeed) {
  scalpel::GenerateOptions opt;
  opt.max_new_tokens = 10;
  opt.do_sample = true;
  opt.temperature = 1.5;
  opt.top_k = 20;
  opt.top_p = 0.9;
  opt.seed = 7;
  auto a = model.generate({{1, 2, 3}}, opt).new_tokens;
  auto b = model.generate({{1, 2, 3}}, opt).new_tokens;
  EXPECT_EQ(a, b);
  opt.seed = 8;
  auto c = model.generate({{1, 2, 3}}, opt).new_tokens;
  EXPECT_NE(a, c);
}

TEST_F(TinyModel, StopTokensEndARow) {
  scalpel::GenerateOptions opt;
  opt.max_new_tokens = 6;
  auto free_run = model.generate({{1, 2, 3}}, opt).new_tokens[0];
  opt.stop_tokens = {free_run[1]};
  auto stopped = model.generate({{1, 2, 3}}, opt).new_tokens[0];
  ASSERT_GE(stopped.size(), 1u);
  EXPECT_EQ(stopped.back(), free_run[1]);
  EXPECT_LE(stopped.size(), 2u);
}
