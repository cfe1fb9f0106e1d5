// The coordinator's side of a blue-green handover: which upgrades it routes
// to HostCallbacks::hand_over instead of running in place, what it hands over
// (BlueGreenRequest), and how it reports and records the outcome. The handover
// itself is a fake callback here; no module is loaded and no process started.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <optional>

#include "../server/server_fixture.hpp"
#include "release/release_files.hpp"
#include "upgrade/upgrade_coordinator.hpp"

namespace {

namespace asio = boost::asio;
namespace fs = boost::filesystem;
using hotswap::host::BlueGreenRequest;
using hotswap::host::HandoverFigures;
using hotswap::host::UpgradeCoordinator;
using hotswap::host::UpgradeReport;
using hotswap::host::UpgradeRequest;
using hotswap::test::ModuleSpec;
using hotswap::test::TestRoot;
using nlohmann::json;

constexpr std::chrono::seconds kNeverAnswered{10};  // only reached when the code under test never answers

json blue_green_appup() {
  return {{"module", "counter"},
          {"version", "2.0.0"},
          {"up", {{{"from", "1.0.0"}, {"instructions", {{{"op", "blue_green"}, {"reason", "new wire format"}}}}}}},
          {"down", {{{"to", "1.0.0"}, {"instructions", {{{"op", "update"}}}}}}}};
}

void write_host_binary(const TestRoot& root, const std::string& version, const std::string& content) {
  fs::create_directories(root.dir() / "releases" / version / "bin");
  TestRoot::write(root.dir() / "releases" / version / "bin" / "hotswap", content);
}

// A coordinator over a release store, with a fake hand_over the test drives.
class Host {
 public:
  explicit Host(const TestRoot& root, bool with_hand_over = true)
      : store_(root.dir()),
        server_(io_, registry_),
        registry_(server_),
        executor_(registry_, loader_),
        coordinator_(io_, store_, loader_, registry_, executor_, callbacks(with_hand_over)) {}

  // Starts an upgrade from 1.0.0; the report once `done` ran.
  void start(UpgradeRequest request) {
    if (request.version.empty()) request.version = "2.0.0";
    hotswap::host::RunningRelease running;
    running.manifest = hotswap::host::load_release_manifest(store_.release_dir("1.0.0"));
    running.config = hotswap::host::load_runtime_config(store_.runtime_config_path("1.0.0"));
    for (const auto& listener : running.config.listeners) running.listener_owners.insert(listener.module);
    coordinator_.start(
        request, running, [this](const json& event) { events.push_back(event); },
        [this](const UpgradeReport& r) { report = r; });
  }

  // Runs the loop until `condition` holds; false past the deadline.
  template <class Condition>
  bool run_until(Condition condition) {
    const auto deadline = std::chrono::steady_clock::now() + kNeverAnswered;
    while (!condition()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      io_.run_one_for(std::chrono::milliseconds(100));
    }
    return true;
  }

  // Answers the pending hand_over with `figures` and runs the upgrade to its end.
  bool answer(const HandoverFigures& figures) {
    if (!pending_done) return false;
    auto done = std::move(*pending_done);
    pending_done.reset();
    done(figures);
    return run_until([this] { return report.has_value(); });
  }

  const json* event_named(const std::string& name) const {
    for (const json& e : events)
      if (e.value("event", "") == name) return &e;
    return nullptr;
  }

  UpgradeCoordinator& coordinator() { return coordinator_; }
  hotswap::host::ReleaseStore& store() { return store_; }

  std::vector<json> events;
  std::optional<UpgradeReport> report;
  std::optional<BlueGreenRequest> seen;  // what hand_over was asked
  std::optional<std::function<void(const HandoverFigures&)>> pending_done;
  UpgradeCoordinator::State state_during_hand_over = UpgradeCoordinator::State::Idle;

