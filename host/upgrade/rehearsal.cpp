#include "upgrade/rehearsal.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>

#include "core/module_call.hpp"
#include "core/sha256.hpp"
#include "handover/handover_channel.hpp"
#include "os/fd.hpp"
#include "os/os_sys_calls.hpp"
#include "os/signal_name.hpp"
#include "release/release_files.hpp"
#include "release/release_store.hpp"
#include "upgrade/retired_libraries.hpp"
#include "upgrade/upgrade_check.hpp"
#include "upgrade/upgrade_coordinator.hpp"

namespace hotswap::host {
namespace {

namespace asio = boost::asio;
using appup::StepKind;
using Clock = std::chrono::steady_clock;
using nlohmann::json;
namespace fs = boost::filesystem;

// The report lines a parent keeps; a child that writes more is cut off there.
constexpr size_t kMaxReportBytes = size_t(1) << 20;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Minor page faults of this whole process so far.
uint64_t page_faults_of_this_process() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return static_cast<uint64_t>(usage.ru_minflt);
}

bool moves_state(StepKind kind) { return kind == StepKind::Update || kind == StepKind::LoadModule; }
bool new_instance(StepKind kind) {
  return moves_state(kind) || kind == StepKind::RestartModule || kind == StepKind::AddModule;
}

// ---- the child ------------------------------------------------------------------

// Writes report lines to the pipe. A write that fails (the parent is gone)
// ends the child: nobody is left to read what it finds.
class ChildReporter {
 public:
  explicit ChildReporter(int fd) : fd_(fd) {}
  void line(const json& object) {
    const std::string text = object.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    for (size_t done = 0; done < text.size();) {
      const ssize_t put = ::write(fd_, text.data() + done, text.size() - done);
      if (put < 0 && errno == EINTR) continue;
      if (put <= 0) ::_exit(3);
      done += static_cast<size_t>(put);
    }
  }
  void begin(const std::string& step, const std::string& detail = {}) {
    line({{"begin", step}, {"detail", detail}});
  }
  void end(const std::string& step, Clock::time_point start, const std::string& error = {},
           const json& extra = json::object()) {
    json object = {{"end", step}, {"ms", ms_since(start)}, {"ok", error.empty()}, {"error", error}};
    object.update(extra);
    line(object);
  }

