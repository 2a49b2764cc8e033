// SCALPEL_USES_TORCH
// The log-likelihood engine (scalpel/eval/loglikelihood.hpp).
#include "scalpel/eval/loglikelihood.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <numeric>

#include "scalpel/errors.hpp"
#include "scalpel/io/prompts.hpp"
#include "scalpel/io/tokenizer.hpp"
#include "scalpel/log.hpp"
#include "scalpel/model/transformer.hpp"
#include "util/messages.hpp"

namespace scalpel {

namespace {

// A batch's common context prefix shorter than this is not run separately.
constexpr size_t kMinSharedPrefix = 16;
// Contexts with the same first tokens are batched together (see below).
constexpr size_t kBucketTokens = 64;

int64_t resolve_max_length(const Transformer& model, int64_t max_length) {
  if (max_length < 0)
    throw InvalidArgument(detail::expected_got("max_length", "0 (the model's) or a positive number of tokens",
                                               std::to_string(max_length)));
  if (max_length > 0) return max_length;
  return model.config().n_ctx > 0 ? model.config().n_ctx : 2048;
}

void check_batch_size(int64_t batch_size) {
  if (batch_size < 1)
    throw InvalidArgument(detail::expected_got("batch_size", "a positive number of rows", std::to_string(batch_size)));
}

// Rows of token lists padded into [rows, width] tokens and mask (left or right).
std::pair<at::Tensor, at::Tensor> pad_rows(const std::vector<const std::vector<int64_t>*>& rows, bool left) {
  int64_t width = 0;
  for (const auto* r : rows) width = std::max<int64_t>(width, static_cast<int64_t>(r->size()));
  auto tokens = at::zeros({static_cast<int64_t>(rows.size()), width}, at::kLong);
  auto mask = at::zeros_like(tokens);
  auto t = tokens.accessor<int64_t, 2>();
  auto m = mask.accessor<int64_t, 2>();
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& r = *rows[i];
    const int64_t off = left ? width - static_cast<int64_t>(r.size()) : 0;
    for (size_t j = 0; j < r.size(); ++j) {
      t[static_cast<int64_t>(i)][off + static_cast<int64_t>(j)] = r[j];
      m[static_cast<int64_t>(i)][off + static_cast<int64_t>(j)] = 1;
    }
  }
  return {tokens, mask};
}

// Log-probabilities of `targets` [n] under the unembedding of `hidden` [n,
// d_model], and whether each target is the argmax; the unembedding runs in
// chunks so that [chunk, vocab] logits stay small.
void score_positions(Transformer& model, const at::Tensor& hidden, const std::vector<int64_t>& targets,
                     std::vector<double>& logprob, std::vector<uint8_t>& greedy) {
  constexpr int64_t kChunk = 64;
  const int64_t n = hidden.size(0);
  logprob.resize(static_cast<size_t>(n));
  greedy.resize(static_cast<size_t>(n));
  auto target = at::tensor(targets, at::kLong);
  for (int64_t s = 0; s < n; s += kChunk) {
    const int64_t len = std::min(kChunk, n - s);
    auto lp = at::log_softmax(model.unembed(hidden.narrow(0, s, len)), -1);  // [len, vocab] float32
    auto t = target.narrow(0, s, len);
    auto picked = lp.gather(1, t.unsqueeze(1)).squeeze(1).to(at::kDouble);
    auto is_max = lp.argmax(1).eq(t);
    auto pa = picked.accessor<double, 1>();
    auto ga = is_max.accessor<bool, 1>();
    for (int64_t i = 0; i < len; ++i) {
      logprob[static_cast<size_t>(s + i)] = pa[i];
      greedy[static_cast<size_t>(s + i)] = ga[i] ? 1 : 0;
    }
  }
}

// Adds position scores to their requests' results.
void accumulate(const std::vector<size_t>& owner, const std::vector<double>& lp, const std::vector<uint8_t>& greedy,
                std::vector<LoglikelihoodResult>& out) {
  for (size_t i = 0; i < owner.size(); ++i) {
    out[owner[i]].logprob += lp[i];
    out[owner[i]].is_greedy = out[owner[i]].is_greedy && greedy[i];
  }
}

}  // namespace

TokenRequest encode_request(const Tokenizer& tokenizer, const std::string& context, const std::string& continuation) {
  if (!context.empty()) {
    auto [ctx, cont] = encode_continuation(tokenizer, context, continuation);
    return {std::move(ctx), std::move(cont)};
  }
  auto cont = tokenizer.encode(continuation, /*add_special_tokens=*/false);
  if (cont.empty())
    throw InvalidArgument(detail::expected_got("continuation \"" + continuation + "\" of an empty context",
                                               "at least one token", "none"));
  const int64_t prefix = prefix_token_id(tokenizer);
  if (cont.front() != prefix) return {{prefix}, std::move(cont)};
  return {{prefix}, std::vector<int64_t>(cont.begin() + 1, cont.end())};
}

