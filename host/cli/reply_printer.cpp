#include "cli/reply_printer.hpp"

#include <iostream>

namespace hotswap::cli {
namespace {

using nlohmann::json;

double as_double(const json& j, const char* key) {
  return j.contains(key) && j[key].is_number() ? j[key].get<double>() : 0;
}

void print_status(const json& s) {
  std::cout << "release " << s["release"].get<std::string>() << " " << s["version"].get<std::string>()
            << (s["permanent"] == s["version"] ? " (permanent)" : " (not permanent)") << ", pid " << s["pid"] << ", up "
            << static_cast<long>(s["uptime_s"].get<double>()) << " s\n";
  if (s.contains("unrecorded_release") && s["unrecorded_release"].is_string())
    std::cout << "release " << s["unrecorded_release"].get<std::string>()
              << " runs but is not recorded in RELEASES.json (the next release change records it)\n";
  std::cout << "connections " << s["connections"] << "\n";
  for (const auto& l : s["listeners"])
    std::cout << "listener " << l["name"].get<std::string>() << " " << l["address"].get<std::string>() << ":"
              << l["port"] << " -> " << l["module"].get<std::string>() << "\n";
  for (const auto& m : s["modules"])
    std::cout << "module " << m["name"].get<std::string>() << " " << m["version"].get<std::string>() << " (schema "
              << m["state_schema"] << ", " << m["events"] << " events, " << m["failed_events"] << " failed)\n";
  const json& last = s["last_upgrade"];
  if (last.is_object())
    std::cout << "last upgrade: " << last["direction"].get<std::string>() << " " << last["from"].get<std::string>()
              << " -> " << last["to"].get<std::string>() << " " << last["outcome"].get<std::string>() << ", pause "
              << as_double(last, "pause_us") << " us" << (last["error"].get<std::string>().empty() ? "" : ": ")
              << last["error"].get<std::string>() << "\n";
  if (s.contains("last_rehearsal") && s["last_rehearsal"].is_object()) {
    std::cout << "last ";
    print_rehearsal(s["last_rehearsal"], "");
  }
  if (!s["leaked_libraries"].empty())
    std::cout << "libraries that stayed mapped: " << s["leaked_libraries"].dump() << "\n";
}

void print_releases(const json& r) {
  for (const auto& rel : r["releases"]) {
    std::cout << rel["version"].get<std::string>() << "  " << rel["state"].get<std::string>();
    // reload skips it until it is named, removed or unpacked again.
    if (rel.contains("failed")) std::cout << "  (last upgrade failed: " << rel.value("failed", "") << ")";
    std::cout << "\n";
  }
}

void print_upgrade_report(const json& report) {
  std::cout << report["direction"].get<std::string>() << " " << report["from"].get<std::string>() << " -> "
            << report["to"].get<std::string>() << ": " << report["outcome"].get<std::string>() << ", pause "
            << as_double(report, "pause_us") << " us\n";
  const std::string record_error = report.value("record_error", "");
  if (!record_error.empty())
    std::cerr << "hotswap: release " << report["to"].get<std::string>()
              << " runs, but recording it as current in RELEASES.json failed: " << record_error
              << "\nhotswap: the next release change (make-permanent, remove, another upgrade) records it again\n";
}

}  // namespace

void print_rehearsal(const json& r, const std::string& indent) {
  std::cout << indent << "rehearsal " << r.value("from", "?") << " -> " << r.value("to", "?") << ": "
            << r.value("outcome", "?");
  if (!r.value("step", "").empty()) std::cout << " in step " << r.value("step", "");
  if (!r.value("error", "").empty()) std::cout << ": " << r.value("error", "");
  std::cout << "\n";
  if (r.contains("steps") && r["steps"].is_array())
    for (const auto& s : r["steps"])
      std::cout << indent << "  " << s.value("step", "?") << (s.value("detail", "").empty() ? "" : " ")
                << s.value("detail", "") << ": " << (s.value("ok", false) ? "ok" : "FAILED " + s.value("error", ""))
                << " (" << as_double(s, "ms") << " ms)\n";
  if (r.contains("state_sizes") && r["state_sizes"].is_object())
    for (const auto& [module, sizes] : r["state_sizes"].items())
      std::cout << indent << "  state " << module << ": " << sizes.value("before", 0) << " bytes before, "
                << sizes.value("after", 0) << " after\n";
  std::cout << indent << "  cost to the live process: ";
  if (r.value("mechanism", "fork") == "spawn")
    std::cout << "export " << as_double(r, "export_ms") << " ms (spawn " << as_double(r, "fork_ms")
              << " ms, off the loop), then ";
  else
    std::cout << "fork " << as_double(r, "fork_ms") << " ms, then ";
  std::cout << r.value("live_page_faults", uint64_t{0}) << " page faults while the child ran; rehearsal "
            << as_double(r, "wall_ms") << " ms; the upgrade's pause would be about "
            << as_double(r, "pause_estimate_ms") << " ms\n";
  if (r.value("round_trip", false))
    std::cout << indent << "  round trip: every state restored byte for byte\n";
  else if (!r.value("round_trip_skipped", "").empty())
    std::cout << indent << "  round trip skipped: " << r.value("round_trip_skipped", "") << "\n";
}

void print_event(const json& e) {
  std::string kind = e.value("event", "?");
  if (kind == "check")
    std::cout << "  check: loading and verifying " << e.value("steps", 0) << " step(s)\n";
  else if (kind == "loaded")
    std::cout << "  loaded and checked in " << as_double(e, "check_ms") << " ms\n";
  else if (kind == "pre_task")
    std::cout << "  pre-upgrade task " << e.value("module", "") << ":" << e.value("task", "") << "\n";
  else if (kind == "pre_task_done")
    std::cout << "  pre-upgrade task done: " << e.value("result", "") << "\n";
  else if (kind == "paused")
    std::cout << "  paused: " << e["modules"].dump() << "\n";
  else if (kind == "step")
    std::cout << "  step " << e.value("index", 0) << ": " << e.value("step", "") << " ... "
              << (e.value("ok", false) ? "ok" : "FAILED: " + e.value("error", "")) << " (" << as_double(e, "ms")
              << " ms)\n";
  else if (kind == "committed")
    std::cout << "  committed; pause " << as_double(e, "pause_us") << " us\n";
  else if (kind == "rolled_back")
    std::cout << "  rolled back (pause " << as_double(e, "pause_us") << " us): " << e.value("error", "") << "\n";
  else if (kind == "refused")
    std::cout << "  refused: " << e.value("error", "") << "\n";
  else if (kind == "rehearsing")
    std::cout << "  rehearsing " << e.value("steps", 0) << " step(s) in a forked copy of the host\n";
  else if (kind == "rehearsed" && e.contains("report") && e["report"].is_object())
    print_rehearsal(e["report"], "  ");
  else if (kind == "handover" && e.contains("reasons") && e["reasons"].is_array()) {
    std::cout << "  blue-green handover to a new process, because:\n";
    for (const json& reason : e["reasons"]) std::cout << "    - " << (reason.is_string() ? reason.get<std::string>() : reason.dump()) << "\n";
  } else if (kind == "handover_end")
    std::cout << "  handover " << (e.value("committed", false) ? "committed" : "FAILED: " + e.value("error", ""))
              << ": " << e.value("connections", uint64_t(0)) << " connection(s), " << e.value("bytes", uint64_t(0))
              << " bytes in " << as_double(e, "duration_ms") << " ms, longest stall " << as_double(e, "max_stall_ms")
              << " ms\n";
  else if (kind == "record_failed")
    std::cout << "  recording the release in RELEASES.json FAILED: " << e.value("error", "") << "\n";
  else if (kind == "purged")
    // "new" after a rollback: the target's code that never served is what was unloaded.
    std::cout << "  " << (e.value("unloaded", "old") == "new" ? "new" : "old") << " code unloaded in "
              << as_double(e, "purge_ms") << " ms\n";
  else
    std::cout << "  " << e.dump() << "\n";
}

void print_reply(const std::string& command, const json& reply, bool as_json) {
  if (as_json) {
    std::cout << (reply.value("ok", false) ? reply["result"] : reply).dump(2) << "\n";
    return;
  }
  if (!reply.value("ok", false)) {
    std::cerr << "hotswap " << command << ": " << reply.value("error", "failed") << "\n";
    return;
  }
  const json& r = reply["result"];
  if (command == "status")
    print_status(r);
  else if (command == "releases")
    print_releases(r);
  else if (command == "plan")
    std::cout << r["text"].get<std::string>() << "\n";
  else if (command == "rehearse")  // the report itself came as the "rehearsed" event
    std::cout << "rehearsal passed: the " << r.value("to", "?") << " upgrade can go ahead\n";
  else if (command == "upgrade" || command == "downgrade")
    print_upgrade_report(r);
  else if (command == "reload" && r.value("action", "") == "upgrade")
    print_upgrade_report(r["report"]);
  else if (command == "reload")
    std::cout << (r["action"] == "config" ? "runtime config reloaded" : "nothing to reload") << " (release "
              << r.value("release", "?") << ")\n";
  else if (command == "unpack")
    std::cout << "unpacked release " << r["version"].get<std::string>() << "\n";
  else if (command == "make-permanent")
    std::cout << "release " << r["permanent"].get<std::string>() << " is permanent\n";
  else if (command == "remove")
    std::cout << "removed release " << r["removed"].get<std::string>() << "\n";
  else if (command == "log-level")
    std::cout << "log level " << r["level"].get<std::string>() << "\n";
  else if (command == "stop")
    std::cout << "stopping\n";
  else if (command == "trace" && r.contains("events"))
    std::cout << "trace written to " << r.value("file", "?") << ": " << r.value("events", uint64_t(0))
              << " event(s), " << r.value("bytes", uint64_t(0)) << " bytes"
              << (r.value("truncated", false) ? " (truncated at its size cap)" : "") << "\n";
  else if (command == "trace")
    std::cout << "recording events to " << r.value("file", "?") << " (at most " << r.value("max_bytes", uint64_t(0))
              << " bytes); hotswap trace stop writes it\n";
}

}  // namespace hotswap::cli
