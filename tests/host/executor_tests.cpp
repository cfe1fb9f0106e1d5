#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <catch2/catch.hpp>

#include "test_support.hpp"
#include "upgrade/upgrade_executor.hpp"

using hotswap::appup::Direction;
using hotswap::appup::StepKind;
using hotswap::host::LibraryLoader;
using hotswap::host::ModuleRegistry;
using hotswap::host::ModuleSlot;
using hotswap::host::UpgradeExecutor;
using hotswap::host::UpgradeReport;
using hotswap::test::plan_of;
using hotswap::test::step;

namespace {

// A registry serving counter <version> with some state from two connections.
struct Fixture {
  LibraryLoader loader;
  hotswap::test::RecordingServices services;
  ModuleRegistry registry{services};
  UpgradeExecutor executor{registry, loader};

  explicit Fixture(const std::string& version = "1.0.0") {
    registry.start(loader.load(hotswap::test::module_file("good", "counter", version), {"counter", version, ""}));
    send(1, "add 5");
    send(2, "add 7");
    registry.deliver_tick(counter());
  }
  ModuleSlot& counter() { return *registry.find("counter"); }
  void send(hotswap_conn_id conn, const std::string& message) { registry.deliver_message(counter(), conn, message); }
  std::string ask(hotswap_conn_id conn) {
    send(conn, "get");
    return services.last_to(conn);
  }
  std::string state() { return counter().active().export_state(); }
  std::string version() { return counter().active().version(); }
};

}  // namespace

TEST_CASE("load_module swaps code and hands state over unchanged") {
  Fixture f;
  std::string before = f.state();
  UpgradeReport r = f.executor.run(plan_of({step(StepKind::LoadModule, "counter", "1.0.0", "1.1.0")}));
  INFO(r.summary());
  REQUIRE(r.committed());
  CHECK(f.version() == "1.1.0");
  CHECK(f.state() == before);
  CHECK(f.ask(1) == "v1.1 total=12");
  CHECK(r.pause.count() > 0);
  REQUIRE(r.steps.size() == 1);
  CHECK(r.steps[0].ok);
  CHECK(r.leaked.empty());
  CHECK(f.loader.leaked().empty());
}

TEST_CASE("load_module is refused before pausing when the state schema changes") {
  Fixture f;
  std::string before = f.state();
  UpgradeReport r = f.executor.run(plan_of({step(StepKind::LoadModule, "counter", "1.0.0", "2.0.0")}));
  CHECK(r.outcome == UpgradeReport::Outcome::Refused);
  CHECK_THAT(r.error, Catch::Contains("state schema changes from 1 to 2"));
  CHECK(r.pause.count() == 0);
  CHECK(f.version() == "1.0.0");
  CHECK(f.state() == before);
}

TEST_CASE("update migrates state to a new layout with the appup's extra") {
  Fixture f;
  auto s = step(StepKind::Update, "counter", "1.0.0", "2.0.0");
  s.extra = {{"label", "season-2"}};
  UpgradeReport r = f.executor.run(plan_of({s}));
  INFO(r.summary());
  REQUIRE(r.committed());
  CHECK(f.version() == "2.0.0");
  CHECK(f.counter().active().run_task("label", "null") == "\"season-2\"");
  CHECK(f.ask(1) == "v2 total=12");
}

TEST_CASE("v1 -> v2 -> v3 -> v2 -> v1 round-trips state exactly") {
  Fixture f;
  std::string v1_state = f.state();
  auto up2 = step(StepKind::Update, "counter", "1.0.0", "2.0.0");
  up2.extra = {{"label", "round-trip"}};
  REQUIRE(f.executor.run(plan_of({up2})).committed());
  std::string v2_state = f.state();
  auto up3 = step(StepKind::Update, "counter", "2.0.0", "3.0.0");
  up3.extra = {{"bonus", 3}};
  REQUIRE(f.executor.run(plan_of({up3})).committed());
  CHECK(f.version() == "3.0.0");
  auto down2 = step(StepKind::Update, "counter", "3.0.0", "2.0.0");
  REQUIRE(down2.direction == Direction::Downgrade);
  REQUIRE(f.executor.run(plan_of({down2}, "3", "2")).committed());
  CHECK(f.state() == v2_state);
  auto down1 = step(StepKind::Update, "counter", "2.0.0", "1.0.0");
  REQUIRE(f.executor.run(plan_of({down1}, "2", "1")).committed());
  CHECK(f.version() == "1.0.0");
  CHECK(f.state() == v1_state);
  CHECK(f.ask(2) == "v1 total=12");
  CHECK(f.loader.leaked().empty());
}

