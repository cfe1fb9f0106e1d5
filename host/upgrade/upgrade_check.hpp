// The check phase of an upgrade (DESIGN.md step 2): load every library the plan
// needs and check it against the plan, while traffic flows. Nothing is paused.
#pragma once

#include <functional>
#include <hotswap/appup/planner.hpp>
#include <memory>
#include <string>
#include <vector>

#include "core/library_loader.hpp"
#include "core/module_registry.hpp"
#include "upgrade/upgrade_report.hpp"

namespace hotswap::host {

// The outcome of the check phase: the plan with every library it needs loaded
// and checked. Holds no instance; dropping it unloads the libraries.
class PreparedUpgrade {
 public:
  bool ok() const { return report_.error.empty(); }
  const UpgradeReport& report() const { return report_; }

 private:
  friend class UpgradeExecutor;
  friend PreparedUpgrade check_upgrade(const appup::Plan&, ModuleRegistry&, LibraryLoader&, const ProgressListener&);
  appup::Plan plan_;
  std::vector<std::shared_ptr<LoadedLibrary>> libraries_;  // indexed like plan_.steps
  std::vector<std::string> affected_;                      // running modules the plan touches
  std::vector<std::string> descriptions_;                  // step.describe(), made before the pause
  std::vector<std::string> extras_;                        // step.extra as JSON text, made before the pause
  UpgradeReport report_;
};

// The check phase alone. It only loads libraries and reads which code the
// modules run, so a host may call it from a worker thread while the loop
// serves traffic, provided no other upgrade runs meanwhile.
PreparedUpgrade check_upgrade(const appup::Plan& plan, ModuleRegistry& registry, LibraryLoader& loader,
                              const ProgressListener& progress = {});

}  // namespace hotswap::host
