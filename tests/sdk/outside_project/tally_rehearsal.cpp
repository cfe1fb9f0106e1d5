// tally's upgrade rehearsed with the installed kit: the total survives 1.0.0 -> 1.1.0 and back.
#include <hotswap/rehearsal.hpp>

#include <catch2/catch.hpp>

using hotswap::kit::RehearsalHost;

TEST_CASE("tally keeps its total across 1.0.0 -> 1.1.0 and back") {
  RehearsalHost host(hotswap::kit::test_releases(), "1.0.0");
  auto client = host.connect();
  CHECK(client.ask("add 5") == "v1.0 total=5");
  const auto before = host.state();
  REQUIRE(host.upgrade_to("1.1.0").committed());
  CHECK(client.ask("add 2") == "v1.1 total=7");
  REQUIRE(host.downgrade_to("1.0.0").committed());
  CHECK(client.ask("add 0") == "v1.0 total=7");
  CHECK(host.state() != before);
}
