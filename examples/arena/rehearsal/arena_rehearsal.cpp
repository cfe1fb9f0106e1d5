// Rehearsals of the arena's upgrades, as its author would write them: the
// releases built by examples/arena/CMakeLists.txt, their real appups (2.0.0's
// `extra` sets the starting health), no sockets and no daemon.
#include <hotswap/rehearsal.hpp>

#include <catch2/catch.hpp>

#include "arena_protocol.hpp"

using hotswap::kit::RehearsalHost;
using hotswap::kit::test_releases;

// The whole upgrade test, in the kit's 15-line budget.
TEST_CASE("arena 1.0.0 -> 2.0.0 gives every player 100 health, and the way back restores 1.0.0's state") {
  RehearsalHost host(test_releases(), "1.0.0");
  auto alice = host.connect(), bob = host.connect();
  alice.ask("1 join alice");
  bob.ask("1 join bob");
  const std::string at = alice.ask("2 move 1 0").substr(9);  // "2 ok pos X Y" -> "X Y"
  const auto before = host.state();
  REQUIRE(host.upgrade_to("2.0.0").committed());
  CHECK(alice.ask("3 whoami") == "3 ok alice " + at + " hp 100 score 0");
  CHECK(alice.ask("4 move 0 0") == "4 ok pos " + at);
  CHECK(host.task("players") == R"({"players": 2, "total_moves": 1})");
  REQUIRE(host.downgrade_to("1.0.0").committed());
  CHECK(host.state() == before);
}

TEST_CASE("arena 1.0.0 -> 1.1.0 -> 2.0.0 and back, step by step, with the state checked at every step") {
  RehearsalHost host(test_releases(), "1.0.0");
  auto alice = host.connect();
  auto [x, y] = arena::spawn_position(alice.id(), arena::kDefaultGrid);
  REQUIRE(alice.ask("1 join alice") == "1 ok joined " + std::to_string(x) + " " + std::to_string(y));
  // 1.0.0's clamp bug: walking east ends one cell past the edge.
  std::string last;
  for (int i = 0; i < arena::kDefaultGrid; ++i) last = alice.ask("2 move 1 0");
  CHECK(last == "2 ok pos " + std::to_string(arena::kDefaultGrid) + " " + std::to_string(y));
  const auto v100 = host.state();
  CHECK(v100.schema == 1);

  // 1.1.0 is code only (load_module): the state passes through untouched, and
  // the fixed clamp pulls the player back onto the grid at the next move.
  auto to_110 = host.upgrade_to("1.1.0");
  REQUIRE(to_110.committed());
  CHECK(to_110.report().steps.size() == 1);
  CHECK(host.version() == "1.1.0");
  CHECK(host.state() == v100);
  CHECK(alice.ask("3 move 1 0") == "3 ok pos " + std::to_string(arena::kDefaultGrid - 1) + " " + std::to_string(y));
  const auto v110 = host.state();

  // 2.0.0 changes the layout (schema 2); its appup's extra gives 100 health.
  REQUIRE(host.upgrade_to("2.0.0").committed());
  const auto v200 = host.state();
  CHECK(v200.schema == 2);
  auto in = v200.reader();
  CHECK(in.u32() == 100);  // start_health, from the appup's extra
  CHECK(in.u32() == 100);  // max_health
  CHECK(in.u64() == 0);    // total_moves
  REQUIRE(in.u32() == 1);
  CHECK(in.u64() == alice.id());
  CHECK(in.str() == "alice");
  CHECK(in.i32() == arena::kDefaultGrid - 1);
  CHECK(in.i32() == y);
  CHECK(in.u32() == 100);  // health
  CHECK(in.u64() == 0);    // score
  in.expect_end();

  // Back down, one release at a time: each leg gives back the bytes that release had.
  REQUIRE(host.downgrade_to("1.1.0").committed());
  CHECK(host.state() == v110);
  REQUIRE(host.downgrade_to("1.0.0").committed());
  CHECK(host.state() == v110);
  CHECK(host.version() == "1.0.0");
}

TEST_CASE("the arena's round trips through 1.1.0 and 2.0.0 restore every byte, with ticks running in between") {
  RehearsalHost host(test_releases(), "1.0.0");
  for (int i = 1; i <= 5; ++i) host.connect().ask("1 join p" + std::to_string(i));
  auto via_110 = host.round_trip("1.1.0", [&] { host.advance_ms(5000); });
  CHECK(via_110.restored());
  INFO(via_110);
  auto via_200 = host.round_trip("2.0.0", [&] { host.advance_ms(5000); });
  CHECK(via_200.restored());
  INFO(via_200);
}

TEST_CASE("a recorded session replayed across the 1.1.0 -> 2.0.0 upgrade: 2.0.0 answers from the upgrade on") {
  // arena-session.trace: alice (1) and bob (2) join, move, chat, ask whoami
  // and look, with ticks between; bob leaves; alice looks again.
  RehearsalHost baseline(test_releases(), "1.1.0");
  const auto unchanged = baseline.replay(ARENA_SESSION_TRACE);
  const auto& alice = unchanged.before.at(1);
  const auto& bob = unchanged.before.at(2);
  REQUIRE(alice.size() == 7);  // joined, pos, * chat, pos, whoami, * left, look
  REQUIRE(bob.size() == 4);    // joined, chat, whoami, look

  RehearsalHost host(test_releases(), "1.1.0");
  hotswap::kit::ReplayOptions upgrade_midway;
  upgrade_midway.switch_to = "2.0.0";
  upgrade_midway.at_time_us = 250000;  // just before alice's second move
  const auto replay = host.replay(ARENA_SESSION_TRACE, upgrade_midway);
  REQUIRE(replay.upgrade);
  REQUIRE(replay.upgrade->committed());
  CHECK(replay.events == 15);
  CHECK(replay.switched_at_event == 8);
  // Up to the upgrade both hosts said the same; afterwards the replies agree
  // but whoami now carries health and score (2.0.0 counts moves from its start).
  CHECK(replay.before.at(1) == std::vector<std::string>(alice.begin(), alice.begin() + 3));
  CHECK(replay.before.at(2) == std::vector<std::string>(bob.begin(), bob.begin() + 2));
  CHECK(replay.after.at(1) == std::vector<std::string>{alice[3], alice[4] + " hp 100 score 1", alice[5], alice[6]});
  CHECK(replay.after.at(2) == std::vector<std::string>{bob[2] + " hp 100 score 0", bob[3]});
  CHECK(host.version() == "2.0.0");
}
