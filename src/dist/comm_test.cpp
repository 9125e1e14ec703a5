// The communicators against naive sums: 1..4 ranks as forked processes over the socket backend,
// odd sizes, f32 and doubles, in-place and aliased reduce-scatter / all-gather, broadcast from
// every root; then the failures: a rank that dies and a rank that never comes.
#include "dist/comm.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"

namespace mamba::dist {
namespace {

// Runs body(comm) in `n` forked ranks; returns each rank's exit status (0 = its checks held).
// A child reports a failed check or an exception on stderr and exits 1.
std::vector<int> run_ranks(int n, const std::function<void(Communicator&)>& body, double timeout_s = 20) {
  const int port = free_loopback_port();
  std::vector<pid_t> pids;
  for (int r = 0; r < n; ++r) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      int code = 0;
      try {
        DistConfig c;
        c.rank = r;
        c.size = n;
        c.port = port;
        c.timeout_s = timeout_s;
        const auto comm = make_communicator(c, Device::cpu);
        body(*comm);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "rank %d: %s\n", r, e.what());
        code = 2;
      }
      std::fflush(stderr);
      ::_exit(code != 0 ? code : (::testing::Test::HasFailure() ? 1 : 0));
    }
    pids.push_back(pid);
  }
  std::vector<int> status;
  for (pid_t pid : pids) {
    int st = 0;
    ::waitpid(pid, &st, 0);
    status.push_back(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
  }
  return status;
}

// Rank r's input element i: distinct per rank, sums that round (their order matters). The
// product is exact (a power of two), so FMA contraction cannot change a value between call sites.
float value_f32(int r, int64_t i) {
  static const float base[4] = {0.1f, 0.7f, 1.3f, 2.9f};
  return base[r % 4] + static_cast<float>(i % 97) * 0.0009765625f;
}
double value_f64(int r, int64_t i) {
  return 1.0 / (3.0 + r) + static_cast<double>(i) * 0x1p-20;
}

Tensor ranked_f32(int r, int64_t n) {
  Tensor t = Tensor::empty({n}, DType::f32);
  for (int64_t i = 0; i < n; ++i) t.f32()[i] = value_f32(r, i);
  return t;
}

// The naive sum in rank order, the order the socket backend promises.
float sum_f32(int n, int64_t i) {
  float s = value_f32(0, i);
  for (int r = 1; r < n; ++r) s += value_f32(r, i);
  return s;
}

TEST(Comm, SingleRankIsTheIdentity) {
  const auto comm = make_communicator({}, Device::cpu);
  EXPECT_EQ(comm->size(), 1);
  EXPECT_EQ(comm->name(), "single");
  Tensor t = ranked_f32(0, 5);
  comm->all_reduce_sum(t);
  EXPECT_EQ(t.f32()[3], value_f32(0, 3));
  Tensor out = Tensor::zeros({5});
  comm->all_gather(t, out);
  EXPECT_EQ(out.f32()[4], value_f32(0, 4));
  comm->reduce_scatter_sum(t, out);
  EXPECT_EQ(out.f32()[2], value_f32(0, 2));
  EXPECT_EQ(comm->all_reduce_sum(std::vector<double>{1.5, 2.5})[1], 2.5);
}

TEST(Comm, AllReduceMatchesTheNaiveSum) {
  for (int n = 1; n <= 4; ++n) {
    const std::vector<int> status = run_ranks(n, [n](Communicator& comm) {
      ASSERT_EQ(comm.size(), n);
      for (int64_t len : {1, 7, 1001, 100003}) {
        Tensor t = ranked_f32(comm.rank(), len);
        comm.all_reduce_sum(t);
        for (int64_t i = 0; i < len; ++i) ASSERT_EQ(t.f32()[i], sum_f32(n, i)) << "len " << len << " i " << i;
        // Doubles in 8-byte slots.
        Tensor d = Tensor::empty({len}, DType::i64);
        double* p = static_cast<double*>(d.raw());
        for (int64_t i = 0; i < len; ++i) p[i] = value_f64(comm.rank(), i);
        comm.all_reduce_sum(d);
        for (int64_t i = 0; i < len; i += 13) {
          double want = value_f64(0, i);
          for (int r = 1; r < n; ++r) want += value_f64(r, i);
          ASSERT_EQ(p[i], want) << "len " << len << " i " << i;
        }
      }
      const std::vector<double> v =
          comm.all_reduce_sum(std::vector<double>{1.0, static_cast<double>(comm.rank())});
      ASSERT_EQ(v[0], n);
      ASSERT_EQ(v[1], n * (n - 1) / 2);
    });
    EXPECT_EQ(status, std::vector<int>(static_cast<size_t>(n), 0)) << n << " ranks";
  }
}