 private:
  int fd_;
};

// A step that failed: the child reports it and stops.
struct StepFailed {
  std::string step, error;
};

// The modules whose state the plan moves, in plan order, once each (those running now).
std::vector<std::string> state_movers(const appup::Plan& plan, ModuleRegistry& registry) {
  std::vector<std::string> names;
  std::set<std::string> seen;
  for (const appup::PlanStep& step : plan.steps)
    if (moves_state(step.kind) && registry.find(step.module) != nullptr && seen.insert(step.module).second)
      names.push_back(step.module);
  return names;
}

// Modules that run new code after the plan.
std::vector<std::string> renewed(const appup::Plan& plan, ModuleRegistry& registry) {
  std::vector<std::string> names;
  std::set<std::string> seen;
  for (const appup::PlanStep& step : plan.steps)
    if (new_instance(step.kind) && seen.insert(step.module).second) names.push_back(step.module);
  std::vector<std::string> running;
  for (const std::string& name : names)
    if (registry.find(name) != nullptr) running.push_back(name);
  return running;
}

// Loads, migrates and commits `plan` in this (child) process; the retired
// libraries are unloaded by the caller. Throws StepFailed.
UpgradeReport apply_plan(const std::string& step_name, const appup::Plan& plan, ModuleRegistry& registry,
                         LibraryLoader& loader, UpgradeExecutor& executor, ChildReporter& out,
                         RetiredLibraries& retired) {
  out.begin(step_name == "migrate" ? "load" : step_name, "load and check the new code");
  Clock::time_point start = Clock::now();
  PreparedUpgrade prepared = check_upgrade(plan, registry, loader);
  if (!prepared.ok()) {
    const std::string step = step_name == "migrate" ? "load" : step_name;
    out.end(step, start, prepared.report().error);
    throw StepFailed{step, prepared.report().error};
  }
  if (step_name == "migrate") {
    out.end("load", start);
    out.begin("migrate", plan.steps.empty() ? std::string() : "step 1 (" + plan.steps[0].describe() + ")");
    start = Clock::now();
  }
  executor.set_step_hook([&](size_t index) {
    if (index + 1 < plan.steps.size())
      out.begin(step_name, "step " + std::to_string(index + 2) + " (" + plan.steps[index + 1].describe() + ")");
  });
  UpgradeReport report = executor.apply(std::move(prepared), {}, &retired);
  executor.set_step_hook({});
  if (!report.committed()) {
    out.end(step_name, start, report.error);
    throw StepFailed{step_name, report.error};
  }
  out.end(step_name, start, {}, {{"pause_ms", to_ms(report.pause)}});
  return report;
}

void rehearse(ModuleRegistry& registry, LibraryLoader& loader, UpgradeExecutor& executor, const RehearsalInput& input,
              ChildReporter& out, RecordingServices& services) {
  json result = {{"ok", true}};
  // Isolation first, before any module code runs.
  out.begin("isolate");
  Clock::time_point start = Clock::now();
  const size_t sockets = make_sockets_unreachable();
  services.listing = &registry.services();
  registry.replace_services(services);
  if (input.drop_in_child) input.drop_in_child();
  out.end("isolate", start, {}, {{"sockets", sockets}});

  const std::vector<std::string> movers = state_movers(input.plan, registry);
  std::map<std::string, std::string> before;
  json sizes = json::object();
  out.begin("export_before");
  start = Clock::now();
  for (const std::string& name : movers) {
    try {
      before[name] = registry.find(name)->active().export_state();
    } catch (const std::exception& e) {
      out.end("export_before", start, e.what());
      throw StepFailed{"export_before", e.what()};
    }
    sizes[name]["before"] = before[name].size();
  }
  out.end("export_before", start);

  // New instances get the target release's config sections (as the coordinator does).
  std::map<std::string, std::string> previous;
  for (const ModuleSlot* slot : registry.slots()) previous[slot->name()] = registry.module_config(slot->name());
  for (const auto& [name, section] : input.target_config.modules)
    registry.set_module_config(name, input.target_config.module_section(name));

  std::vector<std::pair<std::string, std::weak_ptr<LoadedLibrary>>> old_code;
  for (const std::string& name : renewed(input.plan, registry))
    old_code.emplace_back(name, registry.find(name)->active().library_ptr());
  RetiredLibraries retired;
  UpgradeReport report = apply_plan("migrate", input.plan, registry, loader, executor, out, retired);
  result["pause_ms"] = to_ms(report.pause);

  // Unload the old code: a state that still points into it faults from here on.
  out.begin("unload");
  start = Clock::now();
  std::vector<std::string> leaked = retired.close_all();
  for (const auto& [name, weak] : old_code)
    if (const std::shared_ptr<LoadedLibrary> library = weak.lock(); library && !library->closed())
      leaked.push_back(library->name() + " " + library->version() + " (still referenced: not unloaded)");
  out.end("unload", start, {}, {{"leaked", leaked}});
  result["leaked"] = leaked;

  for (const std::string& name : renewed(input.plan, registry)) {
    ModuleInstance& instance = registry.find(name)->active();
    const hotswap_module_descriptor& d = instance.descriptor();
    if (!HOTSWAP_DESCRIPTOR_HAS(&d, self_check) || d.self_check == nullptr) continue;
    out.begin("self_check", name + " " + instance.version());
    start = Clock::now();
    char message[kErrorCapacity];
    message[0] = '\0';
    hotswap_error err{message, sizeof message};
    hotswap_instance* handle = instance.handle();
    const hotswap_status status =
        call_module(instance.call_site("self_check"), &err, [&] { return d.self_check(handle, &err); });
    if (status != HOTSWAP_OK) {
      std::string error = "module " + name + " " + instance.version() + ": self_check failed: " +
                          (message[0] != '\0' ? std::string(message) : "status " + std::to_string(status));
      out.end("self_check", start, error);
      throw StepFailed{"self_check", error};
    }
    out.end("self_check", start);
  }

  // Reads the whole new state, after the old code is gone.
  out.begin("export_after");
  start = Clock::now();
  for (const std::string& name : movers) {
    ModuleSlot* slot = registry.find(name);
    if (slot == nullptr) continue;
    try {
      sizes[name]["after"] = slot->active().export_state().size();
    } catch (const std::exception& e) {
      out.end("export_after", start, e.what());
      throw StepFailed{"export_after", e.what()};
    }
  }
  out.end("export_after", start);
  result["state_sizes"] = sizes;

  if (!input.back) {
    result["round_trip_skipped"] = input.back_missing;
  } else {
    for (const auto& [name, section] : previous) registry.set_module_config(name, section);
    RetiredLibraries back_retired;
    apply_plan("round_trip", *input.back, registry, loader, executor, out, back_retired);
    back_retired.close_all();
    out.begin("round_trip", "compare each state's export with the one before the upgrade");
    start = Clock::now();
    for (const std::string& name : movers) {
      ModuleSlot* slot = registry.find(name);
      std::string again;
      try {
        if (slot != nullptr) again = slot->active().export_state();
      } catch (const std::exception& e) {
        out.end("round_trip", start, e.what());
        throw StepFailed{"round_trip", e.what()};
      }
      const std::string& was = before[name];
      if (slot == nullptr || again != was) {
        size_t at = 0;
        while (at < was.size() && at < again.size() && was[at] == again[at]) ++at;
        std::string error = "module " + name + ": the state exported after upgrading and downgrading back differs "
                            "from the state before (" + std::to_string(was.size()) + " bytes before, " +
                            std::to_string(again.size()) + " after, first difference at byte " + std::to_string(at) +
                            ")";
        out.end("round_trip", start, error);
        throw StepFailed{"round_trip", error};
      }
    }
    out.end("round_trip", start);
    result["round_trip"] = true;
  }
  result["sends_dropped"] = services.sends;
  out.line({{"result", result}});
}

// Ends a child of this process now: SIGKILL, then waitpid until it is reaped.
void kill_and_reap(pid_t pid) noexcept {
  ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

}  // namespace

size_t make_sockets_unreachable() noexcept {
  const int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd < 0) return 0;
  std::vector<int> sockets;
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    const int own = ::dirfd(dir);
    while (const dirent* entry = ::readdir(dir)) {
      char* end = nullptr;
      const long fd = std::strtol(entry->d_name, &end, 10);
      if (end == entry->d_name || *end != '\0' || fd == own) continue;
      struct stat st {};
      if (::fstat(static_cast<int>(fd), &st) == 0 && S_ISSOCK(st.st_mode)) sockets.push_back(static_cast<int>(fd));
    }
    ::closedir(dir);
  }
  // dup2 keeps each number taken (nothing else is handed it) and drops this
  // process's reference to the socket without shutdown: the parent's stays open.
  for (int fd : sockets) ::dup2(null_fd, fd);
  ::close(null_fd);
  return sockets.size();
}

