// An upgrade that commits while RELEASES.json cannot be written: the report
// says both (committed, and the record failed), and the record is repaired by
// the next release-store change once the disk works again, so make-permanent
// is not refused forever.
#include <errno.h>

#include <catch2/catch.hpp>
#include <future>
#include <string>

#include "../os/faulty_os_sys_calls.hpp"
#include "../server/server_fixture.hpp"

namespace {

using hotswap::host::ReleaseStore;
using hotswap::host::UpgradeReport;
using hotswap::test::FaultyOsSysCalls;
using hotswap::test::RunningHost;
using hotswap::test::TestRoot;

// 1.0.0 to boot (the newest release on disk at the first boot); 2.0.0 is
// added once the host runs.
struct CounterRoot {
  TestRoot root;
  CounterRoot() { root.add_release("1.0.0", {{"counter", "1.0.0"}}, hotswap::test::counter_runtime()); }
  void add_upgrade() {
    root.add_release("2.0.0", {{"counter", "2.0.0", "good", hotswap::test::counter_v2_appup()}},
                     hotswap::test::counter_runtime());
  }
};

// make-permanent through the Runtime, as the admin command runs it; the error ("" on success).
std::string make_permanent(RunningHost& host, const std::string& version) {
  std::promise<std::string> done;
  host.on_loop([&] {
    host.runtime().make_permanent(version, [&done](const std::string& error) { done.set_value(error); });
    return 0;
  });
  return done.get_future().get();
}

// What RELEASES.json says now, read by a store of the test's own.
std::pair<std::string, std::string> recorded(const TestRoot& root) {
  ReleaseStore store(root.dir());
  return {store.permanent().value_or("none"), store.current().value_or("none")};
}

}  // namespace

TEST_CASE("an upgrade whose RELEASES.json write fails reports the commit and the failed record") {
  CounterRoot counter;
  FaultyOsSysCalls os;
  RunningHost host(counter.root.dir(), os);
  counter.add_upgrade();
  os.fail("write", ".RELEASES.json.", ENOSPC);  // the disk is full for the next write

  UpgradeReport report = host.upgrade("2.0.0");
  INFO(report.summary());
  CHECK(report.committed());
  CHECK_THAT(report.record_error, Catch::Contains("RELEASES.json") && Catch::Contains("No space left"));
  CHECK_THAT(report.to_json()["record_error"].get<std::string>(), Catch::Contains("No space left"));
  CHECK_THAT(report.summary(), Catch::Contains("recording it as current failed"));
  CHECK(host.on_loop([&] { return host.runtime().manifest().version; }) == "2.0.0");
  CHECK(host.on_loop([&] { return host.runtime().status()["unrecorded_release"]; }) == "2.0.0");
  CHECK(recorded(counter.root) == std::make_pair(std::string("1.0.0"), std::string("none")));

  SECTION("make-permanent works once the disk does: the record is repaired first") {
    CHECK(make_permanent(host, "2.0.0") == "");
    CHECK(recorded(counter.root) == std::make_pair(std::string("2.0.0"), std::string("none")));
    CHECK(host.on_loop([&] { return host.runtime().status()["unrecorded_release"]; }).is_null());
  }
  SECTION("while the disk still fails, make-permanent says so; then it works") {
    os.fail("write", ".RELEASES.json.", EIO);
    std::string error = make_permanent(host, "2.0.0");
    CHECK_THAT(error, Catch::Contains("release 2.0.0 runs, but recording it as current still fails"));
    CHECK(recorded(counter.root) == std::make_pair(std::string("1.0.0"), std::string("none")));
    CHECK(make_permanent(host, "2.0.0") == "");
    CHECK(recorded(counter.root) == std::make_pair(std::string("2.0.0"), std::string("none")));
  }
  SECTION("a downgrade back to the permanent release records what runs") {
    UpgradeReport down = host.upgrade("1.0.0");
    INFO(down.summary());
    CHECK(down.committed());
    CHECK(down.record_error.empty());
    CHECK(recorded(counter.root) == std::make_pair(std::string("1.0.0"), std::string("none")));
    CHECK(host.on_loop([&] { return host.runtime().status()["unrecorded_release"]; }).is_null());
    CHECK(make_permanent(host, "2.0.0") != "");  // 2.0.0 no longer runs
  }
}

TEST_CASE("an upgrade whose record is written has no record error") {
  CounterRoot counter;
  RunningHost host(counter.root.dir());
  counter.add_upgrade();
  UpgradeReport report = host.upgrade("2.0.0");
  CHECK(report.committed());
  CHECK(report.record_error.empty());
  CHECK(report.to_json()["record_error"] == "");
  CHECK(recorded(counter.root) == std::make_pair(std::string("1.0.0"), std::string("2.0.0")));
}
