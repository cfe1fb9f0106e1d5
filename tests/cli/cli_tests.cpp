// End-to-end: the `hotswap` command driving a real daemon on a real root.
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/filesystem.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/exit_status.hpp"
#include "os/pid_file.hpp"
#include "process_support.hpp"

namespace fs = boost::filesystem;
using nlohmann::json;

using hotswap::test::eventually;
using hotswap::test::Result;
using hotswap::test::run_shell;

namespace {

// Runs `hotswap ARGS --root ROOT` with optional environment assignments.
Result run_hotswap(const fs::path& root, const std::string& args, const std::string& env = "") {
  return run_shell("env " + env + " " HOTSWAP_BINARY " " + args + " --root '" + root.string() + "'");
}

bool host_running(const fs::path& root) {
  return hotswap::host::PidFile::running(root / "run" / "hotswap.pid").has_value();
}

// Kills the host serving `root`, if any, and waits until it has gone.
void kill_host(const fs::path& root) {
  if (auto pid = hotswap::host::PidFile::running(root / "run" / "hotswap.pid")) {
    ::kill(*pid, SIGKILL);
    eventually([&] { return !host_running(root); });
  }
}

fs::path tarball(const std::string& version) {
  return fs::path(HOTSWAP_TEST_RELEASES_DIR) / ("counter-" + version + ".tar.gz");
}

// A root folder; stops any host still running on it and removes it at the end.
struct Root {
  fs::path dir = fs::temp_directory_path() / fs::unique_path("hotswap-cli-%%%%%%%%");
  Root() { fs::create_directories(dir); }
  ~Root() {
    kill_host(dir);
    boost::system::error_code ec;
    fs::remove_all(dir, ec);
  }
  Result run(const std::string& args, const std::string& env = "") const {
    Result r = run_hotswap(dir, args, env);
    INFO(r.out);
    REQUIRE(r.code != -1);
    return r;
  }
  void must(const std::string& args) const {
    Result r = run(args);
    INFO("hotswap " << args << "\n" << r.out);
    REQUIRE(r.code == 0);
  }
  json status() const {
    Result r = run("status --json");
    INFO(r.out);
    REQUIRE(r.code == 0);
    return json::parse(r.out);
  }
  std::string version() const { return status()["version"]; }
  std::map<std::string, std::string> states() const {
    Result r = run("releases --json");
    REQUIRE(r.code == 0);
    std::map<std::string, std::string> out;
    json listing = json::parse(r.out);
    for (const auto& rel : listing["releases"])
      out[rel["version"].get<std::string>()] = rel["state"].get<std::string>();
    return out;
  }
  // Unpacks 1.0.0 and starts a daemon on it.
  void boot_first_release() const {
    must("unpack " + tarball("1.0.0").string());
    must("daemon");
    REQUIRE(version() == "1.0.0");
  }
};

// One line-protocol request to the counter.
std::string ask(uint16_t port, const std::string& request) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket s(io);
  s.connect({boost::asio::ip::make_address("127.0.0.1"), port});
  boost::asio::write(s, boost::asio::buffer(request + "\n"));
  boost::asio::streambuf in;
  size_t n = boost::asio::read_until(s, in, '\n');
  return std::string(boost::asio::buffers_begin(in.data()), boost::asio::buffers_begin(in.data()) + n - 1);
}

uint16_t port_of(const Root& root) { return root.status()["listeners"][0]["port"]; }

// Raw admin-socket exchange: sends bytes, returns the first reply line ("" when closed without one).
std::string admin_raw(const fs::path& root, const std::string& bytes) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string path = (root / "run" / "admin.sock").string();
  std::strcpy(addr.sun_path, path.c_str());
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  std::string reply;
  char c;
  while (::read(fd, &c, 1) == 1 && c != '\n') reply.push_back(c);
  ::close(fd);
  return reply;
}

// A FIFO a module task blocks on (counter 2.0.0's wait_for_gate) until the
// test opens it: a condition the test controls instead of a sleep.
class Gate {
 public:
  explicit Gate(fs::path path) : path_(std::move(path)) { REQUIRE(::mkfifo(path_.c_str(), 0600) == 0); }
  const fs::path& path() const { return path_; }
  // Waits until the task has the FIFO open for reading, then opens and closes
  // it for writing, which lets the task go. False when no reader ever came.
  bool open() const {
    return eventually([&] {
      int fd = ::open(path_.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);  // ENXIO while nobody reads
      if (fd < 0) return false;
      ::close(fd);
      return true;
    });
  }

 private:
  fs::path path_;
};

struct KillHostOnExit {
  fs::path root;
  ~KillHostOnExit() { kill_host(root); }
};

