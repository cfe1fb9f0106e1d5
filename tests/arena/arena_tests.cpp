// The arena example, driven through the host library as the server would drive
// it: the protocol of each version, and upgrades and downgrades planned from
// the appup files the releases ship.
#include "recording_services.hpp"
#include "arena_protocol.hpp"
#include "core/host_services.hpp"
#include "core/module_registry.hpp"
#include "release/release_files.hpp"
#include "release/runtime_config.hpp"
#include "core/sha256.hpp"
#include "upgrade/upgrade_executor.hpp"

#include <hotswap/appup/appup.hpp>
#include <hotswap/appup/planner.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace fs = boost::filesystem;
using hotswap::appup::Op;
using hotswap::appup::StepKind;
using hotswap::host::LibraryLoader;
using hotswap::host::ModuleRegistry;
using hotswap::host::ModuleSlot;
using hotswap::host::UpgradeExecutor;
using hotswap::host::UpgradeReport;

namespace {

fs::path module_file(const std::string& version) { return fs::path(ARENA_MODULE_DIR) / ("arena-" + version + ".so"); }
fs::path appup_file(const std::string& version) {
  return fs::path(ARENA_EXAMPLE_DIR) / "appups" / ("arena-" + version + ".appup.json");
}

// A release holding arena <version> alone, as its manifest would describe it.
hotswap::appup::ReleaseManifest release(const std::string& version) {
  hotswap::appup::ModuleEntry entry;
  entry.name = "arena";
  entry.version = version;
  entry.file = module_file(version);
  entry.sha256 = hotswap::host::sha256_file(entry.file);
  entry.appup = appup_file(version);
  hotswap::appup::ReleaseManifest m;
  m.name = "arena";
  m.version = version;
  m.modules = {entry};
  return m;
}

// A registry serving one arena version, as the host would.
struct Server {
  LibraryLoader loader;
  hotswap::test::RecordingServices services;
  ModuleRegistry registry{services};
  UpgradeExecutor executor{registry, loader};

  explicit Server(const std::string& version, const std::string& config_json = "{}") {
    registry.set_module_config("arena", config_json);
    registry.start(loader.load(module_file(version), {"arena", version, ""}));
  }
  ModuleSlot& arena() { return *registry.find("arena"); }
  std::string version() { return arena().active().version(); }
  std::string state() { return arena().active().export_state(); }
  std::string task(const std::string& name) { return arena().active().run_task(name, "null"); }

  // Sends one request line and returns the one reply it must get.
  std::string ask(hotswap_conn_id conn, const std::string& line) {
    size_t before = services.sent.size();
    registry.deliver_message(arena(), conn, line);
    std::vector<std::string> replies;
    for (size_t i = before; i < services.sent.size(); ++i)
      if (services.sent[i].first == conn) replies.push_back(services.sent[i].second);
    INFO(line);
    REQUIRE(replies.size() == 1);
    return replies[0];
  }
  // Everything sent from now on while `fn` runs, as (connection, message).
  template <class Fn>
  std::vector<std::pair<hotswap_conn_id, std::string>> during(Fn&& fn) {
    size_t before = services.sent.size();
    fn();
    return {services.sent.begin() + long(before), services.sent.end()};
  }

  UpgradeReport go_to(const std::string& version) {
    auto plan = hotswap::appup::make_plan(release(this->version()), release(version), hotswap::host::load_appup_of);
    UpgradeReport report = executor.run(plan);
    INFO(report.summary());
    REQUIRE(report.committed());
    return report;
  }
};

// "<seq> ok pos <x> <y>" -> {x, y}
std::pair<int, int> position(const std::string& reply) {
  std::istringstream in(reply);
  std::string seq, ok, word;
  int x = -1, y = -1;
  in >> seq >> ok >> word >> x >> y;
  return {x, y};
}

std::vector<std::string> words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

}  // namespace

