#include <hotswap/appup/error.hpp>
#include <hotswap/appup/planner.hpp>

#include <catch2/catch.hpp>

#include <map>

using namespace hotswap::appup;
using nlohmann::json;

namespace {

// A module of a test release; the digest is the given character repeated, so
// "same version, same code" is simply "same version, same sha".
struct Mod {
  std::string name;
  std::string version;
  char sha = 'a';
  std::vector<std::string> depends_on = {};
  bool has_appup = true;
};

json module_json(const Mod& mod) {
  json entry = {{"name", mod.name},
                {"version", mod.version},
                {"file", "modules/" + mod.name + "-" + mod.version + ".so"},
                {"sha256", std::string(64, mod.sha)}};
  if (mod.has_appup) entry["appup"] = "appups/" + mod.name + "-" + mod.version + ".appup.json";
  if (!mod.depends_on.empty()) entry["depends_on"] = mod.depends_on;
  return entry;
}

json manifest_json(const std::string& version, const std::vector<Mod>& mods) {
  json modules = json::array();
  for (const Mod& mod : mods) modules.push_back(module_json(mod));
  return {{"release", "arena"}, {"version", version}, {"modules", modules}};
}

ReleaseManifest release(const std::string& version, const std::vector<Mod>& mods) {
  const std::string dir = "/releases/arena-" + version;
  return parse_manifest(manifest_json(version, mods), dir, dir + "/manifest.json");
}

// In-memory appups, named "<module>-<version>.appup.json", served in place of files.
class Appups {
 public:
  Appups& add(const std::string& module, const std::string& version, const std::string& up,
              const std::string& down = "[]") {
    const std::string source = module + "-" + version + ".appup.json";
    const json document = json::parse(R"({"module": ")" + module + R"(", "version": ")" + version + R"(", "up": )" +
                                      up + R"(, "down": )" + down + "}");
    appups_.emplace(module + "-" + version, parse_appup(document, source));
    return *this;
  }

  AppupSource source() const {
    return [this](const ModuleEntry& entry) {
      const auto it = appups_.find(entry.name + "-" + entry.version);
      if (it == appups_.end()) {
        throw std::logic_error("the planner asked for the appup of " + entry.name + " " + entry.version);
      }
      return it->second;
    };
  }

 private:
  std::map<std::string, Appup> appups_;
};

std::vector<std::string> described(const Plan& plan) {
  std::vector<std::string> lines;
  for (const PlanStep& step : plan.steps) lines.push_back(step.describe());
  return lines;
}

const ReleaseManifest kCounterV1 = release("1.0.0", {{"counter", "1.0.0"}});
const ReleaseManifest kCounterV2 = release("2.0.0", {{"counter", "2.0.0", 'b'}});

}  // namespace

TEST_CASE("An upgrade with load_module swaps the code of the changed module", "[planner]") {
  const Appups appups =
      Appups().add("counter", "2.0.0", R"([{"from": "1.0.0", "instructions": [{"op": "load_module"}]}])");
  const Plan plan = make_plan(kCounterV1, kCounterV2, appups.source());

  CHECK(plan.direction == Direction::Upgrade);
  CHECK(plan.release_name == "arena");
  CHECK(plan.from_release == "1.0.0");
  CHECK(plan.to_release == "2.0.0");
  REQUIRE(plan.steps.size() == 1);
  const PlanStep& step = plan.steps[0];
  CHECK(step.kind == StepKind::LoadModule);
  CHECK(step.module == "counter");
  CHECK(step.direction == Direction::Upgrade);
  CHECK(step.from_version == "1.0.0");
  CHECK(step.to_version == "2.0.0");
  REQUIRE(step.code);
  CHECK(step.code->version == "2.0.0");
  CHECK(step.code->file == "/releases/arena-2.0.0/modules/counter-2.0.0.so");
  CHECK_FALSE(step.timeout);
  CHECK(step.origin == "counter-2.0.0.appup.json up[0].instructions[0]");
  CHECK(step.describe() == "load_module counter 1.0.0 -> 2.0.0");
}

