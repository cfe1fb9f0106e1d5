#include "runtime.hpp"

#include <pthread.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/filesystem/operations.hpp>
#include <csignal>
#include <cstdlib>
#include <hotswap/appup/error.hpp>
#include <hotswap/appup/planner.hpp>
#include <map>
#include <set>
#include <thread>

#include "os/service_notifier.hpp"
#include "release/release_files.hpp"

namespace hotswap::host {

namespace asio = boost::asio;
namespace fs = boost::filesystem;

namespace {

// How often the watchdog looks at the loop: a hang is noticed at most this late.
constexpr std::chrono::milliseconds kWatchdogPeriod{250};

Watchdog::Limits watchdog_limits(const WatchdogConfig& config) { return {config.warn_after, config.abort_after}; }

// The watchdog's abort: SIGABRT goes to the loop thread itself, so the crash
// line (core/crash_trace.hpp) names the callback it is stuck in and the core
// dump shows its stack. Should the signal not end the process (the thread
// blocks it; a sanitizer defers it), the process is aborted from here a little
// later, with this thread recorded as in the stuck call so the line still names it.
[[noreturn]] void abort_loop_thread(pthread_t loop_thread, const CallSite& stuck) {
  ::pthread_kill(loop_thread, SIGABRT);
  std::this_thread::sleep_for(std::chrono::seconds(5));
  ModuleCallScope as_stuck(stuck);
  std::abort();
}

}  // namespace

Runtime::Runtime(const fs::path& root, std::shared_ptr<ModuleProbe> probe, os::OsSysCalls& os)
    : watchdog_(
          this_thread_call_record(), [] { return std::chrono::steady_clock::now(); },
          [loop_thread = ::pthread_self()](const CallSite& stuck) { abort_loop_thread(loop_thread, stuck); }),
      signals_(io_, SIGTERM, SIGINT, SIGHUP),
      store_(root, os),
      loader_(store_.run_dir(), os::real_os_sys_calls(), std::move(probe)),
      server_(io_, registry_),
      registry_(server_),
      executor_(registry_, loader_),
      coordinator_(io_, store_, loader_, registry_, executor_,
                   {[this](const appup::ReleaseManifest& target, const RuntimeConfig& target_config) {
                      commit_release(target, target_config);
                    },
                    [this](const UpgradeReport& report) {
                      if (handed_over_) {
                        // Posted: the report's `done` (the operator's reply) runs right after this.
                        asio::post(io_, [this] { retire_after_handover(); });
                        return;
                      }
                      if (report.committed() && !stopping_) schedule_auto_permanent();
                    },
                    [this](const BlueGreenRequest& request, const ProgressListener& progress,
                           std::function<void(const HandoverFigures&)> done) {
                      start_handover(request, progress, std::move(done));
                    }}),
      auto_permanent_timer_(io_),
      handover_(BlueSide{io_, server_, registry_, os, root, nullptr, &config_}) {
  watchdog_.set_limits(watchdog_limits(config_.watchdog));
  watchdog_.start_thread(kWatchdogPeriod);
  signals_.add(SIGUSR2);
  wait_for_signals();
}

// The coordinator (declared after the registry) joins the worker after this;
// the worker never touches the registry.
Runtime::~Runtime() { registry_.stop_all(); }

// Reads release `version` and loads its modules' libraries in boot order;
// with `start`, each module starts at once (boot), otherwise the libraries
// wait in handover_libraries_ (the new process of a handover). The config is
// read into config_ but not applied.
void Runtime::boot_modules(const std::string& version, bool start) {
  fs::path dir = store_.release_dir(version);
  appup::ReleaseManifest manifest = load_release_manifest(dir);
  fs::path config_file = store_.runtime_config_path(version);
  RuntimeConfig config = load_runtime_config(config_file);
  check_config_matches(config, manifest, config_file);

  for (const auto& [name, section] : config.modules) registry_.set_module_config(name, section.config.dump());
  for (const appup::ModuleEntry* m : boot_order(manifest)) {
    std::shared_ptr<LoadedLibrary> library = loader_.load(m->file, {m->name, m->version, m->sha256});
    if (!start) {
      handover_libraries_.push_back(std::move(library));
      continue;
    }
    registry_.start(std::move(library));
    spdlog::info("module {} {} started", m->name, m->version);
  }
  manifest_ = std::move(manifest);
  config_ = std::move(config);
}

void Runtime::boot() {
  const std::string version = store_.boot_version();
  boot_modules(version, /*start=*/true);
  apply_config(config_, /*at_boot=*/true);
  for (const ListenerConfig& listener : config_.listeners) server_.listen(listener);
  store_.mark_current(version);        // a release that ran before a restart but was never made permanent is now old
  coordinator_.refresh_bookkeeping();  // the loop does not run yet: reading the store here stalls nobody
  spdlog::info("release {} {} booted from {} ({} module(s), {} listener(s))", manifest_->name, version,
               manifest_->dir.string(), manifest_->modules.size(), config_.listeners.size());
}

std::vector<std::shared_ptr<LoadedLibrary>> Runtime::load_for_handover(const std::string& version) {
  boot_modules(version, /*start=*/false);
  return handover_libraries_;
}

void Runtime::apply_handover_config() {
  handover_libraries_.clear();
  apply_config(config_, /*at_boot=*/true);
}

void Runtime::commit_handover(const HandoverFigures& arrival) {
  handover_.set_last_figures(handover_json(arrival, {}));
  // This process serves already: a record that cannot be written is logged, never fatal.
  try {
    store_.mark_current(manifest_->version);
    coordinator_.refresh_bookkeeping();
  } catch (const std::exception& e) {
    spdlog::error("release {} serves, but recording it as current failed: {}", manifest_->version, e.what());
  }
  spdlog::info("release {} {} took over from the previous process ({} module(s), {} listener(s), {} connection(s))",
               manifest_->name, manifest_->version, manifest_->modules.size(), config_.listeners.size(),
               server_.connection_count());
  schedule_auto_permanent();
}

void Runtime::open_admin(AdminHandler handler, os::Fd adopted) {
  const fs::path path = store_.run_dir() / "admin.sock";
  if (adopted)
    admin_ = std::make_unique<AdminServer>(io_, path, std::move(adopted), config_.admin_max_request_bytes,
                                           std::move(handler));
  else
    admin_ = std::make_unique<AdminServer>(io_, path, config_.admin_max_request_bytes, std::move(handler));
  admin_->set_max_output_bytes(config_.admin_max_output_bytes);
  handover_.set_admin(admin_.get());
}

void Runtime::apply_config(const RuntimeConfig& next, bool at_boot) {
  set_log_level(next.log_level);
  ServerLimits limits = server_.limits();
  limits.max_output_bytes = next.max_output_bytes;
  limits.max_total_output_bytes = next.max_total_output_bytes;
  server_.set_limits(limits);
  watchdog_.set_limits(watchdog_limits(next.watchdog));
  if (admin_) {
    admin_->set_max_request_bytes(next.admin_max_request_bytes);
    admin_->set_max_output_bytes(next.admin_max_output_bytes);
  }
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
    if (at_boot || next.tick_rate(name) != config_.tick_rate(name)) server_.set_tick_rate(name, next.tick_rate(name));
  }
  config_ = next;
}

