// The `hotswap` command's exit statuses (sysexits.h where one fits), and the
// exception that means "the command line is wrong". host/README.md lists them
// for operators; scripts depend on them, so they never change meaning.
#pragma once

#include <stdexcept>

namespace hotswap::cli {

constexpr int kOk = 0;
constexpr int kFailed = 1;       // the command ran and failed (refused, rolled back, error reply)
constexpr int kUsage = 64;       // EX_USAGE: bad command line
constexpr int kNotRunning = 69;  // EX_UNAVAILABLE: no host answers on the admin socket
constexpr int kBusy = 75;        // EX_TEMPFAIL: another upgrade is running; try again
constexpr int kConfig = 78;      // EX_CONFIG: the runtime config is invalid

// The command line cannot be run as typed; the message says why. Exit status kUsage.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace hotswap::cli
