// scalpel/train/train.hpp — training a Transformer's weights in place:
// next-token loss on padded batches, AdamW (decoupled weight decay, as
// torch.optim.AdamW), linear warm-up then cosine decay, global gradient-norm
// clipping, deterministic batches from a seed, checkpoints (weights and
// optimizer state in safetensors) and the loss curve in a run directory.
// Used to build the model organisms and, later, circuit breakers.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "scalpel/eval/metrics.hpp"  // LMExample, LMBatch, make_lm_batch, lm_loss

namespace scalpel {

class Transformer;

struct TrainOptions {
  int64_t steps = 1000;
  int64_t batch_size = 32;
  double lr = 1e-3;
  double min_lr = 1e-4;        // the cosine decays to this
  int64_t warmup_steps = 100;  // linear from lr / warmup_steps
  double weight_decay = 0.01;  // on matrices only (not norms, biases)
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double grad_clip = 1.0;      // global L2 norm; 0: no clipping
  uint64_t seed = 0;           // batch order (step s draws from seed and s)
  /// Parameters to train, by Hugging Face name or name prefix (empty: all).
  /// The others keep their values and get no optimizer state.
  std::vector<std::string> trainable;
  /// losses.csv (step, loss, lr, grad_norm) and checkpoints go here ("": none).
  std::string run_dir;
  int64_t checkpoint_every = 0;  // steps between checkpoints (0: only at the end when run_dir is set)
  /// Resume from this checkpoint directory (written by a run with the same
  /// options): continues at its step, bit-identical to an uninterrupted run.
  std::string resume_from;
};

struct TrainResult {
  std::vector<double> loss, lr, grad_norm;  // per step (the norm before clipping)
  /// Named parts of the loss per step (e.g. "harm", "preserve"), as the loss
  /// function reported them; empty for train_lm.
  std::map<std::string, std::vector<double>> parts;
  int64_t steps = 0;                        // the last step run
  double seconds = 0.0;
};

/// A tensor the loop optimizes (a leaf; the loop sets requires_grad while it
/// runs and clears it, and the gradient, when it returns or throws).
struct TrainParam {
  std::string name;
  at::Tensor tensor;
  bool decay = true;  // decoupled weight decay applies (matrices)
};

/// The loss of one step: a scalar whose graph reaches the parameters. It may
/// add named parts (their values) to `parts`; they are logged beside the loss.
using StepLoss = std::function<at::Tensor(int64_t step, std::vector<std::pair<std::string, double>>& parts)>;

/// Writes a checkpoint of the run at `step` into `directory` (the loop passes
/// its AdamW state as "exp_avg.<name>" / "exp_avg_sq.<name>" tensors).
using CheckpointFn = std::function<void(const std::string& directory, int64_t step,
                                        const std::vector<std::pair<std::string, at::Tensor>>& optimizer_state)>;

/// The one optimizer loop (train_lm and the circuit breakers run through it):
/// AdamW as torch.optim.AdamW, warm-up + cosine (learning_rate), global
/// gradient-norm clipping, progress, run_dir/losses.csv (step, loss, parts,
/// lr, grad_norm) and checkpoints through `checkpoint`. A loss or gradient
/// norm that is NaN or infinite stops the run with NumericalError naming the
/// step (the parameters keep their last finite values). Resumes at `start`
/// with `optimizer_state` (from a checkpoint of the same parameters).
TrainResult optimize(std::vector<TrainParam> params, const StepLoss& loss, const TrainOptions& options,
                     const CheckpointFn& checkpoint = {}, int64_t start = 0,
                     const std::map<std::string, at::Tensor>& optimizer_state = {});

/// The learning rate at `step` (0-based): warm-up, then cosine to min_lr.
double learning_rate(const TrainOptions& options, int64_t step);

/// Trains the model's parameters in place on batches drawn from `data`
/// (batch_size examples per step, with replacement, from the seed and the
/// step). Shows progress; writes run_dir/losses.csv and checkpoints.
TrainResult train_lm(Transformer& model, const std::vector<LMExample>& data, const TrainOptions& options);

/// The model's parameters and AdamW state after `step` steps, as
/// directory/model.safetensors and directory/optimizer.safetensors (atomic).
/// load_checkpoint restores the weights into the model and returns the step.
void save_checkpoint(const Transformer& model, const std::string& directory, int64_t step,
                     const std::vector<std::pair<std::string, at::Tensor>>& optimizer_state = {});
int64_t load_checkpoint(Transformer& model, const std::string& directory);

}  // namespace scalpel
