// The one owner of every hop between the event loop and the worker thread
// (DESIGN.md, "An upgrade, step by step"). An upgrade moves through explicit
// states, one upgrade at a time:
//
//   Idle -> Planning -> [Rehearsing] -> Preparing -> Applying -> Finishing -> Idle
//   Idle -> Planning -> HandingOver -> Finishing -> Idle      (a blue-green handover)
//
//   Planning   worker: read the target release and its config, plan (no dlopen).
//   Rehearsing loop + a forked child (upgrade/rehearsal.hpp): the loop forks
//              between two hops, so the worker is idle; the child runs the
//              whole plan on its copy of the live state while the loop serves
//              on and waits for it asynchronously. A failed rehearsal refuses
//              the upgrade (-> Finishing) before the live process loaded
//              anything. Skipped when runtime.json says `rehearse: false`,
//              the request says no, or the plan has no step.
//   Preparing  worker: load and check the new code, run the pre-upgrade task.
//              It reads a RunningRelease snapshot taken on the loop, never live state.
//   Applying   loop: pause, migrate, commit or roll back, resume (UpgradeExecutor).
//   HandingOver loop: the plan cannot run in place (blue_green_reasons, the
//              host binary, or the request forces it): no rehearsal, no
//              prepare; HostCallbacks::hand_over runs it and reports its
//              figures. A committed handover is not recorded here (green
//              records its release as current); a failed one marks the target
//              failed as a rollback does.
//   Finishing  worker: close the retired libraries, record the release as
//              current; then `done` on the loop.
//
// A refused upgrade (and one cancelled by stop) goes from Preparing straight to
// Finishing: the libraries its check loaded are closed on the worker too.
//
// Every other piece of disk work (writes to the release store, unpacking,
// reading the release list) also hops through here, so that stop() knows what
// is in flight. Release-store writes refresh a cached copy of the bookkeeping
// that the loop may read at any time without touching the store's mutex.
//
// Threading: every public member is called on the loop thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <functional>
#include <hotswap/appup/manifest.hpp>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "core/library_loader.hpp"
#include "core/module_registry.hpp"
#include "handover/handover_state.hpp"
#include "release/release_store.hpp"
#include "release/runtime_config.hpp"
#include "upgrade/rehearsal.hpp"
#include "upgrade/release_task.hpp"
#include "upgrade/upgrade_check.hpp"
#include "upgrade/upgrade_executor.hpp"
#include "upgrade/upgrade_report.hpp"

namespace hotswap::host {

struct UpgradeRequest {
  std::string version;
  std::optional<ReleaseTask> pre_task;  // run before anything pauses; failure aborts
  // Set by the caller that expects a direction ("upgrade"/"downgrade" commands).
  std::optional<appup::Direction> expected_direction;
  // Live rehearsal first (when runtime.json does not turn it off); false: --no-rehearse.
  bool rehearse = true;
  // Only the rehearsal: the upgrade stops after it, whatever its outcome
  // (`hotswap rehearse`); the report's `rehearsal` holds the outcome.
  bool rehearse_only = false;
  // `hotswap upgrade VSN --blue-green`: a blue-green handover even when the
  // change could be made in place.
  bool blue_green = false;
};

// An upgrade that cannot be made in place, handed to the host to run as a
// blue-green handover (handover/handover_blue.hpp).
struct BlueGreenRequest {
  appup::ReleaseManifest target;
  RuntimeConfig target_config;
  appup::Plan plan;  // per module: Update steps carry their extra; the direction
  // Why not in place, one line each, for `plan`, the report and the log:
  // "forced (--blue-green)", "module chat: chat-2.0.0.appup.json up[0].instructions[0]
  // requires a blue-green handover (new wire format)", "the listeners change",
  // "the host binary changes (sha256 ...)", "module chat is built for module ABI 3,
  // this host runs 2". Never empty.
  std::vector<std::string> reasons;
  boost::filesystem::path host_binary;  // the target release's bin/hotswap
};

// What the check phase may know of the running host, copied on the loop when
// the upgrade starts so that the worker never reads live state.
struct RunningRelease {
  appup::ReleaseManifest manifest;
  RuntimeConfig config;
  RunningCode code;                       // module -> the library it runs
  std::set<std::string> listener_owners;  // modules that own a listener
};

// The release store's bookkeeping as of the last write through the coordinator.
struct ReleaseBookkeeping {
  std::optional<std::string> permanent;
  std::optional<std::string> current;
  // The release that runs although RELEASES.json does not say so: an upgrade
  // committed but its record failed. Repaired by the next store write.
  std::optional<std::string> unrecorded;
};

// Every module the config talks about must be in the release; ConfigError otherwise.
void check_config_matches(const RuntimeConfig& config, const appup::ReleaseManifest& manifest,
                          const boost::filesystem::path& config_file);

// Why `plan` cannot run in place, one line each (BlueGreenRequest::reasons);
// empty: it can. The plan's appup blue_green reasons, then a target runtime
// config whose listeners differ from the running one's ("the listeners change:
// adds game2, removes admin2, changes main"), then each deleted module that
// owns a listener (`listener_owners`). The coordinator, the live and the
// offline `hotswap plan` run it.
std::vector<std::string> blue_green_reasons(const appup::Plan& plan, const std::set<std::string>& listener_owners,
                                            const RuntimeConfig& running_config, const RuntimeConfig& target_config);

// One line for each module the plan loads whose ABI tag (module.h) is newer
// than this host's HOTSWAP_ABI_VERSION: "module chat 2.0.0 is built for
// module ABI 2, newer than this host supports (1..1)". Only a host built for
// that ABI can load it, so the upgrade hands over to the target release's
// bin/hotswap. Reads each library's file (not on the loop). A module without
// a tag, and a file that cannot be read or is no shared object, add nothing:
// loading them checks the ABI, and fails with the precise error, as before.
std::vector<std::string> module_abi_changes(const appup::Plan& plan);

// The target release's host binary: <release dir>/bin/hotswap.
boost::filesystem::path release_host_binary(const boost::filesystem::path& release_dir);

// "the host binary changes (sha256 <running, 12 digits>... -> <target>...)" when
// the target release has a bin/hotswap that differs both from the running
// release's bin/hotswap and from the running program (`running_program_sha256`,
// called only when needed: hashing /proc/self/exe takes a while); nullopt when
// the target has none or either matches. Comparing with the running release's
// copy too keeps a host that runs from another path (the unstripped build, the
// .deb's /usr/bin) from handing over when both releases ship the same host.
// Throws std::runtime_error naming the file when one cannot be read.
std::optional<std::string> host_binary_change(const boost::filesystem::path& running_release_dir,
                                              const boost::filesystem::path& target_release_dir,
                                              const std::function<std::string()>& running_program_sha256);

// The manifest of the unpacked release `version`; throws naming the release
// when it is not unpacked. Reads files: not on the loop while traffic flows.
appup::ReleaseManifest load_unpacked_release(const ReleaseStore& store, const std::string& version);

// The message every request refused because the host is stopping carries.
extern const char* const kHostStopping;

class UpgradeCoordinator {
 public:
  enum class State { Idle, Planning, Rehearsing, Preparing, Applying, HandingOver, Finishing };
  using Done = std::function<void(const UpgradeReport&)>;