// Forks and runs `hotswap ARGS...` with fds 0, 1 and 2 closed, as a careless
// init script or a parent that closed them might. Returns the child's pid.
pid_t spawn_with_standard_fds_closed(std::vector<std::string> args) {
  args.insert(args.begin(), HOTSWAP_BINARY);
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t child = ::fork();
  if (child == 0) {  // only async-signal-safe calls until exec
    ::close(0);
    ::close(1);
    ::close(2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return child;
}

// What /proc/PID/fd/FD points to: a path, or "socket:[inode]", "pipe:[inode]".
std::string fd_target(pid_t pid, int fd) {
  boost::system::error_code ec;
  fs::path target = fs::read_symlink("/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd), ec);
  return ec ? "(closed)" : target.string();
}

}  // namespace

TEST_CASE("unpack then plan then upgrade then make-permanent: a restart boots the permanent release") {
  Root root;
  root.boot_first_release();
  CHECK(root.states() == std::map<std::string, std::string>{{"1.0.0", "permanent"}});
  root.must("unpack " + tarball("1.1.0").string());
  Result plan = root.run("plan 1.1.0");
  CHECK(plan.code == 0);
  CHECK_THAT(plan.out, Catch::Contains("load_module counter 1.0.0 -> 1.1.0"));
  Result up = root.run("upgrade 1.1.0");
  INFO(up.out);
  CHECK(up.code == 0);
  CHECK_THAT(up.out, Catch::Contains("step 1: load_module counter 1.0.0 -> 1.1.0") && Catch::Contains("committed"));
  json status = root.status();
  CHECK(status["version"] == "1.1.0");
  CHECK(status["permanent"] == "1.0.0");
  CHECK(status["last_upgrade"]["outcome"] == "committed");
  CHECK(status["modules"][0]["version"] == "1.1.0");
  CHECK(root.states() == std::map<std::string, std::string>{{"1.0.0", "permanent"}, {"1.1.0", "current"}});
  root.must("make-permanent 1.1.0");
  CHECK(root.states() == std::map<std::string, std::string>{{"1.0.0", "old"}, {"1.1.0", "permanent"}});
  root.must("stop");
  CHECK(root.run("status").code == 69);
  root.must("daemon");
  CHECK(root.version() == "1.1.0");
  root.must("stop");
}

TEST_CASE("rehearse runs only the rehearsal and status shows it, and upgrade --no-rehearse skips it") {
  Root root;
  root.boot_first_release();
  uint16_t port = port_of(root);
  CHECK(ask(port, "add 5") == "v1 total=5");
  root.must("unpack " + tarball("2.0.0").string());
  Result rehearsal = root.run("rehearse 2.0.0");
  INFO(rehearsal.out);
  CHECK(rehearsal.code == 0);
  CHECK_THAT(rehearsal.out, Catch::Contains("rehearsal 1.0.0 -> 2.0.0: passed") &&
                                Catch::Contains("cost to the live process: fork"));
  CHECK(root.version() == "1.0.0");  // nothing changed
  CHECK(ask(port, "get") == "v1 total=5");
  CHECK(root.status()["last_rehearsal"]["outcome"] == "passed");
  Result up = root.run("upgrade 2.0.0 --no-rehearse");
  INFO(up.out);
  CHECK(up.code == 0);
  CHECK_THAT(up.out, Catch::Contains("committed") && !Catch::Contains("rehearsing"));
  CHECK(ask(port, "get") == "v2 total=5");
  root.must("stop");
}

TEST_CASE("upgrade --blue-green asks the host for a handover even when the upgrade could be made in place") {
  Root root;
  root.boot_first_release();
  uint16_t port = port_of(root);
  CHECK(ask(port, "add 5") == "v1 total=5");
  root.must("unpack " + tarball("2.0.0").string());
  Result up = root.run("upgrade 2.0.0 --blue-green");
  INFO(up.out);
  // The reason reaches the host: a host that hands over says why in its
  // "handover" event; one that cannot refuses, naming it, and serves on.
  CHECK_THAT(up.out, Catch::Contains("forced (--blue-green)"));
  if (up.code == 0) {
    CHECK(root.version() == "2.0.0");
    CHECK(ask(port, "get") == "v2 total=5");
  } else {
    CHECK_THAT(up.out, Catch::Contains("but this host cannot hand over"));
    CHECK(root.version() == "1.0.0");
    CHECK(ask(port, "get") == "v1 total=5");
  }
  root.must("stop");
}

TEST_CASE("a release that was installed but never made permanent is not booted after a restart") {
  Root root;
  root.boot_first_release();
  root.must("unpack " + tarball("2.0.0").string());
  root.must("upgrade 2.0.0");
  CHECK(root.version() == "2.0.0");
  root.must("stop");
  root.must("daemon");
  CHECK(root.version() == "1.0.0");
  CHECK(root.states()["2.0.0"] == "old");
  root.must("stop");
}

TEST_CASE("downgrade hands the state back to the older version") {
  Root root;
  root.boot_first_release();
  uint16_t port = port_of(root);
  CHECK(ask(port, "add 5") == "v1 total=5");
  root.must("unpack " + tarball("2.0.0").string());
  Result wrong_way = root.run("downgrade 2.0.0");
  CHECK(wrong_way.code == 1);
  CHECK_THAT(wrong_way.out, Catch::Contains("newer than the running release") && Catch::Contains("hotswap upgrade"));
  root.must("upgrade 2.0.0");
  CHECK(ask(port, "add 1") == "v2 total=6");
  Result down = root.run("downgrade 1.0.0");
  INFO(down.out);
  CHECK(down.code == 0);
  CHECK_THAT(down.out, Catch::Contains("downgrade 2.0.0 -> 1.0.0: committed"));
  CHECK(ask(port, "get") == "v1 total=6");
  root.must("stop");
}

TEST_CASE("remove is refused for the current and the permanent release") {
  Root root;
  root.boot_first_release();
  root.must("unpack " + tarball("1.1.0").string());
  root.must("unpack " + tarball("2.0.0").string());
  root.must("upgrade 1.1.0");
  Result current = root.run("remove 1.1.0");
  CHECK(current.code == 1);
  CHECK_THAT(current.out, Catch::Contains("1.1.0") && Catch::Contains("current"));
  Result permanent = root.run("remove 1.0.0");
  CHECK(permanent.code == 1);
  CHECK_THAT(permanent.out, Catch::Contains("permanent"));
  root.must("remove 2.0.0");
  CHECK(root.states().count("2.0.0") == 0);
  root.must("stop");
}

TEST_CASE("a tampered module file is refused and the old release keeps serving") {
  Root root;
  root.boot_first_release();
  root.must("unpack " + tarball("1.1.0").string());
  fs::path so = root.dir / "releases" / "1.1.0" / "modules" / "counter-1.1.0.so";
  { std::ofstream(so.string(), std::ios::app) << "tampered"; }
  Result r = root.run("upgrade 1.1.0");
  CHECK(r.code == 1);
  CHECK_THAT(r.out, Catch::Contains(so.string()) && Catch::Contains("sha256"));
  CHECK(root.version() == "1.0.0");
  CHECK(ask(port_of(root), "get") == "v1 total=0");
  root.must("stop");
}

TEST_CASE("a library whose static constructor segfaults costs only the probe child: the live host serves on") {
  Root root;
  root.boot_first_release();
  const uint16_t port = port_of(root);
  boost::asio::io_context io;
  std::vector<boost::asio::ip::tcp::socket> clients;
  std::vector<boost::asio::streambuf> inputs(20);
  // Each client adds 1 and reads the reply: the total is the count of every add, in order.
  int total = 0;
  const auto add_one = [&](size_t i) {
    boost::asio::write(clients[i], boost::asio::buffer(std::string("add 1\n")));
    size_t n = boost::asio::read_until(clients[i], inputs[i], '\n');
    std::string line(boost::asio::buffers_begin(inputs[i].data()), boost::asio::buffers_begin(inputs[i].data()) + n - 1);
    inputs[i].consume(n);
    return line;
  };
  for (size_t i = 0; i < inputs.size(); ++i) {
    clients.emplace_back(io);
    clients.back().connect({boost::asio::ip::make_address("127.0.0.1"), port});
    CHECK(add_one(i) == "v1 total=" + std::to_string(++total));
  }

  root.must("unpack " + (fs::path(HOTSWAP_TEST_BAD_RELEASES_DIR) / "counter-1.1.0.tar.gz").string());
  Result r = root.run("upgrade 1.1.0");
  CHECK(r.code == 1);
  CHECK_THAT(r.out, Catch::Contains("counter-1.1.0.so") && Catch::Contains("SIGSEGV"));
  CHECK(root.version() == "1.0.0");
  // Every connection is still open, served by 1.0.0, and no add was lost.
  for (size_t i = 0; i < clients.size(); ++i) CHECK(add_one(i) == "v1 total=" + std::to_string(++total));
  root.must("stop");
}

TEST_CASE("a missing required environment variable stops the boot with exit status 78") {
  Root root;
  root.must("unpack " + tarball("1.0.0").string());
  std::ifstream in((root.dir / "releases" / "1.0.0" / "runtime.json").string());
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  text.replace(text.find("${COUNTER_PORT:-0}"), 18, "${HOTSWAP_TEST_PORT:?set the game port}");
  { std::ofstream((root.dir / "runtime.json").string()) << text; }
  Result r = root.run("start");
  CHECK(r.code == 78);
  CHECK_THAT(r.out, Catch::Contains("HOTSWAP_TEST_PORT") && Catch::Contains("set the game port") &&
                        Catch::Contains((root.dir / "runtime.json").string()));
  Result daemon = root.run("daemon");
  CHECK(daemon.code == 78);
  // With the variable set, the same config boots.
  Result ok = root.run("daemon", "HOTSWAP_TEST_PORT=0");
  INFO(ok.out);
  CHECK(ok.code == 0);
  root.must("stop");
}

TEST_CASE("malformed, unknown and oversized admin requests get error replies and do not disturb the host") {
  Root root;
  root.boot_first_release();
  json malformed = json::parse(admin_raw(root.dir, "this is not json\n"));
  CHECK(malformed["ok"] == false);
  CHECK(malformed["code"] == "bad_request");
  json unknown = json::parse(admin_raw(root.dir, "{\"id\":7,\"cmd\":\"frobnicate\"}\n"));
  CHECK(unknown["id"] == 7);
  CHECK(unknown["code"] == "bad_request");
  CHECK_THAT(unknown["error"].get<std::string>(), Catch::Contains("unknown command 'frobnicate'"));
  json no_cmd = json::parse(admin_raw(root.dir, "{\"id\":8}\n"));
  CHECK(no_cmd["code"] == "bad_request");
  json missing_arg = json::parse(admin_raw(root.dir, "{\"cmd\":\"upgrade\"}\n"));
  CHECK_THAT(missing_arg["error"].get<std::string>(), Catch::Contains("\"version\""));
  json bad_flag = json::parse(
      admin_raw(root.dir, "{\"cmd\":\"upgrade\",\"version\":\"1.0.0\",\"blue_green\":\"yes\"}\n"));
  CHECK_THAT(bad_flag["error"].get<std::string>(), Catch::Contains("\"blue_green\" must be true or false"));
  json oversized = json::parse(admin_raw(root.dir, std::string(200 * 1024, 'x') + "\n"));
  CHECK(oversized["code"] == "too_large");
  CHECK(root.version() == "1.0.0");
  root.must("stop");
}

TEST_CASE("two concurrent upgrades: the second is answered busy") {
  Root root;
  root.boot_first_release();
  root.must("unpack " + tarball("2.0.0").string());
  // The first upgrade's pre-task waits at a gate the test opens, so it is
  // still running, whatever the machine's speed, when the second one comes.
  Gate gate(root.dir / "gate.fifo");
  std::string first_args = "upgrade 2.0.0 --pre-task 'counter:wait_for_gate:{\"fifo\":\"" + gate.path().string() + "\"}'";
  // The helper thread only runs the command; every check is made here.
  auto first = std::async(std::launch::async, [&] { return run_hotswap(root.dir, first_args); });
  // If a check below fails, the host dies before `first` is waited for, so that the wait ends.
  KillHostOnExit kill_host_on_exit{root.dir};
  REQUIRE(eventually([&] { return root.status()["busy"] == true; }));  // the host has taken the first request
  Result second = root.run("upgrade 2.0.0");
  CHECK(second.code == 75);
  CHECK_THAT(second.out, Catch::Contains("busy"));
  REQUIRE(gate.open());
  Result done = first.get();
  INFO(done.out);
  CHECK(done.code == 0);
  CHECK_THAT(done.out, Catch::Contains("pre-upgrade task counter:wait_for_gate"));
  CHECK(root.version() == "2.0.0");
  root.must("stop");
}

TEST_CASE("a failing pre-upgrade task aborts the upgrade before anything pauses") {
  Root root;
  root.boot_first_release();
  root.must("unpack " + tarball("2.0.0").string());
  Result r = root.run("upgrade 2.0.0 --pre-task counter:no_such_task");
  CHECK(r.code == 1);
  CHECK_THAT(r.out, Catch::Contains("pre-upgrade task counter:no_such_task failed") &&
                        Catch::Contains("unknown task 'no_such_task'"));
  json status = root.status();
  CHECK(status["version"] == "1.0.0");
  CHECK(status["last_upgrade"]["outcome"] == "refused");
  root.must("stop");
}

TEST_CASE("hotswap task runs a module task on a release without a running host") {
  Root root;
  root.must("unpack " + tarball("1.0.0").string());
  Result r = root.run("task counter double");
  INFO(r.out);
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("{\"total\":0}"));
  Result bad = root.run("task counter fail");
  CHECK(bad.code == 1);
  CHECK_THAT(bad.out, Catch::Contains("task failed on purpose"));
}

TEST_CASE("reload and SIGHUP: a changed config reaches the module, a newer release is installed") {
  Root root;
  root.boot_first_release();
  uint16_t port = port_of(root);
  CHECK(ask(port, "config") == "{\"greeting\":\"hello\"}");
  Result nothing = root.run("reload");
  CHECK(nothing.code == 0);
  CHECK_THAT(nothing.out, Catch::Contains("nothing to reload"));
  auto write_override = [&](const std::string& greeting) {
    std::ofstream((root.dir / "runtime.json").string())
        << R"({"log_level": "info", "listeners": [{"name": "main", "address": "127.0.0.1", "port": 0,
               "framing": "line", "max_frame_bytes": 1024, "module": "counter"}],
               "modules": {"counter": {"tick_hz": 10, "config": {"greeting": ")"
        << greeting << R"("}}}})";
  };
  write_override("hello");  // the same config as the release's, spelled differently
  Result same = root.run("reload");
  CHECK(same.code == 0);
  CHECK_THAT(same.out, Catch::Contains("nothing to reload"));
  write_override("bonjour");
  Result changed = root.run("reload");
  INFO(changed.out);
  CHECK(changed.code == 0);
  CHECK_THAT(changed.out, Catch::Contains("runtime config reloaded"));
  CHECK(ask(port, "config") == "{\"greeting\":\"bonjour\"}");
  { std::ofstream((root.dir / "runtime.json").string()) << "{\"listeners\": 5}"; }
  Result broken = root.run("reload");
  CHECK(broken.code == 1);
  CHECK_THAT(broken.out, Catch::Contains("listeners"));
  CHECK(ask(port, "config") == "{\"greeting\":\"bonjour\"}");
  fs::remove(root.dir / "runtime.json");

  root.must("unpack " + tarball("1.1.0").string());
  pid_t pid = root.status()["pid"];
  REQUIRE(::kill(pid, SIGHUP) == 0);
  CHECK(eventually([&] { return root.version() == "1.1.0"; }));
  REQUIRE(::kill(pid, SIGTERM) == 0);
  CHECK(eventually([&] { return !host_running(root.dir); }));
}

