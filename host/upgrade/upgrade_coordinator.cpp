#include "upgrade/upgrade_coordinator.hpp"

#include <pthread.h>
#include <sched.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/post.hpp>
#include <boost/filesystem/operations.hpp>
#include <chrono>
#include <hotswap/appup/planner.hpp>
#include <map>

#include "core/library_loader.hpp"
#include "core/sha256.hpp"
#include "release/release_files.hpp"
#include "upgrade/retired_libraries.hpp"

namespace hotswap::host {

namespace asio = boost::asio;
namespace fs = boost::filesystem;

const char* const kHostStopping = "the host is stopping";

namespace {

using Clock = std::chrono::steady_clock;

UpgradeReport refused_report(const appup::ReleaseManifest& running, const std::string& to, const std::string& why) {
  UpgradeReport r;
  r.outcome = UpgradeReport::Outcome::Refused;
  r.release_name = running.name;
  r.from_release = running.version;
  r.to_release = to;
  r.direction = direction_between(running.version, to);  // a refused downgrade says "downgrade"
  r.error = why;
  return r;
}

// Marks `version` failed in RELEASES.json, so that reload skips it. Best
// effort: the upgrade's own outcome stands whatever happens here.
void record_failed_target(ReleaseStore& store, const std::string& version, const std::string& error) {
  try {
    store.mark_failed(version, error);
    spdlog::warn("release {} marked failed: reload skips it until it is named (`hotswap upgrade {}`), removed or "
                 "unpacked again",
                 version, version);
  } catch (const std::exception& e) {
    spdlog::warn("release {} failed, and marking it so in the release store failed too: {}", version, e.what());
  }
}

// Runs a hop's half; an exception there is a bug, and must neither kill the
// worker thread nor escape the event loop.
void run_guarded(const char* where, const std::function<void()>& part) {
  try {
    part();
  } catch (const std::exception& e) {
    spdlog::error("unexpected error on the {}: {}", where, e.what());
  } catch (...) {
    spdlog::error("unexpected non-standard exception on the {}", where);
  }
}

}  // namespace

void check_config_matches(const RuntimeConfig& config, const appup::ReleaseManifest& manifest,
                          const fs::path& config_file) {
  for (const auto& listener : config.listeners)
    if (manifest.find(listener.module) == nullptr)
      throw ConfigError(config_file.string(), "listeners." + listener.name + ".module",
                        "module '" + listener.module + "' is not in release " + manifest.version);
  for (const auto& [name, section] : config.modules)
    if (manifest.find(name) == nullptr)
      throw ConfigError(config_file.string(), "modules." + name,
                        "module '" + name + "' is not in release " + manifest.version);
}

appup::ReleaseManifest load_unpacked_release(const ReleaseStore& store, const std::string& version) {
  if (!store.exists(version))
    throw std::runtime_error("release " + version + " is not unpacked under " + store.releases_dir().string() +
                             " (use `hotswap unpack FILE`)");
  return load_release_manifest(store.release_dir(version));
}

const char* to_string(UpgradeCoordinator::State state) {
  switch (state) {
    case UpgradeCoordinator::State::Idle:
      return "idle";
    case UpgradeCoordinator::State::Planning:
      return "planning";
    case UpgradeCoordinator::State::Rehearsing:
      return "rehearsing";
    case UpgradeCoordinator::State::Preparing:
      return "preparing";
    case UpgradeCoordinator::State::Applying:
      return "applying";
    case UpgradeCoordinator::State::HandingOver:
      return "handing_over";
    case UpgradeCoordinator::State::Finishing:
      return "finishing";
  }
  return "unknown";
}

// One upgrade. Which thread may touch it follows the state: the worker while
// Preparing and Finishing, the loop otherwise; each hop hands it over through
// the io_context and the thread pool's queues, which order the accesses.
struct UpgradeCoordinator::Job {
  UpgradeRequest request;
  ProgressListener progress;  // called on the loop only
  Done done;
  RunningRelease running;  // its libraries are let go on the worker, once checked
  // Set on the loop by stop(); the worker skips what is left of the check.
  std::atomic<bool> cancelled{false};

