// Read-only file mappings (mapped_file.h).
#include "io/mapped_file.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include "core/error.h"
#include "core/file_util.h"

namespace mamba::io {
namespace {

// A mapping (of a file, or anonymous), unmapped with its last borrower: tensors borrowing it hold it
// through Buffer's keep_alive.
struct Mapping {
  void* data = nullptr;
  size_t size = 0;
  Mapping(void* d, size_t n) : data(d), size(n) {}
  ~Mapping() { ::munmap(data, size); }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
};

}  // namespace

std::shared_ptr<Buffer> huge_page_buffer(size_t bytes) {
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t size = (std::max<size_t>(bytes, 1) + kHuge - 1) / kHuge * kHuge;
  // Over-allocate by one huge page so the start can be aligned to it (khugepaged and the fault
  // path only use 2 MiB pages for 2 MiB-aligned ranges), then give back the unaligned ends.
  void* raw = ::mmap(nullptr, size + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED)
    throw_error(ErrorCode::io, "cannot map ", bytes, " bytes of memory (", std::strerror(errno), ")");
  auto* base = static_cast<char*>(raw);
  const auto addr = reinterpret_cast<uintptr_t>(base);
  const size_t head = (kHuge - addr % kHuge) % kHuge;
  if (head > 0) ::munmap(base, head);
  ::munmap(base + head + size, kHuge - head);
  void* data = base + head;
#if defined(MADV_HUGEPAGE)
  ::madvise(data, size, MADV_HUGEPAGE);  // advice only: without THP the pages are 4 KiB
#endif
  auto mapping = std::make_shared<Mapping>(data, size);
  return Buffer::borrow(data, bytes, mapping);
}

void read_file_ranges(const std::string& path, const std::vector<FileRange>& ranges) {
  size_t size = 0;
  const int fd = open_regular_file(path, size);
  for (const FileRange& r : ranges) {
    size_t done = 0;
    while (done < r.bytes) {
      const ssize_t n =
          ::pread(fd, static_cast<char*>(r.dst) + done, r.bytes - done, static_cast<off_t>(r.offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const int err = n < 0 ? errno : 0;
        ::close(fd);
        throw_error(ErrorCode::io, path, ": cannot read ", r.bytes, " bytes at offset ", r.offset, " (",
                    err ? std::strerror(err) : "end of file", ")");
      }
      done += static_cast<size_t>(n);
    }
  }
  ::close(fd);
}

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
  auto mapping = std::make_shared<Mapping>(data, size);
  return Buffer::borrow(data, size, mapping);
}

}  // namespace mamba::io
