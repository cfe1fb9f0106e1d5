#include <hotswap/appup/planner.hpp>

#include <hotswap/appup/error.hpp>
#include <hotswap/appup/semver.hpp>

#include <algorithm>
#include <map>
#include <set>

namespace hotswap::appup {

namespace {

const char* to_string(Direction direction) { return direction == Direction::Upgrade ? "upgrade" : "downgrade"; }

bool swaps_code(StepKind kind) {
  return kind == StepKind::LoadModule || kind == StepKind::Update || kind == StepKind::RestartModule;
}

Version parse_version(const std::string& text, const std::string& what) {
  const auto version = Version::parse(text);
  if (!version) throw PlanError(what + ": '" + text + "' is not a semantic version");
  return *version;
}

std::string join(const std::vector<std::string>& parts, const char* separator) {
  std::string text;
  for (const std::string& part : parts) text += (text.empty() ? "" : separator) + part;
  return text;
}

// A module whose steps must run before a group's; `origin` says who asked, for messages.
struct Dependency {
  std::string module;
  std::string origin;
};

// The steps one module contributes (from its appup entry, or an implicit
// add/delete), kept together in the plan and ordered as a unit.
struct Group {
  std::string owner;
  std::vector<PlanStep> steps;
  std::vector<Dependency> depends_on;
  bool deletion_only = false;
};

// Walks the `after` relation among unplaced nodes until a node repeats; every
// unplaced node waits for another unplaced one, so the walk always closes a cycle.
std::vector<size_t> find_cycle(const std::vector<std::set<size_t>>& after, const std::vector<bool>& placed) {
  std::vector<size_t> path;
  size_t node = size_t(std::find(placed.begin(), placed.end(), false) - placed.begin());
  while (std::find(path.begin(), path.end(), node) == path.end()) {
    path.push_back(node);
    node = *std::find_if(after[node].begin(), after[node].end(), [&](size_t n) { return !placed[n]; });
  }
  path.erase(path.begin(), std::find(path.begin(), path.end(), node));
  path.push_back(node);
  return path;
}

// Orders nodes 0..n-1 so each comes after the nodes in its `after` set. Among
// ready nodes the lowest index goes first, so unrelated modules keep manifest
// order. `after_is_dependency` says whether "a waits for b" means "a depends on
// b" (or the reverse, for deletions), so a cycle is always printed as a chain of
// dependencies: "a -> b -> a" reads "a depends on b, which depends on a".
std::vector<size_t> topological_order(const std::vector<std::string>& names, const std::vector<std::set<size_t>>& after,
                                      bool after_is_dependency) {
  std::vector<size_t> order;
  std::vector<bool> placed(names.size(), false);
  const auto ready = [&](size_t node) {
    return !placed[node] && std::all_of(after[node].begin(), after[node].end(), [&](size_t n) { return placed[n]; });
  };
  while (order.size() < names.size()) {
    size_t next = 0;
    while (next < names.size() && !ready(next)) ++next;
    if (next == names.size()) {
      std::vector<size_t> cycle = find_cycle(after, placed);
      if (!after_is_dependency) std::reverse(cycle.begin(), cycle.end());
      std::vector<std::string> members;
      for (size_t node : cycle) members.push_back(names[node]);
      throw PlanError("dependency cycle: " + join(members, " -> "));
    }
    placed[next] = true;
    order.push_back(next);
  }
  return order;
}

// The direction of a module's code change, or nullopt when its version stays.
std::optional<Direction> change_direction(const ModuleEntry& from, const ModuleEntry& to) {
  const int order =
      compare(parse_version(to.version, "module " + to.name), parse_version(from.version, "module " + from.name));
  if (order == 0) return std::nullopt;
  return order > 0 ? Direction::Upgrade : Direction::Downgrade;
}

size_t index_in(const ReleaseManifest& release, const std::string& module) {
  return size_t(release.find(module) - release.modules.data());
}

class Planner {
 public:
  Planner(const ReleaseManifest& current, const ReleaseManifest& target, const AppupSource& appups)
      : current_(current), target_(target), appups_(appups) {}

