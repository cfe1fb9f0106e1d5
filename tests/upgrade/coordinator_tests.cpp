// The hops between the event loop and the worker thread (UpgradeCoordinator),
// as the Runtime uses them: stopping while an upgrade is in its check phase,
// release-store writes that must not stall the loop, and signals during boot.
// Every wait is on a condition the test controls; no sleep decides an outcome.
#include <catch2/catch.hpp>
#include <condition_variable>
#include <csignal>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "../server/server_fixture.hpp"
#include "admin/admin_client.hpp"

namespace {

namespace fs = boost::filesystem;
namespace asio = boost::asio;
using hotswap::host::Runtime;
using hotswap::host::UpgradeReport;
using hotswap::test::TestRoot;

// Generous: only reached when the code under test is wrong (it never answers).
constexpr std::chrono::seconds kDeadline{10};

// A one-way gate: wait() blocks until open().
class Gate {
 public:
  void open() {
    std::lock_guard<std::mutex> lock(mutex_);
    open_ = true;
    changed_.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [this] { return open_; });
  }
  bool wait_for(std::chrono::seconds limit) {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, limit, [this] { return open_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  bool open_ = false;
};

// Installed as the release store's sync hook: once armed, the next write of
// RELEASES.json stops there (the store's mutex held, as during a slow fsync)
// until released.
class Valve {
 public:
  void arm() {
    std::lock_guard<std::mutex> lock(mutex_);
    armed_ = true;
  }
  void pass() {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!armed_) return;
    ++held_;
    changed_.notify_all();
    changed_.wait(lock, [this] { return !armed_; });
  }
  bool wait_until_held(std::chrono::seconds limit) {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, limit, [this] { return held_ > 0; });
  }
  void release() {
    std::lock_guard<std::mutex> lock(mutex_);
    armed_ = false;
    changed_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  bool armed_ = false;
  int held_ = 0;
};

// Runtime::run() on a thread of its own; the test decides when the host stops.
class LoopThread {
 public:
  explicit LoopThread(Runtime& runtime) : runtime_(runtime), thread_([this] { runtime_.run(); }) {}
  ~LoopThread() {
    if (!thread_.joinable()) return;
    asio::post(runtime_.io(), [this] { runtime_.stop(); });
    thread_.join();
  }
  // Returns once Runtime::run() returned, i.e. the host stopped.
  void join() { thread_.join(); }

  // Runs fn on the loop; its result, or nothing when the loop did not run it within `limit`.
  template <class Fn>
  auto on_loop_within(Fn fn, std::chrono::seconds limit) -> std::optional<decltype(fn())> {
    auto result = std::make_shared<std::promise<decltype(fn())>>();
    std::future<decltype(fn())> future = result->get_future();
    asio::post(runtime_.io(), [fn, result] { result->set_value(fn()); });
    if (future.wait_for(limit) != std::future_status::ready) return std::nullopt;
    return future.get();
  }

 private:
  Runtime& runtime_;
  std::thread thread_;
};

// What an upgrade's `done` saw, written on the loop and read by the test
// after the loop thread was joined (or after `finished` opened).
struct UpgradeOutcome {
  std::vector<UpgradeReport> reports;
  Gate finished;
};

// No progress listener: then the worker posts nothing to the loop while it
// checks, and no incidental synchronisation through the loop's queue hides a
// data race from ThreadSanitizer.
void start_upgrade(Runtime& runtime, const std::string& version, UpgradeOutcome& outcome) {
  asio::post(runtime.io(), [&runtime, version, &outcome] {
    hotswap::host::UpgradeRequest request;
    request.version = version;
    runtime.upgrade(request, {}, [&outcome](const UpgradeReport& report) {
      outcome.reports.push_back(report);
      outcome.finished.open();
    });
  });
}

// The names under ROOT/run that start with `prefix`.
std::vector<std::string> run_entries(const fs::path& root, const std::string& prefix) {
  std::vector<std::string> names;
  for (const fs::directory_entry& e : fs::directory_iterator(root / "run")) {
    std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) == 0) names.push_back(name);
  }
  return names;
}

// A root with release 1.0.0 and a Runtime booted from it; then release 2.0.0
// (an upgrade of the counter) is unpacked. Added after the boot, or the first
// boot would pick the newest.
struct BootedRoot {
  TestRoot root;
  std::unique_ptr<Runtime> runtime;
  // `before_boot` runs between the Runtime's construction and its boot.
  explicit BootedRoot(const std::function<void(Runtime&)>& before_boot = {}) {
    root.add_release("1.0.0", {{"counter", "1.0.0"}}, hotswap::test::counter_runtime());
    runtime = std::make_unique<Runtime>(root.dir());
    if (before_boot) before_boot(*runtime);
    runtime->boot();
    root.add_release("2.0.0", {{"counter", "2.0.0", "good", hotswap::test::counter_v2_appup()}},
                     hotswap::test::counter_runtime());
  }
};

}  // namespace