TEST_CASE("join, move, whoami and look answer with the request's seq") {
  Server s("1.0.0");
  auto [x, y] = arena::spawn_position(7, 64);
  CHECK(s.ask(7, "1 join alice") == "1 ok joined " + std::to_string(x) + " " + std::to_string(y));
  CHECK(s.ask(7, "2 whoami") == "2 ok alice " + std::to_string(x) + " " + std::to_string(y));
  int nx = std::min(x + 1, 63), ny = std::max(y - 1, 0);
  CHECK(s.ask(7, "3 move 1 -1") == "3 ok pos " + std::to_string(nx) + " " + std::to_string(ny));
  CHECK(s.ask(7, "4 move 0 0") == "4 ok pos " + std::to_string(nx) + " " + std::to_string(ny));
  CHECK(s.ask(7, "5 look") == "5 ok players 1");
  CHECK(s.ask(8, "18446744073709551615 join bob_2") .rfind("18446744073709551615 ok joined ", 0) == 0);
  CHECK(s.task("players") == R"({"players": 2})");
}

TEST_CASE("the spawn cell depends only on the connection id") {
  Server a("1.0.0"), b("1.1.0");
  for (hotswap_conn_id conn : {1, 2, 3, 1000}) CHECK(a.ask(conn, "1 join p") == b.ask(conn, "1 join q"));
}

TEST_CASE("malformed and refused requests get one err reply each") {
  Server s("1.0.0");
  CHECK(s.ask(1, "") == "0 err bad request");
  CHECK(s.ask(1, "hello") == "0 err bad request");
  CHECK(s.ask(1, "-1 join x") == "0 err bad request");
  CHECK(s.ask(1, "99999999999999999999 join x") == "0 err bad request");
  CHECK(s.ask(1, "5") == "5 err bad request");
  CHECK(s.ask(1, "6 ") == "6 err bad request");
  CHECK(s.ask(1, "7 dance") == "7 err unknown command");
  CHECK(s.ask(1, "8 move 1 1") == "8 err join first");
  CHECK(s.ask(1, "9 look") == "9 err join first");
  CHECK(s.ask(1, "10 join") == "10 err bad name");
  CHECK(s.ask(1, "11 join two words") == "11 err bad name");
  CHECK(s.ask(1, "12 join seventeen_chars_x") == "12 err bad name");
  CHECK(s.ask(1, "13 join exactly16chars__") .rfind("13 ok joined", 0) == 0);
  CHECK(s.ask(1, "14 join again") == "14 err already joined");
  for (const char* move : {"move", "move 1", "move 2 0", "move 1 1 1", "move a b", "move +1 0", "move 1  1"})
    CHECK(s.ask(1, std::string("15 ") + move) == "15 err bad move");
  CHECK(s.ask(1, "16 chat") == "16 err bad chat");
  CHECK(s.ask(1, "17 chat " + std::string(arena::kMaxChatLength + 1, 'x')) == "17 err bad chat");
  CHECK(s.ask(1, "18 look around") == "18 err bad request");
  CHECK(s.ask(1, "19 whoami please") == "19 err bad request");
  CHECK(s.arena().stats().failed_events == 0);  // every refusal was a reply, not a module error
}

TEST_CASE("chat is pushed to every other joined player") {
  Server s("1.0.0");
  s.ask(1, "1 join alice");
  s.ask(2, "1 join bob");
  s.ask(3, "1 join carol");
  // Connection 4 is connected but never joined: it gets no pushes.
  auto sent = s.during([&] { CHECK(s.ask(1, "2 chat hello there, all") == "2 ok chat"); });
  std::map<hotswap_conn_id, std::vector<std::string>> by_conn;
  for (const auto& [conn, message] : sent) by_conn[conn].push_back(message);
  CHECK(by_conn == std::map<hotswap_conn_id, std::vector<std::string>>{
                       {1, {"2 ok chat"}},
                       {2, {"* chat alice hello there, all"}},
                       {3, {"* chat alice hello there, all"}},
                   });
}

