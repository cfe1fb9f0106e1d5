// End-to-end: a live daemon serving the `handover` test module under traffic
// (traffic.hpp) through upgrades, checked for dropped connections, lost,
// duplicated and reordered replies, the module state the traffic implies and
// its timer, in place and through blue-green handovers ([handover]).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/filesystem.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <future>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "os/pid_file.hpp"
#include "process_support.hpp"
#include "traffic.hpp"

namespace fs = boost::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

using hotswap::test::eventually;
using hotswap::test::Result;
using hotswap::test::run_shell;
using hotswap::test::handover::ModuleStats;
using hotswap::test::handover::query_stats;
using hotswap::test::handover::raise_open_files_limit;
using hotswap::test::handover::Traffic;
using hotswap::test::handover::TrafficOptions;
using hotswap::test::handover::TrafficReport;

namespace {

// A release tarball of one set (tests/handover/e2e/CMakeLists.txt lists them).
fs::path tarball(const std::string& set, const std::string& version) {
  return fs::path(HOTSWAP_HANDOVER_RELEASES_DIR) / set / ("handover-" + version + ".tar.gz");
}

std::optional<pid_t> running_host(const fs::path& root) {
  return hotswap::host::PidFile::running(root / "run" / "hotswap.pid");
}

// Gone: no such process, or a zombie nobody reaps (the daemon's parent is
// whatever adopted it).
bool process_gone(pid_t pid) {
  if (::kill(pid, 0) != 0) return errno == ESRCH;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const size_t paren = text.rfind(')');
  return paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] == 'Z';
}

// A free TCP port on 127.0.0.1 (bound, then closed: the daemon binds it next).
uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  socklen_t len = sizeof sa;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  ::close(fd);
  return ntohs(sa.sin_port);
}

// A listening socket the test holds, so that a listener on its port cannot open.
struct TakenPort {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  uint16_t port = 0;
  TakenPort() {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    REQUIRE(::listen(fd, 4) == 0);
    socklen_t len = sizeof sa;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
    port = ntohs(sa.sin_port);
  }
  ~TakenPort() { ::close(fd); }
};

// A NOTIFY_SOCKET the test reads: what a daemon tells its service manager.
struct FakeServiceManager {
  fs::path path = fs::temp_directory_path() / fs::unique_path("hotswap-notify-%%%%%%%%");
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  std::vector<std::string> heard;  // every datagram, in order

  FakeServiceManager() {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    REQUIRE(path.string().size() < sizeof address.sun_path);
    std::strcpy(address.sun_path, path.c_str());
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  }
  ~FakeServiceManager() {
    ::close(fd);
    boost::system::error_code ec;
    fs::remove(path, ec);
  }
  // Reads datagrams until one equals `message`; false when none came within
  // `limit` (a deadline for a daemon that never says it, never a pace).
  bool hear(const std::string& message, std::chrono::seconds limit = 30s) {
    const auto give_up = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < give_up) {
      pollfd ready{fd, POLLIN, 0};
      if (::poll(&ready, 1, 100) <= 0) continue;
      char text[4096];
      const ssize_t got = ::recv(fd, text, sizeof text, 0);
      if (got <= 0) continue;
      heard.emplace_back(text, static_cast<size_t>(got));
      if (heard.back() == message) return true;
    }
    return false;
  }
  // Reads every datagram already queued, without waiting.
  void drain() {
    char text[4096];
    for (ssize_t got; (got = ::recv(fd, text, sizeof text, MSG_DONTWAIT)) > 0;) heard.emplace_back(text, size_t(got));
  }
  // What was heard, one line per datagram ("READY=1", "RELOADING=1", ...: the first line of each).
  std::vector<std::string> first_lines() const {
    std::vector<std::string> lines;
    for (const std::string& message : heard) lines.push_back(message.substr(0, message.find('\n')));
    return lines;
  }
};

