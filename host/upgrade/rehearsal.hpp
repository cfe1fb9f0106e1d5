// Live rehearsal (DESIGN.md step 3): before an upgrade or downgrade pauses
// anything, and before the live process dlopens any new library, the plan runs
// on a forked copy of the live process. The copy-on-write snapshot holds the
// live objects themselves (instances, their state, the loaded libraries), so a
// state that points into the old library's code or read-only data is caught
// when the child unloads that library; a migration that segfaults, aborts,
// hangs or throws costs only the child. What the fork costs the live process
// (the call, then a page fault for each page it writes while the child
// lives), and what a fresh process fed the exported state costs instead:
// bench/README.md ("rehearsal_cost").
//
// The fork happens on the event-loop thread at a quiescent point: between two
// handlers, with the upgrade worker idle (no hop in flight: the coordinator
// forks between its plan hop and its check hop). The child is a copy of the
// loop thread alone. What it may have inherited locked:
//  - the worker's locks (the release store's mutex, the loader): none, the
//    worker is idle;
//  - malloc's: none, glibc's fork takes and resets them around the fork;
//  - spdlog's sink and registry mutexes, which the watchdog thread may hold
//    while it logs: the child never logs; it turns the default logger off
//    with an atomic level store, which takes no lock, before anything else;
//  - locks of threads a module started itself: the module's business (module.h:
//    a module whose migration takes a lock its own thread may hold must
//    expect to find it held in a rehearsal).
//
// The child never touches the parent's Asio io_context (its epoll descriptor
// is shared with the parent: an epoll_ctl there would change the parent's
// interest set). It makes every socket it inherited (clients, listeners, the
// admin socket) unreachable by putting /dev/null in its place with dup2: the
// numbers stay taken, nothing it does can read or write a live socket, and the
// sockets are never shut down (shutdown() acts on the connection, which the
// parent still serves). Its host functions go to RecordingServices, which
// counts sends, closes and timers and delivers none of them. It resets the
// signals the host handles (SIGTERM/SIGINT/SIGHUP would write into Asio's
// signal pipe, shared with the parent; fatal signals would print the host's
// crash line) and ends with _exit: no destructor of the parent's objects runs.
//
// The spawned mechanism (runtime.json `"rehearsal_mechanism": "spawn"`) runs
// the same child steps in a fresh process instead: this host's own program
// (`hotswap rehearsal-target`), which loads the running release, imports the
// states the live process exported, plans the same upgrade from the same
// release files and rehearses it. The live process pays an export of every
// state on the loop (`export_ms`) instead of the fork and the page faults the
// fork leaves behind (`live_page_faults`): far less for the states of most
// servers, more for states of hundreds of MiB (bench/README.md,
// "rehearsal_cost"). The child sees the states as their export carries
// them, not the live objects: a pointer the export does not carry is not
// rehearsed. It inherits no socket (the host opens every descriptor
// close-on-exec; `isolate` still runs, for any a module opened without).
//
// The child writes its progress to a pipe, one JSON object a line: a
// {"begin": STEP} line before each step (so a crash names the step it was in),
// an {"end": STEP, ...} line after it, and one {"result": ...} line last.
#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/filesystem/path.hpp>
#include <chrono>
#include <functional>
#include <hotswap/appup/manifest.hpp>
#include <hotswap/appup/planner.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/host_services.hpp"
#include "core/library_loader.hpp"
#include "core/module_registry.hpp"
#include "release/runtime_config.hpp"
#include "upgrade/upgrade_executor.hpp"

namespace hotswap::host {

// One step of a rehearsal as the child reported it.
struct RehearsalStep {
  std::string name;    // (setup,) isolate, load, export_before, migrate, unload, self_check, export_after, round_trip
  std::string detail;  // e.g. the plan step a migration was in
  double ms = 0;
  bool ok = false;
  std::string error;
};

struct RehearsalReport {
  enum class Outcome {
    Passed,    // the child ran the whole plan and every check
    Failed,    // the child reported an error (a step failed, a check did not hold)
    Crashed,   // the child was killed by a signal, or ended without a report
    TimedOut,  // the child ran past the timeout and was killed
    NotRun,    // the rehearsal could not start (pipe, fork) or was cancelled
  };
  Outcome outcome = Outcome::NotRun;
  std::string from_release, to_release;
  std::string step;   // the step it failed in (empty when it passed)
  std::string error;  // what went wrong: "killed by SIGSEGV (...)", the step's error...
  std::vector<RehearsalStep> steps;
  // "fork" or "spawn": how the child was made.
  std::string mechanism = "fork";
  // Forked: the fork() call, on the event loop, in ms. Spawned: the
  // posix_spawn() call, on the coordinator's spawner thread (not the loop).
  double fork_ms = 0;
  // Spawned: exporting and encoding every state, on the event loop, in ms
  // (0 for a fork).
  double export_ms = 0;
  // The rest of it: the page faults the live process took (every thread,
  // getrusage) from the fork until the child was reaped. The fork leaves each
  // private page copy-on-write, so each page the live side writes meanwhile
  // faults once; on some machines a fault costs tens of µs (bench/README.md,
  // rehearsal_cost). Counts every minor fault, those of fresh memory too.
  uint64_t live_page_faults = 0;
  // From the fork to the child's end, in ms.
  double wall_ms = 0;
  // The pause the live upgrade would cost, as the child measured it (suspend to
  // resume; an upper bound: the child's first writes to its copy-on-write pages fault).
  double pause_estimate_ms = 0;
  // module -> {"before": bytes, "after": bytes} of its exported state.
  nlohmann::json state_sizes = nlohmann::json::object();
  // Whether the round trip (downgrade back, compare the export) ran; why not when it did not.
  bool round_trip = false;
  std::string round_trip_skipped;
  // Libraries that stayed mapped in the child after the old code was unloaded.
  std::vector<std::string> leaked;
  // Host functions the modules called in the child (delivered to no one).
  uint64_t sends_dropped = 0;
  // Sockets the child found inherited and made unreachable (step isolate).
  uint64_t sockets_isolated = 0;

