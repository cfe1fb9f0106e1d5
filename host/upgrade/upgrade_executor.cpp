#include "upgrade/upgrade_executor.hpp"

#include <spdlog/spdlog.h>

#include <map>
#include <set>

namespace hotswap::host {
namespace {

using appup::PlanStep;
using appup::StepKind;
using Clock = std::chrono::steady_clock;

void emit_paused_steps(const ProgressListener& progress, const std::vector<std::string>& paused,
                       const std::vector<StepReport>& steps) {
  if (!progress) return;
  emit_progress(progress, {{"event", "paused"}, {"modules", paused}});
  for (size_t i = 0; i < steps.size(); ++i)
    emit_progress(progress, {{"event", "step"},
                       {"index", i + 1},
                       {"step", steps[i].description},
                       {"ok", steps[i].ok},
                       {"ms", to_ms(steps[i].duration)},
                       {"error", steps[i].error}});
}

}  // namespace

UpgradeReport UpgradeExecutor::run(const appup::Plan& plan, const ProgressListener& progress) {
  return apply(prepare(plan, progress), progress);
}

UpgradeReport UpgradeExecutor::apply(PreparedUpgrade prepared, const ProgressListener& progress,
                                     RetiredLibraries* defer) {
  auto emit = [&](const nlohmann::json& event) { emit_progress(progress, event); };
  UpgradeReport report = std::move(prepared.report_);
  const appup::Plan& plan = prepared.plan_;
  if (!report.error.empty()) {
    report.outcome = UpgradeReport::Outcome::Refused;
    emit({{"event", "refused"}, {"error", report.error}});
    spdlog::warn("{}", report.summary());
    return report;
  }

  // 2. Suspend only the affected modules.
  Clock::time_point pause_start = Clock::now();
  std::vector<ModuleSlot*> suspended;
  for (const std::string& name : prepared.affected_) {
    ModuleSlot* slot = registry_.find(name);
    registry_.suspend(*slot);
    suspended.push_back(slot);
  }

  // 3. Migrate into staged instances; the live ones are only read.
  std::map<std::string, std::unique_ptr<ModuleInstance>> staged;
  std::vector<std::unique_ptr<ModuleInstance>> superseded;  // staged twice in one plan
  std::set<std::string> deleted;
  auto instance_of = [&](const std::string& module) -> ModuleInstance& {
    auto it = staged.find(module);
    if (it != staged.end()) return *it->second;
    return registry_.find(module)->active();
  };
  auto stage = [&](const std::string& module, std::unique_ptr<ModuleInstance> next) {
    auto& place = staged[module];
    if (place) {
      next->inherit_held_effects(*place);
      superseded.push_back(std::move(place));
    }
    place = std::move(next);
  };
  // The instance an `apply` task runs on: the module's staged instance, or a
  // staged copy of the live one (same library, its exported state imported),
  // so that the task's changes and effects commit or roll back with the plan
  // and the live instance stays exactly as it was until commit.
  auto staged_for_task = [&](const std::string& module) -> ModuleInstance& {
    auto it = staged.find(module);
    if (it != staged.end()) return *it->second;
    ModuleInstance& live = registry_.find(module)->active();
    auto copy = std::make_unique<ModuleInstance>(live.library_ptr(), registry_, registry_.module_config(module), true);
    copy->import_state(live.library().state_schema(), live.export_state());
    ModuleInstance& ref = *copy;
    stage(module, std::move(copy));
    return ref;
  };

  bool failed = false;
  for (size_t i = 0; i < plan.steps.size() && !failed; ++i) {
    const PlanStep& step = plan.steps[i];
    StepReport sr{prepared.descriptions_[i], step.module, {}, false, {}};
    Clock::time_point step_start = Clock::now();
    try {
      const std::shared_ptr<LoadedLibrary>& library = prepared.libraries_[i];
      auto fresh = [&] {
        return std::make_unique<ModuleInstance>(library, registry_, registry_.module_config(step.module), true);
      };
      const std::string& extra = prepared.extras_[i];
      switch (step.kind) {
        case StepKind::LoadModule: {
          ModuleInstance& old = instance_of(step.module);
          std::string state = old.export_state();
          auto next = fresh();
          next->import_state(old.library().state_schema(), state);
          stage(step.module, std::move(next));
          break;
        }
        case StepKind::Update: {
          ModuleInstance& old = instance_of(step.module);
          auto next = fresh();
          if (step.direction == appup::Direction::Upgrade) {
            std::string state = old.export_state();
            next->migrate_up(old.version(), old.library().state_schema(), state, extra);
          } else {
            std::string state = old.migrate_down(library->version(), library->state_schema(), extra);
            next->import_state(library->state_schema(), state);
          }
          stage(step.module, std::move(next));
          break;
        }
        case StepKind::RestartModule:
        case StepKind::AddModule:
          stage(step.module, fresh());
          break;
        case StepKind::DeleteModule:
          deleted.insert(step.module);
          break;
        case StepKind::Apply:
          staged_for_task(step.module).run_task(step.task, step.task_args.dump());
          break;
      }
      sr.duration = Clock::now() - step_start;
      if (step.timeout && sr.duration > *step.timeout)
        throw std::runtime_error(
            fmt::format("took {:.1f} ms, over its timeout of {} ms", to_ms(sr.duration), step.timeout->count()));
      sr.ok = true;
    } catch (const std::exception& e) {
      sr.duration = Clock::now() - step_start;
      sr.error = e.what();
      report.error = "step " + std::to_string(i + 1) + " (" + sr.description + ") failed: " + e.what();
      failed = true;
    }
    report.steps.push_back(std::move(sr));
    if (!failed && step_hook_) step_hook_(i);
  }

  // 4. Commit or roll back, then resume. Progress for the paused part is
  // reported after resuming, so that reporting never lengthens the pause.
  std::vector<std::unique_ptr<ModuleInstance>> retired;
  if (failed) {
    staged.clear();
    superseded.clear();
    for (ModuleSlot* slot : suspended) registry_.resume(*slot);
    report.pause = Clock::now() - pause_start;
    report.outcome = UpgradeReport::Outcome::RolledBack;
    emit_paused_steps(progress, prepared.affected_, report.steps);
    emit({{"event", "rolled_back"},
          {"error", report.error},
          {"pause_us", std::chrono::duration<double, std::micro>(report.pause).count()}});
  } else {
    std::vector<ModuleSlot*> to_resume;
    for (ModuleSlot* slot : suspended) {
      if (deleted.count(slot->name())) {
        staged.erase(slot->name());
        retired.push_back(registry_.remove(*slot));
        continue;
      }
      auto it = staged.find(slot->name());
      if (it != staged.end()) {
        retired.push_back(registry_.replace(*slot, std::move(it->second)));
        staged.erase(it);
      }
      to_resume.push_back(slot);
    }
    for (auto& [name, instance] : staged)  // modules the plan added
      if (!deleted.count(name)) to_resume.push_back(&registry_.adopt(name, std::move(instance)));
    staged.clear();
    for (ModuleSlot* slot : to_resume) registry_.resume(*slot);
    report.pause = Clock::now() - pause_start;
    report.outcome = UpgradeReport::Outcome::Committed;
    emit_paused_steps(progress, prepared.affected_, report.steps);
    emit({{"event", "committed"}, {"pause_us", std::chrono::duration<double, std::micro>(report.pause).count()}});
  }

  // 5. Purge, after resuming: the old instances' destroy runs on the loop; their
  // libraries are closed here, or by the caller when it deferred them.
  Clock::time_point purge_start = Clock::now();
  RetiredLibraries closing_here;
  RetiredLibraries& retire_to = defer != nullptr ? *defer : closing_here;
  for (auto& instance : superseded) retired.push_back(std::move(instance));
  for (auto& instance : retired) {
    std::shared_ptr<LoadedLibrary> library = instance->library_ptr();
    instance.reset();
    retire_to.add(std::move(library));
  }
  retired.clear();
  if (failed)  // the libraries of a rolled-back plan; after a commit they serve
    for (auto& library : prepared.libraries_) retire_to.add(std::move(library));
  prepared.libraries_.clear();
  if (defer == nullptr) {
    report.leaked = closing_here.close_all();
    report.purge_time = Clock::now() - purge_start;
    emit({{"event", "purged"}, {"purge_ms", to_ms(report.purge_time)}, {"leaked", report.leaked}});
  } else {
    report.purge_time = Clock::now() - purge_start;
  }
  spdlog::level::level_enum level = report.committed() ? spdlog::level::info : spdlog::level::warn;
  if (spdlog::should_log(level)) spdlog::log(level, "{}", report.summary());
  return report;
}

}  // namespace hotswap::host
