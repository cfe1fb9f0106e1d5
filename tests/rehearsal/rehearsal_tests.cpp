// Live rehearsal (issue 10): a live host under traffic (200 connections, each
// exchanging numbered requests and replies) rehearses an upgrade whose
// migration segfaults, aborts, hangs, throws, keeps a pointer into the old
// library, or does not survive the round trip. Each is refused naming the
// signal or error and the step; no connection drops, every reply arrives
// exactly once and in order (so the child read and wrote no byte of any
// connection), and the live module keeps its instance, version and state.
// A good upgrade passes its rehearsal and then really upgrades.
//
// The waits are on conditions (replies counted by the client, the upgrade's
// report); the one bound that involves the child's speed is the timeout case's
// own 1 s timeout, which a hanging child always reaches.
#include <sys/mman.h>
#include <sys/wait.h>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/filesystem/operations.hpp>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <future>
#include <optional>
#include <string>

#include "../host/test_support.hpp"
#include "../server/server_fixture.hpp"
#include "cli/exit_status.hpp"
#include "release/release_files.hpp"
#include "release/release_store.hpp"
#include "upgrade/rehearsal.hpp"
#include "upgrade/upgrade_coordinator.hpp"
#include "upgrade/upgrade_executor.hpp"

namespace {

using hotswap::host::RehearsalReport;
using hotswap::host::RuntimeConfig;
using hotswap::host::UpgradeReport;
using hotswap::test::LoadClient;
using hotswap::test::RunningHost;
using hotswap::test::TestRoot;
using nlohmann::json;

constexpr size_t kConnections = 200;

json rehearsal_runtime(const json& extra = json::object()) {
  json runtime = hotswap::test::counter_runtime();
  runtime["modules"]["counter"]["tick_hz"] = 0;
  runtime.update(extra);
  return runtime;
}

// Release 1.0.0 (the base counter), booted by a host started after this.
void add_base(TestRoot& root, const json& runtime) {
  root.add_release("1.0.0", {{"counter", "1.0.0", "rehearsal-base"}}, runtime);
}
// Release 2.0.0 (the variant under test), unpacked once the host runs 1.0.0.
void add_target(TestRoot& root, const std::string& variant, const json& runtime) {
  root.add_release("2.0.0", {{"counter", "2.0.0", "rehearsal-" + variant, hotswap::test::counter_v2_appup()}},
                   runtime);
}

// What the live host looks like, read on its loop.
struct LiveView {
  const void* instance = nullptr;
  std::string version;
  uint64_t total = 0;
  size_t connections = 0;
};

LiveView look(RunningHost& host) {
  return host.on_loop([&] {
    LiveView view;
    hotswap::host::ModuleSlot* slot = host.runtime().registry().find("counter");
    view.instance = &slot->active();
    view.version = slot->active().version();
    view.total = std::stoull(slot->active().run_task("total", "null"));
    view.connections = host.runtime().server().connection_count();
    return view;
  });
}

UpgradeReport upgrade(RunningHost& host, const std::string& version, bool rehearse = true) {
  std::promise<UpgradeReport> done;
  boost::asio::post(host.runtime().io(), [&] {
    hotswap::host::UpgradeRequest request;
    request.version = version;
    request.rehearse = rehearse;
    host.runtime().upgrade(request, {}, [&done](const UpgradeReport& r) { done.set_value(r); });
  });
  return done.get_future().get();
}

// The host runs inside this test program: a spawned rehearsal must start the
// real `hotswap` instead of /proc/self/exe.
void use_real_program(RunningHost& host) {
  host.on_loop([&] { host.runtime().coordinator().set_running_program(HOTSWAP_BINARY); });
}

const json kSpawned = {{"rehearsal_mechanism", "spawn"}};

struct Expected {
  std::string outcome;  // "crashed", "failed", "timed_out"
  std::vector<std::string> steps;  // the step it may fail in (the first listed for release builds)
  std::string error_part;
};

// Boots 1.0.0, puts 200 connections under traffic, upgrades to 2.0.0 (the
// variant), and checks the refusal and that the live host noticed nothing.
void check_refused(const std::string& variant, const Expected& expected, const json& runtime_extra = json::object(),
                   bool label_first = false) {
  TestRoot root;
  add_base(root, rehearsal_runtime(runtime_extra));
  RunningHost host(root.dir());
  add_target(root, variant, rehearsal_runtime(runtime_extra));
  use_real_program(host);
  LoadClient client(host.port(), kConnections);
  client.start();
  REQUIRE(client.wait_for_replies(2 * kConnections));
  if (label_first)
    host.on_loop([&] { return host.runtime().registry().find("counter")->active().run_task("label", "null"); });
  const LiveView before = look(host);

  const UpgradeReport report = upgrade(host, "2.0.0");
  const uint64_t replies_after_upgrade = client.replies();
  REQUIRE(client.wait_for_replies(replies_after_upgrade + 2 * kConnections));  // traffic flows on
  const LiveView during = look(host);
  const LoadClient::Totals totals = client.stop();
  const LiveView after = look(host);

  INFO(report.summary());
  CHECK(report.outcome == UpgradeReport::Outcome::Refused);
  CHECK(report.rehearsal_failed);
  REQUIRE(report.rehearsal.is_object());
  CHECK(report.rehearsal["outcome"] == expected.outcome);
  const std::string step = report.rehearsal["step"];
  INFO("failed in step " << step);
  CHECK(std::find(expected.steps.begin(), expected.steps.end(), step) != expected.steps.end());
  CHECK_THAT(report.error, Catch::Contains(expected.error_part));
  CHECK_THAT(report.error, Catch::Contains("in step " + step));
  CHECK(report.rehearsal["fork_ms"].get<double>() > 0);

  // Nothing dropped, every reply exactly once and in order: the child read and
  // wrote no byte of any connection.
  CHECK(totals.opened == kConnections);
  CHECK(totals.dropped == 0);
  CHECK(totals.out_of_order == 0);
  CHECK(totals.unexpected == 0);
  CHECK(totals.outstanding == 0);
  CHECK(totals.replies == totals.sent);
  CHECK(during.connections == kConnections);
  // The live module: the same instance and version, and every add counted once.
  CHECK(after.instance == before.instance);
  CHECK(after.version == "1.0.0");
  CHECK(after.total == totals.replies);
  // The host still upgrades nothing and serves: status shows the rehearsal.
  const json status = host.on_loop([&] { return host.runtime().status(); });
  CHECK(status["last_rehearsal"]["outcome"] == expected.outcome);
  CHECK(status["busy"] == false);
}

}  // namespace