TEST_CASE("An update step carries extra and timeout", "[planner]") {
  const Appups appups = Appups().add(
      "counter", "2.0.0",
      R"([{"from": "1.0.0", "instructions": [{"op": "update", "extra": {"bonus": 5}, "timeout_ms": 100}]}])");
  const Plan plan = make_plan(kCounterV1, kCounterV2, appups.source());

  REQUIRE(plan.steps.size() == 1);
  const PlanStep& step = plan.steps[0];
  CHECK(step.kind == StepKind::Update);
  CHECK(step.extra == json{{"bonus", 5}});
  CHECK(step.timeout == std::chrono::milliseconds(100));
  CHECK(step.describe() == R"(update counter 1.0.0 -> 2.0.0 (extra {"bonus":5}, timeout 100ms))");
}

TEST_CASE("A downgrade uses the down entry of the newer (current) version's appup", "[planner]") {
  // Only 2.0.0 ships an appup here: the planner must never ask for 1.0.0's.
  const Appups appups = Appups().add("counter", "2.0.0", R"([{"from": "1.0.0", "instructions": [{"op": "update"}]}])",
                                     R"([{"to": "1.0.0", "instructions": [{"op": "update", "extra": "drop bonus"}]}])");
  const Plan plan = make_plan(kCounterV2, kCounterV1, appups.source());

  CHECK(plan.direction == Direction::Downgrade);
  REQUIRE(plan.steps.size() == 1);
  const PlanStep& step = plan.steps[0];
  CHECK(step.kind == StepKind::Update);
  CHECK(step.direction == Direction::Downgrade);
  CHECK(step.from_version == "2.0.0");
  CHECK(step.to_version == "1.0.0");
  CHECK(step.code->version == "1.0.0");
  CHECK(step.extra == "drop bonus");
  CHECK(step.origin == "counter-2.0.0.appup.json down[0].instructions[0]");
  CHECK(plan.describe() ==
        "downgrade arena 2.0.0 -> 1.0.0 (1 step)\n"
        "  1. update counter 2.0.0 -> 1.0.0 (extra \"drop bonus\")  [counter-2.0.0.appup.json "
        "down[0].instructions[0]]\n");
}

TEST_CASE("A regex 'from' selects the entry for any matching old version", "[planner]") {
  const Appups appups = Appups().add("counter", "2.0.0", R"([
      {"from": "1.0.0", "instructions": [{"op": "restart_module"}]},
      {"from": {"regex": "1\\.1\\..*"}, "instructions": [{"op": "load_module"}]}])");
  const Plan plan = make_plan(release("1.0.0", {{"counter", "1.1.7"}}), kCounterV2, appups.source());

  REQUIRE(plan.steps.size() == 1);
  CHECK(plan.steps[0].kind == StepKind::LoadModule);
  CHECK(plan.steps[0].from_version == "1.1.7");
  CHECK(plan.steps[0].origin == "counter-2.0.0.appup.json up[1].instructions[0]");
}

TEST_CASE("No matching up entry is a PlanError naming module, versions and file", "[planner]") {
  const Appups appups =
      Appups().add("counter", "2.0.0", R"([{"from": {"regex": "1\\.1\\..*"}, "instructions": [{"op": "update"}]}])");
  CHECK_THROWS_MATCHES(make_plan(kCounterV1, kCounterV2, appups.source()), PlanError,
                       Catch::Message("module counter: no 'up' entry in counter-2.0.0.appup.json matches 1.0.0 "
                                      "(upgrading counter 1.0.0 -> 2.0.0)"));
}

TEST_CASE("No matching down entry is a PlanError naming module, versions and file", "[planner]") {
  const Appups appups = Appups().add("counter", "2.0.0", R"([{"from": "1.0.0", "instructions": [{"op": "update"}]}])");
  CHECK_THROWS_MATCHES(make_plan(kCounterV2, kCounterV1, appups.source()), PlanError,
                       Catch::Message("module counter: no 'down' entry in counter-2.0.0.appup.json matches 1.0.0 "
                                      "(downgrading counter 2.0.0 -> 1.0.0)"));
}

TEST_CASE("A changed module without an appup is a PlanError", "[planner]") {
  const ReleaseManifest target = release("2.0.0", {{"counter", "2.0.0", 'b', {}, false}});
  CHECK_THROWS_MATCHES(make_plan(kCounterV1, target, Appups().source()), PlanError,
                       Catch::Message("module counter: upgrading counter 1.0.0 -> 2.0.0 needs an appup, but counter "
                                      "2.0.0 ships without one"));
}

