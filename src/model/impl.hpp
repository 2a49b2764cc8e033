// Private to src/model: the model's internals — the forward pass's building
// blocks (norms, rotary, attention, MLP, blocks, KV cache) and
// Transformer::Impl, shared by transformer.cpp (forward, hooks), load.cpp
// (loading, saving, random init) and generate.cpp.
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/weights.hpp"
#include "scalpel/errors.hpp"
#include "scalpel/hooks/hook_point.hpp"
#include "scalpel/hooks/names.hpp"
#include "scalpel/model/transformer.hpp"
#include "util/messages.hpp"

namespace scalpel {
namespace detail {

struct NormHooks {
  HookPoint* scale;
  HookPoint* normalized;
};

struct LayerHooks {
  HookPoint *resid_pre, *resid_mid, *resid_post, *attn_out, *mlp_out;
  NormHooks ln1, ln2, ln1_post, ln2_post, q_ln, k_ln;
  HookPoint *q, *k, *v, *rot_q, *rot_k, *attn_scores, *pattern, *z, *result;
  HookPoint *mlp_pre, *mlp_pre_linear, *mlp_post;
};

struct LayerCache {
  at::Tensor k, v;  // [batch, n_kv_heads, capacity, d_head], rotary applied
};

struct Cache {
  std::vector<LayerCache> layers;
  int64_t length = 0;    // positions filled
  at::Tensor mask;       // [batch, capacity] (bool), 1 where a real token sits
  // [batch, capacity] position ids of the cached and new keys, when padding
  // may sit between tokens (Transformer::final_residual); sliding windows
  // then measure distances in positions, not columns. Undefined: columns
  // (only left padding, as in generate()).
  at::Tensor positions;
};

inline at::Tensor activation(const at::Tensor& x, Activation a) {
  switch (a) {
    case Activation::SiLU: return at::silu(x);
    case Activation::GELU: return at::gelu(x);
    case Activation::GELUTanh: return at::gelu(x, "tanh");
    case Activation::ReLU: return at::relu(x);
  }
  return x;
}

inline at::Tensor rotate_half(const at::Tensor& x) {
  auto half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

}  // namespace detail

using detail::Cache;
using detail::LayerCache;
using detail::LayerHooks;
using detail::NormHooks;
using detail::activation;
using detail::rotate_half;

struct Transformer::Impl {
  ModelConfig cfg;
  at::ScalarType dtype;
  detail::ModelWeights w;
  std::vector<std::unique_ptr<HookPoint>> points;
  std::map<std::string, HookPoint*> by_name;
  HookPoint *hook_embed = nullptr, *hook_pos_embed = nullptr;
  NormHooks ln_final{};
  std::vector<LayerHooks> layer_hooks;
  at::Tensor inv_freq;        // [rotary_dim / 2], float32
  at::Tensor inv_freq_local;  // sliding-window layers' (Gemma 3), else undefined
  // The weight slots read unchanged from a checkpoint tensor, with its name
  // (named_parameters, save_pretrained); slots made from a changed tensor are
  // listed in `derived` by their checkpoint names.
  std::vector<std::pair<std::string, at::Tensor*>> named;
  std::vector<std::string> derived;
  std::string config_json;  // the Hugging Face config.json text, when known
  std::string source_dir;   // the directory loaded from, when any
  std::string source_gguf;  // the GGUF file loaded from, when any
  bool decoding = false;    // generate() is running a step after the prompt (Transformer::decoding)

  HookPoint* point(const std::string& component, int64_t layer = -1) {
    const std::string name = hook_name(component, layer);
    points.push_back(std::make_unique<HookPoint>(name));
    by_name[name] = points.back().get();
    return points.back().get();
  }