TEST_CASE("rehearsal: a migration that segfaults is refused with SIGSEGV in step migrate", "[rehearsal]") {
  check_refused("segv", {"crashed", {"migrate"}, "SIGSEGV"});
}

TEST_CASE("rehearsal: a migration that calls abort() is refused with SIGABRT in step migrate", "[rehearsal]") {
  check_refused("abort", {"crashed", {"migrate"}, "SIGABRT"});
}

TEST_CASE("rehearsal: a migration that never returns is killed at the timeout and refused", "[rehearsal]") {
  check_refused("hang", {"timed_out", {"migrate"}, "did not finish within 1000 ms"}, {{"rehearsal_timeout_s", 1}});
}

TEST_CASE("rehearsal: a migration that throws is refused with its error in step migrate", "[rehearsal]") {
  check_refused("throw", {"failed", {"migrate"}, "the migration failed on purpose"});
}

TEST_CASE("rehearsal: a new state that points at a string literal of the old library faults once it is unloaded",
          "[rehearsal]") {
  // Adopted as is; the child unloads 1.0.0, then 2.0.0's self_check reads the label.
  check_refused("literal", {"crashed", {"self_check", "export_after"}, "SIGSEGV"}, json::object(), true);
}

TEST_CASE("rehearsal: a round trip that does not restore the state is refused in step round_trip", "[rehearsal]") {
  check_refused("lossy", {"failed", {"round_trip"}, "differs from the state before"});
}

// The spawned mechanism: the same refusals, from a fresh process fed the
// exported states. (A pointer into the old library that the export does not
// carry is not rehearsed there: the fork's case "literal" above.)
TEST_CASE("rehearsal, spawned: a migration that segfaults is refused with SIGSEGV in step migrate", "[rehearsal]") {
  check_refused("segv", {"crashed", {"migrate"}, "SIGSEGV"}, kSpawned);
}

TEST_CASE("rehearsal, spawned: a migration that never returns is killed at the timeout and refused", "[rehearsal]") {
  json extra = kSpawned;
  extra["rehearsal_timeout_s"] = 1;
  check_refused("hang", {"timed_out", {"migrate"}, "did not finish within 1000 ms"}, extra);
}

