#include "check/offline_plan.hpp"

#include <hotswap/appup/error.hpp>
#include <map>
#include <memory>
#include <set>

#include <boost/filesystem/operations.hpp>

#include "core/sha256.hpp"
#include "release/release_files.hpp"
#include "release/runtime_config.hpp"
#include "upgrade/upgrade_check.hpp"
#include "upgrade/upgrade_coordinator.hpp"

namespace hotswap::host {

namespace fs = boost::filesystem;
using nlohmann::json;

namespace {

// A release's own runtime config template, as a host on a root without an
// operator override (ROOT/runtime.json) reads it.
fs::path own_config_path(const appup::ReleaseManifest& manifest) {
  return manifest.config.empty() ? manifest.dir / "runtime.json" : manifest.config;
}

class OfflinePlanner {
 public:
  OfflinePlanner(const ReleaseSource& from, const ReleaseSource& to, LibraryLoader& loader,
                 const ReleaseSource* checked)
      : from_(from), to_(to), loader_(loader), checked_(checked) {}

  OfflinePlan run() {
    result_.from = from_.path().string();
    result_.to = to_.path().string();
    try {
      plan();
    } catch (const std::exception& e) {
      refuse(e, which_release_failed_);
    }
    // A tarball's temporary folder is gone once the sources are: name its files by the tarball.
    for (std::string& reason : result_.handover_reasons) reason = shown(reason);
    if (result_.plan)
      for (appup::PlanStep& step : result_.plan->steps) {
        step.origin = shown(step.origin);
        if (step.code) step.code->file = shown(step.code->file.string());
      }
    return std::move(result_);
  }

 private:
  // What UpgradeCoordinator::prepare does with the running release `from_`,
  // then check_upgrade with `from_`'s libraries as the running code.
  void plan() {
    which_release_failed_ = &from_;
    const appup::ReleaseManifest running = load_manifest(from_.dir());
    const RuntimeConfig running_config = load_runtime_config(own_config_path(running));
    which_release_failed_ = &to_;
    const appup::ReleaseManifest target = load_manifest(to_.dir());
    const fs::path target_config_file = own_config_path(target);
    const RuntimeConfig target_config = load_runtime_config(target_config_file);
    check_config_matches(target_config, target, target_config_file);
    which_release_failed_ = nullptr;  // the planner reads the appups of both
    result_.plan = appup::make_plan(running, target, load_appup_of);
    std::set<std::string> listener_owners;
    for (const ListenerConfig& listener : running_config.listeners) listener_owners.insert(listener.module);
    result_.handover_reasons = blue_green_reasons(*result_.plan, listener_owners, running_config, target_config);
    // Against this program's module ABI: the host that would run the plan.
    for (std::string& reason : module_abi_changes(*result_.plan)) result_.handover_reasons.push_back(std::move(reason));
    // No host runs: the host binary changes when both releases ship one and they differ.
    const fs::path running_binary = release_host_binary(from_.dir());
    if (fs::exists(running_binary)) {
      const auto binary_change =
          host_binary_change(from_.dir(), to_.dir(), [&] { return sha256_file(running_binary); });
      if (binary_change) result_.handover_reasons.push_back(*binary_change);
    }
    if (!result_.handover_reasons.empty()) {
      // Green loads and checks the new code itself; the in-place check phase does not apply.
      if (!fs::exists(release_host_binary(to_.dir())))
      {
        std::string reasons;
        for (const std::string& reason : result_.handover_reasons) reasons += (reasons.empty() ? "" : ", ") + reason;
        throw std::runtime_error("release " + target.version + " needs a blue-green handover (" + reasons +
                                 "), but it has no bin/hotswap to hand over to");
      }
      return;
    }
    which_release_failed_ = &from_;
    const RunningCode running_code = load_running_code(running);
    which_release_failed_ = nullptr;
    const PreparedUpgrade prepared = check_upgrade(*result_.plan, running_code, loader_);
    if (prepared.ok()) return;
    result_.error = shown(prepared.report().error);
    CheckProblem problem{named_file(to_, to_.path()), "", result_.error};
    if (prepared.failed_step()) {
      // The step's origin reads "<appup file> <field>" ("manifest" for an implicit add or delete).
      const std::string& origin = result_.plan->steps[*prepared.failed_step()].origin;
      const size_t space = origin.rfind(' ');
      if (origin != "manifest" && space != std::string::npos) {
        const fs::path appup = origin.substr(0, space);
        problem.file = named_file(owner_of(appup), appup);
        problem.field = origin.substr(space + 1);
      }
    }
    result_.problems.push_back(std::move(problem));
  }