  Plan plan() {
    Plan plan;
    plan.release_name = target_.name;
    plan.from_release = current_.version;
    plan.to_release = target_.version;
    plan.direction = release_direction();
    direction_ = plan.direction;
    for (const ModuleEntry& to : target_.modules) {
      if (const ModuleEntry* from = current_.find(to.name)) plan_module_change(*from, to);
    }
    plan_implicit_additions();
    plan_implicit_deletions();
    plan.steps = ordered_steps();
    plan.blue_green = blue_green_;
    return plan;
  }

 private:
  Direction release_direction() const {
    if (current_.name != target_.name) {
      throw PlanError("cannot plan from release '" + current_.name + "' to release '" + target_.name +
                      "': they are different releases");
    }
    const int order = compare(parse_version(target_.version, "target release " + target_.name),
                              parse_version(current_.version, "current release " + current_.name));
    if (order == 0) {
      throw PlanError("already at release " + target_.name + " " + target_.version +
                      ": current and target have the same version, so there is nothing to plan");
    }
    return order > 0 ? Direction::Upgrade : Direction::Downgrade;
  }

  // The direction of one module's own code change; the plan's direction for a
  // module whose version stays (or that is only added or deleted).
  Direction module_direction(const std::string& module) const {
    const ModuleEntry* from = current_.find(module);
    const ModuleEntry* to = target_.find(module);
    if (!from || !to) return direction_;
    return change_direction(*from, *to).value_or(direction_);
  }

  void plan_module_change(const ModuleEntry& from, const ModuleEntry& to) {
    const std::optional<Direction> direction = change_direction(from, to);
    if (!direction) {
      if (from.sha256 != to.sha256) {
        throw PlanError("module " + to.name + " keeps version " + to.version +
                        " but its sha256 changed; bump its version so an appup can describe the change");
      }
      return;
    }
    const bool up = *direction == Direction::Upgrade;
    const std::string change =
        std::string(up ? "upgrading " : "downgrading ") + to.name + " " + from.version + " -> " + to.version;
    // Only the newer version knows both layouts, so its appup describes both directions.
    const Appup appup = appup_of(up ? to : from, change);
    const std::string& other_version = up ? from.version : to.version;
    const AppupEntry* entry = up ? appup.find_up(other_version) : appup.find_down(other_version);
    if (!entry) {
      throw PlanError("module " + to.name + ": no '" + (up ? "up" : "down") + "' entry in " + appup.source +
                      " matches " + other_version + " (" + change + ")");
    }
    groups_.push_back(group_for_entry(appup, *entry, from, to, *direction));
  }

  Appup appup_of(const ModuleEntry& module, const std::string& change) const {
    if (module.appup.empty()) {
      throw PlanError("module " + module.name + ": " + change + " needs an appup, but " + module.name + " " +
                      module.version + " ships without one");
    }
    Appup appup = appups_(module);
    check_appup_is_of(appup, module);
    return appup;
  }

  Group group_for_entry(const Appup& appup, const AppupEntry& entry, const ModuleEntry& from, const ModuleEntry& to,
                        Direction direction) {
    Group group;
    group.owner = to.name;
    add_manifest_dependencies(group, to);
    bool needs_blue_green = false;
    for (const Instruction& instruction : entry.instructions) {
      const std::string origin = appup.source + " " + instruction.field;
      if (instruction.op == Op::BlueGreen) {
        // No step: the plan as a whole goes through a blue-green handover.
        blue_green_.push_back("module " + to.name + ": " + origin + " requires a blue-green handover" +
                              (instruction.reason.empty() ? "" : " (" + instruction.reason + ")"));
        needs_blue_green = true;
        continue;
      }
      PlanStep step = step_for(instruction, origin, from, to, direction);
      step.timeout = instruction.timeout;
      step.origin = origin;
      for (const std::string& module : instruction.depends_on) group.depends_on.push_back({module, origin});
      // Adding a module here also means waiting for what that module needs.
      if (step.kind == StepKind::AddModule) add_manifest_dependencies(group, *step.code);
      group.steps.push_back(std::move(step));
    }
    const bool changes_code =
        std::any_of(group.steps.begin(), group.steps.end(), [](const PlanStep& s) { return swaps_code(s.kind); });
    if (!changes_code && needs_blue_green) {
      // The entry only says "not in place": green loads the new code and takes
      // the state over unchanged (import_state checks the schema), as load_module would.
      PlanStep step = code_step(StepKind::LoadModule, from, to, direction);
      step.origin = appup.source + " " + entry.field + " (blue_green)";
      group.steps.insert(group.steps.begin(), std::move(step));
    } else if (!changes_code) {
      throw PlanError("module " + to.name + ": " + appup.source + " " + entry.field +
                      ": instructions never change the code of " + to.name +
                      " (add load_module, update or restart_module)");
    }
    return group;
  }

