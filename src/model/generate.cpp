// SCALPEL_USES_TORCH
// Batched generation with left padding and a KV cache (Transformer::generate).
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>

#include "model/impl.hpp"
#include "scalpel/log.hpp"

namespace scalpel {

GenerateResult Transformer::generate(const std::vector<std::vector<int64_t>>& prompts, const GenerateOptions& opt) {
  if (prompts.empty()) throw InvalidArgument(detail::expected_got("prompts", "at least one prompt", "none"));
  if (opt.max_new_tokens < 0)
    throw InvalidArgument(detail::expected_got("max_new_tokens", "a non-negative number", std::to_string(opt.max_new_tokens)));
  if (opt.do_sample && opt.temperature <= 0)
    throw InvalidArgument(detail::expected_got("temperature", "a positive number when sampling", std::to_string(opt.temperature)));
  if (opt.top_p <= 0 || opt.top_p > 1)
    throw InvalidArgument(detail::expected_got("top_p", "a value in (0, 1]", std::to_string(opt.top_p)));
  const int64_t b = static_cast<int64_t>(prompts.size());
  int64_t max_len = 0;
  for (const auto& p : prompts) {
    if (p.empty()) throw InvalidArgument(detail::expected_got("prompt", "at least one token", "an empty prompt"));
    max_len = std::max<int64_t>(max_len, static_cast<int64_t>(p.size()));
  }
  const int64_t pad = opt.pad_token_id.value_or(opt.stop_tokens.empty() ? 0 : opt.stop_tokens.front());
  const int64_t capacity = max_len + opt.max_new_tokens;
  auto tokens = at::full({b, capacity}, pad, at::kLong);
  auto mask = at::zeros({b, capacity}, at::kLong);
  for (int64_t i = 0; i < b; ++i) {
    const auto& p = prompts[i];
    const int64_t off = max_len - static_cast<int64_t>(p.size());
    auto row = at::tensor(p, at::kLong);
    tokens[i].narrow(0, off, row.size(0)).copy_(row);
    mask[i].narrow(0, off, row.size(0)).fill_(1);
  }
  impl_->check_tokens(tokens.narrow(1, 0, max_len));

  at::NoGradGuard no_grad;
  Cache cache;
  auto kv_opts = at::TensorOptions().dtype(impl_->dtype);
  for (int64_t l = 0; l < impl_->cfg.n_layers; ++l)
    cache.layers.push_back({at::empty({b, impl_->cfg.n_kv_heads, capacity, impl_->cfg.d_head}, kv_opts),
                            at::empty({b, impl_->cfg.n_kv_heads, capacity, impl_->cfg.d_head}, kv_opts)});
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(opt.seed);
  std::vector<std::vector<int64_t>> out(b);
  std::vector<bool> done(b, false);
  int64_t cur = max_len;
  at::Tensor step_tokens = tokens.narrow(1, 0, max_len);
  int64_t offset = 0;
  Progress progress("generating", opt.max_new_tokens);
  // Steps after the first run on generated tokens only (Transformer::decoding);
  // the flag is cleared however the loop ends.
  struct DecodingFlag {
    bool& flag;
    ~DecodingFlag() { flag = false; }
  } decoding{impl_->decoding};
  for (int64_t t = 0; t < opt.max_new_tokens; ++t) {
    progress.update();
    impl_->decoding = t > 0;
    const int64_t q = step_tokens.size(1);
    auto full_mask = mask.narrow(1, 0, offset + q);
    auto positions = positions_from_mask(full_mask, offset, q);
    auto key_mask = key_mask_for(full_mask, offset, q);
    auto logits = impl_->run(step_tokens, positions, key_mask, &cache, /*last_only=*/true).select(1, 0);  // [b, vocab]
    cache.length = offset + q;
    at::Tensor next;
    if (!opt.do_sample) {
      next = logits.argmax(-1);
    } else {
      auto scores = logits / opt.temperature;
      if (opt.top_k > 0 && opt.top_k < scores.size(-1)) {
        auto kth = std::get<0>(scores.topk(opt.top_k, -1)).select(-1, opt.top_k - 1).unsqueeze(-1);
        scores = scores.masked_fill(scores < kth, -std::numeric_limits<float>::infinity());
      }
      if (opt.top_p < 1.0) {
        auto [sorted, idx] = scores.sort(-1, /*descending=*/true);
        auto cum = sorted.softmax(-1).cumsum(-1);
        auto remove = (cum - sorted.softmax(-1)) > opt.top_p;  // keep the smallest set reaching top_p
        sorted = sorted.masked_fill(remove, -std::numeric_limits<float>::infinity());
        scores = at::full_like(scores, -std::numeric_limits<float>::infinity()).scatter(-1, idx, sorted);
      }
      next = at::multinomial(scores.softmax(-1), 1, false, gen).squeeze(-1);
    }
    auto next_acc = next.accessor<int64_t, 1>();
    bool all_done = true;
    for (int64_t i = 0; i < b; ++i) {
      int64_t id = done[i] ? pad : next_acc[i];
      tokens[i][cur] = id;
      mask[i][cur] = 1;
      if (!done[i]) {
        out[i].push_back(id);
        if (std::find(opt.stop_tokens.begin(), opt.stop_tokens.end(), id) != opt.stop_tokens.end() ||
            (opt.stop_when && opt.stop_when(i, out[i])))
          done[i] = true;
      }
      all_done = all_done && done[i];
    }
    offset = cur;
    cur += 1;
    step_tokens = tokens.narrow(1, offset, 1);
    if (all_done) break;
  }
  return {tokens.narrow(1, 0, cur), out};
}

}  // namespace scalpel