TEST_CASE("a migration that throws rolls back and the old version serves with its state") {
  Fixture f;
  std::string before = f.state();
  auto s = step(StepKind::Update, "counter", "1.0.0", "2.0.0");
  s.extra = {{"fail", "throw"}};
  UpgradeReport r = f.executor.run(plan_of({s}));
  CHECK(r.outcome == UpgradeReport::Outcome::RolledBack);
  CHECK_THAT(r.error, Catch::Contains("migration failed on purpose") && Catch::Contains("migrate_up"));
  CHECK(f.version() == "1.0.0");
  CHECK(f.state() == before);
  CHECK_FALSE(f.counter().suspended());
  CHECK(f.ask(1) == "v1 total=12");
}

TEST_CASE("a migration that returns an error rolls back with its message") {
  Fixture f;
  std::string before = f.state();
  UpgradeReport r = f.executor.run(plan_of({step(StepKind::Update, "counter", "1.0.0", "2.0.0", "migrate-error")}));
  CHECK(r.outcome == UpgradeReport::Outcome::RolledBack);
  CHECK_THAT(r.error, Catch::Contains("refusing to migrate from 1.0.0: test module always fails"));
  CHECK(f.state() == before);
  CHECK(f.ask(2) == "v1 total=12");
}

TEST_CASE("a step over its timeout rolls back") {
  Fixture f;
  std::string before = f.state();
  auto s = step(StepKind::Update, "counter", "1.0.0", "2.0.0");
  s.extra = {{"sleep_ms", 30}};
  s.timeout = std::chrono::milliseconds(5);
  UpgradeReport r = f.executor.run(plan_of({s}));
  CHECK(r.outcome == UpgradeReport::Outcome::RolledBack);
  CHECK_THAT(r.error, Catch::Contains("over its timeout of 5 ms"));
  CHECK(f.state() == before);
  CHECK(f.version() == "1.0.0");
}

TEST_CASE("a library that fails to load refuses the upgrade before anything pauses") {
  auto variant = GENERATE(as<std::string>{}, "not-a-library", "no-entry", "unresolved", "abi-too-new", "abi-too-new-untagged",
                          "abi-too-old");
  Fixture f;
  std::string before = f.state();
  UpgradeReport r = f.executor.run(plan_of({step(StepKind::Update, "counter", "1.0.0", "2.0.0", variant)}));
  INFO(variant << ": " << r.error);
  CHECK(r.outcome == UpgradeReport::Outcome::Refused);
  CHECK_THAT(r.error, Catch::Contains(variant));
  CHECK(r.pause.count() == 0);
  CHECK(f.counter().stats().queued_total == 0);
  CHECK(f.state() == before);
}

TEST_CASE("a module file missing from the release refuses the upgrade") {
  Fixture f;
  auto s = step(StepKind::Update, "counter", "1.0.0", "2.0.0");
  s.code->file = "/nonexistent/release/counter-2.0.0.so";
  UpgradeReport r = f.executor.run(plan_of({s}));
  CHECK(r.outcome == UpgradeReport::Outcome::Refused);
  CHECK_THAT(r.error, Catch::Contains("/nonexistent/release/counter-2.0.0.so does not exist"));
}

TEST_CASE("a module that is not running refuses the upgrade") {
  Fixture f;
  auto s = step(StepKind::Apply, "ghost", "", "");
  s.task = "anything";
  UpgradeReport r = f.executor.run(plan_of({s}));
  CHECK(r.outcome == UpgradeReport::Outcome::Refused);
  CHECK_THAT(r.error, Catch::Contains("module ghost is not running"));
}

TEST_CASE("a tampered library (sha256 mismatch) refuses the upgrade and names the file") {
  Fixture f;
  auto s = step(StepKind::LoadModule, "counter", "1.0.0", "1.1.0");
  s.code->sha256 = std::string(64, 'a');
  UpgradeReport r = f.executor.run(plan_of({s}));
  CHECK(r.outcome == UpgradeReport::Outcome::Refused);
  CHECK_THAT(r.error, Catch::Contains(s.code->file.string()) && Catch::Contains("sha256"));
  CHECK(f.version() == "1.0.0");
}

