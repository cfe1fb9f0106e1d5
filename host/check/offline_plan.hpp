// `hotswap plan --from A --to B`: the plan of an upgrade or downgrade between
// two releases (folders or tarballs), with no host running. It runs what a
// live host runs before it pauses anything (UpgradeCoordinator::prepare): the
// target's runtime config and its listeners, the real planner
// (appup::make_plan, which decides whether the step is up or down), whether
// it needs a blue-green handover (blue_green_reasons, and the two releases'
// bin/hotswap), and for an in-place plan the check phase (check_upgrade) with
// A's libraries loaded as the running code, so a load_module across a state
// schema change is refused in the live host's words. A handover plan is not
// checked in place (green loads the new code) but needs B's bin/hotswap.
#pragma once

#include <boost/filesystem/path.hpp>
#include <hotswap/appup/planner.hpp>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "check/check_problem.hpp"
#include "check/release_source.hpp"
#include "core/library_loader.hpp"

namespace hotswap::host {

struct OfflinePlan {
  std::string from;  // the releases as named
  std::string to;
  std::optional<appup::Plan> plan;  // set once the planner succeeded, even if a later check refused it
  // Empty when the live host would go ahead; otherwise its refusal, in its words.
  std::string error;
  // The refusal pointing at a file and field where one is known (an appup
  // instruction, a manifest field, a runtime config key).
  std::vector<CheckProblem> problems;
  // Why the upgrade goes through a blue-green handover (blue_green_reasons);
  // empty: in place.
  std::vector<std::string> handover_reasons;

  bool ok() const { return error.empty(); }
  // {"ok", "from", "to", "plan" (appup::Plan::to_json, when planned), "text", "error", "problems",
  //  "blue_green" (bool), "blue_green_reasons"}
  nlohmann::json to_json() const;
  // The plan's steps (appup::Plan::describe) and, for a handover, "by a
  // blue-green handover ..., because:" and the reasons; or "refused: <error>".
  std::string describe() const;
};

// Plans from -> to and checks the plan as the live host would before an
// upgrade. `checked` is the release whose files problems are named relative
// to (nullptr: `to`). Loads libraries through `loader` (give it a
// ChildProcessProbe: a module that crashes while loading costs only the probe
// child). Never throws for a problem of the releases: it lands in `error`.
OfflinePlan plan_offline(const ReleaseSource& from, const ReleaseSource& to, LibraryLoader& loader,
                         const ReleaseSource* checked = nullptr);

// The same from two paths (folders or tarballs); a path that cannot be opened is a refusal.
OfflinePlan plan_offline(const boost::filesystem::path& from, const boost::filesystem::path& to,
                         LibraryLoader& loader);

}  // namespace hotswap::host
