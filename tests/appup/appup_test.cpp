#include <hotswap/appup/appup.hpp>
#include <hotswap/appup/error.hpp>
#include <hotswap/appup/json_reader.hpp>

#include <catch2/catch.hpp>

using hotswap::appup::Appup;
using hotswap::appup::InputError;
using hotswap::appup::Op;
using hotswap::appup::parse_appup;
using hotswap::appup::parse_json_text;
using nlohmann::json;

namespace {

// One malformed appup and what the error must say about it.
struct BadAppup {
  std::string text;
  std::string field;    // InputError::field(), exactly
  std::string problem;  // a piece of InputError::problem()
};

std::string with_up(const std::string& up) { return R"({"module": "counter", "version": "2.0.0", "up": )" + up + "}"; }

std::string with_instructions(const std::string& instructions) {
  return with_up(R"([{"from": "1.0.0", "instructions": )" + instructions + "}]");
}

// Parses the appup from its text, so the message is checked as an operator sees it
// (reading the file is the host's: tests/ops/release_files_tests.cpp).
void check_rejected(const BadAppup& bad) {
  CAPTURE(bad.text);
  const std::string file = "/releases/arena/appups/counter-2.0.0.appup.json";
  try {
    parse_appup(parse_json_text(bad.text, file), file);
    FAIL("accepted a malformed appup");
  } catch (const InputError& e) {
    CAPTURE(e.what());
    CHECK(e.file() == file);
    CHECK(e.field() == bad.field);
    CHECK_THAT(e.problem(), Catch::Contains(bad.problem));
    CHECK_THAT(e.what(), Catch::StartsWith(file + ": " + bad.field + (bad.field.empty() ? "" : ": ")));
    CHECK_THAT(e.what(), Catch::EndsWith(e.problem()));
  }
}

}  // namespace

TEST_CASE("parse_appup reads every field of every op", "[appup]") {
  const Appup appup = parse_appup(json::parse(R"({
    "module": "counter", "version": "2.0.0",
    "up": [
      {"from": "1.0.0", "instructions": [
        {"op": "add_module", "module": "chat", "timeout_ms": 50},
        {"op": "update", "extra": {"bonus": 5}, "timeout_ms": 100, "depends_on": ["chat", "score"]},
        {"op": "apply", "task": "reindex", "args": [1, 2]},
        {"op": "apply", "task": "warm_cache", "module": "chat"},
        {"op": "delete_module", "module": "legacy"}
      ]},
      {"from": {"regex": "1\\.1\\..*"}, "instructions": [{"op": "load_module"}]},
      {"from": "1.2.0", "instructions": [{"op": "restart_module"}, {"op": "blue_green", "reason": "new socket layout"}]}
    ],
    "down": [{"to": "1.0.0", "instructions": [{"op": "update"}]}]
  })"),
                                  "counter.appup.json");
  CHECK(appup.source == "counter.appup.json");
  CHECK(appup.module == "counter");
  CHECK(appup.version == "2.0.0");
  REQUIRE(appup.up.size() == 3);
  REQUIRE(appup.down.size() == 1);

  const auto& first = appup.up[0].instructions;
  REQUIRE(first.size() == 5);
  CHECK(appup.up[0].field == "up[0]");
  CHECK(first[0].op == Op::AddModule);
  CHECK(first[0].module == "chat");
  CHECK(first[0].timeout == std::chrono::milliseconds(50));
  CHECK(first[1].op == Op::Update);
  CHECK(first[1].module == "counter");
  CHECK(first[1].extra == json{{"bonus", 5}});
  CHECK(first[1].depends_on == std::vector<std::string>{"chat", "score"});
  CHECK(first[1].field == "up[0].instructions[1]");
  CHECK(first[2].op == Op::Apply);
  CHECK(first[2].module == "counter");
  CHECK(first[2].task == "reindex");
  CHECK(first[2].args == json::array({1, 2}));
  CHECK_FALSE(first[2].timeout);
  CHECK(first[3].module == "chat");
  CHECK(first[3].args.is_null());
  CHECK(first[4].op == Op::DeleteModule);
  CHECK(first[4].module == "legacy");

  CHECK(appup.up[1].versions.is_regex());
  CHECK(appup.up[2].instructions[1].op == Op::BlueGreen);
  CHECK(appup.up[2].instructions[1].reason == "new socket layout");
  CHECK(appup.down[0].field == "down[0]");
  CHECK(appup.down[0].instructions[0].extra.is_null());
}

TEST_CASE("up and down default to empty", "[appup]") {
  const Appup appup = parse_appup(json{{"module", "counter"}, {"version", "1.0.0"}}, "counter.appup.json");
  CHECK(appup.up.empty());
  CHECK(appup.down.empty());
  CHECK(appup.find_up("0.9.0") == nullptr);
  CHECK(appup.find_down("0.9.0") == nullptr);
}

