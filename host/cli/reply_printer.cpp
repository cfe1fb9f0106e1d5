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
}

}  // namespace hotswap::cli
