// The module ABI at its edges: host tables shorter than the module's header,
// descriptors longer than the host's, and the statuses of host functions.

// module.hpp is meant for modules, which get their name from the build.
#define HOTSWAP_MODULE_NAME "abi_test"
#define HOTSWAP_MODULE_VERSION "0.0.0"
#include <hotswap/module.hpp>

#include <catch2/catch.hpp>
#include <functional>
#include <new>
#include <stdexcept>

#include "test_support.hpp"
#include "upgrade/upgrade_executor.hpp"

using hotswap::appup::StepKind;
using hotswap::host::host_api_table;
using hotswap::host::LibraryLoader;
using hotswap::host::ModuleRegistry;
using hotswap::host::ModuleSlot;
using hotswap::host::UpgradeExecutor;
using hotswap::test::module_file;
using hotswap::test::plan_of;
using hotswap::test::step;

namespace {

int trapped_calls = 0;

void trap_log(hotswap_host_ctx*, hotswap_log_level, const char*) { ++trapped_calls; }
hotswap_status trap_send(hotswap_host_ctx*, hotswap_conn_id, const void*, size_t) {
  ++trapped_calls;
  return HOTSWAP_OK;
}
hotswap_status trap_broadcast(hotswap_host_ctx*, const hotswap_conn_id*, size_t, const void*, size_t) {
  ++trapped_calls;
  return HOTSWAP_OK;
}
hotswap_status trap_close(hotswap_host_ctx*, hotswap_conn_id, const char*) {
  ++trapped_calls;
  return HOTSWAP_OK;
}
hotswap_status trap_timer_start(hotswap_host_ctx*, uint64_t, uint64_t, uint64_t, hotswap_timer_id* id) {
  ++trapped_calls;
  *id = 1;
  return HOTSWAP_OK;
}
hotswap_status trap_timer_cancel(hotswap_host_ctx*, hotswap_timer_id) {
  ++trapped_calls;
  return HOTSWAP_OK;
}
uint64_t trap_monotonic_ms(hotswap_host_ctx*) {
  ++trapped_calls;
  return 1;
}

// A copy of the host table as an older host would have it: only the functions
// before `first_missing`. The fields past its struct_size hold traps, so that
// a caller that ignores struct_size is caught.
hotswap_host_api truncated_table(size_t first_missing) {
  hotswap_host_api table = host_api_table();
  table.struct_size = static_cast<uint32_t>(first_missing);
  if (first_missing <= offsetof(hotswap_host_api, log)) table.log = trap_log;
  if (first_missing <= offsetof(hotswap_host_api, send)) table.send = trap_send;
  if (first_missing <= offsetof(hotswap_host_api, broadcast)) table.broadcast = trap_broadcast;
  if (first_missing <= offsetof(hotswap_host_api, close)) table.close = trap_close;
  if (first_missing <= offsetof(hotswap_host_api, timer_start)) table.timer_start = trap_timer_start;
  if (first_missing <= offsetof(hotswap_host_api, timer_cancel)) table.timer_cancel = trap_timer_cancel;
  if (first_missing <= offsetof(hotswap_host_api, monotonic_ms)) table.monotonic_ms = trap_monotonic_ms;
  return table;
}

}  // namespace

TEST_CASE("HOTSWAP_HOST_HAS says whether the host's table covers a function") {
  const hotswap_host_api* full = &host_api_table();
  CHECK(HOTSWAP_HOST_HAS(full, log));
  CHECK(HOTSWAP_HOST_HAS(full, buffer_append));
  CHECK(HOTSWAP_HOST_HAS(full, send));
  CHECK(HOTSWAP_HOST_HAS(full, monotonic_ms));
  hotswap_host_api older = truncated_table(offsetof(hotswap_host_api, send));
  CHECK(HOTSWAP_HOST_HAS(&older, log));
  CHECK(HOTSWAP_HOST_HAS(&older, buffer_append));
  CHECK_FALSE(HOTSWAP_HOST_HAS(&older, send));
  CHECK_FALSE(HOTSWAP_HOST_HAS(&older, monotonic_ms));
  // A size that covers half a field does not count.
  older.struct_size = static_cast<uint32_t>(offsetof(hotswap_host_api, send) + 4);
  CHECK_FALSE(HOTSWAP_HOST_HAS(&older, send));
  const hotswap_host_api* none = nullptr;
  CHECK_FALSE(HOTSWAP_HOST_HAS(none, log));
}

