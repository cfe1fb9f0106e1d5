// What an upgrade reports: its outcome, each step with its duration, the pause
// the affected modules felt, and the libraries that stayed mapped after purge.
// Also the progress events an upgrade emits while it runs.
#pragma once

#include <chrono>
#include <functional>
#include <hotswap/appup/planner.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "handover/handover_state.hpp"

namespace hotswap::host {

struct StepReport {
  std::string description;  // PlanStep::describe()
  std::string module;
  std::chrono::nanoseconds duration{0};
  bool ok = false;
  std::string error;
  // How the step handed the state to the new code: "adopt" (the state object
  // moved as one pointer), "export_import" (copied out and in, or migrated),
  // empty for a step that moves no state. `fallback`: why an export_import
  // step did not adopt.
  std::string state_path;
  std::string fallback;
};

struct UpgradeReport {
  enum class Outcome {
    Committed,   // the new version serves
    RolledBack,  // a step failed while paused; the old version serves with its state
    Refused,     // the check failed before anything paused
    Busy,        // another upgrade was running; nothing was done
  };
  Outcome outcome = Outcome::Refused;
  appup::Direction direction = appup::Direction::Upgrade;
  std::string release_name, from_release, to_release;
  std::string error;  // empty when committed
  std::vector<StepReport> steps;
  std::chrono::nanoseconds check_time{0};
  std::chrono::nanoseconds pause{0};  // suspend -> resume of the affected modules
  std::chrono::nanoseconds purge_time{0};
  std::vector<std::string> leaked;  // libraries that stayed mapped after purge
  // Committed, but recording the release as current in RELEASES.json failed
  // (the reason); empty when recorded. The next release-store change repairs it.
  std::string record_error;
  // The live rehearsal's report (RehearsalReport::to_json), null when none ran.
  // `rehearsal_failed`: the upgrade was refused because its rehearsal failed.
  nlohmann::json rehearsal = nullptr;
  bool rehearsal_failed = false;
  // An upgrade made by a blue-green handover (handover_json): its figures and
  // reasons; null for one made in place. Committed: green serves the target;
  // RolledBack: this process serves on, `error` says why.
  nlohmann::json handover = nullptr;

  bool committed() const { return outcome == Outcome::Committed; }
  nlohmann::json to_json() const;
  std::string summary() const;  // one line for logs and the CLI
};

const char* to_string(UpgradeReport::Outcome outcome);

// Receives progress as JSON objects:
// {"event":"check"|"loaded"|"paused"|"step"|"committed"|"rolled_back"|"refused"|"purged", ...}.
using ProgressListener = std::function<void(const nlohmann::json& event)>;

// Calls `progress` (when set) with `event`; a listener that throws is logged, never propagated.
void emit_progress(const ProgressListener& progress, const nlohmann::json& event);

double to_ms(std::chrono::nanoseconds d);

// {"connections", "listeners", "bytes", "duration_ms", "max_stall_ms",
//  "committed", "error", "reasons"}: a handover's figures for the report, the
// progress event that ends it and `status`.
nlohmann::json handover_json(const HandoverFigures& figures, const std::vector<std::string>& reasons);

// The "purged" progress event of a finished upgrade: purge_ms (the report's
// purge_time, the same figure its to_json gives), the libraries that stayed
// mapped, and which code was unloaded: "old" after a commit, "new" after a
// rollback (the target's code, which never served).
nlohmann::json purged_event(const UpgradeReport& report);

// Upgrade when `to` is newer than `from`, downgrade when older. Upgrade when
// either is not a version (nothing to compare).
appup::Direction direction_between(const std::string& from, const std::string& to);

}  // namespace hotswap::host
