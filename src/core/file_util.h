// File helpers: whole-file reads and atomic writes (temp file in the same folder, then rename),
// so a crash never leaves a half-written output.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mamba {

std::string read_file(const std::string& path);  // throws Error(io) naming the path
// Opens `path` read-only if it is a regular file (O_NONBLOCK, so a FIFO never blocks the open; a
// FIFO, device or directory is an Error(io) "<path>: not a regular file"); returns the descriptor
// (the caller closes it) and stores the file's size in `size`.
int open_regular_file(const std::string& path, size_t& size);
void write_file_atomic(const std::string& path, const void* data, size_t bytes);
void write_file_atomic(const std::string& path, const std::string& contents);
bool file_exists(const std::string& path);
std::string path_join(const std::string& dir, const std::string& name);

}  // namespace mamba
