// Runs an upgrade plan as a transaction (DESIGN.md "An upgrade, step by step"):
//
//   check    load every new library and check it; nothing is paused yet
//   suspend  only the affected modules; their events queue in order
//   migrate  export old state, hand it to the new code; old instances untouched
//   commit   switch dispatch to the new instances, resume, flush the queues
//   or roll back: destroy the new instances, resume the old ones as they were
//   purge    after resuming: destroy old instances, dlclose, verify unmapping
//
// Runs on the event-loop thread at a quiescent point. Never throws: every
// failure becomes the report's outcome and error.
#pragma once

#include <chrono>
#include <functional>
#include <hotswap/appup/planner.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "library_loader.hpp"
#include "module_registry.hpp"

namespace hotswap::host {

struct StepReport {
  std::string description;  // PlanStep::describe()
  std::string module;
  std::chrono::nanoseconds duration{0};
  bool ok = false;
  std::string error;
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

  bool committed() const { return outcome == Outcome::Committed; }
  nlohmann::json to_json() const;
  std::string summary() const;  // one line for logs and the CLI
};

const char* to_string(UpgradeReport::Outcome outcome);

// Receives progress as JSON objects:
// {"event":"check"|"loaded"|"paused"|"step"|"committed"|"rolled_back"|"refused"|"purged", ...}.
using ProgressListener = std::function<void(const nlohmann::json& event)>;

// Libraries whose instances are destroyed, still to be closed (dlclose, the
// RTLD_NOLOAD check, the copy deleted). Closing may run on any thread.
class RetiredLibraries {
 public:
  void add(std::shared_ptr<LoadedLibrary> library) { libraries_.push_back(std::move(library)); }
  bool empty() const { return libraries_.empty(); }
  // Closes each library nobody else holds; returns "name version" of those that stayed mapped.
  std::vector<std::string> close_all();

 private:
  std::vector<std::shared_ptr<LoadedLibrary>> libraries_;
};

// The outcome of the check phase: the plan with every library it needs loaded
// and checked. Holds no instance; dropping it unloads the libraries.
class PreparedUpgrade {
 public:
  bool ok() const { return report_.error.empty(); }
  const UpgradeReport& report() const { return report_; }

 private:
  friend class UpgradeExecutor;
  appup::Plan plan_;
  std::vector<std::shared_ptr<LoadedLibrary>> libraries_;  // indexed like plan_.steps
  std::vector<std::string> affected_;                      // running modules the plan touches
  std::vector<std::string> descriptions_;                  // step.describe(), made before the pause
  std::vector<std::string> extras_;                        // step.extra as JSON text, made before the pause
  UpgradeReport report_;
};

class UpgradeExecutor {
 public:
  UpgradeExecutor(ModuleRegistry& registry, LibraryLoader& loader) : registry_(registry), loader_(loader) {}

  // check + apply, on the event-loop thread.
  UpgradeReport run(const appup::Plan& plan, const ProgressListener& progress = {});

  // The check phase alone. It only loads libraries and reads which code the
  // modules run, so a host may call it from a worker thread while the loop
  // serves traffic, provided no other upgrade runs meanwhile.
  PreparedUpgrade prepare(const appup::Plan& plan, const ProgressListener& progress = {});
  // Suspend, migrate, commit or roll back, resume, purge: on the event-loop thread.
  // A prepared upgrade that failed its check is returned as Refused.
  // With `defer`, the retired libraries are handed over instead of closed (the
  // caller closes them off the loop, adds their leaks to the report and
  // reports "purged"); without it, they are closed here.
  UpgradeReport apply(PreparedUpgrade prepared, const ProgressListener& progress = {},
                      RetiredLibraries* defer = nullptr);

  // For tests and rehearsals: called between migration steps while the affected
  // modules are suspended (e.g. to deliver events that must be queued).
  void set_step_hook(std::function<void(size_t step_index)> hook) { step_hook_ = std::move(hook); }

 private:
  ModuleRegistry& registry_;
  LibraryLoader& loader_;
  std::function<void(size_t)> step_hook_;
};

}  // namespace hotswap::host