 private:
  UpgradeCoordinator::HostCallbacks callbacks(bool with_hand_over) {
    UpgradeCoordinator::HostCallbacks host;
    host.commit = [this](const auto&, const auto&) { ++in_place_commits_; };
    if (with_hand_over)
      host.hand_over = [this](const BlueGreenRequest& request, const hotswap::host::ProgressListener&,
                              std::function<void(const HandoverFigures&)> done) {
        seen = request;
        state_during_hand_over = coordinator_.state();
        pending_done = std::move(done);
      };
    return host;
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> busy_{io_.get_executor()};
  hotswap::host::ReleaseStore store_;
  hotswap::host::LibraryLoader loader_;
  hotswap::host::NetworkServer server_;
  hotswap::host::ModuleRegistry registry_;
  hotswap::host::UpgradeExecutor executor_;
  int in_place_commits_ = 0;
  UpgradeCoordinator coordinator_;
};

// Releases 1.0.0 and 2.0.0 of the counter; both ship the same bin/hotswap
// unless the test says otherwise.
struct Releases {
  explicit Releases(const json& v2_appup = hotswap::test::counter_v2_appup(),
                    const json& v2_runtime = hotswap::test::counter_runtime()) {
    root.add_release("1.0.0", {{"counter", "1.0.0"}}, hotswap::test::counter_runtime());
    root.add_release("2.0.0", {ModuleSpec{"counter", "2.0.0", "good", v2_appup}}, v2_runtime);
    write_host_binary(root, "1.0.0", "host 1\n");
    write_host_binary(root, "2.0.0", "host 1\n");
  }
  json releases_json() const {
    std::ifstream in((root.dir() / "releases" / "RELEASES.json").string());
    return in ? json::parse(in) : json::object();
  }
  TestRoot root;
};

HandoverFigures committed_figures() {
  HandoverFigures figures;
  figures.connections = 3;
  figures.listeners = 2;
  figures.bytes = 1234;
  figures.duration_ms = 12.5;
  figures.max_stall_ms = 4.25;
  figures.committed = true;
  return figures;
}

}  // namespace

TEST_CASE("upgrade --blue-green hands an in-place upgrade over, and a committed handover is reported with its figures") {
  Releases releases;
  Host host(releases.root);
  UpgradeRequest request;
  request.blue_green = true;
  host.start(request);
  REQUIRE(host.run_until([&] { return host.pending_done.has_value(); }));

  CHECK(host.state_during_hand_over == UpgradeCoordinator::State::HandingOver);
  CHECK(host.coordinator().state() == UpgradeCoordinator::State::HandingOver);
  CHECK(std::string(to_string(host.coordinator().state())) == "handing_over");
  REQUIRE(host.seen);
  CHECK(host.seen->reasons == std::vector<std::string>{"forced (--blue-green)"});
  CHECK(host.seen->target.version == "2.0.0");
  CHECK(host.seen->host_binary == releases.root.dir() / "releases" / "2.0.0" / "bin" / "hotswap");
  REQUIRE(host.seen->plan.steps.size() == 1);
  CHECK(host.seen->plan.steps[0].describe() == "update counter 1.0.0 -> 2.0.0 (extra {\"label\":\"live\"})");
  CHECK(host.seen->target_config.listeners.size() == 2);
  // No rehearsal and no in-place check ran.
  CHECK(host.event_named("rehearsing") == nullptr);
  CHECK(host.event_named("check") == nullptr);
  const json* start = host.event_named("handover");
  REQUIRE(start != nullptr);
  CHECK((*start)["reasons"] == json::array({"forced (--blue-green)"}));

  REQUIRE(host.answer(committed_figures()));
  CHECK(host.report->outcome == UpgradeReport::Outcome::Committed);
  CHECK(host.report->error.empty());
  CHECK(host.report->to_release == "2.0.0");
  const json expected = {{"connections", 3},     {"listeners", 2},  {"bytes", 1234},
                         {"duration_ms", 12.5},  {"max_stall_ms", 4.25}, {"committed", true},
                         {"error", ""},          {"reasons", {"forced (--blue-green)"}}};
  CHECK(host.report->handover == expected);
  CHECK(host.report->to_json()["handover"] == expected);
  CHECK_THAT(host.report->summary(), Catch::Contains("committed by a blue-green handover (3 connection(s) in 12.5 ms"));
  const json* end = host.event_named("handover_end");
  REQUIRE(end != nullptr);
  CHECK((*end)["committed"] == true);
  CHECK((*end)["connections"] == 3);
  CHECK(host.event_named("purged") == nullptr);
  CHECK(host.coordinator().state() == UpgradeCoordinator::State::Idle);
  // Green records its release as current, not this process.
  CHECK(host.store().current() != std::optional<std::string>("2.0.0"));
  CHECK_FALSE(releases.releases_json().contains("failed"));
}

TEST_CASE("an appup blue_green instruction routes the upgrade to a handover, and a failed one is a rollback that marks the "
          "target failed") {
  Releases releases(blue_green_appup());
  Host host(releases.root);
  host.start({});
  REQUIRE(host.run_until([&] { return host.pending_done.has_value(); }));
  REQUIRE(host.seen);
  REQUIRE(host.seen->reasons.size() == 1);
  CHECK(host.seen->reasons[0] ==
        "module counter: " + (releases.root.dir() / "releases" / "2.0.0" / "appups" / "counter-2.0.0.appup.json").string() +
            " up[0].instructions[0] requires a blue-green handover (new wire format)");
  REQUIRE(host.seen->plan.steps.size() == 1);
  CHECK(host.seen->plan.steps[0].kind == hotswap::appup::StepKind::LoadModule);

  HandoverFigures failed;
  failed.connections = 3;
  failed.error = "green exited with status 1 before it was ready";
  REQUIRE(host.answer(failed));
  CHECK(host.report->outcome == UpgradeReport::Outcome::RolledBack);
  CHECK(host.report->error == "green exited with status 1 before it was ready");
  CHECK(host.report->handover["committed"] == false);
  CHECK(host.report->handover["error"] == "green exited with status 1 before it was ready");
  const json recorded = releases.releases_json();
  REQUIRE(recorded.contains("failed"));
  CHECK(recorded["failed"].value("2.0.0", "") == "green exited with status 1 before it was ready");
}

TEST_CASE("a handover that fails without saying why still reports an error") {
  Releases releases(blue_green_appup());
  Host host(releases.root);
  host.start({});
  REQUIRE(host.run_until([&] { return host.pending_done.has_value(); }));
  REQUIRE(host.answer(HandoverFigures{}));
  CHECK(host.report->outcome == UpgradeReport::Outcome::RolledBack);
  CHECK(host.report->error == "the handover failed");
}

TEST_CASE("a plan that needs a handover is refused when the host cannot hand over, and the target is not blamed") {
  Releases releases(blue_green_appup());
  Host host(releases.root, /*with_hand_over=*/false);
  host.start({});
  REQUIRE(host.run_until([&] { return host.report.has_value(); }));
  CHECK(host.report->outcome == UpgradeReport::Outcome::Refused);
  CHECK_THAT(host.report->error, Catch::StartsWith("release 2.0.0 needs a blue-green handover (module counter: ") &&
                                     Catch::EndsWith("(new wire format)), but this host cannot hand over"));
  CHECK(host.report->handover.is_null());
  CHECK_FALSE(releases.releases_json().contains("failed"));
}

TEST_CASE("a listener change, once refused, now goes through a handover") {
  json runtime = hotswap::test::counter_runtime();
  json extra = runtime["listeners"][0];
  extra["name"] = "extra";
  runtime["listeners"].push_back(extra);
  runtime["listeners"][0]["max_frame_bytes"] = 2048;
  runtime["listeners"].erase(1);  // "bin"
  Releases releases(hotswap::test::counter_v2_appup(), runtime);
  Host host(releases.root);
  host.start({});
  REQUIRE(host.run_until([&] { return host.pending_done.has_value(); }));
  REQUIRE(host.seen);
  CHECK(host.seen->reasons ==
        std::vector<std::string>{"the listeners change: the target's runtime config adds extra, removes bin, "
                                 "changes main"});
  REQUIRE(host.answer(committed_figures()));
  CHECK(host.report->committed());
}

TEST_CASE("another host binary in the target release is a reason, and a target without one cannot be handed over") {
  Releases releases;
  write_host_binary(releases.root, "2.0.0", "host 2\n");
  {
    Host host(releases.root);
    host.start({});
    REQUIRE(host.run_until([&] { return host.pending_done.has_value(); }));
    REQUIRE(host.seen);
    REQUIRE(host.seen->reasons.size() == 1);
    const std::string running = hotswap::host::sha256_file("/proc/self/exe");
    const std::string target = hotswap::host::sha256_bytes("host 2\n", 7);
    CHECK(host.seen->reasons[0] ==
          "the host binary changes (sha256 " + running.substr(0, 12) + "... -> " + target.substr(0, 12) + "...)");
    REQUIRE(host.answer(committed_figures()));
  }
  // The running program may itself be the target's binary: then nothing changes.
  CHECK_FALSE(hotswap::host::host_binary_change(releases.root.dir() / "releases" / "1.0.0",
                                                releases.root.dir() / "releases" / "2.0.0",
                                                [] { return hotswap::host::sha256_bytes("host 2\n", 7); }));
  // No bin/hotswap in the target: nothing to compare, and a forced handover is refused.
  fs::remove_all(releases.root.dir() / "releases" / "2.0.0" / "bin");
  CHECK_FALSE(hotswap::host::host_binary_change(releases.root.dir() / "releases" / "1.0.0",
                                                releases.root.dir() / "releases" / "2.0.0",
                                                [] { return std::string(64, '0'); }));
  Host host(releases.root);
  UpgradeRequest forced;
  forced.blue_green = true;
  host.start(forced);
  REQUIRE(host.run_until([&] { return host.report.has_value(); }));
  CHECK_FALSE(host.seen);
  CHECK(host.report->outcome == UpgradeReport::Outcome::Refused);
  CHECK(host.report->error ==
        "release 2.0.0 needs a blue-green handover (forced (--blue-green)), but it has no bin/hotswap to hand over to");
}

TEST_CASE("a module built for a newer module ABI is a reason, read from its file, and needs the target's host") {
  // counter 2.0.0 claims module ABI 99, by its ABI tag as by its descriptor.
  TestRoot root;
  root.add_release("1.0.0", {{"counter", "1.0.0"}}, hotswap::test::counter_runtime());
  root.add_release("2.0.0", {ModuleSpec{"counter", "2.0.0", "abi-too-new", hotswap::test::counter_v2_appup()}},
                   hotswap::test::counter_runtime());
  write_host_binary(root, "1.0.0", "host 1\n");
  write_host_binary(root, "2.0.0", "host 1\n");
  const std::string reason = "module counter 2.0.0 is built for module ABI 99, newer than this host supports (1..1)";
  {
    Host host(root);
    host.start({});
    REQUIRE(host.run_until([&] { return host.pending_done.has_value(); }));
    REQUIRE(host.seen);
    CHECK(host.seen->reasons == std::vector<std::string>{reason});
    // No in-place check loaded it: the host never ran code it cannot run.
    CHECK(host.event_named("check") == nullptr);
    REQUIRE(host.answer(committed_figures()));
    CHECK(host.report->committed());
  }
  // Without a host of its own to hand over to, the upgrade is refused before anything is loaded.
  fs::remove_all(root.dir() / "releases" / "2.0.0" / "bin");
  Host host(root);
  host.start({});
  REQUIRE(host.run_until([&] { return host.report.has_value(); }));
  CHECK_FALSE(host.seen);
  CHECK(host.report->outcome == UpgradeReport::Outcome::Refused);
  CHECK(host.report->error ==
        "release 2.0.0 needs a blue-green handover (" + reason + "), but it has no bin/hotswap to hand over to");

  // Modules at this host's ABI, and modules without a tag, are no reason.
  const fs::path modules = HOTSWAP_TEST_MODULES_DIR;
  hotswap::appup::Plan plan;
  hotswap::appup::PlanStep step;
  step.kind = hotswap::appup::StepKind::LoadModule;
  step.module = "counter";
  step.code = hotswap::appup::ModuleEntry{};
  step.code->file = modules / "good" / "counter-1.1.0.so";
  plan.steps.push_back(step);
  step.code->file = modules / "crashy" / "crashy-1.0.0.so";  // a hand-written descriptor, no tag
  plan.steps.push_back(step);
  step.code->file = modules / "not-a-library" / "counter-2.0.0.so";  // its load reports it
  plan.steps.push_back(step);
  // A FIFO named as a module (a hostile release) neither blocks the planner nor counts.
  const fs::path fifo = root.dir() / "counter-9.9.9.so";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  step.code->file = fifo;
  plan.steps.push_back(step);
  CHECK(hotswap::host::module_abi_changes(plan).empty());
  CHECK_THROWS_WITH(hotswap::host::read_module_abi_tag(fifo), Catch::Contains("is not a regular file"));
}

TEST_CASE("the same host binary in both releases is no reason, whatever program runs") {
  Releases releases;
  CHECK_FALSE(hotswap::host::host_binary_change(releases.root.dir() / "releases" / "1.0.0",
                                                releases.root.dir() / "releases" / "2.0.0",
                                                [] { return std::string(64, '0'); }));
  hotswap::appup::Plan plan;
  hotswap::host::RuntimeConfig config = hotswap::host::load_runtime_config(
      releases.root.dir() / "releases" / "1.0.0" / "runtime.json");
  CHECK(hotswap::host::blue_green_reasons(plan, {"counter"}, config, config).empty());
  // Deleting the module that owns the listeners is a reason of its own.
  hotswap::appup::PlanStep deletion;
  deletion.kind = hotswap::appup::StepKind::DeleteModule;
  deletion.module = "counter";
  plan.steps.push_back(deletion);
  CHECK(hotswap::host::blue_green_reasons(plan, {"counter"}, config, config) ==
        std::vector<std::string>{"module counter is deleted but owns a listener and its connections"});
  CHECK(hotswap::host::blue_green_reasons(plan, {"chat"}, config, config).empty());
}

TEST_CASE("a handover is not rehearsed: `hotswap rehearse` of such a release is refused") {
  Releases releases(blue_green_appup());
  Host host(releases.root);
  UpgradeRequest request;
  request.rehearse_only = true;
  host.start(request);
  REQUIRE(host.run_until([&] { return host.report.has_value(); }));
  CHECK_FALSE(host.seen);
  CHECK(host.report->outcome == UpgradeReport::Outcome::Refused);
  CHECK_THAT(host.report->error, Catch::EndsWith("which is not rehearsed"));
}

TEST_CASE("the live plan lists every reason for a handover: the appup's, a listener change, the host binary") {
  json runtime = hotswap::test::counter_runtime();
  runtime["listeners"].erase(1);  // "bin"
  TestRoot root;  // 2.0.0 unpacked after the boot: a host boots the newest release
  root.add_release("1.0.0", {{"counter", "1.0.0"}}, hotswap::test::counter_runtime());
  hotswap::test::RunningHost host(root.dir());
  root.add_release("2.0.0", {ModuleSpec{"counter", "2.0.0", "good", blue_green_appup()}}, runtime);
  write_host_binary(root, "2.0.0", "host 2\n");
  std::promise<std::pair<std::optional<hotswap::appup::Plan>, std::string>> answered;
  asio::post(host.runtime().io(), [&] {
    host.runtime().plan("2.0.0", [&](const std::optional<hotswap::appup::Plan>& plan, const std::string& error) {
      answered.set_value({plan, error});
    });
  });
  const auto [plan, error] = answered.get_future().get();
  INFO(error);
  REQUIRE(plan);
  REQUIRE(plan->blue_green.size() == 3);
  CHECK_THAT(plan->blue_green[0], Catch::EndsWith("requires a blue-green handover (new wire format)"));
  CHECK(plan->blue_green[1] == "the listeners change: the target's runtime config removes bin");
  CHECK_THAT(plan->blue_green[2], Catch::StartsWith("the host binary changes (sha256 "));
  CHECK_THAT(plan->describe(), Catch::Contains("needs a blue-green handover:\n    - module counter: "));
  CHECK(plan->to_json()["blue_green"].size() == 3);
}