// A temporary root with a daemon on it; the daemon (and whatever holds its
// pid file) is killed and the folder removed at the end.
struct LiveRoot {
  fs::path dir = fs::temp_directory_path() / fs::unique_path("hotswap-handover-e2e-%%%%%%%%");
  std::string daemon_env;  // "NAME=value ..." for the daemon (runtime.json reads it)

  LiveRoot() { fs::create_directories(dir); }
  ~LiveRoot() {
    if (auto pid = running_host(dir)) {
      ::kill(*pid, SIGKILL);
      eventually([&] { return process_gone(*pid); });
    }
    boost::system::error_code ec;
    fs::remove_all(dir, ec);
  }
  Result run(const std::string& args, const std::string& env = "") const {
    return run_shell("env " + env + " " HOTSWAP_BINARY " " + args + " --root '" + dir.string() + "'");
  }
  void must(const std::string& args, const std::string& env = "") const {
    const Result r = run(args, env);
    INFO("hotswap " << args << "\n" << r.out);
    REQUIRE(r.code == 0);
  }
  json status() const {
    const Result r = run("status --json");
    INFO(r.out);
    REQUIRE(r.code == 0);
    return json::parse(r.out);
  }
  uint16_t port(const std::string& listener = "main") const {
    const json now = status();
    for (const json& l : now["listeners"])
      if (l["name"] == listener) return l["port"].get<uint16_t>();
    FAIL("no listener " << listener);
    return 0;
  }
  pid_t pid() const { return status()["pid"].get<pid_t>(); }
  // Unpacks `set`'s 1.0.0 and starts the daemon on it.
  void boot(const std::string& set = "base") const {
    must("unpack " + tarball(set, "1.0.0").string());
    must("daemon", daemon_env);
    REQUIRE(status()["version"] == "1.0.0");
  }
  void unpack(const std::string& set, const std::string& version) const {
    must("unpack " + tarball(set, version).string());
  }
  fs::path release_bin(const std::string& version) const { return dir / "releases" / version / "bin"; }
};

// The module's stats once the client's closes (and `other_closes` made
// outside the harness) reached it: the module hears of a close when the host
// reads the end of stream, after the client's last reply.
ModuleStats settled_stats(uint16_t port, const TrafficReport& report, uint64_t other_closes = 0) {
  const uint64_t closed_conns = report.expected().closed_conns + other_closes;
  ModuleStats stats;
  eventually([&] {
    stats = query_stats(port);
    return stats.closed_conns >= closed_conns;
  });
  return stats;
}

// The module state must be what the traffic implies, connection by connection.
void check_state_matches(const ModuleStats& stats, const TrafficReport& report) {
  const auto expected = report.expected();
  INFO(report.summary());
  CHECK(stats.conns == expected.conns);
  CHECK(stats.closed_conns == expected.closed_conns);
  CHECK(stats.checksum == expected.checksum);
  // Exact, but for the requests of abruptly closed connections that were never answered.
  CHECK(stats.total >= expected.total);
  CHECK(stats.total <= expected.total + expected.uncertain);
  CHECK(stats.closed >= expected.closed);
  CHECK(stats.closed <= expected.closed + expected.uncertain);
  CHECK(stats.total - expected.total == stats.closed - expected.closed);
}

void check_clean(const TrafficReport& report) {
  INFO(report.summary());
  CHECK(report.dropped == 0);
  CHECK(report.lost == 0);
  CHECK(report.duplicated == 0);
  CHECK(report.out_of_order == 0);
  CHECK(report.malformed == 0);
  // Every request answered, but those an abrupt close left behind.
  CHECK(report.answered + report.expected().uncertain == report.sent);
  CHECK(report.answered > 0);
}

// The timer fires on: its count grows past `after`.
void check_timer_fires_after(uint16_t port, uint64_t after) {
  uint64_t fires = 0;
  CHECK(eventually([&] {
    fires = query_stats(port).fires;
    return fires > after + 2;
  }));
  INFO("timer fires: " << fires << ", before: " << after);
}

