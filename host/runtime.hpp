// The running host: one release booted from a root folder, its modules, its
// listeners, and the operations an operator asks for (upgrade, downgrade,
// reload, make-permanent...). Everything here runs on the event-loop thread;
// disk work (an upgrade's check, release-store writes, unpacking) runs on a
// worker thread, every hop through the UpgradeCoordinator.
#pragma once

#include <boost/asio.hpp>
#include <boost/filesystem/path.hpp>
#include <chrono>
#include <functional>
#include <hotswap/appup/manifest.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "admin/admin_server.hpp"
#include "core/library_loader.hpp"
#include "core/watchdog.hpp"
#include "core/module_registry.hpp"
#include "handover/handover_blue.hpp"
#include "net/network_server.hpp"
#include "os/os_sys_calls.hpp"
#include "release/release_store.hpp"
#include "release/runtime_config.hpp"
#include "upgrade/release_task.hpp"
#include "upgrade/upgrade_coordinator.hpp"
#include "upgrade/upgrade_executor.hpp"

namespace hotswap::host {

class Runtime {
 public:
  // Registers SIGTERM, SIGINT (graceful stop), SIGHUP (reload) and SIGUSR2
  // (blue-green handover to the newest unpacked release) at once, so
  // that a signal arriving during boot is handled as soon as the loop runs.
  // `probe` loads every module library in a child first (LibraryLoader); nullptr: none.
  // The release store's file writes go through `os` (a test's fake), which must outlive the Runtime.
  // The thread that constructs the Runtime is the one that boots and runs its
  // loop: the watchdog (started here) watches that thread's module calls.
  explicit Runtime(const boost::filesystem::path& root, std::shared_ptr<ModuleProbe> probe = nullptr,
                   os::OsSysCalls& os = os::real_os_sys_calls());
  ~Runtime();

  boost::asio::io_context& io() { return io_; }
  ReleaseStore& store() { return store_; }
  const appup::ReleaseManifest& manifest() const { return *manifest_; }
  const RuntimeConfig& config() const { return config_; }
  NetworkServer& server() { return server_; }
  ModuleRegistry& registry() { return registry_; }
  UpgradeCoordinator& coordinator() { return coordinator_; }

  // Boots the permanent release: loads its modules (in dependency order),
  // opens its listeners, starts ticks. Throws ConfigError (exit 78) or
  // std::runtime_error with a message for the operator.
  void boot();

  // Opens ROOT/run/admin.sock with `handler` answering requests (see admin_commands.hpp).
  // `adopted`: the admin socket a blue-green handover passed on (listening
  // already, at that path); invalid: bind a new one.
  void open_admin(AdminHandler handler, os::Fd adopted = {});

  // ---- the new process of a blue-green handover (handover/handover_green.hpp) ----
  // Loads release `version` (manifest, runtime config, every module library,
  // in boot order) without starting a module or opening a listener. Throws
  // like boot().
  std::vector<std::shared_ptr<LoadedLibrary>> load_for_handover(const std::string& version);
  // Once the modules run with blue's state: applies the runtime config (ticks, limits).
  void apply_handover_config();
  // After Commit: records the release as current (RELEASES.json) and reads the bookkeeping.
  // `arrival`: the handover as this process saw it, for status.
  void commit_handover(const HandoverFigures& arrival);

  // True once this process handed everything to a successor (blue-green
  // committed): it retires, and its pid file now names the successor.
  bool handed_over() const { return handed_over_; }
  // The successor's pid, once handed over (0 before).
  pid_t successor_pid() const { return handover_.green_pid(); }

  // Runs the event loop until stop() finishes. SIGHUP reloads; SIGTERM and SIGINT stop.
  void run();
  // Graceful stop: stop accepting, on_stop for modules, write pending output,
  // close. An upgrade still in its check phase is cancelled (its `done` gets a
  // Refused report, "the host is stopping"); one past its pause finishes. The
  // loop runs until the worker is back and the connections are closed.
  void stop();
  bool stopping() const { return stopping_; }

  using Done = UpgradeCoordinator::Done;
  // Starts an upgrade or downgrade to an unpacked release. `done` is called
  // exactly once, on the loop: at once (before returning) when another upgrade
  // runs (Busy) or the host is stopping; otherwise when the upgrade ends
  // (Refused when the release is unknown, the plan or the target config is invalid).
  void upgrade(const UpgradeRequest& request, const ProgressListener& progress, Done done);
  bool busy() const { return coordinator_.busy(); }

  // Live rehearsal alone (`hotswap rehearse VSN`): plans the way to `version`
  // and runs it in a forked copy of this host (upgrade/rehearsal.hpp), never
  // here. `done` gets the report, whose `rehearsal` holds the outcome (null
  // when none could run: the plan was refused, or the host is busy or stopping).
  void rehearse(const std::string& version, const ProgressListener& progress, Done done);

