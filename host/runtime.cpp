#include "runtime.hpp"

#include "release/release_files.hpp"

#include <pthread.h>
#include <sched.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <boost/filesystem/operations.hpp>
#include <hotswap/appup/error.hpp>
#include <hotswap/appup/planner.hpp>
#include <map>
#include <set>

namespace hotswap::host {

namespace asio = boost::asio;
namespace fs = boost::filesystem;

namespace {

// Every module the config talks about must be in the release.
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

// Manifest order, with each module after the modules it depends on.
std::vector<const appup::ModuleEntry*> boot_order(const appup::ReleaseManifest& manifest) {
  std::vector<const appup::ModuleEntry*> order;
  std::set<std::string> placed, visiting;
  std::function<void(const appup::ModuleEntry&)> place = [&](const appup::ModuleEntry& m) {
    if (placed.count(m.name)) return;
    if (!visiting.insert(m.name).second)
      throw std::runtime_error("release " + manifest.version + ": dependency cycle through module " + m.name);
    for (const std::string& dep : m.depends_on)
      if (const appup::ModuleEntry* d = manifest.find(dep)) place(*d);
    placed.insert(m.name);
    order.push_back(&m);
  };
  for (const auto& m : manifest.modules) place(m);
  return order;
}

UpgradeReport refused_report(const std::string& release, const std::string& from, const std::string& to,
                             const std::string& why) {
  UpgradeReport r;
  r.outcome = UpgradeReport::Outcome::Refused;
  r.release_name = release;
  r.from_release = from;
  r.to_release = to;
  r.error = why;
  return r;
}

}  // namespace

Runtime::Runtime(const fs::path& root)
    : signals_(io_),
      store_(root),
      loader_(store_.run_dir()),
      server_(io_, registry_),
      registry_(server_),
      executor_(registry_, loader_),
      auto_permanent_timer_(io_) {
  // The worker (checks, unpacking, closing libraries) must not preempt the event
  // loop on a small machine: batch scheduling and a lower priority. Best effort.
  asio::post(worker_, [] {
    sched_param param{};
    ::pthread_setschedparam(::pthread_self(), SCHED_BATCH, &param);
    ::setpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)), 19);
  });
}

Runtime::~Runtime() {
  worker_.join();
  registry_.stop_all();
}

void Runtime::boot() {
  std::string version = store_.boot_version();
  fs::path dir = store_.release_dir(version);
  appup::ReleaseManifest manifest = load_release_manifest(dir);
  fs::path config_file = store_.runtime_config_path(version);
  RuntimeConfig config = load_runtime_config(config_file);
  check_config_matches(config, manifest, config_file);

  for (const auto& [name, section] : config.modules) registry_.set_module_config(name, section.config.dump());
  for (const appup::ModuleEntry* m : boot_order(manifest)) {
    registry_.start(loader_.load(m->file, {m->name, m->version, m->sha256}));
    spdlog::info("module {} {} started", m->name, m->version);
  }
  manifest_ = std::move(manifest);
  apply_config(config, /*at_boot=*/true);
  for (const ListenerConfig& listener : config_.listeners) server_.listen(listener);
  store_.mark_current(version);  // a release that ran before a restart but was never made permanent is now old
  spdlog::info("release {} {} booted from {} ({} module(s), {} listener(s))", manifest_->name, version, dir.string(),
               manifest_->modules.size(), config_.listeners.size());
}

void Runtime::open_admin(AdminHandler handler) {
  admin_ = std::make_unique<AdminServer>(io_, store_.run_dir() / "admin.sock", config_.admin_max_request_bytes,
                                         std::move(handler));
}

void Runtime::apply_config(const RuntimeConfig& next, bool at_boot) {
  set_log_level(next.log_level);
  server_.set_limits({next.max_output_bytes});
  if (admin_) admin_->set_max_request_bytes(next.admin_max_request_bytes);
  for (ModuleSlot* slot : registry_.slots()) {
    const std::string& name = slot->name();
    std::string section = next.module_section(name);
    if (!at_boot && section != registry_.module_config(name)) {
      registry_.set_module_config(name, section);
      try {
        slot->active().config_changed(section);
        spdlog::info("module {}: runtime config section changed; module notified", name);
      } catch (const std::exception& e) {
        spdlog::warn("{}", e.what());
      }
    }
    if (at_boot || next.tick_rate(name) != config_.tick_rate(name))
      server_.set_tick_rate(name, next.tick_rate(name));
  }
  config_ = next;
}

