#include "core/module_probe.hpp"

#include <dlfcn.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "os/fd.hpp"
#include "os/signal_name.hpp"

extern char** environ;

namespace hotswap::host {
namespace {

namespace fs = boost::filesystem;
using Clock = std::chrono::steady_clock;

// A report is one short line; anything longer is cut.
constexpr size_t kMaxReportBytes = 4096;
constexpr LoadError::Kind kLastKind = LoadError::Kind::VersionMismatch;

std::vector<std::string> current_environment() {
  std::vector<std::string> env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) env.emplace_back(*entry);
  return env;
}

// The child, and whether it has been reaped: killed and reaped on every path
// out, so that no probe leaves a process or a zombie behind.
class Child {
 public:
  Child(os::OsSysCalls& os, pid_t pid) : os_(os), pid_(pid) {}
  ~Child() {
    if (!reaped_) {
      os_.kill(pid_, SIGKILL);
      wait();
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  int wait() {
    int status = 0;
    for (;;) {
      const os::SysCallResult<pid_t> reaped = os_.waitpid(pid_, status, 0);
      if (reaped.ok() || reaped.error != EINTR) break;
    }
    reaped_ = true;
    return status;
  }
  void kill() { os_.kill(pid_, SIGKILL); }

 private:
  os::OsSysCalls& os_;
  pid_t pid_;
  bool reaped_ = false;
};

// Reads what is there without blocking; false once the writer is gone.
bool read_available(os::OsSysCalls& os, int fd, std::string& report) {
  char buffer[512];
  const os::SysCallSizeResult got = os.read(fd, buffer, sizeof buffer);
  if (!got.ok()) return got.error == EINTR || got.error == EAGAIN;
  if (got.value == 0) return false;
  const size_t room = kMaxReportBytes - std::min(kMaxReportBytes, report.size());
  report.append(buffer, std::min(room, static_cast<size_t>(got.value)));
  return true;
}

std::string one_line(std::string text) {
  for (char& c : text)
    if (c == '\n' || c == '\r') c = ' ';
  return text;
}

}  // namespace

ChildProcessProbe::ChildProcessProbe(fs::path program, std::chrono::milliseconds timeout, os::OsSysCalls& os)
    : program_(std::move(program)), timeout_(timeout), os_(os) {}

std::shared_ptr<ChildProcessProbe> ChildProcessProbe::of_this_program(std::chrono::milliseconds timeout) {
  // Not the path it names: that file may have been replaced since the host
  // started, and the probe must run the host's own code. The child (a clone
  // of this process until it execs) resolves the link to this same binary.
  return std::make_shared<ChildProcessProbe>("/proc/self/exe", timeout);
}

void ChildProcessProbe::probe(int library_fd, const fs::path& source, const LoadExpectation& expect) {
  const std::string display = source.string();
  auto refuse = [&display](const std::string& what) {
    throw LoadError(LoadError::Kind::ProbeFailed, "refusing " + display + ": loading it in a probe process, " + what);
  };
  int pair[2] = {-1, -1};
  if (const os::SysCallIntResult made = os_.socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair); !made.ok())
    refuse("could not make its report socket: " + made.error_text());
  os::Fd report(pair[0], os_);
  os::Fd child_report(pair[1], os_);

  os::SpawnRequest request;
  request.path = program_.string();
  request.argv = {program_.string(), kProbeModuleCommand, "--fd", std::to_string(library_fd), "--report-fd",
                  std::to_string(child_report.get()), "--source", display};
  if (!expect.name.empty()) request.argv.insert(request.argv.end(), {"--name", expect.name});
  if (!expect.version.empty()) request.argv.insert(request.argv.end(), {"--version", expect.version});
  request.env = current_environment();
  // The same numbers in the child: a dup2 onto itself clears close-on-exec.
  request.dup_fds = {{library_fd, library_fd}, {child_report.get(), child_report.get()}};
  const os::SysCallResult<pid_t> spawned = os_.spawn(request);
  if (!spawned.ok()) refuse("could not start " + program_.string() + ": " + spawned.error_text());
  Child child(os_, spawned.value);
  child_report.close();  // the parent's copy: the report reads end-of-file once the child is gone

  const os::SysCallIntResult pidfd_opened = os_.pidfd_open(child.pid());
  if (!pidfd_opened.ok()) refuse("could not watch the child: pidfd_open failed: " + pidfd_opened.error_text());
  const os::Fd pidfd(pidfd_opened, os_);