RehearsalInput make_rehearsal_input(const appup::Plan& plan, const RuntimeConfig& target_config,
                                    const appup::ReleaseManifest& running, const appup::ReleaseManifest& target) {
  RehearsalInput input;
  input.plan = plan;
  input.target_config = target_config;
  // The way back, for the round trip (an upgrade's downgrade must give the
  // older state back byte for byte). Not for a downgrade: upgrading again may
  // lawfully miss what the older version could not hold.
  if (plan.direction != appup::Direction::Upgrade) {
    input.back_missing = "a downgrade's round trip (upgrading again) may lawfully lose what the older version "
                         "cannot hold";
  } else {
    try {
      input.back = appup::make_plan(target, running, load_appup_of);
    } catch (const std::exception& e) {
      input.back_missing = std::string("no plan back to ") + running.version + ": " + e.what();
    }
  }
  return input;
}

std::string plan_digest(const appup::Plan& plan) {
  const std::string text = plan.to_json().dump();
  return sha256_bytes(text.data(), text.size());
}

void run_spawned_rehearsal_child(const fs::path& root, const std::string& from, const std::string& to,
                                 const std::string& plan_sha256, int input_fd, int report_fd) noexcept {
  spdlog::default_logger_raw()->set_level(spdlog::level::off);  // its stderr is the daemon's log
  ChildReporter out(report_fd);
  Clock::time_point start = Clock::now();
  out.begin("setup", "load release " + from + " and import the live states");
  try {
    // The release files, read as the live host read them when it planned.
    const ReleaseStore store(root);
    const appup::ReleaseManifest running = load_release_manifest(store.release_dir(from));
    const fs::path running_config_file = store.runtime_config_path(from);
    const RuntimeConfig running_config = load_runtime_config(running_config_file);
    check_config_matches(running_config, running, running_config_file);
    const appup::ReleaseManifest target = load_unpacked_release(store, to);
    const fs::path target_config_file = store.runtime_config_path(to);
    const RuntimeConfig target_config = load_runtime_config(target_config_file);
    check_config_matches(target_config, target, target_config_file);
    const appup::Plan plan = appup::make_plan(running, target, load_appup_of);
    if (plan_digest(plan) != plan_sha256)
      throw std::runtime_error("the plan " + from + " -> " + to + " made from the release files now differs from " +
                               "the one the live host made (a manifest or appup rewritten since the host read it?): " +
                               "nothing was rehearsed; run the upgrade again to plan it anew");
    const RehearsalInput input = make_rehearsal_input(plan, target_config, running, target);

    std::string encoded;
    char buffer[1 << 16];
    for (;;) {  // pread: the parent's writes left the shared file offset at the end
      const ssize_t got = ::pread(input_fd, buffer, sizeof buffer, static_cast<off_t>(encoded.size()));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) throw std::runtime_error(std::string("cannot read the live states: ") + std::strerror(errno));
      if (got == 0) break;
      encoded.append(buffer, static_cast<size_t>(got));
    }
    ::close(input_fd);
    handover::SlotsMessage states = handover::decode_slots(encoded);
    encoded = std::string();

    // Leaked on purpose: the child ends with _exit, and nothing here may
    // unload a library while a later step still looks at it.
    auto* services = new DetachedServices();
    auto* loader = new LibraryLoader();
    auto* registry = new ModuleRegistry(*services);
    auto* executor = new UpgradeExecutor(*registry, *loader);
    for (const auto& [name, section] : running_config.modules) registry->set_module_config(name, section.config.dump());
    for (const appup::ModuleEntry* m : boot_order(running))
      registry->start(loader->load(m->file, {m->name, m->version, m->sha256}));
    for (const SlotHandover& state : states.slots) {
      ModuleSlot* slot = registry->find(state.module);
      if (slot == nullptr || slot->active().version() != state.version)
        throw std::runtime_error("the live host runs module " + state.module + " " + state.version +
                                 ", which release " + from + " does not have");
      slot->active().import_state(state.schema, state.state);
    }
    states.slots.clear();
    out.end("setup", start);
    run_rehearsal_child(*registry, *loader, *executor, input, report_fd);
  } catch (const std::exception& e) {
    out.end("setup", start, e.what());
    out.line({{"result", {{"ok", false}, {"step", "setup"}, {"error", e.what()}}}});
  } catch (...) {
    out.end("setup", start, "an exception that is not a std::exception");
    out.line({{"result", {{"ok", false}, {"step", "setup"}, {"error", "an exception that is not a std::exception"}}}});
  }
  ::_exit(0);
}

