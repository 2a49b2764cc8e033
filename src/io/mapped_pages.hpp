// Private: giving back the pages of a memory-mapped checkpoint once its data
// has been copied elsewhere (a dtype conversion, a transposed layout), so
// that peak memory is the model, not the model plus the file.
#pragma once

#include <cstddef>

namespace scalpel::detail {

/// madvise(MADV_DONTNEED) on the whole pages of [data, data + nbytes) if the
/// range lies inside a live, unmodified safetensors mapping (a private file
/// mapping: the pages refault from the file if read again, so this is only
/// ever a memory hint). Returns false and does nothing for any other memory.
/// Call only before anything has written to the mapping.
bool release_mapped_pages(const void* data, size_t nbytes);

}  // namespace scalpel::detail
