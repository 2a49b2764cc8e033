// SCALPEL_USES_TORCH
// What circuit breakers and steering vectors share inside steer/: their sites
// (a hook point and, for attn.hook_z, a head), the positions rule of an
// attachment, and the training loop of an edit on the breaker objective
// (train_breaker and train_steering both run train_edit).
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "scalpel/hooks/names.hpp"
#include "scalpel/steer/breaker.hpp"
#include "scalpel/train/train.hpp"

namespace scalpel::steer_detail {

struct SiteInfo {
  HookName name;
  int64_t width;  // the width of the vector the edit acts on at this site
};

/// The site's component and width; `what` ("breaker", "steering vector") names
/// the edit in errors. UnknownName for a hook the model lacks, Unsupported for
/// a component edits do not sit on, InvalidArgument for a bad head.
SiteInfo site_info(const Transformer& model, const BreakerSite& site, const std::string& what);
std::string site_label(const BreakerSite& s);
/// InvalidArgument unless positions is "all", "prompt" or "generated".
void check_positions(const std::string& positions, const std::string& what);

/// What the hooks of one attachment share: the positions rule, and while an
/// edit trains, the completion mask of the current batch ([b, pos], 1 on
/// completion tokens).
struct AttachState {
  const Transformer* model = nullptr;
  std::string positions = "all";
  at::Tensor completion_mask;
  /// [b] per-example strength factor set by a gate's probe hook (differentiable
  /// while a gate trains); undefined: 1 for every example.
  at::Tensor row_scale;
  /// [b] long: each row's last prompt token, where a gate's probe reads, set by
  /// train_edit for its teacher-forced batches (left-padded: L − completion − 1);
  /// undefined: the last position (generate() and make_lm_batch left-pad).
  at::Tensor last_index;
};

/// The positions an attachment acts on for activation `x` ([b, pos, ...]):
/// sets `gate` to a [b, pos] float mask (the positions rule times the row
/// scale), or leaves it undefined for every position at full strength;
/// returns false when it acts on none of them (leave x unchanged).
bool position_gate(const AttachState& state, const at::Tensor& x, at::Tensor& gate);

/// An edit to train: the intervention (its positions rule and the layers of its
/// sites are read from it), its parameters (trained in place), how to attach it
/// for the loss, and how to write a checkpoint.
struct EditTraining {
  std::string what;  // "train_breaker", "train_steering", "train_gate"
  const Intervention* target = nullptr;
  std::vector<TrainParam> params;
  std::function<HookHandle(const std::shared_ptr<AttachState>&)> attach;
  std::function<void(const std::string& directory)> save;
  /// Called before "reroute" starts when the edit is a no-op (its gradient
  /// vanishes there): perturbs the parameters a little (seeded).
  std::function<void(uint64_t seed)> leave_no_op;
};

/// An intervention of `kind` from its file's fields and tensors (load_intervention
/// and a gate's inner intervention use it; FormatError for an unknown kind).
std::shared_ptr<Intervention> intervention_from_parts(const std::string& kind, const std::string& fields_json,
                                                      const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                                                      const std::string& where);
/// A GatedIntervention from its parts (gate.cpp).
std::shared_ptr<Intervention> gated_from_parts(const std::string& fields_json,
                                               const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                                               const std::string& where);

/// The breaker objective's loop for any edit (see train_breaker).
TrainResult train_edit(Transformer& model, EditTraining& edit, const BreakerData& data, const BreakerObjective& objective,
                       const TrainOptions& options);

}  // namespace scalpel::steer_detail