TEST_CASE("An appup shipped with the wrong module version is an InputError naming the file", "[planner]") {
  Appups appups;
  appups.add("counter", "1.9.0", R"([{"from": "1.0.0", "instructions": [{"op": "update"}]}])");
  const AppupSource wrong_version = [&](const ModuleEntry&) {
    return appups.source()({"counter", "1.9.0", {}, {}, {}, {}});
  };
  try {
    make_plan(kCounterV1, kCounterV2, wrong_version);
    FAIL("planned with an appup of another version");
  } catch (const InputError& e) {
    CHECK(e.file() == "counter-1.9.0.appup.json");
    CHECK(e.field() == "version");
    CHECK(e.problem() == "is 1.9.0 but the release ships this appup with counter 2.0.0");
  }
}

TEST_CASE("An entry that never changes its module's code is a PlanError", "[planner]") {
  const Appups appups =
      Appups().add("counter", "2.0.0", R"([{"from": "1.0.0", "instructions": [{"op": "apply", "task": "reindex"}]}])");
  CHECK_THROWS_MATCHES(make_plan(kCounterV1, kCounterV2, appups.source()), PlanError,
                       Catch::Message("module counter: counter-2.0.0.appup.json up[0]: instructions never change the "
                                      "code of counter (add load_module, update or restart_module)"));
}

TEST_CASE("Modules only in one release are added and deleted implicitly, deletions last", "[planner]") {
  const ReleaseManifest current = release("1.0.0", {{"legacy", "1.0.0"}, {"counter", "1.0.0"}});
  const ReleaseManifest target = release("1.1.0", {{"counter", "1.0.0"}, {"chat", "1.0.0"}});
  const Plan plan = make_plan(current, target, Appups().source());

  CHECK(described(plan) == std::vector<std::string>{"add_module chat 1.0.0", "delete_module legacy 1.0.0"});
  CHECK(plan.steps[0].origin == "manifest");
  REQUIRE(plan.steps[0].code);
  CHECK(plan.steps[0].code->file == "/releases/arena-1.1.0/modules/chat-1.0.0.so");
  CHECK(plan.steps[0].from_version.empty());
  CHECK(plan.steps[1].origin == "manifest");
  CHECK_FALSE(plan.steps[1].code);
  CHECK(plan.steps[1].to_version.empty());
}

TEST_CASE("Instructions that add or delete modules replace the implicit steps, at their position", "[planner]") {
  const ReleaseManifest current = release("1.0.0", {{"counter", "1.0.0"}, {"legacy", "1.0.0"}});
  const ReleaseManifest target = release("2.0.0", {{"counter", "2.0.0", 'b'}, {"chat", "1.0.0"}});
  const Appups appups = Appups().add("counter", "2.0.0", R"([{"from": "1.0.0", "instructions": [
      {"op": "add_module", "module": "chat", "timeout_ms": 20},
      {"op": "update"},
      {"op": "delete_module", "module": "legacy"}]}])");
  const Plan plan = make_plan(current, target, appups.source());

  CHECK(described(plan) == std::vector<std::string>{"add_module chat 1.0.0 (timeout 20ms)",
                                                    "update counter 1.0.0 -> 2.0.0", "delete_module legacy 1.0.0"});
  CHECK(plan.steps[0].origin == "counter-2.0.0.appup.json up[0].instructions[0]");
  CHECK(plan.steps[2].origin == "counter-2.0.0.appup.json up[0].instructions[2]");
}

