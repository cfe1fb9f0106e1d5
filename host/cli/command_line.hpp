// The `hotswap` command line: every command with its operands and options,
// parsed with CLI11 into an Invocation. The remote shell parses its lines with
// the same grammar, so a command is spelled the same way in both places (and in
// the admin protocol: admin/admin_commands.cpp).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

namespace hotswap::cli {

// What one command line asks for. Only the fields that `command` takes are set.
struct Invocation {
  std::string command;      // as typed: "upgrade", "make-permanent", ...
  std::string root;         // --root DIR, else $HOTSWAP_ROOT; empty: the current folder
  bool json = false;        // --json: print the reply's result as JSON
  std::string log_level;    // start, daemon: --log-level LEVEL; empty: runtime.json's
  std::string version;      // plan, upgrade, downgrade, make-permanent, remove: VSN
  std::string file;         // unpack: FILE
  std::string level;        // log-level: LEVEL
  std::string pre_task;     // upgrade: --pre-task MODULE:TASK[:JSON]; empty: none
  std::string task_module;  // task: MODULE
  std::string task_name;    // task: NAME
  std::string task_args;    // task: JSON; empty: none
  std::string release;      // task: --release VSN; empty: the permanent release
  // check: RELEASE (a release folder or tarball) and --against OTHER...
  std::string check_release;
  std::vector<std::string> check_against;
  // plan --from RELEASE --to RELEASE (folders or tarballs): planned offline, no host
  std::string plan_from;
  std::string plan_to;
  // trace (net/event_trace.hpp): ACTION start|stop; start also takes FILE (in `file`)
  std::string trace_action;
  uint64_t trace_max_bytes = 0;  // trace start: --max-bytes N; 0: the host's default (64 MiB)
  bool no_rehearse = false;  // upgrade, downgrade: --no-rehearse (skip the live rehearsal)
  bool blue_green = false;   // upgrade, downgrade: --blue-green (hand over to a new process even if not needed)
};

// A name `hotswap` knows as a command.
bool is_command(const std::string& name);

// A command that is one request to the running host, so the remote shell
// offers it: every command but start, daemon, remote, task and check.
bool is_admin_request(const std::string& command);

// The whole command's help: every command with a line about it, and the exit statuses.
std::string overview_help();

// Parses the words after the program name. Returns nullopt when they ask for
// help (`--help`, `-h`, `help`, or `COMMAND --help`): the help has then been
// written to `help_out`. Throws UsageError naming what is wrong.
std::optional<Invocation> parse_command_line(const std::vector<std::string>& words, std::ostream& help_out);

// The same for one line of the remote shell; words are split as a shell
// would, so a quoted word may hold spaces.
std::optional<Invocation> parse_shell_line(const std::string& line, std::ostream& help_out);

}  // namespace hotswap::cli