void Runtime::set_log_level(const std::string& level) {
  auto parsed = spdlog::level::from_str(level);
  if (parsed == spdlog::level::off && level != "off")
    throw std::invalid_argument("unknown log level '" + level + "' (trace, debug, info, warn, error, critical, off)");
  spdlog::set_level(parsed);
}

void Runtime::plan(const std::string& version, PlanDone done) {
  struct Planned {
    std::optional<appup::Plan> plan;
    std::string error;
  };
  auto planned = std::make_shared<Planned>();
  std::set<std::string> listener_owners;
  for (const auto& listener : server_.listeners()) listener_owners.insert(listener.module);
  bool posted = coordinator_.run_on_worker(
      [this, planned, running = *manifest_, config = config_, listener_owners, version] {
        try {
          planned->plan = appup::make_plan(running, load_unpacked_release(store_, version), load_appup_of);
          // Every reason for a blue-green handover, so that describe() and to_json() show them.
          planned->plan->blue_green =
              coordinator_.handover_reasons(version, running, config, listener_owners, *planned->plan);
        } catch (const std::exception& e) {
          planned->error = e.what();
        }
      },
      [planned, done] { done(planned->plan, planned->error); });
  if (!posted) done(std::nullopt, kHostStopping);
}

RunningRelease Runtime::running_release() const {
  RunningRelease running{*manifest_, config_, running_code(registry_), {}};
  for (const auto& listener : server_.listeners()) running.listener_owners.insert(listener.module);
  return running;
}