  std::string text;
  bool report_open = true;
  bool exited = false;
  const Clock::time_point deadline = Clock::now() + timeout_;
  while (!exited) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) break;
    pollfd fds[2] = {{pidfd.get(), POLLIN, 0}, {report_open ? report.get() : -1, POLLIN, 0}};
    const os::SysCallIntResult ready = os_.poll(fds, 2, static_cast<int>(std::min<int64_t>(left.count(), 60000)));
    if (!ready.ok() && ready.error != EINTR) refuse("could not wait for the child: poll failed: " + ready.error_text());
    if (!ready.ok() || ready.value == 0) continue;
    if (report_open && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0)
      report_open = read_available(os_, report.get(), text);
    if ((fds[0].revents & POLLIN) != 0) exited = true;
  }
  if (!exited) {
    child.kill();
    child.wait();
    refuse("it did not finish within " + std::to_string(timeout_.count()) +
           " ms and was killed (a static constructor or the entry symbol never returns?)");
  }
  const int status = child.wait();
  while (report_open && text.size() < kMaxReportBytes) {
    pollfd fd{report.get(), POLLIN, 0};
    if (!os_.poll(&fd, 1, 0).ok() || (fd.revents & (POLLIN | POLLHUP | POLLERR)) == 0) break;
    report_open = read_available(os_, report.get(), text);
  }

  if (WIFSIGNALED(status)) refuse("the child was killed by " + os::signal_name(WTERMSIG(status)));
  const std::string line = text.substr(0, text.find('\n'));
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && line == "ok") return;
  if (line.rfind("error ", 0) == 0) {
    // "error <kind> <message>": the child's own LoadError, passed on with its kind.
    const std::string rest = line.substr(6);
    const size_t space = rest.find(' ');
    int kind = -1;
    try {
      kind = std::stoi(rest.substr(0, space));
    } catch (const std::exception&) {
    }
    const std::string message = space == std::string::npos ? rest : rest.substr(space + 1);
    if (kind >= 0 && kind <= static_cast<int>(kLastKind) && static_cast<LoadError::Kind>(kind) != LoadError::Kind::ProbeFailed)
      throw LoadError(static_cast<LoadError::Kind>(kind), message);
    refuse(message);
  }
  if (WIFEXITED(status))
    refuse("the child exited with status " + std::to_string(WEXITSTATUS(status)) +
           " before reporting (a static constructor called exit()?)");
  refuse("the child ended with wait status " + std::to_string(status));
}

void close_inherited_fds(int keep_a, int keep_b) noexcept {
  const int low = std::min(keep_a, keep_b);
  const int high = std::max(keep_a, keep_b);
  const auto close_between = [](int first, int last) {
    first = std::max(first, 3);
    if (first <= last) ::close_range(static_cast<unsigned>(first), static_cast<unsigned>(last), 0);
  };
  close_between(3, low - 1);
  close_between(low + 1, high - 1);
  ::close_range(static_cast<unsigned>(std::max(high + 1, 3)), ~0U, 0);
}

int run_module_probe_child(int library_fd, int report_fd, const std::string& source, const LoadExpectation& expect) {
  close_inherited_fds(library_fd, report_fd);
  os::OsSysCalls& os = os::real_os_sys_calls();
  std::string report;
  int status = 1;
  try {
    os::DlResult<void*> opened;
    try {
      opened = os.dlopen("/proc/self/fd/" + std::to_string(library_fd), RTLD_NOW | RTLD_LOCAL);
    } catch (const std::exception& e) {
      throw LoadError(LoadError::Kind::ProbeFailed, "a static constructor threw " + std::string(e.what()));
    } catch (...) {
      throw LoadError(LoadError::Kind::ProbeFailed, "a static constructor threw an exception that is not a std::exception");
    }
    if (!opened.ok()) throw dlopen_failure(source, opened.error);
    read_module_descriptor(os, opened.value, source, expect);
    report = "ok\n";
    status = 0;
  } catch (const LoadError& e) {
    report = "error " + std::to_string(static_cast<int>(e.kind())) + " " + one_line(e.what()) + "\n";
  } catch (const std::exception& e) {
    report = "error " + std::to_string(static_cast<int>(LoadError::Kind::ProbeFailed)) + " " + one_line(e.what()) + "\n";
  }
  for (size_t done = 0; done < report.size();) {
    const os::SysCallSizeResult put = os.write(report_fd, report.data() + done, report.size() - done);
    if (!put.ok() && put.error == EINTR) continue;
    if (!put.ok()) return 2;
    done += static_cast<size_t>(put.value);
  }
  return status;
}

}  // namespace hotswap::host
