// What each `hotswap` command does once its command line is parsed
// (command_line.hpp): run a host (run_host.hpp), open the remote shell
// (remote_shell.hpp), run a release task, or send one request to the running
// host over its admin socket, falling back to the release folder for the
// commands that work without a host (unpack, releases, remove).
#pragma once

#include <boost/filesystem/path.hpp>
#include <nlohmann/json.hpp>

#include "admin/admin_client.hpp"
#include "cli/command_line.hpp"

namespace hotswap::cli {

// Runs the command and returns its exit status (exit_status.hpp). Throws
// UsageError, host::NotRunning, host::ConfigError or std::exception, which
// main() turns into exit statuses.
int run_command(const Invocation& invocation);

// The release root: --root, else $HOTSWAP_ROOT, else the current folder; absolute.
boost::filesystem::path root_of(const Invocation& invocation);

boost::filesystem::path admin_socket_path(const boost::filesystem::path& root);

// The admin request for an admin-request command (is_admin_request). Throws
// UsageError for operands the grammar cannot check (a --pre-task's JSON).
nlohmann::json admin_request_for(const Invocation& invocation);

// Sends `request`, prints its events and reply, and returns the exit status the reply means.
int send_admin_request(host::AdminClient& client, const Invocation& invocation, const nlohmann::json& request);

}  // namespace hotswap::cli
