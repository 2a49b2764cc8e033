// SCALPEL_USES_TORCH
// The log-likelihood engine from C++: shared contexts, padding, truncation and
// rolling windows give the numbers of one plain forward pass per request; the
// KV cache continues rows exactly; hooks apply; bad requests are refused. The
// lm-eval `hf` oracle is in tests/python/test_loglikelihood.py.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "scalpel/errors.hpp"
#include "scalpel/eval/loglikelihood.hpp"
#include "scalpel/eval/metrics.hpp"
#include "scalpel/model/transformer.hpp"

namespace {

using scalpel::TokenRequest;

// Mistral layout with a sliding window shorter than the sequences, so that
// the window must follow positions through padding and the cache.
std::shared_ptr<scalpel::Transformer> tiny_model() {
  return scalpel::Transformer::from_config(
      R"({"architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_size": 32, "intermediate_size": 48,
          "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 40,
          "max_position_embeddings": 256, "rms_norm_eps": 1e-6, "sliding_window": 5, "tie_word_embeddings": false})",
      3, 0.3);
}

// The reference: one unpadded forward pass of context + continuation[:-1].
double reference(scalpel::Transformer& m, const TokenRequest& r, int64_t max_length = 1 << 30) {
  std::vector<int64_t> seq = r.context;
  seq.insert(seq.end(), r.continuation.begin(), r.continuation.end());
  if (static_cast<int64_t>(seq.size()) > max_length + 1) seq.erase(seq.begin(), seq.end() - (max_length + 1));
  const int64_t ctx = static_cast<int64_t>(seq.size() - r.continuation.size());
  seq.pop_back();
  auto logp = torch::log_softmax(m.forward(torch::tensor(seq, torch::kLong).unsqueeze(0)), -1)[0].to(torch::kDouble);
  double total = 0;
  for (size_t j = 0; j < r.continuation.size(); ++j)
    total += logp[ctx - 1 + static_cast<int64_t>(j)][r.continuation[j]].item<double>();
  return total;
}

std::vector<TokenRequest> requests() {
  // A few-shot-like preamble of 70 tokens that several contexts share (one
  // bucket; the engine runs the preamble once), then contexts of their own.
  std::vector<int64_t> pre;
  for (int64_t i = 0; i < 70; ++i) pre.push_back(1 + (i * 7) % 37);
  auto with = [&](std::vector<int64_t> tail) {
    auto v = pre;
    v.insert(v.end(), tail.begin(), tail.end());
    return v;
  };
  return {
      {with({3}), {4, 5, 6}},                  {with({3}), {8}},
      {with({9, 10, 11, 12, 13}), {2, 3}},     {with({9, 10}), {31, 32, 33, 34}},
      {with({17, 18, 19}), {20}},              {pre, {1, 2, 3, 4, 5, 6, 7}},
      {{1, 2, 3, 4, 5, 6, 7, 8}, {9}},           {{1, 2, 3, 4, 5, 6, 7, 8}, {10, 11, 12}},
      {{1, 2, 3, 4, 5, 6, 7, 8}, {13, 14}},      {{5, 6}, {7, 8, 9, 10, 11, 12, 13}},
      {{5, 6}, {30}},                            {{20, 21, 22}, {23, 24, 25, 26}},
      {{3}, {4, 5}},                             {{7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7}, {1, 2, 3}},
  };
}

TEST(Loglikelihood, SharedAndUnsharedEqualOnePassPerRequest) {
  auto m = tiny_model();
  auto reqs = requests();
  for (bool share : {true, false})
    for (int64_t bs : {1, 2, 16}) {
      scalpel::LoglikelihoodOptions o;
      o.batch_size = bs;
      o.share_context = share;
      o.progress = false;
      auto got = scalpel::loglikelihood_tokens(*m, reqs, o);
      ASSERT_EQ(got.size(), reqs.size());
      for (size_t i = 0; i < reqs.size(); ++i)
        EXPECT_NEAR(got[i].logprob, reference(*m, reqs[i]), 1e-4) << "request " << i << " share " << share << " bs " << bs;
    }
}

TEST(Loglikelihood, GreedyFlagFollowsTheArgmax) {
  auto m = tiny_model();
  std::vector<int64_t> ctx{4, 9, 2};
  std::vector<int64_t> greedy_cont;
  auto seq = ctx;
  for (int i = 0; i < 3; ++i) {
    auto next = m->forward(torch::tensor(seq, torch::kLong).unsqueeze(0))[0][-1].argmax().item<int64_t>();
    greedy_cont.push_back(next);
    seq.push_back(next);
  }
  auto other = greedy_cont;
  other[1] = (other[1] + 1) % 40;
  scalpel::LoglikelihoodOptions o;
  o.progress = false;
  auto got = scalpel::loglikelihood_tokens(*m, {{ctx, greedy_cont}, {ctx, other}}, o);
  EXPECT_TRUE(got[0].is_greedy);
  EXPECT_FALSE(got[1].is_greedy);
}

TEST(Loglikelihood, LongInputsAreCutFromTheLeft) {
  auto m = tiny_model();
  scalpel::LoglikelihoodOptions o;
  o.max_length = 6;
  o.progress = false;
  TokenRequest r{{1, 2, 3, 4, 5, 6, 7, 8, 9}, {10, 11, 12}};
  auto got = scalpel::loglikelihood_tokens(*m, {r}, o);
  EXPECT_NEAR(got[0].logprob, reference(*m, r, 6), 1e-4);
  EXPECT_GT(std::abs(got[0].logprob - reference(*m, r)), 1e-4);  // the cut changed something
  o.max_length = 2;
  EXPECT_THROW(scalpel::loglikelihood_tokens(*m, {r}, o), scalpel::InvalidArgument);  // continuation too long
}