  // A file of `release` as problems name it: relative to the checked release,
  // by its path (a tarball's path for a file in it) otherwise.
  std::string named_file(const ReleaseSource& release, const fs::path& file) const {
    const std::string inside = release.relative(file);
    if (file == release.path() || inside == file.string()) return release.shown(file.string());
    if (checked_ == &release) return inside;
    return (release.path() / inside).string();
  }

  // The libraries `running` would run in a host booted on it, checked against its manifest.
  RunningCode load_running_code(const appup::ReleaseManifest& running) {
    RunningCode code;
    for (const appup::ModuleEntry& module : running.modules)
      code.emplace(module.name, loader_.load(module.file, {module.name, module.version, module.sha256}));
    return code;
  }

  std::string shown(const std::string& text) const { return to_.shown(from_.shown(text)); }

  // `release`: the release whose file failed, or nullptr when that is not
  // known (the planner reads the appups of both).
  void refuse(const std::exception& e, const ReleaseSource* release) {
    result_.error = shown(e.what());
    CheckProblem problem = problem_of(e);
    if (problem.file.empty()) {
      const ReleaseSource& blamed = release ? *release : to_;
      problem.file = named_file(blamed, blamed.path());
    } else {
      problem.file = named_file(owner_of(problem.file), problem.file);
    }
    problem.message = shown(problem.message);
    result_.problems.push_back(std::move(problem));
  }

  const ReleaseSource& owner_of(const fs::path& file) const {
    return from_.relative(file) != file.string() ? from_ : to_;
  }

  const ReleaseSource& from_;
  const ReleaseSource& to_;
  LibraryLoader& loader_;
  const ReleaseSource* checked_;  // nullptr: every file is named by its path
  const ReleaseSource* which_release_failed_ = nullptr;
  OfflinePlan result_;
};

}  // namespace

json OfflinePlan::to_json() const {
  json problem_list = json::array();
  for (const CheckProblem& problem : problems) problem_list.push_back(problem.to_json());
  json document = {{"ok", ok()},          {"from", from},         {"to", to},
                   {"error", error},       {"problems", problem_list},
                   {"blue_green", !handover_reasons.empty()}, {"blue_green_reasons", handover_reasons}};
  if (plan) {
    document["plan"] = plan->to_json();
    document["text"] = describe();
  }
  return document;
}

std::string OfflinePlan::describe() const {
  if (!ok() || !plan) return "refused: " + error + "\n";
  if (handover_reasons.empty()) return plan->describe();
  // The appup's own blue_green lines are among the reasons: print the steps only.
  appup::Plan steps_only = *plan;
  steps_only.blue_green.clear();
  std::string text = steps_only.describe() + "by a blue-green handover (a new process on the target release takes " +
                     "the listeners, connections and module state over), because:\n";
  for (const std::string& reason : handover_reasons) text += "  - " + reason + "\n";
  return text;
}

OfflinePlan plan_offline(const ReleaseSource& from, const ReleaseSource& to, LibraryLoader& loader,
                         const ReleaseSource* checked) {
  return OfflinePlanner(from, to, loader, checked).run();
}

OfflinePlan plan_offline(const fs::path& from, const fs::path& to, LibraryLoader& loader) {
  std::unique_ptr<ReleaseSource> from_source, to_source;
  OfflinePlan refused;
  refused.from = from.string();
  refused.to = to.string();
  for (auto [path, source] : {std::pair{&from, &from_source}, std::pair{&to, &to_source}}) {
    try {
      *source = std::make_unique<ReleaseSource>(*path);
    } catch (const std::exception& e) {
      refused.error = e.what();
      refused.problems.push_back({path->string(), "", e.what()});
      return refused;
    }
  }
  return plan_offline(*from_source, *to_source, loader);
}

}  // namespace hotswap::host