void run_rehearsal_child(ModuleRegistry& registry, LibraryLoader& loader, UpgradeExecutor& executor,
                         const RehearsalInput& input, int report_fd) noexcept {
  // No logging: another thread of the parent may have held a sink's mutex at
  // the fork. An atomic level store; it takes no lock.
  spdlog::default_logger_raw()->set_level(spdlog::level::off);
  // The host's handlers would write into Asio's signal pipe (shared with the
  // parent) or print the host's crash line: the child dies of its signals plainly.
  for (int signal : {SIGTERM, SIGINT, SIGHUP, SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL, SIGPIPE})
    ::signal(signal, signal == SIGPIPE ? SIG_IGN : SIG_DFL);
  sigset_t all;
  ::sigemptyset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, nullptr);

  ChildReporter out(report_fd);
  RecordingServices services;
  try {
    rehearse(registry, loader, executor, input, out, services);
  } catch (const StepFailed& failed) {
    out.line({{"result", {{"ok", false}, {"step", failed.step}, {"error", failed.error}}}});
  } catch (const std::exception& e) {
    out.line({{"result", {{"ok", false}, {"step", ""}, {"error", e.what()}}}});
  } catch (...) {
    out.line({{"result", {{"ok", false}, {"step", ""}, {"error", "an exception that is not a std::exception"}}}});
  }
  ::_exit(0);
}

// ---- the report --------------------------------------------------------------------

const char* to_string(RehearsalReport::Outcome outcome) {
  switch (outcome) {
    case RehearsalReport::Outcome::Passed:
      return "passed";
    case RehearsalReport::Outcome::Failed:
      return "failed";
    case RehearsalReport::Outcome::Crashed:
      return "crashed";
    case RehearsalReport::Outcome::TimedOut:
      return "timed_out";
    case RehearsalReport::Outcome::NotRun:
      return "not_run";
  }
  return "?";
}

json RehearsalReport::to_json() const {
  json steps_json = json::array();
  for (const RehearsalStep& s : steps)
    steps_json.push_back({{"step", s.name}, {"detail", s.detail}, {"ms", s.ms}, {"ok", s.ok}, {"error", s.error}});
  return {{"outcome", to_string(outcome)},
          {"from", from_release},
          {"to", to_release},
          {"step", step},
          {"error", error},
          {"steps", steps_json},
          {"mechanism", mechanism},
          {"fork_ms", fork_ms},
          {"export_ms", export_ms},
          {"live_page_faults", live_page_faults},
          {"wall_ms", wall_ms},
          {"pause_estimate_ms", pause_estimate_ms},
          {"state_sizes", state_sizes},
          {"round_trip", round_trip},
          {"round_trip_skipped", round_trip_skipped},
          {"leaked", leaked},
          {"sends_dropped", sends_dropped},
          {"sockets_isolated", sockets_isolated}};
}