  // One hook point per component the architecture has, in forward order.
  void make_hooks() {
    hook_embed = point("embed");
    if (cfg.positions == PositionKind::Learned) hook_pos_embed = point("pos_embed");
    for (int64_t l = 0; l < cfg.n_layers; ++l) {
      auto at = [&](const char* component) { return point(component, l); };
      LayerHooks h{};
      h.resid_pre = at("resid_pre");
      h.ln1 = {at("ln1_scale"), at("ln1_normalized")};
      h.q = at("q");
      h.k = at("k");
      h.v = at("v");
      if (cfg.qk_norm) {
        h.q_ln = {at("q_ln_scale"), at("q_ln_normalized")};
        h.k_ln = {at("k_ln_scale"), at("k_ln_normalized")};
      }
      if (cfg.positions == PositionKind::Rotary) {
        h.rot_q = at("rot_q");
        h.rot_k = at("rot_k");
      }
      h.attn_scores = at("attn_scores");
      h.pattern = at("pattern");
      h.z = at("z");
      h.result = at("result");
      if (cfg.post_norms) h.ln1_post = {at("ln1_post_scale"), at("ln1_post_normalized")};
      h.attn_out = at("attn_out");
      if (!cfg.parallel_residual) h.resid_mid = at("resid_mid");
      h.ln2 = {at("ln2_scale"), at("ln2_normalized")};
      h.mlp_pre = at("mlp_pre");
      if (cfg.gated_mlp) h.mlp_pre_linear = at("mlp_pre_linear");
      h.mlp_post = at("mlp_post");
      if (cfg.post_norms) h.ln2_post = {at("ln2_post_scale"), at("ln2_post_normalized")};
      h.mlp_out = at("mlp_out");
      h.resid_post = at("resid_post");
      layer_hooks.push_back(h);
    }
    ln_final = {point("ln_final_scale"), point("ln_final_normalized")};
  }

  void make_rotary() {
    if (cfg.positions != PositionKind::Rotary) return;
    const int64_t dim = cfg.rotary_dim;
    auto idx = torch::arange(0, dim, 2, torch::kInt64).to(torch::kFloat);
    auto plain = [&](double theta) {
      return 1.0 / torch::pow(torch::tensor(theta, torch::kFloat), idx / static_cast<double>(dim));
    };
    inv_freq = plain(cfg.rope_theta);
    if (cfg.rope_local_theta > 0) inv_freq_local = plain(cfg.rope_local_theta);
    if (cfg.rope_scaling) {
      const auto& s = *cfg.rope_scaling;
      if (s.rope_type == "linear") {
        inv_freq = inv_freq / s.factor;
      } else if (s.rope_type == "llama3") {
        const double old_ctx = static_cast<double>(*s.original_max_position_embeddings);
        const double low_wl = old_ctx / *s.low_freq_factor, high_wl = old_ctx / *s.high_freq_factor;
        auto wavelen = 2 * M_PI / inv_freq;
        auto scaled = torch::where(wavelen > low_wl, inv_freq / s.factor, inv_freq);
        auto smooth = (old_ctx / wavelen - *s.low_freq_factor) / (*s.high_freq_factor - *s.low_freq_factor);
        auto smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled;
        auto medium = (wavelen >= high_wl).logical_and(wavelen <= low_wl);
        inv_freq = torch::where(medium, smoothed, scaled);
      }
    }
  }

  // RMSNorm / LayerNorm in float32, with hook_scale (the divisor) and
  // hook_normalized (before the weight), as TransformerLens defines them.
  at::Tensor norm(const at::Tensor& x_in, const detail::NormWeights& nw, const NormHooks& h) const {
    auto x = x_in.to(torch::kFloat);
    at::Tensor var;
    if (cfg.norm == NormKind::LayerNorm) {
      x = x - x.mean(-1, true);
    }
    var = x.pow(2).mean(-1, true);
    auto scale = (*h.scale)((var + cfg.norm_eps).sqrt());
    if (cfg.norm_weight_offset) {
      // Gemma multiplies by (1 + w) in float32 before casting back (hook_normalized is float32 here).
      auto normalized = (*h.normalized)(x / scale);
      return (normalized * (1.0 + nw.weight.to(torch::kFloat))).to(x_in.scalar_type());
    }
    auto normalized = (*h.normalized)((x / scale).to(x_in.scalar_type()));
    auto y = normalized * nw.weight;
    if (nw.bias.defined()) y = y + nw.bias;
    return y;
  }

  // cos/sin for `positions` [batch, q_len]: [batch, 1, q_len, rotary_dim] in `type`.
  std::pair<at::Tensor, at::Tensor> rotary(int64_t l, const at::Tensor& positions, at::ScalarType type) const {
    const bool local = inv_freq_local.defined() && !cfg.sliding_window.empty() && cfg.sliding_window[l] > 0;
    auto freqs = positions.to(torch::kFloat).unsqueeze(-1) * (local ? inv_freq_local : inv_freq);  // [b, q, dim/2]
    auto emb = at::cat({freqs, freqs}, -1).unsqueeze(1);
    return {emb.cos().to(type), emb.sin().to(type)};
  }

  at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) const {
    // x [b, heads, q, d_head]; the first rotary_dim dims rotate.
    if (cfg.rotary_dim == cfg.d_head) return x * cos + rotate_half(x) * sin;
    auto rot = x.narrow(-1, 0, cfg.rotary_dim), pass = x.narrow(-1, cfg.rotary_dim, cfg.d_head - cfg.rotary_dim);
    return at::cat({rot * cos + rotate_half(rot) * sin, pass}, -1);
  }