TEST_CASE("stopping while an upgrade is in its check cancels it: one Refused answer, nothing committed") {
  BootedRoot booted;
  Runtime& runtime = *booted.runtime;
  Gate check_started, check_may_go;
  runtime.coordinator().set_check_hook([&] {
    check_started.open();
    check_may_go.wait();
  });
  UpgradeOutcome outcome;
  {
    LoopThread loop(runtime);
    start_upgrade(runtime, "2.0.0", outcome);
    REQUIRE(check_started.wait_for(kDeadline));
    // The check goes on once stop() ran on the loop: from then on the loop
    // tears the host down while the worker checks, unless the two are ordered.
    asio::post(runtime.io(), [&runtime, &check_may_go] {
      runtime.stop();
      check_may_go.open();
    });
    loop.join();  // the host stopped: every hop came back
  }
  REQUIRE(outcome.reports.size() == 1);
  const UpgradeReport& report = outcome.reports.front();
  CHECK(report.outcome == UpgradeReport::Outcome::Refused);
  CHECK(report.error == "the host is stopping");
  CHECK(report.to_release == "2.0.0");
  CHECK(runtime.manifest().version == "1.0.0");
  CHECK(runtime.coordinator().state() == hotswap::host::UpgradeCoordinator::State::Idle);
  // Nothing the cancelled check loaded stays loaded: the only copies left
  // were the running code's, and the stop closed them.
  std::vector<std::string> scratch = run_entries(booted.root.dir(), "hotswap-modules-");
  REQUIRE(scratch.size() == 1);
  CHECK(fs::is_empty(booted.root.dir() / "run" / scratch.front()));
}

TEST_CASE("what is asked once the host stops is answered at once, and nothing reaches the worker") {
  BootedRoot booted;
  Runtime& runtime = *booted.runtime;
  std::vector<UpgradeReport> upgrades;
  std::vector<std::string> errors;
  {
    LoopThread loop(runtime);
    // In the same handler as stop(): after it, the loop may stop at any time.
    asio::post(runtime.io(), [&] {
      runtime.stop();
      hotswap::host::UpgradeRequest request;
      request.version = "2.0.0";
      runtime.upgrade(request, {}, [&](const UpgradeReport& report) { upgrades.push_back(report); });
      auto record = [&](const std::string& error) { errors.push_back(error); };
      runtime.make_permanent("1.0.0", record);
      runtime.remove_release("2.0.0", record);
      runtime.unpack("nowhere.tar.gz", [&](const std::string&, const std::string& error) { record(error); });
      runtime.list_releases([&](const nlohmann::json&, const std::string& error) { record(error); });
    });
    loop.join();
  }
  REQUIRE(upgrades.size() == 1);
  CHECK(upgrades.front().outcome == UpgradeReport::Outcome::Refused);
  CHECK(upgrades.front().error == "the host is stopping");
  CHECK(errors == std::vector<std::string>(4, "the host is stopping"));
  CHECK(runtime.manifest().version == "1.0.0");
  CHECK(fs::exists(booted.root.dir() / "releases" / "2.0.0"));
}

TEST_CASE("status answers while the worker holds the release store in an fsync") {
  Valve valve;
  BootedRoot booted([&valve](Runtime& runtime) { runtime.store().set_sync_hook([&valve] { valve.pass(); }); });
  Runtime& runtime = *booted.runtime;
  runtime.open_admin(hotswap::host::make_admin_handler(runtime));
  LoopThread loop(runtime);
  const fs::path socket = booted.root.dir() / "run" / "admin.sock";
  auto status_answers = [&] { return loop.on_loop_within([&runtime] { return runtime.status(); }, kDeadline); };

  SECTION("while an upgrade records its release as current") {
    valve.arm();
    UpgradeOutcome outcome;
    start_upgrade(runtime, "2.0.0", outcome);
    REQUIRE(valve.wait_until_held(kDeadline));
    std::optional<nlohmann::json> status = status_answers();
    valve.release();
    REQUIRE(status);
    CHECK((*status)["version"] == "2.0.0");  // committed; recording it is what is held
    CHECK((*status)["permanent"] == "1.0.0");
    REQUIRE(outcome.finished.wait_for(kDeadline));
    auto after = status_answers();
    REQUIRE(after);
    CHECK((*after)["last_upgrade"]["outcome"] == "committed");
  }

  SECTION("while make-permanent writes") {
    UpgradeOutcome outcome;
    start_upgrade(runtime, "2.0.0", outcome);
    REQUIRE(outcome.finished.wait_for(kDeadline));
    valve.arm();
    auto reply = std::async(std::launch::async, [&socket] {
      hotswap::host::AdminClient client(socket);
      return client.request({{"cmd", "make-permanent"}, {"version", "2.0.0"}});
    });
    REQUIRE(valve.wait_until_held(kDeadline));
    std::optional<nlohmann::json> status = status_answers();
    valve.release();
    REQUIRE(status);
    CHECK((*status)["permanent"] == "1.0.0");  // the write is not done yet
    nlohmann::json answer = reply.get();
    CHECK(answer["ok"] == true);
    auto after = status_answers();
    REQUIRE(after);
    CHECK((*after)["permanent"] == "2.0.0");
  }

  SECTION("while remove writes") {
    valve.arm();
    auto reply = std::async(std::launch::async, [&socket] {
      hotswap::host::AdminClient client(socket);
      return client.request({{"cmd", "remove"}, {"version", "2.0.0"}});
    });
    REQUIRE(valve.wait_until_held(kDeadline));
    std::optional<nlohmann::json> status = status_answers();
    valve.release();
    CHECK(status.has_value());
    nlohmann::json answer = reply.get();
    CHECK(answer["ok"] == true);
    CHECK_FALSE(fs::exists(booted.root.dir() / "releases" / "2.0.0"));
  }
}

