// Running a host process: `hotswap start` in the foreground, logging to
// stderr, and `hotswap daemon`, forked into the background with its log in
// ROOT/log/hotswap.log. Both return the host's exit status (exit_status.hpp).
#pragma once

#include <boost/filesystem/path.hpp>
#include <optional>
#include <string>
#include <vector>

namespace hotswap::cli {

// Boots the permanent release and serves until stopped. `log_level` (may be
// empty) overrides runtime.json's.
int run_host_in_foreground(const boost::filesystem::path& root, const std::string& log_level);

// Forks a host into its own session and returns once it answers on the admin
// socket (kOk), or with the host's own exit status when it fails to boot.
int run_host_as_daemon(const boost::filesystem::path& root, const std::string& log_level);

// `hotswap handover-target --root ROOT --version VSN --fd N`: the new process
// of a blue-green handover, started by the running host with the handover
// socket at fd N (handover/handover_green.hpp). nullopt when `words` is
// another command; otherwise the exit status.
std::optional<int> run_handover_target_command(const std::vector<std::string>& words);

// `hotswap rehearsal-target --root ROOT --from VSN --to VSN --input-fd N
// --report-fd M`: the child of a spawned live rehearsal, started by the
// running host with the exported states at fd N and its report pipe at fd M
// (upgrade/rehearsal.hpp). nullopt when `words` is another command; otherwise
// it never returns, but for a usage error (its exit status).
std::optional<int> run_rehearsal_target_command(const std::vector<std::string>& words);

}  // namespace hotswap::cli
