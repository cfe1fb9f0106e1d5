// hotswap_handover_bench: blue_green_handover (see bench/README.md).
//
// A live daemon (the `hotswap` binary, on a temporary root) serves the
// `handover` test module (tests/modules/handover_module.cpp) to N connections
// of the traffic harness (tests/handover/e2e/traffic.hpp), each sending
// numbered requests at a steady pace. Then, in the same run:
//   1. a blue-green upgrade 1.0.0 -> 2.0.0 (the appup's blue_green
//      instruction): handover_ms (the host's own figure: blue paused -> green
//      committed), the command's wall time, max_stall_ms (the longest any
//      request waited for its reply, measured by the clients), dropped, lost;
//   2. the baseline: `hotswap stop` and `hotswap daemon` on the same port, the
//      clients reconnecting: restart_ms (stop issued -> every connection
//      answered again), restart_dropped, restart_lost, restart_max_stall_ms.
// One JSON line per connection count; ratio = restart_ms / handover_ms.
//
// Options: --connections 1000,10000 (default), --rate R (requests per second,
// all connections together; default 10000), --baseline-only (skip the
// handover, e.g. before the host can perform one), --quick (1000 connections).
// Exit status 1 when a check fails (a handover that did not commit, a
// connection dropped or a request lost by it, a timeout).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/filesystem.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "process_support.hpp"
#include "traffic.hpp"

namespace fs = boost::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;
using hotswap::test::Result;
using hotswap::test::run_shell;
using namespace hotswap::test::handover;

namespace {

[[noreturn]] void die(const std::string& why) { throw std::runtime_error(why); }

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

fs::path tarball(const std::string& set, const std::string& version) {
  return fs::path(HOTSWAP_HANDOVER_RELEASES_DIR) / set / ("handover-" + version + ".tar.gz");
}

// A free TCP port on 127.0.0.1: the daemon binds it next, and again after the restart.
uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  const bool ok = fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0;
  if (fd >= 0) ::close(fd);
  if (!ok) die("cannot find a free port");
  return ntohs(sa.sin_port);
}

// A temporary root with a daemon on it, killed and removed at the end.
class BenchRoot {
 public:
  explicit BenchRoot(uint16_t port)
      : dir_(fs::temp_directory_path() / fs::unique_path("hotswap-handover-bench-%%%%%%%%")),
        env_("HANDOVER_PORT=" + std::to_string(port)) {
    fs::create_directories(dir_);
  }
  ~BenchRoot() {
    run("stop");
    boost::system::error_code ec;
    fs::remove_all(dir_, ec);
  }
  Result run(const std::string& args) const {
    return run_shell("env " + env_ + " " HOTSWAP_BINARY " " + args + " --root '" + dir_.string() + "'");
  }
  void must(const std::string& args) const {
    const Result r = run(args);
    if (r.code != 0) die("hotswap " + args + " failed (" + std::to_string(r.code) + "): " + r.out);
  }
  json status() const {
    const Result r = run("status --json");
    if (r.code != 0) die("hotswap status failed: " + r.out);
    return json::parse(r.out);
  }

 private:
  fs::path dir_;
  std::string env_;
};

bool wait_for(const Traffic& traffic, const std::function<bool()>& condition, std::chrono::seconds limit) {
  return traffic.wait_until(condition, std::chrono::duration_cast<std::chrono::milliseconds>(limit));
}