std::string RehearsalReport::live_cost() const {
  if (mechanism == "spawn") return fmt::format("export {:.2f} ms (spawn {:.2f} ms, off the loop)", export_ms, fork_ms);
  return fmt::format("fork {:.2f} ms", fork_ms);
}

std::string RehearsalReport::summary() const {
  if (passed())
    return fmt::format("rehearsal of {} -> {} passed in {:.1f} ms ({} on the live process, then {} page faults "
                       "there while the child ran; the upgrade's pause would be about {:.2f} ms){}",
                       from_release, to_release, wall_ms, live_cost(), live_page_faults, pause_estimate_ms,
                       round_trip ? "; the round trip restored every state" : "");
  return fmt::format("rehearsal of {} -> {} {}{}: {}; the live process changed nothing", from_release, to_release,
                     to_string(outcome), step.empty() ? "" : " in step " + step, error);
}

void interpret_rehearsal(const std::string& lines, int wait_status, bool timed_out, RehearsalReport& report) {
  json result;
  std::string open_step;  // begun and not ended: where the child was when it ended
  size_t begin = 0;
  while (begin < lines.size()) {
    const size_t end = lines.find('\n', begin);
    if (end == std::string::npos) break;  // a cut line
    const json line = json::parse(lines.substr(begin, end - begin), nullptr, false);
    begin = end + 1;
    if (!line.is_object()) continue;
    if (line.contains("begin") && line["begin"].is_string()) {
      RehearsalStep step;
      step.name = line["begin"].get<std::string>();
      step.detail = line.value("detail", "");
      open_step = step.name;
      if (!report.steps.empty() && report.steps.back().name == step.name && !report.steps.back().ok &&
          report.steps.back().error.empty())
        report.steps.back().detail = step.detail;  // the next plan step of the same migration
      else
        report.steps.push_back(step);
    } else if (line.contains("end") && line["end"].is_string()) {
      const std::string name = line["end"].get<std::string>();
      if (report.steps.empty() || report.steps.back().name != name) report.steps.push_back({name, {}, 0, false, {}});
      RehearsalStep& step = report.steps.back();
      step.ms = line.value("ms", 0.0);
      step.error = line.value("error", "");
      step.ok = line.value("ok", false) && step.error.empty();
      open_step.clear();
      if (name == "isolate") report.sockets_isolated = line.value("sockets", uint64_t{0});
      if (line.contains("leaked") && line["leaked"].is_array())
        for (const json& l : line["leaked"])
          if (l.is_string()) report.leaked.push_back(l.get<std::string>());
    } else if (line.contains("result") && line["result"].is_object()) {
      result = line["result"];
    }
  }
  auto unfinished = [&]() -> std::string {
    if (!open_step.empty()) return open_step;
    return report.steps.empty() ? "start" : "after " + report.steps.back().name;
  };
  if (timed_out) {
    report.outcome = RehearsalReport::Outcome::TimedOut;
    report.step = unfinished();
    return;  // the caller names the timeout
  }
  if (WIFSIGNALED(wait_status)) {
    report.outcome = RehearsalReport::Outcome::Crashed;
    report.step = unfinished();
    report.error = "the rehearsal child was killed by " + os::signal_name(WTERMSIG(wait_status));
    return;
  }
  if (result.is_object()) {
    report.pause_estimate_ms = result.value("pause_ms", 0.0);
    if (result.contains("state_sizes") && result["state_sizes"].is_object()) report.state_sizes = result["state_sizes"];
    report.round_trip = result.value("round_trip", false);
    report.round_trip_skipped = result.value("round_trip_skipped", "");
    report.sends_dropped = result.value("sends_dropped", uint64_t{0});
    if (result.value("ok", false)) {
      report.outcome = RehearsalReport::Outcome::Passed;
      return;
    }
    report.outcome = RehearsalReport::Outcome::Failed;
    report.step = result.value("step", "");
    if (report.step.empty()) report.step = unfinished();
    report.error = result.value("error", "unknown error");
    return;
  }
  report.outcome = RehearsalReport::Outcome::Crashed;
  report.step = unfinished();
  report.error = WIFEXITED(wait_status) ? "the rehearsal child exited with status " +
                                              std::to_string(WEXITSTATUS(wait_status)) + " before reporting"
                                        : "the rehearsal child ended without a report";
}

