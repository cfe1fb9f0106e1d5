#include "upgrade/upgrade_executor.hpp"

#include <spdlog/spdlog.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
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

// The state of a live instance that moved to staged instances by adoption:
// `holder` owns it now (the last staged instance that adopted it). On rollback
// the holder hands it back to `live`.
struct Donation {
  ModuleInstance* live = nullptr;
  ModuleInstance* holder = nullptr;
};

// Moves the state of `from` into `to`. When `to` refuses it, `from` takes it
// back (the module's contract: adopt_state did not take ownership) and the
// refusal is rethrown.
void hand_over_state(ModuleInstance& from, ModuleInstance& to, const std::vector<hotswap_address_range>& old_code) {
  void* state = from.release_state();
  try {
    to.adopt_state(state, from, old_code);
  } catch (const std::exception& refused) {
    try {
      from.adopt_state(state, to, {});
    } catch (const std::exception& e) {
      spdlog::critical("module {} {}: could not take its own state back after {} {} refused it: {}; the state is lost",
                       from.library().name(), from.version(), to.library().name(), to.version(), e.what());
    }
    throw;
  }
}

constexpr size_t kHugePage = size_t(2) << 20;

}  // namespace

void UpgradeExecutor::prepare_export_buffer(size_t last_export_bytes) {
  std::string& bytes = export_buffer_.bytes;
  // Room for the last export plus an eighth, for a state that keeps growing.
  const size_t wanted = std::min(last_export_bytes + last_export_bytes / 8, kMaxStateBytes);
  if (last_export_bytes == 0) return;
  if (bytes.capacity() >= wanted && bytes.capacity() / 4 <= wanted) return;  // fits, and not far too big
  std::string fresh;
  fresh.reserve(wanted);
#ifdef MADV_HUGEPAGE
  if (wanted >= 2 * kHugePage) {
    auto begin = (reinterpret_cast<uintptr_t>(fresh.data()) + kHugePage - 1) & ~(kHugePage - 1);
    auto end = (reinterpret_cast<uintptr_t>(fresh.data()) + fresh.capacity()) & ~(kHugePage - 1);
    if (end > begin) (void)::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);  // a hint
  }
#endif
  fresh.resize(fresh.capacity());  // writes every page: faulted here, not in the next pause
  fresh.clear();                   // keeps the capacity
  bytes.swap(fresh);
}

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

  // 3. Migrate into staged instances; the live ones are only read, or give
  // their state object away by adoption (handed back on rollback).
  std::map<std::string, std::unique_ptr<ModuleInstance>> staged;
  std::map<std::string, Donation> donations;
  size_t largest_export = 0;
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
    StepReport sr{prepared.descriptions_[i], step.module, {}, false, {}, {}, {}};
    Clock::time_point step_start = Clock::now();
    try {
      const std::shared_ptr<LoadedLibrary>& library = prepared.libraries_[i];
      auto fresh = [&] {
        return std::make_unique<ModuleInstance>(library, registry_, registry_.module_config(step.module), true);
      };
      const std::string& extra = prepared.extras_[i];
      const StateHandover& handover = prepared.handovers_[i];
      bool adopt = handover.path == StateHandover::Path::Adopt && adoption_enabled_;
      if (handover.path != StateHandover::Path::None) {
        sr.state_path = adopt ? "adopt" : "export_import";
        sr.fallback = adopt || !handover.fallback_reason.empty() ? handover.fallback_reason
                                                                 : "state adoption is turned off in this host";
      }
      hotswap_buffer& buffer = export_buffer_;
      buffer.bytes.clear();  // keeps its (pre-faulted) capacity
      auto exported = [&] {
        largest_export = std::max(largest_export, buffer.bytes.size());
        return std::string_view(buffer.bytes);
      };
      switch (step.kind) {
        case StepKind::LoadModule:
        case StepKind::Update: {
          ModuleInstance& old = instance_of(step.module);
          auto next = fresh();
          if (adopt) {
            hand_over_state(old, *next, handover.old_code);
            bool old_is_live = staged.count(step.module) == 0;
            auto donation = donations.find(step.module);
            if (old_is_live)
              donations[step.module] = {&old, next.get()};
            else if (donation != donations.end() && donation->second.holder == &old)
              donation->second.holder = next.get();
          } else if (step.kind == StepKind::LoadModule) {
            old.export_state_into(buffer);
            next->import_state(old.library().state_schema(), exported());
          } else if (step.direction == appup::Direction::Upgrade) {
            old.export_state_into(buffer);
            next->migrate_up(old.version(), old.library().state_schema(), exported(), extra);
          } else {
            old.migrate_down_into(buffer, library->version(), library->state_schema(), extra);
            next->import_state(library->state_schema(), exported());
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
    // The live instances that gave their state away take the same object back.
    for (auto& [module, donation] : donations) {
      try {
        hand_over_state(*donation.holder, *donation.live, {});
      } catch (const std::exception& e) {
        spdlog::critical("module {}: rollback could not give the adopted state back: {}", module, e.what());
        report.error += "; rollback could not give module " + module + " its state back: " + e.what();
      }
    }
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
    emit(purged_event(report));
  } else {
    report.purge_time = Clock::now() - purge_start;
  }
  // Outside the pause: ready the buffer for the next swap of this size.
  prepare_export_buffer(largest_export);
  spdlog::level::level_enum level = report.committed() ? spdlog::level::info : spdlog::level::warn;
  if (spdlog::should_log(level)) spdlog::log(level, "{}", report.summary());
  return report;
}

}  // namespace hotswap::host
