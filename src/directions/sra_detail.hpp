// Private: pieces shared by directions.cpp, atoms.cpp and sra.cpp — result
// objects as JSON, the JSON/JSONL row reader and the default prompt format.
#pragma once

#include <cstddef>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "scalpel/directions/sra.hpp"

namespace scalpel::detail {

using Json = nlohmann::ordered_json;

bool contains(const std::vector<std::string>& v, const std::string& x);

/// Nested lists of a tensor's values (as float64).
Json tensor_json(const at::Tensor& t);
/// {"coefficients", "lambda", "explained", "cosine", "gcv_lambdas", "gcv_scores"}
Json ridge_object(const RidgeResult& r);
/// {"cosines", "condition_number", "collinear": [[name, name], ...]}
Json audit_object(const AtomAudit& a, const std::vector<std::string>& names);

/// The rows of a .json file (a list) or of a JSONL file (one value per
/// nonempty line), at most `max_rows`; FormatError naming the file and line.
std::vector<Json> read_json_rows(const std::string& path, const std::string& what,
                                 size_t max_rows = std::numeric_limits<size_t>::max());

/// `fmt`, or the model's chat template when none is given.
PromptFormat resolve_format(const Transformer& model, const std::optional<PromptFormat>& fmt);

}  // namespace scalpel::detail