  appup::ReleaseManifest target;
  RuntimeConfig target_config;
  appup::Plan plan;
  // Set by the plan phase when the plan is to be rehearsed.
  std::optional<RehearsalInput> rehearsal_input;
  std::string plan_sha256;               // plan_digest(plan), made on the worker with the rehearsal input
  std::shared_ptr<Rehearsal> rehearsal;  // while Rehearsing
  std::optional<RehearsalReport> rehearsal_report;
  bool load_refused = false;  // the rehearsal failed loading the new code: a plain check refusal
  std::optional<PreparedUpgrade> prepared;
  std::string refusal;  // set when refused before anything paused
  UpgradeReport report;
  RetiredLibraries retired;

  // Finishing's results.
  std::vector<std::string> leaked;
  std::chrono::nanoseconds purge_time{0};  // closing the libraries, on the worker
  std::string record_error;
  std::optional<ReleaseBookkeeping> bookkeeping;

  // Why the plan needs a blue-green handover (empty: in place), set while planning.
  std::vector<std::string> handover_reasons;
  bool handed_over = false;  // the handover ran and reported (committed or not)
};

UpgradeCoordinator::UpgradeCoordinator(asio::io_context& loop, ReleaseStore& store, LibraryLoader& loader,
                                       ModuleRegistry& registry, UpgradeExecutor& executor, HostCallbacks host)
    : loop_(loop),
      store_(store),
      loader_(loader),
      registry_(registry),
      executor_(executor),
      host_(std::move(host)),
      bookkeeping_(read_bookkeeping()) {
  // The worker (checks, unpacking, closing libraries, fsyncs) must not preempt
  // the event loop on a small machine: batch scheduling and a lower priority. Best effort.
  asio::post(worker_, [] {
    sched_param param{};
    ::pthread_setschedparam(::pthread_self(), SCHED_BATCH, &param);
    ::setpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)), 19);
  });
}

UpgradeCoordinator::~UpgradeCoordinator() {
  // A rehearsal child still running (the loop stopped without stop()) is killed and reaped here.
  if (current_job_ && current_job_->rehearsal) current_job_->rehearsal->abandon();
  if (current_job_) current_job_->rehearsal.reset();
  worker_.join();
}

ReleaseBookkeeping UpgradeCoordinator::read_bookkeeping() const {
  return {store_.permanent(), store_.current(), unrecorded_release_};
}

std::string UpgradeCoordinator::repair_record() {
  if (!unrecorded_release_) return {};
  try {
    store_.mark_current(*unrecorded_release_);
  } catch (const std::exception& e) {
    return "release " + *unrecorded_release_ + " runs, but recording it as current still fails: " + e.what();
  }
  spdlog::info("release {} is now recorded as current (its record had failed after the upgrade)",
               *unrecorded_release_);
  unrecorded_release_.reset();
  return {};
}

void UpgradeCoordinator::refresh_bookkeeping() { bookkeeping_ = read_bookkeeping(); }

void UpgradeCoordinator::hop(std::function<void()> work, std::function<void()> then) {
  ++hops_in_flight_;
  asio::post(worker_, [this, work = std::move(work), then = std::move(then)]() mutable {
    run_guarded("worker thread", work);
    // What `work` holds is let go here, on the worker, before the loop goes on.
    work = nullptr;
    asio::post(loop_, [this, then = std::move(then)]() mutable {
      --hops_in_flight_;
      run_guarded("event loop", then);
      then = nullptr;
      notify_if_idle();
    });
  });
}

bool UpgradeCoordinator::run_on_worker(std::function<void()> work, std::function<void()> then) {
  if (stopping_) return false;
  hop(std::move(work), std::move(then));
  return true;
}

void UpgradeCoordinator::write_store(std::function<void(ReleaseStore&)> write,
                                     std::function<void(const std::string& error)> done) {
  struct Outcome {
    std::string error;
    ReleaseBookkeeping bookkeeping;
  };
  auto outcome = std::make_shared<Outcome>();
  bool posted = run_on_worker(
      [this, write = std::move(write), outcome] {
        outcome->error = repair_record();
        if (outcome->error.empty()) {
          try {
            write(store_);
          } catch (const std::exception& e) {
            outcome->error = e.what();
          }
        }
        outcome->bookkeeping = read_bookkeeping();
      },
      [this, outcome, done] {
        bookkeeping_ = outcome->bookkeeping;
        done(outcome->error);
      });
  if (!posted) done(kHostStopping);
}

