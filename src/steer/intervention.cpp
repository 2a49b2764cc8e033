// SCALPEL_USES_TORCH
// The model fingerprint and the one intervention file format (see
// scalpel/steer/intervention.hpp).
#include "scalpel/steer/intervention.hpp"

#include <torch/torch.h>

#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "scalpel/errors.hpp"
#include "scalpel/io/safetensors.hpp"
#include "scalpel/model/transformer.hpp"
#include "scalpel/steer/breaker.hpp"
#include "scalpel/steer/steering.hpp"
#include "edit_training.hpp"
#include "scalpel/steer/gate.hpp"
#include "scalpel/version.hpp"
#include "util/messages.hpp"

namespace scalpel {
namespace {

using Json = nlohmann::ordered_json;
constexpr const char* kMetadataKey = "scalpel.intervention";
constexpr int kFormatVersion = 1;
constexpr int64_t kSample = 4096;  // values hashed per weight

// FNV-1a, 64 bits.
void fnv(uint64_t& h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ULL;
  }
}

std::string hex16(uint64_t h) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, h);
  return buf;
}

std::string shape_text(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

Json fingerprint_json(const ModelFingerprint& f) {
  Json shapes = Json::array();
  for (const auto& [n, s] : f.shapes) shapes.push_back(Json::array({n, s}));
  return Json{{"architecture", f.architecture}, {"checksum", f.checksum}, {"shapes", shapes}};
}

ModelFingerprint fingerprint_from(const Json& j, const std::string& where) {
  ModelFingerprint f;
  try {
    f.architecture = j.at("architecture").get<std::string>();
    f.checksum = j.at("checksum").get<std::string>();
    for (const auto& e : j.at("shapes")) f.shapes.emplace_back(e.at(0).get<std::string>(), e.at(1).get<std::vector<int64_t>>());
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(detail::expected_got(where + ": model", "{architecture, checksum, shapes}", e.what()));
  }
  return f;
}

}  // namespace

ModelFingerprint ModelFingerprint::of(const Transformer& model) {
  ModelFingerprint f;
  f.architecture = model.config().architecture;
  at::NoGradGuard no_grad;
  uint64_t h = 1469598103934665603ULL;
  for (const auto& w : model.residual_writers()) {
    f.shapes.emplace_back(w.name, w.tensor.sizes().vec());
    auto flat = w.tensor.detach().reshape({-1});
    const int64_t n = flat.numel();
    auto idx = at::arange(std::min(n, kSample), at::kLong).mul_(std::max<int64_t>(1, n / kSample));
    auto sample = flat.index_select(0, idx).to(at::kBFloat16).contiguous();
    fnv(h, w.name.data(), w.name.size());
    fnv(h, sample.data_ptr(), static_cast<size_t>(sample.numel()) * 2);
  }
  f.checksum = hex16(h);
  return f;
}

std::string ModelFingerprint::mismatch(const Transformer& model) const {
  const auto other = of(model);
  if (other.architecture != architecture)
    return "architecture " + other.architecture + " (the intervention was made for " + architecture + ")";
  if (other.shapes.size() != shapes.size())
    return std::to_string(other.shapes.size()) + " residual-stream weights (the intervention's model has " +
           std::to_string(shapes.size()) + ")";
  for (size_t i = 0; i < shapes.size(); ++i)
    if (other.shapes[i] != shapes[i])
      return "weight " + other.shapes[i].first + " of shape " + shape_text(other.shapes[i].second) +
             " (the intervention's model has " + shapes[i].first + " of shape " + shape_text(shapes[i].second) + ")";
  if (other.checksum != checksum)
    return "weights with checksum " + other.checksum + " (the intervention's model: " + checksum +
           "; same shapes, different values: a fine-tune or an edited copy?)";
  return "";
}

std::vector<std::string> Intervention::site_hooks() const {
  throw Unsupported(detail::expected_got("a gate around a " + kind(), "an intervention a gate can scale (circuit_breaker, steering_vector)",
                                         kind()));
}