ordered_json run_one(size_t connections, double rate, bool baseline_only, bool& failed) {
  if (raise_open_files_limit(connections + 512) < connections + 512)
    die("the open-files limit cannot be raised to " + std::to_string(connections + 512) + " (hard limit too low)");
  const uint16_t port = free_port();
  BenchRoot root(port);
  root.must("unpack " + tarball("base", "1.0.0").string());
  root.must("daemon");  // boots the newest unpacked release: 1.0.0 before 2.0.0 is there
  root.must("unpack " + tarball("blue-green", "2.0.0").string());

  TrafficOptions options;
  options.port = port;
  options.connections = connections;
  options.window = 2;
  options.interval = std::chrono::milliseconds(std::max<int64_t>(1, int64_t(double(connections) * 1000.0 / rate)));
  options.reconnect = true;  // the restart baseline; a handover must need none
  Traffic traffic(options);
  traffic.start();
  if (!wait_for(traffic, [&] { return traffic.answered() >= 3 * connections; }, std::chrono::seconds(120)))
    die("warm-up: not every connection answered (" + std::to_string(traffic.answered()) + " replies)");

  ordered_json line = {{"name", "blue_green_handover"}, {"connections", connections}, {"rate", rate},
               {"interval_ms", options.interval.count()}};

  // 1. The blue-green handover.
  if (!baseline_only) {
    const uint64_t dropped_before = traffic.dropped_so_far(), lost_before = traffic.lost_so_far();
    traffic.reset_max_stall();
    const Clock::time_point start = Clock::now();
    const Result up = root.run("upgrade 2.0.0");
    const double command_ms = ms_since(start);
    if (up.code != 0) {
      failed = true;
      line["handover_error"] = up.out;
    } else {
      // Every connection answered by green, then the phase's figures.
      if (!wait_for(traffic, [&] { return traffic.answered_with_tag("v2") >= 2 * connections; }, std::chrono::seconds(120)))
        die("after the handover not every connection was answered by 2.0.0");
      const json status = root.status();
      json figures = status.contains("handover") && status["handover"].is_object() ? status["handover"] : json::object();
      if (figures.contains("last") && figures["last"].is_object()) figures = figures["last"];
      line["handover_ms"] = figures.value("duration_ms", -1.0);
      line["host_max_stall_ms"] = figures.value("max_stall_ms", -1.0);
      line["handover_bytes"] = figures.value("bytes", uint64_t(0));
      line["moved_connections"] = figures.value("connections", uint64_t(0));
      line["upgrade_command_ms"] = command_ms;
      line["max_stall_ms"] = traffic.max_stall_ms_since_reset();
      line["dropped"] = traffic.dropped_so_far() - dropped_before;
      line["lost"] = traffic.lost_so_far() - lost_before;
      if (line["dropped"] != 0 || line["lost"] != 0) failed = true;
    }
  }

  // 2. The baseline: stop and start again; the clients reconnect.
  {
    const uint64_t dropped_before = traffic.dropped_so_far(), lost_before = traffic.lost_so_far();
    const uint64_t reconnected_before = traffic.first_replies_after_reconnect();
    traffic.reset_max_stall();
    const Clock::time_point start = Clock::now();
    root.must("stop");
    root.must("daemon");
    if (!wait_for(traffic, [&] { return traffic.first_replies_after_reconnect() >= reconnected_before + connections; },
                  std::chrono::seconds(300)))
      die("after the restart not every connection reconnected and was answered");
    line["restart_ms"] = ms_since(start);
    line["restart_max_stall_ms"] = traffic.max_stall_ms_since_reset();
    line["restart_dropped"] = traffic.dropped_so_far() - dropped_before;
    line["restart_lost"] = traffic.lost_so_far() - lost_before;
  }
  const TrafficReport report = traffic.stop(std::chrono::seconds(30));
  if (report.duplicated != 0 || report.out_of_order != 0 || report.malformed != 0) {
    failed = true;
    line["errors"] = report.summary();
  }
  if (line.contains("handover_ms") && line["handover_ms"].get<double>() > 0) {
    line["ratio"] = line["restart_ms"].get<double>() / line["handover_ms"].get<double>();
    if (line["max_stall_ms"].get<double>() > 0)
      line["stall_ratio"] = line["restart_max_stall_ms"].get<double>() / line["max_stall_ms"].get<double>();
  }
  return line;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"blue_green_handover: a blue-green handover under traffic against a stop and restart"};
  std::vector<size_t> counts{1000, 10000};
  double rate = 10000;
  bool baseline_only = false, quick = false;
  app.add_option("--connections", counts, "connection counts, one JSON line each")->delimiter(',');
  app.add_option("--rate", rate, "requests per second, all connections together")->check(CLI::PositiveNumber);
  app.add_flag("--baseline-only", baseline_only, "only the stop-and-restart baseline");
  app.add_flag("--quick", quick, "1,000 connections only");
  CLI11_PARSE(app, argc, argv);
  if (quick) counts = {1000};
  bool failed = false;
  try {
    for (size_t n : counts) std::cout << run_one(n, rate, baseline_only, failed).dump() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "blue_green_handover: " << e.what() << "\n";
    return 1;
  }
  return failed ? 1 : 0;
}