// ---- the parent's side ---------------------------------------------------------------

Rehearsal::Rehearsal(asio::io_context& loop, RehearsalReport report, std::chrono::milliseconds timeout, Done done)
    : loop_(loop), report_(std::move(report)), done_(std::move(done)), timeout_(timeout), timer_(loop) {}

Rehearsal::~Rehearsal() {
  if (pid_ > 0 && !reaped_) kill_and_reap(pid_);
}

std::shared_ptr<Rehearsal> Rehearsal::start(asio::io_context& loop, ModuleRegistry& registry, LibraryLoader& loader,
                                            UpgradeExecutor& executor, const RehearsalInput& input,
                                            std::chrono::milliseconds timeout, RehearsalReport report, Done done) {
  std::shared_ptr<Rehearsal> self(new Rehearsal(loop, std::move(report), timeout, std::move(done)));
  int pipe_fds[2] = {-1, -1};
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    self->fail_now(std::string("could not make the report pipe: ") + std::strerror(errno));
    return self;
  }
  // Every signal blocked across the fork: a SIGTERM or SIGHUP for the host must
  // not run the host's handler in the child (it writes to Asio's signal pipe,
  // shared with the parent) before the child resets its handlers and unmasks.
  sigset_t all_signals, parent_mask;
  ::sigfillset(&all_signals);
  ::pthread_sigmask(SIG_BLOCK, &all_signals, &parent_mask);
  self->faults_at_fork_ = page_faults_of_this_process();
  const Clock::time_point before_fork = Clock::now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(pipe_fds[0]);
    run_rehearsal_child(registry, loader, executor, input, pipe_fds[1]);
  }
  self->forked_at_ = Clock::now();
  ::pthread_sigmask(SIG_SETMASK, &parent_mask, nullptr);
  self->report_.fork_ms = std::chrono::duration<double, std::milli>(self->forked_at_ - before_fork).count();
  ::close(pipe_fds[1]);
  if (pid < 0) {
    const int error = errno;
    ::close(pipe_fds[0]);
    self->fail_now(std::string("could not fork: ") + std::strerror(error));
    return self;
  }
  self->watch_child(pid, pipe_fds[0]);
  return self;
}

struct Rehearsal::SpawnedChild {
  pid_t pid = -1;
  os::Fd report;      // the read end of the child's report pipe
  std::string error;  // why it could not start (no child then)
  double spawn_ms = 0;
  Clock::time_point spawned_at;

  SpawnedChild() = default;
  SpawnedChild(const SpawnedChild&) = delete;
  SpawnedChild& operator=(const SpawnedChild&) = delete;
  ~SpawnedChild() {
    if (pid > 0) kill_and_reap(pid);
  }
};

// On the spawner thread: the states into a memory file, the report pipe, and
// `program rehearsal-target` with them as descriptors 3 and 4.
void Rehearsal::spawn_child(const Spawn& spawn, const std::string& encoded, SpawnedChild& child) {
  os::Fd input(::memfd_create("hotswap-rehearsal-states", MFD_CLOEXEC));
  if (!input) {
    child.error = std::string("could not make the rehearsal's state file: memfd_create: ") + std::strerror(errno);
    return;
  }
  for (size_t written = 0; written < encoded.size();) {
    const ssize_t put = ::write(input.get(), encoded.data() + written, encoded.size() - written);
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) {
      child.error = std::string("could not write the rehearsal's state file: ") + std::strerror(errno);
      return;
    }
    written += static_cast<size_t>(put);
  }
  int pipe_fds[2] = {-1, -1};
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    child.error = std::string("could not make the report pipe: ") + std::strerror(errno);
    return;
  }
  os::Fd report_read(pipe_fds[0]), report_write(pipe_fds[1]);
  const std::string program = spawn.program.string();
  const os::SpawnRequest request{program,
                                 {program, "rehearsal-target", "--root", spawn.root.string(), "--from", spawn.from,
                                  "--to", spawn.to, "--plan-sha256", spawn.plan_sha256, "--host-pid",
                                  std::to_string(::getpid()), "--input-fd", "3", "--report-fd", "4"},
                                 os::current_environment(),
                                 {{input.get(), 3}, {report_write.get(), 4}}};
  // The host's own descriptors are close-on-exec; the child closes any other
  // itself, after the exec (closing thousands here would hold this thread).
  const Clock::time_point before_spawn = Clock::now();
  const auto spawned = os::real_os_sys_calls().spawn(request);
  child.spawned_at = Clock::now();
  child.spawn_ms = std::chrono::duration<double, std::milli>(child.spawned_at - before_spawn).count();
  if (!spawned.ok()) {
    child.error = "could not start " + program + ": " + spawned.error_text();
    return;
  }
  child.pid = spawned.value;
  child.report = std::move(report_read);
}

