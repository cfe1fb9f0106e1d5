// The check phase of an upgrade (DESIGN.md step 2): load every library the plan
// needs and check it against the plan, while traffic flows. Nothing is paused.
#pragma once

#include <functional>
#include <hotswap/appup/planner.hpp>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/library_loader.hpp"
#include "core/module_registry.hpp"
#include "upgrade/upgrade_report.hpp"

namespace hotswap::host {

// The code each running module runs: module name -> its library. Taken on the
// event loop; the shared pointers keep those libraries loaded while a worker
// thread reads their descriptors, and nothing in it refers to the live registry.
using RunningCode = std::map<std::string, std::shared_ptr<LoadedLibrary>, std::less<>>;

// The code every module of `registry` runs now. Event-loop thread only.
RunningCode running_code(const ModuleRegistry& registry);

// How one step hands the module's state to the new code, decided before the
// pause (DESIGN.md "State in place").
struct StateHandover {
  enum class Path {
    None,          // the step moves no state (add, restart, delete, apply)
    Adopt,         // the state object moves as one pointer (release_state / adopt_state)
    ExportImport,  // the state is copied out and in (export_state, import_state / migrate_*)
  };
  Path path = Path::None;
  std::string fallback_reason;                // ExportImport only: why not Adopt
  std::vector<hotswap_address_range> old_code;  // Adopt: the releasing library's segments
};

const char* to_string(StateHandover::Path path);

// Why a state cannot move from `from`'s code to `to`'s by adoption, or empty
// when it can: both descriptors carry release_state/adopt_state and the same
// non-zero state_fingerprint. Reads only the descriptors.
std::string adoption_refusal(const LoadedLibrary& from, const LoadedLibrary& to);

// The outcome of the check phase: the plan with every library it needs loaded
// and checked. Holds no instance; dropping it unloads the libraries.
class PreparedUpgrade {
 public:
  bool ok() const { return report_.error.empty(); }
  const UpgradeReport& report() const { return report_; }
  // When the check failed at a step of the plan, its index (the error names it too).
  std::optional<size_t> failed_step() const { return failed_step_; }

 private:
  friend class UpgradeExecutor;
  friend PreparedUpgrade check_upgrade(const appup::Plan&, const RunningCode&, LibraryLoader&,
                                       const ProgressListener&);
  friend void plan_handovers(PreparedUpgrade&, const RunningCode&);
  appup::Plan plan_;
  std::vector<std::shared_ptr<LoadedLibrary>> libraries_;  // indexed like plan_.steps
  std::vector<std::string> affected_;                      // running modules the plan touches
  std::vector<std::string> descriptions_;                  // step.describe(), made before the pause
  std::vector<std::string> extras_;                        // step.extra as JSON text, made before the pause
  std::vector<StateHandover> handovers_;                   // indexed like plan_.steps
  UpgradeReport report_;
  std::optional<size_t> failed_step_;
};

// Why a load_module step cannot hand over a state whose schema changes from
// `from_schema` to `to_schema`, or empty when the schemas are equal. The check
// phase refuses such a step with it; `hotswap check` and the offline plan say
// the same.
std::string load_module_schema_refusal(uint32_t from_schema, uint32_t to_schema);

// The check phase alone, against `running` (what each module runs when the
// plan starts). It reads nothing but `running`, the plan's files and the
// libraries it loads, so a host calls it on a worker thread while the loop
// serves traffic (and may change its registry). `progress` is called on the
// calling thread. `loader` must not be used by another thread meanwhile.
PreparedUpgrade check_upgrade(const appup::Plan& plan, const RunningCode& running, LibraryLoader& loader,
                              const ProgressListener& progress = {});

// The same against the live registry: event-loop thread only.
PreparedUpgrade check_upgrade(const appup::Plan& plan, ModuleRegistry& registry, LibraryLoader& loader,
                              const ProgressListener& progress = {});

}  // namespace hotswap::host
