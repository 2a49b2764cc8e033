// SCALPEL_USES_TORCH
// HookPoint and HookHandle (scalpel/hooks/hook_point.hpp).
#include "scalpel/hooks/hook_point.hpp"

#include <ATen/ATen.h>

#include "scalpel/errors.hpp"
#include "util/messages.hpp"

namespace scalpel {

HookPoint::HookPoint(const HookPoint& other)
    : name_(other.name_), hooks_(other.hooks_), next_id_(other.next_id_), n_backward_(other.n_backward_) {}

HookPoint::~HookPoint() { clear(); }

int64_t HookPoint::add(HookFn fn) {
  int64_t id = next_id_++;
  hooks_.push_back({id, std::move(fn), false, nullptr});
  return id;
}

int64_t HookPoint::add_backward(BackwardHookFn fn) {
  int64_t id = next_id_++;
  auto live = std::make_shared<bool>(true);
  HookFn forward = [fn = std::move(fn), live](const at::Tensor& x, const HookPoint& point) -> at::Tensor {
    if (x.requires_grad()) {
      // The autograd graph may outlive this hook point (and its model): the
      // tensor hook holds its own copy of the name and checks `live` first.
      auto self = std::make_shared<const HookPoint>(point.name());
      auto g = fn;
      x.register_hook([g, self, live](const at::Tensor& grad) {
        if (*live) g(grad, *self);
      });
    }
    return at::Tensor();
  };
  hooks_.push_back({id, std::move(forward), true, live});
  ++n_backward_;
  return id;
}

void HookPoint::remove(int64_t id) {
  for (auto it = hooks_.begin(); it != hooks_.end(); ++it) {
    if (it->id != id) continue;
    if (it->backward) --n_backward_;
    if (it->live) *it->live = false;
    hooks_.erase(it);
    return;
  }
}

void HookPoint::clear() {
  for (auto& e : hooks_)
    if (e.live) *e.live = false;
  hooks_.clear();
  n_backward_ = 0;
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

HookHandle::HookHandle(HookHandle&& o) noexcept : owner_(std::move(o.owner_)), hooks_(std::move(o.hooks_)) {
  o.hooks_.clear();
  o.owner_.reset();
}
HookHandle& HookHandle::operator=(HookHandle&& o) noexcept {
  if (this != &o) {
    remove();
    owner_ = std::move(o.owner_);
    hooks_ = std::move(o.hooks_);
    o.hooks_.clear();
    o.owner_.reset();
  }
  return *this;
}
HookHandle::~HookHandle() { remove(); }
void HookHandle::absorb(HookHandle&& o) {
  if (this == &o || o.hooks_.empty()) return;
  if (!hooks_.empty() && (owner_.owner_before(o.owner_) || o.owner_.owner_before(owner_)))
    throw InvalidArgument(detail::expected_got("HookHandle::absorb", "hooks of the same model", "another model's hooks"));
  if (hooks_.empty()) owner_ = o.owner_;
  hooks_.insert(hooks_.end(), o.hooks_.begin(), o.hooks_.end());
  o.hooks_.clear();
  o.owner_.reset();
}
void HookHandle::remove() {
  // The hook points belong to the model: touch them only while it lives.
  if (auto alive = owner_.lock())
    for (auto& [point, id] : hooks_) point->remove(id);
  hooks_.clear();
  owner_.reset();
}

}  // namespace scalpel
