// SCALPEL_USES_TORCH
// The hooked transformer: one forward pass shared by every architecture,
// driven by ModelConfig, with a HookPoint at every named activation.
#include "scalpel/model/transformer.hpp"

#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "io/mapped_pages.hpp"
#include "model/weights.hpp"
#include "scalpel/errors.hpp"
#include "scalpel/io/gguf.hpp"
#include "scalpel/io/gguf_convert.hpp"
#include "scalpel/io/gguf_tokenizer.hpp"
#include "scalpel/io/hf_model.hpp"
#include "scalpel/io/tokenizer.hpp"
#include "scalpel/log.hpp"
#include "scalpel/io/safetensors.hpp"
#include "util/atomic_file.hpp"
#include "util/logging.hpp"
#include "util/messages.hpp"

namespace scalpel {

// ---------------------------------------------------------------------------
// HookPoint / HookHandle
// ---------------------------------------------------------------------------
int64_t HookPoint::add(HookFn fn) {
  int64_t id = next_id_++;
  hooks_.push_back({id, std::move(fn), false});
  return id;
}

int64_t HookPoint::add_backward(BackwardHookFn fn) {
  int64_t id = next_id_++;
  HookFn forward = [fn = std::move(fn)](const at::Tensor& x, const HookPoint& point) -> at::Tensor {
    if (x.requires_grad()) {
      const HookPoint* p = &point;
      auto g = fn;
      x.register_hook([g, p](const at::Tensor& grad) { g(grad, *p); });
    }
    return at::Tensor();
  };
  hooks_.push_back({id, std::move(forward), true});
  ++n_backward_;
  return id;
}

void HookPoint::remove(int64_t id) {
  for (auto it = hooks_.begin(); it != hooks_.end(); ++it) {
    if (it->id != id) continue;
    if (it->backward) --n_backward_;
    hooks_.erase(it);
    return;
  }
}

at::Tensor HookPoint::run(at::Tensor x) const {
  // Copy: a hook may add or remove hooks while running.
  auto hooks = hooks_;
  for (const auto& h : hooks) {
    at::Tensor y = h.fn(x, *this);
    if (!y.defined()) continue;
    if (y.sizes() != x.sizes())
      throw ShapeError(detail::expected_got("hook at " + name_, "an activation of shape " + c10::str(x.sizes()),
                                            "shape " + c10::str(y.sizes()),
                                            "a hook must return a tensor of the activation's shape, or None"));
    x = y.scalar_type() == x.scalar_type() ? y : y.to(x.scalar_type());
  }
  return x;
}

HookHandle::HookHandle(HookHandle&& o) noexcept : hooks_(std::move(o.hooks_)) { o.hooks_.clear(); }
HookHandle& HookHandle::operator=(HookHandle&& o) noexcept {
  if (this != &o) {
    remove();
    hooks_ = std::move(o.hooks_);
    o.hooks_.clear();
  }
  return *this;
}
HookHandle::~HookHandle() { remove(); }
void HookHandle::remove() {
  for (auto& [point, id] : hooks_) point->remove(id);
  hooks_.clear();
}

// ---------------------------------------------------------------------------
// ModelConfig
// ---------------------------------------------------------------------------
void ModelConfig::validate() const {
  auto positive = [&](int64_t v, const char* field) {
    if (v <= 0) throw InvalidArgument(detail::expected_got(std::string("ModelConfig.") + field, "a positive value", std::to_string(v)));
  };
  positive(n_layers, "n_layers");
  positive(d_model, "d_model");
  positive(n_heads, "n_heads");
  positive(n_kv_heads, "n_kv_heads");
  positive(d_head, "d_head");
  positive(d_mlp, "d_mlp");
  positive(d_vocab, "d_vocab");
  if (n_heads % n_kv_heads != 0)
    throw InvalidArgument(detail::expected_got("ModelConfig.n_kv_heads", "a divisor of n_heads", std::to_string(n_kv_heads)));
  if (positions == PositionKind::Rotary && (rotary_dim <= 0 || rotary_dim > d_head || rotary_dim % 2 != 0))
    throw InvalidArgument(detail::expected_got("ModelConfig.rotary_dim", "an even number in (0, d_head]", std::to_string(rotary_dim)));
  if (!sliding_window.empty() && static_cast<int64_t>(sliding_window.size()) != n_layers)
    throw InvalidArgument(detail::expected_got("ModelConfig.sliding_window", "one entry per layer (" + std::to_string(n_layers) + ")",
                                               std::to_string(sliding_window.size()) + " entries"));
  if (rope_scaling && rope_scaling->rope_type != "linear" && rope_scaling->rope_type != "llama3")
    throw Unsupported(detail::expected_got("rope_scaling.rope_type", "\"linear\" or \"llama3\"",
                                           "\"" + rope_scaling->rope_type + "\""));
}

// ---------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------
namespace {

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
};

at::Tensor activation(const at::Tensor& x, Activation a) {
  switch (a) {
    case Activation::SiLU: return at::silu(x);
    case Activation::GELU: return at::gelu(x);
    case Activation::GELUTanh: return at::gelu(x, "tanh");
    case Activation::ReLU: return at::relu(x);
  }
  return x;
}

at::Tensor rotate_half(const at::Tensor& x) {
  auto half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

}  // namespace

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

