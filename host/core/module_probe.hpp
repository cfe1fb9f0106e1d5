// Loads a library of unknown behaviour where its failure cannot hurt the host.
//
// dlopen runs the library's static constructors inside the host. One that
// throws leaves glibc's loader lock held (the exception unwinds through ld.so),
// and the host's next dlopen or dlclose deadlocks; one that crashes, calls
// exit() or never returns takes the host with it. The loader therefore hands
// every new library, as its sealed memory file, to a ModuleProbe before the
// host dlopens it.
//
// ChildProcessProbe runs `PROGRAM __probe-module` (the hotswap binary's hidden
// command, cli/probe_module_command.cpp) in a fresh process started with
// posix_spawn (never a plain fork of the threaded host), which inherits only
// the memory file and a report socket. The child dlopens the library, calls
// its entry symbol, checks the descriptor, reports one line and _exits. The
// parent waits up to a timeout and kills the child past it.
#pragma once

#include <boost/filesystem/path.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "core/library_loader.hpp"
#include "os/os_sys_calls.hpp"

namespace hotswap::host {

class ModuleProbe {
 public:
  virtual ~ModuleProbe() = default;
  // Loads the library held by `library_fd` (a sealed memory file, read from
  // `source`) away from this process. Returns when it loaded and its
  // descriptor is sound. Otherwise throws LoadError naming `source`: the kind
  // the loader itself would have reported (an unresolved symbol, a bad
  // descriptor...), or ProbeFailed with what happened ("a static constructor
  // threw ...", "killed by SIGSEGV ...", "exited with status 3 ...", "did not
  // finish within 10000 ms ...").
  virtual void probe(int library_fd, const boost::filesystem::path& source, const LoadExpectation& expect) = 0;
};

class ChildProcessProbe : public ModuleProbe {
 public:
  static constexpr std::chrono::milliseconds kDefaultTimeout{10000};

  // `program` is a hotswap binary (it must understand __probe-module).
  explicit ChildProcessProbe(boost::filesystem::path program, std::chrono::milliseconds timeout = kDefaultTimeout,
                             os::OsSysCalls& os = os::real_os_sys_calls());

  // The running program (/proc/self/exe, even if its file was replaced since): for the hotswap binary itself.
  static std::shared_ptr<ChildProcessProbe> of_this_program(std::chrono::milliseconds timeout = kDefaultTimeout);

  void probe(int library_fd, const boost::filesystem::path& source, const LoadExpectation& expect) override;

  const boost::filesystem::path& program() const { return program_; }
  std::chrono::milliseconds timeout() const { return timeout_; }

 private:
  boost::filesystem::path program_;
  std::chrono::milliseconds timeout_;
  os::OsSysCalls& os_;
};

// The hidden command: `PROGRAM __probe-module --fd N --report-fd M --source
// PATH [--name NAME] [--version VERSION]`. The child keeps the parent's
// descriptor numbers.
inline constexpr const char kProbeModuleCommand[] = "__probe-module";

// Closes every descriptor from 3 up except `keep_a` and `keep_b`. The probe
// child calls it first: a descriptor the host opened without close-on-exec
// (Asio's admin sockets, anything a module opened) must not reach the library
// under test, nor outlive the host in a process its constructor started.
void close_inherited_fds(int keep_a, int keep_b) noexcept;

// The child's side: closes inherited descriptors, dlopens /proc/self/fd/`library_fd`, reads and checks the
// descriptor, writes "ok\n" or "error <LoadError kind number> <message>\n" to
// `report_fd`. Returns the exit status to _exit with (0 only for "ok"). The
// caller must _exit, never exit(): a library that failed half-way may hold the
// loader lock that exit's destructors would wait for.
int run_module_probe_child(int library_fd, int report_fd, const std::string& source, const LoadExpectation& expect);

}  // namespace hotswap::host
