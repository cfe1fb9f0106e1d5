// `hotswap remote`: an interactive shell on the running host's admin socket.
// Each line is a `hotswap` admin command without `hotswap` and `--root`
// (parsed by the same grammar, command_line.hpp). Line editing and history
// come from libedit; the history is kept in ROOT/run/remote_history.
#pragma once

#include <boost/filesystem/path.hpp>

namespace hotswap::cli {

// Returns kOk at end of input, `quit`, `exit` or after `stop`. Throws
// host::NotRunning when no host answers, std::runtime_error when the host
// hangs up.
int run_remote_shell(const boost::filesystem::path& root);

}  // namespace hotswap::cli