  // What the coordinator asks of the host it serves, always on the loop thread.
  struct HostCallbacks {
    // While Applying, after the new code committed: `target` is now the running release.
    std::function<void(const appup::ReleaseManifest& target, const RuntimeConfig& target_config)> commit;
    // Every upgrade that started ends here, whatever its outcome, just before its `done`.
    std::function<void(const UpgradeReport& report)> finished;
    // The plan needs a blue-green handover: the host runs it and calls `done`
    // exactly once, on the loop, with its figures (committed: green serves and
    // this process is about to exit; otherwise this process serves on). The
    // coordinator is HandingOver meanwhile. Unset: such a plan is refused.
    std::function<void(const BlueGreenRequest& request, const ProgressListener& progress,
                       std::function<void(const HandoverFigures& figures)> done)>
        hand_over;
  };

  // Starts the worker thread (at a low priority). Reads the store's bookkeeping
  // into the cache.
  UpgradeCoordinator(boost::asio::io_context& loop, ReleaseStore& store, LibraryLoader& loader,
                     ModuleRegistry& registry, UpgradeExecutor& executor, HostCallbacks host);
  // Joins the worker once it ran what was posted to it. What it posted back to
  // a loop that no longer runs is dropped with the io_context.
  ~UpgradeCoordinator();
  UpgradeCoordinator(const UpgradeCoordinator&) = delete;
  UpgradeCoordinator& operator=(const UpgradeCoordinator&) = delete;

  State state() const { return state_; }
  bool busy() const { return state_ != State::Idle; }
  // The last rehearsal's report (RehearsalReport::to_json), null before the first.
  const nlohmann::json& last_rehearsal() const { return last_rehearsal_; }
  // The version the upgrade in progress goes to; empty when Idle.
  const std::string& target_version() const { return target_version_; }
  const std::optional<UpgradeReport>& last_report() const { return last_report_; }

  // Starts an upgrade from `running` to `request.version`. Refused at once
  // (`done` called before returning) when another upgrade runs (Busy) or the
  // host is stopping (Refused). Otherwise `done` is called exactly once, on the
  // loop, after Finishing; `progress` is called on the loop only.
  void start(const UpgradeRequest& request, RunningRelease running, ProgressListener progress, Done done);

  // Runs `work` on the worker, then `then` on the loop. `work` must not throw.
  // Once stop has begun, neither runs and false is returned: the caller then
  // answers its own caller (with kHostStopping).
  bool run_on_worker(std::function<void()> work, std::function<void()> then);

