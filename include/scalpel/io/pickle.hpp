// scalpel/io/pickle.hpp — scalpel never unpickles a checkpoint.
#pragma once

#include <string>

namespace scalpel {

/// True when `path` looks like a pickle-based checkpoint: by name (*.bin,
/// *.pt, *.pth, *.ckpt, *.pkl, *.pickle) or by content (the zip magic of
/// torch.save, or a pickle protocol opcode).
bool is_pickle_checkpoint(const std::string& path);

/// Throws FormatError with instructions to convert to safetensors when
/// `path` is a pickle checkpoint; does nothing otherwise.
void refuse_pickle(const std::string& path);

}  // namespace scalpel