// The last handover's figures in `status` (its "handover" section, or the
// "last" object in it).
json last_handover(const json& status) {
  const json section = status.contains("handover") ? status["handover"] : json();
  if (section.is_object() && section.contains("last") && section["last"].is_object()) return section["last"];
  return section.is_object() ? section : json::object();
}

// The handover module's entry in `status`.
json module_status(const json& status) {
  for (const json& m : status["modules"])
    if (m["name"] == "handover") return m;
  FAIL("no module handover in status: " << status.dump());
  return json();
}

// Runs `hotswap ARGS --json` (an upgrade or downgrade) and returns its report;
// the output when it is not JSON fails the test.
json upgrade_report(const LiveRoot& root, const std::string& args) {
  const Result r = root.run(args + " --json");
  INFO("hotswap " << args << " --json: exit " << r.code << "\n" << r.out);
  json report = json::parse(r.out, nullptr, false);
  REQUIRE(report.is_object());
  CHECK((r.code == 0) == (report.value("outcome", "") == "committed"));
  return report;
}

// Every connection busy, then `upgrade` (extra args `flags`) and `downgrade`;
// checks what the traffic saw and the module state after each step. With
// `new_process` (`back_in_new_process`) the upgrade (the downgrade) must hand
// over to a new process, and the old one must be gone.
void upgrade_and_back_under_traffic(LiveRoot& root, size_t connections, const std::string& flags, bool new_process,
                                    const std::string& expected_label, bool back_in_new_process) {
  const uint16_t port = root.port();
  TrafficOptions options;
  options.port = port;
  options.connections = connections;
  options.window = 2;
  options.interval = 100ms;
  Traffic traffic(options);
  traffic.start();
  REQUIRE(traffic.wait_until([&] { return traffic.answered() >= 2 * connections; }, 60s));

  const pid_t blue = root.pid();
  const uint64_t fires_before = query_stats(port).fires;
  const uint64_t host_ticks_before = module_status(root.status())["ticks"].get<uint64_t>();
  // Ten connections close while the upgrade runs, each once its replies are
  // in, and five at once, with requests in flight.
  traffic.close_gracefully(10);
  traffic.close_abruptly(5);
  const json up = upgrade_report(root, "upgrade 2.0.0" + flags);
  REQUIRE(up.value("outcome", "") == "committed");
  json status = root.status();
  CHECK(status["version"] == "2.0.0");
  if (new_process) {
    const pid_t green = status["pid"].get<pid_t>();
    CHECK(green != blue);
    CHECK(eventually([&] { return process_gone(blue); }));
    // The upgrade's report carries the handover's figures (blue made them).
    REQUIRE(up.contains("handover"));
    CHECK(up["handover"].value("committed", false));
    CHECK(up["handover"].value("connections", uint64_t(0)) >= connections - 15);
    CHECK(up["handover"].value("duration_ms", 0.0) > 0);
  } else {
    CHECK(status["pid"].get<pid_t>() == blue);
    CHECK_FALSE(up.contains("handover"));
  }
  // One timer, moved (not lost, not started twice); the host's tick count goes on.
  CHECK(module_status(status)["timers"] == 1);
  CHECK(module_status(status)["ticks"].get<uint64_t>() >= host_ticks_before);
  // Every connection answered by the new version; the state came with it.
  REQUIRE(traffic.wait_until([&] { return traffic.answered_with_tag("v2") >= 2 * connections; }, 60s));
  const ModuleStats upgraded = query_stats(port);
  CHECK(upgraded.version == "2.0.0");
  CHECK(upgraded.label == expected_label);
  check_timer_fires_after(port, std::max(fires_before, upgraded.fires));

  const pid_t second_blue = root.pid();
  const uint64_t v1_before = traffic.answered_with_tag("v1");
  const json down = upgrade_report(root, "downgrade 1.0.0");
  REQUIRE(down.value("outcome", "") == "committed");
  status = root.status();
  CHECK(status["version"] == "1.0.0");
  CHECK(down.contains("handover") == back_in_new_process);
  if (back_in_new_process) {
    CHECK(status["pid"].get<pid_t>() != second_blue);
    CHECK(eventually([&] { return process_gone(second_blue); }));
  }
  REQUIRE(traffic.wait_until([&] { return traffic.answered_with_tag("v1") >= v1_before + 2 * connections; }, 60s));
  CHECK(module_status(status)["timers"] == 1);
  const ModuleStats downgraded = query_stats(port);
  CHECK(downgraded.version == "1.0.0");
  check_timer_fires_after(port, downgraded.fires);

  const TrafficReport report = traffic.stop();
  check_clean(report);
  CHECK(report.expected().closed_conns == 15);
  check_state_matches(settled_stats(port, report), report);
}

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path.string());
  out << text;
  REQUIRE(out.good());
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path.string());
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A blue-green upgrade that must fail (green fails one way) under traffic:
// blue serves on, every connection still answered by 1.0.0, nothing lost.
// `during` runs on this thread while the upgrade runs. Returns the upgrade's
// output.
std::string failed_handover_under_traffic(LiveRoot& root, size_t connections,
                                         const std::function<void(Traffic&)>& during = {}) {
  const uint16_t port = root.port();
  TrafficOptions options;
  options.port = port;
  options.connections = connections;
  options.window = 4;
  options.interval = 0ms;  // every connection always has requests in flight
  Traffic traffic(options);
  traffic.start();
  REQUIRE(traffic.wait_until([&] { return traffic.answered() >= 5 * connections; }, 60s));
  const pid_t blue = root.pid();
  const uint64_t fires_before = query_stats(port).fires;

  auto upgrade = std::async(std::launch::async, [&] { return root.run("upgrade 2.0.0"); });
  if (during) during(traffic);
  const Result up = upgrade.get();
  INFO(up.out);
  CHECK(up.code != 0);
  const json status = root.status();
  CHECK(status["version"] == "1.0.0");
  CHECK(status["pid"].get<pid_t>() == blue);
  REQUIRE(status["last_upgrade"].is_object());
  CHECK(status["last_upgrade"].value("outcome", "") != "committed");
  const json figures = last_handover(status);
  INFO(status.dump());
  CHECK(figures.value("committed", true) == false);

  // Blue serves every connection on.
  const uint64_t answered = traffic.answered();
  REQUIRE(traffic.wait_until([&] { return traffic.answered() >= answered + 5 * connections; }, 60s));
  check_timer_fires_after(port, fires_before);
  const TrafficReport report = traffic.stop();
  check_clean(report);
  CHECK(report.replies_by_tag.count("v2") == 0);
  check_state_matches(settled_stats(port, report), report);
  return up.out;
}