TEST_CASE("apply runs a task at its place in the plan and a failing task rolls back") {
  SECTION("success: the task's effect is part of the migrated state") {
    Fixture f;
    auto task = step(StepKind::Apply, "counter", "1.0.0", "1.1.0");
    task.task = "double";
    UpgradeReport r = f.executor.run(plan_of({task, step(StepKind::LoadModule, "counter", "1.0.0", "1.1.0")}));
    REQUIRE(r.committed());
    CHECK(f.ask(1) == "v1.1 total=24");
  }
  SECTION("failure") {
    Fixture f;
    auto task = step(StepKind::Apply, "counter", "2.0.0", "2.0.0");
    task.task = "fail";
    auto s = step(StepKind::Update, "counter", "1.0.0", "2.0.0");
    UpgradeReport r = f.executor.run(plan_of({s, task}));
    CHECK(r.outcome == UpgradeReport::Outcome::RolledBack);
    // The task ran on the staged 2.0.0 instance, which does not know it.
    CHECK_THAT(r.error, Catch::Contains("unknown task 'fail'"));
    CHECK(f.version() == "1.0.0");
    CHECK(f.ask(1) == "v1 total=12");
  }
}

TEST_CASE("messages queued during a swap are delivered once, in order, to the new version") {
  Fixture f;
  f.executor.set_step_hook([&](size_t) {
    REQUIRE(f.counter().suspended());
    for (int i = 0; i < 100; ++i) f.send(3, "add 1");
    f.registry.deliver_tick(f.counter());
  });
  UpgradeReport r = f.executor.run(plan_of({step(StepKind::Update, "counter", "1.0.0", "2.0.0")}));
  REQUIRE(r.committed());
  CHECK(f.counter().stats().queued_total == 101);
  CHECK(f.counter().queued() == 0);
  std::vector<std::string> replies = f.services.sent_to(3);
  REQUIRE(replies.size() == 100);
  for (int i = 0; i < 100; ++i) CHECK(replies[i] == "v2 total=" + std::to_string(12 + i + 1));
}

TEST_CASE("messages queued during a failed swap go to the old version, in order") {
  Fixture f;
  f.executor.set_step_hook([&](size_t) {
    for (int i = 0; i < 10; ++i) f.send(3, "add 1");
  });
  auto good = step(StepKind::Update, "counter", "1.0.0", "2.0.0");
  auto failing = step(StepKind::Apply, "counter", "", "");
  failing.task = "no-such-task";
  UpgradeReport r = f.executor.run(plan_of({good, failing}));
  REQUIRE(r.outcome == UpgradeReport::Outcome::RolledBack);
  std::vector<std::string> replies = f.services.sent_to(3);
  REQUIRE(replies.size() == 10);
  for (int i = 0; i < 10; ++i) CHECK(replies[i] == "v1 total=" + std::to_string(12 + i + 1));
}

TEST_CASE("add_module starts a module and delete_module stops and unloads it") {
  LibraryLoader loader;
  hotswap::test::RecordingServices services;
  ModuleRegistry registry(services);
  UpgradeExecutor executor(registry, loader);
  UpgradeReport added = executor.run(plan_of({step(StepKind::AddModule, "counter", "", "1.0.0")}));
  REQUIRE(added.committed());
  REQUIRE(registry.find("counter") != nullptr);
  registry.deliver_message(*registry.find("counter"), 1, "add 2");
  CHECK(services.last_to(1) == "v1 total=2");
  UpgradeReport removed = executor.run(plan_of({step(StepKind::DeleteModule, "counter", "1.0.0", "")}));
  REQUIRE(removed.committed());
  CHECK(registry.find("counter") == nullptr);
  CHECK(removed.leaked.empty());
  CHECK(loader.open_count() == 0);
}

