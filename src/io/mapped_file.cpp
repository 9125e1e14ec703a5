// Read-only file mappings (mapped_file.h).
#include "io/mapped_file.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "core/file_util.h"

namespace mamba::io {
namespace {

// Unmaps on destruction; tensors borrowing the mapping hold it through Buffer's keep_alive.
struct MappedFile {
  void* data = nullptr;
  size_t size = 0;
  MappedFile(void* d, size_t n) : data(d), size(n) {}
  ~MappedFile() { ::munmap(data, size); }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
};

}  // namespace

std::shared_ptr<Buffer> map_file(const std::string& path, size_t min_size, const std::string& too_short) {
  size_t size = 0;
  const int fd = open_regular_file(path, size);
  if (size < min_size || size == 0) {
    ::close(fd);
    throw_error(ErrorCode::parse, path, ": file is ", size, " bytes, ", too_short);
  }
  void* data = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);
  if (data == MAP_FAILED)
    throw_error(ErrorCode::io, path, ": cannot mmap ", size, " bytes (", std::strerror(err), ")");
  auto mapping = std::make_shared<MappedFile>(data, size);
  return Buffer::borrow(data, size, mapping);
}

}  // namespace mamba::io
