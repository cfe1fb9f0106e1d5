#include "cli/command_line.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <iterator>
#include <ostream>
#include <sstream>

#include "cli/exit_status.hpp"

namespace hotswap::cli {
namespace {

struct CommandInfo {
  const char* name;
  const char* summary;
  bool admin_request;
};

const CommandInfo kCommands[] = {
    {"start", "run the host in the foreground on the permanent release", false},
    {"daemon", "run the host in the background (log: ROOT/log/hotswap.log)", false},
    {"stop", "stop the running host gracefully", true},
    {"remote", "interactive admin shell (line editing, history)", false},
    {"status", "release, modules, connections, last upgrade", true},
    {"reload", "upgrade to the newest unpacked, never failed release newer than the running one, or re-read the runtime config", true},
    {"unpack", "unpack a release tarball under ROOT/releases", true},
    {"plan", "print the steps of an upgrade or downgrade to VSN without doing it (offline: --from A --to B)", true},
    {"upgrade", "upgrade to the newer release VSN", true},
    {"downgrade", "downgrade to the older release VSN", true},
    {"releases", "list releases and their states", true},
    {"rehearse", "rehearse the upgrade or downgrade to VSN in a forked copy of the host; change nothing", true},
    {"make-permanent", "boot VSN on restart (it must be running)", true},
    {"remove", "delete an unpacked or old release", true},
    {"task", "run a module's task on a fresh instance of a release, serving no traffic", false},
    {"log-level", "set the running host's log level (trace..off)", true},
    {"check", "check a release folder or tarball before anything runs (no host needed)", false},
    {"trace", "record incoming events to a file (trace start FILE [--max-bytes N]), or stop (trace stop)", true},
};

const CommandInfo* find_command(const std::string& name) {
  auto it = std::find_if(std::begin(kCommands), std::end(kCommands),
                         [&](const CommandInfo& c) { return name == c.name; });
  return it == std::end(kCommands) ? nullptr : &*it;
}

const std::vector<std::string> kLogLevels = {"trace", "debug", "info", "warn", "error", "critical", "off"};

constexpr const char* kFooter =
    "ROOT is --root DIR, else $HOTSWAP_ROOT, else the current folder.\n"
    "`hotswap COMMAND --help` shows a command's operands and options.\n"
    "exit status: 0 ok, 1 failed (check: the release has problems), 64 usage, 65 refused by its live\n"
    "rehearsal (the host changed nothing), 69 no host running, 74 committed but not recorded in RELEASES.json,\n"
    "75 busy, 78 config error";

// One CLI11 application binding every command's operands and options to one
// Invocation. Built afresh for each parse: a parse leaves state in the App.
class Grammar {
 public:
  Grammar() : app_("run a hotswap host, or talk to the running one", "hotswap") {
    app_.require_subcommand(1);
    app_.footer(kFooter);
    for (const CommandInfo& c : kCommands) add_command(c);
  }

  std::string help() const { return app_.help(); }

  // `parse` is the call into CLI11 (App::parse with words or with a line).
  template <class Parse>
  std::optional<Invocation> run(Parse parse, const std::string& command, std::ostream& help_out) {
    try {
      parse(app_);
    } catch (const CLI::CallForHelp&) {
      help_out << app_.help();
      return std::nullopt;
    } catch (const CLI::ParseError& e) {
      std::string message = e.what();
      if (is_command(command)) message += " (hotswap " + command + " --help shows its usage)";
      throw UsageError(message);
    }
    invocation_.command = app_.get_subcommands().at(0)->get_name();
    return invocation_;
  }