void UpgradeCoordinator::stop(std::function<void()> on_idle) {
  if (stopping_) return;
  stopping_ = true;
  on_idle_ = std::move(on_idle);
  if (state_ == State::Rehearsing && current_job_->rehearsal) current_job_->rehearsal->cancel(kHostStopping);
  if (state_ == State::Planning || state_ == State::Rehearsing || state_ == State::Preparing) {
    current_job_->cancelled = true;
    spdlog::info("stopping: the upgrade to {} is cancelled; waiting for its check to come back", target_version_);
  }
  notify_if_idle();
}

void UpgradeCoordinator::notify_if_idle() {
  if (!stopping_ || hops_in_flight_ != 0 || !on_idle_) return;
  std::function<void()> on_idle = std::move(on_idle_);
  on_idle_ = nullptr;
  on_idle();
}

// ---- an upgrade ----------------------------------------------------------------

void UpgradeCoordinator::start(const UpgradeRequest& request, RunningRelease running, ProgressListener progress,
                               Done done) {
  if (state_ != State::Idle) {
    UpgradeReport report =
        refused_report(running.manifest, request.version, "busy: an upgrade to " + target_version_ + " is in progress");
    report.outcome = UpgradeReport::Outcome::Busy;
    return done(report);
  }
  if (stopping_) return done(refused_report(running.manifest, request.version, kHostStopping));
  auto job = std::make_shared<Job>();
  job->request = request;
  job->progress = std::move(progress);
  job->done = std::move(done);
  job->running = std::move(running);
  state_ = State::Planning;
  target_version_ = request.version;
  current_job_ = job;
  hop([this, job] { plan(*job); }, [this, job] { planned(job); });
}

namespace {

const ListenerConfig* find_listener(const RuntimeConfig& config, const std::string& name) {
  for (const ListenerConfig& listener : config.listeners)
    if (listener.name == name) return &listener;
  return nullptr;
}

std::string join_names(const std::vector<std::string>& names) {
  std::string text;
  for (const std::string& name : names) text += (text.empty() ? "" : ", ") + name;
  return text;
}

// "adds game2, removes admin2, changes main" (or "reorders them").
std::string listener_changes(const RuntimeConfig& running, const RuntimeConfig& target) {
  std::vector<std::string> added, removed, changed;
  for (const ListenerConfig& listener : target.listeners) {
    const ListenerConfig* before = find_listener(running, listener.name);
    if (before == nullptr) {
      added.push_back(listener.name);
      continue;
    }
    RuntimeConfig one_before, one_after;
    one_before.listeners = {*before};
    one_after.listeners = {listener};
    if (!one_before.same_listeners(one_after)) changed.push_back(listener.name);
  }
  for (const ListenerConfig& listener : running.listeners)
    if (find_listener(target, listener.name) == nullptr) removed.push_back(listener.name);
  std::vector<std::string> parts;
  if (!added.empty()) parts.push_back("adds " + join_names(added));
  if (!removed.empty()) parts.push_back("removes " + join_names(removed));
  if (!changed.empty()) parts.push_back("changes " + join_names(changed));
  if (parts.empty()) parts.push_back("reorders them");
  return join_names(parts);
}

}  // namespace

std::vector<std::string> blue_green_reasons(const appup::Plan& plan, const std::set<std::string>& listener_owners,
                                            const RuntimeConfig& running_config, const RuntimeConfig& target_config) {
  std::vector<std::string> reasons = plan.blue_green;
  if (!running_config.same_listeners(target_config))
    reasons.push_back("the listeners change: the target's runtime config " +
                      listener_changes(running_config, target_config));
  for (const appup::PlanStep& step : plan.steps)
    if (step.kind == appup::StepKind::DeleteModule && listener_owners.count(step.module) != 0)
      reasons.push_back("module " + step.module + " is deleted but owns a listener and its connections");
  return reasons;
}

