// ManualTimerSource: the clock the server tests drive. Its order and
// cancellation rules are what make those tests deterministic.
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "net/timer_source.hpp"

using hotswap::host::ManualTimerSource;
using hotswap::host::TimerSource;
using std::chrono::milliseconds;

TEST_CASE("a manual clock fires due alarms in order of due time, then of scheduling, each at its due time") {
  ManualTimerSource clock;
  const auto start = clock.now();
  std::vector<std::string> fired;
  auto record = [&](std::string name) {
    return [&, name] { fired.push_back(name + "@" + std::to_string((clock.now() - start) / milliseconds(1))); };
  };
  auto c = clock.schedule(start + milliseconds(30), record("c"));
  auto a = clock.schedule(start + milliseconds(10), record("a"));
  auto b1 = clock.schedule(start + milliseconds(20), record("b1"));
  auto b2 = clock.schedule(start + milliseconds(20), record("b2"));
  clock.advance_ms(19);
  CHECK(fired == std::vector<std::string>{"a@10"});
  CHECK(clock.now() == start + milliseconds(19));
  clock.advance_ms(11);
  CHECK(fired == std::vector<std::string>{"a@10", "b1@20", "b2@20", "c@30"});
  CHECK(clock.pending() == 0);
}

TEST_CASE("a manual clock never fires a destroyed alarm, even one destroyed by an earlier alarm in the same advance") {
  ManualTimerSource clock;
  int late_fired = 0;
  std::unique_ptr<TimerSource::Alarm> late = clock.schedule(clock.now() + milliseconds(5), [&] { ++late_fired; });
  auto early = clock.schedule(clock.now() + milliseconds(1), [&] { late.reset(); });
  auto dropped = clock.schedule(clock.now() + milliseconds(2), [&] { ++late_fired; });
  dropped.reset();
  clock.advance_ms(10);
  CHECK(late_fired == 0);
  CHECK(clock.pending() == 0);
}

TEST_CASE("an alarm scheduled by a firing alarm fires in the same advance when it falls due within it") {
  ManualTimerSource clock;
  const auto start = clock.now();
  std::vector<long> fired_at;
  std::unique_ptr<TimerSource::Alarm> alarm;
  std::function<void()> every_3ms = [&] {
    fired_at.push_back((clock.now() - start) / milliseconds(1));
    alarm = clock.schedule(clock.now() + milliseconds(3), every_3ms);  // replaces the alarm that is firing
  };
  alarm = clock.schedule(start + milliseconds(3), every_3ms);
  clock.advance_ms(10);
  CHECK(fired_at == std::vector<long>{3, 6, 9});
  clock.advance_ms(2);
  CHECK(fired_at == std::vector<long>{3, 6, 9, 12});
  alarm.reset();
  clock.advance_ms(100);
  CHECK(fired_at.size() == 4);
}