std::vector<LoglikelihoodResult> loglikelihood_tokens(Transformer& model, const std::vector<TokenRequest>& requests,
                                                      const LoglikelihoodOptions& options) {
  check_batch_size(options.batch_size);
  if (options.max_batch_tokens < 0)
    throw InvalidArgument(detail::expected_got("max_batch_tokens", "0 (no limit) or a positive number of tokens",
                                               std::to_string(options.max_batch_tokens)));
  const int64_t max_length = resolve_max_length(model, options.max_length);
  const int64_t vocab = model.config().d_vocab;
  at::NoGradGuard no_grad;

  // What each request conditions on and predicts, cut from the left to
  // max_length + 1 tokens as lm-eval cuts it.
  std::vector<std::vector<int64_t>> contexts(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto& r = requests[i];
    const std::string which = "request " + std::to_string(i);
    if (r.context.empty())
      throw InvalidArgument(detail::expected_got(which + " context", "at least one token", "none",
                                                 "encode text with encode_request: an empty context is the prefix token"));
    if (r.continuation.empty())
      throw InvalidArgument(detail::expected_got(which + " continuation", "at least one token", "none"));
    if (static_cast<int64_t>(r.continuation.size()) > max_length)
      throw InvalidArgument(detail::expected_got(which + " continuation", "at most max_length = " +
                                                     std::to_string(max_length) + " tokens",
                                                 std::to_string(r.continuation.size()) + " tokens"));
    for (const auto* ids : {&r.context, &r.continuation})
      for (auto id : *ids)
        if (id < 0 || id >= vocab)
          throw InvalidArgument(detail::expected_got(which + " token id", "an id in [0, " + std::to_string(vocab) + ")",
                                                     std::to_string(id), "is this the model's tokenizer?"));
    const int64_t keep = std::min<int64_t>(static_cast<int64_t>(r.context.size()),
                                           max_length + 1 - static_cast<int64_t>(r.continuation.size()));
    contexts[i].assign(r.context.end() - keep, r.context.end());
  }

  std::vector<LoglikelihoodResult> out(requests.size(), LoglikelihoodResult{0.0, true});
  std::unique_ptr<Progress> progress;
  if (options.progress) progress = std::make_unique<Progress>("loglikelihood", static_cast<int64_t>(requests.size()));
  std::vector<double> lp;
  std::vector<uint8_t> greedy;

  if (!options.share_context) {
    // One sequence per request: context + continuation[:-1], right-padded;
    // the unembedding only at the continuation's positions.
    std::vector<size_t> order(requests.size());
    std::iota(order.begin(), order.end(), 0);
    auto total = [&](size_t i) { return contexts[i].size() + requests[i].continuation.size(); };
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return total(a) > total(b); });
    for (size_t s = 0; s < order.size(); s += static_cast<size_t>(options.batch_size)) {
      const size_t e = std::min(order.size(), s + static_cast<size_t>(options.batch_size));
      std::vector<std::vector<int64_t>> seqs;
      std::vector<const std::vector<int64_t>*> rows;
      for (size_t k = s; k < e; ++k) {
        const auto& r = requests[order[k]];
        auto seq = contexts[order[k]];
        seq.insert(seq.end(), r.continuation.begin(), r.continuation.end() - 1);
        seqs.push_back(std::move(seq));
      }
      for (const auto& q : seqs) rows.push_back(&q);
      auto [tokens, mask] = pad_rows(rows, /*left=*/false);
      auto hidden = model.final_residual(tokens, mask);  // [rows, width, d_model]
      std::vector<int64_t> flat, targets;
      std::vector<size_t> owner;
      for (size_t k = s; k < e; ++k) {
        const auto& r = requests[order[k]];
        const int64_t row = static_cast<int64_t>(k - s), ctx = static_cast<int64_t>(contexts[order[k]].size());
        for (size_t j = 0; j < r.continuation.size(); ++j) {
          flat.push_back(row * tokens.size(1) + ctx - 1 + static_cast<int64_t>(j));
          targets.push_back(r.continuation[j]);
          owner.push_back(order[k]);
        }
      }
      score_positions(model, hidden.reshape({-1, hidden.size(2)}).index_select(0, at::tensor(flat, at::kLong)), targets,
                      lp, greedy);
      accumulate(owner, lp, greedy, out);
      if (progress) progress->update(static_cast<int64_t>(e - s));
    }
    return out;
  }

  // Distinct contexts, each with the requests that continue it, ordered so
  // that contexts sharing a beginning (a few-shot preamble, a question
  // prompt: the same first kBucketTokens tokens) are neighbours, and by
  // length within those buckets and between them (longest first, like
  // lm-eval), so that batches share prefixes and waste little padding.
  std::map<std::vector<int64_t>, std::vector<size_t>> groups;
  for (size_t i = 0; i < requests.size(); ++i) groups[contexts[i]].push_back(i);
  std::map<std::vector<int64_t>, std::vector<const std::vector<int64_t>*>> buckets;
  for (const auto& [ctx, m] : groups)
    buckets[std::vector<int64_t>(ctx.begin(), ctx.begin() + static_cast<std::ptrdiff_t>(std::min(ctx.size(), kBucketTokens)))]
        .push_back(&ctx);
  std::vector<std::vector<const std::vector<int64_t>*>> ordered;
  for (auto& [key, ctxs] : buckets) {
    std::stable_sort(ctxs.begin(), ctxs.end(), [](const auto* a, const auto* b) { return a->size() > b->size(); });
    ordered.push_back(std::move(ctxs));
  }
  std::stable_sort(ordered.begin(), ordered.end(),
                   [](const auto& a, const auto& b) { return a.front()->size() > b.front()->size(); });
  std::vector<const std::vector<int64_t>*> distinct;
  std::vector<const std::vector<size_t>*> members;
  for (const auto& bucket : ordered)
    for (const auto* ctx : bucket) {
      distinct.push_back(ctx);
      members.push_back(&groups.at(*ctx));
    }

  // The keys and values of the last shared prefix run, reused while the
  // next batches start with it too.
  std::vector<int64_t> prefix;
  KVCache prefix_cache;
  auto starts_with = [](const std::vector<int64_t>& v, const std::vector<int64_t>& p) {
    return v.size() >= p.size() && std::equal(p.begin(), p.end(), v.begin());
  };

  for (size_t s = 0, e = 0; s < distinct.size(); s = e) {
    // A batch: up to batch_size contexts, ended early where the next context
    // would leave the batch without the prefix it shares (a few-shot
    // preamble ends where the next subject's begins).
    size_t lcp = distinct[s]->size() - 1;  // every context keeps a token of its own
    size_t longest = distinct[s]->size();
    for (e = s + 1; e < distinct.size() && e - s < static_cast<size_t>(options.batch_size); ++e) {
      const size_t widest = std::max(longest, distinct[e]->size());
      if (options.max_batch_tokens > 0 && (e - s + 1) * widest > static_cast<size_t>(options.max_batch_tokens)) break;
      longest = widest;
      const auto& a = *distinct[s];
      const auto& b = *distinct[e];
      const size_t common = static_cast<size_t>(
          std::mismatch(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(std::min(lcp, b.size())), b.begin()).first -
          a.begin());
      const size_t next = std::min({lcp, common, b.size() - 1});
      // Only a prefix the batch already shares (two rows or more) is worth
      // ending it for: when the next context would cut it below the
      // threshold or to less than half.
      if (e - s > 1 && lcp >= kMinSharedPrefix && (next < kMinSharedPrefix || 2 * next < lcp)) break;
      lcp = next;
    }
    const size_t rows_n = e - s;
    // 0. The batch's shared prefix, run once (one row).
    bool reuse = !prefix.empty() && prefix.size() <= lcp && starts_with(*distinct[s], prefix);
    if (!reuse && lcp >= kMinSharedPrefix && rows_n > 1) {
      prefix.assign(distinct[s]->begin(), distinct[s]->begin() + static_cast<std::ptrdiff_t>(lcp));
      model.final_residual(at::tensor(prefix, at::kLong).unsqueeze(0), {}, nullptr, &prefix_cache);
      reuse = true;
    }
    const size_t shared = reuse ? prefix.size() : 0;

    // 1. The contexts after the prefix, right-padded: each row's last token
    //    predicts its continuations' first token; the keys and values are kept.
    std::vector<std::vector<int64_t>> rests;
    for (size_t k = s; k < e; ++k)
      rests.emplace_back(distinct[k]->begin() + static_cast<std::ptrdiff_t>(shared), distinct[k]->end());
    std::vector<const std::vector<int64_t>*> rows;
    for (const auto& r : rests) rows.push_back(&r);
    auto [tokens, mask] = pad_rows(rows, /*left=*/false);
    KVCache cache;
    at::Tensor hidden;
    if (shared > 0) {
      auto past = prefix_cache.select(std::vector<int64_t>(rows_n, 0));
      hidden = model.final_residual(tokens, mask, &past, &cache);
    } else {
      hidden = model.final_residual(tokens, mask, nullptr, &cache);
    }
    std::vector<int64_t> last_flat, targets;
    std::vector<size_t> owner;
    for (size_t k = s; k < e; ++k)
      for (auto i : *members[k]) {
        last_flat.push_back(static_cast<int64_t>(k - s) * tokens.size(1) + static_cast<int64_t>(rests[k - s].size()) - 1);
        targets.push_back(requests[i].continuation.front());
        owner.push_back(i);
      }
    score_positions(model, hidden.reshape({-1, hidden.size(2)}).index_select(0, at::tensor(last_flat, at::kLong)),
                    targets, lp, greedy);
    accumulate(owner, lp, greedy, out);

    // 2. The continuations' remaining tokens, right-padded after their
    //    context's cached keys and values, batch_size rows at a time.
    std::vector<std::pair<int64_t, size_t>> longer;  // (context row, request)
    for (size_t k = s; k < e; ++k)
      for (auto i : *members[k])
        if (requests[i].continuation.size() > 1) longer.emplace_back(static_cast<int64_t>(k - s), i);
    for (size_t c = 0; c < longer.size(); c += static_cast<size_t>(options.batch_size)) {
      const size_t ce = std::min(longer.size(), c + static_cast<size_t>(options.batch_size));
      std::vector<std::vector<int64_t>> suffixes;
      std::vector<int64_t> past_rows;
      for (size_t k = c; k < ce; ++k) {
        const auto& cont = requests[longer[k].second].continuation;
        suffixes.emplace_back(cont.begin(), cont.end() - 1);
        past_rows.push_back(longer[k].first);
      }
      std::vector<const std::vector<int64_t>*> srows;
      for (const auto& q : suffixes) srows.push_back(&q);
      auto [stokens, smask] = pad_rows(srows, /*left=*/false);
      auto past = cache.select(past_rows);
      auto shidden = model.final_residual(stokens, smask, &past);  // [rows, width, d_model]
      std::vector<int64_t> flat;
      std::vector<int64_t> stargets;
      std::vector<size_t> sowner;
      for (size_t k = c; k < ce; ++k) {
        const auto& cont = requests[longer[k].second].continuation;
        const int64_t row = static_cast<int64_t>(k - c);
        for (size_t j = 1; j < cont.size(); ++j) {
          flat.push_back(row * stokens.size(1) + static_cast<int64_t>(j) - 1);
          stargets.push_back(cont[j]);
          sowner.push_back(longer[k].second);
        }
      }
      score_positions(model, shidden.reshape({-1, shidden.size(2)}).index_select(0, at::tensor(flat, at::kLong)),
                      stargets, lp, greedy);
      accumulate(sowner, lp, greedy, out);
    }
    if (progress)
      for (size_t k = s; k < e; ++k) progress->update(static_cast<int64_t>(members[k]->size()));
  }
  return out;
}