TEST_CASE("add_module and delete_module must match the two releases", "[planner]") {
  const ReleaseManifest current = release("1.0.0", {{"counter", "1.0.0"}, {"chat", "1.0.0"}});
  const ReleaseManifest target = release("2.0.0", {{"counter", "2.0.0", 'b'}, {"chat", "1.0.0"}});
  SECTION("adding a module the current release already runs") {
    const Appups appups = Appups().add(
        "counter", "2.0.0",
        R"([{"from": "1.0.0", "instructions": [{"op": "update"}, {"op": "add_module", "module": "chat"}]}])");
    CHECK_THROWS_MATCHES(make_plan(current, target, appups.source()), PlanError,
                         Catch::Message("module counter: counter-2.0.0.appup.json up[0].instructions[1] adds chat, "
                                        "which the current release already runs"));
  }
  SECTION("deleting a module the target release still has") {
    const Appups appups = Appups().add(
        "counter", "2.0.0",
        R"([{"from": "1.0.0", "instructions": [{"op": "update"}, {"op": "delete_module", "module": "chat"}]}])");
    CHECK_THROWS_MATCHES(make_plan(current, target, appups.source()), PlanError,
                         Catch::Message("module counter: counter-2.0.0.appup.json up[0].instructions[1] deletes chat, "
                                        "which the target release still has"));
  }
  SECTION("adding a module the target release does not have") {
    const Appups appups = Appups().add(
        "counter", "2.0.0",
        R"([{"from": "1.0.0", "instructions": [{"op": "update"}, {"op": "add_module", "module": "score"}]}])");
    CHECK_THROWS_WITH(make_plan(current, target, appups.source()),
                      Catch::Contains("adds score, which the target release does not have"));
  }
}

TEST_CASE("A module added by two instructions is a PlanError", "[planner]") {
  const ReleaseManifest current = release("1.0.0", {{"counter", "1.0.0"}, {"score", "1.0.0"}});
  const ReleaseManifest target =
      release("2.0.0", {{"counter", "2.0.0", 'b'}, {"score", "2.0.0", 'b'}, {"chat", "1.0.0"}});
  const char* adds_chat =
      R"([{"from": "1.0.0", "instructions": [{"op": "update"}, {"op": "add_module", "module": "chat"}]}])";
  const Appups appups = Appups().add("counter", "2.0.0", adds_chat).add("score", "2.0.0", adds_chat);
  CHECK_THROWS_MATCHES(make_plan(current, target, appups.source()), PlanError,
                       Catch::Message("module chat is added twice: by counter-2.0.0.appup.json up[0].instructions[1] "
                                      "and by score-2.0.0.appup.json up[0].instructions[1]"));
}

TEST_CASE("apply steps keep their appup position and carry the module's versions", "[planner]") {
  const ReleaseManifest current = release("1.0.0", {{"counter", "1.0.0"}, {"chat", "1.0.0"}});
  const ReleaseManifest target = release("2.0.0", {{"counter", "2.0.0", 'b'}, {"chat", "1.0.0"}});
  const Appups appups = Appups().add("counter", "2.0.0", R"([{"from": "1.0.0", "instructions": [
      {"op": "apply", "task": "flush"},
      {"op": "update"},
      {"op": "apply", "task": "reindex", "args": {"full": true}, "timeout_ms": 5000},
      {"op": "apply", "task": "announce", "module": "chat"}]}])");
  const Plan plan = make_plan(current, target, appups.source());

  CHECK(described(plan) ==
        std::vector<std::string>{"apply counter task 'flush'", "update counter 1.0.0 -> 2.0.0",
                                 R"(apply counter task 'reindex' (args {"full":true}, timeout 5000ms))",
                                 "apply chat task 'announce'"});
  CHECK(plan.steps[0].from_version == "1.0.0");
  CHECK(plan.steps[0].to_version == "2.0.0");
  CHECK_FALSE(plan.steps[0].code);
  CHECK(plan.steps[2].task_args == json{{"full", true}});
  CHECK(plan.steps[3].from_version == "1.0.0");
  CHECK(plan.steps[3].to_version == "1.0.0");
}

TEST_CASE("apply on a module in neither release is a PlanError", "[planner]") {
  const Appups appups = Appups().add(
      "counter", "2.0.0",
      R"([{"from": "1.0.0", "instructions": [{"op": "update"}, {"op": "apply", "task": "t", "module": "ghost"}]}])");
  CHECK_THROWS_WITH(make_plan(kCounterV1, kCounterV2, appups.source()),
                    "module counter: counter-2.0.0.appup.json up[0].instructions[1] applies a task to ghost, which is "
                    "in neither release");
}

