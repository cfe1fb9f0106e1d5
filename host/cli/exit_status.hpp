// The `hotswap` command's exit statuses (sysexits.h where one fits), and the
// exception that means "the command line is wrong". host/README.md lists them
// for operators; scripts depend on them, so they never change meaning.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace hotswap::cli {

constexpr int kOk = 0;
constexpr int kFailed = 1;       // the command ran and failed (refused, rolled back, error reply)
constexpr int kUsage = 64;       // EX_USAGE: bad command line
constexpr int kNotRunning = 69;  // EX_UNAVAILABLE: no host answers on the admin socket
// EX_IOERR: an upgrade or downgrade committed (the new release serves) but
// recording it in RELEASES.json failed; the next release-store change (or
// make-permanent) repairs the record.
constexpr int kUnrecorded = 74;
constexpr int kBusy = 75;        // EX_TEMPFAIL: another upgrade is running; try again
constexpr int kConfig = 78;      // EX_CONFIG: the runtime config is invalid
// EX_DATAERR: the live rehearsal of an upgrade, downgrade or `rehearse`
// failed (a crash, a timeout, a failed step or check); the host changed nothing.
constexpr int kRehearsalFailed = 65;

// The exit status for an admin reply: a committed upgrade whose record failed
// (its report's "record_error", also inside a reload's "report") is kUnrecorded.
inline int exit_status_of_reply(const nlohmann::json& reply) {
  if (!reply.is_object()) return kFailed;
  if (reply.value("ok", false)) {
    const nlohmann::json& result = reply.contains("result") ? reply["result"] : nlohmann::json();
    const nlohmann::json* report = &result;
    if (result.is_object() && result.contains("report")) report = &result["report"];
    if (report->is_object() && report->contains("record_error") && (*report)["record_error"].is_string() &&
        !(*report)["record_error"].get<std::string>().empty())
      return kUnrecorded;
    return kOk;
  }
  if (reply.value("code", "") == "rehearsal_failed") return kRehearsalFailed;
  return reply.value("code", "") == "busy" ? kBusy : kFailed;
}

// The command line cannot be run as typed; the message says why. Exit status kUsage.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace hotswap::cli
