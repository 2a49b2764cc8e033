// Private to src/trace: the pieces every patching routine shares — a patched
// variant, checking a metric's result, and the names of the cached runs a
// sweep starts from (the patch itself is hooks/edits.hpp's patch_into).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "scalpel/errors.hpp"
#include "scalpel/hooks/names.hpp"
#include "scalpel/model/config.hpp"
#include "scalpel/trace/patching.hpp"
#include "util/messages.hpp"

namespace scalpel::detail {

/// One patched variant: a head / neuron (or -1: all) at a position (or -1: all).
struct Variant {
  int64_t unit = -1;
  int64_t pos = -1;
};

/// The metric on `rows` batch rows, checked to give one score per row, as float32 [rows].
inline at::Tensor score_rows(const Metric& metric, const at::Tensor& logits, int64_t rows) {
  auto s = metric(logits);
  if (!s.defined() || s.numel() != rows)
    throw ShapeError(expected_got("metric result", "one score per row (" + std::to_string(rows) + ")",
                                  s.defined() ? "shape " + c10::str(s.sizes()) : "undefined",
                                  "a metric maps logits [rows, pos, vocab] to [rows]"));
  return s.reshape({rows}).to(at::kFloat);
}

/// Units per layer of a patching component: heads, key/value heads, neurons,
/// or 0 for whole-layer components (UnknownName for an unknown component).
int64_t component_units(const ModelConfig& cfg, const std::string& component);

/// blocks.{l}.hook_resid_pre for every layer.
inline std::vector<std::string> resid_pre_names(int64_t n_layers) {
  std::vector<std::string> names;
  for (int64_t l = 0; l < n_layers; ++l) names.push_back(hook_name("resid_pre", l));
  return names;
}

}  // namespace scalpel::detail
