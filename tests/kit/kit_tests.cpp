// The rehearsal kit (kit/include/hotswap/rehearsal.hpp) against the tally
// releases (tests/kit/CMakeLists.txt): clients, time, state, upgrades through
// real appups, round trips, the wrong appups it must catch, and the mistakes
// in a test it must name.
#include <hotswap/rehearsal.hpp>

#include <catch2/catch.hpp>

using hotswap::kit::RehearsalError;
using hotswap::kit::RehearsalHost;
using hotswap::kit::test_releases;
using Catch::Matchers::Contains;

TEST_CASE("the kit boots a release and answers each client on its own connection") {
  RehearsalHost host(test_releases(), "1.0.0");
  CHECK(host.release() == "1.0.0");
  CHECK(host.version() == "1.0.0");
  CHECK(host.releases() == std::vector<std::string>{"1.0.0", "2.0.0", "2.1.0", "2.2.0", "2.3.0"});
  auto a = host.connect(), b = host.connect();
  CHECK(a.id() == 1);
  CHECK(b.id() == 2);
  CHECK(a.ask("add 2") == "total 2 count 2");
  CHECK(b.ask("add 5") == "total 7 count 5");
  CHECK(a.ask("get") == "total 7 count 2");
  CHECK(a.received() == std::vector<std::string>{"total 2 count 2", "total 7 count 2"});
  CHECK(b.take_received() == std::vector<std::string>{"total 7 count 5"});
  CHECK(b.received().empty());
  b.disconnect();
  CHECK(a.ask("get") == "total 7 count 2");
  CHECK(host.failed_events() == 0);
}

TEST_CASE("timers fire from the kit's clock, at their due time and not before") {
  RehearsalHost host(test_releases(), "1.0.0");
  auto a = host.connect();
  const uint64_t start = host.now_ms();
  CHECK(a.ask("remind 500") == "ok");
  CHECK(host.armed_timers() == 1);
  host.advance_ms(499);
  CHECK(a.received() == std::vector<std::string>{"ok"});
  host.advance_ms(1);
  CHECK(a.received() == std::vector<std::string>{"ok", "reminder"});
  CHECK(host.armed_timers() == 0);
  CHECK(host.now_ms() == start + 500);
}

TEST_CASE("ticks follow the release's tick_hz on the kit's clock, and can be driven by hand") {
  RehearsalHost host(test_releases(), "2.0.0");
  auto a = host.connect();
  host.advance_ms(1000);  // runtime.json: tick_hz 10
  CHECK(a.ask("get") == "total 0 count 0 label none ticks 10");
  host.tick("", 3);
  CHECK(a.ask("get") == "total 0 count 0 label none ticks 13");
  host.set_config_ticks(false);
  host.advance_ms(1000);
  CHECK(a.ask("get") == "total 0 count 0 label none ticks 13");
}

TEST_CASE("a connection the module closes is closed for the client, and its on_disconnect runs") {
  RehearsalHost host(test_releases(), "1.0.0");
  auto a = host.connect(), b = host.connect();
  a.ask("add 3");
  CHECK(a.ask("bye") == "bye");
  CHECK(a.closed_by_module() == std::optional<std::string>("asked to leave"));
  CHECK_THROWS_WITH(a.send("get"), Contains("connection 1 is closed"));
  CHECK(b.ask("get") == "total 3 count 0");
  const auto exported = host.state();
  auto state = exported.reader();
  CHECK(state.u64() == 3);
  CHECK(state.u32() == 0);  // a's count left with it
}

TEST_CASE("an upgrade runs the real appup with its extra, and the downgrade round-trips the state") {
  RehearsalHost host(test_releases(), "1.0.0");
  auto a = host.connect();
  a.ask("add 4");
  const auto before = host.state();
  auto up = host.upgrade_to("2.0.0");
  REQUIRE(up.committed());
  CHECK(up.error().empty());
  CHECK_THAT(up.plan(), Contains("update tally 1.0.0 -> 2.0.0"));
  CHECK(a.ask("get") == "total 4 count 4 label two ticks 0");  // "two": the appup's extra
  CHECK(host.state().schema == 2);
  REQUIRE(host.downgrade_to("1.0.0").committed());
  CHECK(host.state() == before);
  CHECK(a.ask("get") == "total 4 count 4");
}

TEST_CASE("round_trip compares every module's state there and back") {
  RehearsalHost host(test_releases(), "1.0.0");
  host.connect().ask("add 9");
  auto trip = host.round_trip("2.0.0", [&] { host.advance_ms(2000); });
  CHECK(trip.restored());
  CHECK(trip.explain().empty());
  CHECK(host.release() == "1.0.0");
}