  // Runs `write` on the worker (where the store may fsync), refreshes the
  // cached bookkeeping, then calls `done` on the loop with the error message
  // (empty on success). Once stop has begun, `done(kHostStopping)` is called at once.
  // When an upgrade committed but its record failed, the record is repaired
  // first (the running release recorded as current); if that fails again,
  // `write` is not run and the error says why.
  void write_store(std::function<void(ReleaseStore&)> write, std::function<void(const std::string& error)> done);
  // The store's bookkeeping as of the last write made through write_store or an
  // upgrade (or refresh_bookkeeping). Never blocks.
  const ReleaseBookkeeping& bookkeeping() const { return bookkeeping_; }
  // Reads the store now, on the calling thread: only while the loop does not run yet (boot).
  void refresh_bookkeeping();

  // Graceful stop: nothing new is started; an upgrade still Preparing is
  // cancelled (it comes back from the worker, is never applied, its libraries
  // are closed on the worker and its `done` gets a Refused report saying the
  // host is stopping); an upgrade already past its pause finishes. `on_idle`
  // runs on the loop once every hop has come back, which may be before stop
  // returns. The loop must keep running until then.
  void stop(std::function<void()> on_idle);
  bool stopping() const { return stopping_; }

  // Worker only (inside run_on_worker): why the plan from `running` to release
  // `version` cannot run in place, as an upgrade would find it
  // (BlueGreenRequest::reasons, without "forced"): blue_green_reasons against
  // the target's runtime config, then host_binary_change. Empty: in place.
  // Throws what reading the target's config or binaries throws. The live
  // `plan` shows them.
  std::vector<std::string> handover_reasons(const std::string& version, const appup::ReleaseManifest& running,
                                            const RuntimeConfig& running_config,
                                            const std::set<std::string>& listener_owners, const appup::Plan& plan);

  // For tests: called on the worker at the start of every check phase, before
  // anything is read, so a test can hold an upgrade in Preparing. Set it
  // before starting the upgrade it should see.
  void set_check_hook(std::function<void()> hook) { check_hook_ = std::move(hook); }
  // For tests: the program whose sha256 stands for the running host binary
  // (default /proc/self/exe). Set it before the first upgrade starts.
  void set_running_program(boost::filesystem::path program) { running_program_ = std::move(program); }

 private:
  struct Job;
  // The hop itself, also used after stop began (to finish what is in flight).
  void hop(std::function<void()> work, std::function<void()> then);
  void plan(Job& job);                             // worker
  void planned(const std::shared_ptr<Job>& job);   // loop
  void rehearsed(const std::shared_ptr<Job>& job, const RehearsalReport& rehearsal);  // loop
  void prepare(Job& job);                          // worker
  void prepared(const std::shared_ptr<Job>& job);  // loop
  void apply(Job& job);                            // loop
  void finish(Job& job);                           // worker
  void complete(const std::shared_ptr<Job>& job);  // loop
  // Worker: the handover reasons of the planned job, in BlueGreenRequest's order.
  std::vector<std::string> handover_reasons(const Job& job);
  void hand_over(const std::shared_ptr<Job>& job);                                   // loop
  void handed_over(const std::shared_ptr<Job>& job, const HandoverFigures& figures);  // loop
  ReleaseBookkeeping read_bookkeeping() const;  // worker (or before the loop runs)
  // Worker: records unrecorded_release_ as current; the error, empty on success.
  std::string repair_record();
  void notify_if_idle();

  boost::asio::io_context& loop_;
  ReleaseStore& store_;
  LibraryLoader& loader_;
  ModuleRegistry& registry_;
  UpgradeExecutor& executor_;
  HostCallbacks host_;

  State state_ = State::Idle;
  std::string target_version_;
  std::shared_ptr<Job> current_job_;  // while not Idle
  std::optional<UpgradeReport> last_report_;
  nlohmann::json last_rehearsal_ = nullptr;
  // Worker thread only (and the constructor): the release that runs but that
  // RELEASES.json does not record (its upgrade's record failed). The worker's
  // order of work keeps it right: a later upgrade's finish replaces it.
  // Declared before bookkeeping_, whose initialiser reads it.
  std::optional<std::string> unrecorded_release_;
  ReleaseBookkeeping bookkeeping_;
  size_t hops_in_flight_ = 0;  // posted to the worker, not yet back on the loop
  bool stopping_ = false;
  std::function<void()> on_idle_;
  std::function<void()> check_hook_;
  boost::filesystem::path running_program_ = "/proc/self/exe";
  // Worker only: the running program's sha256, hashed on first need.
  std::string running_program_sha256_;

  // Starts spawned rehearsal children (Rehearsal::start_spawned), off the
  // loop, at the priority of the thread that made the coordinator (the
  // children inherit it; the worker's is the lowest). Its work refers to the
  // loop only.
  boost::asio::thread_pool spawner_{1};
  // Last member: joined first, while everything its work refers to is alive.
  boost::asio::thread_pool worker_{1};
};

const char* to_string(UpgradeCoordinator::State state);

}  // namespace hotswap::host
