#include "cli/run_host.hpp"

#include <fcntl.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/filesystem.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <optional>
#include <thread>

#include "admin/admin_client.hpp"
#include "admin/admin_commands.hpp"
#include "cli/commands.hpp"
#include "cli/exit_status.hpp"
#include "core/allocator_tuning.hpp"
#include "core/crash_trace.hpp"
#include "core/module_probe.hpp"
#include "handover/handover_channel.hpp"
#include "handover/handover_green.hpp"
#include "os/pid_file.hpp"
#include "os/service_notifier.hpp"
#include "release/release_store.hpp"
#include "release/runtime_config.hpp"
#include "runtime.hpp"
#include "upgrade/rehearsal.hpp"

namespace hotswap::cli {
namespace {

namespace fs = boost::filesystem;
using nlohmann::json;

void setup_logging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("hotswap");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  if (!level.empty()) spdlog::set_level(spdlog::level::from_str(level));
}

// A host whose stdout or stderr is a pipe whose reader has gone (`hotswap
// start | head`) must not be killed by its next log line: with SIGPIPE
// ignored, that write (and any to a closed socket) fails with EPIPE instead.
void ignore_sigpipe() { std::signal(SIGPIPE, SIG_IGN); }

// Every connection is a descriptor: the default soft limit (often 1024) would
// cap a game server far below what the machine allows.
void raise_descriptor_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == limit.rlim_max) return;
  limit.rlim_cur = limit.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &limit) != 0)
    spdlog::warn("cannot raise the descriptor limit: {}", std::strerror(errno));
}

// In ROOT/run/: the line a fatal signal wrote, reported and removed by the next start.
constexpr const char kCrashFileName[] = "crashed";

int serve(const fs::path& root, const std::string& log_level) {
  host::tune_allocator_for_short_pauses();
  raise_descriptor_limit();
  try {
    host::ReleaseStore probe(root);
    host::PidFile pid_file(probe.run_dir() / "hotswap.pid");
    // Taken once the pid file is ours, so a host still running on this root keeps its own report.
    const fs::path crash_file = probe.run_dir() / kCrashFileName;
    if (std::optional<std::string> previous = host::take_previous_crash(crash_file))
      spdlog::warn("the previous run crashed: {}", *previous);
    host::install_crash_handler(crash_file);
    host::Runtime runtime(root, host::ChildProcessProbe::of_this_program());
    runtime.boot();
    if (!log_level.empty()) runtime.set_log_level(log_level);  // the flag wins over runtime.json
    runtime.open_admin(host::make_admin_handler(runtime));
    spdlog::info("hotswap host pid {} serving root {}", ::getpid(), root.string());
    os::service_notifier().ready();
    runtime.run();
    // The successor takes the pid file over (renames its own over the path)
    // right after Commit; until the path names it, ours stays locked so that
    // no other host can start on this root in between (bounded).
    if (runtime.handed_over()) {
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      while (pid_file.owns_path() && std::chrono::steady_clock::now() < give_up)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      pid_file.hand_over_name();
    }
    return kOk;
  } catch (const host::ConfigError& e) {
    spdlog::critical("{}", e.what());
    return kConfig;
  } catch (const std::exception& e) {
    spdlog::critical("cannot start: {}", e.what());
    return kFailed;
  }
}

// In the daemon: stdin from /dev/null, stdout and stderr to the log. main()
// has made sure fds 0-2 are open, so the two opened here are above 2.
bool redirect_standard_descriptors(const fs::path& log_file) {
  int null_fd = ::open("/dev/null", O_RDONLY);
  int log_fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (null_fd < 0 || log_fd < 0) return false;
  if (::dup2(null_fd, 0) < 0 || ::dup2(log_fd, 1) < 0 || ::dup2(log_fd, 2) < 0) return false;
  for (int fd : {null_fd, log_fd})
    if (fd > 2) ::close(fd);
  return true;
}

