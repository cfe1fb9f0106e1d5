// `hotswap __probe-module`: the child side of the loader's probe
// (core/module_probe.hpp). Hidden: not listed by --help, run only by a host
// that is about to load a library of unknown behaviour. It loads the library
// from an inherited sealed memory file, checks its descriptor, reports one
// line on the report descriptor and _exits without running any destructor.
#include "cli/probe_module_command.hpp"

#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>

#include "cli/exit_status.hpp"
#include "core/module_probe.hpp"

namespace hotswap::cli {
namespace {

std::optional<int> parse_fd(const std::string& text) {
  if (text.empty() || text.size() > 9 || text.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  return std::stoi(text);
}

}  // namespace

bool is_probe_module_command(const std::vector<std::string>& words) {
  return !words.empty() && words[0] == host::kProbeModuleCommand;
}

int run_probe_module_command(const std::vector<std::string>& words) {
  std::optional<int> library_fd;
  std::optional<int> report_fd;
  std::string source;
  host::LoadExpectation expect;
  for (size_t i = 1; i + 1 < words.size(); i += 2) {
    const std::string& option = words[i];
    const std::string& value = words[i + 1];
    if (option == "--fd") {
      library_fd = parse_fd(value);
    } else if (option == "--report-fd") {
      report_fd = parse_fd(value);
    } else if (option == "--source") {
      source = value;
    } else if (option == "--name") {
      expect.name = value;
    } else if (option == "--version") {
      expect.version = value;
    } else {
      std::cerr << "hotswap " << host::kProbeModuleCommand << ": unknown option " << option << "\n";
      return kUsage;
    }
  }
  if (!library_fd || !report_fd || source.empty() || words.size() % 2 == 0) {
    std::cerr << "hotswap " << host::kProbeModuleCommand
              << ": usage: --fd N --report-fd M --source PATH [--name NAME] [--version VERSION] (run by the host only)\n";
    return kUsage;
  }
  // _exit: the library may have failed half-way, holding locks that exit's destructors would wait for.
  ::_exit(host::run_module_probe_child(*library_fd, *report_fd, source, expect));
}

}  // namespace hotswap::cli