TEST_CASE("A module's steps come after those of the modules it depends on", "[planner]") {
  // Manifest order is b, c, a; b depends on a, so a moves ahead of b while c keeps its place relative to b.
  const ReleaseManifest current = release("1.0.0", {{"b", "1.0.0"}, {"c", "1.0.0"}, {"a", "1.0.0"}});
  const ReleaseManifest target =
      release("2.0.0", {{"b", "2.0.0", 'b', {"a"}}, {"c", "2.0.0", 'b'}, {"a", "2.0.0", 'b'}});
  const char* load = R"([{"from": "1.0.0", "instructions": [{"op": "load_module"}]}])";
  const Appups appups = Appups().add("a", "2.0.0", load).add("b", "2.0.0", load).add("c", "2.0.0", load);
  const Plan plan = make_plan(current, target, appups.source());

  CHECK(described(plan) == std::vector<std::string>{"load_module c 1.0.0 -> 2.0.0", "load_module a 1.0.0 -> 2.0.0",
                                                    "load_module b 1.0.0 -> 2.0.0"});
}

TEST_CASE("An instruction's depends_on orders its whole group", "[planner]") {
  const ReleaseManifest current = release("1.0.0", {{"a", "1.0.0"}, {"b", "1.0.0"}});
  const ReleaseManifest target = release("2.0.0", {{"a", "2.0.0", 'b'}, {"b", "2.0.0", 'b'}});
  const Appups appups =
      Appups()
          .add(
              "a", "2.0.0",
              R"([{"from": "1.0.0", "instructions": [{"op": "update"}, {"op": "apply", "task": "sync", "depends_on": ["b"]}]}])")
          .add("b", "2.0.0", R"([{"from": "1.0.0", "instructions": [{"op": "update"}]}])");
  const Plan plan = make_plan(current, target, appups.source());

  CHECK(described(plan) ==
        std::vector<std::string>{"update b 1.0.0 -> 2.0.0", "update a 1.0.0 -> 2.0.0", "apply a task 'sync'"});
}

TEST_CASE("Implicitly added modules wait for their dependencies", "[planner]") {
  const ReleaseManifest current = release("1.0.0", {{"counter", "1.0.0"}});
  const ReleaseManifest target = release("2.0.0", {{"chat", "1.0.0", 'a', {"counter"}}, {"counter", "2.0.0", 'b'}});
  const Appups appups = Appups().add("counter", "2.0.0", R"([{"from": "1.0.0", "instructions": [{"op": "update"}]}])");
  const Plan plan = make_plan(current, target, appups.source());

  CHECK(described(plan) == std::vector<std::string>{"update counter 1.0.0 -> 2.0.0", "add_module chat 1.0.0"});
}

TEST_CASE("A dependency cycle is a PlanError naming the cycle", "[planner]") {
  const ReleaseManifest current = release("1.0.0", {{"x", "1.0.0"}, {"a", "1.0.0"}, {"b", "1.0.0"}});
  const ReleaseManifest target =
      release("2.0.0", {{"x", "2.0.0", 'b', {"a"}}, {"a", "2.0.0", 'b', {"b"}}, {"b", "2.0.0", 'b'}});
  const Appups appups =
      Appups()
          .add("x", "2.0.0", R"([{"from": "1.0.0", "instructions": [{"op": "load_module"}]}])")
          .add("a", "2.0.0", R"([{"from": "1.0.0", "instructions": [{"op": "load_module"}]}])")
          .add("b", "2.0.0", R"([{"from": "1.0.0", "instructions": [{"op": "update", "depends_on": ["a"]}]}])");
  CHECK_THROWS_MATCHES(make_plan(current, target, appups.source()), PlanError,
                       Catch::Message("dependency cycle: a -> b -> a"));
}

TEST_CASE("Deletions run last, dependents before their dependencies", "[planner]") {
  const ReleaseManifest current = release(
      "1.0.0",
      {{"base", "1.0.0"}, {"mid", "1.0.0", 'a', {"base"}}, {"top", "1.0.0", 'a', {"mid"}}, {"counter", "1.0.0"}});
  const Appups appups =
      Appups().add("counter", "2.0.0", R"([{"from": "1.0.0", "instructions": [{"op": "load_module"}]}])");
  const Plan plan = make_plan(current, kCounterV2, appups.source());

  CHECK(described(plan) == std::vector<std::string>{"load_module counter 1.0.0 -> 2.0.0", "delete_module top 1.0.0",
                                                    "delete_module mid 1.0.0", "delete_module base 1.0.0"});
}