std::shared_ptr<Rehearsal> Rehearsal::start_spawned(asio::io_context& loop, asio::thread_pool& spawner,
                                                    ModuleRegistry& registry, const Spawn& spawn,
                                                    std::chrono::milliseconds timeout, RehearsalReport report,
                                                    Done done) {
  report.mechanism = "spawn";
  std::shared_ptr<Rehearsal> self(new Rehearsal(loop, std::move(report), timeout, std::move(done)));
  // Every state, as a blue-green handover sends it (handover_channel.hpp), into a memory file the child reads.
  const Clock::time_point before_export = Clock::now();
  std::string encoded;
  std::shared_ptr<SpawnedChild> child;
  try {
    handover::SlotsMessage states;
    for (ModuleSlot* slot : registry.slots()) {
      SlotHandover state;
      state.module = slot->name();
      state.version = slot->active().version();
      state.schema = slot->active().library().state_schema();
      state.arrival = StateArrival::Import;
      state.state = slot->active().export_state();
      states.slots.push_back(std::move(state));
    }
    encoded = handover::encode_slots(states);
    child = std::make_shared<SpawnedChild>();
  } catch (const std::exception& e) {  // a module's export failed, or memory ran out
    self->fail_now(std::string("could not export the states for the rehearsal: ") + e.what());
    return self;
  }
  self->report_.export_ms = ms_since(before_export);
  // Counted from here: the export's own fresh pages are not the child's cost.
  self->faults_at_fork_ = page_faults_of_this_process();
  self->spawning_ = true;
  // The rest off the loop: posix_spawn holds its caller until the child has
  // exec'd (about 1 ms here, more with many descriptors to copy). The spawner
  // thread runs at the loop's priority, so the child does too, and the child
  // dies with that thread (PR_SET_PDEATHSIG), which lives as long as the
  // coordinator. The result comes back to the loop; a child that finds no
  // Rehearsal there any more (or no loop) is killed and reaped by SpawnedChild.
  // The handler posted back holds the only reference to `child`, so the
  // kill and reap of an unwanted child happen on the loop (or where the loop
  // drops the handler), never behind the loop's back on this thread.
  asio::post(spawner, [weak = std::weak_ptr<Rehearsal>(self), &loop, spawn, encoded = std::move(encoded),
                       child = std::move(child), keep_loop_running = asio::make_work_guard(loop)]() mutable {
    try {
      spawn_child(spawn, encoded, *child);
    } catch (const std::exception& e) {  // no exception may leave this thread: it would end the host
      child->error = std::string("could not start the rehearsal child: ") + e.what();
    }
    encoded = std::string();
    asio::post(loop, [weak = std::move(weak), child = std::move(child)] {
      if (std::shared_ptr<Rehearsal> self = weak.lock()) self->on_spawned(*child);
    });
    keep_loop_running.reset();
  });
  return self;
}

void Rehearsal::on_spawned(SpawnedChild& child) {
  spawning_ = false;
  report_.fork_ms = child.spawn_ms;
  if (finished_) return;  // abandoned meanwhile: `child` kills and reaps it
  if (!child.error.empty()) return fail_now(child.error);
  forked_at_ = child.spawned_at;
  watch_child(std::exchange(child.pid, -1), child.report.release());
  if (!cancelled_.empty() && pid_ > 0) ::kill(pid_, SIGKILL);  // cancelled while it was starting
}

void Rehearsal::watch_child(pid_t pid, int report_fd) {
  pid_ = pid;
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    const int error = errno;
    ::close(report_fd);
    // The destructor kills and reaps it.
    return fail_now(std::string("could not watch the child: pidfd_open failed: ") + std::strerror(error));
  }
  try {
    // Each descriptor is owned by its stream_descriptor from here on, even when registering the other throws.
    pipe_ = std::make_unique<asio::posix::stream_descriptor>(loop_);
    pidfd_ = std::make_unique<asio::posix::stream_descriptor>(loop_);
    pipe_->assign(report_fd);
    report_fd = -1;
    pidfd_->assign(pidfd);
  } catch (const std::exception& e) {
    if (report_fd >= 0) ::close(report_fd);
    if (!pidfd_ || !pidfd_->is_open()) ::close(pidfd);
    return fail_now(std::string("could not watch the child: ") + e.what());  // the destructor kills and reaps it
  }
  watch(timeout_);
}

