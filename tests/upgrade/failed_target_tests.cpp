// Issue 9's operations bugs, on a running host: what reload picks (never an
// old release, never one whose upgrade failed), purge_ms as one measurement,
// direction-aware wording, and an admin-socket reload logged as SIGHUP's is.
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <catch2/catch.hpp>
#include <future>

#include "../server/server_fixture.hpp"
#include "admin/admin_client.hpp"

namespace {

namespace asio = boost::asio;
using hotswap::host::Runtime;
using hotswap::host::UpgradeReport;
using hotswap::test::ModuleSpec;
using hotswap::test::RunningHost;
using hotswap::test::TestRoot;

nlohmann::json info_runtime() {
  nlohmann::json runtime = hotswap::test::counter_runtime();
  runtime["log_level"] = "info";
  return runtime;
}

// The counter 2.0.0 appup, for the good module or the one whose migration always fails.
ModuleSpec counter_v2(const std::string& variant = "good") {
  return {"counter", "2.0.0", variant, hotswap::test::counter_v2_appup()};
}

struct Outcome {
  UpgradeReport report;
  std::vector<nlohmann::json> events;
};

Outcome upgrade(RunningHost& host, const std::string& version,
                std::optional<hotswap::appup::Direction> direction = std::nullopt) {
  auto outcome = std::make_shared<Outcome>();
  std::promise<void> done;
  asio::post(host.runtime().io(), [&] {
    hotswap::host::UpgradeRequest request;
    request.version = version;
    request.expected_direction = direction;
    host.runtime().upgrade(
        request, [outcome](const nlohmann::json& event) { outcome->events.push_back(event); },
        [outcome, &done](const UpgradeReport& report) {
          outcome->report = report;
          done.set_value();
        });
  });
  done.get_future().get();
  return *outcome;
}

Runtime::ReloadResult reload(RunningHost& host) {
  std::promise<Runtime::ReloadResult> done;
  asio::post(host.runtime().io(), [&] {
    host.runtime().reload({}, [&done](const Runtime::ReloadResult& result) { done.set_value(result); });
  });
  return done.get_future().get();
}

std::string action_of(const Runtime::ReloadResult& result) { return result.result.value("action", "?"); }

nlohmann::json releases_json(const TestRoot& root) {
  std::ifstream in((root.dir() / "releases" / "RELEASES.json").string());
  return nlohmann::json::parse(in);
}

const nlohmann::json* event_named(const Outcome& outcome, const std::string& name) {
  for (const nlohmann::json& e : outcome.events)
    if (e.value("event", "") == name) return &e;
  return nullptr;
}

// Captures what the default spdlog logger writes while it lives. Install it
// before the host starts and let it go after the host stopped: the logger is
// swapped while no other thread logs.
class LogCapture {
 public:
  LogCapture() : previous_(spdlog::default_logger()) {
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink_));
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  size_t count(const std::string& text) const {
    size_t n = 0;
    for (const std::string& line : sink_->last_formatted())
      if (line.find(text) != std::string::npos) ++n;
    return n;
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_ = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(4096);
  std::shared_ptr<spdlog::logger> previous_;
};

}  // namespace

TEST_CASE("reload skips a release whose upgrade rolled back, until it is named, and the purged event says new code") {
  // No rehearsal: the live migration itself fails and rolls back.
  nlohmann::json runtime = info_runtime();
  runtime["rehearse"] = false;
  TestRoot root;
  root.add_release("1.0.0", {{"counter", "1.0.0"}}, runtime);
  RunningHost host(root.dir());
  root.add_release("2.0.0", {counter_v2("migrate-error")}, runtime);

  // The first reload tries 2.0.0, which rolls back.
  Runtime::ReloadResult first = reload(host);
  CHECK(action_of(first) == "upgrade");
  CHECK(first.result["report"]["outcome"] == "rolled_back");
  const nlohmann::json recorded = releases_json(root);
  REQUIRE(recorded.contains("failed"));
  CHECK_THAT(recorded["failed"].value("2.0.0", ""), Catch::Contains("test module always fails"));

  // Every later reload leaves it alone: the runtime config is re-read instead (unchanged: nothing to do).
  Runtime::ReloadResult second = reload(host);
  CHECK(second.error.empty());
  CHECK(action_of(second) == "none");

  // Named explicitly, it is tried again; after a rollback, the code unloaded is the new one.
  Outcome named = upgrade(host, "2.0.0");
  CHECK(named.report.outcome == UpgradeReport::Outcome::RolledBack);
  const nlohmann::json* purged = event_named(named, "purged");
  REQUIRE(purged != nullptr);
  CHECK((*purged)["unloaded"] == "new");
  CHECK(host.on_loop([&] { return host.runtime().registry().find("counter")->active().version(); }) == "1.0.0");
}