TEST_CASE("usage errors and a missing host have their own exit statuses") {
  Root root;
  CHECK(root.run("--help").code == 0);
  CHECK(root.run("help").code == 0);
  Result unknown_command = root.run("frobnicate");
  CHECK(unknown_command.code == 64);
  CHECK_THAT(unknown_command.out, Catch::Contains("unknown command 'frobnicate'"));
  CHECK(root.run("upgrade").code == 64);
  CHECK(root.run("status --bogus").code == 64);
  Result none = root.run("status");
  CHECK(none.code == 69);
  CHECK_THAT(none.out, Catch::Contains("no hotswap host answers"));
  CHECK(root.run("upgrade --help").code == 0);
}

TEST_CASE("each usage error exits 64 with a message naming what is wrong") {
  Root root;
  struct Case {
    std::string args;
    std::string named;
  };
  const Case cases[] = {
      {"status --bogus", "--bogus"},              // an unknown option
      {"upgrade", "VSN"},                         // a missing operand
      {"task counter", "NAME"},                   // a missing second operand
      {"start --log-level loud", "loud"},         // a value that is not a log level
      {"log-level loud", "loud"},                 // an operand that is not a log level
      {"status extra", "extra"},                  // an operand too many
      {"stop --json", "--json"},                  // an option the command does not take
      {"releases --pre-task counter:x", "--pre-task"},
      {"upgrade 2.0.0 --pre-task counter", "--pre-task"},  // no TASK
      {"upgrade 2.0.0 --pre-task 'counter:t:{oops'", "not valid JSON"},
      {"task counter double '{oops'", "not valid JSON"},
  };
  for (const Case& c : cases) {
    Result r = root.run(c.args);
    INFO("hotswap " << c.args << "\n" << r.out);
    CHECK(r.code == 64);
    CHECK_THAT(r.out, Catch::Contains(c.named));
  }
  Result nothing = run_hotswap(root.dir, "");  // `--root DIR` alone names no command
  CHECK(nothing.code == 64);
  // An option without its value: last on the line, so nothing else is taken for it.
  const std::string with_root = "env HOTSWAP_ROOT='" + root.dir.string() + "' " HOTSWAP_BINARY " ";
  for (std::string args : {"daemon --log-level", "upgrade 2.0.0 --pre-task", "task counter double --release"}) {
    Result r = run_shell(with_root + args);
    INFO("hotswap " << args << "\n" << r.out);
    CHECK(r.code == 64);
    CHECK_THAT(r.out, Catch::Contains(args.substr(args.rfind(' ') + 1)) && Catch::Contains("missing"));
  }
}

