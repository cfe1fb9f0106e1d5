// The watchdog, driven by hand: a fake clock and check_now(), no thread, no sleeping.
#include <catch2/catch.hpp>
#include <optional>

#include "core/module_call.hpp"
#include "core/watchdog.hpp"
#include "test_support.hpp"

using hotswap::host::CallSite;
using hotswap::host::intern_module_label;
using hotswap::host::ModuleCallScope;
using hotswap::host::Watchdog;
using Verdict = hotswap::host::Watchdog::Verdict;
using namespace std::chrono_literals;

namespace {

// A watchdog on this thread's call record, with a clock the test moves and an
// abort action that only records what it was given.
struct WatchdogFixture {
  hotswap::test::LogCapture log;
  std::chrono::steady_clock::time_point now{};
  int aborts = 0;
  CallSite aborted_on;
  Watchdog watchdog{hotswap::host::this_thread_call_record(), [this] { return now; },
                    [this](const CallSite& site) {
                      ++aborts;
                      aborted_on = site;
                    }};
  const CallSite site{intern_module_label("arena", "1.2.0"), "on_message", true, 9};

  Verdict after(std::chrono::milliseconds elapsed) {
    now += elapsed;
    return watchdog.check_now();
  }
};

}  // namespace

TEST_CASE("the watchdog is idle while the thread is outside module code") {
  WatchdogFixture f;
  CHECK(f.watchdog.check_now() == Verdict::Idle);
  CHECK(f.after(1h) == Verdict::Idle);
  CHECK(f.aborts == 0);
}

TEST_CASE("the watchdog warns once, naming the call, when a callback passes the warning limit") {
  WatchdogFixture f;
  f.watchdog.set_limits({10s, 0ms});
  ModuleCallScope inside(f.site);
  CHECK(f.watchdog.check_now() == Verdict::Running);  // first seen now
  CHECK(f.after(9999ms) == Verdict::Running);
  CHECK(f.after(1ms) == Verdict::Warned);
  CHECK(f.log.count("watchdog: module arena 1.2.0, callback on_message, connection 9 has blocked the event loop for "
                    "10.0 s") == 1);
  CHECK(f.after(1h) == Verdict::Running);  // no abort limit: never aborts, warns only once
  CHECK(f.aborts == 0);
  CHECK(f.log.count("has blocked the event loop") == 1);
}

TEST_CASE("the watchdog aborts once past the abort limit, with the stuck call") {
  WatchdogFixture f;
  f.watchdog.set_limits({10s, 30s});
  ModuleCallScope inside(f.site);
  f.watchdog.check_now();
  CHECK(f.after(10s) == Verdict::Warned);
  CHECK(f.after(19s) == Verdict::Running);
  CHECK(f.aborts == 0);
  CHECK(f.after(1s) == Verdict::Aborted);
  CHECK(f.aborts == 1);
  CHECK(f.aborted_on.module == f.site.module);
  CHECK(std::string(f.aborted_on.callback) == "on_message");
  CHECK(f.aborted_on.conn == 9);
  CHECK(f.log.count("over the abort limit (30.0 s): aborting the process") == 1);
  CHECK(f.after(1s) == Verdict::Running);  // the action is called once per call
  CHECK(f.aborts == 1);
}

TEST_CASE("a new call starts a new count, and a call that returns after a warning is logged") {
  WatchdogFixture f;
  f.watchdog.set_limits({10s, 0ms});
  {
    ModuleCallScope first(f.site);
    f.watchdog.check_now();
    CHECK(f.after(8s) == Verdict::Running);
  }
  {
    ModuleCallScope second(f.site);  // same module and callback, another call
    CHECK(f.after(1s) == Verdict::Running);
    CHECK(f.after(9s) == Verdict::Running);  // 9 s into this call, 18 s since the first
    CHECK(f.after(1s) == Verdict::Warned);
  }
  CHECK(f.after(2s) == Verdict::Idle);
  CHECK(f.log.count("watchdog: module arena 1.2.0, callback on_message, connection 9 returned after 12.0 s") == 1);
}

TEST_CASE("while the host stops, a callback past the stop timeout aborts even with no abort limit") {
  WatchdogFixture f;
  f.watchdog.set_limits({10s, 0ms});
  f.watchdog.stopping(5s);
  ModuleCallScope inside(CallSite{f.site.module, "on_stop", false, 0});
  f.watchdog.check_now();
  CHECK(f.after(4999ms) == Verdict::Running);
  CHECK(f.after(1ms) == Verdict::Aborted);
  CHECK(f.aborts == 1);
  CHECK(std::string(f.aborted_on.callback) == "on_stop");
  CHECK(f.log.count("watchdog: module arena 1.2.0, callback on_stop has not returned within the stop timeout "
                    "(5000 ms)") == 1);
}

TEST_CASE("a stop timeout of 0 does not abort a clean stop: the stop bound is at least one second") {
  WatchdogFixture f;
  f.watchdog.set_limits({10s, 0ms});
  f.watchdog.stopping(0ms);
  ModuleCallScope inside(CallSite{f.site.module, "on_stop", false, 0});
  CHECK(f.watchdog.check_now() == Verdict::Running);
  CHECK(f.after(Watchdog::kMinStopBound - 1ms) == Verdict::Running);
  CHECK(f.aborts == 0);
  CHECK(f.after(1ms) == Verdict::Aborted);
  CHECK(f.aborts == 1);
}

TEST_CASE("limits of 0 turn the warning and the abort off") {
  WatchdogFixture f;
  f.watchdog.set_limits({0ms, 0ms});
  ModuleCallScope inside(f.site);
  f.watchdog.check_now();
  CHECK(f.after(24h) == Verdict::Running);
  CHECK(f.aborts == 0);
}