  HookPoint* point(const std::string& name) {
    points.push_back(std::make_unique<HookPoint>(name));
    by_name[name] = points.back().get();
    return points.back().get();
  }

  void make_hooks() {
    hook_embed = point("hook_embed");
    if (cfg.positions == PositionKind::Learned) hook_pos_embed = point("hook_pos_embed");
    for (int64_t l = 0; l < cfg.n_layers; ++l) {
      const std::string b = "blocks." + std::to_string(l) + ".";
      LayerHooks h{};
      h.resid_pre = point(b + "hook_resid_pre");
      h.ln1 = {point(b + "ln1.hook_scale"), point(b + "ln1.hook_normalized")};
      h.q = point(b + "attn.hook_q");
      h.k = point(b + "attn.hook_k");
      h.v = point(b + "attn.hook_v");
      if (cfg.qk_norm) {
        h.q_ln = {point(b + "attn.q_ln.hook_scale"), point(b + "attn.q_ln.hook_normalized")};
        h.k_ln = {point(b + "attn.k_ln.hook_scale"), point(b + "attn.k_ln.hook_normalized")};
      }
      if (cfg.positions == PositionKind::Rotary) {
        h.rot_q = point(b + "attn.hook_rot_q");
        h.rot_k = point(b + "attn.hook_rot_k");
      }
      h.attn_scores = point(b + "attn.hook_attn_scores");
      h.pattern = point(b + "attn.hook_pattern");
      h.z = point(b + "attn.hook_z");
      h.result = point(b + "attn.hook_result");
      if (cfg.post_norms) h.ln1_post = {point(b + "ln1_post.hook_scale"), point(b + "ln1_post.hook_normalized")};
      h.attn_out = point(b + "hook_attn_out");
      if (!cfg.parallel_residual) h.resid_mid = point(b + "hook_resid_mid");
      h.ln2 = {point(b + "ln2.hook_scale"), point(b + "ln2.hook_normalized")};
      h.mlp_pre = point(b + "mlp.hook_pre");
      if (cfg.gated_mlp) h.mlp_pre_linear = point(b + "mlp.hook_pre_linear");
      h.mlp_post = point(b + "mlp.hook_post");
      if (cfg.post_norms) h.ln2_post = {point(b + "ln2_post.hook_scale"), point(b + "ln2_post.hook_normalized")};
      h.mlp_out = point(b + "hook_mlp_out");
      h.resid_post = point(b + "hook_resid_post");
      layer_hooks.push_back(h);
    }
    ln_final = {point("ln_final.hook_scale"), point("ln_final.hook_normalized")};
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
    if (window > 0 && k_len > window) {
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
  at::Tensor run(const at::Tensor& tokens, const at::Tensor& positions, const at::Tensor& key_mask, Cache* cache,
                 bool last_only = false, int64_t stop_at_layer = -1) {
    auto x = at::embedding(w.embed, tokens);
    if (cfg.embed_scale != 1.0) x = x * torch::tensor(cfg.embed_scale, x.options());
    x = (*hook_embed)(needs_input_grad(x));  // [batch, pos, d_model]
    if (cfg.positions == PositionKind::Learned) x = x + (*hook_pos_embed)(at::embedding(w.pos_embed, positions));
    return run_blocks(x, 0, positions, key_mask, cache, last_only, stop_at_layer);
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
                        Cache* cache, bool last_only, int64_t stop_at_layer = -1) {
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

namespace {
void check_device(const std::string& device) {
  if (device != "cpu")
    throw Unsupported(detail::expected_got("device", "\"cpu\"", "\"" + device + "\"", "CUDA support is not built yet"));
}

// dtype as asked; "" takes the checkpoint's (float16 checkpoints run in float32 on CPU).
at::ScalarType parse_dtype(const std::string& dtype, const std::string& checkpoint_dtype) {
  const std::string want = dtype.empty() ? checkpoint_dtype : dtype;
  if (want == "bfloat16" || want == "bf16") return at::kBFloat16;
  if (dtype.empty() || want == "float32" || want == "float" || want == "fp32") return at::kFloat;
  throw InvalidArgument(detail::expected_got("dtype", "\"float32\" or \"bfloat16\"", "\"" + dtype + "\""));
}
}  // namespace

std::shared_ptr<Transformer> Transformer::from_gguf(const std::string& path, const std::string& dtype,
                                                    const std::string& device) {
  check_device(device);
  const at::ScalarType type = parse_dtype(dtype, "float32");
  GGUFFile file(path);
  HFConfig hf = HFConfig::from_json(gguf_hf_config_json(file), path + " (GGUF metadata)");
  const auto& spec = detail::find_architecture(hf);
  ModelConfig cfg = spec.make_config(hf);
  std::map<std::string, at::Tensor> weights;
  for (auto& [name, t] : gguf_hf_state_dict(file, type)) weights.emplace(name, std::move(t));
  std::shared_ptr<Transformer> model(new Transformer(cfg, weights, type, /*release_copied_sources=*/false));
  weights.clear();
  model->impl_->config_json = hf.raw_json;
  model->impl_->source_gguf = path;
  if (file.contains("tokenizer.ggml.model")) model->tokenizer_ = std::make_shared<Tokenizer>(tokenizer_from_gguf(file));
  return model;
}

std::shared_ptr<Transformer> Transformer::from_pretrained(const std::string& directory, const std::string& dtype,
                                                          const std::string& device) {
  check_device(device);
  if (directory.size() > 5 && directory.compare(directory.size() - 5, 5, ".gguf") == 0) return from_gguf(directory, dtype, device);
  auto dir = HFModelDir::open(directory);
  const auto& spec = detail::find_architecture(dir.config());
  ModelConfig cfg = spec.make_config(dir.config());
  const at::ScalarType type = parse_dtype(dtype, dir.config().torch_dtype);
  std::map<std::string, at::Tensor> weights;
  for (const auto& k : dir.keys()) weights.emplace(k, dir.get(k));
  // The checkpoint's mappings are ours alone here, so copied weights may give their pages back.
  std::shared_ptr<Transformer> model(new Transformer(cfg, weights, type, /*release_copied_sources=*/true));
  model->impl_->config_json = dir.config().raw_json;
  model->impl_->source_dir = dir.files().directory;
  if (dir.has_tokenizer()) model->tokenizer_ = std::make_shared<Tokenizer>(dir.tokenizer());
  return model;
}

const ModelConfig& Transformer::config() const { return impl_->cfg; }
at::ScalarType Transformer::dtype() const { return impl_->dtype; }
bool Transformer::has_tokenizer() const { return tokenizer_ != nullptr; }
const Tokenizer& Transformer::tokenizer() const {
  if (!tokenizer_)
    throw FileNotFound(detail::expected_got("model tokenizer", "tokenizer files beside the weights", "none",
                                            "load one with load_tokenizer(path)"));
  return *tokenizer_;
}

namespace {
// Positions follow the mask: the first real token of each row is position 0.
at::Tensor positions_from_mask(const at::Tensor& mask, int64_t offset, int64_t q_len) {
  auto pos = mask.to(at::kLong).cumsum(1) - 1;
  pos = pos.clamp_min(0);
  return pos.narrow(1, offset, q_len);
}

// [b, 1, q, k] bool: causal and not padding; a padding query attends to itself
// (its output is never used, and a fully masked row would be NaN).
at::Tensor key_mask_for(const at::Tensor& mask, int64_t offset, int64_t q_len) {
  const int64_t k_len = offset + q_len;
  auto keys = mask.narrow(1, 0, k_len).to(at::kBool);                  // [b, k]
  auto qpos = at::arange(offset, k_len, mask.options().dtype(at::kLong)).unsqueeze(1);
  auto kpos = at::arange(0, k_len, mask.options().dtype(at::kLong)).unsqueeze(0);
  auto causal = kpos <= qpos;                                          // [q, k]
  auto m = causal.unsqueeze(0).logical_and(keys.unsqueeze(1));         // [b, q, k]
  auto self = (kpos == qpos).unsqueeze(0);
  return m.logical_or(self).unsqueeze(1);
}
}  // namespace

namespace {
// Positions and key mask of a [b, q] run from its attention mask (undefined or
// all ones: positions 0..q-1 and no mask).
std::pair<at::Tensor, at::Tensor> positions_and_mask(const at::Tensor& attention_mask, int64_t b, int64_t q) {
  if (attention_mask.defined() && (attention_mask.dim() != 2 || attention_mask.size(0) != b || attention_mask.size(1) != q))
    throw ShapeError(detail::expected_got("attention_mask", "shape [" + std::to_string(b) + ", " + std::to_string(q) + "]",
                                          "shape " + c10::str(attention_mask.sizes())));
  if (!attention_mask.defined() || attention_mask.all().item<bool>())
    return {at::arange(q, at::kLong).unsqueeze(0).expand({b, q}), at::Tensor()};
  return {positions_from_mask(attention_mask, 0, q), key_mask_for(attention_mask, 0, q)};
}
}  // namespace

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

std::vector<std::pair<std::string, at::Tensor>> Transformer::named_parameters() const {
  if (!impl_->derived.empty())
    throw Unsupported(detail::expected_got(
        "named_parameters of a " + impl_->cfg.architecture + " model", "weights stored as the checkpoint stores them",
        std::to_string(impl_->derived.size()) + " re-laid out at load (e.g. " + impl_->derived.front() + ")",
        "parameters and export are supported for Llama, Mistral and Qwen2 layouts"));
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& [name, slot] : impl_->named) out.emplace_back(name, *slot);
  return out;
}

bool Transformer::untie_embeddings() {
  auto& W = impl_->w;
  if (!W.unembed.defined() || !W.unembed.is_same(W.embed)) return false;
  W.unembed = W.embed.detach().clone();
  impl_->named.emplace_back("lm_head.weight", &W.unembed);
  return true;
}

void Transformer::save_pretrained(const std::string& directory, const std::string& dtype, bool overwrite) const {
  const auto params = named_parameters();
  if (impl_->config_json.empty())
    throw InvalidArgument(detail::expected_got("save_pretrained", "a model built from a Hugging Face config", "none known"));
  auto config = nlohmann::json::parse(impl_->config_json);
  const at::ScalarType type = dtype.empty() ? impl_->dtype : parse_dtype(dtype, "float32");
  config["torch_dtype"] = type == at::kBFloat16 ? "bfloat16" : "float32";
  const bool tied = impl_->w.unembed.is_same(impl_->w.embed);
  config["tie_word_embeddings"] = tied;
  detail::write_directory_atomic(directory, overwrite, impl_->source_dir, [&](const std::string& dir) {
    namespace fs = std::filesystem;
    const fs::path out(dir);
    detail::write_file_atomic((out / "config.json").string(), config.dump(2) + "\n");
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (const auto& [name, t] : params) tensors.emplace_back(name, t.detach().to(type));
    save_safetensors((out / "model.safetensors").string(), tensors, {{"format", "pt"}});
    if (!impl_->source_dir.empty()) {
      for (const char* f : {"generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                            "vocab.json", "merges.txt", "tokenizer.model", "chat_template.jinja"}) {
        const fs::path src = fs::path(impl_->source_dir) / f;
        if (fs::exists(src)) fs::copy_file(src, out / f);
      }
    } else if (!impl_->source_gguf.empty()) {
      GGUFFile file(impl_->source_gguf);
      write_gguf_tokenizer_files(file, dir);
    }
  });
}

namespace {
// Shapes of the Llama-layout tensors by name, for random initialization.
std::vector<int64_t> llama_shape(const ModelConfig& c, const std::string& name) {
  auto ends = [&](const std::string& suffix) {
    return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  const int64_t d = c.d_model, q = c.n_heads * c.d_head, kv = c.n_kv_heads * c.d_head;
  if (ends("embed_tokens.weight") || ends("lm_head.weight")) return {c.d_vocab, d};
  if (ends("norm.weight") || ends("layernorm.weight")) return {d};
  if (ends("q_proj.weight")) return {q, d};
  if (ends("k_proj.weight") || ends("v_proj.weight")) return {kv, d};
  if (ends("o_proj.weight")) return {d, q};
  if (ends("q_proj.bias")) return {q};
  if (ends("k_proj.bias") || ends("v_proj.bias")) return {kv};
  if (ends("o_proj.bias") || ends("down_proj.bias")) return {d};
  if (ends("gate_proj.weight") || ends("up_proj.weight")) return {c.d_mlp, d};
  if (ends("gate_proj.bias") || ends("up_proj.bias")) return {c.d_mlp};
  if (ends("down_proj.weight")) return {d, c.d_mlp};
  throw Unsupported(detail::expected_got("random initialization of \"" + name + "\"", "a Llama-layout tensor", "unknown"));
}
}  // namespace

std::shared_ptr<Transformer> Transformer::from_config(const std::string& config_json, uint64_t seed, double init_std,
                                                      const std::string& dtype) {
  HFConfig hf = HFConfig::from_json(config_json, "config");
  const auto& spec = detail::find_architecture(hf);
  if (spec.name != "llama" && spec.name != "mistral" && spec.name != "qwen2")
    throw Unsupported(detail::expected_got("from_config architecture", "llama, mistral or qwen2", spec.name));
  ModelConfig cfg = spec.make_config(hf);
  const at::ScalarType type = parse_dtype(dtype, "float32");
  // Ask the architecture which tensors it reads, with the biases the config implies.
  std::map<std::string, at::Tensor> weights;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  detail::WeightSource probe{
      [&](const std::string& n) {
        auto shape = llama_shape(cfg, n);
        at::Tensor t;
        if (shape.size() == 1) t = (n.find("norm") != std::string::npos) ? at::ones(shape) : at::zeros(shape);
        else t = at::normal(0.0, init_std, shape, gen);
        weights[n] = t;
        return t;
      },
      [&](const std::string& n) {
        if (n == "lm_head.weight") return !cfg.tie_embeddings;
        const bool bias = n.size() > 5 && n.compare(n.size() - 5, 5, ".bias") == 0;
        if (!bias) return true;
        if (n.find("o_proj") != std::string::npos) return cfg.o_bias;
        if (n.find("_proj") != std::string::npos && n.find("mlp") != std::string::npos) return cfg.mlp_bias;
        return cfg.qkv_bias;
      }};
  spec.load_weights(cfg, probe);
  std::shared_ptr<Transformer> model(new Transformer(cfg, weights, type, false));
  model->impl_->config_json = hf.raw_json;
  return model;
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
  for (size_t i = 0; i < hooks.size(); ++i)
    handle.hooks_.emplace_back(targets[i], targets[i]->add_backward(hooks[i].second));
  return handle;
}

HookHandle Transformer::add_hooks(const std::vector<std::pair<std::string, HookFn>>& hooks) {
  // Resolve every name first: an unknown name registers nothing.
  std::vector<HookPoint*> targets;
  for (const auto& [name, fn] : hooks) targets.push_back(&hook_point(name));
  HookHandle handle;
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
  for (int64_t t = 0; t < opt.max_new_tokens; ++t) {
    progress.update();
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
        if (std::find(opt.stop_tokens.begin(), opt.stop_tokens.end(), id) != opt.stop_tokens.end()) done[i] = true;
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
