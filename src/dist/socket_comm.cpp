// The socket communicator (see comm.h): TCP connections from every rank to rank 0. Each message
// carries its byte count, so ranks whose collectives got out of step fail with a message
// instead of mixing data. Rank 0 adds in rank order, which makes every result independent of
// which rank arrived first. A rank that dies closes its socket: its peers' next read fails with
// an Error naming it, and the launcher (apps/cli) ends the others.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "core/error.h"
#include "dist/comm.h"

namespace mamba::dist {
namespace {

using Clock = std::chrono::steady_clock;

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd, o.fd);
    return *this;
  }
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

bool is_sum_dtype(DType d) {
  return d == DType::f32 || d == DType::i64;
}

void add_into(void* acc, const void* x, DType dtype, int64_t n) {
  if (dtype == DType::f32) {
    float* a = static_cast<float*>(acc);
    const float* b = static_cast<const float*>(x);
    for (int64_t i = 0; i < n; ++i) a[i] += b[i];
  } else {  // 8-byte slots holding doubles
    double* a = static_cast<double*>(acc);
    const double* b = static_cast<const double*>(x);
    for (int64_t i = 0; i < n; ++i) a[i] += b[i];
  }
}

// A contiguous host view of `t` (itself when it is one), written back by finish().
class HostStage {
public:
  explicit HostStage(const Tensor& t) {
    direct_ = t.device() == Device::cpu && t.is_contiguous();
    host_ = direct_ ? t : t.to(Device::cpu).contiguous();
  }
  void* data() const { return host_.raw(); }
  size_t bytes() const { return host_.nbytes(); }
  void finish(Tensor& dst) {
    if (!direct_) dst.copy_from(host_);
  }

private:
  Tensor host_;
  bool direct_ = false;
};

class SocketCommunicator final : public Communicator {
public:
  explicit SocketCommunicator(const DistConfig& c) : rank_(c.rank), size_(c.size), where_(describe(c)) {
    if (rank_ == 0)
      accept_peers(c);
    else
      connect_root(c);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "socket"; }

  void all_reduce_sum(Tensor& t) override {
    check_sum(t, "all_reduce_sum");
    HostStage h(t);
    if (rank_ == 0) {
      std::vector<char> buf(h.bytes());
      for (int r = 1; r < size_; ++r) {
        recv_msg(r, buf.data(), buf.size());
        add_into(h.data(), buf.data(), t.dtype(), t.numel());
      }
      for (int r = 1; r < size_; ++r) send_msg(r, h.data(), h.bytes());
    } else {
      send_msg(0, h.data(), h.bytes());
      recv_msg(0, h.data(), h.bytes());
    }
    h.finish(t);
  }

  void reduce_scatter_sum(const Tensor& in, Tensor& out) override {
    check_sum(in, "reduce_scatter_sum");
    if (out.dtype() != in.dtype() || in.numel() != out.numel() * size_)
      throw_error(ErrorCode::shape, "reduce_scatter_sum: in has ", in.numel(), " ", dtype_name(in.dtype()),
                  " elements, expected ", size_, " x out's ", out.numel(), " ", dtype_name(out.dtype()));
    const Tensor in_host = in.to(Device::cpu).contiguous().copy();  // out may alias in
    const size_t part = out.nbytes();
    Tensor mine = Tensor::empty({out.numel()}, out.dtype());
    if (rank_ == 0) {
      std::vector<char> buf(in_host.nbytes());
      for (int r = 1; r < size_; ++r) {
        recv_msg(r, buf.data(), buf.size());
        add_into(in_host.raw(), buf.data(), in.dtype(), in.numel());
      }
      const char* sum = static_cast<const char*>(in_host.raw());
      for (int r = 1; r < size_; ++r) send_msg(r, sum + part * r, part);
      std::memcpy(mine.raw(), sum, part);
    } else {
      send_msg(0, in_host.raw(), in_host.nbytes());
      recv_msg(0, mine.raw(), part);
    }
    out.copy_from(mine.view(out.shape()));
  }

