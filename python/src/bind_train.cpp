// Bindings: training (scalpel/train/train.hpp).
#include "bindings.hpp"

#include "scalpel/model/transformer.hpp"
#include "scalpel/train/train.hpp"

namespace scalpel::python {

void bind_train(py::module_& m) {
  py::class_<LMExample>(m, "LMExample", "A training sequence; loss_mask[t] = 1 where token t is a target")
      .def(py::init([](std::vector<int64_t> tokens, std::vector<uint8_t> loss_mask) {
             return LMExample{std::move(tokens), std::move(loss_mask)};
           }),
           py::arg("tokens"), py::arg("loss_mask") = std::vector<uint8_t>{})
      .def_readwrite("tokens", &LMExample::tokens)
      .def_readwrite("loss_mask", &LMExample::loss_mask);
  py::class_<LMBatch>(m, "LMBatch", "A left-padded training batch")
      .def_readonly("tokens", &LMBatch::tokens)
      .def_readonly("attention_mask", &LMBatch::attention_mask)
      .def_readonly("loss_mask", &LMBatch::loss_mask);
  m.def("make_lm_batch", &make_lm_batch, py::arg("examples"), py::arg("pad_id") = 0);
  m.def("lm_loss", &lm_loss, py::arg("model"), py::arg("batch"), py::call_guard<py::gil_scoped_release>(),
        "Mean next-token cross-entropy over the batch's targets");
  py::class_<TrainOptions>(m, "TrainOptions")
      .def(py::init<>())
      .def_readwrite("steps", &TrainOptions::steps)
      .def_readwrite("batch_size", &TrainOptions::batch_size)
      .def_readwrite("lr", &TrainOptions::lr)
      .def_readwrite("min_lr", &TrainOptions::min_lr)
      .def_readwrite("warmup_steps", &TrainOptions::warmup_steps)
      .def_readwrite("weight_decay", &TrainOptions::weight_decay)
      .def_readwrite("beta1", &TrainOptions::beta1)
      .def_readwrite("beta2", &TrainOptions::beta2)
      .def_readwrite("eps", &TrainOptions::eps)
      .def_readwrite("grad_clip", &TrainOptions::grad_clip)
      .def_readwrite("seed", &TrainOptions::seed)
      .def_readwrite("trainable", &TrainOptions::trainable)
      .def_readwrite("run_dir", &TrainOptions::run_dir)
      .def_readwrite("checkpoint_every", &TrainOptions::checkpoint_every)
      .def_readwrite("resume_from", &TrainOptions::resume_from);
  py::class_<TrainResult>(m, "TrainResult")
      .def_readonly("loss", &TrainResult::loss)
      .def_readonly("lr", &TrainResult::lr)
      .def_readonly("grad_norm", &TrainResult::grad_norm)
      .def_readonly("parts", &TrainResult::parts)
      .def_readonly("steps", &TrainResult::steps)
      .def_readonly("seconds", &TrainResult::seconds);
  py::class_<TrainParam>(m, "TrainParam", "A tensor the optimizer loop trains")
      .def(py::init([](std::string name, at::Tensor tensor, bool decay) { return TrainParam{std::move(name), tensor, decay}; }),
           py::arg("name"), py::arg("tensor"), py::arg("decay") = true)
      .def_readonly("name", &TrainParam::name)
      .def_readonly("tensor", &TrainParam::tensor)
      .def_readonly("decay", &TrainParam::decay);
  m.def(
      "optimize",
      [](std::vector<TrainParam> params, py::object loss, const TrainOptions& options) {
        // loss(step) -> tensor, or (tensor, {part: float}).
        auto holder = gil_safe(std::move(loss));
        StepLoss fn = [holder](int64_t step, std::vector<std::pair<std::string, double>>& parts) -> at::Tensor {
          py::gil_scoped_acquire gil;
          py::object out = (*holder)(step);
          if (py::isinstance<py::tuple>(out)) {
            auto t = out.cast<py::tuple>();
            if (t.size() != 2) throw py::value_error("loss(step) must return a tensor or (tensor, {name: float})");
            for (auto kv : t[1].cast<py::dict>()) parts.emplace_back(kv.first.cast<std::string>(), kv.second.cast<double>());
            return t[0].cast<at::Tensor>();
          }
          return out.cast<at::Tensor>();
        };
        if (!options.resume_from.empty())
          throw py::value_error("optimize: resume_from is for train_lm (it restores a model); got \"" +
                                options.resume_from + "\"");
        py::gil_scoped_release release;
        return optimize(std::move(params), fn, options);
      },
      py::arg("params"), py::arg("loss"), py::arg("options"),
      "The optimizer loop of train_lm and the breakers on your own tensors: loss(step) returns a scalar tensor or "
      "(tensor, {part: float}); AdamW, schedule, clipping, progress, run_dir/losses.csv; NaN stops with FloatingPointError");
  m.def("learning_rate", &learning_rate, py::arg("options"), py::arg("step"));
  m.def("train_lm", &train_lm, py::arg("model"), py::arg("data"), py::arg("options"),
        py::call_guard<py::gil_scoped_release>(),
        "Train the model's parameters in place: AdamW, warm-up + cosine, clipping, seeded batches, checkpoints");
  m.def("save_checkpoint", &save_checkpoint, py::arg("model"), py::arg("directory"), py::arg("step"),
        py::arg("optimizer_state") = std::vector<std::pair<std::string, at::Tensor>>{},
        py::call_guard<py::gil_scoped_release>());
  m.def("load_checkpoint", &load_checkpoint, py::arg("model"), py::arg("directory"),
        py::call_guard<py::gil_scoped_release>(), "Restore the weights of a checkpoint; returns its step");
}

}  // namespace scalpel::python