TEST_CASE("a disconnect removes the player and tells the others") {
  Server s("1.0.0");
  s.ask(1, "1 join alice");
  s.ask(2, "1 join bob");
  auto sent = s.during([&] { s.registry.deliver_disconnect(s.arena(), 1, HOTSWAP_DISCONNECT_PEER_CLOSED); });
  CHECK(sent == std::vector<std::pair<hotswap_conn_id, std::string>>{{2, "* left alice"}});
  CHECK(s.task("players") == R"({"players": 1})");
  CHECK(s.ask(2, "2 look") == "2 ok players 1");
  // A connection that never joined leaves silently.
  CHECK(s.during([&] { s.registry.deliver_disconnect(s.arena(), 9, HOTSWAP_DISCONNECT_IO_ERROR); }).empty());
}

TEST_CASE("look counts everyone and lists the 8 nearest others, nearest first") {
  Server s("1.0.0");
  std::map<std::string, std::pair<int, int>> where;
  for (hotswap_conn_id conn = 1; conn <= 12; ++conn) {
    std::string name = "p" + std::to_string(conn);
    auto reply = words(s.ask(conn, "1 join " + name));
    where[name] = {std::stoi(reply[3]), std::stoi(reply[4])};
  }
  auto reply = words(s.ask(1, "2 look"));
  REQUIRE(reply.size() == 4 + arena::kLookLimit);
  CHECK(reply[2] == "players");
  CHECK(reply[3] == "12");
  auto distance = [&](const std::string& name) {
    auto [x, y] = where[name];
    auto [mx, my] = where["p1"];
    return (x - mx) * (x - mx) + (y - my) * (y - my);
  };
  std::vector<std::string> listed;
  int last = -1;
  for (size_t i = 4; i < reply.size(); ++i) {
    std::string name = reply[i].substr(0, reply[i].find(':'));
    auto [x, y] = where[name];
    CHECK(reply[i] == name + ":" + std::to_string(x) + "," + std::to_string(y));
    CHECK(name != "p1");
    CHECK(distance(name) >= last);
    last = distance(name);
    listed.push_back(name);
  }
  for (const auto& [name, pos] : where)
    if (name != "p1" && std::find(listed.begin(), listed.end(), name) == listed.end()) CHECK(distance(name) >= last);
}

TEST_CASE("1.0.0 lets a player walk off the grid, 1.1.0 stops at the last cell") {
  auto walk_to_corner = [](Server& s) {
    s.ask(1, "1 join walker");
    std::string reply;
    for (int i = 0; i < 70; ++i) reply = s.ask(1, "2 move 1 1");
    return position(reply);
  };
  Server buggy("1.0.0");
  CHECK(walk_to_corner(buggy) == std::pair{64, 64});  // the bug: 64 is off a 64-cell grid
  Server fixed("1.1.0");
  CHECK(walk_to_corner(fixed) == std::pair{63, 63});
  for (int i = 0; i < 70; ++i) fixed.ask(1, "3 move -1 -1");
  CHECK(fixed.ask(1, "4 move 0 -1") == "4 ok pos 0 0");
}

TEST_CASE("the grid size comes from the module config") {
  Server s("1.1.0", R"({"grid": 4})");
  s.ask(1, "1 join small");
  for (int i = 0; i < 5; ++i) s.ask(1, "2 move 1 1");
  CHECK(s.ask(1, "3 move 1 1") == "3 ok pos 3 3");

  for (const char* bad : {R"({"grid": 1})", R"({"grid": "64"})", R"({"gird": 64})", "[]"}) {
    LibraryLoader loader;
    hotswap::test::RecordingServices services;
    ModuleRegistry registry(services);
    registry.set_module_config("arena", bad);
    INFO(bad);
    CHECK_THROWS_WITH(registry.start(loader.load(module_file("1.1.0"))), Catch::Contains("arena config"));
  }
}

