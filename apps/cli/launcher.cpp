// The distributed environment and the one-host launcher (see launcher.h). Linux: the binary and
// its arguments are re-read from /proc/self, so every rank runs exactly the command given.
#include "launcher.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <thread>
#include <vector>

namespace mambacpp::cli {
namespace {

std::optional<int> env_int(const char* name, int lo) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x < lo || x > 1 << 20)
    throw_error(ErrorCode::invalid_argument, name, ": expected an integer >= ", lo, ", found '", v, "'");
  return static_cast<int>(x);
}

std::vector<std::string> own_arguments() {
  const std::string raw = read_file("/proc/self/cmdline");
  std::vector<std::string> args;
  size_t start = 0;
  for (size_t i = 0; i < raw.size(); ++i)
    if (raw[i] == '\0') {
      args.push_back(raw.substr(start, i - start));
      start = i + 1;
    }
  return args;
}

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

}  // namespace

std::optional<dist::DistConfig> rank_from_env() {
  dist::DistConfig c;
  std::optional<int> rank = env_int("MAMBACPP_RANK", 0), size = env_int("MAMBACPP_WORLD_SIZE", 1),
                     local = env_int("MAMBACPP_LOCAL_RANK", 0);
  const char* rank_name = "MAMBACPP_RANK";
  if (!rank) {
    rank = env_int("OMPI_COMM_WORLD_RANK", 0);
    size = env_int("OMPI_COMM_WORLD_SIZE", 1);
    local = env_int("OMPI_COMM_WORLD_LOCAL_RANK", 0);
    rank_name = "OMPI_COMM_WORLD_RANK";
  }
  if (!rank) return std::nullopt;
  if (!size) throw_error(ErrorCode::invalid_argument, rank_name, " is set but the world size is not");
  if (*rank >= *size)
    throw_error(ErrorCode::invalid_argument, rank_name, ": rank ", *rank, " is not below the world size ",
                *size);
  c.rank = *rank;
  c.size = *size;
  c.local_rank = local.value_or(0);
  if (const char* addr = std::getenv("MASTER_ADDR"); addr && *addr) c.addr = addr;
  if (const std::optional<int> port = env_int("MASTER_PORT", 1)) c.port = *port;
  if (const std::optional<int> t = env_int("MAMBACPP_DIST_TIMEOUT", 1)) c.timeout_s = *t;
  return c;
}

int launch_ranks(int n, const std::string& what) {
  const std::vector<std::string> args = own_arguments();
  const std::optional<int> fixed_port = env_int("MASTER_PORT", 1);
  const std::string port = std::to_string(fixed_port ? *fixed_port : dist::free_loopback_port());
  std::fflush(stdout);
  std::fflush(stderr);
  std::map<pid_t, int> ranks;  // running ranks
  for (int r = 0; r < n; ++r) {
    const pid_t pid = ::fork();
    if (pid < 0) throw_error(ErrorCode::io, what, ": fork failed for rank ", r);
    if (pid == 0) {
      const std::string rank = std::to_string(r), size = std::to_string(n);
      ::setenv("MAMBACPP_RANK", rank.c_str(), 1);
      ::setenv("MAMBACPP_WORLD_SIZE", size.c_str(), 1);
      ::setenv("MAMBACPP_LOCAL_RANK", rank.c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", port.c_str(), 1);
      std::vector<char*> argv;
      for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv("/proc/self/exe", argv.data());
      std::fprintf(stderr, "error: %s: rank %d: cannot run /proc/self/exe\n", what.c_str(), r);
      ::_exit(127);
    }
    ranks[pid] = r;
  }
  int failed_rank = -1, failed_status = 0;
  auto stop_others = [&]() {
    for (const auto& [pid, r] : ranks) ::kill(pid, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!ranks.empty()) {
      int st = 0;
      const pid_t pid = ::waitpid(-1, &st, WNOHANG);
      if (pid > 0) {
        ranks.erase(pid);
        continue;
      }
      if (pid < 0) break;
      if (std::chrono::steady_clock::now() > deadline)
        for (const auto& [p, r] : ranks) ::kill(p, SIGKILL);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  };
  while (!ranks.empty()) {
    int st = 0;
    const pid_t pid = ::waitpid(-1, &st, 0);
    if (pid < 0) break;
    const auto it = ranks.find(pid);
    if (it == ranks.end()) continue;
    const int r = it->second;
    ranks.erase(it);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) continue;
    failed_rank = r;
    failed_status = st;
    // A rank's death makes its peers fail too ("lost rank K"), and a peer may be reaped first: the
    // ranks that end within the next half second are collected, and one killed by a signal (the
    // likelier cause) is named over one that exited with an error.
    const auto grace = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
    while (!ranks.empty() && std::chrono::steady_clock::now() < grace && !WIFSIGNALED(failed_status)) {
      int st2 = 0;
      const pid_t p2 = ::waitpid(-1, &st2, WNOHANG);
      if (p2 <= 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        continue;
      }
      const auto it2 = ranks.find(p2);
      if (it2 == ranks.end()) continue;
      if (WIFSIGNALED(st2)) {
        failed_rank = it2->second;
        failed_status = st2;
      }
      ranks.erase(it2);
    }
    stop_others();
  }
  if (failed_rank < 0) return 0;
  std::fprintf(stderr, "error: %s: rank %d of %d %s; the other ranks were stopped\n", what.c_str(),
               failed_rank, n, describe_status(failed_status).c_str());
  return 1;
}

}  // namespace mambacpp::cli
