// scalpel/hooks/edits.hpp — ready-made hooks that run entirely in C++ (no
// Python call per activation): patching from a source run, ablation, and
// activation addition, each restricted to chosen positions and heads.
//
// Positions index dim 1 ([batch, pos, ...] activations); heads index dim 2 of
// per-head activations ([batch, pos, head_index, d_head] for hook_q/k/v/z,
// [batch, pos, head_index, d_model] for hook_result). Empty lists mean "all".
// Negative positions count from the end, as in Python.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "scalpel/hooks/hook_point.hpp"

namespace scalpel {

/// The one patch: copies the entries of `source` at `positions` (dim 1) and
/// `heads` (dim 2: heads of per-head activations, neurons of mlp hooks) into
/// `dst`, in place. dst [batch, pos', ...] holds positions offset.. of the run
/// `source` [batch or 1, pos or 1, ...] comes from (batch 1 broadcasts over the
/// batch, pos 1 over positions). Negative positions count from the end of the
/// run (offset + pos'). Every patching routine (patch_hook, sweeps, circuits)
/// writes through this.
void patch_into(const at::Tensor& dst, const at::Tensor& source, const std::vector<int64_t>& positions = {},
                const std::vector<int64_t>& heads = {}, int64_t offset = 0);

/// Replaces the activation at `positions` / `heads` by the same entries of
/// `source` (e.g. a cached activation of another run; shapes must match, or
/// `source` may have batch 1 to broadcast over the batch).
HookFn patch_hook(at::Tensor source, std::vector<int64_t> positions = {}, std::vector<int64_t> heads = {});

/// Sets the activation at `positions` / `heads` to zero, or to `mean` when
/// given (mean ablation: `mean` broadcasts against one position's activation,
/// e.g. [d_model] or [head_index, d_head]).
HookFn ablate_hook(std::vector<int64_t> positions = {}, std::vector<int64_t> heads = {}, at::Tensor mean = {});

/// Adds alpha * vector at `positions` (steering / activation addition);
/// `vector` broadcasts against one position's activation ([d_model]).
HookFn add_vector_hook(at::Tensor vector, double alpha = 1.0, std::vector<int64_t> positions = {});

/// x − gamma·(x·v̂)v̂ on the last dimension (v̂ = v/|v|), as a hook.
HookFn project_out_hook(const at::Tensor& v, double gamma = 1.0);

}  // namespace scalpel
