// SCALPEL_USES_TORCH
#include "scalpel/hooks/edits.hpp"

#include <ATen/ATen.h>

#include <cmath>

#include "scalpel/errors.hpp"
#include "util/messages.hpp"

namespace scalpel {
namespace {

// The boolean [pos] (or [head]) selector for `idx` over a dimension of size n.
at::Tensor selector(const std::vector<int64_t>& idx, int64_t n, const char* what, const std::string& hook) {
  auto sel = at::zeros({n}, at::kBool);
  if (idx.empty()) return sel.fill_(true);
  for (int64_t i : idx) {
    int64_t j = i < 0 ? i + n : i;
    if (j < 0 || j >= n)
      throw InvalidArgument(detail::expected_got(std::string(what) + " at " + hook,
                                                 "an index in [-" + std::to_string(n) + ", " + std::to_string(n) + ")",
                                                 std::to_string(i)));
    sel[j] = true;
  }
  return sel;
}

// [batch, pos, (head), ...] mask of the selected entries, broadcastable against x.
at::Tensor region(const at::Tensor& x, const std::vector<int64_t>& positions, const std::vector<int64_t>& heads,
                  const std::string& hook) {
  if (x.dim() < 2)
    throw ShapeError(detail::expected_got("activation at " + hook, "at least [batch, pos]", c10::str(x.sizes())));
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  shape[1] = x.size(1);
  auto mask = selector(positions, x.size(1), "position", hook).view(shape);
  if (!heads.empty()) {
    if (x.dim() < 4)
      throw InvalidArgument(detail::expected_got("heads at " + hook, "a per-head activation [batch, pos, head, ...]",
                                                 "shape " + c10::str(x.sizes()), "select heads at hook_q/k/v/z/result"));
    std::vector<int64_t> hshape(static_cast<size_t>(x.dim()), 1);
    hshape[2] = x.size(2);
    mask = mask.logical_and(selector(heads, x.size(2), "head", hook).view(hshape));
  }
  return mask;
}

}  // namespace

void patch_into(const at::Tensor& dst, const at::Tensor& source, const std::vector<int64_t>& positions,
                const std::vector<int64_t>& heads, int64_t offset) {
  if (dst.dim() < 2 || source.dim() != dst.dim())
    throw ShapeError(detail::expected_got("patch_into source", "[batch, pos, ...] like dst " + c10::str(dst.sizes()),
                                          "shape " + c10::str(source.sizes())));
  const int64_t run = offset + dst.size(1);  // positions of the run source comes from
  const bool one_pos = source.size(1) == 1 && run != 1;
  if (!one_pos && source.size(1) != run)
    throw ShapeError(detail::expected_got("patch_into source positions", std::to_string(run) + " (or 1)",
                                          std::to_string(source.size(1))));
  auto at_pos = [&](int64_t p) {  // source at absolute position p: [batch, ...]
    return source.select(1, one_pos ? 0 : p);
  };
  auto check = [](int64_t i, int64_t n, const char* what) {
    const int64_t j = i < 0 ? i + n : i;
    if (j < 0 || j >= n)
      throw InvalidArgument(detail::expected_got(std::string("patch_into ") + what,
                                                 "an index in [-" + std::to_string(n) + ", " + std::to_string(n) + ")",
                                                 std::to_string(i)));
    return j;
  };
  if (!heads.empty() && dst.dim() < 3)
    throw InvalidArgument(detail::expected_got("patch_into heads", "an activation with a unit dimension [batch, pos, unit, ...]",
                                               "shape " + c10::str(dst.sizes())));
  auto copy_units = [&](const at::Tensor& d, const at::Tensor& s, int64_t unit_dim) {  // d, s share layout
    if (heads.empty()) {
      d.copy_(s);
      return;
    }
    for (int64_t h : heads) {
      const int64_t j = check(h, d.size(unit_dim), "head");
      d.select(unit_dim, j).copy_(s.select(unit_dim, j));
    }
  };
  if (positions.empty()) {
    copy_units(dst, one_pos ? source : source.narrow(1, offset, dst.size(1)), 2);
    return;
  }
  for (int64_t p : positions) {
    const int64_t j = check(p, run, "position");
    if (j < offset)
      throw InvalidArgument(detail::expected_got("patch_into position", "a position from " + std::to_string(offset) +
                                                                            " on (dst holds positions offset..)",
                                                 std::to_string(p)));
    copy_units(dst.select(1, j - offset), at_pos(j), 1);
  }
}

HookFn patch_hook(at::Tensor source, std::vector<int64_t> positions, std::vector<int64_t> heads) {
  if (!source.defined()) throw InvalidArgument(detail::expected_got("patch source", "a tensor", "undefined"));
  return [source, positions, heads](const at::Tensor& x, const HookPoint& p) {
    bool fits = source.dim() == x.dim() && (source.size(0) == x.size(0) || source.size(0) == 1);
    for (int64_t d = 1; fits && d < x.dim(); ++d) fits = source.size(d) == x.size(d);
    if (!fits)
      throw ShapeError(detail::expected_got("patch source at " + p.name(), "shape " + c10::str(x.sizes()) +
                                                                             " (or batch 1)",
                                            "shape " + c10::str(source.sizes()),
                                            "cache the source run with the same number of tokens"));
    region(x, positions, heads, p.name());  // validates the selection with the hook's name
    auto y = x.clone();
    patch_into(y, source.to(x.scalar_type()), positions, heads);
    return y;
  };
}

HookFn ablate_hook(std::vector<int64_t> positions, std::vector<int64_t> heads, at::Tensor mean) {
  return [positions, heads, mean](const at::Tensor& x, const HookPoint& p) {
    auto fill = mean.defined() ? mean.to(x.scalar_type()) : at::zeros({}, x.options());
    return at::where(region(x, positions, heads, p.name()), fill, x);
  };
}

HookFn add_vector_hook(at::Tensor vector, double alpha, std::vector<int64_t> positions) {
  if (!vector.defined()) throw InvalidArgument(detail::expected_got("steering vector", "a tensor", "undefined"));
  return [vector, alpha, positions](const at::Tensor& x, const HookPoint& p) {
    if (vector.size(-1) != x.size(-1))
      throw ShapeError(detail::expected_got("steering vector at " + p.name(), "last dimension " + std::to_string(x.size(-1)),
                                            "shape " + c10::str(vector.sizes())));
    auto add = vector.to(x.scalar_type()) * alpha;
    return at::where(region(x, positions, {}, p.name()), x + add, x);
  };
}

HookFn project_out_hook(const at::Tensor& v, double gamma) {
  if (!v.defined() || v.dim() != 1) throw ShapeError(detail::expected_got("project_out_hook v", "a vector [d]", v.defined() ? c10::str(v.sizes()) : "an undefined tensor"));
  const auto vd = v.to(at::kDouble);
  const double n = vd.norm().item<double>();
  if (!(n > 0) || !std::isfinite(n))
    throw InvalidArgument(detail::expected_got("project_out_hook v", "a finite nonzero vector", "norm " + std::to_string(n)));
  auto u = (vd / n).to(at::kFloat);
  return [u, gamma](const at::Tensor& x, const HookPoint&) {
    auto uu = u.to(x.device(), x.scalar_type());
    return x - gamma * at::matmul(x, uu).unsqueeze(-1) * uu;
  };
}

}  // namespace scalpel