// Sets the fake green's mode (fake_green.cpp) in the unpacked fake-green release.
void fake_green_mode(const LiveRoot& root, const std::string& mode) {
  write_file(root.release_bin("2.0.0") / "fake_green.mode", mode + "\n");
}

std::string fake_green_log(const LiveRoot& root) { return read_file(root.release_bin("2.0.0") / "fake_green.log"); }

// The pid the fake green logged when it started (0 before it did).
pid_t fake_green_pid(const LiveRoot& root) {
  pid_t pid = 0;
  std::istringstream lines(fake_green_log(root));
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("started pid=", 0) == 0) pid = std::stoi(line.substr(12));
  return pid;
}

// A daemon reporting to `manager`, handing over to a fake green that "loads"
// until the test ends it (blue serves meanwhile, signals included): the
// handover's timeout is never what ends it. `upgrade` is the running
// `hotswap upgrade 2.0.0`; `heard_at_boot` counts the boot's notifications.
struct HandoverLoadingForever {
  explicit HandoverLoadingForever(FakeServiceManager& manager) {
    root.daemon_env = "NOTIFY_SOCKET=" + manager.path.string() + " HANDOVER_TIMEOUT_S=600";
    root.boot("timeout");
    REQUIRE(manager.hear("READY=1"));
    heard_at_boot = manager.heard.size();
    root.unpack("fake-green", "2.0.0");
    fake_green_mode(root, "loading");
    blue = root.pid();
    upgrade = std::async(std::launch::async, [this] { return root.run("upgrade 2.0.0"); });
    REQUIRE(eventually([&] { return fake_green_log(root).find("loading forever") != std::string::npos; }));
  }
  LiveRoot root;
  size_t heard_at_boot = 0;
  pid_t blue = 0;
  std::future<Result> upgrade;
};

}  // namespace

