// scalpel/hooks/names.hpp — the one place hook names are built and parsed.
//
// A hook name is a component and, for components inside a block, a layer:
//   HookName{"z", 3}.str()              == "blocks.3.attn.hook_z"
//   HookName::parse("blocks.3.attn.hook_z") == HookName{"z", 3}
//   hook_name("resid_pre", 0)           == "blocks.0.hook_resid_pre"
//   hook_name("embed")                  == "hook_embed"
// Heads and positions are selections (of dims 2 and 1 of an activation), not
// part of a name, as in TransformerLens. Component names follow
// TransformerLens' get_act_name where it has one ("pre", "post" and
// "pre_linear" are accepted for mlp_pre, mlp_post and mlp_pre_linear); the
// shape and place of each is in docs/hook_names.md. Torch-free.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace scalpel {

/// The trailing layout of a component's activation ([batch, pos, ...] unless noted).
enum class HookShape {
  Model,      ///< [batch, pos, d_model]
  Head,       ///< [batch, pos, head_index, d_head]
  KVHead,     ///< [batch, pos, kv_head_index, d_head]
  HeadModel,  ///< [batch, pos, head_index, d_model] (hook_result)
  Pattern,    ///< [batch, head_index, query_pos, key_pos]
  MLP,        ///< [batch, pos, d_mlp]
  Scale,      ///< [batch, pos, 1] (or [batch, pos, heads, 1] for q_ln / k_ln)
};

/// One row of the component table.
struct HookComponent {
  const char* name;    ///< short name: "resid_pre", "z", "ln1_scale", …
  const char* suffix;  ///< in a block: after "blocks.{l}."; else the whole hook name
  bool in_block;       ///< true: one hook point per layer
  HookShape shape;
};

/// Every component, in the order of the forward pass (a model has the ones
/// its architecture uses: rotary, QK-norm, post-norms and gated MLPs add some).
const std::vector<HookComponent>& hook_components();

/// The row of a component name (aliases resolved); UnknownName listing the
/// nearest names when there is none.
const HookComponent& hook_component(const std::string& component);

/// A hook point's name as a value: component (short name) and layer (-1 for
/// components outside the blocks: embed, pos_embed, ln_final_*).
struct HookName {
  std::string component;
  int64_t layer = -1;

  /// Validates: UnknownName for an unknown component, InvalidArgument for a
  /// block component without a layer (or a layer given to one outside the blocks).
  HookName(const std::string& component, int64_t layer = -1);

  /// The TransformerLens name, e.g. "blocks.3.attn.hook_z".
  std::string str() const;
  const HookComponent& info() const { return hook_component(component); }

  /// UnknownName (with the nearest valid names) when `name` is not a hook name.
  static HookName parse(const std::string& name);
  /// std::nullopt when `name` is not a hook name.
  static std::optional<HookName> try_parse(const std::string& name);

  bool operator==(const HookName& o) const { return layer == o.layer && component == o.component; }
  bool operator!=(const HookName& o) const { return !(*this == o); }
};

/// HookName(component, layer).str(): TransformerLens' get_act_name.
std::string hook_name(const std::string& component, int64_t layer = -1);

/// The layer of a hook name ("blocks.{l}.…" → l), -1 for a name outside the
/// blocks; UnknownName for a string that is not a hook name.
int64_t hook_layer(const std::string& name);

}  // namespace scalpel