TEST_CASE("the kit catches a migrate_down that loses a field: the round trip does not restore the state") {
  RehearsalHost host(test_releases(), "1.0.0");
  host.connect().ask("add 9");
  auto trip = host.round_trip("2.1.0");
  CHECK(trip.there.committed());
  REQUIRE(trip.back);
  CHECK(trip.back->committed());  // nothing failed: only the bytes tell
  CHECK_FALSE(trip.restored());
  REQUIRE(trip.differences.size() == 1);
  CHECK_THAT(trip.differences[0], Contains("module tally") && Contains("first difference at byte 0"));
  CHECK_THAT(trip.explain(), Contains("did not come back byte for byte"));
}

TEST_CASE("the kit catches an appup whose extra the migration refuses: the upgrade rolls back") {
  RehearsalHost host(test_releases(), "1.0.0");
  auto a = host.connect();
  a.ask("add 1");
  const auto before = host.state();
  auto r = host.upgrade_to("2.2.0");
  CHECK(r.rolled_back());
  CHECK_THAT(r.error(), Contains("update tally 1.0.0 -> 2.2.0") && Contains("extra.label must be a string, got 5"));
  CHECK(host.release() == "1.0.0");
  CHECK(host.version() == "1.0.0");
  CHECK(host.state() == before);
  CHECK(a.ask("get") == "total 1 count 1");
}

TEST_CASE("the kit catches an appup with the wrong instruction: load_module across a schema change is refused") {
  RehearsalHost host(test_releases(), "1.0.0");
  auto r = host.upgrade_to("2.3.0");
  CHECK(r.refused());
  CHECK_THAT(r.error(), Contains("load_module hands state over unchanged") && Contains("the appup must use update"));
  CHECK(host.version() == "1.0.0");
}

TEST_CASE("an upgrade with no matching appup entry is refused, naming the missing entry") {
  RehearsalHost host(test_releases(), "2.0.0");
  auto r = host.upgrade_to("2.1.0");  // 2.1.0's appup only knows 1.0.0
  CHECK(r.refused());
  CHECK_THAT(r.error(), Contains("no plan from 2.0.0 to 2.1.0"));
  CHECK(host.release() == "2.0.0");
}

TEST_CASE("mistakes in a test throw RehearsalError saying what is wrong") {
  CHECK_THROWS_WITH(RehearsalHost(test_releases(), "9.9.9"),
                    Contains("release 9.9.9 is not among the release folders given (1.0.0, 2.0.0"));
  CHECK_THROWS_WITH(RehearsalHost({"/nonexistent/tally-1.0.0"}, "1.0.0"),
                    Contains("release folder /nonexistent/tally-1.0.0 does not exist"));
  RehearsalHost host(test_releases(), "1.0.0");
  CHECK_THROWS_WITH(host.upgrade_to("3.0.0"), Contains("release 3.0.0 is not among this rehearsal's releases"));
  CHECK_THROWS_WITH(host.downgrade_to("2.0.0"), Contains("not older than the running release 1.0.0"));
  CHECK_THROWS_WITH(host.upgrade_to("1.0.0"), Contains("not newer"));
  CHECK_THROWS_WITH(host.state("arena"), Contains("module 'arena' is not running in release 1.0.0 (running: tally)"));
  CHECK_THROWS_WITH(host.client(42), Contains("connection 42 was never connected"));
  auto a = host.connect();
  CHECK_THROWS_WITH(host.connect_as(a.id()), Contains("connection 1 is already in use"));
  CHECK_THROWS_WITH(a.ask("bogus"), Contains("asked 'bogus' and got 0 messages back instead of one"));
  CHECK_THROWS_WITH(host.task("nope"), Contains("task nope failed"));
}

TEST_CASE("kit: a module lists its connections and broadcasts to them, per listener too, as on a live server") {
  hotswap::kit::RehearsalHost host({boost::filesystem::path(CASTER_RELEASES_DIR) / "caster-1.0.0"}, "1.0.0");
  auto a = host.connect("caster", "main");
  auto b = host.connect("caster", "admin");
  CHECK(a.ask("list") == "conns " + std::to_string(a.id()) + "@main " + std::to_string(b.id()) + "@admin");
  CHECK(a.ask("list admin") == "conns " + std::to_string(b.id()) + "@admin");
  CHECK_THAT(a.ask("list nowhere"), Catch::StartsWith("error "));
  b.take_received();
  a.take_received();
  a.send("all hello");  // a gets the broadcast too, then the counts
  CHECK(a.take_received() == std::vector<std::string>{"hello", "sent=2 skipped=0"});
  CHECK(b.take_received() == std::vector<std::string>{"hello"});
  b.disconnect();
  CHECK(a.ask("list") == "conns " + std::to_string(a.id()) + "@main");
}