  static void add_manifest_dependencies(Group& group, const ModuleEntry& module) {
    for (const std::string& dependency : module.depends_on) group.depends_on.push_back({dependency, "manifest"});
  }

  PlanStep step_for(const Instruction& instruction, const std::string& origin, const ModuleEntry& from,
                    const ModuleEntry& to, Direction direction) {
    switch (instruction.op) {
      case Op::LoadModule: return code_step(StepKind::LoadModule, from, to, direction);
      case Op::Update: {
        PlanStep step = code_step(StepKind::Update, from, to, direction);
        step.extra = instruction.extra;
        return step;
      }
      case Op::RestartModule: return code_step(StepKind::RestartModule, from, to, direction);
      case Op::Apply: return apply_step(instruction, to.name, origin);
      case Op::AddModule: return add_step(instruction.module, to.name, origin);
      case Op::DeleteModule: return delete_step(instruction.module, to.name, origin);
      case Op::BlueGreen: break;  // group_for_entry records it as a reason, never as a step
    }
    throw PlanError("module " + to.name + ": " + origin + " has no step");
  }

  static PlanStep code_step(StepKind kind, const ModuleEntry& from, const ModuleEntry& to, Direction direction) {
    PlanStep step;
    step.kind = kind;
    step.module = to.name;
    step.direction = direction;
    step.from_version = from.version;
    step.to_version = to.version;
    step.code = to;
    return step;
  }

  PlanStep apply_step(const Instruction& instruction, const std::string& owner, const std::string& origin) const {
    const ModuleEntry* from = current_.find(instruction.module);
    const ModuleEntry* to = target_.find(instruction.module);
    if (!from && !to) {
      throw PlanError("module " + owner + ": " + origin + " applies a task to " + instruction.module +
                      ", which is in neither release");
    }
    PlanStep step;
    step.kind = StepKind::Apply;
    step.module = instruction.module;
    step.direction = module_direction(instruction.module);
    step.from_version = from ? from->version : "";
    step.to_version = to ? to->version : "";
    step.task = instruction.task;
    step.task_args = instruction.args;
    return step;
  }

  PlanStep add_step(const std::string& module, const std::string& owner, const std::string& origin) {
    const ModuleEntry* to = target_.find(module);
    if (!to) {
      throw PlanError("module " + owner + ": " + origin + " adds " + module +
                      ", which the target release does not have");
    }
    if (current_.find(module)) {
      throw PlanError("module " + owner + ": " + origin + " adds " + module +
                      ", which the current release already runs");
    }
    claim(added_, module, origin, "added");
    PlanStep step;
    step.kind = StepKind::AddModule;
    step.module = module;
    step.direction = direction_;
    step.to_version = to->version;
    step.code = *to;
    return step;
  }

  PlanStep delete_step(const std::string& module, const std::string& owner, const std::string& origin) {
    const ModuleEntry* from = current_.find(module);
    if (!from) {
      throw PlanError("module " + owner + ": " + origin + " deletes " + module +
                      ", which the current release does not run");
    }
    if (target_.find(module)) {
      throw PlanError("module " + owner + ": " + origin + " deletes " + module +
                      ", which the target release still has");
    }
    claim(deleted_, module, origin, "deleted");
    PlanStep step;
    step.kind = StepKind::DeleteModule;
    step.module = module;
    step.direction = direction_;
    step.from_version = from->version;
    return step;
  }

  // Records who adds (or deletes) a module; two instructions doing it would start (or stop) it twice.
  static void claim(std::map<std::string, std::string>& claims, const std::string& module, const std::string& origin,
                    const char* verb) {
    const auto [it, inserted] = claims.emplace(module, origin);
    if (!inserted) {
      throw PlanError("module " + module + " is " + verb + " twice: by " + it->second + " and by " + origin);
    }
  }

