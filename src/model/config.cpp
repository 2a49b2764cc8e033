// ModelConfig::validate (scalpel/model/config.hpp).
#include "scalpel/model/config.hpp"

#include <string>

#include "scalpel/errors.hpp"
#include "util/messages.hpp"

namespace scalpel {

void ModelConfig::validate() const {
  auto positive = [&](int64_t v, const char* field) {
    if (v <= 0) throw InvalidArgument(detail::expected_got(std::string("ModelConfig.") + field, "a positive value", std::to_string(v)));
  };
  positive(n_layers, "n_layers");
  positive(d_model, "d_model");
  positive(n_heads, "n_heads");
  positive(n_kv_heads, "n_kv_heads");
  positive(d_head, "d_head");
  positive(d_mlp, "d_mlp");
  positive(d_vocab, "d_vocab");
  if (n_heads % n_kv_heads != 0)
    throw InvalidArgument(detail::expected_got("ModelConfig.n_kv_heads", "a divisor of n_heads", std::to_string(n_kv_heads)));
  if (positions == PositionKind::Rotary && (rotary_dim <= 0 || rotary_dim > d_head || rotary_dim % 2 != 0))
    throw InvalidArgument(detail::expected_got("ModelConfig.rotary_dim", "an even number in (0, d_head]", std::to_string(rotary_dim)));
  if (!sliding_window.empty() && static_cast<int64_t>(sliding_window.size()) != n_layers)
    throw InvalidArgument(detail::expected_got("ModelConfig.sliding_window", "one entry per layer (" + std::to_string(n_layers) + ")",
                                               std::to_string(sliding_window.size()) + " entries"));
  if (rope_scaling && rope_scaling->rope_type != "linear" && rope_scaling->rope_type != "llama3")
    throw Unsupported(detail::expected_got("rope_scaling.rope_type", "\"linear\" or \"llama3\"",
                                           "\"" + rope_scaling->rope_type + "\""));
}

}  // namespace scalpel