TEST_CASE("rehearsal, spawned: a migration that throws is refused with its error in step migrate", "[rehearsal]") {
  check_refused("throw", {"failed", {"migrate"}, "the migration failed on purpose"}, kSpawned);
}

TEST_CASE("rehearsal, spawned: a round trip that does not restore the state is refused in step round_trip",
          "[rehearsal]") {
  check_refused("lossy", {"failed", {"round_trip"}, "differs from the state before"}, kSpawned);
}

namespace {

// Boots 1.0.0 with `runtime_extra`, upgrades to the good 2.0.0 under traffic,
// and checks the rehearsal passed, the upgrade committed and no connection noticed.
json check_good_upgrade(const json& runtime_extra, const std::vector<std::string>& expected_steps) {
  TestRoot root;
  add_base(root, rehearsal_runtime(runtime_extra));
  RunningHost host(root.dir());
  add_target(root, "good", rehearsal_runtime(runtime_extra));
  use_real_program(host);
  LoadClient client(host.port(), kConnections);
  client.start();
  REQUIRE(client.wait_for_replies(2 * kConnections));
  const UpgradeReport report = upgrade(host, "2.0.0");
  const uint64_t replies_after_upgrade = client.replies();
  REQUIRE(client.wait_for_replies(replies_after_upgrade + 2 * kConnections));
  const LiveView during = look(host);
  const LoadClient::Totals totals = client.stop();
  const LiveView after = look(host);

  INFO(report.summary());
  REQUIRE(report.committed());
  REQUIRE(report.rehearsal.is_object());
  CHECK(report.rehearsal["outcome"] == "passed");
  CHECK(report.rehearsal["round_trip"] == true);
  CHECK(report.rehearsal["state_sizes"]["counter"]["before"] == 16);
  CHECK(report.rehearsal["state_sizes"]["counter"]["after"] == 16);
  std::vector<std::string> steps;
  for (const json& s : report.rehearsal["steps"]) steps.push_back(s["step"]);
  CHECK(steps == expected_steps);
  CHECK(totals.dropped == 0);
  CHECK(totals.out_of_order == 0);
  CHECK(totals.unexpected == 0);
  CHECK(totals.outstanding == 0);
  CHECK(during.connections == kConnections);
  CHECK(after.version == "2.0.0");
  CHECK(after.total == totals.replies);
  return report.rehearsal;
}

}  // namespace

TEST_CASE("rehearsal: a good upgrade passes its rehearsal, then really upgrades under traffic", "[rehearsal]") {
  const json rehearsal = check_good_upgrade(json::object(), {"isolate", "export_before", "load", "migrate", "unload",
                                                             "self_check", "export_after", "round_trip", "round_trip"});
  CHECK(rehearsal["mechanism"] == "fork");
  CHECK(rehearsal["export_ms"] == 0);
  CHECK(rehearsal["sockets_isolated"].get<uint64_t>() >= kConnections);  // the forked copies of the live sockets
}

TEST_CASE("rehearsal, spawned: a good upgrade passes its rehearsal, then really upgrades under traffic",
          "[rehearsal]") {
  const json rehearsal =
      check_good_upgrade(kSpawned, {"setup", "isolate", "export_before", "load", "migrate", "unload", "self_check",
                                    "export_after", "round_trip", "round_trip"});
  CHECK(rehearsal["mechanism"] == "spawn");
  CHECK(rehearsal["export_ms"].get<double>() > 0);
  CHECK(rehearsal["sockets_isolated"] == 0);  // a fresh process: it inherited no socket of the host
}