TEST_CASE("the report records every step, the pause and the outcome") {
  Fixture f;
  std::vector<std::string> events;
  UpgradeReport r = f.executor.run(plan_of({step(StepKind::LoadModule, "counter", "1.0.0", "1.1.0")}),
                                   [&](const nlohmann::json& e) { events.push_back(e["event"]); });
  REQUIRE(r.committed());
  CHECK(events == std::vector<std::string>{"check", "loaded", "paused", "step", "committed", "purged"});
  nlohmann::json j = r.to_json();
  CHECK(j["outcome"] == "committed");
  CHECK(j["steps"].size() == 1);
  CHECK(j["pause_us"].get<double>() > 0);
  CHECK_THAT(r.summary(), Catch::Contains("committed, pause"));
}

TEST_CASE("sends made during a migration are held until commit and dropped on rollback") {
  SECTION("commit") {
    Fixture f;
    auto s = step(StepKind::Update, "counter", "1.0.0", "2.0.0");
    s.extra = {{"announce", 9}};
    REQUIRE(f.executor.run(plan_of({s})).committed());
    CHECK(f.services.sent_to(9) == std::vector<std::string>{"v2 migrated"});
  }
  SECTION("rollback") {
    Fixture f;
    auto s = step(StepKind::Update, "counter", "1.0.0", "2.0.0");
    s.extra = {{"announce", 9}, {"fail", "throw"}};
    REQUIRE(f.executor.run(plan_of({s})).outcome == UpgradeReport::Outcome::RolledBack);
    CHECK(f.services.sent_to(9).empty());
  }
}

TEST_CASE("a timer belongs to the module slot and fires into the version serving when it expires") {
  Fixture f;
  f.send(4, "timer 50");
  REQUIRE(f.services.timers.size() == 1);
  hotswap_timer_id id = f.services.timers.begin()->first;
  CHECK(f.counter().timers().count(id) == 1);
  REQUIRE(f.executor.run(plan_of({step(StepKind::Update, "counter", "1.0.0", "2.0.0")})).committed());
  CHECK(f.services.timers.count(id) == 1);  // not cancelled by the swap
  f.registry.deliver_timer(f.counter(), id, f.services.timers[id].tag, /*last=*/true);
  CHECK(f.services.last_to(4) == "v2 timer fired");
  CHECK(f.counter().timers().empty());
}

TEST_CASE("a module failing on every message is counted each time but logged sparingly") {
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(100);
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink));
  {
    Fixture f;
    for (int i = 0; i < 2000; ++i) f.send(1, "not a request");
    CHECK(f.counter().stats().failed_events == 2000);
    CHECK(f.ask(1) == "v1 total=12");  // still serving
  }
  std::vector<std::string> lines = sink->last_formatted();
  spdlog::set_default_logger(previous);
  size_t failures_logged = 0;
  for (const auto& line : lines)
    if (line.find("on_message failed") != std::string::npos) ++failures_logged;
  CHECK(failures_logged == 12);  // the first ten, the 1000th and the 2000th
}

// --- issue 7, defect 1: an appup `apply` runs on a staged copy of the live instance ---

namespace {

hotswap::appup::PlanStep task_step(const std::string& task, nlohmann::json args = nullptr) {
  auto s = step(StepKind::Apply, "counter", "", "");
  s.task = task;
  s.task_args = std::move(args);
  return s;
}

hotswap::appup::PlanStep failing_update() {
  auto s = step(StepKind::Update, "counter", "1.0.0", "2.0.0");
  s.extra = {{"fail", "throw"}};
  return s;
}

}  // namespace

TEST_CASE("an apply step is rolled back with the plan: the live state stays byte-for-byte as it was") {
  Fixture f;
  std::string before = f.state();
  UpgradeReport r;
  SECTION("apply, then a failing update") {
    r = f.executor.run(plan_of({task_step("double"), failing_update()}));
    CHECK_THAT(r.error, Catch::Contains("migration failed on purpose"));
  }
  SECTION("apply, then a failing apply") {
    r = f.executor.run(plan_of({task_step("double"), task_step("fail")}));
    CHECK_THAT(r.error, Catch::Contains("task failed on purpose"));
  }
  SECTION("load_module, apply, then a failing update") {
    r = f.executor.run(
        plan_of({step(StepKind::LoadModule, "counter", "1.0.0", "1.1.0"), task_step("double"), failing_update()}));
  }
  SECTION("a failing update, then apply") {
    r = f.executor.run(plan_of({failing_update(), task_step("double")}));
    CHECK(r.steps.size() == 1);  // the plan stops at the failure
  }
  INFO(r.summary());
  CHECK(r.outcome == UpgradeReport::Outcome::RolledBack);
  CHECK(f.version() == "1.0.0");
  CHECK(f.state() == before);
  CHECK(f.ask(1) == "v1 total=12");
  CHECK(f.loader.leaked().empty());
}

