// A read-only memory map of a regular file as a Buffer (tensors borrowing it keep it mapped),
// shared by the safetensors and torch.save readers.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace mamba::io {

// Maps `path` (a regular file, not a FIFO or a directory). A file shorter than `min_size` bytes
// (or empty) is an Error(parse) "<path>: file is N bytes, <too_short>"; open / mmap failures are
// Error(io) naming the path.
std::shared_ptr<Buffer> map_file(const std::string& path, size_t min_size, const std::string& too_short);

// `bytes` of zeroed anonymous memory, 2 MiB-aligned and advised into 2 MiB pages (MADV_HUGEPAGE; the
// kernel may still give 4 KiB ones). Weights streamed once a token read ~20% faster from it than
// from a file mapping's 4 KiB pages (one TLB entry and one page walk per 2 MiB instead of per
// 4 KiB; docs/quantization.md, "Decode bandwidth"). Error(io) when the memory is not there.
std::shared_ptr<Buffer> huge_page_buffer(size_t bytes);

// One range of a file to read into memory.
struct FileRange {
  uint64_t offset = 0;  // in the file
  size_t bytes = 0;
  void* dst = nullptr;
};
// Reads each range of `path` with pread (the page cache's pages are copied, never mapped into the
// process, so they do not count in its resident set). Error(io) naming the path on a short read.
void read_file_ranges(const std::string& path, const std::vector<FileRange>& ranges);

}  // namespace mamba::io