TEST_CASE("rehearsal: `rehearse` alone changes nothing, and --no-rehearse and runtime.json turn it off", "[rehearsal]") {
  TestRoot root;
  SECTION("rehearse only") {
    add_base(root, rehearsal_runtime());
    RunningHost host(root.dir());
    add_target(root, "good", rehearsal_runtime());
    const LiveView before = look(host);
    std::promise<UpgradeReport> done;
    boost::asio::post(host.runtime().io(), [&] {
      host.runtime().rehearse("2.0.0", {}, [&done](const UpgradeReport& r) { done.set_value(r); });
    });
    const UpgradeReport report = done.get_future().get();
    REQUIRE(report.rehearsal.is_object());
    CHECK(report.rehearsal["outcome"] == "passed");
    CHECK(report.rehearsal["pause_estimate_ms"].get<double>() > 0);
    const LiveView after = look(host);
    CHECK(after.instance == before.instance);
    CHECK(after.version == "1.0.0");
  }
  SECTION("--no-rehearse: the migration that throws runs live and rolls back, unrehearsed") {
    add_base(root, rehearsal_runtime());
    RunningHost host(root.dir());
    add_target(root, "throw", rehearsal_runtime());
    const UpgradeReport report = upgrade(host, "2.0.0", /*rehearse=*/false);
    CHECK(report.outcome == UpgradeReport::Outcome::RolledBack);
    CHECK(report.rehearsal.is_null());
  }
  SECTION("runtime.json rehearse: false") {
    add_base(root, rehearsal_runtime({{"rehearse", false}}));
    RunningHost host(root.dir());
    add_target(root, "throw", rehearsal_runtime({{"rehearse", false}}));
    const UpgradeReport report = upgrade(host, "2.0.0");
    CHECK(report.outcome == UpgradeReport::Outcome::RolledBack);
    CHECK(report.rehearsal.is_null());
  }
}

TEST_CASE("rehearsal: runtime.json rehearse, rehearsal_mechanism and rehearsal_timeout_s are validated",
          "[rehearsal][config]") {
  auto parse = [](const json& doc) {
    return hotswap::host::parse_runtime_config(doc, "runtime.json",
                                               [](const std::string&) { return std::optional<std::string>(); });
  };
  const RuntimeConfig defaults = parse(json::object());
  CHECK(defaults.rehearse);
  CHECK(defaults.rehearsal_timeout == std::chrono::seconds(30));
  const RuntimeConfig set = parse({{"rehearse", false}, {"rehearsal_timeout_s", 2.5}});
  CHECK_FALSE(set.rehearse);
  CHECK(set.rehearsal_timeout == std::chrono::milliseconds(2500));
  CHECK_FALSE(set == defaults);
  CHECK_FALSE(parse({{"rehearse", "false"}}).rehearse);
  CHECK_THROWS_WITH(parse({{"rehearse", 1}}), Catch::Contains("rehearse") && Catch::Contains("true or false"));
  CHECK_THROWS_WITH(parse({{"rehearsal_timeout_s", 0}}), Catch::Contains("rehearsal_timeout_s"));
  CHECK_THROWS_WITH(parse({{"rehearsal_timeout_s", "soon"}}), Catch::Contains("rehearsal_timeout_s"));

  using Mechanism = RuntimeConfig::RehearsalMechanism;
  CHECK(defaults.rehearsal_mechanism == Mechanism::Fork);
  const RuntimeConfig spawned = parse({{"rehearsal_mechanism", "spawn"}});
  CHECK(spawned.rehearsal_mechanism == Mechanism::Spawn);
  CHECK_FALSE(spawned == defaults);
  CHECK(parse({{"rehearsal_mechanism", "fork"}}).rehearsal_mechanism == Mechanism::Fork);
  CHECK_THROWS_WITH(parse({{"rehearsal_mechanism", "thread"}}),
                    Catch::Contains("rehearsal_mechanism") && Catch::Contains("fork") && Catch::Contains("spawn"));
  CHECK_THROWS_WITH(parse({{"rehearsal_mechanism", true}}), Catch::Contains("rehearsal_mechanism"));
}

TEST_CASE("rehearsal: the report names the step a child died in, from its progress lines", "[rehearsal][report]") {
  const std::string lines =
      "{\"begin\":\"isolate\",\"detail\":\"\"}\n{\"end\":\"isolate\",\"ms\":0.1,\"ok\":true,\"error\":\"\"}\n"
      "{\"begin\":\"migrate\",\"detail\":\"step 1 (update counter)\"}\n";
  RehearsalReport crashed;
  hotswap::host::interpret_rehearsal(lines, SIGSEGV, false, crashed);  // a wait status: killed by SIGSEGV
  CHECK(crashed.outcome == RehearsalReport::Outcome::Crashed);
  CHECK(crashed.step == "migrate");
  CHECK_THAT(crashed.error, Catch::Contains("SIGSEGV"));
  REQUIRE(crashed.steps.size() == 2);
  CHECK(crashed.steps[1].detail == "step 1 (update counter)");

  RehearsalReport silent;
  hotswap::host::interpret_rehearsal(lines + "{\"end\":\"migrate\",\"ms\":1,\"ok\":true,\"error\":\"\"}\n", 0, false,
                                     silent);
  CHECK(silent.outcome == RehearsalReport::Outcome::Crashed);
  CHECK_THAT(silent.error, Catch::Contains("without a report") || Catch::Contains("before reporting"));

  RehearsalReport failed;
  hotswap::host::interpret_rehearsal(lines + "{\"result\":{\"ok\":false,\"step\":\"migrate\",\"error\":\"boom\"}}\n", 0,
                                     false, failed);
  CHECK(failed.outcome == RehearsalReport::Outcome::Failed);
  CHECK(failed.error == "boom");
  CHECK(failed.step == "migrate");
}

