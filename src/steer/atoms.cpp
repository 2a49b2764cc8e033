// SCALPEL_USES_TORCH
// The concept-atom registry (scalpel/steer/atoms.hpp).
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "scalpel/steer/atoms.hpp"
#include "scalpel/errors.hpp"
#include "scalpel/io/safetensors.hpp"
#include "scalpel/io/tokenizer.hpp"
#include "io/atomic_file.hpp"
#include "util/json_text.hpp"
#include "util/messages.hpp"
#include "io/json_rows.hpp"
#include "model/prompts_detail.hpp"
#include "scalpel/model/prompts.hpp"
#include "steer/detail.hpp"

namespace scalpel {

namespace detail {
const char* default_atoms_json();  // generated from python/scalpel/atoms/default.json
}

namespace {

namespace fs = std::filesystem;
using detail::contains;
using detail::Json;

// Python's str.format(x=...) on a template: "{x}" is the fill, "{{" and "}}" are braces.
std::string expand(const std::string& tpl, const std::string& x, const std::string& atom) {
  std::string out;
  for (size_t i = 0; i < tpl.size(); ++i) {
    const char c = tpl[i];
    if (c == '{' && i + 1 < tpl.size() && tpl[i + 1] == '{') {
      out += '{';
      ++i;
    } else if (c == '}' && i + 1 < tpl.size() && tpl[i + 1] == '}') {
      out += '}';
      ++i;
    } else if (c == '{' && tpl.compare(i, 3, "{x}") == 0) {
      out += x;
      i += 2;
    } else if (c == '{' || c == '}') {
      throw FormatError(detail::expected_got("atom '" + atom + "' template \"" + tpl + "\"",
                                             "only {x} as a field (write {{ and }} for braces)",
                                             "a brace at byte " + std::to_string(i)));
    } else {
      out += c;
    }
  }
  return out;
}

std::vector<std::string> string_list(const Json& j, const std::string& what) {
  if (!j.is_array()) throw FormatError(detail::expected_got(what, "a list of strings", j.type_name()));
  std::vector<std::string> out;
  for (const auto& x : j) {
    if (!x.is_string()) throw FormatError(detail::expected_got(what, "a list of strings", "a list holding " +
                                                                                           std::string(x.type_name())));
    out.push_back(x.get<std::string>());
  }
  return out;
}

std::vector<std::string> prompt_set(const Json& spec, const Json& entry, const std::string& name, const std::string& side,
                                    const std::string& base_dir) {
  const std::string what = "atom '" + name + "' " + side;
  if (spec.is_object()) {  // {"file": path, "field": key, "limit": n}
    if (!spec.contains("file") || !spec["file"].is_string())
      throw FormatError(detail::expected_got(what, "a list of prompts or {\"file\": path, \"field\": key, \"limit\": n}",
                                             spec.dump()));
    fs::path p = spec["file"].get<std::string>();
    if (p.is_relative() && !base_dir.empty()) p = fs::path(base_dir) / p;
    if (!fs::exists(p)) throw FileNotFound("atom '" + name + "': prompt file " + p.string() + " not found");
    const auto rows = detail::read_json_rows(p.string(), "atom prompt file");
    std::vector<std::string> out;
    try {
      size_t limit = rows.size();
      if (spec.contains("limit")) limit = std::min(limit, spec["limit"].get<size_t>());
      for (size_t i = 0; i < limit; ++i) {
        const Json& v = spec.contains("field") ? rows[i].value.at(spec["field"].get<std::string>()) : rows[i].value;
        // As Python's str(): strings as they are, True/False/None, other values as JSON text.
        out.push_back(v.is_string() ? v.get<std::string>()
                      : v.is_boolean() ? (v.get<bool>() ? "True" : "False")
                      : v.is_null() ? "None" : v.dump());
      }
    } catch (const nlohmann::json::exception& e) {
      throw FormatError(what + ": " + p.string() + " does not fit the spec " + spec.dump() +
                        " (\"field\": a key of every row, \"limit\": a non-negative integer; " + e.what() + ")");
    }
    return out;
  }
  auto out = string_list(spec, what);
  if (entry.contains("fill") && !entry["fill"].is_null() && !entry["fill"].empty()) {
    std::vector<std::string> filled;
    for (const auto& x : string_list(entry["fill"], "atom '" + name + "' fill"))
      for (const auto& t : out) filled.push_back(expand(t, x, name));
    out = std::move(filled);
  }
  return out;
}

}  // namespace

// ----------------------------------------------------------- concept atoms --

const std::vector<std::string>& atom_kinds() {
  static const std::vector<std::string> kinds{"target", "shield", "confound"};
  return kinds;
}

Atom::Atom(std::string name_, std::string kind_, std::vector<std::string> positive_, std::vector<std::string> negative_,
           std::string description_, std::vector<std::string> hooks_)
    : name(std::move(name_)), kind(std::move(kind_)), positive(std::move(positive_)), negative(std::move(negative_)),
      description(std::move(description_)), hooks(std::move(hooks_)) {
  validate();
}

void Atom::validate() const {
  if (!contains(atom_kinds(), kind))
    throw InvalidArgument(detail::expected_got("atom '" + name + "' kind", "one of " + detail::join_names(atom_kinds()),
                                               "'" + kind + "'"));
  if (positive.empty() || negative.empty())
    throw InvalidArgument(detail::expected_got("atom '" + name + "'", "nonempty positive and negative prompt sets",
                                               std::to_string(positive.size()) + " and " +
                                                   std::to_string(negative.size())));
}

Atom Atom::from_json(const std::string& json, const std::string& base_dir) {
  Json d;
  try {
    d = Json::parse(json);
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(std::string("atom entry: not valid JSON (") + e.what() + ")");
  }
  if (!d.is_object()) throw FormatError(detail::expected_got("atom entry", "a JSON object", d.type_name()));
  std::vector<std::string> missing;
  for (const char* k : {"name", "kind", "positive", "negative"})
    if (!d.contains(k)) missing.push_back(k);
  const std::string name = d.contains("name") && d["name"].is_string() ? d["name"].get<std::string>() : "?";
  if (!missing.empty())
    throw FormatError("atom entry '" + name + "': missing " + detail::join_names(missing, false) +
                      " (expected name, kind, positive, negative; optional description, hooks, fill)");
  if (!d["name"].is_string())
    throw FormatError(detail::expected_got("atom entry name", "a string", d["name"].dump()));
  if (!d["kind"].is_string())
    throw FormatError(detail::expected_got("atom '" + name + "' kind", "a string", d["kind"].type_name()));
  std::vector<std::string> hooks;
  if (d.contains("hooks") && !d["hooks"].is_null()) hooks = string_list(d["hooks"], "atom '" + name + "' hooks");
  const std::string description =
      d.contains("description") && d["description"].is_string() ? d["description"].get<std::string>() : "";
  return Atom(name, d["kind"].get<std::string>(), prompt_set(d["positive"], d, name, "positive", base_dir),
              prompt_set(d["negative"], d, name, "negative", base_dir), description, hooks);
}

namespace {
Json atom_object(const Atom& a) {
  Json d{{"name", a.name}, {"kind", a.kind}, {"description", a.description}, {"positive", a.positive},
         {"negative", a.negative}};
  if (!a.hooks.empty()) d["hooks"] = a.hooks;
  return d;
}
}  // namespace

std::string Atom::to_json() const { return atom_object(*this).dump(); }

std::string RegistryAudit::to_json() const {
  Json j{{"atoms", atoms}};
  j.update(detail::audit_object(audit, atoms));
  return detail::json_text(j);
}

std::string direction_key(const std::string& atom, const std::string& hook, int64_t position) {
  return atom + "|" + hook + "|" + std::to_string(position);
}

Registry::Registry(const std::vector<Atom>& atoms, std::map<std::string, at::Tensor> directions)
    : directions_(std::move(directions)) {
  for (const auto& a : atoms) add(a);
}

void Registry::add(const Atom& atom) {
  for (const auto& a : atoms_)
    if (a.name == atom.name) throw InvalidArgument("registry: atom '" + atom.name + "' is already registered");
  atom.validate();  // its fields may have changed since it was built
  atoms_.push_back(atom);
}

std::vector<std::string> Registry::names(const std::vector<std::string>& kinds) const {
  std::vector<std::string> out;
  for (const auto& a : atoms_)
    if (kinds.empty() || contains(kinds, a.kind)) out.push_back(a.name);
  return out;
}

const Atom& Registry::atom(const std::string& name) const {
  for (const auto& a : atoms_)
    if (a.name == name) return a;
  throw UnknownName(detail::expected_got("registry atom", "one of " + detail::join_names(names()), "'" + name + "'"));
}

Registry Registry::from_json(const std::string& json, const std::string& base_dir, const std::string& name) {
  Json d;
  try {
    d = Json::parse(json);
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(name + ": not valid JSON (" + e.what() + ")");
  }
  const std::string format = d.is_object() && d.contains("format") && d["format"].is_string()
                                 ? d["format"].get<std::string>() : "none";
  if (format != "scalpel.atoms/1")
    throw FormatError(detail::expected_got(name, "format 'scalpel.atoms/1'", "'" + format + "'"));
  Registry reg;
  if (d.contains("atoms")) {
    if (!d["atoms"].is_array()) throw FormatError(detail::expected_got(name + " atoms", "a list", d["atoms"].type_name()));
    for (const auto& a : d["atoms"]) {
      try {
        reg.add(Atom::from_json(a.dump(), base_dir));
      } catch (const FormatError& e) {
        throw FormatError(name + ": " + e.what());
      } catch (const InvalidArgument& e) {
        throw FormatError(name + ": " + e.what());
      }
    }
  }
  return reg;
}

Registry Registry::load(const std::string& path) {
  if (!fs::exists(path))
    throw FileNotFound("atom registry " + path + " not found (expected a scalpel.atoms/1 JSON file)");
  Registry reg = from_json(detail::read_text_file(path, "atom registry"), fs::path(path).parent_path().string(), path);
  const auto st = fs::path(path).replace_extension(".safetensors");
  if (fs::exists(st))
    for (auto& [k, v] : load_safetensors(st.string())) reg.directions_[k] = v.clone();
  return reg;
}

Registry Registry::default_registry() {
  return from_json(detail::default_atoms_json(), "", "the default atom registry");
}

std::string Registry::to_json() const {
  Json atoms = Json::array();
  for (const auto& a : atoms_) atoms.push_back(atom_object(a));
  return Json{{"format", "scalpel.atoms/1"}, {"atoms", atoms}}.dump(1) + "\n";
}

std::string Registry::save(const std::string& path, const std::map<std::string, std::string>& metadata) const {
  const fs::path p(path);
  if (p.has_parent_path()) fs::create_directories(p.parent_path());
  write_file_atomic(path, to_json());
  if (!directions_.empty()) {
    std::vector<std::pair<std::string, at::Tensor>> t;
    for (const auto& [k, v] : directions_) t.emplace_back(k, v.contiguous());
    save_safetensors(fs::path(path).replace_extension(".safetensors").string(), t, metadata);
  }
  return path;
}

void Registry::extract(Transformer& model, const std::vector<std::string>& hooks, const std::vector<int64_t>& positions,
                       const std::optional<PromptFormat>& fmt, const std::vector<std::string>& names,
                       const std::string& method, int64_t batch_size) {
  if (method != "mean" && method != "pca")
    throw InvalidArgument(detail::expected_got("Registry.extract method", "'mean' or 'pca'", "'" + method + "'"));
  const PromptFormat f = detail::resolve_format(model, fmt);
  for (const auto& n : names.empty() ? this->names() : names) {
    const Atom& a = atom(n);
    auto pos = collect_activations(model, encode_prompts(model, a.positive, f), hooks, positions, batch_size);
    auto neg = collect_activations(model, encode_prompts(model, a.negative, f), hooks, positions, batch_size);
    auto d = method == "mean" ? mean_difference(pos, neg) : pca_directions(pos, neg, 1)[0];
    for (size_t i = 0; i < hooks.size(); ++i)
      for (size_t j = 0; j < positions.size(); ++j)
        directions_[direction_key(n, hooks[i], positions[j])] =
            d[static_cast<int64_t>(i)][static_cast<int64_t>(j)].contiguous();
  }
}

at::Tensor Registry::direction(const std::string& atom, const std::string& hook, int64_t position) const {
  auto it = directions_.find(direction_key(atom, hook, position));
  if (it == directions_.end())
    throw UnknownName("no direction for atom '" + atom + "' at " + hook + " position " + std::to_string(position) +
                      ": run registry.extract(model, {\"" + hook + "\"}, {" + std::to_string(position) + "}) first");
  return it->second;
}

std::pair<std::vector<std::string>, at::Tensor> Registry::matrix(const std::string& hook, int64_t position,
                                                                 const std::vector<std::string>& kinds,
                                                                 const std::vector<std::string>& exclude) const {
  std::vector<std::string> chosen;
  for (const auto& n : names(kinds))
    if (!contains(exclude, n)) chosen.push_back(n);
  if (chosen.empty())
    throw InvalidArgument("registry: no atoms of kinds [" + detail::join_names(kinds) + "] (excluding [" +
                          detail::join_names(exclude) + "])");
  std::vector<at::Tensor> rows;
  for (const auto& n : chosen) rows.push_back(direction(n, hook, position));
  return {chosen, at::stack(rows)};
}

RegistryAudit Registry::audit(const std::string& hook, int64_t position, const std::vector<std::string>& kinds,
                              double collinear_cosine) const {
  auto [names, m] = matrix(hook, position, kinds);
  return RegistryAudit{names, audit_directions(m, collinear_cosine)};
}

}  // namespace scalpel
