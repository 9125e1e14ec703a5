// Every CTest entry runs its gtest binary through this gate, so that skips are reported as
// "Skipped" without ever hiding a failure (CTest's SKIP_REGULAR_EXPRESSION would mark a run
// skipped whatever its exit status):
//   mamba_test_gate [--cuda] TEST [ARGS...]
// --cuda: without a usable CUDA device, print the reason and report skipped without running TEST.
// Otherwise TEST runs with its output passed through; its failure (non-zero exit, signal) is the
// gate's; a passing run in which gtest skipped a case ("[  SKIPPED ]", the reason printed above
// it) exits kSkip, which the test's SKIP_RETURN_CODE turns into "Skipped".
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "ops/device.h"

namespace {

constexpr int kSkip = 77;

}  // namespace

int main(int argc, char** argv) {
  int first = 1;
  const bool cuda = argc > 1 && std::strcmp(argv[1], "--cuda") == 0;
  if (cuda) ++first;
  if (argc <= first) {
    std::fprintf(stderr, "usage: mamba_test_gate [--cuda] TEST [ARGS...]\n");
    return 2;
  }
  std::string name = argv[first];
  name = name.substr(name.find_last_of('/') + 1);
  if (cuda && !mamba::ops::device_available(mamba::Device::cuda)) {
#if MAMBACPP_HAVE_CUDA
    const char* why = "no CUDA device on this machine";
#else
    const char* why = "built without CUDA (no nvcc when configured)";
#endif
    std::printf("%s skipped: %s; on a GPU machine scripts/gpu_check.sh runs it\n", name.c_str(), why);
    return kSkip;
  }
  int fds[2];
  if (pipe(fds) != 0) {
    std::perror("pipe");
    return 2;
  }
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    close(fds[0]);
    close(fds[1]);
    execv(argv[first], argv + first);
    std::perror(argv[first]);
    _exit(127);
  }
  close(fds[1]);
  bool skipped = false;
  std::string line;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) {
    fwrite(buf, 1, static_cast<size_t>(n), stdout);
    for (ssize_t i = 0; i < n; ++i) {
      if (buf[i] != '\n') {
        if (line.size() < 16) line.push_back(buf[i]);
        continue;
      }
      skipped = skipped || line.rfind("[  SKIPPED ]", 0) == 0;
      line.clear();
    }
  }
  close(fds[0]);
  std::fflush(stdout);
  int status = 0;
  if (waitpid(pid, &status, 0) < 0) {
    std::perror("waitpid");
    return 2;
  }
  if (WIFSIGNALED(status)) {
    std::printf("%s: killed by signal %d\n", name.c_str(), WTERMSIG(status));
    return 128 + WTERMSIG(status);
  }
  const int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
  if (rc != 0) return rc == kSkip ? 1 : rc;  // a failure is never reported as a skip
  return skipped ? kSkip : 0;
}