void Runtime::set_log_level(const std::string& level) {
  auto parsed = spdlog::level::from_str(level);
  if (parsed == spdlog::level::off && level != "off")
    throw std::invalid_argument("unknown log level '" + level + "' (trace, debug, info, warn, error, critical, off)");
  spdlog::set_level(parsed);
}

appup::ReleaseManifest Runtime::load_unpacked(const std::string& version) const {
  if (!store_.exists(version))
    throw std::runtime_error("release " + version + " is not unpacked under " + store_.releases_dir().string() +
                             " (use `hotswap unpack FILE`)");
  return load_release_manifest(store_.release_dir(version));
}

appup::Plan Runtime::plan_to(const std::string& version) {
  return appup::make_plan(*manifest_, load_unpacked(version), load_appup_of);
}

void Runtime::check_upgradable(const appup::Plan& plan, const RuntimeConfig& target_config) const {
  for (const appup::PlanStep& step : plan.steps)
    if (step.kind == appup::StepKind::DeleteModule && server_.module_owns_listener(step.module))
      throw std::runtime_error("refusing to delete module " + step.module +
                               ": it owns a listener and its connections; change the listener's module in "
                               "runtime.json and restart first");
  if (!config_.same_listeners(target_config))
    throw std::runtime_error(
        "the target release's runtime config changes the listeners; a listener change needs a "
        "restart (a blue-green handover is not available yet)");
}

// One upgrade as it moves between the worker thread and the loop.
struct Runtime::UpgradeJob {
  UpgradeRequest request;
  ProgressListener progress;  // called on the loop
  Done done;
  appup::ReleaseManifest target;
  RuntimeConfig target_config;
  std::optional<PreparedUpgrade> prepared;
  std::string refusal;  // set when the upgrade is refused before anything pauses
  UpgradeReport report;
  RetiredLibraries retired;
};

void Runtime::upgrade(const UpgradeRequest& request, const ProgressListener& progress, Done done) {
  auto refuse_now = [&](const std::string& why, UpgradeReport::Outcome outcome = UpgradeReport::Outcome::Refused) {
    UpgradeReport report = refused_report(manifest_->name, manifest_->version, request.version, why);
    report.outcome = outcome;
    done(report);
  };
  if (busy_) return refuse_now("busy: an upgrade to " + busy_with_ + " is in progress", UpgradeReport::Outcome::Busy);
  if (stopping_) return refuse_now("the host is stopping");
  busy_ = true;
  busy_with_ = request.version;
  auto job = std::make_shared<UpgradeJob>();
  job->request = request;
  job->progress = progress;
  job->done = std::move(done);
  // The loop only pauses, migrates, commits and resumes. Reading the release,
  // planning, loading and checking code, the pre-upgrade task, closing the old
  // libraries and recording the outcome on disk all run on the worker thread.
  // While busy_ is set, manifest_ and config_ change on no thread.
  asio::post(worker_, [this, job] {
    prepare_upgrade(*job);
    asio::post(io_, [this, job] { apply_upgrade(job); });
  });
}

void Runtime::prepare_upgrade(UpgradeJob& job) {
  ProgressListener on_loop = [this, progress = job.progress](const nlohmann::json& event) {
    if (progress) asio::post(io_, [progress, event] { progress(event); });
  };
  const UpgradeRequest& request = job.request;
  appup::Plan plan;
  try {
    job.target = load_unpacked(request.version);
    fs::path config_file = store_.runtime_config_path(request.version);
    job.target_config = load_runtime_config(config_file);
    check_config_matches(job.target_config, job.target, config_file);
    plan = appup::make_plan(*manifest_, job.target, load_appup_of);
    if (request.expected_direction && plan.direction != *request.expected_direction) {
      bool newer = plan.direction == appup::Direction::Upgrade;
      throw std::runtime_error(request.version + " is " + (newer ? "newer" : "older") + " than the running release " +
                               manifest_->version + ": use `hotswap " + (newer ? "upgrade" : "downgrade") + "`");
    }
    check_upgradable(plan, job.target_config);
  } catch (const std::exception& e) {
    job.refusal = e.what();
    return;
  }
  job.prepared = executor_.prepare(plan, on_loop);
  if (!job.prepared->ok() || !request.pre_task) return;
  const ReleaseTask& task = *request.pre_task;
  on_loop({{"event", "pre_task"}, {"module", task.module}, {"task", task.name}});
  try {
    std::string result = run_release_task(store_.release_dir(request.version), job.target_config, task, loader_);
    on_loop({{"event", "pre_task_done"}, {"result", result}});
  } catch (const std::exception& e) {
    job.refusal = "pre-upgrade task " + task.module + ":" + task.name + " failed: " + e.what();
  }
}