  void plan_implicit_additions() {
    for (const ModuleEntry& module : target_.modules) {
      if (current_.find(module.name) || added_.count(module.name)) continue;
      Group group;
      group.owner = module.name;
      group.steps.push_back(add_step(module.name, module.name, "manifest"));
      group.steps.back().origin = "manifest";
      add_manifest_dependencies(group, module);
      groups_.push_back(std::move(group));
    }
  }

  void plan_implicit_deletions() {
    for (const ModuleEntry& module : current_.modules) {
      if (target_.find(module.name) || deleted_.count(module.name)) continue;
      Group group;
      group.owner = module.name;
      group.deletion_only = true;
      group.steps.push_back(delete_step(module.name, module.name, "manifest"));
      group.steps.back().origin = "manifest";
      add_manifest_dependencies(group, module);
      groups_.push_back(std::move(group));
    }
  }

  // Which group holds a module's steps: its own, or the one whose instruction adds or deletes it.
  std::map<std::string, size_t> homes() const {
    std::map<std::string, size_t> home;
    for (size_t i = 0; i < groups_.size(); ++i) {
      home.emplace(groups_[i].owner, i);
      for (const PlanStep& step : groups_[i].steps) {
        if (step.kind == StepKind::AddModule || step.kind == StepKind::DeleteModule) home.emplace(step.module, i);
      }
    }
    return home;
  }

  std::vector<PlanStep> ordered_steps() const {
    std::vector<size_t> changes, deletions;
    for (size_t i = 0; i < groups_.size(); ++i) (groups_[i].deletion_only ? deletions : changes).push_back(i);
    const auto by_rank = [this](const ReleaseManifest& release) {
      return [this, &release](size_t a, size_t b) {
        return index_in(release, groups_[a].owner) < index_in(release, groups_[b].owner);
      };
    };
    std::sort(changes.begin(), changes.end(), by_rank(target_));
    std::sort(deletions.begin(), deletions.end(), by_rank(current_));

    std::vector<PlanStep> steps;
    const auto append = [&](const std::vector<size_t>& subset, const std::vector<size_t>& order) {
      for (size_t position : order) {
        const auto& group_steps = groups_[subset[position]].steps;
        steps.insert(steps.end(), group_steps.begin(), group_steps.end());
      }
    };
    append(changes, topological_order(owners(changes), change_prerequisites(changes), true));
    // Deletions run last, dependents before the modules they depend on.
    append(deletions, topological_order(owners(deletions), deletion_prerequisites(deletions), false));
    return steps;
  }

  std::vector<std::string> owners(const std::vector<size_t>& subset) const {
    std::vector<std::string> names;
    for (size_t index : subset) names.push_back(groups_[index].owner);
    return names;
  }

  // For each change group (by position in `changes`), the positions of the groups it waits for.
  std::vector<std::set<size_t>> change_prerequisites(const std::vector<size_t>& changes) const {
    const auto home = homes();
    std::vector<std::set<size_t>> after(changes.size());
    for (size_t position = 0; position < changes.size(); ++position) {
      const Group& group = groups_[changes[position]];
      for (const Dependency& dependency : group.depends_on) {
        const auto it = home.find(dependency.module);
        // A module without steps in this plan (unchanged, or in neither release) imposes no order.
        if (it == home.end() || it->second == changes[position]) continue;
        if (groups_[it->second].deletion_only) {
          throw PlanError(
              "module " + group.owner + ": " + dependency.origin + " depends on " + dependency.module +
              ", which this plan deletes, and deletions run last; delete it with a delete_module instruction instead");
        }
        after[position].insert(size_t(std::find(changes.begin(), changes.end(), it->second) - changes.begin()));
      }
    }
    return after;
  }

  // A deleted module waits for the deleted modules that depend on it (current manifest).
  std::vector<std::set<size_t>> deletion_prerequisites(const std::vector<size_t>& deletions) const {
    std::vector<std::set<size_t>> after(deletions.size());
    for (size_t dependent = 0; dependent < deletions.size(); ++dependent) {
      for (const Dependency& dependency : groups_[deletions[dependent]].depends_on) {
        for (size_t position = 0; position < deletions.size(); ++position) {
          if (groups_[deletions[position]].owner == dependency.module) after[position].insert(dependent);
        }
      }
    }
    return after;
  }