HookHandle Intervention::attach_shared(Transformer&, std::optional<double>, const std::shared_ptr<steer_detail::AttachState>&) const {
  throw Unsupported(detail::expected_got("a gate around a " + kind(), "an intervention a gate can scale (circuit_breaker, steering_vector)",
                                         kind()));
}

void Intervention::check_model_matches(const Transformer& target, bool check_model) const {
  if (!check_model || model.empty()) return;
  const auto why = model.mismatch(target);
  if (!why.empty())
    throw InvalidArgument(detail::expected_got(kind() + " attach", "the model it was made for", why,
                                               "pass check_model=false to attach it to this model anyway"));
}

void save_intervention(const Intervention& iv, const std::string& path) {
  Json fields;
  try {
    fields = Json::parse(iv.fields_json());
  } catch (const nlohmann::json::exception& e) {
    SCALPEL_ASSERT(false, std::string("intervention fields are not JSON: ") + e.what());
  }
  Json desc{{"kind", iv.kind()},
            {"format_version", kFormatVersion},
            {"scalpel_version", version()},
            {"model", fingerprint_json(iv.model)},
            {"fields", fields}};
  save_safetensors(path, iv.tensors(), {{kMetadataKey, desc.dump()}, {"format", "pt"}});
}

namespace {
// The description an opened intervention file carries.
const std::string& description_of(const SafetensorsFile& file) {
  auto it = file.metadata().find(kMetadataKey);
  if (it == file.metadata().end())
    throw FormatError(detail::expected_got(file.path(), "an intervention file (metadata \"" + std::string(kMetadataKey) + "\")",
                                           "a safetensors file without it", "written by save_intervention?"));
  return it->second;
}
}  // namespace

std::string intervention_description(const std::string& path) { return description_of(SafetensorsFile(path)); }

std::shared_ptr<Intervention> steer_detail::intervention_from_parts(const std::string& kind, const std::string& fields,
                                                                   const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                                                                   const std::string& where) {
  if (kind == "circuit_breaker") return std::make_shared<CircuitBreaker>(CircuitBreaker::from_parts(fields, tensors, where));
  if (kind == "steering_vector") return std::make_shared<SteeringVector>(SteeringVector::from_parts(fields, tensors, where));
  if (kind == "gated") return gated_from_parts(fields, tensors, where);
  throw FormatError(detail::expected_got(where + ": kind", "one of: circuit_breaker, steering_vector, gated", "\"" + kind + "\""));
}

std::shared_ptr<Intervention> load_intervention(const std::string& path) {
  SafetensorsFile file(path);
  const std::string& text = description_of(file);
  Json desc;
  try {
    desc = Json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(detail::expected_got(path + ": metadata " + kMetadataKey, "JSON", e.what()));
  }
  if (!desc.is_object() || !desc.contains("kind") || !desc.contains("fields") || !desc.contains("model") ||
      !desc.contains("format_version"))
    throw FormatError(detail::expected_got(path + ": metadata " + kMetadataKey, "an object with kind, format_version, model, fields",
                                           desc.dump().substr(0, 200)));
  if (!desc["format_version"].is_number_integer() || desc["format_version"].get<int>() != kFormatVersion)
    throw FormatError(detail::expected_got(path + ": format_version", std::to_string(kFormatVersion), desc["format_version"].dump(),
                                           "written by another scalpel version (" +
                                               desc.value("scalpel_version", std::string("unknown")) + ")"));
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& k : file.keys()) tensors.emplace_back(k, file.get(k).clone());
  const std::string kind = desc["kind"].is_string() ? desc["kind"].get<std::string>() : desc["kind"].dump();
  auto out = steer_detail::intervention_from_parts(kind, desc["fields"].dump(), tensors, path);
  out->model = fingerprint_from(desc["model"], path);
  if (auto g = std::dynamic_pointer_cast<GatedIntervention>(out)) g->inner->model = g->model;
  return out;
}

}  // namespace scalpel
