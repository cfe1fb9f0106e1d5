#include "upgrade/upgrade_report.hpp"

#include <spdlog/spdlog.h>

#include <hotswap/appup/semver.hpp>
#include <optional>

#include <sstream>

namespace hotswap::host {

double to_ms(std::chrono::nanoseconds d) { return std::chrono::duration<double, std::milli>(d).count(); }

nlohmann::json handover_json(const HandoverFigures& figures, const std::vector<std::string>& reasons) {
  return {{"connections", figures.connections},
          {"listeners", figures.listeners},
          {"bytes", figures.bytes},
          {"duration_ms", figures.duration_ms},
          {"max_stall_ms", figures.max_stall_ms},
          {"committed", figures.committed},
          {"error", figures.error},
          {"reasons", reasons}};
}

nlohmann::json purged_event(const UpgradeReport& report) {
  return {{"event", "purged"},
          {"purge_ms", to_ms(report.purge_time)},
          {"leaked", report.leaked},
          {"unloaded", report.committed() ? "old" : "new"}};
}

appup::Direction direction_between(const std::string& from, const std::string& to) {
  const std::optional<appup::Version> older = appup::Version::parse(from), newer = appup::Version::parse(to);
  if (older && newer && appup::compare(*newer, *older) < 0) return appup::Direction::Downgrade;
  return appup::Direction::Upgrade;
}

void emit_progress(const ProgressListener& progress, const nlohmann::json& event) {
  if (!progress) return;
  try {
    progress(event);
  } catch (const std::exception& e) {
    spdlog::warn("upgrade progress listener failed: {}", e.what());
  }
}

const char* to_string(UpgradeReport::Outcome outcome) {
  switch (outcome) {
    case UpgradeReport::Outcome::Committed:
      return "committed";
    case UpgradeReport::Outcome::RolledBack:
      return "rolled_back";
    case UpgradeReport::Outcome::Refused:
      return "refused";
    case UpgradeReport::Outcome::Busy:
      return "busy";
  }
  return "?";
}

nlohmann::json UpgradeReport::to_json() const {
  nlohmann::json steps_json = nlohmann::json::array();
  for (const StepReport& s : steps) {
    nlohmann::json step{
        {"step", s.description}, {"module", s.module}, {"ms", to_ms(s.duration)}, {"ok", s.ok}, {"error", s.error}};
    if (!s.state_path.empty()) step["state_path"] = s.state_path;
    if (!s.fallback.empty()) step["fallback"] = s.fallback;
    steps_json.push_back(std::move(step));
  }
  nlohmann::json report = {{"outcome", to_string(outcome)},
          {"direction", direction == appup::Direction::Upgrade ? "upgrade" : "downgrade"},
          {"release", release_name},
          {"from", from_release},
          {"to", to_release},
          {"error", error},
          {"steps", steps_json},
          {"check_ms", to_ms(check_time)},
          {"pause_us", std::chrono::duration<double, std::micro>(pause).count()},
          {"purge_ms", to_ms(purge_time)},
          {"leaked", leaked},
          {"record_error", record_error}};
  if (!rehearsal.is_null()) report["rehearsal"] = rehearsal;
  if (rehearsal_failed) report["rehearsal_failed"] = true;
  if (!handover.is_null()) report["handover"] = handover;
  return report;
}

std::string UpgradeReport::summary() const {
  std::ostringstream out;
  out << (direction == appup::Direction::Upgrade ? "upgrade " : "downgrade ") << release_name << " " << from_release
      << " -> " << to_release << ": " << to_string(outcome);
  if (!handover.is_null())
    out << " by a blue-green handover (" << handover.value("connections", uint64_t(0)) << " connection(s) in "
        << handover.value("duration_ms", 0.0) << " ms, longest stall " << handover.value("max_stall_ms", 0.0)
        << " ms)";
  else if (outcome == Outcome::Committed || outcome == Outcome::RolledBack)
    out << ", pause " << std::chrono::duration<double, std::micro>(pause).count() << " us";
  if (!error.empty()) out << ": " << error;
  if (!leaked.empty()) out << " (" << leaked.size() << " library(ies) stayed mapped)";
  if (!record_error.empty()) out << "; but recording it as current failed: " << record_error;
  return out.str();
}

}  // namespace hotswap::host
