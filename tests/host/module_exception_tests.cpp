// Issue 8, "Misbehaving modules at run time": an exception that is not a
// std::exception (`throw 42`), thrown by a module's code, never reaches
// std::terminate, whether the module uses the C ABI alone or the C++ SDK.
#include <catch2/catch.hpp>

#include "test_support.hpp"
#include "upgrade/upgrade_executor.hpp"

using hotswap::appup::StepKind;
using hotswap::host::LibraryLoader;
using hotswap::host::ModuleCallError;
using hotswap::host::ModuleRegistry;
using hotswap::host::ModuleSlot;
using hotswap::host::UpgradeExecutor;
using hotswap::host::UpgradeReport;
using hotswap::test::plan_of;
using hotswap::test::step;

namespace {

constexpr const char kSdkNotStd[] = "threw an exception that is not a std::exception";
constexpr const char kAcrossAbi[] = "threw a C++ exception across the C ABI";

// counter 1.0.0 with some state, ready to be upgraded.
struct Serving {
  LibraryLoader loader;
  hotswap::test::RecordingServices services;
  ModuleRegistry registry{services};
  UpgradeExecutor executor{registry, loader};

  Serving() {
    registry.start(loader.load(hotswap::test::module_file("good", "counter", "1.0.0"), {"counter", "1.0.0", ""}));
    registry.deliver_message(counter(), 1, "add 5");
  }
  ModuleSlot& counter() { return *registry.find("counter"); }
  std::string ask() {
    registry.deliver_message(counter(), 1, "get");
    return services.last_to(1);
  }
};

// Delivers one event of each data-path kind.
void deliver_every_event(ModuleRegistry& registry, ModuleSlot& slot) {
  registry.deliver_connect(slot, 7, "main", "127.0.0.1:1");
  registry.deliver_message(slot, 7, "add 1");
  registry.deliver_tick(slot);
  registry.deliver_timer(slot, 99, 5, true);
  registry.deliver_disconnect(slot, 7, HOTSWAP_DISCONNECT_PEER_CLOSED);
}

}  // namespace

TEST_CASE("a migration into SDK code that throws an int rolls back with a clear error") {
  hotswap::test::LogCapture log;
  Serving f;
  const std::string before = f.counter().active().export_state();
  // The staged instance is destroyed on rollback; its destructor throws too.
  UpgradeReport r = f.executor.run(plan_of({step(StepKind::Update, "counter", "1.0.0", "2.0.0", "throws-sdk")}));
  INFO(r.summary());
  CHECK(r.outcome == UpgradeReport::Outcome::RolledBack);
  CHECK_THAT(r.error, Catch::Contains(std::string("migrate_up failed: ") + kSdkNotStd));
  CHECK(f.counter().active().version() == "1.0.0");
  CHECK(f.counter().active().export_state() == before);
  CHECK(f.ask() == "v1 total=5");
  CHECK(log.count("destroy: the destructor threw an exception; it was ignored") == 1);
}

TEST_CASE("SDK handlers that throw an int are counted and logged on the data path, errors on the control path") {
  hotswap::test::LogCapture log;
  LibraryLoader loader;
  hotswap::test::RecordingServices services;
  {
    ModuleRegistry registry(services);
    ModuleSlot& slot = registry.start(
        loader.load(hotswap::test::module_file("throws-sdk", "counter", "2.0.0"), {"counter", "2.0.0", ""}));
    deliver_every_event(registry, slot);
    CHECK(slot.stats().events == 5);
    CHECK(slot.stats().failed_events == 5);
    for (const char* callback : {"on_connect", "on_message", "on_tick", "on_timer", "on_disconnect"})
      CHECK(log.count(std::string(callback) + " failed (status 1): " + kSdkNotStd) == 1);
    for (const auto& call : std::vector<std::function<void()>>{
             [&] { slot.active().export_state(); }, [&] { slot.active().config_changed("{}"); },
             [&] { slot.active().run_task("anything", "null"); }, [&] { slot.active().stop(); },
             [&] { slot.active().migrate_down("1.0.0", 1, "null"); }})
      CHECK_THROWS_WITH(call(), Catch::Contains(kSdkNotStd));
    registry.deliver_message(slot, 7, "add 1");  // still dispatching
    CHECK(slot.stats().failed_events == 6);
  }  // destroy(): the destructor throws
  CHECK(log.count("destroy: the destructor threw an exception; it was ignored") == 1);
}

TEST_CASE("C-ABI callbacks that throw an int, destroy included, never reach std::terminate") {
  hotswap::test::LogCapture log;
  LibraryLoader loader;
  hotswap::test::RecordingServices services;
  {
    ModuleRegistry registry(services);
    ModuleSlot& slot = registry.start(
        loader.load(hotswap::test::module_file("throws-all", "counter", "2.0.0"), {"counter", "2.0.0", ""}));
    deliver_every_event(registry, slot);
    CHECK(slot.stats().failed_events == 5);
    for (const char* callback : {"on_connect", "on_message", "on_tick", "on_timer", "on_disconnect"})
      CHECK(log.count(std::string(callback) + " failed (status 1): " + kAcrossAbi) == 1);
    CHECK_THROWS_AS(slot.active().export_state(), ModuleCallError);
    CHECK_THROWS_AS(slot.active().import_state(2, "x"), ModuleCallError);
    CHECK_THROWS_AS(slot.active().config_changed("{}"), ModuleCallError);
    CHECK_THROWS_AS(slot.active().stop(), ModuleCallError);
    CHECK_THROWS_WITH(slot.active().migrate_down("1.0.0", 1, "null"),
                      Catch::Contains(std::string("migrate_down failed: ") + kAcrossAbi));
    registry.notify_stop();  // logs instead of throwing
    CHECK(log.count(std::string("on_stop failed: ") + kAcrossAbi) == 1);
  }  // destroy() throws
  CHECK(log.count(std::string("destroy ") + kAcrossAbi) == 1);
}