  const ReleaseManifest& current_;
  const ReleaseManifest& target_;
  const AppupSource& appups_;
  Direction direction_ = Direction::Upgrade;
  std::vector<Group> groups_;
  std::map<std::string, std::string> added_;    // module -> the instruction that adds it
  std::map<std::string, std::string> deleted_;  // module -> the instruction that deletes it
  std::vector<std::string> blue_green_;         // Plan::blue_green, in the order met
};

std::string step_details(const PlanStep& step) {
  std::vector<std::string> details;
  if (step.kind == StepKind::Update && !step.extra.is_null()) details.push_back("extra " + step.extra.dump());
  if (step.kind == StepKind::Apply && !step.task_args.is_null()) details.push_back("args " + step.task_args.dump());
  if (step.timeout) details.push_back("timeout " + std::to_string(step.timeout->count()) + "ms");
  return details.empty() ? "" : " (" + join(details, ", ") + ")";
}

}  // namespace

const char* to_string(StepKind kind) {
  switch (kind) {
    case StepKind::LoadModule: return "load_module";
    case StepKind::Update: return "update";
    case StepKind::RestartModule: return "restart_module";
    case StepKind::AddModule: return "add_module";
    case StepKind::DeleteModule: return "delete_module";
    case StepKind::Apply: return "apply";
  }
  return "unknown";
}

std::string PlanStep::describe() const {
  std::string line = std::string(to_string(kind)) + " " + module;
  switch (kind) {
    case StepKind::LoadModule:
    case StepKind::Update:
    case StepKind::RestartModule: line += " " + from_version + " -> " + to_version; break;
    case StepKind::AddModule: line += " " + to_version; break;
    case StepKind::DeleteModule: line += " " + from_version; break;
    case StepKind::Apply: line += " task '" + task + "'"; break;
  }
  return line + step_details(*this);
}

nlohmann::json PlanStep::to_json() const {
  nlohmann::json step = {
      {"kind", to_string(kind)}, {"module", module}, {"direction", to_string(direction)}, {"origin", origin}};
  if (!from_version.empty()) step["from"] = from_version;
  if (!to_version.empty()) step["to"] = to_version;
  if (code) {
    step["file"] = code->file.string();
    step["sha256"] = code->sha256;
  }
  if (kind == StepKind::Update) step["extra"] = extra;
  if (kind == StepKind::Apply) {
    step["task"] = task;
    step["args"] = task_args;
  }
  if (timeout) step["timeout_ms"] = timeout->count();
  return step;
}

std::string Plan::describe() const {
  std::string text = std::string(to_string(direction)) + " " + release_name + " " + from_release + " -> " + to_release +
                     " (" + std::to_string(steps.size()) + (steps.size() == 1 ? " step)" : " steps)") + "\n";
  for (size_t i = 0; i < steps.size(); ++i) {
    text += "  " + std::to_string(i + 1) + ". " + steps[i].describe() + "  [" + steps[i].origin + "]\n";
  }
  if (!blue_green.empty()) {
    text += "  needs a blue-green handover:\n";
    for (const std::string& reason : blue_green) text += "    - " + reason + "\n";
  }
  return text;
}

nlohmann::json Plan::to_json() const {
  nlohmann::json step_list = nlohmann::json::array();
  for (const PlanStep& step : steps) step_list.push_back(step.to_json());
  return {{"direction", to_string(direction)},
          {"release", release_name},
          {"from", from_release},
          {"to", to_release},
          {"steps", std::move(step_list)},
          {"blue_green", blue_green}};
}

void check_appup_is_of(const Appup& appup, const ModuleEntry& module) {
  if (appup.module != module.name) {
    throw InputError(appup.source, "module",
                     "is '" + appup.module + "' but the release ships this appup with module " + module.name);
  }
  if (appup.version != module.version) {
    throw InputError(
        appup.source, "version",
        "is " + appup.version + " but the release ships this appup with " + module.name + " " + module.version);
  }
}

Plan make_plan(const ReleaseManifest& current, const ReleaseManifest& target, const AppupSource& appups) {
  return Planner(current, target, appups).plan();
}

}  // namespace hotswap::appup
