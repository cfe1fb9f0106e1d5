// Running a host process: `hotswap start` in the foreground, logging to
// stderr, and `hotswap daemon`, forked into the background with its log in
// ROOT/log/hotswap.log. Both return the host's exit status (exit_status.hpp).
#pragma once

#include <boost/filesystem/path.hpp>
#include <string>

namespace hotswap::cli {

// Boots the permanent release and serves until stopped. `log_level` (may be
// empty) overrides runtime.json's.
int run_host_in_foreground(const boost::filesystem::path& root, const std::string& log_level);

// Forks a host into its own session and returns once it answers on the admin
// socket (kOk), or with the host's own exit status when it fails to boot.
int run_host_as_daemon(const boost::filesystem::path& root, const std::string& log_level);

}  // namespace hotswap::cli