// The new process of a blue-green handover (handover/handover_green.hpp):
// every failure before Commit is told to blue (which kills this process and
// serves on) and ends this process; nothing here was served yet.
int serve_handover_target(const fs::path& root, const std::string& version, int handover_fd) {
  using host::handover::HandoverChannel;
  using host::handover::MessageType;
  // Inherited without close-on-exec (that is how it got here): no child of
  // ours (the module probe) may hold the channel to blue.
  ::fcntl(handover_fd, F_SETFD, FD_CLOEXEC);
  host::tune_allocator_for_short_pauses();
  raise_descriptor_limit();
  auto channel = std::make_unique<HandoverChannel>(os::Fd(handover_fd));
  // Blue kills this process past its own timeout; this bound only keeps an orphan from waiting forever.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::hours(24);
  std::unique_ptr<host::Runtime> runtime;
  std::unique_ptr<host::HandoverGreen> green;
  try {
    channel->send(MessageType::Hello,
                  host::handover::encode_hello({host::handover::kProtocolVersion, ::getpid(), version}));
    runtime = std::make_unique<host::Runtime>(root, host::ChildProcessProbe::of_this_program());
    green = std::make_unique<host::HandoverGreen>(*channel, runtime->server(), runtime->registry(),
                                                  runtime->load_for_handover(version), runtime->config(), deadline);
    channel->send(MessageType::Loaded, host::handover::encode_loaded(green->loaded_modules()));
    green->receive();
    runtime->apply_handover_config();
    channel->send(MessageType::Ready);
    channel->expect(MessageType::Commit, deadline);
  } catch (const std::exception& e) {
    spdlog::critical("handover target: {}", e.what());
    try {
      channel->send(MessageType::Error, host::handover::encode_error(e.what()));
    } catch (const std::exception&) {
      // Blue is gone or the socket broke: blue sees this process exit instead.
    }
    return kFailed;
  }
  // Committed: blue has let go of every socket, so from here nothing may end
  // this process but its own stop. Each step below logs its failure and serves on.
  channel.reset();
  const fs::path run_dir = fs::absolute(root) / "run";  // ReleaseStore::run_dir()
  std::optional<host::PidFile> pid_file;
  try {
    pid_file.emplace(host::PidFile::TakeOver{}, run_dir / "hotswap.pid", ::getpid());
  } catch (const std::exception& e) {
    spdlog::error("serving without the pid file: {}", e.what());
  }
  green->start_serving();
  host::install_crash_handler(run_dir / kCrashFileName);
  runtime->commit_handover(green->figures());
  try {
    runtime->open_admin(host::make_admin_handler(*runtime), green->take_admin_listener());
  } catch (const std::exception& e) {
    spdlog::error("serving without the admin socket: {}", e.what());
  }
  spdlog::info("hotswap host pid {} took over root {} (release {}: {} connection(s), {} listener(s) adopted, {} opened)",
               ::getpid(), root.string(), version, green->counts().connections, green->counts().listeners_adopted,
               green->counts().listeners_opened);
  green.reset();
  runtime->run();
  if (pid_file && runtime->handed_over()) pid_file->hand_over_name();
  return kOk;
}

}  // namespace

std::optional<int> run_handover_target_command(const std::vector<std::string>& words) {
  if (words.empty() || words[0] != "handover-target") return std::nullopt;
  std::string root, version;
  int fd = -1;
  for (size_t i = 1; i + 1 < words.size(); i += 2) {
    if (words[i] == "--root")
      root = words[i + 1];
    else if (words[i] == "--version")
      version = words[i + 1];
    else if (words[i] == "--fd")
      fd = std::atoi(words[i + 1].c_str());
  }
  if (root.empty() || version.empty() || fd < 3 || words.size() != 7) {
    std::cerr << "hotswap handover-target: started by a running host for a blue-green handover "
                 "(--root ROOT --version VSN --fd N), never by hand\n";
    return kUsage;
  }
  ignore_sigpipe();
  setup_logging("");
  return serve_handover_target(root, version, fd);
}