  bool passed() const { return outcome == Outcome::Passed; }
  nlohmann::json to_json() const;
  std::string summary() const;  // one line
  std::string live_cost() const;  // "fork 1.20 ms", "export 0.30 ms (spawn 0.90 ms, off the loop)"
};

const char* to_string(RehearsalReport::Outcome outcome);

// What the child runs: the plan (made on the worker, nothing loaded yet) and
// what it needs to create the new instances and to plan the way back.
struct RehearsalInput {
  appup::Plan plan;
  RuntimeConfig target_config;  // sections handed to the new instances
  // The reverse plan for the round trip (target -> running), made by the
  // worker; nullopt when there is none (round_trip_skipped says why).
  std::optional<appup::Plan> back;
  std::string back_missing;
  // Run first in the child: drops what the parent's own bookkeeping holds of
  // the running libraries (the check phase's snapshot), so that after the
  // plan only the child's retired list holds the old code and unloading it
  // really unmaps it.
  std::function<void()> drop_in_child;
};

// The input for rehearsing `plan` (running -> target): the way back for the
// round trip when the plan is an upgrade (made here from the releases'
// appups; reads files), or why there is none.
RehearsalInput make_rehearsal_input(const appup::Plan& plan, const RuntimeConfig& target_config,
                                    const appup::ReleaseManifest& running, const appup::ReleaseManifest& target);

// Host functions of a rehearsal child: nothing reaches the network or the
// parent's event loop. Sends and closes are counted and succeed; timers are
// recorded and never fire.
class RecordingServices : public HostServices {
 public:
  hotswap_status send(std::string_view, hotswap_conn_id, std::string_view) override {
    ++sends;
    return HOTSWAP_OK;
  }
  hotswap_status close(std::string_view, hotswap_conn_id, std::string_view) override {
    ++closes;
    return HOTSWAP_OK;
  }
  void schedule_timer(ModuleSlot&, hotswap_timer_id, uint64_t, uint64_t, uint64_t) override { ++timers_armed; }
  bool cancel_timer(hotswap_timer_id) override {
    ++timers_cancelled;
    return true;
  }
  // The live connections as the parent had them at the fork: the child's copy
  // of the server's bookkeeping, read from memory only (no descriptor touched).
  bool list_connections(std::string_view module, const char* listener, std::vector<ConnectionRef>& out) override {
    return listing != nullptr ? listing->list_connections(module, listener, out)
                              : HostServices::list_connections(module, listener, out);
  }
  HostServices* listing = nullptr;  // the services the registry had before the child replaced them
  uint64_t sends = 0, closes = 0, timers_armed = 0, timers_cancelled = 0;
};

// The child's side, called in the forked child right after fork(). Never returns.
[[noreturn]] void run_rehearsal_child(ModuleRegistry& registry, LibraryLoader& loader, UpgradeExecutor& executor,
                                      const RehearsalInput& input, int report_fd) noexcept;

// The sha256 (64 hex digits) of a plan's JSON (appup::Plan::to_json): what a
// spawned child checks its own plan against.
std::string plan_digest(const appup::Plan& plan);

// The spawned child's side (`hotswap rehearsal-target`): loads release
// `from` of the store at `root`, plans from -> to (which must have the
// digest `plan_sha256`), imports the states read from `input_fd`
// (handover::encode_slots, every state as Import), and rehearses the plan as
// run_rehearsal_child does, writing to `report_fd`. A failure before the
// rehearsal proper is reported as the step "setup".
[[noreturn]] void run_spawned_rehearsal_child(const boost::filesystem::path& root, const std::string& from,
                                              const std::string& to, const std::string& plan_sha256, int input_fd,
                                              int report_fd) noexcept;

// Puts /dev/null in place of every socket descriptor of this process (dup2:
// the number stays taken; the socket is not shut down). Returns how many.
// For the rehearsal child; async-signal-unsafe calls (opendir) are fine there
// because glibc's fork leaves malloc usable.
size_t make_sockets_unreachable() noexcept;

// One rehearsal child as the parent sees it: forked on construction through
// start(), watched on the event loop (its pidfd and its report pipe), killed
// past the timeout, and always killed and reaped by the time the last
// reference goes. Loop thread only.
class Rehearsal : public std::enable_shared_from_this<Rehearsal> {
 public:
  using Done = std::function<void(RehearsalReport report)>;