TEST(Comm, ReduceScatterAllGatherAndBroadcast) {
  for (int n = 1; n <= 4; ++n) {
    const std::vector<int> status = run_ranks(n, [n](Communicator& comm) {
      const int r = comm.rank();
      for (int64_t part : {1, 3, 4099}) {
        // Reduce-scatter into a separate tensor, then in place (out = my slice of in).
        const Tensor in = ranked_f32(r, part * n);
        Tensor out = Tensor::zeros({part});
        comm.reduce_scatter_sum(in, out);
        for (int64_t i = 0; i < part; ++i) ASSERT_EQ(out.f32()[i], sum_f32(n, r * part + i)) << i;
        Tensor flat = ranked_f32(r, part * n);
        Tensor mine = flat.slice(0, r * part, (r + 1) * part);
        comm.reduce_scatter_sum(flat, mine);
        for (int64_t i = 0; i < part; ++i) ASSERT_EQ(flat.f32()[r * part + i], sum_f32(n, r * part + i)) << i;
        // All-gather of each rank's shard, separate and in place.
        Tensor shard = Tensor::empty({part});
        for (int64_t i = 0; i < part; ++i) shard.f32()[i] = value_f32(r, i);
        Tensor full = Tensor::zeros({part * n});
        comm.all_gather(shard, full);
        for (int q = 0; q < n; ++q)
          for (int64_t i = 0; i < part; ++i)
            ASSERT_EQ(full.f32()[q * part + i], value_f32(q, i)) << q << " " << i;
        Tensor buf = Tensor::zeros({part * n});
        Tensor slot = buf.slice(0, r * part, (r + 1) * part);
        slot.copy_from(shard);
        comm.all_gather(slot, buf);
        for (int q = 0; q < n; ++q) ASSERT_EQ(buf.f32()[q * part + part - 1], value_f32(q, part - 1)) << q;
      }
      for (int root = 0; root < n; ++root) {
        Tensor t = ranked_f32(r, 11);
        comm.broadcast(t, root);
        for (int64_t i = 0; i < 11; ++i) ASSERT_EQ(t.f32()[i], value_f32(root, i)) << "root " << root;
      }
      comm.barrier();
    });
    EXPECT_EQ(status, std::vector<int>(static_cast<size_t>(n), 0)) << n << " ranks";
  }
}

TEST(Comm, MismatchedSizesAreAnErrorNotAHang) {
  const std::vector<int> status = run_ranks(2, [](Communicator& comm) {
    Tensor t = Tensor::zeros({comm.rank() == 0 ? 4 : 5});
    try {
      comm.all_reduce_sum(t);
    } catch (const Error& e) {
      std::fprintf(stderr, "rank %d: %s\n", comm.rank(), e.what());
      ::_exit(3);
    }
  });
  EXPECT_EQ(status[0], 3);  // rank 0 sees 20 bytes where it expected 16
}

TEST(Comm, ADeadRankIsNamedByThePeersError) {
  const std::vector<int> status = run_ranks(3, [](Communicator& comm) {
    if (comm.rank() == 2) ::_exit(9);  // dies before the collective
    Tensor t = Tensor::zeros({8});
    try {
      comm.all_reduce_sum(t);
    } catch (const Error& e) {
      const std::string what = e.what();
      const bool named = what.find(comm.rank() == 0 ? "lost rank 2" : "lost rank 0") != std::string::npos;
      ::_exit(named ? 3 : 4);
    }
  });
  EXPECT_EQ(status, (std::vector<int>{3, 3, 9}));
}

TEST(Comm, AMissingRankTimesOutWithItsNumber) {
  DistConfig c;
  c.rank = 0;
  c.size = 3;
  c.port = free_loopback_port();
  c.timeout_s = 0.2;
  try {
    make_communicator(c, Device::cpu);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("first missing: rank 1"), std::string::npos) << e.what();
  }
  c.rank = 3;
  EXPECT_THROW(make_communicator(c, Device::cpu), Error);
  c.rank = 0;
  c.backend = "nccl";
  EXPECT_THROW(make_communicator(c, Device::cpu), Error);  // needs a CUDA build (or, in one, a GPU)
}

}  // namespace
}  // namespace mamba::dist