TEST_CASE("Depending on a module the plan deletes implicitly is a PlanError", "[planner]") {
  const ReleaseManifest current = release("1.0.0", {{"counter", "1.0.0"}, {"legacy", "1.0.0"}});
  const Appups appups = Appups().add(
      "counter", "2.0.0", R"([{"from": "1.0.0", "instructions": [{"op": "update", "depends_on": ["legacy"]}]}])");
  CHECK_THROWS_WITH(
      make_plan(current, kCounterV2, appups.source()),
      Catch::StartsWith("module counter: counter-2.0.0.appup.json up[0].instructions[0] depends on legacy, "
                        "which this plan deletes, and deletions run last"));
}

TEST_CASE("Dependencies on unchanged modules impose no order", "[planner]") {
  const ReleaseManifest current = release("1.0.0", {{"counter", "1.0.0"}, {"chat", "1.0.0"}});
  const ReleaseManifest target = release("2.0.0", {{"counter", "2.0.0", 'b', {"chat"}}, {"chat", "1.0.0"}});
  const Appups appups = Appups().add(
      "counter", "2.0.0", R"([{"from": "1.0.0", "instructions": [{"op": "update", "depends_on": ["nobody"]}]}])");
  CHECK(described(make_plan(current, target, appups.source())) ==
        std::vector<std::string>{"update counter 1.0.0 -> 2.0.0"});
}

TEST_CASE("A blue_green-only entry yields a load_module step and its reason", "[planner]") {
  const Appups appups =
      Appups().add("counter", "2.0.0",
                   R"([{"from": "1.0.0", "instructions": [{"op": "blue_green", "reason": "new wire format"}]}])");
  const Plan plan = make_plan(kCounterV1, kCounterV2, appups.source());
  CHECK(plan.blue_green == std::vector<std::string>{"module counter: counter-2.0.0.appup.json up[0].instructions[0] "
                                                    "requires a blue-green handover (new wire format)"});
  REQUIRE(plan.steps.size() == 1);
  CHECK(plan.steps[0].kind == StepKind::LoadModule);
  CHECK(plan.steps[0].from_version == "1.0.0");
  CHECK(plan.steps[0].to_version == "2.0.0");
  CHECK(plan.steps[0].origin == "counter-2.0.0.appup.json up[0] (blue_green)");
  CHECK(plan.describe() ==
        "upgrade arena 1.0.0 -> 2.0.0 (1 step)\n"
        "  1. load_module counter 1.0.0 -> 2.0.0  [counter-2.0.0.appup.json up[0] (blue_green)]\n"
        "  needs a blue-green handover:\n"
        "    - module counter: counter-2.0.0.appup.json up[0].instructions[0] requires a blue-green handover "
        "(new wire format)\n");
  CHECK(plan.to_json()["blue_green"] == json::array({plan.blue_green[0]}));
}

TEST_CASE("A blue_green instruction beside others keeps their steps", "[planner]") {
  const Appups appups = Appups().add("counter", "2.0.0",
                                     R"([{"from": "1.0.0", "instructions": [
          {"op": "apply", "task": "flush"}, {"op": "blue_green"}, {"op": "update", "extra": {"k": 1}}]}])");
  const Plan plan = make_plan(kCounterV1, kCounterV2, appups.source());
  CHECK(described(plan) ==
        std::vector<std::string>{"apply counter task 'flush'", "update counter 1.0.0 -> 2.0.0 (extra {\"k\":1})"});
  CHECK(plan.steps[1].origin == "counter-2.0.0.appup.json up[0].instructions[2]");
  // No reason given: the line stops after "handover".
  CHECK(plan.blue_green == std::vector<std::string>{"module counter: counter-2.0.0.appup.json up[0].instructions[1] "
                                                    "requires a blue-green handover"});
}

TEST_CASE("A plan without blue_green instructions has no reasons", "[planner]") {
  const Appups appups =
      Appups().add("counter", "2.0.0", R"([{"from": "1.0.0", "instructions": [{"op": "load_module"}]}])");
  const Plan plan = make_plan(kCounterV1, kCounterV2, appups.source());
  CHECK(plan.blue_green.empty());
  CHECK(plan.to_json()["blue_green"] == json::array());
  CHECK(plan.describe().find("blue-green") == std::string::npos);
}