std::vector<std::string> module_abi_changes(const appup::Plan& plan) {
  std::vector<std::string> reasons;
  for (const appup::PlanStep& step : plan.steps) {
    if (!step.code) continue;
    std::optional<uint32_t> abi;
    try {
      abi = read_module_abi_tag(step.code->file);
    } catch (const LoadError&) {
      continue;  // its load fails with this error, naming the step
    }
    if (abi && *abi > HOTSWAP_ABI_VERSION)
      reasons.push_back("module " + step.module + " " + step.to_version + " is built for module ABI " +
                        std::to_string(*abi) + ", newer than this host supports (" + supported_module_abis() + ")");
  }
  return reasons;
}

fs::path release_host_binary(const fs::path& release_dir) { return release_dir / "bin" / "hotswap"; }

std::optional<std::string> host_binary_change(const fs::path& running_release_dir, const fs::path& target_release_dir,
                                              const std::function<std::string()>& running_program_sha256) {
  const fs::path target_binary = release_host_binary(target_release_dir);
  if (!fs::exists(target_binary)) return std::nullopt;
  const std::string target_sha = sha256_file(target_binary);
  const fs::path running_binary = release_host_binary(running_release_dir);
  if (fs::exists(running_binary) && sha256_file(running_binary) == target_sha) return std::nullopt;
  const std::string running_sha = running_program_sha256();
  if (running_sha == target_sha) return std::nullopt;
  return "the host binary changes (sha256 " + running_sha.substr(0, 12) + "... -> " + target_sha.substr(0, 12) +
         "...)";
}

std::vector<std::string> UpgradeCoordinator::handover_reasons(const std::string& version,
                                                              const appup::ReleaseManifest& running,
                                                              const RuntimeConfig& running_config,
                                                              const std::set<std::string>& listener_owners,
                                                              const appup::Plan& plan) {
  const RuntimeConfig target_config = load_runtime_config(store_.runtime_config_path(version));
  std::vector<std::string> reasons = blue_green_reasons(plan, listener_owners, running_config, target_config);
  for (std::string& reason : module_abi_changes(plan)) reasons.push_back(std::move(reason));
  const std::optional<std::string> binary_change =
      host_binary_change(store_.release_dir(running.version), store_.release_dir(version), [this] {
        if (running_program_sha256_.empty()) running_program_sha256_ = sha256_file(running_program_);
        return running_program_sha256_;
      });
  if (binary_change) reasons.push_back(*binary_change);
  return reasons;
}

std::vector<std::string> UpgradeCoordinator::handover_reasons(const Job& job) {
  std::vector<std::string> reasons;
  if (job.request.blue_green) reasons.push_back("forced (--blue-green)");
  for (std::string& reason : handover_reasons(job.request.version, job.running.manifest, job.running.config,
                                              job.running.listener_owners, job.plan))
    reasons.push_back(std::move(reason));
  return reasons;
}

void UpgradeCoordinator::plan(Job& job) {
  if (check_hook_) check_hook_();
  const UpgradeRequest& request = job.request;
  const appup::ReleaseManifest& running = job.running.manifest;
  if (job.cancelled) return;
  try {
    job.target = load_unpacked_release(store_, request.version);
    fs::path config_file = store_.runtime_config_path(request.version);
    job.target_config = load_runtime_config(config_file);
    check_config_matches(job.target_config, job.target, config_file);
    job.plan = appup::make_plan(running, job.target, load_appup_of);
    if (request.expected_direction && job.plan.direction != *request.expected_direction) {
      bool newer = job.plan.direction == appup::Direction::Upgrade;
      throw std::runtime_error(request.version + " is " + (newer ? "newer" : "older") + " than the running release " +
                               running.version + ": use `hotswap " + (newer ? "upgrade" : "downgrade") + "`");
    }
    job.handover_reasons = handover_reasons(job);
    if (!job.handover_reasons.empty()) {
      if (!fs::exists(release_host_binary(store_.release_dir(request.version))))
        throw std::runtime_error("release " + request.version + " needs a blue-green handover (" +
                                 join_names(job.handover_reasons) + "), but it has no bin/hotswap to hand over to");
      if (request.rehearse_only)
        throw std::runtime_error("release " + request.version + " needs a blue-green handover (" +
                                 join_names(job.handover_reasons) + "), which is not rehearsed");
      return;  // no rehearsal, no in-place prepare
    }
  } catch (const std::exception& e) {
    job.refusal = e.what();
    return;
  }
  const bool wanted = request.rehearse_only || (request.rehearse && job.running.config.rehearse);
  if (!wanted || job.plan.steps.empty()) return;
  job.rehearsal_input = make_rehearsal_input(job.plan, job.target_config, running, job.target);
  job.plan_sha256 = plan_digest(job.plan);  // a spawned child checks its plan against it
}

