// Private: locating the weights of a model directory (shared by the
// checkpoint reader and HFModelFiles).
#pragma once

#include <string>

namespace scalpel::detail {

/// model.safetensors.index.json if present, else the directory's single
/// *.safetensors file. Refuses pickle-only directories (FormatError with
/// conversion instructions); FileNotFound when there are no weights;
/// FormatError when several .safetensors files have no index.
std::string find_weights_file(const std::string& directory);

}  // namespace scalpel::detail
