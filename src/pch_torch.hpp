// Precompiled header for the sources that use LibTorch (they say so with a
// `// SCALPEL_USES_TORCH` line near the top; see CMakeLists.txt).
#pragma once
#include <torch/torch.h>
