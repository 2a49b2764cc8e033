#include "scalpel/io/pickle.hpp"

#include <cstdio>
#include <filesystem>

#include "scalpel/errors.hpp"
#include "util/messages.hpp"

namespace scalpel {

bool is_pickle_checkpoint(const std::string& path) {
  const std::string ext = std::filesystem::path(path).extension().string();
  if (ext == ".bin" || ext == ".pt" || ext == ".pth" || ext == ".ckpt" || ext == ".pkl" || ext == ".pickle")
    return true;
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  unsigned char m[4] = {0, 0, 0, 0};
  size_t got = std::fread(m, 1, 4, f);
  std::fclose(f);
  const bool zip = got == 4 && m[0] == 'P' && m[1] == 'K' && m[2] == 3 && m[3] == 4;
  const bool pickle = got >= 2 && m[0] == 0x80 && m[1] >= 2 && m[1] <= 5;
  return zip || pickle;
}

void refuse_pickle(const std::string& path) {
  if (!is_pickle_checkpoint(path)) return;
  throw FormatError(detail::expected_got(
      "checkpoint " + path, "safetensors", "a pickle-based PyTorch checkpoint",
      "scalpel never unpickles: loading a pickle can run arbitrary code. If you trust the file, convert it once "
      "with PyTorch: python -c \"import torch, safetensors.torch as st; "
      "st.save_file(torch.load('" + path + "', weights_only=True), 'model.safetensors')\" "
      "or, for a model directory, AutoModelForCausalLM.from_pretrained(dir).save_pretrained(out, "
      "safe_serialization=True)"));
}

}  // namespace scalpel
