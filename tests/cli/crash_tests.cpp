// End-to-end, issue 8 "Misbehaving modules at run time": a real `hotswap start`
// process serving crashy 1.0.0 (tests/modules/crashy.cpp), which segfaults,
// hangs or throws on request. The host process is this test's child, so the
// test sees the signal it died of; its stdout and stderr (its log) go to a file.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/filesystem.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "os/pid_file.hpp"
#include "process_support.hpp"

namespace fs = boost::filesystem;
using nlohmann::json;

using hotswap::test::eventually;
using hotswap::test::Result;
using hotswap::test::run_shell;

namespace {

std::string read_file(const fs::path& path) {
  std::ifstream in(path.string());
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The lines of `text` that contain `needle`.
std::vector<std::string> lines_with(const std::string& text, const std::string& needle) {
  std::vector<std::string> found;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.find(needle) != std::string::npos) found.push_back(line);
  return found;
}

// A root with crashy 1.0.0 unpacked. Kills any host left on it, then removes it.
struct Root {
  fs::path dir = fs::temp_directory_path() / fs::unique_path("hotswap-crash-%%%%%%%%");
  Root() {
    fs::create_directories(dir);
    Result r = run("unpack '" + (fs::path(HOTSWAP_TEST_RELEASES_DIR) / "crashy-1.0.0.tar.gz").string() + "'");
    INFO(r.out);
    REQUIRE(r.code == 0);
  }
  ~Root() {
    if (auto pid = hotswap::host::PidFile::running(dir / "run" / "hotswap.pid")) ::kill(*pid, SIGKILL);
    boost::system::error_code ec;
    fs::remove_all(dir, ec);
  }
  Result run(const std::string& args) const {
    return run_shell(HOTSWAP_BINARY " " + args + " --root '" + dir.string() + "'");
  }
  fs::path foreground_log() const { return dir / "foreground.log"; }
  fs::path crash_file() const { return dir / "run" / "crashed"; }
};

// `hotswap start` as this test's child, with `env` set, no core file, and
// its output appended to root.foreground_log(). Killed at the end if still alive.
class Host {
 public:
  Host(const Root& root, const std::map<std::string, std::string>& env) : root_(root) {
    const std::string log = root.foreground_log().string();
    const std::string root_dir = root.dir.string();
    pid_ = ::fork();
    if (pid_ == 0) {
      rlimit no_core{0, 0};
      ::setrlimit(RLIMIT_CORE, &no_core);
      for (const auto& [name, value] : env) ::setenv(name.c_str(), value.c_str(), 1);
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      if (fd < 0 || ::dup2(fd, 1) < 0 || ::dup2(fd, 2) < 0) ::_exit(120);
      ::execl(HOTSWAP_BINARY, HOTSWAP_BINARY, "start", "--root", root_dir.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  ~Host() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }

  // The listener's port once the host answers on its admin socket.
  uint16_t wait_until_serving() {
    json status;
    const bool serving = eventually([&] {
      if (has_exited()) return true;
      Result r = root_.run("status --json");
      if (r.code != 0) return false;
      status = json::parse(r.out);
      return true;
    });
    INFO(read_file(root_.foreground_log()));
    REQUIRE(serving);
    REQUIRE_FALSE(exited_);
    return status["listeners"][0]["port"].get<uint16_t>();
  }
  // The wait status once the host has exited.
  int wait_for_exit() {
    REQUIRE(eventually([&] { return has_exited(); }));
    return status_;
  }

 private:
  bool has_exited() {
    if (!exited_ && ::waitpid(pid_, &status_, WNOHANG) == pid_) exited_ = true;
    return exited_;
  }
  const Root& root_;
  pid_t pid_ = -1;
  bool exited_ = false;
  int status_ = 0;
};

// A client connection that sends lines and reads reply lines.
class Client {
 public:
  explicit Client(uint16_t port) : socket_(io_) { socket_.connect({boost::asio::ip::make_address("127.0.0.1"), port}); }
  void send(const std::string& line) { boost::asio::write(socket_, boost::asio::buffer(line + "\n")); }
  std::string ask(const std::string& line) {
    send(line);
    size_t n = boost::asio::read_until(socket_, in_, '\n');
    std::string reply(boost::asio::buffers_begin(in_.data()), boost::asio::buffers_begin(in_.data()) + n - 1);
    in_.consume(n);
    return reply;
  }

 private:
  boost::asio::io_context io_;
  boost::asio::ip::tcp::socket socket_;
  boost::asio::streambuf in_;
};

std::string describe(int wait_status) {
  if (WIFSIGNALED(wait_status)) return "killed by signal " + std::to_string(WTERMSIG(wait_status));
  if (WIFEXITED(wait_status)) return "exited with " + std::to_string(WEXITSTATUS(wait_status));
  return "?";
}

}  // namespace

TEST_CASE("a module that segfaults: one log line names it, the host dies of SIGSEGV, the next start reports it") {
  Root root;
  std::string crash_line;
  {
    Host host(root, {});
    Client client(host.wait_until_serving());
    client.send("throw");  // no reply: the int is caught at the host's edge, the failure counted and logged
    const std::string id = client.ask("id");
    REQUIRE(id.rfind("conn ", 0) == 0);
    const std::string conn = id.substr(5);
    Result status = root.run("status --json");
    REQUIRE(status.code == 0);
    CHECK(json::parse(status.out)["modules"][0]["failed_events"] == 1);

    client.send("segv");
    const int wait_status = host.wait_for_exit();
    const std::string log = read_file(root.foreground_log());
    INFO(describe(wait_status) << "\n" << log);
    REQUIRE(WIFSIGNALED(wait_status));
    CHECK(WTERMSIG(wait_status) == SIGSEGV);
    const std::vector<std::string> lines = lines_with(log, "fatal signal");
    REQUIRE(lines.size() == 1);
    CHECK_THAT(lines[0], Catch::Contains("fatal signal SIGSEGV (11) in module crashy 1.0.0, callback on_message, "
                                         "connection " +
                                         conn));
    CHECK_THAT(lines_with(log, "on_message failed")[0], Catch::Contains("threw a C++ exception across the C ABI"));
    REQUIRE(fs::exists(root.crash_file()));
    crash_line = lines[0];
    CHECK(read_file(root.crash_file()) == crash_line + "\n");
  }
  Result daemon = root.run("daemon");
  INFO(daemon.out);
  REQUIRE(daemon.code == 0);
  const std::string log = read_file(root.dir / "log" / "hotswap.log");
  INFO(log);
  CHECK(lines_with(log, "the previous run crashed: " + crash_line).size() == 1);
  CHECK_FALSE(fs::exists(root.crash_file()));
  CHECK(root.run("stop").code == 0);
}

TEST_CASE("a callback that never returns: past abort_after_s the watchdog aborts the host, naming the call") {
  Root root;
  Host host(root, {{"CRASHY_ABORT_AFTER_S", "1"}});
  Client client(host.wait_until_serving());
  const std::string conn = client.ask("id").substr(5);
  client.send("hang");
  const int wait_status = host.wait_for_exit();
  const std::string log = read_file(root.foreground_log());
  INFO(describe(wait_status) << "\n" << log);
  REQUIRE(WIFSIGNALED(wait_status));
  CHECK(WTERMSIG(wait_status) == SIGABRT);
  const std::string call = "module crashy 1.0.0, callback on_message, connection " + conn;
  CHECK(lines_with(log, "watchdog: " + call + " has blocked the event loop for").size() == 1);
  CHECK(lines_with(log, "over the abort limit (1.0 s): aborting the process").size() == 1);
  CHECK(lines_with(log, "fatal signal SIGABRT (6) in " + call).size() == 1);
  CHECK(fs::exists(root.crash_file()));
}

TEST_CASE("an on_stop that never returns is bounded by the stop timeout: the host exits non-zero, naming it") {
  Root root;
  Host host(root, {{"CRASHY_HANG_ON_STOP", "yes"}, {"CRASHY_STOP_TIMEOUT_MS", "300"}});
  host.wait_until_serving();
  REQUIRE(::kill(host.pid(), SIGTERM) == 0);
  const int wait_status = host.wait_for_exit();
  const std::string log = read_file(root.foreground_log());
  INFO(describe(wait_status) << "\n" << log);
  CHECK_FALSE((WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0));
  // A 300 ms stop timeout is raised to the watchdog's floor of one second.
  CHECK(lines_with(log,
                   "watchdog: module crashy 1.0.0, callback on_stop has not returned within the stop timeout "
                   "(1000 ms)")
            .size() == 1);
  CHECK(lines_with(log, "fatal signal SIGABRT (6) in module crashy 1.0.0, callback on_stop").size() == 1);
}
