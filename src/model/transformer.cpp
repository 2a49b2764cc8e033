// SCALPEL_USES_TORCH
// The hooked transformer: construction from weights, the forward pass (its
// pieces are in model/impl.hpp), hooks and run_with_cache.
#include "scalpel/model/transformer.hpp"

#include <algorithm>

#include "io/mapped_pages.hpp"
#include "model/impl.hpp"
#include "scalpel/io/tokenizer.hpp"
#include "scalpel/log.hpp"
#include "util/logging.hpp"

namespace scalpel {

// ---------------------------------------------------------------------------
// Transformer
// ---------------------------------------------------------------------------
Transformer::Transformer(ModelConfig config, const std::map<std::string, at::Tensor>& hf_weights,
                         at::ScalarType dtype)
    : Transformer(std::move(config), hf_weights, dtype, false) {}

Transformer::Transformer(ModelConfig config, const std::map<std::string, at::Tensor>& hf_weights,
                         at::ScalarType dtype, bool release_copied_sources)
    : impl_(std::make_unique<Impl>()) {
  config.validate();
  impl_->cfg = config;
  impl_->dtype = dtype;
  std::vector<std::pair<std::string, at::Tensor>> read;  // what the architecture asked for, in order
  detail::WeightSource src{
      [&](const std::string& n) {
        auto it = hf_weights.find(n);
        if (it == hf_weights.end())
          throw UnknownName(detail::expected_got("weight \"" + n + "\"", "present in the checkpoint", "missing"));
        read.emplace_back(n, it->second);
        return it->second;
      },
      [&](const std::string& n) { return hf_weights.count(n) > 0; }};
  const detail::ArchSpec* spec = nullptr;
  for (const auto& a : detail::architectures())
    if (a.name == config.architecture) spec = &a;
  if (!spec)
    throw Unsupported(detail::expected_got("ModelConfig.architecture", "a registered architecture",
                                           "\"" + config.architecture + "\""));
  impl_->w = spec->load_weights(config, src);
  auto& W = impl_->w;
  std::vector<at::Tensor*> slots = {&W.embed, &W.pos_embed, &W.unembed, &W.unembed_bias, &W.ln_final.weight, &W.ln_final.bias};
  for (auto& L : W.layers)
    for (auto* t : {&L.ln1.weight, &L.ln1.bias, &L.ln2.weight, &L.ln2.bias, &L.ln1_post.weight, &L.ln2_post.weight,
                    &L.q_ln.weight, &L.k_ln.weight, &L.wq, &L.bq, &L.wk, &L.bk, &L.wv, &L.bv, &L.wo, &L.bo, &L.w_gate,
                    &L.b_gate, &L.w_in, &L.b_in, &L.w_out, &L.b_out})
      slots.push_back(t);
  // Name each slot holding a checkpoint tensor unchanged (the first unused name of that tensor).
  const bool tied = W.unembed.defined() && W.unembed.is_same(W.embed);
  std::vector<bool> used(read.size(), false);
  for (auto* t : slots) {
    if (!t->defined() || (t == &W.unembed && tied)) continue;
    for (size_t i = 0; i < read.size(); ++i)
      if (!used[i] && read[i].second.is_same(*t)) {
        used[i] = true;
        impl_->named.emplace_back(read[i].first, t);
        break;
      }
  }
  for (size_t i = 0; i < read.size(); ++i)
    if (!used[i] && !(tied && read[i].second.is_same(W.embed))) impl_->derived.push_back(read[i].first);
  auto cast = [&](at::Tensor& t) {
    if (!t.defined()) return;
    const at::Tensor source = t;
    t = t.to(dtype).contiguous();
    // A converted or re-laid-out weight no longer needs its file pages: give
    // them back as we go, so that peak memory is the model, not model + file.
    if (release_copied_sources && t.data_ptr() != source.data_ptr() && source.numel() > 0) {
      int64_t extent = 1;
      for (int64_t d = 0; d < source.dim(); ++d) extent += (source.size(d) - 1) * source.stride(d);
      detail::release_mapped_pages(source.data_ptr(), static_cast<size_t>(extent) * source.element_size());
    }
  };
  for (auto* t : slots)
    if (!(t == &W.unembed && tied)) cast(*t);
  if (tied) W.unembed = W.embed;  // one tensor, also after a dtype conversion
  impl_->make_hooks();
  impl_->make_rotary();
}

Transformer::~Transformer() = default;

const ModelConfig& Transformer::config() const { return impl_->cfg; }
at::ScalarType Transformer::dtype() const { return impl_->dtype; }
bool Transformer::decoding() const { return impl_->decoding; }

bool Transformer::has_tokenizer() const { return tokenizer_ != nullptr; }
const Tokenizer& Transformer::tokenizer() const {
  if (!tokenizer_)
    throw FileNotFound(detail::expected_got("model tokenizer", "tokenizer files beside the weights", "none",
                                            "load one with load_tokenizer(path)"));
  return *tokenizer_;
}

namespace {
// The forward pass of token ids (stop_at_layer as in Impl::run_blocks).
at::Tensor run_tokens(Transformer::Impl& impl, const at::Tensor& tokens_in, const at::Tensor& attention_mask,
                      bool last_position_only, int64_t stop_at_layer = -1) {
  impl.check_tokens(tokens_in);
  auto tokens = tokens_in.to(at::kLong);
  auto [positions, key_mask] = positions_and_mask(attention_mask, tokens.size(0), tokens.size(1));
  return impl.run(tokens, positions, key_mask, nullptr, last_position_only, stop_at_layer);
}
}  // namespace

at::Tensor Transformer::forward(const at::Tensor& tokens_in, const at::Tensor& attention_mask, bool last_position_only) {
  return run_tokens(*impl_, tokens_in, attention_mask, last_position_only);
}

at::Tensor Transformer::forward_from(int64_t layer, const at::Tensor& resid_pre, const at::Tensor& attention_mask,
                                     bool last_position_only) {
  const auto& cfg = impl_->cfg;
  if (layer < 0 || layer > cfg.n_layers)
    throw InvalidArgument(detail::expected_got("forward_from layer", "a layer in [0, " + std::to_string(cfg.n_layers) + "]",
                                               std::to_string(layer)));
  if (!resid_pre.defined() || resid_pre.dim() != 3 || resid_pre.size(2) != cfg.d_model)
    throw ShapeError(detail::expected_got("forward_from resid_pre", "[batch, pos, " + std::to_string(cfg.d_model) + "]",
                                          resid_pre.defined() ? "shape " + c10::str(resid_pre.sizes()) : "undefined",
                                          "pass the value of blocks.{layer}.hook_resid_pre from run_with_cache"));
  auto [positions, key_mask] = positions_and_mask(attention_mask, resid_pre.size(0), resid_pre.size(1));
  return impl_->run_blocks(impl_->needs_input_grad(resid_pre.to(impl_->dtype)), layer, positions, key_mask, nullptr,
                           last_position_only);
}

at::Tensor Transformer::forward_from_suffix(int64_t layer, const at::Tensor& resid_pre_suffix,
                                            const std::vector<at::Tensor>& past_k, const std::vector<at::Tensor>& past_v,
                                            bool last_position_only) {
  const auto& cfg = impl_->cfg;
  if (layer < 0 || layer >= cfg.n_layers)
    throw InvalidArgument(detail::expected_got("forward_from_suffix layer", "a layer in [0, " + std::to_string(cfg.n_layers) + ")",
                                               std::to_string(layer)));
  if (!resid_pre_suffix.defined() || resid_pre_suffix.dim() != 3 || resid_pre_suffix.size(2) != cfg.d_model)
    throw ShapeError(detail::expected_got("forward_from_suffix resid_pre_suffix", "[batch, pos, " + std::to_string(cfg.d_model) + "]",
                                          resid_pre_suffix.defined() ? "shape " + c10::str(resid_pre_suffix.sizes()) : "undefined"));
  const auto n = static_cast<size_t>(cfg.n_layers - layer);
  if (past_k.size() != n || past_v.size() != n)
    throw InvalidArgument(detail::expected_got("forward_from_suffix past keys and values", "one per layer from " + std::to_string(layer) +
                                                   " (" + std::to_string(n) + ")",
                                               std::to_string(past_k.size()) + " and " + std::to_string(past_v.size())));
  const int64_t b = resid_pre_suffix.size(0), q = resid_pre_suffix.size(1), start = past_k[0].size(2);
  Cache cache;
  cache.layers.resize(static_cast<size_t>(cfg.n_layers));
  auto opts = at::TensorOptions().dtype(impl_->dtype);
  for (size_t i = 0; i < n; ++i) {
    for (const auto* t : {&past_k[i], &past_v[i]})
      if (t->dim() != 4 || (t->size(0) != 1 && t->size(0) != b) || t->size(1) != cfg.n_kv_heads || t->size(2) != start ||
          t->size(3) != cfg.d_head)
        throw ShapeError(detail::expected_got("forward_from_suffix past key/value of layer " + std::to_string(layer + static_cast<int64_t>(i)),
                                              "[1 or " + std::to_string(b) + ", " + std::to_string(cfg.n_kv_heads) + ", " +
                                                  std::to_string(start) + ", " + std::to_string(cfg.d_head) + "]",
                                              "shape " + c10::str(t->sizes())));
    auto& c = cache.layers[static_cast<size_t>(layer) + i];
    c.k = at::empty({b, cfg.n_kv_heads, start + q, cfg.d_head}, opts);
    c.v = at::empty({b, cfg.n_kv_heads, start + q, cfg.d_head}, opts);
    c.k.narrow(2, 0, start).copy_(past_k[i]);
    c.v.narrow(2, 0, start).copy_(past_v[i]);
  }
  cache.length = start;
  auto mask = at::ones({b, start + q}, at::kLong);
  auto positions = at::arange(start, start + q, at::kLong).unsqueeze(0).expand({b, q});
  return impl_->run_blocks(impl_->needs_input_grad(resid_pre_suffix.to(impl_->dtype)), layer, positions,
                           key_mask_for(mask, start, q), &cache, last_position_only);
}

int64_t KVCache::length() const { return mask.defined() ? mask.size(1) : 0; }
int64_t KVCache::batch() const { return mask.defined() ? mask.size(0) : 0; }

KVCache KVCache::select(const std::vector<int64_t>& rows) const {
  for (auto r : rows)
    if (r < 0 || r >= batch())
      throw InvalidArgument(detail::expected_got("KVCache row", "a row in [0, " + std::to_string(batch()) + ")",
                                                 std::to_string(r)));
  auto index = at::tensor(rows, at::kLong);
  KVCache out;
  for (size_t l = 0; l < keys.size(); ++l) {
    out.keys.push_back(keys[l].index_select(0, index));
    out.values.push_back(values[l].index_select(0, index));
  }
  out.mask = mask.index_select(0, index);
  return out;
}

at::Tensor Transformer::final_residual(const at::Tensor& tokens_in, const at::Tensor& attention_mask, const KVCache* past,
                                       KVCache* cache_out) {
  const auto& cfg = impl_->cfg;
  impl_->check_tokens(tokens_in);
  auto tokens = tokens_in.to(at::kLong);
  const int64_t b = tokens.size(0), q = tokens.size(1);
  if (attention_mask.defined() && (attention_mask.dim() != 2 || attention_mask.size(0) != b || attention_mask.size(1) != q))
    throw ShapeError(detail::expected_got("attention_mask", "shape [" + std::to_string(b) + ", " + std::to_string(q) + "]",
                                          "shape " + c10::str(attention_mask.sizes())));
  auto mask = attention_mask.defined() ? attention_mask.to(at::kLong) : at::ones({b, q}, at::kLong);
  const int64_t start = past ? past->length() : 0;
  if (past) {
    if (past->batch() != b)
      throw ShapeError(detail::expected_got("past (KVCache) rows", std::to_string(b) + " (the tokens' batch)",
                                            std::to_string(past->batch()), "use past.select(rows) to repeat rows"));
    if (past->keys.size() != static_cast<size_t>(cfg.n_layers) || past->values.size() != past->keys.size())
      throw InvalidArgument(detail::expected_got("past (KVCache) layers", std::to_string(cfg.n_layers),
                                                 std::to_string(past->keys.size()), "was it made by another model?"));
    for (size_t l = 0; l < past->keys.size(); ++l)
      for (const auto* t : {&past->keys[l], &past->values[l]})
        if (t->dim() != 4 || t->size(0) != b || t->size(1) != cfg.n_kv_heads || t->size(2) != start ||
            t->size(3) != cfg.d_head)
          throw ShapeError(detail::expected_got("past (KVCache) keys/values of layer " + std::to_string(l),
                                                "[" + std::to_string(b) + ", " + std::to_string(cfg.n_kv_heads) + ", " +
                                                    std::to_string(start) + ", " + std::to_string(cfg.d_head) + "]",
                                                "shape " + c10::str(t->sizes()), "was it made by another model?"));
  }
  const bool want_cache = past || cache_out;
  Cache cache;
  if (want_cache) {
    auto opts = at::TensorOptions().dtype(impl_->dtype);
    for (int64_t l = 0; l < cfg.n_layers; ++l) {
      LayerCache c{at::empty({b, cfg.n_kv_heads, start + q, cfg.d_head}, opts),
                   at::empty({b, cfg.n_kv_heads, start + q, cfg.d_head}, opts)};
      if (start > 0) {
        c.k.narrow(2, 0, start).copy_(past->keys[static_cast<size_t>(l)]);
        c.v.narrow(2, 0, start).copy_(past->values[static_cast<size_t>(l)]);
      }
      cache.layers.push_back(std::move(c));
    }
    cache.length = start;
  }
  auto full_mask = start > 0 ? at::cat({past->mask.to(at::kLong), mask}, 1) : mask;
  at::Tensor positions, key_mask;
  if (start == 0 && mask.all().item<bool>()) {
    positions = at::arange(q, at::kLong).unsqueeze(0).expand({b, q});
  } else {
    positions = positions_from_mask(full_mask, start, q);
    key_mask = key_mask_for(full_mask, start, q);
  }
  if (want_cache && key_mask.defined()) cache.positions = positions_from_mask(full_mask, 0, start + q);
  auto x = impl_->run(tokens, positions, key_mask, want_cache ? &cache : nullptr, false, -1, /*hidden_only=*/true);
  if (cache_out) {
    KVCache out;
    for (auto& c : cache.layers) {
      out.keys.push_back(c.k);
      out.values.push_back(c.v);
    }
    out.mask = full_mask;
    *cache_out = std::move(out);
  }
  return x;
}

at::Tensor Transformer::unembed(const at::Tensor& x) const {
  if (!x.defined() || x.dim() < 1 || x.size(-1) != impl_->cfg.d_model)
    throw ShapeError(detail::expected_got("unembed input", "[..., " + std::to_string(impl_->cfg.d_model) + "]",
                                          x.defined() ? "shape " + c10::str(x.sizes()) : "undefined",
                                          "pass values of final_residual"));
  return impl_->unembed(x.to(impl_->dtype));
}

std::vector<std::string> Transformer::hook_names() const {
  std::vector<std::string> names;
  for (const auto& p : impl_->points) names.push_back(p->name());
  return names;
}

HookPoint& Transformer::hook_point(const std::string& name) {
  auto it = impl_->by_name.find(name);
  if (it == impl_->by_name.end())
    throw UnknownName(detail::expected_got("hook point \"" + name + "\"", "one of model.hook_names()", "no such hook",
                                           "nearest: " + detail::join_names(detail::nearest_names(name, hook_names()))));
  return *it->second;
}

HookHandle Transformer::add_hook(const std::string& name, HookFn fn) { return add_hooks({{name, std::move(fn)}}); }

HookHandle Transformer::add_backward_hooks(const std::vector<std::pair<std::string, BackwardHookFn>>& hooks) {
  std::vector<HookPoint*> targets;
  for (const auto& [name, fn] : hooks) targets.push_back(&hook_point(name));
  HookHandle handle;
  handle.owner_ = life_;
  for (size_t i = 0; i < hooks.size(); ++i)
    handle.hooks_.emplace_back(targets[i], targets[i]->add_backward(hooks[i].second));
  return handle;
}

HookHandle Transformer::add_hooks(const std::vector<std::pair<std::string, HookFn>>& hooks) {
  // Resolve every name first: an unknown name registers nothing.
  std::vector<HookPoint*> targets;
  for (const auto& [name, fn] : hooks) targets.push_back(&hook_point(name));
  HookHandle handle;
  handle.owner_ = life_;
  for (size_t i = 0; i < hooks.size(); ++i) handle.hooks_.emplace_back(targets[i], targets[i]->add(hooks[i].second));
  return handle;
}

void Transformer::reset_hooks() {
  for (auto& p : impl_->points) p->clear();
}

std::pair<at::Tensor, std::map<std::string, at::Tensor>> Transformer::run_with_cache(
    const at::Tensor& tokens, const std::vector<std::string>& names, const at::Tensor& attention_mask,
    bool last_position_only, int64_t stop_at_layer) {
  if (stop_at_layer < -1 || stop_at_layer > impl_->cfg.n_layers)
    throw InvalidArgument(detail::expected_got("run_with_cache stop_at_layer",
                                               "-1 (run every layer) or a layer in [0, " +
                                                   std::to_string(impl_->cfg.n_layers) + "]",
                                               std::to_string(stop_at_layer)));
  auto cache = std::make_shared<std::map<std::string, at::Tensor>>();
  std::vector<std::pair<std::string, HookFn>> hooks;
  for (const auto& n : names.empty() ? hook_names() : names)
    hooks.emplace_back(n, [cache](const at::Tensor& x, const HookPoint& p) {
      (*cache)[p.name()] = x.detach();
      return at::Tensor();
    });
  auto handle = add_hooks(hooks);
  auto out = run_tokens(*impl_, tokens, attention_mask, last_position_only, stop_at_layer);
  return {out, std::move(*cache)};
}

}  // namespace scalpel
