#include "bindings.hpp"

#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include "scalpel/hooks/edits.hpp"
#include "scalpel/hooks/names.hpp"
#include "scalpel/io/tokenizer.hpp"
#include "scalpel/model/transformer.hpp"

namespace scalpel::python {
namespace {

// A hook made in C++ (patch_hook, ablate_hook, ...): runs without the GIL.
struct NativeHook {
  HookFn fn;
  std::string description;
};

// A Python callable as a HookFn: called with the GIL held, as fn(activation, hook).
HookFn wrap_hook(py::object fn) {
  if (py::isinstance<NativeHook>(fn)) return fn.cast<const NativeHook&>().fn;
  auto holder = gil_safe(std::move(fn));
  return [holder](const at::Tensor& x, const HookPoint& point) -> at::Tensor {
    py::gil_scoped_acquire gil;
    py::object out = (*holder)(x, py::cast(HookPoint(point.name())));
    if (out.is_none()) return at::Tensor();
    return out.cast<at::Tensor>();
  };
}

BackwardHookFn wrap_backward_hook(py::object fn) {
  auto holder = gil_safe(std::move(fn));
  return [holder](const at::Tensor& grad, const HookPoint& point) {
    py::gil_scoped_acquire gil;
    (*holder)(grad, py::cast(HookPoint(point.name())));
  };
}

}  // namespace

void bind_model(py::module_& m) {
  // hooks/names.hpp: the one place hook names are built and parsed.
  py::enum_<HookShape>(m, "HookShape", "The trailing layout of a component's activation")
      .value("Model", HookShape::Model)
      .value("Head", HookShape::Head)
      .value("KVHead", HookShape::KVHead)
      .value("HeadModel", HookShape::HeadModel)
      .value("Pattern", HookShape::Pattern)
      .value("MLP", HookShape::MLP)
      .value("Scale", HookShape::Scale);
  py::class_<HookComponent>(m, "HookComponent", "One row of the component table")
      .def_property_readonly("name", [](const HookComponent& c) { return std::string(c.name); })
      .def_property_readonly("suffix", [](const HookComponent& c) { return std::string(c.suffix); })
      .def_readonly("in_block", &HookComponent::in_block)
      .def_readonly("shape", &HookComponent::shape)
      .def("__repr__", [](const HookComponent& c) { return std::string("HookComponent(") + c.name + ")"; });
  m.def("hook_components", &hook_components, "Every hook component, in forward order");
  m.def("hook_component", &hook_component, py::arg("component"), py::return_value_policy::reference,
        "The table row of a component name (aliases pre/post/pre_linear resolved)");
  py::class_<HookName>(m, "HookName", "A hook name as a value: component and layer (-1 outside the blocks)")
      .def(py::init<const std::string&, int64_t>(), py::arg("component"), py::arg("layer") = -1)
      .def_readonly("component", &HookName::component)
      .def_readonly("layer", &HookName::layer)
      .def("str", &HookName::str)
      .def("__str__", &HookName::str)
      .def("__repr__", [](const HookName& h) {
        return "HookName('" + h.component + "', " + std::to_string(h.layer) + ")";
      })
      .def("__eq__", [](const HookName& a, const HookName& b) { return a == b; }, py::is_operator())
      .def("__hash__", [](const HookName& h) { return py::hash(py::str(h.str())); })
      .def_static("parse", &HookName::parse, py::arg("name"))
      .def_static("try_parse", &HookName::try_parse, py::arg("name"));
  m.def("hook_name", &hook_name, py::arg("component"), py::arg("layer") = -1,
        "The TransformerLens hook name: hook_name('z', 3) == 'blocks.3.attn.hook_z' (get_act_name)");
  m.def("hook_layer", &hook_layer, py::arg("name"), "The layer of a hook name (-1 outside the blocks)");

  auto forward = [](Transformer& t, const at::Tensor& tokens, const std::optional<at::Tensor>& mask,
                    bool last_position_only) { return t.forward(tokens, mask.value_or(at::Tensor()), last_position_only); };
  py::enum_<NormKind>(m, "NormKind").value("RMSNorm", NormKind::RMSNorm).value("LayerNorm", NormKind::LayerNorm);
  py::enum_<Activation>(m, "Activation")
      .value("SiLU", Activation::SiLU).value("GELU", Activation::GELU)
      .value("GELUTanh", Activation::GELUTanh).value("ReLU", Activation::ReLU);
  py::enum_<PositionKind>(m, "PositionKind").value("Rotary", PositionKind::Rotary).value("Learned", PositionKind::Learned);

  py::class_<ModelConfig>(m, "ModelConfig", "Architecture-neutral description of a transformer.")
      .def_readonly("architecture", &ModelConfig::architecture)
      .def_readonly("n_layers", &ModelConfig::n_layers)
      .def_readonly("d_model", &ModelConfig::d_model)
      .def_readonly("n_heads", &ModelConfig::n_heads)
      .def_readonly("n_kv_heads", &ModelConfig::n_kv_heads)
      .def_readonly("d_head", &ModelConfig::d_head)
      .def_readonly("d_mlp", &ModelConfig::d_mlp)
      .def_readonly("d_vocab", &ModelConfig::d_vocab)
      .def_readonly("n_ctx", &ModelConfig::n_ctx)
      .def_readonly("norm", &ModelConfig::norm)
      .def_readonly("norm_eps", &ModelConfig::norm_eps)
      .def_readonly("act", &ModelConfig::act)
      .def_readonly("gated_mlp", &ModelConfig::gated_mlp)
      .def_readonly("positions", &ModelConfig::positions)
      .def_readonly("rope_theta", &ModelConfig::rope_theta)
      .def_readonly("rotary_dim", &ModelConfig::rotary_dim)
      .def_readonly("parallel_residual", &ModelConfig::parallel_residual)
      .def_readonly("tie_embeddings", &ModelConfig::tie_embeddings)
      .def_readonly("norm_weight_offset", &ModelConfig::norm_weight_offset)
      .def_readonly("rope_local_theta", &ModelConfig::rope_local_theta)
      .def_readonly("post_norms", &ModelConfig::post_norms)
      .def_readonly("qk_norm", &ModelConfig::qk_norm)
      .def_readonly("sliding_window", &ModelConfig::sliding_window)
      .def_readonly("qkv_bias", &ModelConfig::qkv_bias)
      .def_readonly("o_bias", &ModelConfig::o_bias)
      .def_readonly("mlp_bias", &ModelConfig::mlp_bias)
      .def_readonly("embed_scale", &ModelConfig::embed_scale)
      .def_readonly("attn_scale", &ModelConfig::attn_scale)
      .def_readonly("attn_softcap", &ModelConfig::attn_softcap)
      .def_readonly("final_softcap", &ModelConfig::final_softcap)
      .def("__repr__", [](const ModelConfig& c) {
        return "ModelConfig(" + c.architecture + ", n_layers=" + std::to_string(c.n_layers) + ", d_model=" +
               std::to_string(c.d_model) + ", n_heads=" + std::to_string(c.n_heads) + "/" +
               std::to_string(c.n_kv_heads) + ", d_vocab=" + std::to_string(c.d_vocab) + ")";
      });

  py::class_<HookPoint>(m, "HookPoint", "A named activation.")
      .def_property_readonly("name", &HookPoint::name)
      .def_property_readonly("active", &HookPoint::active)
      .def("__repr__", [](const HookPoint& p) { return "HookPoint('" + p.name() + "')"; });

  py::class_<NativeHook>(m, "NativeHook", "A hook implemented in C++ (no Python call per activation).")
      .def("__repr__", [](const NativeHook& h) { return h.description; });
  m.def(
      "patch_hook",
      [](const at::Tensor& source, std::vector<int64_t> positions, std::vector<int64_t> heads) {
        return NativeHook{patch_hook(source, positions, heads), "patch_hook(positions, heads)"};
      },
      py::arg("source"), py::arg("positions") = std::vector<int64_t>{}, py::arg("heads") = std::vector<int64_t>{},
      "Hook replacing the activation at positions/heads by the same entries of `source` (another run's cache).");
  m.def("patch_into", &patch_into, py::arg("dst"), py::arg("source"), py::arg("positions") = std::vector<int64_t>{},
        py::arg("heads") = std::vector<int64_t>{}, py::arg("offset") = 0,
        "The one patch, in place: copy source's entries at positions (dim 1) and heads (dim 2) into dst "
        "([batch, pos, ...] holding positions offset.. of source's run)");
  m.def(
      "ablate_hook",
      [](std::vector<int64_t> positions, std::vector<int64_t> heads, std::optional<at::Tensor> mean) {
        return NativeHook{ablate_hook(positions, heads, mean.value_or(at::Tensor())),
                          mean ? "ablate_hook(mean)" : "ablate_hook(zero)"};
      },
      py::arg("positions") = std::vector<int64_t>{}, py::arg("heads") = std::vector<int64_t>{},
      py::arg("mean") = py::none(), "Hook setting the activation at positions/heads to zero (or to `mean`).");
  m.def(
      "add_vector_hook",
      [](const at::Tensor& vector, double alpha, std::vector<int64_t> positions) {
        return NativeHook{add_vector_hook(vector, alpha, positions), "add_vector_hook(alpha=" + std::to_string(alpha) + ")"};
      },
      py::arg("vector"), py::arg("alpha") = 1.0, py::arg("positions") = std::vector<int64_t>{},
      "Hook adding alpha * vector at positions (activation addition / steering).");

  m.def(
      "project_out_hook",
      [](const at::Tensor& v, double gamma) {
        return NativeHook{project_out_hook(v, gamma), "project_out_hook(gamma=" + std::to_string(gamma) + ")"};
      },
      py::arg("v"), py::arg("gamma") = 1.0, "Hook removing gamma times the component along v (x - gamma (x.v^)v^).");

  py::class_<ResidualWriter>(m, "ResidualWriter", "A weight that writes into the residual stream")
      .def_readonly("name", &ResidualWriter::name)
      .def_readonly("kind", &ResidualWriter::kind)
      .def_readonly("layer", &ResidualWriter::layer)
      .def_readonly("tensor", &ResidualWriter::tensor)
      .def("__repr__", [](const ResidualWriter& w) { return "ResidualWriter(" + w.name + ", " + w.kind + ", layer " + std::to_string(w.layer) + ")"; });
  py::class_<HookHandle>(m, "HookHandle",
                         "Registered hooks; remove() (or leaving a `with` block) removes them. A handle may outlive "
                         "its model: remove() is then a no-op.")
      .def("remove", &HookHandle::remove)
      .def_property_readonly("active", &HookHandle::active, "Whether it still holds hooks of a live model")
      .def(
          "absorb", [](HookHandle& h, HookHandle& other) { h.absorb(std::move(other)); }, py::arg("other"),
          "Take over other's hooks (same model): one handle removes both; other is left empty")
      .def("__enter__", [](HookHandle& h) -> HookHandle& { return h; }, py::return_value_policy::reference)
      .def("__exit__", [](HookHandle& h, py::args) { h.remove(); });

  py::class_<GenerateOptions>(m, "GenerateOptions")
      .def(py::init<>())
      .def_readwrite("max_new_tokens", &GenerateOptions::max_new_tokens)
      .def_readwrite("do_sample", &GenerateOptions::do_sample)
      .def_readwrite("temperature", &GenerateOptions::temperature)
      .def_readwrite("top_k", &GenerateOptions::top_k)
      .def_readwrite("top_p", &GenerateOptions::top_p)
      .def_readwrite("seed", &GenerateOptions::seed)
      .def_readwrite("stop_tokens", &GenerateOptions::stop_tokens)
      .def_readwrite("pad_token_id", &GenerateOptions::pad_token_id)
      .def_property(
          "stop_when", [](const GenerateOptions& o) { return static_cast<bool>(o.stop_when); },
          [](GenerateOptions& o, const py::object& fn) {
            if (fn.is_none()) o.stop_when = nullptr;
            else o.stop_when = wrap_callable<bool, int64_t, const std::vector<int64_t>&>(fn);
          },
          "fn(row, generated ids) -> bool, called after each generated token: True ends the row (reads back "
          "whether one is set)");

  py::class_<KVCache>(m, "KVCache",
                      "Keys and values of token rows final_residual has run, to continue them without running them "
                      "again (keys/values per layer [batch, n_kv_heads, length, d_head], mask [batch, length])")
      .def(py::init<>())
      .def_readwrite("keys", &KVCache::keys)
      .def_readwrite("values", &KVCache::values)
      .def_readwrite("mask", &KVCache::mask)
      .def("length", &KVCache::length)
      .def("batch", &KVCache::batch)
      .def("select", &KVCache::select, py::arg("rows"), "The cache of rows `rows` (a row may repeat)");

  py::class_<GenerateResult>(m, "GenerateResult")
      .def_readonly("tokens", &GenerateResult::tokens)
      .def_readonly("new_tokens", &GenerateResult::new_tokens);

  py::class_<Transformer, std::shared_ptr<Transformer>>(m, "Transformer",
                                                         "The hooked transformer (scalpel.load returns one).")
      .def_static("from_pretrained", &Transformer::from_pretrained, py::arg("directory"), py::arg("dtype") = "",
                  py::arg("device") = "cpu", py::call_guard<py::gil_scoped_release>())
      .def_static("from_gguf", &Transformer::from_gguf, py::arg("path"), py::arg("dtype") = "",
                  py::arg("device") = "cpu", py::call_guard<py::gil_scoped_release>(),
                  "Load a GGUF file: dequantized once to dtype (float32 by default), config and tokenizer from its metadata.")
      .def_static("from_config", &Transformer::from_config, py::arg("config_json"), py::arg("seed") = 0,
                  py::arg("init_std") = 0.02, py::arg("dtype") = "float32", py::call_guard<py::gil_scoped_release>(),
                  "Random weights from a Hugging Face config.json text (Llama, Mistral, Qwen2 layouts).")
      .def("named_parameters", &Transformer::named_parameters,
           "[(Hugging Face name, live weight tensor)]: edit in place, or set requires_grad to train")
      .def("residual_writers", &Transformer::residual_writers, py::arg("from_layer") = 0,
           "[ResidualWriter(name, kind, layer, tensor)] of the live weights that write into the residual stream: embeddings (from_layer 0), "
           "each block's attention output and MLP output matrix and bias (Hugging Face names where the slot is a "
           "checkpoint tensor, else TransformerLens names)")
      .def_property_readonly("tied_embeddings", &Transformer::tied_embeddings,
                             "Whether the output head is the embedding matrix itself")
      .def_property_readonly("decoding", &Transformer::decoding,
                             "True while generate() runs a step after the prompt (the pass covers generated tokens only)")
      .def("untie_embeddings", &Transformer::untie_embeddings,
           "Give a tied output head its own copy of the embedding (False when already untied)")
      .def("save_pretrained", &Transformer::save_pretrained, py::arg("directory"), py::arg("dtype") = "",
           py::arg("overwrite") = false, py::call_guard<py::gil_scoped_release>(),
           "Write a Hugging Face directory (config, model.safetensors, the source's tokenizer files), atomically.")
      .def_property_readonly("config", &Transformer::config)
      .def_property_readonly("has_tokenizer", &Transformer::has_tokenizer)
      .def_property_readonly("tokenizer", &Transformer::tokenizer, py::return_value_policy::reference_internal)
      .def_property_readonly("dtype", [](const Transformer& t) {
        return py::module_::import("torch").attr(t.dtype() == at::kBFloat16 ? "bfloat16" : "float32");
      })
      .def("forward", forward, py::arg("tokens"), py::arg("attention_mask") = py::none(),
           py::arg("last_position_only") = false, py::call_guard<py::gil_scoped_release>(),
           "tokens [batch, pos] -> logits [batch, pos, vocab] (float32); last_position_only: [batch, 1, vocab]")
      .def("__call__", forward, py::arg("tokens"), py::arg("attention_mask") = py::none(),
           py::arg("last_position_only") = false, py::call_guard<py::gil_scoped_release>())
      .def(
          "forward_from",
          [](Transformer& t, int64_t layer, const at::Tensor& resid_pre, const std::optional<at::Tensor>& mask,
             bool last_position_only) {
            return t.forward_from(layer, resid_pre, mask.value_or(at::Tensor()), last_position_only);
          },
          py::arg("layer"), py::arg("resid_pre"), py::arg("attention_mask") = py::none(),
          py::arg("last_position_only") = false,
          py::call_guard<py::gil_scoped_release>(),
          "The forward pass from block `layer` on, given the residual stream entering it "
          "(blocks.{layer}.hook_resid_pre) -> logits")
      .def("forward_from_suffix", &Transformer::forward_from_suffix, py::arg("layer"), py::arg("resid_pre_suffix"),
           py::arg("past_k"), py::arg("past_v"), py::arg("last_position_only") = false,
           py::call_guard<py::gil_scoped_release>(),
           "forward_from for positions start.. only, with the keys and values of the positions before "
           "(per layer from `layer`, [1 or batch, kv_heads, start, d_head]) from an earlier run")
      .def("hook_names", &Transformer::hook_names)
      .def("hook_point", &Transformer::hook_point, py::arg("name"), py::return_value_policy::reference_internal)
      .def("add_hook", [](Transformer& t, const std::string& name, py::object fn) { return t.add_hook(name, wrap_hook(fn)); },
           py::arg("name"), py::arg("fn"))
      .def("add_hooks",
           [](Transformer& t, const std::vector<std::pair<std::string, py::object>>& hooks) {
             std::vector<std::pair<std::string, HookFn>> fns;
             for (const auto& [n, f] : hooks) fns.emplace_back(n, wrap_hook(f));
             return t.add_hooks(fns);
           },
           py::arg("hooks"))
      .def("add_backward_hooks",
           [](Transformer& t, const std::vector<std::pair<std::string, py::object>>& hooks) {
             std::vector<std::pair<std::string, BackwardHookFn>> fns;
             for (const auto& [n, f] : hooks) fns.emplace_back(n, wrap_backward_hook(f));
             return t.add_backward_hooks(fns);
           },
           py::arg("hooks"), "Gradient hooks fn(grad, hook), called when backward() runs through the activation.")
      .def("reset_hooks", &Transformer::reset_hooks)
      .def("run_with_cache",
           [](Transformer& t, const at::Tensor& tokens, const std::vector<std::string>& names,
              const std::optional<at::Tensor>& mask, bool last_position_only, int64_t stop_at_layer) {
             return t.run_with_cache(tokens, names, mask.value_or(at::Tensor()), last_position_only, stop_at_layer);
           },
           py::arg("tokens"), py::arg("names") = std::vector<std::string>{}, py::arg("attention_mask") = py::none(),
           py::arg("last_position_only") = false, py::arg("stop_at_layer") = -1,
           py::call_guard<py::gil_scoped_release>(),
           "Logits and a dict of the activations at `names` (every hook point when empty).")
      .def("final_residual",
           [](Transformer& t, const at::Tensor& tokens, const std::optional<at::Tensor>& mask,
              const std::optional<KVCache>& past, bool return_cache) -> py::object {
             KVCache out;
             at::Tensor x;
             {
               py::gil_scoped_release release;
               x = t.final_residual(tokens, mask.value_or(at::Tensor()), past ? &*past : nullptr,
                                    return_cache ? &out : nullptr);
             }
             if (return_cache) return py::make_tuple(x, out);
             return py::cast(x);
           },
           py::arg("tokens"), py::arg("attention_mask") = py::none(), py::arg("past") = py::none(),
           py::arg("return_cache") = false,
           "The final norm's output [batch, pos, d_model] for tokens continuing `past` (a KVCache, or None); "
           "(values, KVCache of past + tokens) when return_cache. Logits at chosen positions: unembed(values[...])")
      .def("unembed", &Transformer::unembed, py::arg("final_residual"), py::call_guard<py::gil_scoped_release>(),
           "final_residual values [..., d_model] -> logits [..., vocab] (float32, as forward)")
      .def("generate", &Transformer::generate, py::arg("prompts"), py::arg("options"),
           py::call_guard<py::gil_scoped_release>(),
           "Token prompts (lists of ids) + GenerateOptions -> GenerateResult; scalpel.model adds the string form");

  m.def("supported_architectures", &supported_architectures);
}

}  // namespace scalpel::python