void Rehearsal::fail_now(const std::string& error) {
  finished_ = true;
  report_.outcome = RehearsalReport::Outcome::NotRun;
  report_.error = error;
  asio::post(loop_, [self = shared_from_this()] {
    if (self->done_) self->done_(self->report_);
    self->done_ = nullptr;
  });
}

void Rehearsal::watch(std::chrono::milliseconds timeout) {
  auto self = shared_from_this();
  pidfd_->async_wait(asio::posix::stream_descriptor::wait_read, [self](boost::system::error_code ec) {
    if (ec || self->finished_) return;
    int status = 0;
    pid_t got = -1;
    do {
      got = ::waitpid(self->pid_, &status, WNOHANG);
    } while (got < 0 && errno == EINTR);
    // ECHILD: SIGCHLD is ignored (a supervisor's inheritance) and the kernel reaped
    // it; its status is lost, its report (if any) still says how it ended.
    if (got == self->pid_ || (got < 0 && errno == ECHILD)) self->reaped(status);
    self->finish_if_done();
    if (!self->exited_) self->watch_exit_again();
  });
  read_more();
  timer_.expires_after(timeout);
  timer_.async_wait([self](boost::system::error_code ec) {
    if (!ec) self->on_timeout();
  });
}

void Rehearsal::watch_exit_again() {
  auto self = shared_from_this();
  pidfd_->async_wait(asio::posix::stream_descriptor::wait_read, [self](boost::system::error_code ec) {
    if (ec || self->finished_) return;
    int status = 0;
    const pid_t got = ::waitpid(self->pid_, &status, WNOHANG);
    if (got == self->pid_ || (got < 0 && errno == ECHILD)) {
      self->reaped(status);
      self->finish_if_done();
      return;
    }
    self->watch_exit_again();
  });
}

void Rehearsal::reaped(int wait_status) {
  reaped_ = true;
  exited_ = true;
  wait_status_ = wait_status;
  report_.wall_ms = ms_since(forked_at_);
  report_.live_page_faults = page_faults_of_this_process() - faults_at_fork_;
}

void Rehearsal::read_more() {
  auto self = shared_from_this();
  pipe_->async_read_some(asio::buffer(buffer_), [self](boost::system::error_code ec, size_t got) {
    if (self->finished_) return;
    const size_t room = kMaxReportBytes - std::min(kMaxReportBytes, self->text_.size());
    self->text_.append(self->buffer_, std::min(room, got));
    if (ec) {
      self->pipe_closed_ = true;
      self->finish_if_done();
      return;
    }
    self->read_more();
  });
}

void Rehearsal::on_timeout() {
  if (finished_ || timed_out_) return;
  timed_out_ = true;
  if (!exited_)
    ::kill(pid_, SIGKILL);  // the pidfd then reports its end
  else
    finish_if_done();  // it exited, but something it started still holds the report pipe open
}

void Rehearsal::cancel(const std::string& why) {
  if (finished_ || (pid_ <= 0 && !spawning_)) return;
  cancelled_ = why;
  if (pid_ <= 0) return;  // still starting: on_spawned kills it
  if (!exited_)
    ::kill(pid_, SIGKILL);
  else
    finish_if_done();
}

void Rehearsal::abandon() noexcept {
  finished_ = true;
  done_ = nullptr;
  boost::system::error_code ignored;
  timer_.cancel();
  if (pipe_) pipe_->close(ignored);
  if (pidfd_) pidfd_->close(ignored);
  if (pid_ > 0 && !reaped_) {
    kill_and_reap(pid_);
    reaped_ = true;
  }
}

void Rehearsal::finish_if_done() {
  if (finished_ || !exited_ || !(pipe_closed_ || timed_out_ || !cancelled_.empty())) return;
  finished_ = true;
  timer_.cancel();
  boost::system::error_code ignored;
  pipe_->close(ignored);
  pidfd_->close(ignored);
  interpret_rehearsal(text_, wait_status_, timed_out_, report_);
  if (timed_out_)
    report_.error = "the rehearsal did not finish within " + std::to_string(timeout_.count()) +
                    " ms and was killed (a migration or self-check that never returns?)";
  if (!cancelled_.empty()) {
    report_.outcome = RehearsalReport::Outcome::NotRun;
    report_.error = cancelled_;
  }
  Done done = std::move(done_);
  done_ = nullptr;
  if (done) done(report_);
}

}  // namespace hotswap::host
