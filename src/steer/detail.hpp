// Private to src/steer: result objects as JSON, shared by directions.cpp,
// atoms.cpp and sra.cpp.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "scalpel/steer/sra.hpp"

namespace scalpel::detail {

using Json = nlohmann::ordered_json;

bool contains(const std::vector<std::string>& v, const std::string& x);

/// Nested lists of a tensor's values (as float64).
Json tensor_json(const at::Tensor& t);
/// {"coefficients", "lambda", "explained", "cosine", "gcv_lambdas", "gcv_scores"}
Json ridge_object(const RidgeResult& r);
/// {"cosines", "condition_number", "collinear": [[name, name], ...]}
Json audit_object(const AtomAudit& a, const std::vector<std::string>& names);

}  // namespace scalpel::detail