TEST_CASE("the C++ layer never calls a host function that a shorter host table lacks") {
  trapped_calls = 0;
  // The oldest useful host: nothing after buffer_append.
  hotswap_host_api older = truncated_table(offsetof(hotswap_host_api, send));
  hotswap::Host host(&older, nullptr);
  CHECK_FALSE(host.send(1, "hello"));
  host.broadcast({1, 2}, "hello");
  CHECK_FALSE(host.close(1, "bye"));
  CHECK_THROWS_WITH(host.start_timer(10, 0, 0), Catch::Contains("timer_start"));
  CHECK_FALSE(host.cancel_timer(1));
  CHECK(host.monotonic_ms() > 0);  // the module's own clock
  CHECK(trapped_calls == 0);

  // A table without even log: logging is a no-op.
  hotswap_host_api oldest = truncated_table(offsetof(hotswap_host_api, log));
  hotswap::Host bare(&oldest, nullptr);
  bare.info("nobody hears this");
  CHECK(trapped_calls == 0);
  // Nor buffer_append: exporting state fails cleanly instead of calling past the table.
  CHECK_THROWS_AS(hotswap::StateWriter(&oldest, nullptr), hotswap::StateError);
}

TEST_CASE("a module built against a newer header (a longer descriptor) loads and serves") {
  LibraryLoader loader;
  auto library = loader.load(module_file("newer-header", "counter", "2.0.0"), {"counter", "2.0.0", ""});
  CHECK(library->descriptor().struct_size > sizeof(hotswap_module_descriptor));
  CHECK(library->descriptor().create != nullptr);

  hotswap::test::RecordingServices services;
  ModuleRegistry registry(services);
  UpgradeExecutor executor(registry, loader);
  registry.start(loader.load(module_file("good", "counter", "1.0.0"), {"counter", "1.0.0", ""}));
  auto report = executor.run(plan_of({step(StepKind::Update, "counter", "1.0.0", "2.0.0", "newer-header")}));
  INFO(report.summary());
  CHECK(report.committed());
  CHECK(registry.find("counter")->active().version() == "2.0.0");
}

// --- issue 7, defect 6: a host function reports a limit only when it is one ---

namespace {

// Services whose send, close and timers throw what `thrower` throws.
class ThrowingServices : public hotswap::test::RecordingServices {
 public:
  std::function<void()> thrower;
  hotswap_status send(std::string_view, hotswap_conn_id, std::string_view) override {
    thrower();
    return HOTSWAP_OK;
  }
  hotswap_status close(std::string_view, hotswap_conn_id, std::string_view) override {
    thrower();
    return HOTSWAP_OK;
  }
  void schedule_timer(ModuleSlot&, hotswap_timer_id, uint64_t, uint64_t, uint64_t) override { thrower(); }
};

}  // namespace

TEST_CASE("a host function that fails reports HOTSWAP_LIMIT for an allocation failure and HOTSWAP_ERROR otherwise") {
  LibraryLoader loader;
  ThrowingServices services;
  ModuleRegistry registry(services);
  ModuleSlot& slot = registry.start(loader.load(module_file("good", "counter", "1.0.0"), {"counter", "1.0.0", ""}));
  hotswap_host_ctx* ctx = &slot.active().context();
  const hotswap_host_api& api = host_api_table();
  hotswap_timer_id timer = 0;

  auto [thrown, expected] = GENERATE(table<std::string, hotswap_status>({
      {"bad_alloc", HOTSWAP_LIMIT},
      {"length_error", HOTSWAP_LIMIT},
      {"runtime_error", HOTSWAP_ERROR},
      {"int", HOTSWAP_ERROR},
  }));
  services.thrower = [thrown = thrown] {
    if (thrown == "bad_alloc") throw std::bad_alloc();
    if (thrown == "length_error") throw std::length_error("too long");
    if (thrown == "runtime_error") throw std::runtime_error("the network layer failed");
    throw 42;
  };
  INFO("services throw " << thrown);
  CHECK(api.send(ctx, 1, "x", 1) == expected);
  CHECK(api.close(ctx, 1, "bye") == expected);
  CHECK(api.timer_start(ctx, 10, 0, 0, &timer) == expected);
  CHECK(slot.timers().empty());  // a timer that was not armed is not the slot's
}
