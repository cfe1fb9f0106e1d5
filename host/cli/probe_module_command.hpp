// The hidden `hotswap __probe-module` command (probe_module_command.cpp).
#pragma once

#include <string>
#include <vector>

namespace hotswap::cli {

bool is_probe_module_command(const std::vector<std::string>& words);
// Never returns on a well-formed command line (it _exits); returns kUsage otherwise.
int run_probe_module_command(const std::vector<std::string>& words);

}  // namespace hotswap::cli