std::optional<int> run_rehearsal_target_command(const std::vector<std::string>& words) {
  if (words.empty() || words[0] != "rehearsal-target") return std::nullopt;
  std::string root, from, to, plan_sha256;
  int input_fd = -1, report_fd = -1;
  pid_t host_pid = 0;
  for (size_t i = 1; i + 1 < words.size(); i += 2) {
    if (words[i] == "--root")
      root = words[i + 1];
    else if (words[i] == "--host-pid")
      host_pid = static_cast<pid_t>(std::atol(words[i + 1].c_str()));
    else if (words[i] == "--from")
      from = words[i + 1];
    else if (words[i] == "--to")
      to = words[i + 1];
    else if (words[i] == "--plan-sha256")
      plan_sha256 = words[i + 1];
    else if (words[i] == "--input-fd")
      input_fd = std::atoi(words[i + 1].c_str());
    else if (words[i] == "--report-fd")
      report_fd = std::atoi(words[i + 1].c_str());
  }
  if (root.empty() || from.empty() || to.empty() || plan_sha256.empty() || host_pid <= 0 || input_fd < 3 ||
      report_fd < 3 || input_fd == report_fd || words.size() != 15) {
    std::cerr << "hotswap rehearsal-target: started by a running host for a live rehearsal (--root ROOT --from VSN "
                 "--to VSN --plan-sha256 HEX --host-pid PID --input-fd N --report-fd M), never by hand\n";
    return kUsage;
  }
  // Inherited without close-on-exec (that is how they got here): no child of ours may hold them.
  for (int fd : {input_fd, report_fd}) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  // Any other descriptor came from a module that opened it without
  // close-on-exec (a socket, say): this process needs none of them.
  for (int fd = 3; fd < std::max(input_fd, report_fd); ++fd)
    if (fd != input_fd && fd != report_fd) ::close(fd);
  ::close_range(static_cast<unsigned>(std::max(input_fd, report_fd)) + 1, ~0U, 0);
  // A rehearsal outlives no host: killed with the thread that started it,
  // the upgrade coordinator's spawner (a migration that hangs would otherwise run on, orphaned).
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  // That thread was gone already, and this process adopted (by init, a
  // subreaper...). Not "parent is 1": the host itself may be pid 1 in a container.
  if (::getppid() != host_pid) return kFailed;
  host::tune_allocator_for_short_pauses();
  host::run_spawned_rehearsal_child(root, from, to, plan_sha256, input_fd, report_fd);
}

int run_host_in_foreground(const fs::path& root, const std::string& log_level) {
  ignore_sigpipe();
  setup_logging(log_level);
  return serve(root, log_level);
}

int run_host_as_daemon(const fs::path& root, const std::string& log_level) {
  ignore_sigpipe();
  host::ReleaseStore store(root);
  const fs::path log_file = store.log_dir() / "hotswap.log";
  const fs::path pid_path = store.run_dir() / "hotswap.pid";
  // Refused before forking; the check below the fork also catches a host that
  // started between this look and the child's own lock.
  if (std::optional<pid_t> running = host::PidFile::running(pid_path)) {
    std::cerr << "hotswap: not starting: another hotswap host (pid " << *running << ") is running on this root ("
              << pid_path.string() << ")\n";
    return kFailed;
  }
  std::fflush(nullptr);
  pid_t child = ::fork();
  if (child < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (child == 0) {
    ::setsid();
    if (!redirect_standard_descriptors(log_file)) ::_exit(kFailed);
    setup_logging(log_level);
    ::_exit(serve(root, log_level));
  }
  // Ready when the admin socket answers with the child's pid; failed when the
  // child exits first. Another host answering (one that won the pid lock) is
  // not our child being ready: the child then exits, refused.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  std::optional<pid_t> other_host;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(child, &status, WNOHANG) == child) {
      int code = WIFEXITED(status) ? WEXITSTATUS(status) : kFailed;
      if (!other_host) other_host = host::PidFile::running(pid_path);
      if (other_host && *other_host != child)
        std::cerr << "hotswap: not starting: another hotswap host (pid " << *other_host
                  << ") is running on this root (" << pid_path.string() << ")\n";
      else
        std::cerr << "hotswap: the host exited during boot (status " << code << "); see " << log_file.string()
                  << "\n";
      return code == kOk ? kFailed : code;
    }
    try {
      host::AdminClient client(admin_socket_path(root));
      json reply = client.request({{"cmd", "status"}});
      const json pid = reply.value("ok", false) ? reply["result"].value("pid", json()) : json();
      if (pid.is_number_integer() && pid.get<pid_t>() != child) {
        other_host = pid.get<pid_t>();
      } else if (reply.value("ok", false)) {
        std::cout << "hotswap: host pid " << child << " running release "
                  << reply["result"]["version"].get<std::string>() << " (log: " << log_file.string() << ")\n";
        return kOk;
      }
    } catch (const host::NotRunning&) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::cerr << "hotswap: the host did not answer within 30 s; see " << log_file.string() << "\n";
  return kFailed;
}

}  // namespace hotswap::cli
