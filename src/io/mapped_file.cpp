// Read-only file mappings (mapped_file.h).
#include "io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

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
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever; the
  // fstat below then refuses anything that is not a regular file.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw_error(ErrorCode::io, path, ": cannot open (", std::strerror(errno), ")");
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw_error(ErrorCode::io, path, ": not a regular file");
  }
  const size_t size = static_cast<size_t>(st.st_size);
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