  struct ReloadResult {
    nlohmann::json result;  // {"action": "upgrade"|"config"|"none", ...}
    std::string error;      // empty on success
    bool busy = false;      // refused because an upgrade is running
  };
  // Newest newer release → upgrade; otherwise re-reads the runtime config and
  // tells modules whose section changed.
  void reload(const ProgressListener& progress, std::function<void(const ReloadResult&)> done);

  // The plan to `version`, without doing it. The release and its appups are
  // read and the plan made on the worker (an appup is untrusted input: it must
  // never stall the loop); `done` runs on the loop with the plan, or without
  // one and an error message. Once stopping, `done` gets "the host is stopping" at once.
  using PlanDone = std::function<void(const std::optional<appup::Plan>& plan, const std::string& error)>;
  void plan(const std::string& version, PlanDone done);

  // Unpacks a release tarball on the worker thread (it reads, hashes and writes
  // megabytes, which must not stall the event loop); `done` runs on the loop.
  void unpack(const std::string& tarball, std::function<void(std::string version, std::string error)> done);

  // Release-store operations: the disk work runs on the worker (the store
  // fsyncs under its mutex); `done` runs on the loop with an error message,
  // empty on success. Once stopping, `done` gets "the host is stopping" at once.
  using StoreDone = std::function<void(const std::string& error)>;
  // `version` must be the running release.
  void make_permanent(const std::string& version, StoreDone done);
  // Deletes an unpacked or old release (ReleaseStore::remove).
  void remove_release(const std::string& version, StoreDone done);
  // The store's releases and their states (ReleaseStore::to_json), read on the worker.
  void list_releases(std::function<void(const nlohmann::json& releases, const std::string& error)> done);

  // Never blocks on the disk or the store: the release bookkeeping it shows is
  // the copy refreshed after each store write made by this host.
  nlohmann::json status() const;
  void set_log_level(const std::string& level);  // throws std::invalid_argument

 private:
  void apply_config(const RuntimeConfig& next, bool at_boot);
  RunningRelease running_release() const;  // the snapshot an upgrade's check reads
  void commit_release(const appup::ReleaseManifest& target, const RuntimeConfig& target_config);
  void reload_config(const RuntimeConfig& next, const boost::filesystem::path& config_file,
                     const std::function<void(const ReloadResult&)>& done);
  void schedule_auto_permanent();
  bool runs_unrecorded_or_current(const std::string& version) const;
  void wait_for_signals();
  // SIGUSR2: a blue-green handover to the newest unpacked newer release.
  // `answer` ends the reload the signal began (reload_answer).
  void hand_over_to_newest(std::function<void()> answer);
  // What ends a reload signal (SIGHUP, SIGUSR2: RELOADING=1 went out when it
  // arrived): READY=1, unless a handover says it instead. One running when the
  // answer comes will at its end; one that ended since the signal already did
  // (READY=1, or MAINPID= of its successor); a stop's STOPPING=1 stays the
  // last word. So the service manager never hears READY=1 while a handover
  // runs, nor twice for one reload, nor after STOPPING=1.
  std::function<void()> reload_answer();
  // The coordinator's hand_over: runs the handover from this process.
  void start_handover(const BlueGreenRequest& request, const ProgressListener& progress,
                      std::function<void(const HandoverFigures&)> done);
  // After a committed handover's report went out: stop without touching a
  // connection (they are the successor's), once admin replies are written.
  void retire_after_handover();
  void exit_once_replies_written(std::chrono::steady_clock::time_point give_up);
  void boot_modules(const std::string& version, bool start);
  void finish_stop();  // once the connections are closed and the worker is back

  boost::asio::io_context io_;
  // Watches the loop thread's module callbacks (runtime.json `watchdog`, and
  // the stop timeout once stopping). Its thread reads only the call record.
  Watchdog watchdog_;
  // Registered before anything else exists (module copies, the admin socket).
  boost::asio::signal_set signals_;
  ReleaseStore store_;
  LibraryLoader loader_;
  NetworkServer server_;
  ModuleRegistry registry_;
  UpgradeExecutor executor_;
  UpgradeCoordinator coordinator_;  // owns the worker thread
  boost::asio::steady_timer auto_permanent_timer_;

  std::optional<appup::ReleaseManifest> manifest_;
  RuntimeConfig config_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  bool stopping_ = false;
  bool connections_closed_ = false;  // stop: the server's shutdown finished
  bool worker_idle_ = false;         // stop: every worker hop came back
  bool stopped_ = false;
  std::unique_ptr<AdminServer> admin_;
  HandoverBlue handover_;  // declared after the server, registry and admin socket it pauses
  bool handed_over_ = false;
  uint64_t handover_ends_ = 0;  // handovers that ended (and told the service manager so)
  std::vector<std::shared_ptr<LoadedLibrary>> handover_libraries_;
  std::unique_ptr<boost::asio::steady_timer> retire_timer_;
};

}  // namespace hotswap::host
