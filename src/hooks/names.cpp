// The component table and hook-name formatting / parsing (scalpel/hooks/names.hpp).
#include "scalpel/hooks/names.hpp"

#include <cstring>
#include <map>

#include "scalpel/errors.hpp"
#include "util/messages.hpp"

namespace scalpel {
namespace {

constexpr const char* kBlockPrefix = "blocks.";

// TransformerLens' get_act_name spellings of the MLP components.
const std::map<std::string, std::string>& aliases() {
  static const std::map<std::string, std::string> table = {
      {"pre", "mlp_pre"}, {"post", "mlp_post"}, {"pre_linear", "mlp_pre_linear"}};
  return table;
}

std::vector<std::string> component_names() {
  std::vector<std::string> names;
  for (const auto& c : hook_components()) names.push_back(c.name);
  return names;
}

// Every hook name pattern, with {l} for the layer (for "nearest" hints).
std::vector<std::string> name_patterns() {
  std::vector<std::string> names;
  for (const auto& c : hook_components())
    names.push_back(c.in_block ? std::string(kBlockPrefix) + "0." + c.suffix : std::string(c.suffix));
  return names;
}

}  // namespace

const std::vector<HookComponent>& hook_components() {
  using S = HookShape;
  static const std::vector<HookComponent> table = {
      {"embed", "hook_embed", false, S::Model},
      {"pos_embed", "hook_pos_embed", false, S::Model},
      {"resid_pre", "hook_resid_pre", true, S::Model},
      {"ln1_scale", "ln1.hook_scale", true, S::Scale},
      {"ln1_normalized", "ln1.hook_normalized", true, S::Model},
      {"q", "attn.hook_q", true, S::Head},
      {"k", "attn.hook_k", true, S::KVHead},
      {"v", "attn.hook_v", true, S::KVHead},
      {"q_ln_scale", "attn.q_ln.hook_scale", true, S::Scale},
      {"q_ln_normalized", "attn.q_ln.hook_normalized", true, S::Head},
      {"k_ln_scale", "attn.k_ln.hook_scale", true, S::Scale},
      {"k_ln_normalized", "attn.k_ln.hook_normalized", true, S::KVHead},
      {"rot_q", "attn.hook_rot_q", true, S::Head},
      {"rot_k", "attn.hook_rot_k", true, S::KVHead},
      {"attn_scores", "attn.hook_attn_scores", true, S::Pattern},
      {"pattern", "attn.hook_pattern", true, S::Pattern},
      {"z", "attn.hook_z", true, S::Head},
      {"result", "attn.hook_result", true, S::HeadModel},
      {"ln1_post_scale", "ln1_post.hook_scale", true, S::Scale},
      {"ln1_post_normalized", "ln1_post.hook_normalized", true, S::Model},
      {"attn_out", "hook_attn_out", true, S::Model},
      {"resid_mid", "hook_resid_mid", true, S::Model},
      {"ln2_scale", "ln2.hook_scale", true, S::Scale},
      {"ln2_normalized", "ln2.hook_normalized", true, S::Model},
      {"mlp_pre", "mlp.hook_pre", true, S::MLP},
      {"mlp_pre_linear", "mlp.hook_pre_linear", true, S::MLP},
      {"mlp_post", "mlp.hook_post", true, S::MLP},
      {"ln2_post_scale", "ln2_post.hook_scale", true, S::Scale},
      {"ln2_post_normalized", "ln2_post.hook_normalized", true, S::Model},
      {"mlp_out", "hook_mlp_out", true, S::Model},
      {"resid_post", "hook_resid_post", true, S::Model},
      {"ln_final_scale", "ln_final.hook_scale", false, S::Scale},
      {"ln_final_normalized", "ln_final.hook_normalized", false, S::Model},
  };
  return table;
}

const HookComponent& hook_component(const std::string& component) {
  auto a = aliases().find(component);
  const std::string& name = a == aliases().end() ? component : a->second;
  for (const auto& c : hook_components())
    if (name == c.name) return c;
  throw UnknownName(detail::expected_got("hook component \"" + component + "\"", "a component of hook_components()",
                                         "unknown",
                                         "nearest: " + detail::join_names(detail::nearest_names(component, component_names()))));
}

HookName::HookName(const std::string& component_in, int64_t layer_in) : layer(layer_in) {
  const HookComponent& c = hook_component(component_in);
  component = c.name;
  if (c.in_block && layer < 0)
    throw InvalidArgument(detail::expected_got("layer of hook component \"" + component + "\"", "a layer >= 0",
                                               std::to_string(layer), "it has one hook point per block"));
  if (!c.in_block && layer != -1)
    throw InvalidArgument(detail::expected_got("layer of hook component \"" + component + "\"",
                                               "none (-1): it is outside the blocks", std::to_string(layer)));
}

std::string HookName::str() const {
  const HookComponent& c = info();
  if (!c.in_block) return c.suffix;
  return kBlockPrefix + std::to_string(layer) + "." + c.suffix;
}

std::optional<HookName> HookName::try_parse(const std::string& name) {
  int64_t layer = -1;
  std::string rest = name;
  if (name.rfind(kBlockPrefix, 0) == 0) {
    size_t i = std::strlen(kBlockPrefix);
    const size_t digits = i;
    layer = 0;
    for (; i < name.size() && name[i] >= '0' && name[i] <= '9' && layer < (int64_t{1} << 40); ++i)
      layer = layer * 10 + (name[i] - '0');
    if (i == digits || i >= name.size() || name[i] != '.') return std::nullopt;
    if (i - digits > 1 && name[digits] == '0') return std::nullopt;  // "blocks.01." is not a name
    rest = name.substr(i + 1);
  }
  for (const auto& c : hook_components())
    if (rest == c.suffix && c.in_block == (layer >= 0)) return HookName(c.name, layer);
  return std::nullopt;
}

HookName HookName::parse(const std::string& name) {
  if (auto h = try_parse(name)) return *h;
  throw UnknownName(detail::expected_got("hook name \"" + name + "\"", "a TransformerLens hook name", "not one",
                                         "nearest: " + detail::join_names(detail::nearest_names(name, name_patterns()))));
}

std::string hook_name(const std::string& component, int64_t layer) { return HookName(component, layer).str(); }

int64_t hook_layer(const std::string& name) { return HookName::parse(name).layer; }

}  // namespace scalpel
