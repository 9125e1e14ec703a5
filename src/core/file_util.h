// File helpers: whole-file reads and atomic writes (temp file in the same folder, then rename),
// so a crash never leaves a half-written output.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mamba {

std::string read_file(const std::string& path);  // throws Error(io) naming the path
void write_file_atomic(const std::string& path, const void* data, size_t bytes);
void write_file_atomic(const std::string& path, const std::string& contents);
bool file_exists(const std::string& path);
std::string path_join(const std::string& dir, const std::string& name);

}  // namespace mamba