// ---- today: in-place upgrades, and the harness itself -----------------------

TEST_CASE("1,000 connections through an in-place upgrade and back under traffic: nothing dropped, lost, "
          "duplicated or reordered, the module state as the traffic implies, the timer firing") {
  REQUIRE(raise_open_files_limit(4096) >= 2048);
  LiveRoot root;
  root.boot();
  root.unpack("inplace", "2.0.0");
  upgrade_and_back_under_traffic(root, 1000, "", false, "in-place", false);
}

TEST_CASE("the traffic harness counts every connection the server drops and the requests it lost") {
  LiveRoot root;
  root.boot();
  TrafficOptions options;
  options.port = root.port();
  options.connections = 8;
  options.window = 3;
  options.interval = 0ms;
  Traffic traffic(options);
  traffic.start();
  REQUIRE(traffic.wait_until([&] { return traffic.answered() >= 100; }, 30s));
  root.must("stop");
  REQUIRE(traffic.wait_until([&] { return traffic.dropped_so_far() == 8; }, 30s));
  const TrafficReport report = traffic.stop(0ms);
  INFO(report.summary());
  CHECK(report.dropped == 8);
  CHECK(report.duplicated == 0);
  CHECK(report.out_of_order == 0);
  CHECK(report.malformed == 0);
  CHECK(report.answered + report.lost == report.sent);
  CHECK_FALSE(report.clean());
  for (const auto& record : report.records) CHECK(record.dropped);
  CHECK(report.expected().conns == 0);  // a dropped connection is not expected in the module's state
}

TEST_CASE("the traffic harness reconnects to a restarted host, which starts the counts again") {
  LiveRoot root;
  const uint16_t port = free_port();
  root.daemon_env = "HANDOVER_PORT=" + std::to_string(port);
  root.boot();
  REQUIRE(root.port() == port);
  TrafficOptions options;
  options.port = port;
  options.connections = 6;
  options.window = 2;
  options.interval = 5ms;
  options.reconnect = true;
  Traffic traffic(options);
  traffic.start();
  REQUIRE(traffic.wait_until([&] { return traffic.answered() >= 60; }, 30s));
  root.must("stop");
  root.must("daemon", root.daemon_env);
  REQUIRE(traffic.wait_until([&] { return traffic.first_replies_after_reconnect() >= 6; }, 30s));
  const uint64_t answered = traffic.answered();
  REQUIRE(traffic.wait_until([&] { return traffic.answered() >= answered + 60; }, 30s));
  const TrafficReport report = traffic.stop();
  INFO(report.summary());
  CHECK(report.dropped >= 6);
  CHECK(report.duplicated == 0);
  CHECK(report.out_of_order == 0);
  CHECK(report.malformed == 0);  // counts start again at 1 on the new connections
  for (const auto& record : report.records) {
    CHECK(record.reconnects >= 1);  // more when a reconnect reached the old host as it went away
    CHECK_FALSE(record.dropped);
  }
  CHECK(report.max_stall_ms > 0);
  // The restarted module knows only the new connections' requests.
  const ModuleStats stats = query_stats(port);
  CHECK(stats.conns == 6);
  uint64_t since_restart = 0;
  for (const auto& record : report.records) since_restart += record.answered;
  CHECK(stats.total == since_restart);
  CHECK(stats.checksum == report.expected().checksum);
}