TEST_CASE("each command's --help shows its operands and options and exits 0") {
  Root root;
  Result upgrade = root.run("upgrade --help");
  CHECK(upgrade.code == 0);
  CHECK_THAT(upgrade.out, Catch::Contains("VSN") && Catch::Contains("--pre-task") && Catch::Contains("--json") &&
                              Catch::Contains("--root") && Catch::Contains("--blue-green"));
  CHECK_THAT(root.run("downgrade --help").out, Catch::Contains("--blue-green"));
  Result task = root.run("task -h");
  CHECK(task.code == 0);
  CHECK_THAT(task.out, Catch::Contains("MODULE") && Catch::Contains("NAME") && Catch::Contains("--release"));
  Result overview = root.run("--help");
  CHECK(overview.code == 0);
  for (const char* command : {"start", "daemon", "stop", "remote", "status", "reload", "unpack", "plan", "upgrade",
                              "downgrade", "releases", "make-permanent", "remove", "task", "log-level"})
    CHECK_THAT(overview.out, Catch::Contains(command));
  CHECK_THAT(overview.out, Catch::Contains("64 usage"));
}

TEST_CASE("the root defaults to $HOTSWAP_ROOT when --root is not given") {
  Root root;
  root.must("unpack " + tarball("1.0.0").string());
  Result r = run_shell("env HOTSWAP_ROOT='" + root.dir.string() + "' " HOTSWAP_BINARY " releases --json");
  INFO(r.out);
  REQUIRE(r.code == 0);
  CHECK(json::parse(r.out)["releases"][0]["version"] == "1.0.0");
}

