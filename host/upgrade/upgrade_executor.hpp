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

#include <functional>
#include <hotswap/appup/planner.hpp>

#include "core/library_loader.hpp"
#include "core/module_registry.hpp"
#include "upgrade/retired_libraries.hpp"
#include "upgrade/upgrade_check.hpp"
#include "upgrade/upgrade_report.hpp"

namespace hotswap::host {

class UpgradeExecutor {
 public:
  UpgradeExecutor(ModuleRegistry& registry, LibraryLoader& loader) : registry_(registry), loader_(loader) {}

  // check + apply, on the event-loop thread.
  UpgradeReport run(const appup::Plan& plan, const ProgressListener& progress = {});

  // The check phase (see check_upgrade).
  PreparedUpgrade prepare(const appup::Plan& plan, const ProgressListener& progress = {}) {
    return check_upgrade(plan, registry_, loader_, progress);
  }
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

  // On (the default): a step whose check chose adoption hands the state
  // object over in place. Off: every step copies the state (export/import);
  // the report names this as the fallback. For comparisons and benchmarks.
  void set_state_adoption(bool enabled) { adoption_enabled_ = enabled; }

  // Bytes the reused export buffer holds ready (pre-faulted) for the next swap.
  size_t export_buffer_capacity() const { return export_buffer_.bytes.capacity(); }

 private:
  // After a swap, outside the pause: makes the export buffer ready for an
  // export the size of the last one, so the next pause copies into memory
  // that is already mapped (huge pages where the kernel allows them).
  void prepare_export_buffer(size_t last_export_bytes);

  ModuleRegistry& registry_;
  LibraryLoader& loader_;
  std::function<void(size_t)> step_hook_;
  bool adoption_enabled_ = true;
  // Reused across swaps: exported state goes here and the new code reads it
  // from here, so a large migration does not fault fresh pages in the pause.
  hotswap_buffer export_buffer_;
};

}  // namespace hotswap::host
