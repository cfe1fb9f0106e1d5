// The `hotswap` command: runs a host (start, daemon) and talks to a running one
// over its admin socket (everything else). `hotswap --help` lists the commands;
// host/README.md documents them, their output and their exit statuses.
//   command_line.*   the grammar (CLI11): commands, operands, options
//   commands.*       what each command does; admin requests and offline fallbacks
//   reply_printer.*  how replies and upgrade events are shown
//   run_host.*       start and daemon
//   remote_shell.*   the interactive admin shell (libedit)
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "admin/admin_client.hpp"
#include "cli/command_line.hpp"
#include "cli/commands.hpp"
#include "cli/exit_status.hpp"
#include "cli/probe_module_command.hpp"
#include "cli/run_host.hpp"
#include "release/runtime_config.hpp"

namespace {

// A process started with fd 0, 1 or 2 closed would get its first socket or
// file there: the host would write its log into a client's connection, and a
// client's status output would go to the host. /dev/null takes each closed one
// before anything else is opened. Returns false when that is impossible.
bool open_missing_standard_descriptors() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    // The lowest free descriptor is `fd`, as the ones below it are open.
    int opened = ::open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
    if (opened != fd) return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace hotswap::cli;
  if (!open_missing_standard_descriptors()) return kFailed;
  std::vector<std::string> words(argv + 1, argv + argc);
  if (words.empty()) {
    std::cerr << overview_help();
    return kUsage;
  }
  if (is_probe_module_command(words)) return run_probe_module_command(words);  // the loader's probe child
  if (std::optional<int> status = run_handover_target_command(words)) return *status;  // a handover's new process
  if (std::optional<int> status = run_rehearsal_target_command(words)) return *status;  // a spawned rehearsal
  const std::string prefix = words[0][0] == '-' ? "hotswap: " : "hotswap " + words[0] + ": ";
  try {
    std::optional<Invocation> invocation = parse_command_line(words, std::cout);
    if (!invocation) return kOk;  // help was asked for and printed
    return run_command(*invocation);
  } catch (const UsageError& e) {
    std::cerr << prefix << e.what() << "\n";
    return kUsage;
  } catch (const hotswap::host::NotRunning& e) {
    std::cerr << prefix << e.what() << "\n";
    return kNotRunning;
  } catch (const hotswap::host::ConfigError& e) {
    std::cerr << prefix << e.what() << "\n";
    return kConfig;
  } catch (const std::exception& e) {
    std::cerr << prefix << e.what() << "\n";
    return kFailed;
  }
}