TEST_CASE("a release is made permanent automatically after the configured healthy period") {
  Root root;
  root.must("unpack " + tarball("1.0.0").string());
  std::ifstream in((root.dir / "releases" / "1.0.0" / "runtime.json").string());
  json config = json::parse(in);
  const auto healthy_period = std::chrono::seconds(2);
  config["auto_permanent_after_s"] = healthy_period.count();
  { std::ofstream((root.dir / "runtime.json").string()) << config.dump(); }
  root.must("daemon");
  root.must("unpack " + tarball("1.1.0").string());
  const auto before_upgrade = std::chrono::steady_clock::now();
  root.must("upgrade 1.1.0");
  std::string state_right_after = root.states()["1.1.0"];
  // The host's clock is its own; only when less than the period has passed
  // since before the upgrade is the release certainly not permanent yet.
  if (std::chrono::steady_clock::now() - before_upgrade < healthy_period) CHECK(state_right_after == "current");
  CHECK(eventually([&] { return root.states()["1.1.0"] == "permanent"; }));
  CHECK(root.states()["1.0.0"] == "old");
  root.must("stop");
}

TEST_CASE("the remote shell sends each line as an admin command") {
  Root root;
  root.boot_first_release();
  Result r = run_hotswap(root.dir, "remote < /dev/null");  // end of input leaves at once
  CHECK(r.code == 0);
  std::string cmd = "printf 'status\\nfrobnicate\\nreleases\\nquit\\n' | " HOTSWAP_BINARY " remote --root '" +
                    root.dir.string() + "' 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string out;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  CHECK(::pclose(pipe) == 0);
  CHECK_THAT(out, Catch::Contains("release counter 1.0.0 (permanent)"));
  CHECK_THAT(out, Catch::Contains("not an admin command here: frobnicate"));
  CHECK_THAT(out, Catch::Contains("1.0.0  permanent"));
  std::ifstream history((root.dir / "run" / "remote_history").string());
  std::string saved((std::istreambuf_iterator<char>(history)), std::istreambuf_iterator<char>());
  CHECK_THAT(saved, Catch::Contains("status") && Catch::Contains("releases"));
  root.must("stop");
}

