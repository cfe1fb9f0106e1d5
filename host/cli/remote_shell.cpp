#include "cli/remote_shell.hpp"

// libedit's readline-compatible interface (BSD licence; GNU readline is GPL).
#include <editline/readline.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <sstream>

#include "admin/admin_client.hpp"
#include "cli/command_line.hpp"
#include "cli/commands.hpp"
#include "cli/exit_status.hpp"

namespace hotswap::cli {
namespace {

namespace fs = boost::filesystem;

// The shell's history file: read when the shell opens, written back when it
// closes, however it closes.
class HistoryFile {
 public:
  explicit HistoryFile(fs::path path) : path_(std::move(path)) {
    ::using_history();
    ::read_history(path_.c_str());  // a missing file is a first session, not an error
  }
  ~HistoryFile() { ::write_history(path_.c_str()); }
  HistoryFile(const HistoryFile&) = delete;
  HistoryFile& operator=(const HistoryFile&) = delete;

 private:
  fs::path path_;
};

// One line from the terminal (or stdin); nullopt at end of input.
std::optional<std::string> read_line(const char* prompt) {
  std::unique_ptr<char, decltype(&std::free)> raw(::readline(prompt), &std::free);
  if (!raw) return std::nullopt;
  return std::string(raw.get());
}

}  // namespace

int run_remote_shell(const fs::path& root) {
  host::AdminClient client(admin_socket_path(root));
  HistoryFile history(root / "run" / "remote_history");
  std::cout << "connected to the host at " << root.string() << "; 'help' lists commands, Ctrl-D leaves\n";
  while (std::optional<std::string> line = read_line("hotswap> ")) {
    std::string command;
    std::istringstream(*line) >> command;
    if (command.empty()) continue;
    ::add_history(line->c_str());
    if (command == "help") {
      std::cout << overview_help();
      continue;
    }
    if (command == "quit" || command == "exit") break;
    if (!is_admin_request(command)) {
      std::cout << "not an admin command here: " << command << "\n";
      continue;
    }
    try {
      std::optional<Invocation> invocation = parse_shell_line(*line, std::cout);
      if (!invocation) continue;  // it asked for help, which has been printed
      send_admin_request(client, *invocation, admin_request_for(*invocation));
      if (command == "stop") break;
    } catch (const UsageError& e) {
      std::cout << e.what() << "\n";
    }
  }
  return kOk;
}

}  // namespace hotswap::cli