void UpgradeCoordinator::planned(const std::shared_ptr<Job>& job) {
  if (stopping_ && job->refusal.empty()) job->refusal = kHostStopping;
  if (job->refusal.empty() && !job->handover_reasons.empty()) return hand_over(job);
  if (!job->refusal.empty() || !job->rehearsal_input) {
    if (job->refusal.empty() && job->request.rehearse_only)
      job->refusal = job->plan.steps.empty() ? "the plan to " + job->request.version + " has no step to rehearse"
                                             : "rehearsal is off";
    if (!job->refusal.empty()) return prepared(job);
    state_ = State::Preparing;
    return hop([this, job] { prepare(*job); }, [this, job] { prepared(job); });
  }
  // A quiescent point: between two handlers of the loop, no hop in flight.
  state_ = State::Rehearsing;
  job->rehearsal_input->drop_in_child = [code = &job->running.code] { code->clear(); };
  emit_progress(job->progress, {{"event", "rehearsing"}, {"steps", job->plan.steps.size()}});
  RehearsalReport base;
  base.from_release = job->running.manifest.version;
  base.to_release = job->request.version;
  ++hops_in_flight_;  // stop() waits for the child too
  Rehearsal::Done done = [this, job](const RehearsalReport& report) {
    --hops_in_flight_;
    run_guarded("event loop", [&] { rehearsed(job, report); });
    notify_if_idle();
  };
  const std::chrono::milliseconds timeout = job->running.config.rehearsal_timeout;
  if (job->running.config.rehearsal_mechanism == RuntimeConfig::RehearsalMechanism::Spawn)
    job->rehearsal = Rehearsal::start_spawned(
        loop_, spawner_, registry_,
        {running_program_, store_.root(), base.from_release, base.to_release, job->plan_sha256}, timeout, base,
        std::move(done));
  else
    job->rehearsal = Rehearsal::start(loop_, registry_, loader_, executor_, *job->rehearsal_input, timeout, base,
                                      std::move(done));
}

void UpgradeCoordinator::hand_over(const std::shared_ptr<Job>& job) {
  if (!host_.hand_over) {
    job->refusal = "release " + job->request.version + " needs a blue-green handover (" +
                   join_names(job->handover_reasons) + "), but this host cannot hand over";
    return prepared(job);
  }
  state_ = State::HandingOver;
  spdlog::info("upgrade to {} by a blue-green handover: {}", job->request.version, join_names(job->handover_reasons));
  emit_progress(job->progress, {{"event", "handover"}, {"reasons", job->handover_reasons}});
  BlueGreenRequest request;
  request.target = job->target;
  request.target_config = job->target_config;
  request.plan = job->plan;
  request.reasons = job->handover_reasons;
  request.host_binary = release_host_binary(store_.release_dir(job->request.version));
  ++hops_in_flight_;  // stop() waits for the handover's end too
  auto answered = std::make_shared<bool>(false);
  run_guarded("event loop", [&] {
    host_.hand_over(request, job->progress, [this, job, answered](const HandoverFigures& figures) {
      if (*answered) {
        spdlog::error("the handover to {} reported its end twice; the second is ignored", job->request.version);
        return;
      }
      *answered = true;
      --hops_in_flight_;
      run_guarded("event loop", [&] { handed_over(job, figures); });
      notify_if_idle();
    });
  });
}