TEST_CASE("an apply step alone commits its changes, and the slot keeps its timers") {
  Fixture f;
  f.send(4, "timer 50");
  REQUIRE(f.services.timers.size() == 1);
  hotswap_timer_id id = f.services.timers.begin()->first;
  UpgradeReport r = f.executor.run(plan_of({task_step("double")}));
  INFO(r.summary());
  REQUIRE(r.committed());
  CHECK(f.version() == "1.0.0");
  CHECK(f.ask(1) == "v1 total=24");
  CHECK(f.services.timers.count(id) == 1);
  f.registry.deliver_timer(f.counter(), id, f.services.timers[id].tag, /*last=*/true);
  CHECK(f.services.last_to(4) == "v1 timer fired");
  CHECK(r.leaked.empty());
  CHECK(f.loader.leaked().empty());  // the copy shares the live library, which stays loaded
}

TEST_CASE("sends of an apply task are held like a migration's: delivered on commit only") {
  Fixture f;
  size_t announced_during_pause = 0;
  f.executor.set_step_hook([&](size_t) { announced_during_pause += f.services.sent_to(9).size(); });
  SECTION("commit") {
    UpgradeReport r = f.executor.run(plan_of({task_step("announce", 9)}));
    REQUIRE(r.committed());
    CHECK(f.services.sent_to(9) == std::vector<std::string>{"v1 announced"});
  }
  SECTION("commit, with a later step replacing the task's copy") {
    UpgradeReport r =
        f.executor.run(plan_of({task_step("announce", 9), step(StepKind::LoadModule, "counter", "1.0.0", "1.1.0")}));
    REQUIRE(r.committed());
    CHECK(f.version() == "1.1.0");
    CHECK(f.services.sent_to(9) == std::vector<std::string>{"v1 announced"});
  }
  SECTION("rollback") {
    UpgradeReport r = f.executor.run(plan_of({task_step("announce", 9), failing_update()}));
    REQUIRE(r.outcome == UpgradeReport::Outcome::RolledBack);
    CHECK(f.services.sent_to(9).empty());
  }
  CHECK(announced_during_pause == 0);
}

// --- issue 7, defect 2: a retired or removed instance is detached before destroy() ---

namespace {

// What raii's destroy() logs when every host function it calls is a detached no-op.
constexpr const char* kDetachedAnswers =
    "destroy: send=4 close=4 broadcast=4 timer_start=4 timer_cancel=4 monotonic=ok";

// raii 1.0.0 serving, with a repeating timer armed by connection 7.
struct RaiiFixture {
  hotswap::test::LogCapture log;
  LibraryLoader loader;
  hotswap::test::RecordingServices services;
  std::unique_ptr<ModuleRegistry> registry = std::make_unique<ModuleRegistry>(services);
  UpgradeExecutor executor{*registry, loader};
  hotswap_timer_id timer = 0;

  RaiiFixture() {
    registry->start(loader.load(hotswap::test::module_file("good", "raii", "1.0.0"), {"raii", "1.0.0", ""}));
    registry->deliver_message(raii(), 7, "arm 100");
    REQUIRE(services.last_to(7) == "v1 armed");
    REQUIRE(services.timers.size() == 1);
    timer = services.timers.begin()->first;
  }
  ModuleSlot& raii() { return *registry->find("raii"); }
  // Whether a destroy() reached the outside world.
  bool destroy_reached_out() const {
    for (const std::string& m : services.sent_to(7))
      if (m.find("destroyed") != std::string::npos) return true;
    return !services.closed.empty();
  }
};

}  // namespace

TEST_CASE("destroy() after delete_module reaches nothing: host functions return NOT_FOUND") {
  RaiiFixture f;
  UpgradeReport r = f.executor.run(plan_of({step(StepKind::DeleteModule, "raii", "1.0.0", "")}));
  INFO(r.summary());
  REQUIRE(r.committed());
  CHECK(f.registry->find("raii") == nullptr);
  CHECK(f.services.timers.empty());  // the host cancelled the module's timer itself
  CHECK_FALSE(f.destroy_reached_out());
  CHECK(f.log.count(kDetachedAnswers) == 1);
}