TEST_CASE("find_up and find_down return the first matching entry in file order", "[appup]") {
  const Appup appup = parse_appup(json::parse(R"({
    "module": "counter", "version": "2.0.0",
    "up": [
      {"from": "1.1.5", "instructions": [{"op": "restart_module"}]},
      {"from": {"regex": "1\\.1\\..*"}, "instructions": [{"op": "load_module"}]},
      {"from": {"regex": ".*"}, "instructions": [{"op": "update"}]}
    ],
    "down": [
      {"to": {"regex": "1\\..*"}, "instructions": [{"op": "update"}]},
      {"to": "1.0.0", "instructions": [{"op": "restart_module"}]}
    ]
  })"),
                                  "counter.appup.json");
  CHECK(appup.find_up("1.1.5") == &appup.up[0]);
  CHECK(appup.find_up("1.1.6") == &appup.up[1]);
  CHECK(appup.find_up("0.1.0") == &appup.up[2]);
  CHECK(appup.find_down("1.0.0") == &appup.down[0]);
  CHECK(appup.find_down("0.9.0") == nullptr);
}

TEST_CASE("Malformed appup documents are rejected naming the file and field", "[appup]") {
  check_rejected(GENERATE(values<BadAppup>({
      {R"({"module": "counter",)", "", "invalid JSON: "},
      {"", "", "invalid JSON: "},
      {"[1, 2]", "", "expected a JSON object, got array"},
      {R"({"version": "2.0.0"})", "module", "missing"},
      {R"({"module": "counter"})", "version", "missing"},
      {R"({"module": "Counter", "version": "2.0.0"})", "module", "'Counter' is not a valid name"},
      {R"({"module": 7, "version": "2.0.0"})", "module", "expected a string, got number"},
      {R"({"module": "counter", "version": "2.0"})", "version", "'2.0' is not a semantic version"},
      {R"({"module": "counter", "version": "2.0.0", "upp": []})", "upp",
       "unknown key (expected one of: module, version, up, down)"},
      {with_up("{}"), "up", "expected an array, got object"},
      {R"({"module": "counter", "version": "2.0.0", "down": "1.0.0"})", "down", "expected an array, got string"},
  })));
}