TEST_CASE("the remote shell takes quoted words and reports usage errors without leaving") {
  Root root;
  root.boot_first_release();
  root.must("unpack " + tarball("2.0.0").string());
  std::string cmd = "printf '%s\\n' 'upgrade' 'status --bogus' 'plan 2.0.0 --json' "
                    "\"upgrade 2.0.0 --pre-task 'counter:label'\" | " HOTSWAP_BINARY " remote --root '" +
                    root.dir.string() + "' 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string out;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  CHECK(::pclose(pipe) == 0);
  CHECK_THAT(out, Catch::Contains("VSN is required"));
  CHECK_THAT(out, Catch::Contains("--bogus"));
  CHECK_THAT(out, Catch::Contains("\"plan\""));
  CHECK_THAT(out, Catch::Contains("pre-upgrade task counter:label") && Catch::Contains("committed"));
  CHECK(root.version() == "2.0.0");
  root.must("stop");
}

TEST_CASE("the admin socket is private and refuses peers of other users") {
  Root root;
  root.boot_first_release();
  fs::path socket = root.dir / "run" / "admin.sock";
  CHECK((fs::status(socket).permissions() & fs::perms_mask) == (fs::owner_read | fs::owner_write));
  CHECK((fs::status(root.dir / "run").permissions() & fs::perms_mask) == fs::owner_all);
  if (::geteuid() == 0) {
    // Open the file modes up, so that only the SO_PEERCRED check stands between a stranger and the host.
    fs::permissions(root.dir, fs::owner_all | fs::others_exe);
    fs::permissions(root.dir / "run", fs::owner_all | fs::others_exe);
    fs::permissions(socket, fs::owner_read | fs::owner_write | fs::others_read | fs::others_write);
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    pid_t child = ::fork();
    if (child == 0) {
      ::close(fds[0]);
      if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(2);
      int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      std::strcpy(addr.sun_path, socket.c_str());
      if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) ::_exit(100 + errno);
      std::string request = "{\"cmd\":\"stop\"}\n";
      ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
      char c;
      while (::read(fd, &c, 1) == 1) (void)!::write(fds[1], &c, 1);
      ::_exit(0);
    }
    ::close(fds[1]);
    std::string reply;
    char c;
    while (::read(fds[0], &c, 1) == 1) reply.push_back(c);
    ::close(fds[0]);
    int status = 0;
    ::waitpid(child, &status, 0);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK_THAT(reply, Catch::Contains("\"forbidden\""));
    CHECK(root.version() == "1.0.0");  // the stranger's "stop" was not obeyed
  }
  root.must("stop");
}