TEST(Loglikelihood, RollingWindowsPredictEveryTokenOnce) {
  std::vector<int64_t> tokens(23);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int64_t>(i + 1);
  for (int64_t L : {1, 4, 7, 23, 50}) {
    auto windows = scalpel::rolling_windows(tokens, 0, L);
    std::vector<int64_t> predicted;
    for (size_t w = 0; w < windows.size(); ++w) {
      const auto& win = windows[w];
      EXPECT_LE(static_cast<int64_t>(win.context.size() + win.continuation.size()), L + 1);
      EXPECT_LE(static_cast<int64_t>(win.continuation.size()), L);
      if (w == 0) EXPECT_EQ(win.context, std::vector<int64_t>{0});
      else EXPECT_EQ(win.context.back() + 1, win.continuation.front());  // conditioned on what comes just before
      if (w > 0) EXPECT_EQ(static_cast<int64_t>(win.context.size() + win.continuation.size()), L + 1);  // full windows
      predicted.insert(predicted.end(), win.continuation.begin(), win.continuation.end());
    }
    EXPECT_EQ(predicted, tokens) << "L " << L;
  }
  EXPECT_TRUE(scalpel::rolling_windows({}, 0, 4).empty());
  EXPECT_THROW(scalpel::rolling_windows(tokens, 0, 0), scalpel::InvalidArgument);
}

TEST(Loglikelihood, CacheContinuesRowsExactly) {
  auto m = tiny_model();
  auto full = torch::randint(1, 40, {3, 9}, torch::TensorOptions().dtype(torch::kLong));
  auto whole = m->final_residual(full);
  scalpel::KVCache cache;
  auto first = m->final_residual(full.narrow(1, 0, 6), {}, nullptr, &cache);
  EXPECT_EQ(cache.length(), 6);
  EXPECT_EQ(cache.batch(), 3);
  auto rest = m->final_residual(full.narrow(1, 6, 3), {}, &cache);
  EXPECT_LT((torch::cat({first, rest}, 1) - whole).abs().max().item<double>(), 1e-5);
  // Rows picked (and repeated) from the cache continue their own row.
  auto picked = cache.select({2, 2, 0});
  auto rows = torch::tensor(std::vector<int64_t>{2, 2, 0}, torch::kLong);
  auto again = m->final_residual(full.index_select(0, rows).narrow(1, 6, 3), {}, &picked);
  EXPECT_LT((again - whole.index_select(0, rows).narrow(1, 6, 3)).abs().max().item<double>(), 1e-5);
  // Logits of the final residual are forward's.
  EXPECT_LT((m->unembed(whole) - m->forward(full)).abs().max().item<double>(), 1e-5);
  EXPECT_THROW(cache.select({3}), scalpel::InvalidArgument);
  EXPECT_THROW(m->final_residual(full.narrow(0, 0, 2), {}, &cache), scalpel::ShapeError);  // 2 rows, cache of 3
  EXPECT_THROW(m->unembed(torch::zeros({2, 7})), scalpel::ShapeError);
}

TEST(Loglikelihood, HooksApply) {
  auto m = tiny_model();
  auto reqs = requests();
  scalpel::LoglikelihoodOptions o;
  o.progress = false;
  auto base = scalpel::loglikelihood_tokens(*m, reqs, o);
  auto h = m->add_hook("blocks.1.hook_resid_pre", [](const at::Tensor& x, const scalpel::HookPoint&) { return x * 1.7; });
  auto hooked = scalpel::loglikelihood_tokens(*m, reqs, o);
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_NEAR(hooked[i].logprob, reference(*m, reqs[i]), 1e-4);
    EXPECT_GT(std::abs(hooked[i].logprob - base[i].logprob), 1e-5);
  }
}

TEST(Loglikelihood, TargetLogprobEqualsTheFullPassAndHasGradients) {
  auto m = tiny_model();
  auto tf = scalpel::teacher_forced_batch({{1, 2, 3, 4, 5, 6, 7}, {9, 8}, {5}}, {{10, 11}, {12, 13, 14, 15, 16}, {17}});
  auto full = scalpel::masked_logprob(m->forward(tf.tokens, tf.attention_mask), tf.tokens, tf.target_mask);
  auto fast = scalpel::target_logprob(*m, tf);
  EXPECT_LT((fast - full).abs().max().item<double>(), 1e-5);
  // Differentiable through a hook, as the breaker's harm loss needs.
  auto scale = torch::ones({1}, torch::requires_grad());
  auto h = m->add_hook("blocks.0.hook_resid_post", [&](const at::Tensor& x, const scalpel::HookPoint&) { return x * scale; });
  scalpel::target_logprob(*m, tf).sum().backward();
  ASSERT_TRUE(scale.grad().defined());
  EXPECT_GT(scale.grad().abs().item<double>(), 0.0);
}

TEST(Loglikelihood, BadRequestsAreRefused) {
  auto m = tiny_model();
  scalpel::LoglikelihoodOptions o;
  o.progress = false;
  EXPECT_THROW(scalpel::loglikelihood_tokens(*m, {{{}, {1}}}, o), scalpel::InvalidArgument);
  EXPECT_THROW(scalpel::loglikelihood_tokens(*m, {{{1}, {}}}, o), scalpel::InvalidArgument);
  EXPECT_THROW(scalpel::loglikelihood_tokens(*m, {{{1}, {99}}}, o), scalpel::InvalidArgument);  // id out of vocabulary
  o.batch_size = 0;
  EXPECT_THROW(scalpel::loglikelihood_tokens(*m, {{{1}, {2}}}, o), scalpel::InvalidArgument);
  EXPECT_TRUE(scalpel::loglikelihood_tokens(*m, {}, scalpel::LoglikelihoodOptions{}).empty());
}

}  // namespace