std::vector<LoglikelihoodResult> loglikelihood(Transformer& model, const Tokenizer& tokenizer,
                                               const std::vector<std::pair<std::string, std::string>>& requests,
                                               const LoglikelihoodOptions& options) {
  std::vector<TokenRequest> encoded;
  encoded.reserve(requests.size());
  for (const auto& [context, continuation] : requests) encoded.push_back(encode_request(tokenizer, context, continuation));
  return loglikelihood_tokens(model, encoded, options);
}

std::vector<TokenRequest> rolling_windows(const std::vector<int64_t>& tokens, int64_t prefix_token, int64_t max_length) {
  if (max_length < 1)
    throw InvalidArgument(detail::expected_got("rolling_windows max_length", "a positive number of tokens",
                                               std::to_string(max_length)));
  std::vector<TokenRequest> windows;
  const int64_t n = static_cast<int64_t>(tokens.size());
  int64_t done = 0;
  while (done < n) {
    // Predict tokens [done, end) conditioned on everything before `done`
    // that fits in one input of max_length tokens.
    const int64_t end = std::min(n, done + max_length);
    TokenRequest w;
    w.continuation.assign(tokens.begin() + done, tokens.begin() + end);
    const int64_t room = max_length + 1 - (end - done);  // context tokens that fit
    if (done == 0) {
      w.context = {prefix_token};
    } else {
      const int64_t from = std::max<int64_t>(0, done - room);
      w.context.assign(tokens.begin() + from, tokens.begin() + done);
    }
    windows.push_back(std::move(w));
    done = end;
  }
  return windows;
}

