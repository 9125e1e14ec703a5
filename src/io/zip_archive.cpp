// torch.save's zip container (zip_archive.h).
#include "io/zip_archive.h"

#include <cstring>

#include "core/error.h"

namespace mamba::io {

// Printable, one-line, bounded: names from a hostile pickle go into error messages.
std::string printable(const std::string& s) {
  constexpr size_t kMaxStringInError = 120;
  std::string out;
  for (size_t i = 0; i < s.size() && i < kMaxStringInError; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (s.size() > kMaxStringInError) out += "...";
  return out;
}

void ZipArchive::bad(const std::string& what) const {
  throw_error(ErrorCode::parse, file_, ": zip archive: ", what);
}

void ZipArchive::parse() {
  constexpr size_t kEocd = 22;
  if (size_ >= 2 && data_[0] == 0x80 && data_[1] <= 5)
    throw_error(ErrorCode::unsupported, file_, ": ",
                "legacy torch.save format (a bare pickle, PyTorch < 1.6) is not supported; re-save it with "
                "torch.save in PyTorch >= 1.6 or convert it to safetensors");
  if (size_ < 4 || rd32(data_) != 0x04034b50)
    throw_error(ErrorCode::parse, file_, ": ", "not a zip archive (torch.save >= 1.6 writes one)");
  if (size_ < kEocd) bad("file is " + std::to_string(size_) + " bytes, too short for an end record");
  // The end-of-central-directory record: the last one within the 64 KiB comment window.
  size_t eocd = std::string::npos;
  const size_t lowest = size_ > kEocd + 0xffff ? size_ - kEocd - 0xffff : 0;
  for (size_t pos = size_ - kEocd + 1; pos-- > lowest;) {
    if (rd32(data_ + pos) == 0x06054b50 && pos + kEocd + rd16(data_ + pos + 20) <= size_) {
      eocd = pos;
      break;
    }
  }
  if (eocd == std::string::npos) bad("no end-of-central-directory record (truncated file?)");
  uint64_t count = rd16(data_ + eocd + 10);
  uint64_t cd_size = rd32(data_ + eocd + 12);
  uint64_t cd_offset = rd32(data_ + eocd + 16);
  if (eocd >= 20 && rd32(data_ + eocd - 20) == 0x07064b50) {  // zip64 locator
    const uint64_t eocd64 = rd64(data_ + eocd - 20 + 8);
    if (eocd64 > eocd - 20 || eocd - 20 - eocd64 < 56 || rd32(data_ + eocd64) != 0x06064b50)
      bad("bad zip64 end-of-central-directory record");
    count = rd64(data_ + eocd64 + 32);
    cd_size = rd64(data_ + eocd64 + 40);
    cd_offset = rd64(data_ + eocd64 + 48);
  }
  if (cd_offset > size_ || cd_size > size_ - cd_offset)
    bad("central directory runs past the end of the file");
  if (count > cd_size / 46) bad("central directory too small for its " + std::to_string(count) + " entries");

  const unsigned char* cd = data_ + cd_offset;
  size_t pos = 0;
  for (uint64_t i = 0; i < count; ++i) {
    if (cd_size - pos < 46 || rd32(cd + pos) != 0x02014b50) bad("bad central directory entry");
    const unsigned char* e = cd + pos;
    const uint16_t flags = rd16(e + 8), method = rd16(e + 10);
    uint64_t csize = rd32(e + 20), usize = rd32(e + 24);
    const size_t name_len = rd16(e + 28), extra_len = rd16(e + 30), comment_len = rd16(e + 32);
    uint64_t local = rd32(e + 42);
    if (cd_size - pos - 46 < name_len + extra_len + comment_len)
      bad("central directory entry runs past its end");
    const std::string name(reinterpret_cast<const char*>(e + 46), name_len);
    // zip64 extended information: the fields saturated above, in this order.
    const unsigned char* x = e + 46 + name_len;
    for (size_t xp = 0; xp + 4 <= extra_len;) {
      const uint16_t id = rd16(x + xp), len = rd16(x + xp + 2);
      if (xp + 4 + len > extra_len) bad("entry '" + printable(name) + "' has a malformed extra field");
      if (id == 0x0001) {
        size_t fp = xp + 4;
        const size_t end = xp + 4 + len;
        for (uint64_t* field : {&usize, &csize, &local}) {
          if (*field != 0xffffffffu) continue;
          if (fp + 8 > end) bad("entry '" + printable(name) + "' has a short zip64 field");
          *field = rd64(x + fp);
          fp += 8;
        }
      }
      xp += 4 + len;
    }
    pos += 46 + name_len + extra_len + comment_len;

    if (flags & 1) bad("entry '" + printable(name) + "' is encrypted");
    if (method != 0)
      bad("entry '" + printable(name) + "' is compressed (method " + std::to_string(method) +
          "); torch.save stores entries uncompressed");
    if (csize != usize)
      bad("stored entry '" + printable(name) + "' has different compressed and plain sizes");
    if (local > size_ || size_ - local < 30 || rd32(data_ + local) != 0x04034b50)
      bad("entry '" + printable(name) + "' has a bad local header offset");
    const size_t lname = rd16(data_ + local + 26), lextra = rd16(data_ + local + 28);
    const uint64_t begin = local + 30 + lname + lextra;
    if (lname != name_len || begin > size_ || std::memcmp(data_ + local + 30, name.data(), name_len) != 0)
      bad("entry '" + printable(name) + "' has a local header that does not match the central directory");
    if (usize > size_ - begin)
      bad("entry '" + printable(name) + "' (" + std::to_string(usize) +
          " bytes) runs past the end of the file");
    if (!entries_.emplace(name, ZipEntry{begin, usize}).second)
      bad("entry '" + printable(name) + "' appears twice");
    if (i == 0) {
      const size_t slash = name.find('/');
      if (slash == std::string::npos || slash == 0)
        bad("first entry '" + printable(name) + "' is not in a folder; not a torch.save archive");
      prefix_ = name.substr(0, slash);
    }
  }
  if (count == 0) bad("archive is empty");
}

}  // namespace mamba::io