TEST_CASE("reload skips a release whose live rehearsal failed, and a named upgrade tries it again") {
  TestRoot root;
  root.add_release("1.0.0", {{"counter", "1.0.0"}}, info_runtime());
  RunningHost host(root.dir());
  root.add_release("2.0.0", {counter_v2("migrate-error")}, info_runtime());

  Runtime::ReloadResult first = reload(host);
  CHECK(action_of(first) == "upgrade");
  CHECK(first.result["report"]["outcome"] == "refused");
  const nlohmann::json recorded = releases_json(root);
  REQUIRE(recorded.contains("failed"));
  CHECK_THAT(recorded["failed"].value("2.0.0", ""), Catch::Contains("test module always fails"));

  CHECK(action_of(reload(host)) == "none");
  Outcome named = upgrade(host, "2.0.0");
  CHECK(named.report.outcome == UpgradeReport::Outcome::Refused);
  CHECK(host.on_loop([&] { return host.runtime().registry().find("counter")->active().version(); }) == "1.0.0");
}

TEST_CASE("reload never picks an old release") {
  TestRoot root;
  root.add_release("1.0.0", {{"counter", "1.0.0"}}, info_runtime());
  RunningHost host(root.dir());
  root.add_release("2.0.0", {counter_v2()}, info_runtime());
  Outcome up = upgrade(host, "2.0.0");
  REQUIRE(up.report.committed());
  const nlohmann::json* purged = event_named(up, "purged");
  REQUIRE(purged != nullptr);
  CHECK((*purged)["unloaded"] == "old");
  REQUIRE(upgrade(host, "1.0.0").report.committed());  // 2.0.0 is now old

  Runtime::ReloadResult reloaded = reload(host);
  CHECK(reloaded.error.empty());
  CHECK(action_of(reloaded) == "none");  // not an upgrade back to the old 2.0.0
  CHECK(host.on_loop([&] { return host.runtime().registry().find("counter")->active().version(); }) == "1.0.0");
}

TEST_CASE("purge_ms is one measurement: the purged event, the reply and status agree") {
  TestRoot root;
  root.add_release("1.0.0", {{"counter", "1.0.0"}}, info_runtime());
  RunningHost host(root.dir());
  root.add_release("2.0.0", {counter_v2()}, info_runtime());
  Outcome up = upgrade(host, "2.0.0");
  REQUIRE(up.report.committed());
  const nlohmann::json* purged = event_named(up, "purged");
  REQUIRE(purged != nullptr);
  const double reported = up.report.to_json()["purge_ms"].get<double>();
  CHECK((*purged)["purge_ms"].get<double>() == reported);
  const nlohmann::json status = host.on_loop([&] { return host.runtime().status(); });
  CHECK(status["last_upgrade"]["purge_ms"].get<double>() == reported);
  CHECK(reported > 0);
}

TEST_CASE("a refused downgrade is reported as a downgrade") {
  TestRoot root;
  root.add_release("1.0.0", {{"counter", "1.0.0"}}, info_runtime());
  RunningHost host(root.dir());
  Outcome refused = upgrade(host, "0.9.0", hotswap::appup::Direction::Downgrade);
  CHECK(refused.report.outcome == UpgradeReport::Outcome::Refused);
  CHECK_THAT(refused.report.summary(), Catch::StartsWith("downgrade counter 1.0.0 -> 0.9.0: refused"));
  CHECK(refused.report.to_json()["direction"] == "downgrade");
  // A refusal that is not the release's fault marks nothing.
  CHECK_FALSE(releases_json(root).contains("failed"));
}

TEST_CASE("a reload through the admin socket is logged as a SIGHUP reload is") {
  LogCapture log;
  TestRoot root;
  root.add_release("1.0.0", {{"counter", "1.0.0"}}, info_runtime());
  {
    RunningHost host(root.dir());
    host.on_loop([&] {
      host.runtime().open_admin(hotswap::host::make_admin_handler(host.runtime()));
      return true;
    });
    hotswap::host::AdminClient client(root.dir() / "run" / "admin.sock");
    const nlohmann::json reply = client.request({{"cmd", "reload"}});
    CHECK(reply.value("ok", false));
    CHECK(log.count("admin: reloading") == 1);
    CHECK(log.count("reload: none") == 1);
  }
}
