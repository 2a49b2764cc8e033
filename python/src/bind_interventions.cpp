// Bindings: interventions (scalpel/steer/intervention.hpp, breaker.hpp).
#include "bindings.hpp"

#include "scalpel/io/tokenizer.hpp"
#include "scalpel/model/transformer.hpp"
#include "scalpel/steer/breaker.hpp"
#include "scalpel/steer/intervention.hpp"
#include "scalpel/steer/steering.hpp"
#include "scalpel/steer/gate.hpp"

namespace scalpel::python {

namespace {
// A site as "hook", ("hook", head) or BreakerSite.
BreakerSite to_site(const py::handle& h) {
  if (py::isinstance<BreakerSite>(h)) return h.cast<BreakerSite>();
  if (py::isinstance<py::str>(h)) return {h.cast<std::string>(), -1};
  if (py::isinstance<py::tuple>(h) || py::isinstance<py::list>(h)) {
    auto t = py::reinterpret_borrow<py::sequence>(h);
    if (t.size() == 2) return {t[0].cast<std::string>(), t[1].cast<int64_t>()};
  }
  throw py::type_error("a breaker site is a hook name, (hook name, head) or BreakerSite; got " +
                       py::repr(h).cast<std::string>());
}
}  // namespace

void bind_interventions(py::module_& m) {
  py::class_<ModelFingerprint>(m, "ModelFingerprint",
                               "Which model an intervention belongs to: architecture, residual-writer shapes, a checksum")
      .def_static("of", &ModelFingerprint::of, py::arg("model"))
      .def("mismatch", &ModelFingerprint::mismatch, py::arg("model"), "'' when the model matches, else what differs")
      .def_readonly("architecture", &ModelFingerprint::architecture)
      .def_readonly("shapes", &ModelFingerprint::shapes)
      .def_readonly("checksum", &ModelFingerprint::checksum);

  py::class_<Intervention, std::shared_ptr<Intervention>>(m, "Intervention", "The base of every intervention")
      .def_property_readonly("kind", &Intervention::kind)
      .def_readonly("model", &Intervention::model, "The ModelFingerprint of the model it was made for")
      .def("attach", &Intervention::attach, py::arg("model"), py::arg("strength") = py::none(),
           py::arg("check_model") = true, "Apply to model until the returned handle is removed (`with` works)")
      .def("tensors", &Intervention::tensors)
      .def("check_model_matches", &Intervention::check_model_matches, py::arg("model"), py::arg("check_model") = true);

  py::class_<BreakerSite>(m, "BreakerSite", "A hook point and, for attn.hook_z, a head (-1: all heads)")
      .def(py::init([](std::string hook, int64_t head) { return BreakerSite{std::move(hook), head}; }), py::arg("hook"),
           py::arg("head") = -1)
      .def_readwrite("hook", &BreakerSite::hook)
      .def_readwrite("head", &BreakerSite::head)
      .def("__repr__", [](const BreakerSite& s) {
        return "BreakerSite('" + s.hook + "'" + (s.head >= 0 ? ", " + std::to_string(s.head) : std::string()) + ")";
      });
  py::class_<BreakerAdapter>(m, "BreakerAdapter", "One rank-r adapter a <- a + delta * B(A a)")
      .def_readonly("site", &BreakerAdapter::site)
      .def_readwrite("A", &BreakerAdapter::A)
      .def_readwrite("B", &BreakerAdapter::B);

  py::class_<CircuitBreaker, Intervention, std::shared_ptr<CircuitBreaker>>(
      m, "CircuitBreaker", "Low-rank circuit breaker: rank-r adapters a <- a + delta * B(A a) on chosen components")
      .def_static(
          "create",
          [](const Transformer& model, const py::iterable& sites, int64_t rank, uint64_t seed) {
            std::vector<BreakerSite> s;
            for (auto h : sites) s.push_back(to_site(h));
            py::gil_scoped_release release;
            return CircuitBreaker::create(model, s, rank, seed);
          },
          py::arg("model"), py::arg("sites"), py::arg("rank"), py::arg("seed") = 0,
          "Adapters at sites (hook names, or (hook, head) for attn.hook_z); A ~ N(0, 1/d), B = 0: a no-op until trained")
      .def_readwrite("adapters", &CircuitBreaker::adapters)
      .def_readwrite("delta", &CircuitBreaker::delta)
      .def_readwrite("positions", &CircuitBreaker::positions, "'all', 'prompt' or 'generated'")
      .def("attach", &CircuitBreaker::attach, py::arg("model"), py::arg("delta") = py::none(),
           py::arg("check_model") = true, "Apply until the handle is removed; delta overrides .delta for this attachment")
      .def_property_readonly("num_parameters", &CircuitBreaker::num_parameters)
      .def("check", &CircuitBreaker::check, py::arg("model"))
      .def("merge_blocker", &CircuitBreaker::merge_blocker, py::arg("model"),
           "'' when merge() can bake it into the weights, else why not")
      .def("merge", &CircuitBreaker::merge, py::arg("model"), py::arg("delta") = py::none(),
           py::arg("check_model") = true, py::call_guard<py::gil_scoped_release>(), "Bake into the model's weights (in place) at delta")
      .def("__repr__", [](const CircuitBreaker& cb) {
        return "CircuitBreaker(" + std::to_string(cb.adapters.size()) + " adapters, " + std::to_string(cb.num_parameters()) +
               " parameters, delta=" + std::to_string(cb.delta) + ", positions='" + cb.positions + "')";
      });

  m.def("save_intervention", &save_intervention, py::arg("intervention"), py::arg("path"),
        py::call_guard<py::gil_scoped_release>(), "Write an intervention as one safetensors file (atomically)");
  m.def("load_intervention", &load_intervention, py::arg("path"), py::call_guard<py::gil_scoped_release>(),
        "Read an intervention file (its kind's class: CircuitBreaker, ...)");
  m.def(
      "intervention_description", [](const std::string& path) { return from_json(intervention_description(path)); },
      py::arg("path"), "The JSON description an intervention file carries, as a dict");
  m.def("export_peft",
        py::overload_cast<const Transformer&, const CircuitBreaker&, const std::string&, std::optional<double>, bool, bool>(
            &export_peft),
        py::arg("model"), py::arg("breaker"), py::arg("directory"),
        py::arg("delta") = py::none(), py::arg("overwrite") = false, py::arg("check_model") = true,
        py::call_guard<py::gil_scoped_release>(),
        "Write the breaker as a PEFT LoRA adapter directory that peft loads onto the transformers model");

  py::class_<BreakerData>(m, "BreakerData", "Harm triples (prompt, harmful, neutral) and preserve text, as token ids")
      .def(py::init([](std::vector<std::vector<int64_t>> prompts, std::vector<std::vector<int64_t>> harmful,
                       std::vector<std::vector<int64_t>> neutral, std::vector<std::vector<int64_t>> preserve) {
             return BreakerData{std::move(prompts), std::move(harmful), std::move(neutral), std::move(preserve)};
           }),
           py::arg("prompts"), py::arg("harmful"), py::arg("neutral") = std::vector<std::vector<int64_t>>{},
           py::arg("preserve") = std::vector<std::vector<int64_t>>{})
      .def_readwrite("prompts", &BreakerData::prompts)
      .def_readwrite("harmful", &BreakerData::harmful)
      .def_readwrite("neutral", &BreakerData::neutral)
      .def_readwrite("preserve", &BreakerData::preserve);
  m.def("breaker_data", &breaker_data, py::arg("tokenizer"), py::arg("prompts"), py::arg("harmful"),
        py::arg("neutral") = std::vector<std::string>{}, py::arg("preserve") = std::vector<std::string>{},
        "BreakerData from text (continuations split as lm-evaluation-harness does)");

  py::class_<BreakerObjective>(m, "BreakerObjective",
                               "L = lambda_harm * L_harm + lambda_preserve * L_preserve for train_breaker")
      .def(py::init([](std::string harm, std::string preserve, double lambda_harm, double lambda_preserve,
                       std::vector<int64_t> layers, py::object custom, int64_t preserve_batch_size) {
             BreakerObjective o;
             o.harm = std::move(harm);
             o.preserve = std::move(preserve);
             o.lambda_harm = lambda_harm;
             o.lambda_preserve = lambda_preserve;
             o.layers = std::move(layers);
             if (!custom.is_none()) o.custom = wrap_callable<at::Tensor, Transformer&, const std::vector<int64_t>&>(custom);
             o.preserve_batch_size = preserve_batch_size;
             return o;
           }),
           py::arg("harm") = "margin", py::arg("preserve") = "kl", py::arg("lambda_harm") = 1.0,
           py::arg("lambda_preserve") = 1.0, py::arg("layers") = std::vector<int64_t>{}, py::arg("custom") = py::none(),
           py::arg("preserve_batch_size") = 0,
           "harm: 'margin' | 'squared' | 'reroute' | 'custom' (custom(model, rows) -> scalar tensor); "
           "preserve: 'kl' | 'hidden' | 'none'")
      .def_readwrite("harm", &BreakerObjective::harm)
      .def_readwrite("preserve", &BreakerObjective::preserve)
      .def_readwrite("lambda_harm", &BreakerObjective::lambda_harm)
      .def_readwrite("lambda_preserve", &BreakerObjective::lambda_preserve)
      .def_readwrite("layers", &BreakerObjective::layers)
      .def_readwrite("preserve_batch_size", &BreakerObjective::preserve_batch_size);
  m.def("train_breaker", &train_breaker, py::arg("model"), py::arg("breaker"), py::arg("data"),
        py::arg("objective") = BreakerObjective(), py::arg("options") = TrainOptions(),
        py::call_guard<py::gil_scoped_release>(),
        "Train the breaker's A and B with the model frozen (train/'s loop; harm and preserve logged as loss parts)");

  py::class_<SteeringVector, Intervention, std::shared_ptr<SteeringVector>>(
      m, "SteeringVector", "Steering vectors: a <- a + alpha * v at chosen components and positions")
      .def_static(
          "create",
          [](const Transformer& model, const py::iterable& sites) {
            std::vector<BreakerSite> s;
            for (auto h : sites) s.push_back(to_site(h));
            py::gil_scoped_release release;
            return SteeringVector::create(model, s);
          },
          py::arg("model"), py::arg("sites"), "Zero vectors at sites (hook names, or (hook, head) for attn.hook_z)")
      .def_static(
          "from_contrast",
          [](Transformer& model, const py::iterable& sites, std::vector<std::vector<int64_t>> positive,
             std::vector<std::vector<int64_t>> negative, std::vector<int64_t> read_positions, std::string method,
             int64_t batch_size) {
            std::vector<BreakerSite> s;
            for (auto h : sites) s.push_back(to_site(h));
            py::gil_scoped_release release;
            return SteeringVector::from_contrast(model, s, positive, negative, read_positions, method, batch_size);
          },
          py::arg("model"), py::arg("sites"), py::arg("positive"), py::arg("negative"),
          py::arg("read_positions") = std::vector<int64_t>{-1}, py::arg("method") = "mean", py::arg("batch_size") = 32,
          "Vectors from contrast prompts (token ids): 'mean' (mean difference) or 'pca_diff' (first principal "
          "component of the paired differences, scaled to the mean difference's projection)")
      .def_readwrite("sites", &SteeringVector::sites)
      .def_readwrite("vectors", &SteeringVector::vectors)
      .def_readwrite("alpha", &SteeringVector::alpha)
      .def_readwrite("positions", &SteeringVector::positions, "'all', 'prompt' or 'generated'")
      .def_readwrite("max_norm", &SteeringVector::max_norm, "> 0: each vector acts as v * min(1, max_norm / |v|)")
      .def("attach", &SteeringVector::attach, py::arg("model"), py::arg("alpha") = py::none(), py::arg("check_model") = true,
           "Apply until the handle is removed; alpha overrides .alpha for this attachment")
      .def("effective_vectors", &SteeringVector::effective_vectors, "The vectors as they act (max_norm applied)")
      .def_property_readonly("num_parameters", &SteeringVector::num_parameters)
      .def("check", &SteeringVector::check, py::arg("model"))
      .def("__repr__", [](const SteeringVector& sv) {
        return "SteeringVector(" + std::to_string(sv.sites.size()) + " sites, alpha=" + std::to_string(sv.alpha) +
               ", positions='" + sv.positions + "')";
      });
  m.def("train_steering", &train_steering, py::arg("model"), py::arg("vector"), py::arg("data"),
        py::arg("objective") = BreakerObjective(), py::arg("options") = TrainOptions(),
        py::call_guard<py::gil_scoped_release>(),
        "Optimize the steering vectors on the breaker objective, the model frozen (max_norm bounds them)");
  m.def("export_control_vector",
        py::overload_cast<const Transformer&, const SteeringVector&, const std::string&, std::optional<double>, bool>(
            &export_control_vector),
        py::arg("model"), py::arg("vector"), py::arg("path"),
        py::arg("alpha") = py::none(), py::arg("overwrite") = false, py::call_guard<py::gil_scoped_release>(),
        "Write the residual-stream vectors as a llama.cpp / repeng control vector GGUF (direction.k: block k's output)");

  py::class_<HarmProbe>(m, "HarmProbe", "A linear harm probe P(x) = sigmoid(u . a(x) + c) at a site, at the prompt's last token")
      .def(py::init([](std::string hook, at::Tensor weight, double bias) { return HarmProbe{std::move(hook), weight, bias}; }),
           py::arg("hook"), py::arg("weight"), py::arg("bias") = 0.0)
      .def_static("fit", &HarmProbe::fit, py::arg("model"), py::arg("hook"), py::arg("harmful"), py::arg("benign"),
                  py::arg("l2") = 1e-2, py::arg("batch_size") = 32, py::call_guard<py::gil_scoped_release>(),
                  "L2-regularized logistic regression of harmful (1) vs benign (0) prompts (token ids)")
      .def("predict", &HarmProbe::predict, py::arg("model"), py::arg("prompts"), py::arg("batch_size") = 32,
           py::call_guard<py::gil_scoped_release>(), "P for each prompt (its last token)")
      .def("logit", &HarmProbe::logit, py::arg("activations"))
      .def_readwrite("hook", &HarmProbe::hook)
      .def_readwrite("weight", &HarmProbe::weight)
      .def_readwrite("bias", &HarmProbe::bias);
  py::class_<GatedIntervention, Intervention, std::shared_ptr<GatedIntervention>>(
      m, "GatedIntervention",
      "Input-adaptive strength: s(x) = s * sigmoid(w * P(x) + b), or s * [P(x) > threshold], per example")
      .def_static("create", &GatedIntervention::create, py::arg("model"), py::arg("inner"), py::arg("probe"),
                  py::arg("mode") = "sigmoid", py::arg("w") = 8.0, py::arg("b") = -4.0, py::arg("threshold") = 0.5)
      .def_readwrite("inner", &GatedIntervention::inner)
      .def_readwrite("probe", &GatedIntervention::probe)
      .def_readwrite("mode", &GatedIntervention::mode, "'sigmoid' or 'threshold'")
      .def_readwrite("gate", &GatedIntervention::gate, "float32 [2]: w, b")
      .def_readwrite("threshold", &GatedIntervention::threshold)
      .def("attach", &GatedIntervention::attach, py::arg("model"), py::arg("strength") = py::none(),
           py::arg("check_model") = true, "Apply until the handle is removed; strength overrides the inner's")
      .def("gate_values", &GatedIntervention::gate_values, py::arg("model"), py::arg("prompts"), py::arg("batch_size") = 32,
           py::call_guard<py::gil_scoped_release>(), "The factor on the inner strength for each prompt")
      .def("check", &GatedIntervention::check, py::arg("model"));
  m.def("train_gate", &train_gate, py::arg("model"), py::arg("gated"), py::arg("data"),
        py::arg("objective") = BreakerObjective(), py::arg("options") = TrainOptions(),
        py::call_guard<py::gil_scoped_release>(), "Learn the gate's w and b end to end through the breaker objective");
  m.def("export_peft",
        py::overload_cast<const Transformer&, const GatedIntervention&, const std::string&, std::optional<double>, bool, bool>(
            &export_peft),
        py::arg("model"), py::arg("breaker"), py::arg("directory"), py::arg("delta") = py::none(), py::arg("overwrite") = false,
        py::arg("check_model") = true, "A gated breaker cannot be a LoRA adapter: raises, saying so");
  m.def("export_control_vector",
        py::overload_cast<const Transformer&, const GatedIntervention&, const std::string&, std::optional<double>, bool>(
            &export_control_vector),
        py::arg("model"), py::arg("vector"), py::arg("path"), py::arg("alpha") = py::none(), py::arg("overwrite") = false,
        "A gated vector cannot be a control vector: raises, saying so");
}

}  // namespace scalpel::python
