// Plans the way from the running release to a target release: which modules
// change, with which appup instructions, in which order. Pure logic: the
// caller hands it the appups (the host reads them from the release folders).
#pragma once

#include <hotswap/appup/appup.hpp>
#include <hotswap/appup/manifest.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace hotswap::appup {

enum class Direction { Upgrade, Downgrade };

enum class StepKind {
  LoadModule,     // swap code, hand state over unchanged
  Update,         // swap code, migrate state (up: new code reads old state; down: current code writes the older layout)
  RestartModule,  // swap code, fresh state
  AddModule,      // start a new module
  DeleteModule,   // stop and unload a module
  Apply,          // run a task on the module's instance current at this point of the plan
};

const char* to_string(StepKind kind);

struct PlanStep {
  StepKind kind = StepKind::LoadModule;
  std::string module;
  Direction direction = Direction::Upgrade;  // for this module's code change
  std::string from_version;  // empty for AddModule
  std::string to_version;    // empty for DeleteModule
  std::optional<ModuleEntry> code;  // the code to load: LoadModule, Update, RestartModule, AddModule
  nlohmann::json extra;      // Update
  std::string task;          // Apply
  nlohmann::json task_args;  // Apply
  std::optional<std::chrono::milliseconds> timeout;
  std::string origin;        // "<appup file> up[0].instructions[1]", or "manifest" for implicit add/delete

  // One line, e.g. "update counter 1.0.0 -> 2.0.0 (extra {...}, timeout 100ms)".
  std::string describe() const;
  nlohmann::json to_json() const;
};

struct Plan {
  Direction direction = Direction::Upgrade;
  std::string release_name;
  std::string from_release;
  std::string to_release;
  std::vector<PlanStep> steps;
  // Why this plan cannot run in place, one line per appup `blue_green`
  // instruction ("module chat: chat-2.0.0.appup.json up[0].instructions[0]
  // requires a blue-green handover (new wire format)"). Non-empty: the host
  // hands over to a new process instead; `steps` then tell that process what
  // each module's code change is (how its state arrives).
  std::vector<std::string> blue_green;

  std::string describe() const;  // numbered lines (and the blue-green reasons), for `hotswap plan`
  nlohmann::json to_json() const;
};

// Returns the appup of one module entry (the host's reads the file entry.appup).
using AppupSource = std::function<Appup(const ModuleEntry&)>;

// Plans current -> target. The direction is an upgrade when target's version is
// newer, a downgrade when older; equal versions are a PlanError. Per module:
//  - same version (and same sha256): no step; same version with another sha256: PlanError;
//  - newer in target: target's appup, first `up` entry matching the current version;
//  - older in target: current's appup, first `down` entry matching the target version;
//  - only in target: AddModule; only in current: DeleteModule (unless an
//    instruction already adds/deletes it).
// Each module's steps keep their appup order; modules are ordered so that a
// module's steps come after those of the modules it depends on (manifest
// depends_on plus instruction depends_on); deletions come last. A blue_green
// instruction yields no step but a line in Plan::blue_green; an entry whose
// instructions change no code but hold a blue_green gets a load_module step
// (origin "<file> up[0] (blue_green)"). Throws PlanError (no matching entry, a
// dependency cycle naming its members, inconsistent add/delete) or InputError
// (a malformed appup).
Plan make_plan(const ReleaseManifest& current, const ReleaseManifest& target, const AppupSource& appups);

// Checks that `appup` is the one `module` ships with: same module name and
// version. make_plan checks every appup it reads with it; `hotswap check`
// checks every appup of a release. Throws InputError naming the appup and its
// field ("module" or "version").
void check_appup_is_of(const Appup& appup, const ModuleEntry& module);

}  // namespace hotswap::appup