void Runtime::apply_upgrade(const std::shared_ptr<UpgradeJob>& job) {
  UpgradeReport& report = job->report;
  if (!job->refusal.empty()) {
    report = job->prepared ? job->prepared->report()
                           : refused_report(manifest_->name, manifest_->version, job->request.version, {});
    report.outcome = UpgradeReport::Outcome::Refused;
    report.error = job->refusal;
    job->prepared.reset();  // unloads what the check phase loaded
    if (job->progress) job->progress({{"event", "refused"}, {"error", report.error}});
    spdlog::warn("{}", report.summary());
    return finish_upgrade(job);
  }
  // New instances are created with the target release's config sections.
  std::map<std::string, std::string> previous;
  for (const auto& m : job->target.modules) {
    previous[m.name] = registry_.module_config(m.name);
    registry_.set_module_config(m.name, job->target_config.module_section(m.name));
  }
  report = executor_.apply(std::move(*job->prepared), job->progress, &job->retired);
  job->prepared.reset();
  if (!report.committed()) {
    for (const auto& [name, section] : previous) registry_.set_module_config(name, section);
    return finish_upgrade(job);
  }
  for (const auto& m : manifest_->modules)
    if (job->target.find(m.name) == nullptr) server_.set_tick_rate(m.name, 0);
  manifest_ = job->target;
  // Swapped modules already got their new section at create; apply_config tells the others.
  apply_config(job->target_config, /*at_boot=*/false);
  finish_upgrade(job);
}

void Runtime::finish_upgrade(const std::shared_ptr<UpgradeJob>& job) {
  asio::post(worker_, [this, job] {
    auto start = std::chrono::steady_clock::now();
    std::vector<std::string> leaked = job->retired.close_all();
    double purge_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    std::string record_error;
    if (job->report.committed()) {
      try {
        store_.mark_current(job->target.version);
      } catch (const std::exception& e) {
        record_error = e.what();
      }
    }
    asio::post(io_, [this, job, leaked, purge_ms, record_error] {
      UpgradeReport& report = job->report;
      report.leaked.insert(report.leaked.end(), leaked.begin(), leaked.end());
      if (report.outcome != UpgradeReport::Outcome::Refused && job->progress)
        job->progress({{"event", "purged"}, {"purge_ms", purge_ms}, {"leaked", report.leaked}});
      if (!record_error.empty())
        spdlog::error("release {} runs, but recording it as current failed: {}", job->target.version, record_error);
      if (report.committed()) schedule_auto_permanent();
      busy_ = false;
      busy_with_.clear();
      last_upgrade_ = report;
      job->done(report);
    });
  });
}

void Runtime::schedule_auto_permanent() {
  auto_permanent_timer_.cancel();
  if (config_.auto_permanent_after.count() <= 0 || store_.current() != manifest_->version) return;
  std::string version = manifest_->version;
  auto_permanent_timer_.expires_after(config_.auto_permanent_after);
  auto_permanent_timer_.async_wait([this, version](boost::system::error_code ec) {
    if (ec || manifest_->version != version || store_.current() != version) return;
    try {
      store_.make_permanent(version);
      spdlog::info("release {} made permanent after {} s of healthy running", version,
                   config_.auto_permanent_after.count());
    } catch (const std::exception& e) {
      spdlog::error("automatic make-permanent of {} failed: {}", version, e.what());
    }
  });
}

void Runtime::make_permanent(const std::string& version) {
  if (version != manifest_->version)
    throw std::runtime_error("release " + version + " is not the running release (" + manifest_->version + ")");
  store_.make_permanent(version);
  auto_permanent_timer_.cancel();
}