TEST_CASE("1.x ticks change nothing") {
  Server s("1.0.0");
  s.ask(1, "1 join alice");
  std::string before = s.state();
  for (int i = 0; i < 5; ++i) s.registry.deliver_tick(s.arena());
  CHECK(s.state() == before);
}

TEST_CASE("1.0.0 -> 1.1.0 (load_module) keeps the players and fixes the clamp") {
  Server s("1.0.0");
  s.ask(1, "1 join alice");
  s.ask(2, "1 join bob");
  for (int i = 0; i < 70; ++i) s.ask(1, "2 move 1 0");
  auto [x, y] = position(s.ask(1, "3 move 0 0"));
  REQUIRE(x == 64);  // off the grid, thanks to the 1.0.0 bug
  std::string before = s.state();

  UpgradeReport report = s.go_to("1.1.0");
  REQUIRE(report.steps.size() == 1);
  CHECK_THAT(report.steps[0].description, Catch::Contains("load_module"));
  CHECK(s.version() == "1.1.0");
  CHECK(s.state() == before);
  CHECK(s.ask(1, "4 whoami") == "4 ok alice 64 " + std::to_string(y));
  // The fixed clamp pulls the stray player back onto the grid at the next move.
  CHECK(s.ask(1, "5 move 0 0") == "5 ok pos 63 " + std::to_string(y));
  CHECK(s.task("players") == R"({"players": 2})");

  s.go_to("1.0.0");
  CHECK(s.version() == "1.0.0");
  CHECK(s.ask(1, "6 move 1 0") == "6 ok pos 64 " + std::to_string(y));
}

TEST_CASE("1.1.0 -> 2.0.0 (update) gives every player the appup's start_health") {
  Server s("1.1.0");
  s.ask(1, "1 join alice");
  s.ask(2, "1 join bob");
  auto [x, y] = position(s.ask(1, "2 move 0 0"));

  UpgradeReport report = s.go_to("2.0.0");
  REQUIRE(report.steps.size() == 1);
  CHECK_THAT(report.steps[0].description, Catch::Contains("update"));
  CHECK(s.version() == "2.0.0");
  std::string pos = std::to_string(x) + " " + std::to_string(y);
  CHECK(s.ask(1, "3 whoami") == "3 ok alice " + pos + " hp 100 score 0");
  s.ask(1, "4 move 0 0");
  s.ask(1, "5 move 0 0");
  s.ask(2, "2 move 0 0");
  CHECK(s.ask(1, "6 whoami") == "6 ok alice " + pos + " hp 100 score 2");
  CHECK(s.task("players") == R"({"players": 2, "total_moves": 3})");
  // Newcomers join with the start health too.
  s.ask(3, "1 join carol");
  CHECK_THAT(s.ask(3, "2 whoami"), Catch::EndsWith(" hp 100 score 0"));

  CHECK(s.task("reset_scores") == R"({"reset": 3})");
  CHECK_THAT(s.ask(1, "7 whoami"), Catch::EndsWith(" hp 100 score 0"));
  CHECK(s.task("players") == R"({"players": 3, "total_moves": 3})");
}

TEST_CASE("1.0.0 -> 2.0.0 directly, as the appup's regex allows") {
  Server s("1.0.0");
  s.ask(1, "1 join alice");
  s.go_to("2.0.0");
  CHECK_THAT(s.ask(1, "2 whoami"), Catch::EndsWith(" hp 100 score 0"));
}