void Runtime::upgrade(const UpgradeRequest& request, const ProgressListener& progress, Done done) {
  // The loop only pauses, migrates, commits and resumes; the coordinator runs
  // everything else on the worker, against this snapshot.
  coordinator_.start(request, running_release(), progress, std::move(done));
}

void Runtime::rehearse(const std::string& version, const ProgressListener& progress, Done done) {
  UpgradeRequest request;
  request.version = version;
  request.rehearse_only = true;
  coordinator_.start(request, running_release(), progress, std::move(done));
}

// Called by the coordinator while Applying, once the new code committed.
void Runtime::commit_release(const appup::ReleaseManifest& target, const RuntimeConfig& target_config) {
  for (const auto& m : manifest_->modules)
    if (target.find(m.name) == nullptr) server_.set_tick_rate(m.name, 0);
  manifest_ = target;
  // Swapped modules already got their new section at create; apply_config tells the others.
  apply_config(target_config, /*at_boot=*/false);
}

// A release whose record failed is still current in fact: make-permanent repairs the record first.
bool Runtime::runs_unrecorded_or_current(const std::string& version) const {
  const ReleaseBookkeeping& bookkeeping = coordinator_.bookkeeping();
  return bookkeeping.current == version || bookkeeping.unrecorded == version;
}

void Runtime::schedule_auto_permanent() {
  auto_permanent_timer_.cancel();
  if (config_.auto_permanent_after.count() <= 0 || !runs_unrecorded_or_current(manifest_->version)) return;
  std::string version = manifest_->version;
  auto_permanent_timer_.expires_after(config_.auto_permanent_after);
  auto_permanent_timer_.async_wait([this, version](boost::system::error_code ec) {
    if (ec || manifest_->version != version || !runs_unrecorded_or_current(version)) return;
    make_permanent(version, [this, version](const std::string& error) {
      if (error.empty())
        spdlog::info("release {} made permanent after {} s of healthy running", version,
                     config_.auto_permanent_after.count());
      else
        spdlog::error("automatic make-permanent of {} failed: {}", version, error);
    });
  });
}

void Runtime::make_permanent(const std::string& version, StoreDone done) {
  if (version != manifest_->version)
    return done("release " + version + " is not the running release (" + manifest_->version + ")");
  coordinator_.write_store([version](ReleaseStore& store) { store.make_permanent(version); },
                           [this, done](const std::string& error) {
                             if (error.empty()) auto_permanent_timer_.cancel();
                             done(error);
                           });
}

void Runtime::remove_release(const std::string& version, StoreDone done) {
  coordinator_.write_store([version](ReleaseStore& store) { store.remove(version); }, std::move(done));
}

void Runtime::list_releases(std::function<void(const nlohmann::json&, const std::string&)> done) {
  struct Listing {
    nlohmann::json releases;
    std::string error;
  };
  auto listing = std::make_shared<Listing>();
  bool posted = coordinator_.run_on_worker(
      [this, listing] {
        try {
          listing->releases = store_.to_json();
        } catch (const std::exception& e) {
          listing->error = e.what();
        }
      },
      [listing, done] { done(listing->releases, listing->error); });
  if (!posted) done(nullptr, kHostStopping);
}

void Runtime::reload(const ProgressListener& progress, std::function<void(const ReloadResult&)> done) {
  auto busy_result = [this] {
    return ReloadResult{nullptr, "busy: an upgrade to " + coordinator_.target_version() + " is in progress", true};
  };
  if (busy()) return done(busy_result());
  // What to do is decided from the disk, read on the worker.
  struct Found {
    std::optional<std::string> newer;
    boost::filesystem::path config_file;
    std::optional<RuntimeConfig> config;
    std::string error;
  };
  auto found = std::make_shared<Found>();
  const std::string running = manifest_->version;
  bool posted = coordinator_.run_on_worker(
      [this, found, running] {
        try {
          found->newer = store_.reload_target(running);
        } catch (const std::exception& e) {
          found->error = std::string("cannot look for a newer release: ") + e.what();
          return;
        }
        if (found->newer) return;
        try {
          found->config_file = store_.runtime_config_path(running);
          found->config = load_runtime_config(found->config_file);
        } catch (const std::exception& e) {
          found->error = std::string("config not reloaded, the old one stays: ") + e.what();
        }
      },
      [this, found, running, progress, done, busy_result] {
        if (busy()) return done(busy_result());
        if (stopping_) return done({nullptr, kHostStopping, false});
        if (manifest_->version != running)
          return done(
              {nullptr, "the running release changed to " + manifest_->version + " meanwhile; reload again", false});
        if (!found->error.empty()) return done({nullptr, found->error, false});
        if (found->newer) {
          UpgradeRequest request;
          request.version = *found->newer;
          return upgrade(request, progress, [done](const UpgradeReport& report) {
            nlohmann::json result = {{"action", "upgrade"}, {"report", report.to_json()}};
            done({result, report.committed() ? "" : report.summary(), report.outcome == UpgradeReport::Outcome::Busy});
          });
        }
        reload_config(*found->config, found->config_file, done);
      });
  if (!posted) done({nullptr, kHostStopping, false});
}