  at::Tensor attention(int64_t l, const at::Tensor& x, const at::Tensor& positions, const at::Tensor& key_mask,
                       bool plain_causal, Cache* cache) {
    const auto& W = w.layers[l];
    const auto& h = layer_hooks[l];
    const int64_t b = x.size(0), q_len = x.size(1), H = cfg.n_heads, KV = cfg.n_kv_heads, D = cfg.d_head;
    auto q = (*h.q)(at::linear(x, W.wq, W.bq).view({b, q_len, H, D}));   // [batch, pos, head_index, d_head]
    auto k = (*h.k)(at::linear(x, W.wk, W.bk).view({b, q_len, KV, D}));  // [batch, pos, kv_head_index, d_head]
    auto v = (*h.v)(at::linear(x, W.wv, W.bv).view({b, q_len, KV, D}));  // [batch, pos, kv_head_index, d_head]
    if (cfg.qk_norm) {
      q = norm(q, W.q_ln, h.q_ln);
      k = norm(k, W.k_ln, h.k_ln);
    }
    auto qh = q.transpose(1, 2), kh = k.transpose(1, 2), vh = v.transpose(1, 2);
    if (cfg.positions == PositionKind::Rotary) {
      auto [cos, sin] = rotary(l, positions, qh.scalar_type());
      qh = (*h.rot_q)(apply_rotary(qh, cos, sin).transpose(1, 2)).transpose(1, 2);
      kh = (*h.rot_k)(apply_rotary(kh, cos, sin).transpose(1, 2)).transpose(1, 2);
    }
    if (cache) {
      auto& c = cache->layers[l];
      c.k.narrow(2, cache->length, q_len).copy_(kh);
      c.v.narrow(2, cache->length, q_len).copy_(vh);
      kh = c.k.narrow(2, 0, cache->length + q_len);
      vh = c.v.narrow(2, 0, cache->length + q_len);
    }
    const int64_t k_len = kh.size(2);
    at::Tensor mask = key_mask;
    const int64_t window = cfg.sliding_window.empty() ? 0 : cfg.sliding_window[l];
    if (window > 0 && k_len > window && !plain_causal && cache && cache->positions.defined()) {
      // Padding between tokens: the window is measured in position ids.
      auto kp = cache->positions.narrow(1, 0, k_len);                              // [b, k]
      auto in_window = (positions.unsqueeze(2) - kp.unsqueeze(1)) < window;         // [b, q, k]
      mask = mask.logical_and(in_window.unsqueeze(1));
    } else if (window > 0 && k_len > window) {
      // Keys more than `window` positions back are out of reach (q - k < window).
      auto qi = at::arange(k_len - q_len, k_len, x.options().dtype(at::kLong)).unsqueeze(1);
      auto ki = at::arange(0, k_len, x.options().dtype(at::kLong)).unsqueeze(0);
      auto in_window = (qi - ki) < window;
      mask = plain_causal ? in_window.logical_and(ki <= qi).view({1, 1, q_len, k_len})
                          : mask.logical_and(in_window.view({1, 1, q_len, k_len}));
      plain_causal = false;
    }
    const double scale = cfg.attn_scale > 0 ? cfg.attn_scale : 1.0 / std::sqrt(static_cast<double>(D));
    const bool explicit_path = h.attn_scores->active() || h.pattern->active() || cfg.attn_softcap.has_value();
    at::Tensor z;
    if (!explicit_path) {
      if (KV != H) {
        kh = kh.repeat_interleave(H / KV, 1);
        vh = vh.repeat_interleave(H / KV, 1);
      }
      if (plain_causal)
        z = at::scaled_dot_product_attention(qh, kh, vh, {}, 0.0, /*is_causal=*/true, scale);
      else
        z = at::scaled_dot_product_attention(qh, kh, vh, mask, 0.0, false, scale);
    } else {
      auto kr = KV != H ? kh.repeat_interleave(H / KV, 1) : kh;
      auto vr = KV != H ? vh.repeat_interleave(H / KV, 1) : vh;
      auto scores = at::matmul(qh, kr.transpose(-1, -2)) * scale;  // [batch, head_index, query_pos, key_pos]
      if (cfg.attn_softcap) scores = at::tanh(scores / *cfg.attn_softcap) * *cfg.attn_softcap;
      at::Tensor allowed = plain_causal ? at::ones({q_len, k_len}, x.options().dtype(at::kBool)).tril() : mask;
      scores = scores.masked_fill(allowed.logical_not(), -std::numeric_limits<float>::infinity());
      scores = (*h.attn_scores)(scores);
      auto pattern = (*h.pattern)(at::softmax(scores, -1, at::kFloat).to(qh.scalar_type()));
      z = at::matmul(pattern, vr);
    }
    z = (*h.z)(z.transpose(1, 2));  // [batch, pos, head_index, d_head]
    if (h.result->active()) {
      auto wo = W.wo.view({cfg.d_model, H, D});
      auto result = (*h.result)(at::einsum("bphe,mhe->bphm", {z, wo}));  // [batch, pos, head_index, d_model]
      auto out = result.sum(2);
      return W.bo.defined() ? out + W.bo : out;
    }
    return at::linear(z.reshape({b, q_len, H * D}), W.wo, W.bo);
  }