  void all_gather(const Tensor& in, Tensor& out) override {
    if (out.dtype() != in.dtype() || out.numel() != in.numel() * size_)
      throw_error(ErrorCode::shape, "all_gather: out has ", out.numel(), " ", dtype_name(out.dtype()),
                  " elements, expected ", size_, " x in's ", in.numel(), " ", dtype_name(in.dtype()));
    const Tensor mine = in.to(Device::cpu).contiguous().copy();  // in may alias out
    Tensor full = Tensor::empty({out.numel()}, out.dtype());
    const size_t part = mine.nbytes();
    char* f = static_cast<char*>(full.raw());
    if (rank_ == 0) {
      std::memcpy(f, mine.raw(), part);
      for (int r = 1; r < size_; ++r) recv_msg(r, f + part * r, part);
      for (int r = 1; r < size_; ++r) send_msg(r, f, full.nbytes());
    } else {
      send_msg(0, mine.raw(), part);
      recv_msg(0, f, full.nbytes());
    }
    out.copy_from(full.view(out.shape()));
  }

  void broadcast(Tensor& t, int root) override {
    if (root < 0 || root >= size_)
      throw_error(ErrorCode::invalid_argument, "broadcast: root ", root, " of ", size_);
    HostStage h(t);
    if (rank_ == 0) {
      if (root != 0) recv_msg(root, h.data(), h.bytes());
      for (int r = 1; r < size_; ++r)
        if (r != root) send_msg(r, h.data(), h.bytes());
    } else if (rank_ == root) {
      send_msg(0, h.data(), h.bytes());
    } else {
      recv_msg(0, h.data(), h.bytes());
    }
    h.finish(t);
  }

  void barrier() override {
    char byte = 0;
    if (rank_ == 0) {
      for (int r = 1; r < size_; ++r) recv_msg(r, &byte, 1);
      for (int r = 1; r < size_; ++r) send_msg(r, &byte, 1);
    } else {
      send_msg(0, &byte, 1);
      recv_msg(0, &byte, 1);
    }
  }

private:
  static std::string describe(const DistConfig& c) { return c.addr + ":" + std::to_string(c.port); }

  void check_sum(const Tensor& t, const char* op) const {
    if (!is_sum_dtype(t.dtype()))
      throw_error(ErrorCode::dtype, op, ": expected f32 (or i64 slots holding doubles), found ",
                  dtype_name(t.dtype()));
  }

  int& peer(int r) { return fds_[static_cast<size_t>(rank_ == 0 ? r : 0)].fd; }

  // A rank's socket ended or failed: the error names the rank at the other end.
  [[noreturn]] void lost(int r, const char* what) const {
    throw_error(ErrorCode::io, "dist: rank ", rank_, " lost rank ", r, " (", what,
                "): the peer process exited or failed");
  }