void Runtime::reload_config(const RuntimeConfig& next, const fs::path& config_file,
                            const std::function<void(const ReloadResult&)>& done) {
  try {
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
  struct Unpacked {
    std::string version, error;
  };
  auto unpacked = std::make_shared<Unpacked>();
  bool posted = coordinator_.run_on_worker(
      [this, tarball, unpacked] {
        try {
          unpacked->version = store_.unpack(tarball);
        } catch (const std::exception& e) {
          unpacked->error = e.what();
        }
      },
      [unpacked, done] { done(unpacked->version, unpacked->error); });
  if (!posted) done({}, kHostStopping);
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
  const std::optional<std::string>& permanent = coordinator_.bookkeeping().permanent;
  const std::optional<UpgradeReport>& last_upgrade = coordinator_.last_report();
  nlohmann::json status = {
      {"release", manifest_->name},
      {"version", manifest_->version},
      {"permanent", permanent ? nlohmann::json(*permanent) : nlohmann::json(nullptr)},
      // The running release when recording it in RELEASES.json failed (the next store change repairs it).
      {"unrecorded_release", coordinator_.bookkeeping().unrecorded ? nlohmann::json(*coordinator_.bookkeeping().unrecorded)
                                                                   : nlohmann::json(nullptr)},
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
        {"slow_readers", s.slow_readers},
        {"output_budget_closes", s.output_budget_closes},
        {"idle_timeouts", s.idle_timeouts},
        {"output_bytes", server_.output_bytes()},
        {"peak_output_bytes", s.peak_output_bytes},
        {"memory_trims", s.memory_trims}}},
      {"busy", busy()},
      {"leaked_libraries", loader_.leaked()},
      {"last_upgrade", last_upgrade ? last_upgrade->to_json() : nlohmann::json(nullptr)},
      {"last_rehearsal", coordinator_.last_rehearsal()},
      {"handover", {{"running", handover_.running()}, {"last", handover_.last_figures()}}}};
  return status;
}

void Runtime::wait_for_signals() {
  signals_.async_wait([this](boost::system::error_code ec, int signal) {
    if (ec) return;
    if (signal == SIGUSR2 && !stopping_) {
      spdlog::info("SIGUSR2: blue-green handover to the newest unpacked release");
      os::service_notifier().reloading();
      hand_over_to_newest(reload_answer());
    } else if (signal == SIGHUP && !stopping_) {
      spdlog::info("SIGHUP: reloading");
      os::service_notifier().reloading();
      reload({}, [answer = reload_answer()](const ReloadResult& reload) {
        answer();
        if (!reload.error.empty())
          spdlog::error("reload failed: {}", reload.error);
        else
          spdlog::info("reload: {}", reload.result.value("action", "?"));
      });
    } else if (stopping_) {
      spdlog::info("signal {}: already stopping", signal);
    } else {
      spdlog::info("signal {}: stopping gracefully", signal);
      os::service_notifier().stopping();
      stop();
    }
    if (!stopped_) wait_for_signals();
  });
}

void Runtime::start_handover(const BlueGreenRequest& request, const ProgressListener& progress,
                             std::function<void(const HandoverFigures&)> done) {
  spdlog::info("blue-green handover to release {}: {}", request.target.version,
               [&] {
                 std::string reasons;
                 for (const std::string& r : request.reasons) reasons += (reasons.empty() ? "" : "; ") + r;
                 return reasons;
               }());
  // The service manager (Type=notify-reload) sees a reload: the new process
  // becomes the main one as it takes over, or this one is ready again.
  os::service_notifier().reloading();
  handover_.start(request, config_.handover_timeout, progress,
                  [this, done = std::move(done)](const HandoverFigures& figures) {
                    ++handover_ends_;
                    if (figures.committed) {
                      handed_over_ = true;
                      os::service_notifier().main_pid_ready(handover_.green_pid());
                    } else if (!stopping_) {  // stopping: STOPPING=1 went out, and stays the last word
                      os::service_notifier().ready();
                    }
                    done(figures);
                  });
}