TEST_CASE("SIGTERM or SIGINT during boot stops the host once its loop runs, leaving no socket and no module copy") {
  const int signal = GENERATE(SIGTERM, SIGINT);
  TestRoot root;
  root.add_release("1.0.0", {{"counter", "1.0.0"}}, hotswap::test::counter_runtime());
  const fs::path run = root.dir() / "run";
  {
    Runtime runtime(root.dir());
    REQUIRE(std::raise(signal) == 0);  // before boot: the process must survive it
    runtime.boot();
    runtime.open_admin(hotswap::host::make_admin_handler(runtime));
    CHECK(fs::exists(run / "admin.sock"));
    CHECK(run_entries(root.dir(), "hotswap-modules-").size() == 1);
    runtime.run();  // handles the signal that arrived during boot: a graceful stop
    CHECK(runtime.stopping());
    CHECK_FALSE(fs::exists(run / "admin.sock"));
  }
  CHECK(run_entries(root.dir(), "hotswap-modules-").empty());
}

TEST_CASE("the module copies are removed when boot fails") {
  TestRoot root;
  nlohmann::json runtime_config = hotswap::test::counter_runtime();
  runtime_config["modules"]["ghost"] = nlohmann::json::object();  // not in the release: a ConfigError
  root.add_release("1.0.0", {{"counter", "1.0.0"}}, runtime_config);
  {
    Runtime runtime(root.dir());
    CHECK_THROWS_AS(runtime.boot(), hotswap::host::ConfigError);
  }
  CHECK(run_entries(root.dir(), "hotswap-modules-").empty());
}

// `plan` read appups and matched their version patterns on the loop: a
// backtracking pattern froze every connection for 12 s (issue 8).
TEST_CASE("a plan is made on the worker: the loop serves meanwhile, and the plan comes once the worker is free") {
  BootedRoot booted;
  Runtime& runtime = *booted.runtime;
  Gate worker_held, worker_may_go;
  struct Planned {
    bool plan_returned = false;
    bool answered_inside_call = false;
    std::optional<hotswap::appup::Plan> plan;
    std::string error;
    Gate answered;
  } planned;
  {
    LoopThread loop(runtime);
    asio::post(runtime.io(), [&] {
      runtime.coordinator().run_on_worker(
          [&] {
            worker_held.open();
            worker_may_go.wait();
          },
          [] {});
      runtime.plan("2.0.0", [&planned](const std::optional<hotswap::appup::Plan>& plan, const std::string& error) {
        planned.answered_inside_call = !planned.plan_returned;
        planned.plan = plan;
        planned.error = error;
        planned.answered.open();
      });
      planned.plan_returned = true;
    });
    REQUIRE(worker_held.wait_for(kDeadline));
    // The worker is held, so the plan cannot be made yet; the loop answers all the same.
    const std::optional<bool> pending = loop.on_loop_within(
        [&planned] { return planned.plan_returned && !planned.plan && planned.error.empty(); }, kDeadline);
    worker_may_go.open();
    REQUIRE(pending.has_value());
    CHECK(*pending);
    REQUIRE(planned.answered.wait_for(kDeadline));
  }
  CHECK_FALSE(planned.answered_inside_call);
  CHECK(planned.error.empty());
  REQUIRE(planned.plan.has_value());
  CHECK_THAT(planned.plan->describe(), Catch::Contains("counter 1.0.0 -> 2.0.0"));
}

TEST_CASE("a plan to an unknown release answers with the error, from the worker") {
  BootedRoot booted;
  Runtime& runtime = *booted.runtime;
  std::string error;
  bool has_plan = true;
  {
    LoopThread loop(runtime);
    asio::post(runtime.io(), [&] {
      runtime.plan("9.9.9", [&](const std::optional<hotswap::appup::Plan>& plan, const std::string& message) {
        has_plan = plan.has_value();
        error = message;
        runtime.stop();
      });
    });
    loop.join();
  }
  CHECK_FALSE(has_plan);
  CHECK_THAT(error, Catch::Contains("9.9.9"));
}