  at::Tensor mlp(int64_t l, const at::Tensor& x) {
    const auto& W = w.layers[l];
    const auto& h = layer_hooks[l];
    if (cfg.gated_mlp) {
      auto pre = (*h.mlp_pre)(at::linear(x, W.w_gate, W.b_gate));               // [batch, pos, d_mlp]
      auto pre_linear = (*h.mlp_pre_linear)(at::linear(x, W.w_in, W.b_in));    // [batch, pos, d_mlp]
      auto post = (*h.mlp_post)(activation(pre, cfg.act) * pre_linear);         // [batch, pos, d_mlp]
      return at::linear(post, W.w_out, W.b_out);
    }
    auto pre = (*h.mlp_pre)(at::linear(x, W.w_in, W.b_in));
    auto post = (*h.mlp_post)(activation(pre, cfg.act));
    return at::linear(post, W.w_out, W.b_out);
  }

  // tokens [b, q]; positions [b, q]; key_mask [b, 1, q, k] (bool) or undefined for plain causal.
  // last_only: unembed the last position only (generation); the final norm and
  // its hooks still see every position.
  // hidden_only: return the final norm's output [b, q, d_model] instead of logits.
  at::Tensor run(const at::Tensor& tokens, const at::Tensor& positions, const at::Tensor& key_mask, Cache* cache,
                 bool last_only = false, int64_t stop_at_layer = -1, bool hidden_only = false) {
    auto x = at::embedding(w.embed, tokens);
    if (cfg.embed_scale != 1.0) x = x * torch::tensor(cfg.embed_scale, x.options());
    x = (*hook_embed)(needs_input_grad(x));  // [batch, pos, d_model]
    if (cfg.positions == PositionKind::Learned) x = x + (*hook_pos_embed)(at::embedding(w.pos_embed, positions));
    return run_blocks(x, 0, positions, key_mask, cache, last_only, stop_at_layer, hidden_only);
  }

  // Gradients for backward hooks, without parameter gradients: the input of
  // the computation is made to require grad when a backward hook waits.
  at::Tensor needs_input_grad(const at::Tensor& x) const {
    if (at::GradMode::is_enabled() && !x.requires_grad() &&
        std::any_of(points.begin(), points.end(), [](const auto& p) { return p->has_backward(); }))
      return x.detach().requires_grad_(true);
    return x;
  }

  // Blocks first..n_layers-1 on the residual stream x entering block `first`,
  // then the final norm and the unembedding. With 0 <= stop_at_layer <
  // n_layers: blocks up to stop_at_layer - 1 only, returning the residual
  // stream entering block stop_at_layer (no norm, no unembedding).
  at::Tensor run_blocks(at::Tensor x, int64_t first, const at::Tensor& positions, const at::Tensor& key_mask,
                        Cache* cache, bool last_only, int64_t stop_at_layer = -1, bool hidden_only = false) {
    const bool plain_causal = !key_mask.defined();
    const bool stops = stop_at_layer >= 0 && stop_at_layer < cfg.n_layers;
    for (int64_t l = first; l < (stops ? stop_at_layer : cfg.n_layers); ++l) {
      const auto& h = layer_hooks[l];
      const auto& W = w.layers[l];
      auto resid_pre = (*h.resid_pre)(x);  // [batch, pos, d_model]
      auto attn = attention(l, norm(resid_pre, W.ln1, h.ln1), positions, key_mask, plain_causal, cache);
      if (cfg.post_norms) attn = norm(attn, W.ln1_post, h.ln1_post);
      auto attn_out = (*h.attn_out)(attn);
      if (cfg.parallel_residual) {
        auto mlp_out = (*h.mlp_out)(mlp(l, norm(resid_pre, W.ln2, h.ln2)));
        x = (*h.resid_post)(resid_pre + attn_out + mlp_out);
      } else {
        auto resid_mid = (*h.resid_mid)(resid_pre + attn_out);
        auto m = mlp(l, norm(resid_mid, W.ln2, h.ln2));
        if (cfg.post_norms) m = norm(m, W.ln2_post, h.ln2_post);
        auto mlp_out = (*h.mlp_out)(m);
        x = (*h.resid_post)(resid_mid + mlp_out);
      }
    }
    if (stops) return x;
    x = norm(x, w.ln_final, ln_final);
    if (last_only) x = x.narrow(1, x.size(1) - 1, 1).contiguous();  // a strided input would make linear a bmm
    if (hidden_only) return x;
    return unembed(x);
  }