  void write_all(int r, const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      const ssize_t k = ::send(peer(r), p, n, MSG_NOSIGNAL);
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) lost(r, std::strerror(errno));
      p += k;
      n -= static_cast<size_t>(k);
    }
  }
  void read_all(int r, void* data, size_t n) {
    char* p = static_cast<char*>(data);
    while (n > 0) {
      const ssize_t k = ::recv(peer(r), p, n, 0);
      if (k < 0 && errno == EINTR) continue;
      if (k == 0) lost(r, "connection closed");
      if (k < 0) lost(r, std::strerror(errno));
      p += k;
      n -= static_cast<size_t>(k);
    }
  }
  void send_msg(int r, const void* data, size_t n) {
    const uint64_t len = n;
    write_all(r, &len, sizeof len);
    write_all(r, data, n);
  }
  void recv_msg(int r, void* data, size_t n) {
    uint64_t len = 0;
    read_all(r, &len, sizeof len);
    if (len != n)
      throw_error(ErrorCode::io, "dist: rank ", rank_, " expected ", n, " bytes from rank ", r, ", found ",
                  len, " (the ranks' collectives are out of step)");
    read_all(r, data, n);
  }

  static sockaddr_in resolve(const DistConfig& c) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(c.port));
    if (inet_pton(AF_INET, c.addr.c_str(), &a.sin_addr) == 1) return a;
    addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_INET;
    if (getaddrinfo(c.addr.c_str(), nullptr, &hints, &res) != 0 || !res)
      throw_error(ErrorCode::io, "dist: cannot resolve the rendezvous address '", c.addr, "'");
    a.sin_addr = reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr;
    freeaddrinfo(res);
    return a;
  }

  static void no_delay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }

  void accept_peers(const DistConfig& c) {
    fds_.resize(static_cast<size_t>(size_));
    Fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (listener.fd < 0) throw_error(ErrorCode::io, "dist: socket(): ", std::strerror(errno));
    int one = 1;
    setsockopt(listener.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a = resolve(c);
    if (::bind(listener.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      throw_error(ErrorCode::io, "dist: rank 0 cannot listen on ", where_, ": ", std::strerror(errno),
                  " (another run on this port? set MASTER_PORT)");
    if (::listen(listener.fd, size_) != 0)
      throw_error(ErrorCode::io, "dist: listen(): ", std::strerror(errno));
    const auto deadline = Clock::now() + std::chrono::duration<double>(c.timeout_s);
    for (int joined = 1; joined < size_;) {
      const int left_ms = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
      pollfd p{listener.fd, POLLIN, 0};
      const int ready = left_ms > 0 ? ::poll(&p, 1, left_ms) : 0;
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0)
        throw_error(ErrorCode::io, "dist: rank 0 waited ", c.timeout_s, " s on ", where_, " for ",
                    size_ - joined, " of ", size_ - 1, " ranks (first missing: rank ", first_missing(), ")");
      Fd conn(::accept4(listener.fd, nullptr, nullptr, SOCK_CLOEXEC));
      if (conn.fd < 0) continue;
      no_delay(conn.fd);
      int32_t hello[2] = {-1, -1};  // {rank, size}
      size_t got = 0;
      while (got < sizeof hello) {
        const ssize_t k = ::recv(conn.fd, reinterpret_cast<char*>(hello) + got, sizeof hello - got, 0);
        if (k <= 0) break;
        got += static_cast<size_t>(k);
      }
      if (got != sizeof hello) continue;  // not one of ours
      if (hello[1] != size_ || hello[0] < 1 || hello[0] >= size_ ||
          fds_[static_cast<size_t>(hello[0])].fd >= 0)
        throw_error(ErrorCode::invalid_argument, "dist: rank 0 (of ", size_, ") got a hello from rank ",
                    hello[0], " of ", hello[1], " ranks (a duplicate rank or a different world size)");
      fds_[static_cast<size_t>(hello[0])] = std::move(conn);
      ++joined;
    }
  }

  int first_missing() const {
    for (int r = 1; r < size_; ++r)
      if (fds_[static_cast<size_t>(r)].fd < 0) return r;
    return -1;
  }

  void connect_root(const DistConfig& c) {
    fds_.resize(1);
    const sockaddr_in a = resolve(c);
    const auto deadline = Clock::now() + std::chrono::duration<double>(c.timeout_s);
    for (;;) {
      Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
      if (::connect(s.fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0) {
        no_delay(s.fd);
        fds_[0] = std::move(s);
        break;
      }
      if (Clock::now() > deadline)
        throw_error(ErrorCode::io, "dist: rank ", rank_, " could not reach rank 0 at ", where_, " within ",
                    c.timeout_s, " s: ", std::strerror(errno));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    const int32_t hello[2] = {rank_, size_};
    write_all(0, hello, sizeof hello);
  }

  int rank_, size_;
  std::string where_;
  std::vector<Fd> fds_;  // rank 0: one per peer (index = rank); others: [0] = rank 0
};

}  // namespace

std::unique_ptr<Communicator> make_socket_communicator(const DistConfig& config) {
  if (config.size < 1 || config.rank < 0 || config.rank >= config.size)
    throw_error(ErrorCode::invalid_argument, "dist: rank ", config.rank, " is not in [0, ", config.size, ")");
  return std::make_unique<SocketCommunicator>(config);
}

int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw_error(ErrorCode::io, "dist: cannot open a socket to find a free TCP port on 127.0.0.1");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  ::close(fd);
  if (!ok) throw_error(ErrorCode::io, "dist: cannot find a free TCP port on 127.0.0.1");
  return ntohs(a.sin_port);
}

}  // namespace mamba::dist