// The successor serves every connection and listener now; this process only
// finishes writing its admin replies (the operator's `upgrade` waits for its
// report), bounded, then ends its loop without on_stop or a disconnect.
void Runtime::retire_after_handover() {
  if (stopped_) return;
  stopping_ = true;
  auto_permanent_timer_.cancel();
  boost::system::error_code ec;
  signals_.cancel(ec);
  coordinator_.stop([this] { worker_idle_ = true; });
  retire_timer_ = std::make_unique<asio::steady_timer>(io_);
  // What stayed here (connections of listeners the target dropped) closes
  // gracefully; everything else is the successor's already.
  server_.shutdown(config_.shutdown_timeout, [this] {
    connections_closed_ = true;
    exit_once_replies_written(std::chrono::steady_clock::now() + std::chrono::seconds(2));
  });
}

void Runtime::exit_once_replies_written(std::chrono::steady_clock::time_point give_up) {
  const bool written = !admin_ || admin_->queued_output_bytes() == 0;
  if (!(written && worker_idle_) && std::chrono::steady_clock::now() < give_up) {
    retire_timer_->expires_after(std::chrono::milliseconds(10));
    retire_timer_->async_wait([this, give_up](boost::system::error_code ec) {
      if (!ec) exit_once_replies_written(give_up);
    });
    return;
  }
  stopped_ = true;
  if (admin_) admin_->close();
  registry_.stop_all();
  spdlog::info("handed over to pid {}; this process (pid {}) exits", handover_.green_pid(), ::getpid());
  io_.stop();
}

std::function<void()> Runtime::reload_answer() {
  return [this, ends_at_signal = handover_ends_] {
    // Stopping: STOPPING=1 went out, and stays the last word.
    if (stopping_ || handover_.running() || handover_ends_ != ends_at_signal) return;
    os::service_notifier().ready();
  };
}

void Runtime::hand_over_to_newest(std::function<void()> answer) {
  const std::string running = manifest_->version;
  auto newer = std::make_shared<std::optional<std::string>>();
  auto error = std::make_shared<std::string>();
  bool posted = coordinator_.run_on_worker(
      [this, running, newer, error] {
        try {
          *newer = store_.reload_target(running);
        } catch (const std::exception& e) {
          *error = e.what();
        }
      },
      [this, newer, error, answer] {
        // The service manager waits for READY=1 after the reload signal.
        if (!error->empty()) {
          answer();
          return spdlog::error("SIGUSR2: cannot look for a newer release: {}", *error);
        }
        if (!*newer) {
          answer();
          return spdlog::warn("SIGUSR2: no newer unpacked release to hand over to; nothing done");
        }
        UpgradeRequest request;
        request.version = **newer;
        request.blue_green = true;
        upgrade(request, {}, [answer](const UpgradeReport& report) {
          answer();
          if (report.committed())
            spdlog::info("SIGUSR2: {}", report.summary());
          else
            spdlog::error("SIGUSR2: {}", report.summary());
        });
      });
  if (!posted) spdlog::info("SIGUSR2: the host is stopping");
}

void Runtime::run() { io_.run(); }

void Runtime::stop() {
  if (stopping_) return;
  stopping_ = true;
  // From here every module callback (on_stop first) is bounded by the stop timeout.
  watchdog_.stopping(config_.shutdown_timeout);
  auto_permanent_timer_.cancel();
  // A handover still loading or transferring ends here: everything it paused
  // resumes, then stops like the rest.
  handover_.abort("the host is stopping");
  server_.stop_accepting();
  if (admin_) admin_->close();
  // Nothing new reaches the worker from here; an upgrade still in its check is
  // cancelled and never applied, whatever on_stop below does.
  coordinator_.stop([this] {
    worker_idle_ = true;
    finish_stop();
  });
  registry_.notify_stop();
  server_.shutdown(config_.shutdown_timeout, [this] {
    connections_closed_ = true;
    finish_stop();
  });
}

void Runtime::finish_stop() {
  if (!connections_closed_ || !worker_idle_ || stopped_) return;
  stopped_ = true;
  registry_.stop_all();
  signals_.cancel();
  spdlog::info("stopped");
  io_.stop();
}

}  // namespace hotswap::host
