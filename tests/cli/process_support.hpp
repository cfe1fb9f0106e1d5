// What the end-to-end tests of tests/cli share: running a command, and
// waiting for another process (the hotswap host) to reach a state.
#pragma once

#include <sys/wait.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <thread>

namespace hotswap::test {

struct Result {
  int code;  // the exit status; -1 when the command could not be run or did not exit
  std::string out;
};

// Runs a shell command line; captures stdout+stderr. Asserts nothing, so that
// a helper thread may call it; the test's main thread checks the Result.
inline Result run_shell(const std::string& command_line) {
  std::string cmd = command_line + " 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed: " + std::string(std::strerror(errno))};
  std::string out;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// Polls `condition`, the state of another process that tells us of no event
// we could wait on (its admin replies, its pid file), until it holds or
// `limit` has passed; returns whether it held. The pause between polls only
// spaces the requests: the outcome never depends on it. The limit is
// generous: reaching it means the condition will not come, not that the
// machine was slow.
inline bool eventually(const std::function<bool()>& condition,
                       std::chrono::seconds limit = std::chrono::seconds(60)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace hotswap::test