TEST_CASE("destroy() during stop_all and in the registry's destructor reaches nothing") {
  RaiiFixture f;
  SECTION("stop_all") {
    f.registry->stop_all();
    CHECK(f.registry->find("raii") == nullptr);
    CHECK(f.services.timers.empty());
  }
  SECTION("~ModuleRegistry") { f.registry.reset(); }
  CHECK_FALSE(f.destroy_reached_out());
  CHECK(f.log.count(kDetachedAnswers) == 1);
}

TEST_CASE("the retired version's destroy() cannot cancel the timer the new version inherited") {
  StepKind kind = GENERATE(StepKind::LoadModule, StepKind::Update);
  RaiiFixture f;
  UpgradeReport r = f.executor.run(plan_of({step(kind, "raii", "1.0.0", "1.1.0")}));
  INFO(r.summary());
  REQUIRE(r.committed());
  CHECK(f.raii().active().version() == "1.1.0");
  CHECK(f.log.count(kDetachedAnswers) == 1);
  CHECK_FALSE(f.destroy_reached_out());
  // Still armed, still the only one, and it fires into the new version.
  REQUIRE(f.services.timers.size() == 1);
  CHECK(f.services.timers.count(f.timer) == 1);
  CHECK(f.raii().timers().count(f.timer) == 1);
  f.registry->deliver_timer(f.raii(), f.timer, 0, /*last=*/false);
  CHECK(f.services.last_to(7) == "v1.1 tick");
}

TEST_CASE("a rolled-back staged instance's destroy() reaches nothing") {
  RaiiFixture f;
  auto unknown_task = step(StepKind::Apply, "raii", "", "");
  unknown_task.task = "no-such-task";
  UpgradeReport r = f.executor.run(plan_of({step(StepKind::LoadModule, "raii", "1.0.0", "1.1.0"), unknown_task}));
  REQUIRE(r.outcome == UpgradeReport::Outcome::RolledBack);
  CHECK(f.raii().active().version() == "1.0.0");
  // The staged 1.1.0 (the task ran on it) was destroyed, detached.
  CHECK(f.log.count(kDetachedAnswers) == 1);
  CHECK_FALSE(f.destroy_reached_out());
  CHECK(f.services.timers.count(f.timer) == 1);
}

// --- issue 7, defect 5: an exception thrown across the C ABI never unwinds through the host ---

TEST_CASE("a migration that throws a C++ exception across the C ABI rolls back with that message") {
  Fixture f;
  std::string before = f.state();
  UpgradeReport r = f.executor.run(plan_of({step(StepKind::Update, "counter", "1.0.0", "2.0.0", "throws")}));
  INFO(r.summary());
  CHECK(r.outcome == UpgradeReport::Outcome::RolledBack);
  CHECK_THAT(r.error, Catch::Contains("migrate_up failed: threw a C++ exception across the C ABI"));
  CHECK(f.version() == "1.0.0");
  CHECK(f.state() == before);
  CHECK(f.ask(1) == "v1 total=12");
}

TEST_CASE("a data-path callback that throws across the C ABI counts as failed and the host serves on") {
  hotswap::test::LogCapture log;
  LibraryLoader loader;
  hotswap::test::RecordingServices services;
  ModuleRegistry registry(services);
  ModuleSlot& slot = registry.start(
      loader.load(hotswap::test::module_file("throws", "counter", "2.0.0"), {"counter", "2.0.0", ""}));
  registry.deliver_message(slot, 1, "add 1");
  registry.deliver_tick(slot);
  CHECK(slot.stats().failed_events == 2);
  CHECK(slot.stats().events == 2);
  CHECK(log.count("on_message failed (status 1): threw a C++ exception across the C ABI") == 1);
  CHECK(log.count("on_tick failed (status 1): threw a C++ exception across the C ABI") == 1);
  CHECK_THROWS_WITH(slot.active().run_task("anything", "null"),
                    Catch::Contains("run_task 'anything' failed: threw a C++ exception across the C ABI"));
  registry.deliver_message(slot, 1, "add 1");  // still dispatching
  CHECK(slot.stats().failed_events == 3);
}