 private:
  void add_command(const CommandInfo& c) {
    const std::string name = c.name;
    CLI::App* cmd = app_.add_subcommand(name, c.summary);
    cmd->add_option("--root", invocation_.root, "the release root folder")
        ->type_name("DIR")
        ->envname("HOTSWAP_ROOT");
    auto json_flag = [&] { cmd->add_flag("--json", invocation_.json, "print the result as JSON"); };
    auto version_operand = [&](const char* what) {
      cmd->add_option("VSN", invocation_.version, what)->required();
    };
    if (name == "start" || name == "daemon") {
      cmd->add_option("--log-level", invocation_.log_level, "log level, overriding runtime.json's")
          ->type_name("LEVEL")
          ->check(CLI::IsMember(kLogLevels));
    } else if (name == "status" || name == "reload" || name == "releases") {
      json_flag();
    } else if (name == "unpack") {
      cmd->add_option("FILE", invocation_.file, "a release tarball (FILE.tar.gz)")->required();
      json_flag();
    } else if (name == "plan") {
      cmd->add_option("VSN", invocation_.version, "a release version, planned by the running host");
      cmd->add_option("--from", invocation_.plan_from, "plan offline from this release (folder or tarball)")
          ->type_name("RELEASE");
      cmd->add_option("--to", invocation_.plan_to, "plan offline to this release (folder or tarball)")
          ->type_name("RELEASE");
      json_flag();
    } else if (name == "check") {
      cmd->add_option("RELEASE", invocation_.check_release, "a release folder or tarball")->required();
      cmd->add_option("--against", invocation_.check_against,
                      "also plan both ways between RELEASE and this release, and check the plans (repeatable)")
          ->type_name("OTHER")
          ->expected(1)
          ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
      json_flag();
    } else if (name == "downgrade" || name == "make-permanent" || name == "remove" || name == "rehearse") {
      version_operand("a release version");
      json_flag();
      if (name == "downgrade") {
        cmd->add_flag("--no-rehearse", invocation_.no_rehearse, "skip the live rehearsal of this downgrade");
        cmd->add_flag("--blue-green", invocation_.blue_green,
                      "hand over to a new process on the release even when the downgrade could be made in place");
      }
    } else if (name == "upgrade") {
      version_operand("the newer release version");
      cmd->add_option("--pre-task", invocation_.pre_task,
                      "run this task of the new code first; the upgrade goes ahead only if it succeeds")
          ->type_name("MODULE:TASK[:JSON]");
      cmd->add_flag("--no-rehearse", invocation_.no_rehearse, "skip the live rehearsal of this upgrade");
      cmd->add_flag("--blue-green", invocation_.blue_green,
                    "hand over to a new process on the release even when the upgrade could be made in place");
      json_flag();
    } else if (name == "task") {
      cmd->add_option("MODULE", invocation_.task_module, "the module")->required();
      cmd->add_option("NAME", invocation_.task_name, "the task's name")->required();
      cmd->add_option("JSON", invocation_.task_args, "the task's arguments");
      cmd->add_option("--release", invocation_.release, "the release whose code runs the task (default: the permanent one)")
          ->type_name("VSN");
      json_flag();
    } else if (name == "trace") {
      add_trace_operands(cmd);
      json_flag();
    } else if (name == "log-level") {
      cmd->add_option("LEVEL", invocation_.level, "trace, debug, info, warn, error, critical or off")
          ->required()
          ->check(CLI::IsMember(kLogLevels));
      json_flag();
    }
  }

  // trace start FILE [--max-bytes N] | trace stop (net/event_trace.hpp).
  void add_trace_operands(CLI::App* cmd) {
    cmd->add_option("ACTION", invocation_.trace_action, "start or stop")
        ->required()
        ->check(CLI::IsMember({"start", "stop"}));
    cmd->add_option("FILE", invocation_.file, "start: the trace file to write (newline-delimited JSON)");
    cmd->add_option("--max-bytes", invocation_.trace_max_bytes,
                    "start: largest trace file; recording stops there (default 64 MiB)")
        ->type_name("N")
        ->check(CLI::Range(uint64_t(4096), uint64_t(1) << 30));
  }

  CLI::App app_;
  Invocation invocation_;
};

}  // namespace

bool is_command(const std::string& name) { return find_command(name) != nullptr; }

bool is_admin_request(const std::string& command) {
  const CommandInfo* c = find_command(command);
  return c != nullptr && c->admin_request;
}

std::string overview_help() { return Grammar().help(); }

std::optional<Invocation> parse_command_line(const std::vector<std::string>& words, std::ostream& help_out) {
  const std::string first = words.empty() ? "" : words.front();
  if (first == "help") {
    help_out << overview_help();
    return std::nullopt;
  }
  // CLI11 would call an unknown command "an argument not expected"; say what it is.
  if (!first.empty() && first[0] != '-' && !is_command(first))
    throw UsageError("unknown command '" + first + "' (hotswap --help lists them)");
  return Grammar().run(
      [&](CLI::App& app) { app.parse(std::vector<std::string>(words.rbegin(), words.rend())); }, first,
      help_out);
}

std::optional<Invocation> parse_shell_line(const std::string& line, std::ostream& help_out) {
  std::string first;
  std::istringstream(line) >> first;
  return Grammar().run([&](CLI::App& app) { app.parse(line, false); }, first, help_out);
}

}  // namespace hotswap::cli