TEST_CASE("the module's stats reply is parsed field by field, and anything else is refused naming it") {
  using hotswap::test::handover::parse_stats;
  const ModuleStats s = parse_stats(
      "stats version=2.0.0 conns=3 total=10 closed_conns=1 closed=4 checksum=99 fires=7 ticks=8 label=x");
  CHECK(s.version == "2.0.0");
  CHECK(s.conns == 3);
  CHECK(s.total == 10);
  CHECK(s.closed_conns == 1);
  CHECK(s.closed == 4);
  CHECK(s.checksum == 99);
  CHECK(s.fires == 7);
  CHECK(s.ticks == 8);
  CHECK(s.label == "x");
  CHECK_THROWS_WITH(parse_stats("1 2 1 v1"), Catch::Contains("not a stats reply"));
  CHECK_THROWS_WITH(parse_stats("stats version=1.0.0 conns=1"), Catch::Contains("without total"));
  CHECK_THROWS_WITH(parse_stats("stats conns"), Catch::Contains("without '='"));
}

TEST_CASE("the handover module refuses an unknown request and keeps the connection") {
  LiveRoot root;
  root.boot();
  const uint16_t port = root.port();
  const ModuleStats before = query_stats(port);
  // The unknown request gets no reply (the module throws; the host logs it)
  // and is not counted: the numbered one after it on the same connection is
  // its first.
  std::istringstream reply(hotswap::test::handover::ask("127.0.0.1", port, "1 2\n41"));
  uint64_t seq = 0, id = 0, count = 0;
  std::string tag;
  reply >> seq >> id >> count >> tag;
  CHECK(seq == 41);
  CHECK(count == 1);
  CHECK(tag == "v1");
  const ModuleStats after = query_stats(port);
  CHECK(after.total == before.total + 1);
}

// ---- blue-green handovers ----------------------------------------------------

TEST_CASE("1,000 connections through a blue-green upgrade and back under traffic: nothing dropped, lost, "
          "duplicated or reordered, state and timers moved, the old process gone",
          "[handover]") {
  REQUIRE(raise_open_files_limit(4096) >= 2048);
  LiveRoot root;
  root.boot();
  root.unpack("blue-green", "2.0.0");
  upgrade_and_back_under_traffic(root, 1000, "", true, "blue-green", true);
}

TEST_CASE("upgrade --blue-green hands over a change that could be made in place (and the downgrade is made in place)",
          "[handover]") {
  LiveRoot root;
  root.boot();
  root.unpack("inplace", "2.0.0");
  upgrade_and_back_under_traffic(root, 50, " --blue-green", true, "in-place", false);
}

TEST_CASE("clients that send and clients that close during a blue-green handover: every request answered once, "
          "in order, the closes seen by the module",
          "[handover]") {
  LiveRoot root;
  root.boot();
  root.unpack("blue-green", "2.0.0");
  const uint16_t port = root.port();
  TrafficOptions options;
  options.port = port;
  options.connections = 200;
  options.window = 4;
  options.interval = 0ms;  // requests always in flight: unread input and unsent output move
  Traffic traffic(options);
  traffic.start();
  REQUIRE(traffic.wait_until([&] { return traffic.answered() >= 2000; }, 60s));
  const pid_t blue = root.pid();
  auto upgrade = std::async(std::launch::async, [&] { return root.run("upgrade 2.0.0"); });
  // Connections close one after another for as long as the handover runs.
  uint64_t closes = 0;
  while (upgrade.wait_for(0s) != std::future_status::ready && closes < 50) {
    traffic.close_gracefully(1);
    traffic.close_abruptly(1);  // with requests in flight: its unread input dies with it
    closes += 2;
    traffic.wait_until([&] { return traffic.closed_by_client() >= closes; }, 10s);
  }
  const Result up = upgrade.get();
  INFO(up.out);
  REQUIRE(up.code == 0);
  CHECK(root.pid() != blue);
  CHECK(eventually([&] { return process_gone(blue); }));
  const uint64_t answered = traffic.answered();
  REQUIRE(traffic.wait_until([&] { return traffic.answered() >= answered + 2000; }, 60s));
  const TrafficReport report = traffic.stop();
  check_clean(report);
  CHECK(report.expected().closed_conns == closes);
  check_state_matches(settled_stats(port, report), report);
}

