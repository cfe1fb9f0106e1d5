#include "upgrade/upgrade_check.hpp"

#include <cstdio>
#include <map>
#include <set>

namespace hotswap::host {
namespace {

using appup::PlanStep;
using appup::StepKind;
using Clock = std::chrono::steady_clock;

bool changes_code(StepKind kind) {
  return kind == StepKind::LoadModule || kind == StepKind::Update || kind == StepKind::RestartModule ||
         kind == StepKind::AddModule;
}

// The code a module runs at some point of the plan: the live library, or one the plan loads.
struct CodeAtStep {
  const LoadedLibrary* library = nullptr;
  bool exists = false;
};

// Loads and checks every library the plan needs; fills libraries and affected.
// Throws with a message naming the step on the first problem; `step_index` is
// then that step's index.
void check_plan(const appup::Plan& plan, const RunningCode& running, LibraryLoader& loader,
                std::vector<std::shared_ptr<LoadedLibrary>>& libraries, std::vector<std::string>& affected,
                size_t& step_index) {
  std::set<std::string> touched;
  std::map<std::string, CodeAtStep> code;  // what each module runs after the steps so far
  auto code_of = [&](const std::string& module) -> CodeAtStep& {
    auto it = code.find(module);
    if (it != code.end()) return it->second;
    CodeAtStep now;
    auto live = running.find(module);
    if (live != running.end()) now = {live->second.get(), true};
    return code.emplace(module, now).first->second;
  };

  for (step_index = 0; step_index < plan.steps.size(); ++step_index) {
    const PlanStep& step = plan.steps[step_index];
    std::string where = "step '" + step.describe() + "': ";
    CodeAtStep& current = code_of(step.module);
    std::shared_ptr<LoadedLibrary> library;
    if (step.kind == StepKind::AddModule && current.exists)
      throw std::runtime_error(where + "module " + step.module + " is already running");
    if (step.kind != StepKind::AddModule && !current.exists)
      throw std::runtime_error(where + "module " + step.module + " is not running (missing from the release)");
    if (changes_code(step.kind)) {
      if (!step.code) throw std::runtime_error(where + "the plan names no file to load");
      library = loader.load(step.code->file, {step.code->name, step.code->version, step.code->sha256});
      const hotswap_module_descriptor& next = library->descriptor();
      if (step.kind == StepKind::LoadModule)
        if (std::string refusal = load_module_schema_refusal(current.library->state_schema(), library->state_schema());
            !refusal.empty())
          throw std::runtime_error(where + refusal);
      if (step.kind == StepKind::Update && step.direction == appup::Direction::Upgrade && next.migrate_up == nullptr)
        throw std::runtime_error(where + library->name() + " " + library->version() + " has no migrate_up");
      if (step.kind == StepKind::Update && step.direction == appup::Direction::Downgrade &&
          current.library->descriptor().migrate_down == nullptr)
        throw std::runtime_error(where + current.library->name() + " " + current.library->version() +
                                 " has no migrate_down, so it cannot hand its state to an older version");
      current = {library.get(), true};
    }
    if (step.kind == StepKind::DeleteModule) current = {};
    if (running.count(step.module) != 0) touched.insert(step.module);
    libraries.push_back(std::move(library));
  }
  affected.assign(touched.begin(), touched.end());
}

std::string hex(uint64_t v) {
  char text[24];
  std::snprintf(text, sizeof text, "0x%016llx", static_cast<unsigned long long>(v));
  return text;
}

}  // namespace

std::string load_module_schema_refusal(uint32_t from_schema, uint32_t to_schema) {
  if (from_schema == to_schema) return {};
  return "load_module hands state over unchanged, but the state schema changes from " + std::to_string(from_schema) +
         " to " + std::to_string(to_schema) + "; the appup must use update";
}

const char* to_string(StateHandover::Path path) {
  switch (path) {
    case StateHandover::Path::None:
      return "none";
    case StateHandover::Path::Adopt:
      return "adopt";
    case StateHandover::Path::ExportImport:
      return "export_import";
  }
  return "?";
}

std::string adoption_refusal(const LoadedLibrary& from, const LoadedLibrary& to) {
  auto lacks = [](const LoadedLibrary& lib) -> std::string {
    const hotswap_module_descriptor& d = lib.descriptor();
    std::string who = lib.name() + " " + lib.version();
    if (!HOTSWAP_DESCRIPTOR_HAS(&d, adopt_state))
      return who + " cannot hand its state over in place (its descriptor predates state adoption)";
    if (d.state_fingerprint == 0 || d.release_state == nullptr || d.adopt_state == nullptr)
      return who + " does not opt into state adoption (no state fingerprint, release_state or adopt_state)";
    return {};
  };
  if (std::string why = lacks(from); !why.empty()) return why;
  if (std::string why = lacks(to); !why.empty()) return why;
  if (from.descriptor().state_fingerprint != to.descriptor().state_fingerprint)
    return "state fingerprints differ (" + from.version() + ": " + hex(from.descriptor().state_fingerprint) + ", " +
           to.version() + ": " + hex(to.descriptor().state_fingerprint) + "): the state layout changed";
  return {};
}

// Decides each step's state path from the checked libraries (the live code of
// each module, then what the plan loads), before the pause.
void plan_handovers(PreparedUpgrade& prepared, const RunningCode& running) {
  const appup::Plan& plan = prepared.plan_;
  std::map<std::string, const LoadedLibrary*> code;
  for (const auto& [name, library] : running) code[name] = library.get();
  prepared.handovers_.assign(plan.steps.size(), {});
  for (size_t i = 0; i < plan.steps.size(); ++i) {
    const PlanStep& step = plan.steps[i];
    const LoadedLibrary* next = prepared.libraries_[i].get();
    StateHandover& handover = prepared.handovers_[i];
    if ((step.kind == StepKind::LoadModule || step.kind == StepKind::Update) && next != nullptr) {
      const LoadedLibrary* from = code[step.module];
      handover.path = StateHandover::Path::ExportImport;
      if (from->state_schema() != next->state_schema()) {
        handover.fallback_reason = "the state schema changes (" + std::to_string(from->state_schema()) + " -> " +
                                   std::to_string(next->state_schema()) + "): the new code migrates it";
      } else {
        handover.fallback_reason = adoption_refusal(*from, *next);
      }
      for (size_t j = i + 1; j < plan.steps.size() && handover.fallback_reason.empty(); ++j)
        if (plan.steps[j].kind == StepKind::Apply && plan.steps[j].module == step.module)
          handover.fallback_reason =
              "a later apply task runs on the new instance, and must not change the state the old one keeps until "
              "commit";
      if (handover.fallback_reason.empty()) {
        handover.old_code = library_mapped_ranges(*from);
        if (handover.old_code.empty())
          handover.fallback_reason = "the old library's mapped segments were not found, so the state cannot be "
                                     "checked for addresses inside it";
        else
          handover.path = StateHandover::Path::Adopt;
      }
    }
    if (next != nullptr) code[step.module] = next;
    if (step.kind == StepKind::DeleteModule) code.erase(step.module);
  }
}

RunningCode running_code(const ModuleRegistry& registry) {
  RunningCode code;
  for (const ModuleSlot* slot : registry.slots()) code.emplace(slot->name(), slot->active().library_ptr());
  return code;
}

PreparedUpgrade check_upgrade(const appup::Plan& plan, ModuleRegistry& registry, LibraryLoader& loader,
                              const ProgressListener& progress) {
  return check_upgrade(plan, running_code(registry), loader, progress);
}

PreparedUpgrade check_upgrade(const appup::Plan& plan, const RunningCode& running, LibraryLoader& loader,
                              const ProgressListener& progress) {
  PreparedUpgrade prepared;
  prepared.plan_ = plan;
  UpgradeReport& report = prepared.report_;
  report.direction = plan.direction;
  report.release_name = plan.release_name;
  report.from_release = plan.from_release;
  report.to_release = plan.to_release;
  emit_progress(progress, {{"event", "check"}, {"steps", plan.steps.size()}});
  Clock::time_point check_start = Clock::now();
  size_t step_index = 0;
  try {
    check_plan(plan, running, loader, prepared.libraries_, prepared.affected_, step_index);
  } catch (const std::exception& e) {
    report.error = e.what();
    prepared.libraries_.clear();
    if (step_index < plan.steps.size()) prepared.failed_step_ = step_index;
  }
  if (prepared.ok()) plan_handovers(prepared, running);
  report.check_time = Clock::now() - check_start;
  for (const PlanStep& step : plan.steps) {
    prepared.descriptions_.push_back(step.describe());
    prepared.extras_.push_back(step.extra.dump());
  }
  if (prepared.ok()) emit_progress(progress, {{"event", "loaded"}, {"check_ms", to_ms(report.check_time)}});
  return prepared;
}

}  // namespace hotswap::host
