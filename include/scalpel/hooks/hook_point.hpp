// scalpel/hooks/hook_point.hpp — named activations (TransformerLens names,
// see docs/hook_names.md) that hooks can read, replace or edit.
//
// A HookPoint with no hook is a branch on an empty vector: the forward pass
// with no hooks costs what a plain one does.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace scalpel {

class HookPoint;

/// A forward hook gets the activation and its hook point; it returns the
/// activation to use downstream: the same tensor (read-only hooks), an
/// edited copy, or an undefined tensor meaning "unchanged". Editing in place
/// is allowed.
using HookFn = std::function<at::Tensor(const at::Tensor& activation, const HookPoint& point)>;

/// A backward hook gets the gradient of the loss with respect to the
/// activation (same shape) when backward() runs through it.
using BackwardHookFn = std::function<void(const at::Tensor& grad, const HookPoint& point)>;

class HookPoint {
 public:
  explicit HookPoint(std::string name) : name_(std::move(name)) {}
  HookPoint(const HookPoint& other);  // copies the name and the hooks (a copy's gradient hooks are its own)
  HookPoint& operator=(const HookPoint&) = delete;
  /// Gradient hooks already attached to activations of earlier passes stop
  /// firing once their hook point is removed, cleared or destroyed.
  ~HookPoint();

  const std::string& name() const { return name_; }
  bool active() const { return !hooks_.empty(); }

  /// Runs the hooks in the order they were added.
  at::Tensor operator()(at::Tensor x) const {
    if (hooks_.empty()) return x;
    return run(std::move(x));
  }

  /// Returns an id for remove().
  int64_t add(HookFn fn);
  /// Registers a gradient hook on the activation of every forward pass run
  /// with grad mode on; returns an id for remove().
  int64_t add_backward(BackwardHookFn fn);
  bool has_backward() const { return n_backward_ > 0; }
  void remove(int64_t id);
  void clear();
  size_t size() const { return hooks_.size(); }

 private:
  at::Tensor run(at::Tensor x) const;
  std::string name_;
  struct Entry {
    int64_t id;
    HookFn fn;
    bool backward;
    std::shared_ptr<bool> live;  // gradient hooks: false once removed (the autograd graph may outlive the entry)
  };
  std::vector<Entry> hooks_;
  int64_t next_id_ = 0;
  int64_t n_backward_ = 0;
};

/// Hooks registered on a model (Transformer::add_hooks and the functions that
/// attach hooks for you): removes them when destroyed (also during exception
/// unwinding) or on remove(). Safe to keep after the model is gone: it then
/// removes nothing.
class HookHandle {
 public:
  HookHandle() = default;
  HookHandle(HookHandle&& other) noexcept;
  HookHandle& operator=(HookHandle&& other) noexcept;
  HookHandle(const HookHandle&) = delete;
  HookHandle& operator=(const HookHandle&) = delete;
  ~HookHandle();
  /// Removes now (idempotent; a no-op once the model is destroyed).
  void remove();
  /// Whether the handle still holds hooks of a live model.
  bool active() const { return !hooks_.empty() && !owner_.expired(); }
  /// Takes over `other`'s hooks (of the same model), so that one handle removes
  /// both attachments; `other` is left empty. InvalidArgument for another model's.
  void absorb(HookHandle&& other);

 private:
  friend class Transformer;
  std::weak_ptr<const void> owner_;  // the model's lifetime token
  std::vector<std::pair<HookPoint*, int64_t>> hooks_;
};

}  // namespace scalpel