TEST_CASE("An entry changing no code and holding no blue_green is still refused", "[planner]") {
  const Appups appups =
      Appups().add("counter", "2.0.0", R"([{"from": "1.0.0", "instructions": [{"op": "apply", "task": "t"}]}])");
  CHECK_THROWS_AS(make_plan(kCounterV1, kCounterV2, appups.source()), PlanError);
}

TEST_CASE("Same module version with another sha256 is refused", "[planner]") {
  const ReleaseManifest target = release("1.0.1", {{"counter", "1.0.0", 'c'}});
  CHECK_THROWS_MATCHES(
      make_plan(kCounterV1, target, Appups().source()), PlanError,
      Catch::Message("module counter keeps version 1.0.0 but its sha256 changed; bump its version so an "
                     "appup can describe the change"));
}

TEST_CASE("Equal release versions are refused", "[planner]") {
  CHECK_THROWS_MATCHES(
      make_plan(kCounterV1, kCounterV1, Appups().source()), PlanError,
      Catch::Message("already at release arena 1.0.0: current and target have the same version, so there "
                     "is nothing to plan"));
}

TEST_CASE("Releases with different names are refused", "[planner]") {
  json other = manifest_json("2.0.0", {{"counter", "2.0.0"}});
  other["release"] = "lobby";
  CHECK_THROWS_MATCHES(
      make_plan(kCounterV1, parse_manifest(other, "/r", "manifest.json"), Appups().source()), PlanError,
      Catch::Message("cannot plan from release 'arena' to release 'lobby': they are different releases"));
}

TEST_CASE("Unchanged modules produce no steps", "[planner]") {
  const Plan plan = make_plan(kCounterV1, release("1.0.1", {{"counter", "1.0.0"}}), Appups().source());
  CHECK(plan.steps.empty());
  CHECK(plan.describe() == "upgrade arena 1.0.0 -> 1.0.1 (0 steps)\n");
}

TEST_CASE("Plan::describe and to_json list every step", "[planner]") {
  const ReleaseManifest current = release("1.0.0", {{"counter", "1.0.0"}});
  const ReleaseManifest target = release("2.0.0", {{"counter", "2.0.0", 'b'}, {"chat", "1.0.0"}});
  const Appups appups = Appups().add("counter", "2.0.0", R"([{"from": "1.0.0", "instructions": [
      {"op": "update", "extra": {"bonus": 5}, "timeout_ms": 100}, {"op": "apply", "task": "reindex"}]}])");
  const Plan plan = make_plan(current, target, appups.source());

  CHECK(plan.describe() ==
        "upgrade arena 1.0.0 -> 2.0.0 (3 steps)\n"
        "  1. update counter 1.0.0 -> 2.0.0 (extra {\"bonus\":5}, timeout 100ms)  [counter-2.0.0.appup.json "
        "up[0].instructions[0]]\n"
        "  2. apply counter task 'reindex'  [counter-2.0.0.appup.json up[0].instructions[1]]\n"
        "  3. add_module chat 1.0.0  [manifest]\n");

  const json document = plan.to_json();
  CHECK(document["direction"] == "upgrade");
  CHECK(document["release"] == "arena");
  CHECK(document["from"] == "1.0.0");
  CHECK(document["to"] == "2.0.0");
  REQUIRE(document["steps"].size() == 3);
  CHECK(document["steps"][0] == json{{"kind", "update"},
                                     {"module", "counter"},
                                     {"direction", "upgrade"},
                                     {"from", "1.0.0"},
                                     {"to", "2.0.0"},
                                     {"file", "/releases/arena-2.0.0/modules/counter-2.0.0.so"},
                                     {"sha256", std::string(64, 'b')},
                                     {"extra", {{"bonus", 5}}},
                                     {"timeout_ms", 100},
                                     {"origin", "counter-2.0.0.appup.json up[0].instructions[0]"}});
  CHECK(document["steps"][1] == json{{"kind", "apply"},
                                     {"module", "counter"},
                                     {"direction", "upgrade"},
                                     {"from", "1.0.0"},
                                     {"to", "2.0.0"},
                                     {"task", "reindex"},
                                     {"args", nullptr},
                                     {"origin", "counter-2.0.0.appup.json up[0].instructions[1]"}});
  CHECK(document["steps"][2]["kind"] == "add_module");
  CHECK_FALSE(document["steps"][2].contains("from"));
}
