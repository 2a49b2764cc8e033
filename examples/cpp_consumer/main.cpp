// Uses the installed scalpel from outside its source tree: reads a model
// directory's config, weights and tokenizer; with no argument, writes and
// reads back a small safetensors file instead.
#include <ATen/ATen.h>
#include <scalpel/scalpel.hpp>

#include <cstdio>
#include <iostream>

int main(int argc, char** argv) {
  try {
    if (argc < 2) {
      const std::string path = "consumer_roundtrip.safetensors";
      scalpel::save_safetensors(path, {{"w", at::arange(6, at::kFloat).reshape({2, 3})}}, {{"format", "pt"}});
      scalpel::SafetensorsFile f(path);
      std::cout << "round trip: " << f.get("w").sum().item<float>() << " (expected 15)\n";
      std::remove(path.c_str());
      return f.get("w").sum().item<float>() == 15.0f ? 0 : 1;
    }
    const std::string dir = argv[1];
    auto files = scalpel::HFModelFiles::find(dir);
    auto config = scalpel::HFConfig::from_file(files.config_path);
    auto weights = scalpel::SafetensorsCheckpoint::open(files.weights_path);
    std::cout << config.architecture << ": " << config.num_hidden_layers << " layers, d_model "
              << config.hidden_size << ", " << weights.keys().size() << " tensors, "
              << weights.total_bytes() << " bytes\n";
    auto tok = scalpel::load_tokenizer(dir);
    auto ids = tok.encode("Once upon a time");
    std::cout << "\"Once upon a time\" -> " << ids.size() << " tokens -> \"" << tok.decode(ids, true) << "\"\n";

    // A direction between two prompt sets, cleaned of what the default concept atoms predict.
    auto model = scalpel::Transformer::from_pretrained(dir, "float32");
    const auto fmt = scalpel::chat_formatter(*model);
    const std::string hook = "blocks.1.hook_resid_pre";
    auto cands = scalpel::candidate_directions(*model, {"Tom was sad.", "Sue cried."}, {"Tom was happy.", "Sue smiled."},
                                               fmt, {hook}, {-1});
    auto reg = scalpel::Registry::default_registry();
    reg.extract(*model, {hook}, {-1}, fmt);
    auto res = scalpel::surgical_direction(cands.directions[0][0], reg, hook, -1);
    std::cout << "sad - happy at " << hook << ": " << res.atoms.size() << " atoms explain "
              << 100 * res.ridge.explained << "% (lambda " << res.ridge.lambda << ")\n";
    return ids.empty() || res.atoms.size() != 10 ? 1 : 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