TEST_CASE("green crashes before it is ready: blue takes every connection back and serves it on",
          "[handover]") {
  LiveRoot root;
  root.boot("timeout");
  root.unpack("fake-green", "2.0.0");
  fake_green_mode(root, "crash 2");
  failed_handover_under_traffic(root, 100);
  const std::string log = fake_green_log(root);
  INFO(log);
  CHECK_THAT(log, Catch::Contains("command=handover-target") && Catch::Contains("received type=3") &&
                      Catch::Contains("crashing"));
}

TEST_CASE("green exits before it is ready: blue serves every connection on", "[handover]") {
  LiveRoot root;
  root.boot("timeout");
  root.unpack("fake-green", "2.0.0");
  fake_green_mode(root, "exit 2");
  failed_handover_under_traffic(root, 100);
  CHECK_THAT(fake_green_log(root), Catch::Contains("exiting"));
}

TEST_CASE("green hangs: the handover times out (handover_timeout_s 1), green is killed, blue serves on, and sees "
          "the connections closed meanwhile",
          "[handover]") {
  LiveRoot root;
  root.boot("timeout");
  root.unpack("fake-green", "2.0.0");
  fake_green_mode(root, "hang 2");
  // Once green hangs, blue has paused every connection and sent the first
  // batch: five clients close theirs now, with requests in flight, and blue
  // must notice when it takes them back.
  const std::string out = failed_handover_under_traffic(root, 100, [&](Traffic& traffic) {
    REQUIRE(eventually([&] { return fake_green_log(root).find("hanging") != std::string::npos; }));
    traffic.close_abruptly(5);
    REQUIRE(traffic.wait_until([&] { return traffic.closed_by_client() >= 5; }, 10s));
  });
  CHECK_THAT(out, Catch::Contains("time", Catch::CaseSensitive::No));
  const std::string log = fake_green_log(root);
  INFO(log);
  CHECK_THAT(log, Catch::Contains("hanging"));
  // Blue killed the hung green (its own 20 s alarm is far away).
  const pid_t fake = fake_green_pid(root);
  REQUIRE(fake > 0);
  CHECK(eventually([&] { return process_gone(fake); }, std::chrono::seconds(10)));
}

TEST_CASE("SIGUSR2 while a handover runs is refused, and the service manager hears READY=1 once, when that handover "
          "ends",
          "[handover]") {
  FakeServiceManager manager;
  HandoverLoadingForever handover(manager);
  LiveRoot& root = handover.root;
  const pid_t blue = handover.blue;

  REQUIRE(::kill(blue, SIGUSR2) == 0);
  // Its own handover is refused (one runs); the line is logged after the signal's answer.
  const fs::path host_log = root.dir / "log" / "hotswap.log";
  REQUIRE(eventually([&] {
    return read_file(host_log).find("busy: an upgrade to 2.0.0 is in progress") != std::string::npos;
  }));

  const pid_t green = fake_green_pid(root);
  REQUIRE(green > 0);
  REQUIRE(::kill(green, SIGKILL) == 0);
  const Result up = handover.upgrade.get();
  INFO(up.out);
  CHECK(up.code != 0);
  CHECK(root.pid() == blue);

  // Blue told the service manager before it answered the upgrade: every
  // notification is queued by now. After the boot: the upgrade's reload, the
  // signal's, and one READY=1, at the handover's end.
  manager.drain();
  const std::vector<std::string> heard = manager.first_lines();
  CHECK(std::vector<std::string>(heard.begin() + handover.heard_at_boot, heard.end()) ==
        std::vector<std::string>{"RELOADING=1", "RELOADING=1", "READY=1"});
}