TEST_CASE("2.0.0 -> 1.1.0 -> 1.0.0 round-trips the schema-1 state exactly") {
  Server s("1.0.0");
  for (hotswap_conn_id conn = 1; conn <= 5; ++conn) s.ask(conn, "1 join p" + std::to_string(conn));
  for (int i = 0; i < 3; ++i) s.ask(2, "2 move 1 -1");
  std::string v1_state = s.state();

  s.go_to("1.1.0");
  s.go_to("2.0.0");
  // Requests that leave names and positions alone.
  s.ask(1, "3 chat still here");
  s.ask(3, "3 look");
  s.ask(4, "3 move 0 0");
  s.registry.deliver_tick(s.arena());

  s.go_to("1.1.0");
  CHECK(s.state() == v1_state);
  s.go_to("1.0.0");
  CHECK(s.version() == "1.0.0");
  CHECK(s.state() == v1_state);
  CHECK(s.task("players") == R"({"players": 5})");
}

TEST_CASE("a downgrade keeps the moves made on 2.0.0 and drops health and score") {
  Server s("1.1.0");
  s.ask(1, "1 join alice");
  s.go_to("2.0.0");
  std::string pos;
  for (int i = 0; i < 3; ++i) pos = s.ask(1, "2 move -1 -1").substr(std::string("2 ok pos ").size());
  s.go_to("1.1.0");
  CHECK(s.ask(1, "3 whoami") == "3 ok alice " + pos);
  s.go_to("2.0.0");
  CHECK(s.ask(1, "4 whoami") == "4 ok alice " + pos + " hp 100 score 0");
}

TEST_CASE("2.0.0 regenerates 1 health per second up to max_health") {
  Server s("1.1.0");
  s.ask(1, "1 join alice");
  auto plan = hotswap::appup::make_plan(release("1.1.0"), release("2.0.0"), hotswap::host::load_appup_of);
  REQUIRE(plan.steps.size() == 1);
  plan.steps[0].extra = {{"start_health", 98}, {"max_health", 100}};
  REQUIRE(s.executor.run(plan).committed());
  auto health = [&] { return words(s.ask(1, "2 whoami"))[6]; };
  CHECK(health() == "98");

  // The module reads the time through the host (monotonic_ms); the test's clock moves only when told.
  auto tick_after = [&](uint64_t ms) {
    s.services.advance(s.registry, ms);
    s.registry.deliver_tick(s.arena());
  };
  tick_after(0);  // the first tick starts the regeneration clock
  tick_after(999);
  CHECK(health() == "98");  // not yet a whole second
  tick_after(1);
  CHECK(health() == "99");
  tick_after(500);
  CHECK(health() == "99");
  tick_after(2000);  // 2.5 s since the last regeneration: 2 whole seconds count
  CHECK(health() == "100");  // 99 + 2, capped
  // The half second left over counts towards the next regeneration.
  s.ask(2, "1 join bob");
  CHECK(words(s.ask(2, "2 whoami"))[6] == "98");
  tick_after(1500);
  CHECK(words(s.ask(2, "3 whoami"))[6] == "100");
  CHECK(health() == "100");
}

TEST_CASE("an update with a bad extra rolls back, and 1.1.0 serves on unchanged") {
  Server s("1.1.0");
  s.ask(1, "1 join alice");
  std::string before = s.state();
  auto plan = hotswap::appup::make_plan(release("1.1.0"), release("2.0.0"), hotswap::host::load_appup_of);
  REQUIRE(plan.steps.size() == 1);
  plan.steps[0].extra = {{"start_health", 150}, {"max_health", 100}};
  UpgradeReport report = s.executor.run(plan);
  CHECK(report.outcome == UpgradeReport::Outcome::RolledBack);
  CHECK_THAT(report.error, Catch::Contains("start_health (150) is above extra.max_health (100)"));
  CHECK(s.version() == "1.1.0");
  CHECK(s.state() == before);
  CHECK(s.ask(1, "2 look") == "2 ok players 1");
}