TEST_CASE("a second host on the same root is refused and names the running one") {
  Root root;
  root.boot_first_release();
  pid_t pid = root.status()["pid"];
  Result second = root.run("start");
  CHECK(second.code == 1);
  CHECK_THAT(second.out, Catch::Contains("another hotswap host (pid " + std::to_string(pid) + ") is running"));
  CHECK(root.version() == "1.0.0");
  root.must("stop");
}

TEST_CASE("a second daemon on the same root is refused, names the running host and exits non-zero") {
  Root root;
  root.boot_first_release();
  pid_t pid = root.status()["pid"];
  for (int attempt = 0; attempt < 3; ++attempt) {
    Result second = root.run("daemon");
    INFO(second.out);
    CHECK(second.code == 1);
    CHECK_THAT(second.out, Catch::Contains("another hotswap host (pid " + std::to_string(pid) + ") is running"));
    CHECK_THAT(second.out, !Catch::Contains("running release"));
  }
  CHECK(root.status()["pid"] == pid);
  root.must("stop");
}

TEST_CASE("an upgrade that commits but cannot record itself exits 74, and make-permanent works once the disk does") {
  Root root;
  root.boot_first_release();
  root.must("unpack " + tarball("1.1.0").string());
  // A folder where RELEASES.json should be: neither readable nor replaceable,
  // even for root (for whom a read-only mode would not stop the write).
  const fs::path record = root.dir / "releases" / "RELEASES.json";
  const fs::path saved = root.dir / "RELEASES.json.saved";
  fs::rename(record, saved);
  fs::create_directories(record / "in-the-way");

  Result up = root.run("upgrade 1.1.0");
  INFO(up.out);
  CHECK(up.code == 74);
  CHECK_THAT(up.out, Catch::Contains("committed") &&
                         Catch::Contains("release 1.1.0 runs, but recording it as current in RELEASES.json failed"));
  CHECK(root.version() == "1.1.0");
  CHECK(root.status()["unrecorded_release"] == "1.1.0");
  Result still_broken = root.run("make-permanent 1.1.0");
  INFO(still_broken.out);
  CHECK(still_broken.code == 1);
  CHECK_THAT(still_broken.out, Catch::Contains("recording it as current still fails"));

  fs::remove_all(record);  // the disk is fixed
  fs::rename(saved, record);
  root.must("make-permanent 1.1.0");
  CHECK(root.states() == std::map<std::string, std::string>{{"1.0.0", "old"}, {"1.1.0", "permanent"}});
  CHECK(root.status()["unrecorded_release"].is_null());
  root.must("stop");
}