void UpgradeCoordinator::handed_over(const std::shared_ptr<Job>& job, const HandoverFigures& figures) {
  job->handed_over = true;
  UpgradeReport& report = job->report;
  report = refused_report(job->running.manifest, job->request.version, {});
  report.direction = job->plan.direction;
  report.outcome = figures.committed ? UpgradeReport::Outcome::Committed : UpgradeReport::Outcome::RolledBack;
  report.error = figures.committed ? "" : (figures.error.empty() ? "the handover failed" : figures.error);
  report.handover = handover_json(figures, job->handover_reasons);
  nlohmann::json event = report.handover;
  event["event"] = "handover_end";
  emit_progress(job->progress, event);
  if (figures.committed)
    spdlog::info("{}", report.summary());
  else
    spdlog::warn("{}", report.summary());
  state_ = State::Finishing;
  hop([this, job] { finish(*job); }, [this, job] { complete(job); });
}

void UpgradeCoordinator::rehearsed(const std::shared_ptr<Job>& job, const RehearsalReport& rehearsal) {
  job->rehearsal.reset();  // killed and reaped already
  job->rehearsal_report = rehearsal;
  last_rehearsal_ = rehearsal.to_json();
  emit_progress(job->progress, {{"event", "rehearsed"}, {"report", last_rehearsal_}});
  if (rehearsal.passed())
    spdlog::info("{}", rehearsal.summary());
  else
    spdlog::warn("{}", rehearsal.summary());
  if (stopping_) {
    job->refusal = kHostStopping;
  } else if (rehearsal.outcome == RehearsalReport::Outcome::Failed && rehearsal.step == "load") {
    // The check phase's own refusal (hash, ELF image, probe, descriptor),
    // found first by the child: refused as the check refuses it.
    job->refusal = rehearsal.error;
    job->load_refused = true;
  } else if (rehearsal.outcome == RehearsalReport::Outcome::NotRun) {
    // Not the target's fault (no fork, no pidfd): refused as any check failure, not as a failed rehearsal.
    job->refusal = "the live rehearsal could not run: " + rehearsal.error +
                   "; nothing changed (`--no-rehearse` upgrades without it)";
  } else if (!rehearsal.passed()) {
    job->refusal = rehearsal.summary();
  } else if (job->request.rehearse_only) {
    job->refusal = "rehearsal only";
  }
  if (!job->refusal.empty()) return prepared(job);
  state_ = State::Preparing;
  hop([this, job] { prepare(*job); }, [this, job] { prepared(job); });
}

void UpgradeCoordinator::prepare(Job& job) {
  // Progress goes to the loop; the listener is never called on the worker.
  ProgressListener on_loop = [this, progress = job.progress](const nlohmann::json& event) {
    if (progress) asio::post(loop_, [progress, event] { emit_progress(progress, event); });
  };
  const UpgradeRequest& request = job.request;
  auto check = [&] {
    if (job.cancelled) return;
    job.prepared = check_upgrade(job.plan, job.running.code, loader_, on_loop);
    if (!job.prepared->ok() || !request.pre_task || job.cancelled) return;
    const ReleaseTask& task = *request.pre_task;
    on_loop({{"event", "pre_task"}, {"module", task.module}, {"task", task.name}});
    try {
      std::string result = run_release_task(store_.release_dir(request.version), job.target_config, task, loader_);
      on_loop({{"event", "pre_task_done"}, {"result", result}});
    } catch (const std::exception& e) {
      job.refusal = "pre-upgrade task " + task.module + ":" + task.name + " failed: " + e.what();
    }
  };
  check();
  // The snapshot's references go here, on the worker: the loop never closes a library.
  job.running.code.clear();
}

void UpgradeCoordinator::prepared(const std::shared_ptr<Job>& job) {
  // Once stop has begun nothing is applied: on_stop may already have run. A
  // check that failed on its own keeps its own reason.
  const bool check_failed = job->prepared && !job->prepared->ok();
  if (stopping_ && job->refusal.empty() && !check_failed) job->refusal = kHostStopping;
  UpgradeReport& report = job->report;
  if (!job->refusal.empty() || !job->prepared || !job->prepared->ok()) {
    report = job->prepared ? job->prepared->report() : refused_report(job->running.manifest, job->request.version, {});
    report.outcome = UpgradeReport::Outcome::Refused;
    if (!job->refusal.empty()) report.error = job->refusal;
    if (job->rehearsal_report) {
      report.rehearsal = job->rehearsal_report->to_json();
      report.rehearsal_failed = !job->rehearsal_report->passed() && !job->load_refused &&
                                job->rehearsal_report->outcome != RehearsalReport::Outcome::NotRun;
    }
    if (!job->request.rehearse_only) {
      emit_progress(job->progress, {{"event", "refused"}, {"error", report.error}});
      spdlog::warn("{}", report.summary());
    }
  } else {
    state_ = State::Applying;
    apply(*job);
    if (job->rehearsal_report) job->report.rehearsal = job->rehearsal_report->to_json();
  }
  state_ = State::Finishing;
  hop([this, job] { finish(*job); }, [this, job] { complete(job); });
}