TEST_CASE("rehearsal: a refusal by the live rehearsal has its own CLI exit status", "[rehearsal][cli]") {
  using hotswap::cli::exit_status_of_reply;
  CHECK(exit_status_of_reply({{"ok", false}, {"code", "rehearsal_failed"}, {"error", "x"}}) ==
        hotswap::cli::kRehearsalFailed);
  CHECK(hotswap::cli::kRehearsalFailed == 65);
  CHECK(exit_status_of_reply({{"ok", false}, {"code", "refused"}, {"error", "x"}}) == hotswap::cli::kFailed);
}

// The fork makes every private page of the live process copy-on-write: each
// page the live side writes afterwards faults once, whether the child still
// runs or not (its write permission is gone until that fault). The report
// counts those faults, from the fork to the reap.
TEST_CASE("rehearsal: the report counts the page faults the live process took while the child ran",
          "[rehearsal][report]") {
  hotswap::host::LibraryLoader loader;
  hotswap::test::RecordingServices services;
  hotswap::host::ModuleRegistry registry{services};
  hotswap::host::UpgradeExecutor executor{registry, loader};
  registry.start(loader.load(hotswap::test::module_file("good", "bigstate", "1.0.0"), {"bigstate", "1.0.0", ""}));

  // Pages of the live process's own, written before the fork (so none is fresh) and after it.
  constexpr size_t kPages = 256;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  void* mapped = ::mmap(nullptr, kPages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(mapped != MAP_FAILED);
  ::madvise(mapped, kPages * page, MADV_NOHUGEPAGE);  // one fault per 4 KiB page, not per 2 MiB
  auto* bytes = static_cast<volatile char*>(mapped);
  for (size_t i = 0; i < kPages; ++i) bytes[i * page] = 1;

  boost::asio::io_context loop;
  hotswap::host::RehearsalInput input;
  input.plan = hotswap::test::plan_of(
      {hotswap::test::step(hotswap::appup::StepKind::LoadModule, "bigstate", "1.0.0", "1.1.0")});
  std::optional<RehearsalReport> report;
  auto rehearsal = hotswap::host::Rehearsal::start(loop, registry, loader, executor, input, std::chrono::minutes(5),
                                                   {}, [&report](const RehearsalReport& r) { report = r; });
  for (size_t i = 0; i < kPages; ++i) bytes[i * page] = 2;  // forked: each write faults once
  loop.run();  // the reap, and the count, come after the writes
  ::munmap(mapped, kPages * page);

  REQUIRE(report);
  INFO(report->summary());
  CHECK(report->passed());
  CHECK(report->live_page_faults >= kPages);
  CHECK(report->to_json()["live_page_faults"] == report->live_page_faults);
  CHECK_THAT(report->summary(), Catch::Contains(std::to_string(report->live_page_faults) + " page faults"));
}

namespace {

// plan_digest of the plan from -> to that the live host would make from the releases under `root`.
std::string plan_digest_in(const TestRoot& root, const std::string& from, const std::string& to) {
  const hotswap::host::ReleaseStore store(root.dir());
  return hotswap::host::plan_digest(
      hotswap::appup::make_plan(hotswap::host::load_release_manifest(store.release_dir(from)),
                                hotswap::host::load_unpacked_release(store, to), hotswap::host::load_appup_of));
}

// A registry of this test process serving bigstate 1.0.0, for rehearsals started by hand.
struct BigStateRegistry {
  hotswap::host::LibraryLoader loader;
  hotswap::test::RecordingServices services;
  hotswap::host::ModuleRegistry registry{services};
  BigStateRegistry() {
    registry.start(loader.load(hotswap::test::module_file("good", "bigstate", "1.0.0"), {"bigstate", "1.0.0", ""}));
  }
  RehearsalReport rehearse_spawned(const hotswap::host::Rehearsal::Spawn& spawn) {
    boost::asio::io_context loop;
    boost::asio::thread_pool spawner{1};
    std::optional<RehearsalReport> report;
    auto rehearsal = hotswap::host::Rehearsal::start_spawned(loop, spawner, registry, spawn, std::chrono::minutes(5),
                                                             {}, [&report](const RehearsalReport& r) { report = r; });
    loop.run();
    REQUIRE(report);
    return *report;
  }
};

}  // namespace

TEST_CASE("rehearsal, spawned: a child that cannot start, or ends without a report, refuses with the reason",
          "[rehearsal][report]") {
  BigStateRegistry live;
  const RehearsalReport missing =
      live.rehearse_spawned({"/nonexistent/hotswap", "/nonexistent-root", "1.0.0", "2.0.0", ""});
  CHECK(missing.outcome == RehearsalReport::Outcome::NotRun);
  CHECK(missing.mechanism == "spawn");
  CHECK_THAT(missing.error, Catch::Contains("could not start /nonexistent/hotswap") &&
                                Catch::Contains("No such file or directory"));

  const RehearsalReport silent = live.rehearse_spawned({"/bin/true", "/nonexistent-root", "1.0.0", "2.0.0", ""});
  CHECK(silent.outcome == RehearsalReport::Outcome::Crashed);
  CHECK_THAT(silent.error, Catch::Contains("exited with status 0 before reporting"));
  CHECK(silent.export_ms > 0);
}

TEST_CASE("rehearsal, spawned: a live module that the running release does not have fails in step setup",
          "[rehearsal][report]") {
  TestRoot root;
  add_base(root, rehearsal_runtime());
  add_target(root, "good", rehearsal_runtime());
  BigStateRegistry live;  // runs bigstate, which release 1.0.0 (counter only) does not have
  const RehearsalReport report =
      live.rehearse_spawned({HOTSWAP_BINARY, root.dir(), "1.0.0", "2.0.0", plan_digest_in(root, "1.0.0", "2.0.0")});
  INFO(report.summary());
  CHECK(report.outcome == RehearsalReport::Outcome::Failed);
  CHECK(report.step == "setup");
  CHECK_THAT(report.error, Catch::Contains("module bigstate 1.0.0, which release 1.0.0 does not have"));

  const RehearsalReport unknown =
      live.rehearse_spawned({HOTSWAP_BINARY, root.dir(), "1.0.0", "9.9.9", std::string(64, '0')});
  CHECK(unknown.outcome == RehearsalReport::Outcome::Failed);
  CHECK(unknown.step == "setup");
  CHECK_THAT(unknown.error, Catch::Contains("9.9.9"));
}

TEST_CASE("rehearsal, spawned: a child whose plan differs from the live host's rehearses nothing and fails in setup",
          "[rehearsal][report]") {
  TestRoot root;
  add_base(root, rehearsal_runtime());
  add_target(root, "good", rehearsal_runtime());
  BigStateRegistry live;
  const std::string other_plan(64, '0');
  const RehearsalReport report = live.rehearse_spawned({HOTSWAP_BINARY, root.dir(), "1.0.0", "2.0.0", other_plan});
  INFO(report.summary());
  CHECK(report.outcome == RehearsalReport::Outcome::Failed);
  CHECK(report.step == "setup");
  CHECK_THAT(report.error, Catch::Contains("the plan 1.0.0 -> 2.0.0 made from the release files now differs") &&
                               Catch::Contains("nothing was rehearsed"));
}

TEST_CASE(
    "rehearsal, spawned: rehearsal-target refuses a command line it was not started with, and a parent that "
    "is not the host it names",
    "[rehearsal]") {
  // The exit status of `hotswap rehearsal-target ARGS`, run by /bin/sh (so
  // the child's parent is the shell, never the pid it is given), with
  // descriptors 3 and 4 open on /dev/null.
  const auto status_of = [](const std::string& args) {
    const std::string command =
        std::string(HOTSWAP_BINARY) + " rehearsal-target " + args + " 3</dev/null 4>/dev/null 2>/dev/null";
    const int status = std::system(command.c_str());
    REQUIRE(WIFEXITED(status));
    return WEXITSTATUS(status);
  };
  const std::string plan(64, '0');
  CHECK(status_of("--root /nonexistent-root --from 1.0.0 --to 2.0.0") == hotswap::cli::kUsage);
  CHECK(status_of("--root /r --from 1.0.0 --to 2.0.0 --plan-sha256 " + plan +
                  " --host-pid 0 --input-fd 3 --report-fd 4") == hotswap::cli::kUsage);
  CHECK(status_of("--root /r --from 1.0.0 --to 2.0.0 --plan-sha256 " + plan +
                  " --host-pid 1 --input-fd 3 --report-fd 3") == hotswap::cli::kUsage);
  // Well formed, but its parent is not pid 1: it takes its host for gone and ends before anything else.
  CHECK(status_of("--root /r --from 1.0.0 --to 2.0.0 --plan-sha256 " + plan +
                  " --host-pid 1 --input-fd 3 --report-fd 4") == hotswap::cli::kFailed);
}

TEST_CASE("rehearsal, spawned: plan_digest changes with any step of the plan", "[rehearsal]") {
  using hotswap::appup::StepKind;
  const auto plan = hotswap::test::plan_of({hotswap::test::step(StepKind::LoadModule, "bigstate", "1.0.0", "1.1.0")});
  auto other = plan;
  other.steps[0].to_version = "1.2.0";
  const std::string digest = hotswap::host::plan_digest(plan);
  CHECK(digest.size() == 64);
  CHECK(digest == hotswap::host::plan_digest(plan));
  CHECK(digest != hotswap::host::plan_digest(other));
}

namespace {

// True when this process has no child left, neither running nor a zombie.
bool no_child_left() {
  int status = 0;
  return ::waitpid(-1, &status, WNOHANG) == -1 && errno == ECHILD;
}

// A spawned rehearsal held while it starts: its spawn queues behind a task
// that holds the single spawner thread until release_and_run().
struct StartingRehearsal {
  BigStateRegistry live;
  boost::asio::io_context loop;
  boost::asio::thread_pool spawner{1};
  std::promise<void> gate;  // destroyed before the spawner: a failed test does not leave its thread waiting

  StartingRehearsal() {
    boost::asio::post(spawner, [opened = gate.get_future().share()] { opened.wait(); });
  }
  // `program` is started as the rehearsal child (by default the real one,
  // which fails its setup at once on this made-up root).
  std::shared_ptr<hotswap::host::Rehearsal> start(hotswap::host::Rehearsal::Done done,
                                                  const std::string& program = HOTSWAP_BINARY) {
    return hotswap::host::Rehearsal::start_spawned(
        loop, spawner, live.registry, {program, "/nonexistent-root", "1.0.0", "2.0.0", std::string(64, '0')},
        std::chrono::minutes(5), {}, std::move(done));
  }
  // Lets the spawn run, then the loop until the spawn has come back to it and no work is left.
  void release_and_run() {
    gate.set_value();
    loop.run();
  }
};

}  // namespace

TEST_CASE("rehearsal, spawned: cancelled while the child is starting, it is killed and reported cancelled",
          "[rehearsal]") {
  StartingRehearsal starting;
  // A child that would never end by itself: only the kill ends it (and so the loop).
  TestRoot dir;
  const boost::filesystem::path never_ends = dir.dir() / "never-ends.sh";
  {
    std::ofstream script(never_ends.string());
    script << "#!/bin/sh\nexec sleep 100000\n";
  }
  boost::filesystem::permissions(never_ends, boost::filesystem::owner_all);
  std::optional<RehearsalReport> report;
  auto rehearsal = starting.start([&report](const RehearsalReport& r) { report = r; }, never_ends.string());
  rehearsal->cancel("the operator cancelled the upgrade");
  starting.release_and_run();
  REQUIRE(report);
  CHECK(report->outcome == RehearsalReport::Outcome::NotRun);
  CHECK(report->error == "the operator cancelled the upgrade");
  CHECK(no_child_left());
}

TEST_CASE("rehearsal, spawned: a child that finds its rehearsal gone when it has started is killed and reaped",
          "[rehearsal]") {
  StartingRehearsal starting;
  bool called = false;
  auto rehearsal = starting.start([&called](const RehearsalReport&) { called = true; });
  rehearsal->abandon();
  rehearsal.reset();
  starting.release_and_run();
  CHECK_FALSE(called);
  CHECK(no_child_left());
}
