// A zip archive in memory as torch.save (>= 1.6) writes it: stored (uncompressed) entries only, zip64
// aware, every offset and size checked against the data; and little-endian reads of raw bytes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

namespace mamba::io {

// Printable, one-line, at most 120 characters (then "..."): names from a hostile file go into
// error messages.
std::string printable(const std::string& s);

inline uint16_t rd16(const unsigned char* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
inline uint32_t rd32(const unsigned char* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
inline uint64_t rd64(const unsigned char* p) {
  return rd32(p) | (static_cast<uint64_t>(rd32(p + 4)) << 32);
}

struct ZipEntry {
  size_t offset = 0;  // of the data in the file
  size_t size = 0;
};

class ZipArchive {
public:
  ZipArchive(const std::string& file, const unsigned char* data, size_t size)
      : file_(file), data_(data), size_(size) {
    parse();
  }
  const ZipEntry* find(const std::string& name) const {
    auto it = entries_.find(name);
    return it == entries_.end() ? nullptr : &it->second;
  }
  const std::string& prefix() const { return prefix_; }

private:
  [[noreturn]] void bad(const std::string& what) const;

  void parse();

  std::string file_;
  const unsigned char* data_;
  size_t size_;
  std::map<std::string, ZipEntry> entries_;
  std::string prefix_;
};

}  // namespace mamba::io