  // Forks the child now; `done` is called exactly once, on the loop, later
  // (never from inside start). The caller must be at a quiescent point: no
  // worker hop in flight.
  static std::shared_ptr<Rehearsal> start(boost::asio::io_context& loop, ModuleRegistry& registry,
                                          LibraryLoader& loader, UpgradeExecutor& executor,
                                          const RehearsalInput& input, std::chrono::milliseconds timeout,
                                          RehearsalReport report, Done done);

  // What a spawned rehearsal runs: `program rehearsal-target` on the store at
  // `root`, from the running release to `to`. `plan_sha256` is plan_digest()
  // of the plan the live host will run: the child plans again from the
  // release files and refuses, in step setup, to rehearse a plan that differs
  // (a file rewritten after the live host read it).
  struct Spawn {
    boost::filesystem::path program;
    boost::filesystem::path root;
    std::string from, to;
    std::string plan_sha256;
  };
  // Exports every state of `registry` now, on the loop (report.export_ms),
  // and spawns the child on `spawner` (report.fork_ms, off the loop). The
  // child runs at the priority of the spawner's thread and dies with it
  // (PR_SET_PDEATHSIG): that thread must live as long as rehearsals do and
  // run at the loop's priority. `loop` is kept running until the spawn has
  // reported back. Otherwise as start().
  static std::shared_ptr<Rehearsal> start_spawned(boost::asio::io_context& loop, boost::asio::thread_pool& spawner,
                                                  ModuleRegistry& registry, const Spawn& spawn,
                                                  std::chrono::milliseconds timeout, RehearsalReport report,
                                                  Done done);
  ~Rehearsal();
  Rehearsal(const Rehearsal&) = delete;
  Rehearsal& operator=(const Rehearsal&) = delete;

  // Kills the child; `done` then gets NotRun with `why`.
  void cancel(const std::string& why);
  // Kills and reaps the child now and drops `done` uncalled: for an owner that
  // goes away (the loop may never run again).
  void abandon() noexcept;
  pid_t pid() const { return pid_; }

  // Tests: fires the timeout now, as if the timer had expired.
  void expire_now() { on_timeout(); }

 private:
  Rehearsal(boost::asio::io_context& loop, RehearsalReport report, std::chrono::milliseconds timeout, Done done);
  void watch(std::chrono::milliseconds timeout);
  void watch_exit_again();
  void read_more();
  void on_timeout();
  void finish_if_done();
  void fail_now(const std::string& error);  // could not start: done with NotRun, posted
  // Watches the started child `pid` and the read end of its report pipe (owned from here).
  void watch_child(pid_t pid, int report_fd);
  // A spawned child as the spawner thread hands it back: killed and reaped
  // when no Rehearsal takes it.
  struct SpawnedChild;
  static void spawn_child(const Spawn& spawn, const std::string& encoded_states, SpawnedChild& child);
  void on_spawned(SpawnedChild& child);
  void reaped(int wait_status);

  boost::asio::io_context& loop_;
  RehearsalReport report_;
  Done done_;
  pid_t pid_ = -1;
  bool reaped_ = false;
  bool exited_ = false;
  bool pipe_closed_ = false;
  bool timed_out_ = false;
  bool finished_ = false;
  bool spawning_ = false;  // the spawner thread is starting the child
  std::chrono::milliseconds timeout_;
  std::string cancelled_;
  int wait_status_ = 0;
  std::string text_;  // the report lines read so far (bounded)
  std::chrono::steady_clock::time_point forked_at_;
  uint64_t faults_at_fork_ = 0;
  std::unique_ptr<boost::asio::posix::stream_descriptor> pidfd_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> pipe_;
  boost::asio::steady_timer timer_;
  char buffer_[4096];
};

// Reads the child's report lines into `report` (steps, the result), and
// decides the outcome from them and the wait status. Pure: for tests.
void interpret_rehearsal(const std::string& lines, int wait_status, bool timed_out, RehearsalReport& report);

}  // namespace hotswap::host