TEST_CASE("the exit status of an admin reply: a committed upgrade whose record failed is 74") {
  using hotswap::cli::exit_status_of_reply;
  CHECK(exit_status_of_reply({{"ok", true}, {"result", {{"outcome", "committed"}, {"record_error", ""}}}}) == 0);
  CHECK(exit_status_of_reply({{"ok", true}, {"result", {{"outcome", "committed"}, {"record_error", "EIO"}}}}) == 74);
  CHECK(exit_status_of_reply({{"ok", true}, {"result", {{"action", "upgrade"}, {"report", {{"record_error", "x"}}}}}}) ==
        74);
  CHECK(exit_status_of_reply({{"ok", true}, {"result", {{"action", "config"}}}}) == 0);
  CHECK(exit_status_of_reply({{"ok", true}, {"result", nullptr}}) == 0);
  CHECK(exit_status_of_reply({{"ok", false}, {"code", "busy"}}) == 75);
  CHECK(exit_status_of_reply({{"ok", false}, {"code", "failed"}}) == 1);
}

TEST_CASE("a daemon started with fds 0-2 closed logs through fds 1 and 2, and no socket lands there") {
  Root root;
  root.must("unpack " + tarball("1.0.0").string());
  pid_t launcher = spawn_with_standard_fds_closed({"daemon", "--root", root.dir.string()});
  REQUIRE(launcher > 0);
  int status = 0;
  REQUIRE(::waitpid(launcher, &status, 0) == launcher);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  pid_t host = root.status()["pid"];
  std::string log = (root.dir / "log" / "hotswap.log").string();
  CHECK(fd_target(host, 0) == "/dev/null");
  CHECK(fd_target(host, 1) == log);
  CHECK(fd_target(host, 2) == log);
  CHECK_THAT(fd_target(host, 1), !Catch::StartsWith("socket:"));
  CHECK(ask(port_of(root), "add 2") == "v1 total=2");
  root.must("stop");
  std::ifstream in(log);
  std::string logged((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK_THAT(logged, Catch::Contains("serving root"));
}

TEST_CASE("a host started in the foreground with fds 0-2 closed gets /dev/null there, not a socket") {
  Root root;
  root.must("unpack " + tarball("1.0.0").string());
  pid_t host = spawn_with_standard_fds_closed({"start", "--root", root.dir.string()});
  REQUIRE(host > 0);
  KillHostOnExit kill_host_on_exit{root.dir};
  int status = 0;
  bool exited = false;
  REQUIRE(eventually([&] {
    exited = ::waitpid(host, &status, WNOHANG) == host;
    return exited || run_hotswap(root.dir, "status").code == 0;
  }));
  REQUIRE_FALSE(exited);
  for (int fd = 0; fd <= 2; ++fd) {
    INFO("fd " << fd);
    CHECK(fd_target(host, fd) == "/dev/null");
  }
  CHECK(ask(port_of(root), "add 3") == "v1 total=3");
  root.must("stop");
  REQUIRE(::waitpid(host, &status, 0) == host);
  CHECK(WIFEXITED(status));
}

TEST_CASE("a host whose stdout and stderr are a pipe nobody reads keeps serving (SIGPIPE is ignored)") {
  Root root;
  root.must("unpack " + tarball("1.0.0").string());
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  ::close(fds[0]);  // the reader has gone, as `head` goes after its first lines
  std::string binary = HOTSWAP_BINARY, root_dir = root.dir.string();
  pid_t host = ::fork();
  REQUIRE(host >= 0);
  if (host == 0) {  // only async-signal-safe calls until exec
    ::signal(SIGPIPE, SIG_DFL);  // as a shell starts a pipeline, whatever this test process does
    ::dup2(fds[1], 1);
    ::dup2(fds[1], 2);
    ::close(fds[1]);
    ::execl(binary.c_str(), binary.c_str(), "start", "--root", root_dir.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(fds[1]);
  KillHostOnExit kill_host_on_exit{root.dir};
  int status = 0;
  bool exited = false;
  REQUIRE(eventually([&] {
    exited = ::waitpid(host, &status, WNOHANG) == host;
    return exited || run_hotswap(root.dir, "status").code == 0;
  }));
  INFO("the host " << (!exited ? "runs" : WIFSIGNALED(status) ? "was killed by signal " + std::to_string(WTERMSIG(status))
                                                               : "exited " + std::to_string(WEXITSTATUS(status))));
  REQUIRE_FALSE(exited);
  root.must("reload");  // more log lines into the broken pipe
  CHECK(ask(port_of(root), "add 4") == "v1 total=4");
  CHECK(root.version() == "1.0.0");
  root.must("stop");
  REQUIRE(::waitpid(host, &status, 0) == host);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