void Runtime::reload(const ProgressListener& progress, std::function<void(const ReloadResult&)> done) {
  if (busy_) return done({nullptr, "busy: an upgrade to " + busy_with_ + " is in progress", true});
  if (auto newer = store_.newest_newer_than(manifest_->version)) {
    UpgradeRequest request;
    request.version = *newer;
    return upgrade(request, progress, [done](const UpgradeReport& report) {
      nlohmann::json result = {{"action", "upgrade"}, {"report", report.to_json()}};
      done({result, report.committed() ? "" : report.summary(), report.outcome == UpgradeReport::Outcome::Busy});
    });
  }
  fs::path config_file = store_.runtime_config_path(manifest_->version);
  try {
    RuntimeConfig next = load_runtime_config(config_file);
    check_config_matches(next, *manifest_, config_file);
    if (!config_.same_listeners(next))
      throw std::runtime_error(config_file.string() + ": listeners changed; a listener change needs a restart");
    if (next == config_) return done({{{"action", "none"}, {"release", manifest_->version}}, "", false});
    apply_config(next, false);
    done({{{"action", "config"}, {"release", manifest_->version}}, "", false});
  } catch (const std::exception& e) {
    done({nullptr, std::string("config not reloaded, the old one stays: ") + e.what(), false});
  }
}

void Runtime::unpack(const std::string& tarball, std::function<void(std::string, std::string)> done) {
  asio::post(worker_, [this, tarball, done] {
    std::string version, error;
    try {
      version = store_.unpack(tarball);
    } catch (const std::exception& e) {
      error = e.what();
    }
    asio::post(io_, [done, version, error] { done(version, error); });
  });
}

nlohmann::json Runtime::status() const {
  nlohmann::json modules = nlohmann::json::array();
  for (const ModuleSlot* slot : registry_.slots()) {
    const auto& stats = slot->stats();
    modules.push_back({{"name", slot->name()},
                       {"version", slot->active().version()},
                       {"state_schema", slot->active().library().state_schema()},
                       {"suspended", slot->suspended()},
                       {"queued", slot->queued()},
                       {"events", stats.events},
                       {"failed_events", stats.failed_events},
                       {"timers", slot->timers().size()},
                       {"ticks", slot->tick_number()}});
  }
  nlohmann::json listeners = nlohmann::json::array();
  for (const auto& l : server_.listeners())
    listeners.push_back({{"name", l.name}, {"address", l.address}, {"port", l.port}, {"module", l.module}});
  const ServerStats& s = server_.stats();
  nlohmann::json status = {
      {"release", manifest_->name},
      {"version", manifest_->version},
      {"permanent", store_.permanent() ? nlohmann::json(*store_.permanent()) : nlohmann::json(nullptr)},
      {"pid", ::getpid()},
      {"uptime_s", std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count()},
      {"modules", modules},
      {"listeners", listeners},
      {"connections", server_.connection_count()},
      {"traffic",
       {{"accepted", s.accepted},
        {"closed", s.closed},
        {"frames_in", s.frames_in},
        {"frames_out", s.frames_out},
        {"protocol_errors", s.protocol_errors},
        {"slow_readers", s.slow_readers}}},
      {"busy", busy_},
      {"leaked_libraries", loader_.leaked()},
      {"last_upgrade", last_upgrade_ ? last_upgrade_->to_json() : nlohmann::json(nullptr)}};
  return status;
}

void Runtime::wait_for_signals() {
  signals_.async_wait([this](boost::system::error_code ec, int signal) {
    if (ec) return;
    if (signal == SIGHUP) {
      spdlog::info("SIGHUP: reloading");
      reload({}, [](const ReloadResult& reload) {
        if (!reload.error.empty())
          spdlog::error("reload failed: {}", reload.error);
        else
          spdlog::info("reload: {}", reload.result.value("action", "?"));
      });
      wait_for_signals();
      return;
    }
    spdlog::info("signal {}: stopping gracefully", signal);
    stop();
  });
}

void Runtime::run() {
  signals_.add(SIGHUP);
  signals_.add(SIGTERM);
  signals_.add(SIGINT);
  wait_for_signals();
  io_.run();
}

void Runtime::stop() {
  if (stopping_) return;
  stopping_ = true;
  auto_permanent_timer_.cancel();
  server_.stop_accepting();
  if (admin_) admin_->close();
  registry_.notify_stop();
  server_.shutdown(config_.shutdown_timeout, [this] {
    registry_.stop_all();
    signals_.cancel();
    spdlog::info("stopped");
    io_.stop();
  });
}

}  // namespace hotswap::host