TEST_CASE("a stop during a handover: blue aborts it, and STOPPING=1 stays its last word to the service manager",
          "[handover]") {
  FakeServiceManager manager;
  HandoverLoadingForever handover(manager);
  const pid_t blue = handover.blue;

  REQUIRE(::kill(blue, SIGTERM) == 0);
  const Result up = handover.upgrade.get();
  INFO(up.out);
  CHECK(up.code != 0);
  REQUIRE(eventually([&] { return process_gone(blue); }));
  // Blue is gone: everything it said is queued.
  manager.drain();
  const std::vector<std::string> heard = manager.first_lines();
  CHECK(std::vector<std::string>(heard.begin() + handover.heard_at_boot, heard.end()) ==
        std::vector<std::string>{"RELOADING=1", "STOPPING=1"});
}

TEST_CASE("green speaks another protocol version: the handover aborts saying so, blue serves on", "[handover]") {
  LiveRoot root;
  root.boot("timeout");
  root.unpack("fake-green", "2.0.0");
  fake_green_mode(root, "protocol");
  const std::string out = failed_handover_under_traffic(root, 100);
  CHECK_THAT(out, Catch::Contains("protocol version 2"));
  CHECK_THAT(fake_green_log(root), Catch::Contains("sending Hello with protocol version 2"));
}

TEST_CASE("green reports an error: the handover aborts with its message, blue serves on", "[handover]") {
  LiveRoot root;
  root.boot("timeout");
  root.unpack("fake-green", "2.0.0");
  fake_green_mode(root, "error 1");
  const std::string out = failed_handover_under_traffic(root, 100);
  CHECK_THAT(out, Catch::Contains("fake green refuses on purpose"));
}

TEST_CASE("green cannot open the listener the target adds (its port is taken): blue serves on", "[handover]") {
  TakenPort taken;
  LiveRoot root;
  root.daemon_env = "HANDOVER_EXTRA_PORT=" + std::to_string(taken.port);
  root.boot();
  root.unpack("listener", "2.0.0");
  const std::string out = failed_handover_under_traffic(root, 100);
  CHECK_THAT(out, Catch::Contains(std::to_string(taken.port)));
  CHECK(root.status()["listeners"].size() == 1);
}

TEST_CASE("a listener change, refused in place, goes through blue-green: green opens the new listener",
          "[handover]") {
  LiveRoot root;
  root.boot();
  root.unpack("listener", "2.0.0");
  const uint16_t port = root.port();
  TrafficOptions options;
  options.port = port;
  options.connections = 50;
  options.interval = 20ms;
  Traffic traffic(options);
  traffic.start();
  REQUIRE(traffic.wait_until([&] { return traffic.answered() >= 100; }, 60s));
  const pid_t blue = root.pid();
  const Result up = root.run("upgrade 2.0.0");
  INFO(up.out);
  REQUIRE(up.code == 0);
  CHECK(root.pid() != blue);
  CHECK(root.port() == port);
  const uint16_t extra = root.port("extra");
  CHECK_THAT(hotswap::test::handover::ask("127.0.0.1", extra, "1"), Catch::EndsWith(" 1 v2"));
  REQUIRE(traffic.wait_until([&] { return traffic.answered_with_tag("v2") >= 100; }, 60s));
  const TrafficReport report = traffic.stop();
  check_clean(report);
  // The state as the traffic implies, plus the one request (and close) on the new listener.
  const ModuleStats stats = settled_stats(port, report, 1);
  const auto expected = report.expected();
  CHECK(stats.conns == expected.conns);
  CHECK(stats.total == expected.total + 1);
  CHECK(stats.closed_conns == expected.closed_conns + 1);
  CHECK(stats.closed == expected.closed + 1);
  CHECK(stats.checksum == expected.checksum);
}