  // The final norm's output [..., d_model] -> logits [..., vocab] (float32, final softcap applied).
  at::Tensor unembed(const at::Tensor& x) const {
    auto logits = at::linear(x, w.unembed, w.unembed_bias).to(torch::kFloat);
    if (cfg.final_softcap) logits = at::tanh(logits / *cfg.final_softcap) * *cfg.final_softcap;
    return logits;
  }

  void check_tokens(const at::Tensor& tokens) const {
    if (!tokens.defined() || tokens.dim() != 2)
      throw ShapeError(detail::expected_got("tokens", "a 2-D tensor [batch, pos]",
                                            tokens.defined() ? "shape " + c10::str(tokens.sizes()) : "undefined",
                                            "add a batch dimension with tokens.unsqueeze(0)"));
    if (at::isFloatingType(tokens.scalar_type()) || tokens.scalar_type() == at::kBool)
      throw InvalidArgument(detail::expected_got("tokens", "an integer tensor", c10::toString(tokens.scalar_type())));
    if (tokens.numel() == 0) throw ShapeError(detail::expected_got("tokens", "at least one token", "none"));
    auto mn = tokens.min().item<int64_t>(), mx = tokens.max().item<int64_t>();
    if (mn < 0 || mx >= cfg.d_vocab)
      throw InvalidArgument(detail::expected_got("token id", "an id in [0, " + std::to_string(cfg.d_vocab) + ")",
                                                 std::to_string(mn < 0 ? mn : mx), "is this the model's tokenizer?"));
  }
};

namespace detail {
// Positions follow the mask: the first real token of each row is position 0.
inline at::Tensor positions_from_mask(const at::Tensor& mask, int64_t offset, int64_t q_len) {
  auto pos = mask.to(at::kLong).cumsum(1) - 1;
  pos = pos.clamp_min(0);
  return pos.narrow(1, offset, q_len);
}

// [b, 1, q, k] bool: causal and not padding; a padding query attends to itself
// (its output is never used, and a fully masked row would be NaN).
inline at::Tensor key_mask_for(const at::Tensor& mask, int64_t offset, int64_t q_len) {
  const int64_t k_len = offset + q_len;
  auto keys = mask.narrow(1, 0, k_len).to(at::kBool);                  // [b, k]
  auto qpos = at::arange(offset, k_len, mask.options().dtype(at::kLong)).unsqueeze(1);
  auto kpos = at::arange(0, k_len, mask.options().dtype(at::kLong)).unsqueeze(0);
  auto causal = kpos <= qpos;                                          // [q, k]
  auto m = causal.unsqueeze(0).logical_and(keys.unsqueeze(1));         // [b, q, k]
  auto self = (kpos == qpos).unsqueeze(0);
  return m.logical_or(self).unsqueeze(1);
}
// Positions and key mask of a [b, q] run from its attention mask (undefined or
// all ones: positions 0..q-1 and no mask).
inline std::pair<at::Tensor, at::Tensor> positions_and_mask(const at::Tensor& attention_mask, int64_t b, int64_t q) {
  if (attention_mask.defined() && (attention_mask.dim() != 2 || attention_mask.size(0) != b || attention_mask.size(1) != q))
    throw ShapeError(detail::expected_got("attention_mask", "shape [" + std::to_string(b) + ", " + std::to_string(q) + "]",
                                          "shape " + c10::str(attention_mask.sizes())));
  if (!attention_mask.defined() || attention_mask.all().item<bool>())
    return {at::arange(q, at::kLong).unsqueeze(0).expand({b, q}), at::Tensor()};
  return {positions_from_mask(attention_mask, 0, q), key_mask_for(attention_mask, 0, q)};
}
}  // namespace detail

using detail::key_mask_for;
using detail::positions_and_mask;
using detail::positions_from_mask;

}  // namespace scalpel
