// Bindings: directions and direction edits (scalpel/steer/directions.hpp).
#include "bindings.hpp"

#include <pybind11/stl.h>

#include "scalpel/eval/metrics.hpp"
#include "scalpel/steer/directions.hpp"

namespace scalpel::python {

void bind_directions(py::module_& m) {
  m.def("collect_activations", &collect_activations, py::arg("model"), py::arg("prompts"), py::arg("names"),
        py::arg("positions"), py::arg("batch_size") = 32, py::call_guard<py::gil_scoped_release>(),
        "Activations of each token prompt at hook `names` and `positions` (negative = from each prompt's end): "
        "[prompts, names, positions, d] float32");
  m.def("mean_difference", &mean_difference, py::arg("positive"), py::arg("negative"),
        "mean(positive) - mean(negative) over the first dimension");
  m.def("pca_directions", &pca_directions, py::arg("positive"), py::arg("negative"), py::arg("k") = 1,
        "First k principal components of the pooled, centred sets: [k, ..., d], signed from negative to positive");
  m.def("unit", &unit, py::arg("v"), "v / |v| along the last dimension");
  py::class_<RidgeResult>(m, "RidgeResult", "Ridge residualization: clean = v - A^T beta")
      .def_readonly("clean", &RidgeResult::clean)
      .def_readonly("coefficients", &RidgeResult::coefficients)
      .def_readonly("lambda_", &RidgeResult::lambda)
      .def_readonly("explained", &RidgeResult::explained)
      .def_readonly("cosine", &RidgeResult::cosine)
      .def_readonly("gcv_lambdas", &RidgeResult::gcv_lambdas)
      .def_readonly("gcv_scores", &RidgeResult::gcv_scores)
      .def("to_json", &RidgeResult::to_json)
      .def("to_dict", [](const RidgeResult& r) { return from_json(r.to_json()); });
  m.def("ridge_residualize", &ridge_residualize, py::arg("v"), py::arg("atoms"), py::arg("lambda_") = -1.0,
        py::arg("grid") = 60,
        "Ridge regression of v [d] on the atoms (rows of [k, d]) and its residual; lambda_ < 0 chooses lambda by GCV");
  py::class_<AtomAudit>(m, "AtomAudit", "Pairwise cosines and condition number of a set of directions")
      .def_readonly("cosines", &AtomAudit::cosines)
      .def_readonly("condition_number", &AtomAudit::condition_number)
      .def_readonly("collinear", &AtomAudit::collinear);
  m.def("audit_directions", &audit_directions, py::arg("atoms"), py::arg("collinear_cosine") = 0.9);
  m.def("residual_write_points", &residual_write_points, py::arg("model"), py::arg("from_layer") = 0,
        "The hook points that write into the residual stream");
  m.def("ablate_direction", &ablate_direction, py::arg("model"), py::arg("v"), py::arg("gamma") = 1.0,
        py::arg("from_layer") = 0,
        "Project v out of every write into the residual stream until the handle is removed (`with` works)");
  m.def("add_direction", &add_direction, py::arg("model"), py::arg("v"), py::arg("alpha"), py::arg("layer"),
        py::arg("positions") = std::vector<int64_t>{}, py::arg("normalize") = true,
        "Add alpha * v (unit when normalize) to blocks.{layer}.hook_resid_pre until the handle is removed");
  m.def("orthogonalize_weights", &orthogonalize_weights, py::arg("model"), py::arg("v"), py::arg("gamma") = 1.0,
        py::arg("from_layer") = 0,
        py::call_guard<py::gil_scoped_release>(),
        "W <- (I - gamma v v^T) W for every weight writing into the residual stream, in place; returns their names");
  m.def("perplexity", &perplexity, py::arg("model"), py::arg("sequences"), py::arg("batch_size") = 8,
        py::arg("loss_masks") = std::vector<std::vector<uint8_t>>{}, py::call_guard<py::gil_scoped_release>(),
        "exp(mean next-token NLL) over every predicted token (or those loss_masks marks 1)");
  m.def("last_logits", &last_logits, py::arg("model"), py::arg("prompts"), py::arg("batch_size") = 32,
        py::call_guard<py::gil_scoped_release>(), "Last-position logits of each token prompt: [n, vocab]");
  m.def("first_token_kl", &first_token_kl, py::arg("model"), py::arg("prompts"), py::arg("reference_logits"),
        py::arg("batch_size") = 32, py::call_guard<py::gil_scoped_release>(),
        "KL(reference || model) of the next-token distribution at each prompt's end: [n]");
}

}  // namespace scalpel::python