TEST_CASE("the appup files parse and say what the README says") {
  auto v100 = hotswap::host::load_appup(appup_file("1.0.0"));
  CHECK(v100.up.empty());
  CHECK(v100.down.empty());

  auto v110 = hotswap::host::load_appup(appup_file("1.1.0"));
  CHECK(v110.module == "arena");
  CHECK(v110.version == "1.1.0");
  REQUIRE(v110.find_up("1.0.0") != nullptr);
  CHECK(v110.find_up("1.0.0")->instructions.at(0).op == Op::LoadModule);
  REQUIRE(v110.find_down("1.0.0") != nullptr);
  CHECK(v110.find_down("1.0.0")->instructions.at(0).op == Op::LoadModule);
  CHECK(v110.find_up("0.9.0") == nullptr);

  auto v200 = hotswap::host::load_appup(appup_file("2.0.0"));
  for (const char* old : {"1.0.0", "1.1.0", "1.1.7"}) {
    INFO(old);
    REQUIRE(v200.find_up(old) != nullptr);
    const auto& up = v200.find_up(old)->instructions.at(0);
    CHECK(up.op == Op::Update);
    CHECK(up.extra == nlohmann::json{{"start_health", 100}, {"max_health", 100}});
    REQUIRE(v200.find_down(old) != nullptr);
    CHECK(v200.find_down(old)->instructions.at(0).op == Op::Update);
  }
  CHECK(v200.find_up("1.2.0") == nullptr);
  CHECK(v200.find_up("11.0.0") == nullptr);
}

TEST_CASE("the release's runtime.json configures the game listener and the tick") {
  fs::path file = fs::path(ARENA_EXAMPLE_DIR) / "releases" / "runtime.json";
  auto no_env = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
  auto config = hotswap::host::load_runtime_config(file, no_env);
  REQUIRE(config.listeners.size() == 1);
  CHECK(config.listeners[0].name == "game");
  CHECK(config.listeners[0].port == 0);
  CHECK(config.listeners[0].module == "arena");
  CHECK(config.listeners[0].framing == hotswap::host::Framing::Line);
  REQUIRE(config.modules.count("arena") == 1);
  CHECK(config.modules["arena"].tick_hz == 10);

  auto with_port = [](const std::string& name) -> std::optional<std::string> {
    if (name == "ARENA_PORT") return "7777";
    return std::nullopt;
  };
  CHECK(hotswap::host::load_runtime_config(file, with_port).listeners[0].port == 7777);

  // Every version accepts the module config the release ships.
  for (const char* version : {"1.0.0", "1.1.0", "2.0.0"}) {
    Server s(version, config.modules["arena"].config.dump());
    CHECK_THAT(s.ask(1, "1 join alice"), Catch::StartsWith("1 ok joined"));
  }
}

TEST_CASE("1.0.0 -> 1.1.0 hands the players over in place, whatever their number") {
  Server s("1.0.0");
  constexpr int kPlayers = 5000;
  for (hotswap_conn_id conn = 1; conn <= kPlayers; ++conn) s.ask(conn, "1 join p" + std::to_string(conn));
  auto [x, y] = position(s.ask(77, "2 move 1 1"));
  std::string before = s.state();

  UpgradeReport up = s.go_to("1.1.0");
  REQUIRE(up.steps.size() == 1);
  CHECK(up.steps[0].state_path == "adopt");
  CHECK(up.steps[0].fallback.empty());
  CHECK(s.executor.export_buffer_capacity() < before.size());  // nothing was copied out
  CHECK(s.state() == before);
  CHECK(s.task("players") == R"({"players": 5000})");
  CHECK(s.ask(77, "3 whoami") == "3 ok p77 " + std::to_string(x) + " " + std::to_string(y));

  // 2.0.0 changes the schema: that swap migrates through bytes, and says so.
  UpgradeReport migrate = s.go_to("2.0.0");
  CHECK(migrate.steps[0].state_path == "export_import");
  CHECK_THAT(migrate.steps[0].fallback, Catch::Contains("schema changes"));
  CHECK(s.task("players") == R"({"players": 5000, "total_moves": 0})");
}