TEST_CASE("Malformed appup entries are rejected naming the file and field", "[appup]") {
  check_rejected(GENERATE(values<BadAppup>({
      {with_up("[1]"), "up[0]", "expected a JSON object, got number"},
      {with_up(R"([{"instructions": []}])"), "up[0].from", "missing"},
      {with_up(R"([{"to": "1.0.0", "instructions": []}])"), "up[0].to",
       "unknown key (expected one of: from, instructions)"},
      {R"({"module": "counter", "version": "2.0.0", "down": [{"from": "1.0.0", "instructions": []}]})", "down[0].from",
       "unknown key"},
      {R"({"module": "counter", "version": "2.0.0", "down": [{"instructions": []}]})", "down[0].to", "missing"},
      {with_up(R"([{"from": "1.0", "instructions": []}])"), "up[0].from", "'1.0' is not a semantic version"},
      {with_up(R"([{"from": 1, "instructions": []}])"), "up[0].from",
       "expected a version string or {\"regex\": \"...\"}, got number"},
      {with_up(R"([{"from": {"regex": "1.("}, "instructions": []}])"), "up[0].from.regex",
       "invalid regular expression '1.('"},
      {with_up(R"([{"from": {"regex": 1}, "instructions": []}])"), "up[0].from.regex", "expected a string"},
      {with_up(R"([{"from": {}, "instructions": []}])"), "up[0].from.regex", "missing"},
      {with_up(R"([{"from": {"regex": "1\\..*", "flags": "i"}, "instructions": []}])"), "up[0].from.flags",
       "unknown key (expected one of: regex)"},
      {with_up(R"([{"from": "1.0.0"}])"), "up[0].instructions", "missing"},
      {with_up(R"([{"from": "1.0.0", "instructions": {"op": "update"}}])"), "up[0].instructions",
       "expected an array, got object"},
      {with_up(
           R"([{"from": "1.0.0", "instructions": [{"op": "update"}]}, {"from": "1.1.0", "instructions": [{"op": "update", "timeout_ms": 0}]}])"),
       "up[1].instructions[0].timeout_ms", "positive integer"},
  })));
}

TEST_CASE("Malformed appup instructions are rejected naming the file and field", "[appup]") {
  check_rejected(GENERATE(values<BadAppup>({
      {with_instructions(R"(["update"])"), "up[0].instructions[0]", "expected a JSON object, got string"},
      {with_instructions(R"([{"timeout_ms": 5}])"), "up[0].instructions[0].op", "missing"},
      {with_instructions(R"([{"op": "upgrade"}])"), "up[0].instructions[0].op",
       "unknown op 'upgrade' (expected one of: load_module, update,"},
      {with_instructions(R"([{"op": 3}])"), "up[0].instructions[0].op", "expected a string, got number"},
      {with_instructions(R"([{"op": "load_module", "extra": {}}])"), "up[0].instructions[0].extra",
       "not a field of load_module (allowed: op, timeout_ms, depends_on)"},
      {with_instructions(R"([{"op": "update", "task": "x"}])"), "up[0].instructions[0].task",
       "not a field of update (allowed: op, timeout_ms, depends_on, extra)"},
      {with_instructions(R"([{"op": "update", "timeout_ms": 0}])"), "up[0].instructions[0].timeout_ms",
       "expected a positive integer number of milliseconds, got 0"},
      {with_instructions(R"([{"op": "update", "timeout_ms": -5}])"), "up[0].instructions[0].timeout_ms",
       "positive integer"},
      {with_instructions(R"([{"op": "update", "timeout_ms": 1.5}])"), "up[0].instructions[0].timeout_ms",
       "positive integer"},
      {with_instructions(R"([{"op": "update", "timeout_ms": "100"}])"), "up[0].instructions[0].timeout_ms",
       "positive integer"},
      {with_instructions(R"([{"op": "update", "timeout_ms": 18446744073709551615}])"),
       "up[0].instructions[0].timeout_ms", "positive integer"},
      {with_instructions(R"([{"op": "update", "depends_on": "chat"}])"), "up[0].instructions[0].depends_on",
       "expected an array, got string"},
      {with_instructions(R"([{"op": "update", "depends_on": ["chat", "Chat"]}])"),
       "up[0].instructions[0].depends_on[1]", "'Chat' is not a valid name"},
      {with_instructions(R"([{"op": "update", "depends_on": ["../chat"]}])"), "up[0].instructions[0].depends_on[0]",
       "is not a valid name"},
      {with_instructions(R"([{"op": "update", "depends_on": [1]}])"), "up[0].instructions[0].depends_on[0]",
       "expected a string, got number"},
      {with_instructions(R"([{"op": "update"}, {"op": "apply"}])"), "up[0].instructions[1].task", "missing"},
      {with_instructions(R"([{"op": "update"}, {"op": "apply", "task": ""}])"), "up[0].instructions[1].task",
       "is not a valid name"},
      {with_instructions(R"([{"op": "update"}, {"op": "apply", "task": "x", "extra": 1}])"),
       "up[0].instructions[1].extra", "not a field of apply"},
      {with_instructions(R"([{"op": "load_module"}, {"op": "update"}])"), "up[0].instructions[1]",
       "second code-change instruction (update) in one entry; up[0].instructions[0] (load_module) already changes the "
       "code"},
      {with_instructions(R"([{"op": "restart_module"}, {"op": "apply", "task": "t"}, {"op": "restart_module"}])"),
       "up[0].instructions[2]", "second code-change instruction"},
      {with_instructions(R"([{"op": "update", "module": "chat"}])"), "up[0].instructions[0].module",
       "update always acts on the appup's own module (counter); 'module' is not allowed here"},
      {with_instructions(R"([{"op": "load_module", "module": "counter"}])"), "up[0].instructions[0].module",
       "always acts on the appup's own module"},
      {with_instructions(R"([{"op": "update"}, {"op": "add_module", "module": "Chat"}])"),
       "up[0].instructions[1].module", "is not a valid name"},
      {with_instructions(R"([{"op": "update"}, {"op": "delete_module", "module": 1}])"), "up[0].instructions[1].module",
       "expected a string"},
      {with_instructions(R"([{"op": "blue_green", "reason": 1}])"), "up[0].instructions[0].reason",
       "expected a string, got number"},
  })));
}

TEST_CASE("parse_appup names the given source in its errors", "[appup]") {
  CHECK_THROWS_WITH(parse_appup(json{{"module", "counter"}}, "memory:counter"), "memory:counter: version: missing");
}

// std::regex overflowed the stack compiling these (the host died with SIGSEGV, issue 8):
// they are refused when the appup is read, naming the field and without repeating the expression.
TEST_CASE("Version patterns over the limits are refused when the appup is read", "[appup]") {
  const auto with_regex = [](const std::string& expression) {
    return with_up(R"([{"from": {"regex": ")" + expression + R"("}, "instructions": []}])");
  };
  check_rejected({with_regex(std::string(100'000, 'a')), "up[0].from.regex",
                  "invalid regular expression: expression of 100000 characters is over the limit of 256"});
  check_rejected({with_regex(std::string(20'000, '(') + "1" + std::string(20'000, ')')), "up[0].from.regex",
                  "invalid regular expression: expression of 40001 characters is over the limit of 256"});
  check_rejected({with_regex("\\\\pL{1000}"), "up[0].from.regex",
                  "invalid regular expression '\\pL{1000}': expression compiles to more than 1024 KiB"});
  check_rejected({with_up(R"([{"from": "1.0.0-)" + std::string(300, 'a') + R"(", "instructions": []}])"), "up[0].from",
                  "version of 306 characters is over the limit of 256"});
}