std::vector<double> loglikelihood_rolling(Transformer& model, const Tokenizer& tokenizer,
                                          const std::vector<std::string>& texts, const LoglikelihoodOptions& options) {
  const int64_t max_length = resolve_max_length(model, options.max_length);
  const int64_t prefix = prefix_token_id(tokenizer);
  std::vector<TokenRequest> windows;
  std::vector<size_t> owner;
  for (size_t i = 0; i < texts.size(); ++i) {
    for (auto& w : rolling_windows(encode_text(tokenizer, texts[i]), prefix, max_length)) {
      windows.push_back(std::move(w));
      owner.push_back(i);
    }
  }
  auto opts = options;
  opts.max_length = max_length;
  auto scored = loglikelihood_tokens(model, windows, opts);
  std::vector<double> out(texts.size(), 0.0);
  for (size_t k = 0; k < scored.size(); ++k) out[owner[k]] += scored[k].logprob;
  return out;
}

std::vector<std::string> generate_until(Transformer& model, const Tokenizer& tokenizer,
                                        const std::vector<std::string>& contexts, const GenerateUntilOptions& options) {
  check_batch_size(options.batch_size);
  const int64_t max_length = resolve_max_length(model, options.max_length);
  if (options.max_gen_toks < 1 || options.max_gen_toks >= max_length)
    throw InvalidArgument(detail::expected_got("max_gen_toks", "in [1, max_length = " + std::to_string(max_length) + ")",
                                               std::to_string(options.max_gen_toks)));
  std::vector<std::string> until;
  for (const auto& u : options.until)
    if (!u.empty()) until.push_back(u);
  // The EOS text is a stop string too (lm-eval adds it): a model may spell it
  // out in ordinary tokens rather than emit the EOS id.
  if (auto eos = tokenizer.eos_token_id()) {
    const auto text = tokenizer.decode({*eos});
    if (!text.empty() && std::find(until.begin(), until.end(), text) == until.end()) until.push_back(text);
  }
  // EOS and the end-of-turn tokens (Gemma's <end_of_turn>, ...), as a model's
  // generation config lists them for transformers' generate.
  const std::vector<int64_t> stop_tokens = default_stop_tokens(tokenizer);
  if (until.empty() && stop_tokens.empty())
    throw InvalidArgument(detail::expected_got("generate_until stop", "stop strings or a tokenizer with EOS", "neither"));

  std::vector<std::vector<int64_t>> prompts;
  for (const auto& c : contexts) {
    auto ids = encode_text(tokenizer, c);
    const int64_t keep = max_length - options.max_gen_toks;
    if (static_cast<int64_t>(ids.size()) > keep) ids.erase(ids.begin(), ids.end() - keep);
    if (ids.empty()) ids.push_back(prefix_token_id(tokenizer));
    prompts.push_back(std::move(ids));
  }
  // Longest first, as lm-eval orders them.
  std::vector<size_t> order(prompts.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return prompts[a].size() > prompts[b].size(); });

  auto cut = [&](std::string text) {
    for (const auto& u : until) {
      auto at = text.find(u);
      if (at != std::string::npos) text.resize(at);
    }
    return text;
  };
  std::vector<std::string> out(prompts.size());
  std::unique_ptr<Progress> progress;
  if (options.progress) progress = std::make_unique<Progress>("generate_until", static_cast<int64_t>(prompts.size()));
  for (size_t s = 0; s < order.size(); s += static_cast<size_t>(options.batch_size)) {
    const size_t e = std::min(order.size(), s + static_cast<size_t>(options.batch_size));
    std::vector<std::vector<int64_t>> batch;
    for (size_t k = s; k < e; ++k) batch.push_back(prompts[order[k]]);
    GenerateOptions g;
    g.max_new_tokens = options.max_gen_toks;
    g.stop_tokens = stop_tokens;
    if (!until.empty())
      g.stop_when = [&](int64_t, const std::vector<int64_t>& ids) {
        const auto text = tokenizer.decode(ids, /*skip_special_tokens=*/true);
        return std::any_of(until.begin(), until.end(), [&](const std::string& u) { return text.find(u) != std::string::npos; });
      };
    auto result = model.generate(batch, g);
    for (size_t k = s; k < e; ++k)
      out[order[k]] = cut(tokenizer.decode(result.new_tokens[k - s], /*skip_special_tokens=*/true));
    if (progress) progress->update(static_cast<int64_t>(e - s));
  }
  return out;
}

}  // namespace scalpel