void UpgradeCoordinator::apply(Job& job) {
  // New instances are created with the target release's config sections.
  std::map<std::string, std::string> previous;
  for (const auto& m : job.target.modules) {
    previous[m.name] = registry_.module_config(m.name);
    registry_.set_module_config(m.name, job.target_config.module_section(m.name));
  }
  job.report = executor_.apply(std::move(*job.prepared), job.progress, &job.retired);
  job.prepared.reset();
  if (!job.report.committed()) {
    for (const auto& [name, section] : previous) registry_.set_module_config(name, section);
    return;
  }
  if (host_.commit) host_.commit(job.target, job.target_config);
}

void UpgradeCoordinator::finish(Job& job) {
  Clock::time_point start = Clock::now();
  // The target itself failed (not the host stopping): reload skips it from now on (ReleaseStore::reload_target).
  // A rehearsal that did not pass (or that found the new code refused while
  // loading) is the target's failure too; a rehearsal that could not run is not.
  const bool rehearsal_failed = job.rehearsal_report && !job.rehearsal_report->passed() &&
                                job.rehearsal_report->outcome != RehearsalReport::Outcome::NotRun;
  const bool target_failed =
      job.report.outcome == UpgradeReport::Outcome::RolledBack ||
      (job.report.outcome == UpgradeReport::Outcome::Refused && job.refusal != kHostStopping &&
       !job.request.rehearse_only &&
       ((job.prepared && (!job.prepared->ok() || !job.refusal.empty())) || rehearsal_failed || job.load_refused));
  job.prepared.reset();  // what a refused check loaded
  job.running.code.clear();  // a refusal before the check phase still holds the snapshot's libraries
  job.leaked = job.retired.close_all();
  job.purge_time = Clock::now() - start;
  if (target_failed) record_failed_target(store_, job.request.version, job.report.error);
  // Green runs the target now and records it as current itself; this process is about to exit.
  if (job.handed_over && job.report.committed()) return;
  if (!job.report.committed()) {
    // Nothing changed what runs; a record that failed before may be repaired now.
    if (!unrecorded_release_) return;
    if (const std::string error = repair_record(); !error.empty()) {
      spdlog::warn("{}", error);
      return;
    }
    job.bookkeeping = read_bookkeeping();
    return;
  }
  try {
    store_.mark_current(job.target.version);
    unrecorded_release_.reset();
  } catch (const std::exception& e) {
    job.record_error = e.what();
    unrecorded_release_ = job.target.version;
  }
  job.bookkeeping = read_bookkeeping();
}

void UpgradeCoordinator::complete(const std::shared_ptr<Job>& job) {
  UpgradeReport& report = job->report;
  report.leaked.insert(report.leaked.end(), job->leaked.begin(), job->leaked.end());
  if (job->bookkeeping) bookkeeping_ = *job->bookkeeping;
  // One measurement for the event, the reply and status: the loop's part (the
  // old instances' destroy) plus the worker's (closing the libraries).
  report.purge_time += job->purge_time;
  if (report.outcome != UpgradeReport::Outcome::Refused && !job->handed_over)
    emit_progress(job->progress, purged_event(report));
  if (!job->record_error.empty()) {
    report.record_error = job->record_error;
    spdlog::error("release {} runs, but recording it as current failed: {} (the next release-store change, "
                  "such as make-permanent, records it)",
                  job->target.version, job->record_error);
    emit_progress(job->progress, {{"event", "record_failed"}, {"error", job->record_error}});
  }
  state_ = State::Idle;
  target_version_.clear();
  current_job_.reset();
  last_report_ = report;
  if (host_.finished) host_.finished(report);
  job->done(report);
}

}  // namespace hotswap::host
