#include "ops_support.hpp"
#include "release/runtime_config.hpp"

#include <catch2/catch.hpp>

#include <map>

using hotswap::host::ConfigError;
using hotswap::host::EnvLookup;
using hotswap::host::Framing;
using hotswap::host::load_runtime_config;
using hotswap::host::parse_runtime_config;
using hotswap::host::RuntimeConfig;
using hotswap::host::substitute_environment;
using nlohmann::json;

namespace {

// A fixed environment, so the tests never depend on the machine's.
EnvLookup fake_env(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    const auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

const EnvLookup kEnv = fake_env({{"PORT", "7000"}, {"EMPTY", ""}, {"HOST", "0.0.0.0"}, {"WORD", "seven"}});

std::string substitute(const std::string& text) { return substitute_environment(text, kEnv, "runtime.json", "k"); }

// The message of the ConfigError that parsing `document` throws.
std::string parse_error(const json& document) {
  try {
    parse_runtime_config(document, "runtime.json", kEnv);
  } catch (const ConfigError& e) {
    return e.what();
  }
  FAIL("expected a ConfigError for " << document.dump());
  return {};
}

json valid_listener() { return {{"name", "game"}, {"port", 7000}, {"module", "arena"}}; }

}  // namespace

TEST_CASE("substitution replaces every reference form", "[config][env]") {
  const std::vector<std::pair<std::string, std::string>> table = {
      {"plain text", "plain text"},
      {"${PORT}", "7000"},
      {"port ${PORT}!", "port 7000!"},
      {"${HOST}:${PORT}", "0.0.0.0:7000"},
      {"${EMPTY}", ""},
      {"${MISSING:-8000}", "8000"},
      {"${EMPTY:-fallback}", "fallback"},  // :- also covers set-but-empty
      {"${PORT:-8000}", "7000"},
      {"${MISSING:-}", ""},
      {"${PORT:?port is required}", "7000"},
      {"cost: $$5", "cost: $5"},
      {"$$${PORT}", "$7000"},
      {"$PORT", "$PORT"},  // no braces: literal
      {"a $ b", "a $ b"},
      {"trailing $", "trailing $"},
      {"${MISSING:-a:-b}", "a:-b"},  // the default is literal text
  };
  for (const auto& [input, expected] : table) {
    CAPTURE(input);
    CHECK(substitute(input) == expected);
  }
}

TEST_CASE("substitution of an unset ${VAR} names the variable and the key", "[config][env]") {
  try {
    substitute_environment("${ARENA_PORT}", kEnv, "runtime.json", "listeners[0].port");
    FAIL("expected a ConfigError");
  } catch (const ConfigError& e) {
    CHECK(std::string(e.what()) == "runtime.json: listeners[0].port: environment variable ARENA_PORT is not set");
    CHECK(e.key() == "listeners[0].port");
    CHECK(e.file() == "runtime.json");
  }
}

TEST_CASE("substitution of ${VAR:?message} fails with the message when unset or empty", "[config][env]") {
  for (const std::string input : {"${SECRET:?set SECRET to the game key}", "${EMPTY:?set SECRET to the game key}"}) {
    CAPTURE(input);
    try {
      substitute(input);
      FAIL("expected a ConfigError");
    } catch (const ConfigError& e) {
      const std::string message = e.what();
      CHECK_THAT(message, Catch::Contains("set SECRET to the game key"));
      CHECK_THAT(message, Catch::Contains(input.find("EMPTY") != std::string::npos ? "EMPTY" : "SECRET"));
    }
  }
}

TEST_CASE("substitution refuses malformed references", "[config][env]") {
  const std::vector<std::pair<std::string, std::string>> table = {
      {"${PORT", "unterminated"},    {"x ${", "unterminated"},  {"${}", "malformed"},
      {"${1PORT}", "malformed"},     {"${PO-RT}", "malformed"}, {"${PORT:8000}", "malformed"},
      {"${PORT-8000}", "malformed"},
  };
  for (const auto& [input, problem] : table) {
    CAPTURE(input);
    CHECK_THROWS_WITH(substitute(input), Catch::Contains("runtime.json: k: ") && Catch::Contains(problem));
  }
}

TEST_CASE("process_environment reads the real environment", "[config][env]") {
  ::setenv("HOTSWAP_OPS_TEST_VAR", "42", 1);
  ::unsetenv("HOTSWAP_OPS_TEST_UNSET");
  const EnvLookup env = hotswap::host::process_environment();
  CHECK(env("HOTSWAP_OPS_TEST_VAR") == std::optional<std::string>("42"));
  CHECK_FALSE(env("HOTSWAP_OPS_TEST_UNSET").has_value());
}

TEST_CASE("a full runtime config parses, with substitution everywhere", "[config]") {
  const json document = {
      {"log_level", "debug"},
      {"max_output_bytes", 2048},
      {"admin_max_request_bytes", "${PORT}"},
      {"shutdown_timeout_ms", 0},
      {"auto_permanent_after_s", 600},
      {"listeners",
       {{{"name", "game"},
         {"address", "${HOST}"},
         {"port", "${PORT:-0}"},
         {"framing", "length_prefixed"},
         {"max_frame_bytes", 4096},
         {"module", "arena"}},
        {{"name", "chat"}, {"port", 0}, {"module", "chat"}}}},
      {"modules",
       {{"arena", {{"tick_hz", 20}, {"config", {{"map", "${WORD}"}, {"spawn", {"${PORT}", 3, true}}}}}},
        {"chat", json::object()}}}};
  const RuntimeConfig config = parse_runtime_config(document, "runtime.json", kEnv);
  CHECK(config.log_level == "debug");
  CHECK(config.max_output_bytes == 2048);
  CHECK(config.admin_max_request_bytes == 7000);
  CHECK(config.shutdown_timeout == std::chrono::milliseconds(0));
  CHECK(config.auto_permanent_after == std::chrono::seconds(600));
  REQUIRE(config.listeners.size() == 2);
  CHECK(config.listeners[0].name == "game");
  CHECK(config.listeners[0].address == "0.0.0.0");
  CHECK(config.listeners[0].port == 7000);
  CHECK(config.listeners[0].framing == Framing::LengthPrefixed);
  CHECK(config.listeners[0].max_frame_bytes == 4096);
  CHECK(config.listeners[0].module == "arena");
  CHECK(config.listeners[1].address == "127.0.0.1");  // defaults
  CHECK(config.listeners[1].framing == Framing::Line);
  CHECK(config.listeners[1].max_frame_bytes == 64 * 1024);
  REQUIRE(config.modules.count("arena") == 1);
  CHECK(config.modules.at("arena").tick_hz == 20);
  // Strings inside a module's free-form config are substituted too, and stay strings.
  CHECK(config.modules.at("arena").config == json({{"map", "seven"}, {"spawn", {"7000", 3, true}}}));
  CHECK(config.modules.at("chat").tick_hz == 0);
  CHECK(config.modules.at("chat").config.is_null());
}

TEST_CASE("an empty runtime config gives the defaults", "[config]") {
  const RuntimeConfig config = parse_runtime_config(json::object(), "runtime.json", kEnv);
  CHECK(config == RuntimeConfig{});
  CHECK(config.log_level == "info");
  CHECK(config.max_output_bytes == 1 << 20);
  CHECK(config.shutdown_timeout == std::chrono::milliseconds(5000));
  CHECK(config.listeners.empty());
}

TEST_CASE("invalid runtime configs name the key and the problem", "[config]") {
  struct Case {
    std::string what;
    json document;
    std::string expected;  // must appear in what()
  };
  const auto with_listener = [](const std::string& key, const json& value) {
    json listener = valid_listener();
    listener[key] = value;
    return json{{"listeners", {listener}}};
  };
  const std::vector<Case> table = {
      {"not an object", json::array(), "runtime.json: expected a JSON object, got array"},
      {"unknown top-level key", {{"log_levle", "info"}}, "runtime.json: log_levle: unknown key"},
      {"unknown listener key",
       {{"listeners", {valid_listener(), {{"name", "b"}, {"prot", 1}, {"port", 1}, {"module", "m"}}}}},
       "runtime.json: listeners[1].prot: unknown key"},
      {"unknown module key", {{"modules", {{"arena", {{"tickhz", 1}}}}}}, "modules.arena.tickhz: unknown key"},
      {"bad log level",
       {{"log_level", "verbose"}},
       "log_level: expected one of trace|debug|info|warn|error|critical|off, got 'verbose'"},
      {"wrong type for a string", {{"log_level", 3}}, "log_level: expected a string, got number 3"},
      {"wrong type for an integer", {{"max_output_bytes", true}}, "max_output_bytes: expected an integer, got boolean"},
      {"fraction for an integer",
       {{"shutdown_timeout_ms", 1.5}},
       "shutdown_timeout_ms: expected an integer, got number 1.5"},
      {"zero where positive", {{"max_output_bytes", 0}}, "max_output_bytes: number 0 is out of range"},
      {"negative timeout", {{"shutdown_timeout_ms", -1}}, "shutdown_timeout_ms: number -1 is out of range"},
      {"listeners not an array", {{"listeners", json::object()}}, "listeners: expected an array, got object"},
      {"listener not an object", {{"listeners", {"game"}}}, "listeners[0]: expected a JSON object, got string 'game'"},
      {"missing port", {{"listeners", {{{"name", "game"}, {"module", "arena"}}}}}, "listeners[0].port: missing"},
      {"missing name", {{"listeners", {{{"port", 1}, {"module", "arena"}}}}}, "listeners[0].name: missing"},
      {"missing module", {{"listeners", {{{"name", "game"}, {"port", 1}}}}}, "listeners[0].module: missing"},
      {"port too large", with_listener("port", 65536), "listeners[0].port: number 65536 is out of range (0..65535)"},
      {"negative port", with_listener("port", -1), "listeners[0].port: number -1 is out of range (0..65535)"},
      {"huge port", with_listener("port", json(uint64_t(1) << 63)),
       "listeners[0].port: number 9223372036854775808 is out of range"},
      {"port string after substitution out of range", with_listener("port", "${PORT}0"),
       "listeners[0].port: string '70000' is out of range"},
      {"non-numeric port string", with_listener("port", "${WORD}"),
       "listeners[0].port: expected an integer, got string 'seven'"},
      {"port string with spaces", with_listener("port", " 7000"),
       "listeners[0].port: expected an integer, got string ' 7000'"},
      {"empty port string", with_listener("port", "${EMPTY}"), "listeners[0].port: expected an integer, got string ''"},
      {"port missing variable", with_listener("port", "${NOPE}"),
       "listeners[0].port: environment variable NOPE is not set"},
      {"bad framing", with_listener("framing", "json"),
       "listeners[0].framing: expected one of line|length_prefixed, got 'json'"},
      {"frame size zero", with_listener("max_frame_bytes", 0),
       "listeners[0].max_frame_bytes: number 0 is out of range"},
      {"frame size over 64 MiB", with_listener("max_frame_bytes", (64 << 20) + 1),
       "listeners[0].max_frame_bytes: number 67108865 is out of range"},
      {"bad listener name", with_listener("name", "Game Server"),
       "listeners[0].name: 'Game Server' is not a valid name"},
      {"bad module name", with_listener("module", "../arena"), "listeners[0].module: '../arena' is not a valid name"},
      {"empty address", with_listener("address", ""), "listeners[0].address: empty address"},
      {"duplicate listener",
       {{"listeners", {valid_listener(), valid_listener()}}},
       "listeners[1].name: duplicate listener 'game' (already declared by listeners[0])"},
      {"modules not an object", {{"modules", {1, 2}}}, "modules: expected a JSON object, got array"},
      {"bad module key", {{"modules", {{"Arena", json::object()}}}}, "modules.Arena: 'Arena' is not a valid name"},
      {"module entry not an object",
       {{"modules", {{"arena", 10}}}},
       "modules.arena: expected a JSON object, got number 10"},
      {"tick_hz too high",
       {{"modules", {{"arena", {{"tick_hz", 1001}}}}}},
       "modules.arena.tick_hz: number 1001 is out of range (0..1000)"},
      {"tick_hz negative",
       {{"modules", {{"arena", {{"tick_hz", -0.5}}}}}},
       "modules.arena.tick_hz: number -0.5 is out of range"},
      {"tick_hz not a number",
       {{"modules", {{"arena", {{"tick_hz", "${WORD}"}}}}}},
       "modules.arena.tick_hz: expected a number, got string 'seven'"},
      {"variable inside module config",
       {{"modules", {{"arena", {{"config", {{"keys", {"a", "${NOPE}"}}}}}}}}},
       "modules.arena.config.keys[1]: environment variable NOPE is not set"},
  };
  for (const Case& c : table) {
    CAPTURE(c.what);
    CHECK_THAT(parse_error(c.document), Catch::Contains(c.expected));
  }
}

TEST_CASE("numeric fields accept numeric strings after substitution", "[config]") {
  const json document = {{"shutdown_timeout_ms", "${MISSING:-250}"},
                         {"listeners", {{{"name", "game"}, {"port", "${PORT}"}, {"module", "arena"}}}},
                         {"modules", {{"arena", {{"tick_hz", "2.5"}}}}}};
  const RuntimeConfig config = parse_runtime_config(document, "runtime.json", kEnv);
  CHECK(config.shutdown_timeout == std::chrono::milliseconds(250));
  CHECK(config.listeners.at(0).port == 7000);
  CHECK(config.modules.at("arena").tick_hz == 2.5);
}

TEST_CASE("a module's free-form config may hold any keys", "[config]") {
  const json document = {{"modules", {{"arena", {{"config", {{"whatever", {{"nested", {{"prot", 1}}}}}}}}}}}};
  const RuntimeConfig config = parse_runtime_config(document, "runtime.json", kEnv);
  CHECK(config.modules.at("arena").config["whatever"]["nested"]["prot"] == 1);
}

TEST_CASE("ConfigError exits with EX_CONFIG and formats file, key and problem", "[config]") {
  STATIC_REQUIRE(ConfigError::exit_code() == 78);
  const ConfigError error("/etc/hotswap/runtime.json", "listeners[0].port", "bad");
  CHECK(std::string(error.what()) == "/etc/hotswap/runtime.json: listeners[0].port: bad");
  CHECK(std::string(ConfigError("f.json", "", "invalid JSON: x").what()) == "f.json: invalid JSON: x");
}

TEST_CASE("load_runtime_config reads a file and reports unreadable or invalid ones", "[config]") {
  hotswap::ops_test::TempDir dir;
  const auto file = dir.path() / "runtime.json";

  hotswap::ops_test::write_file(file, R"({"listeners": [{"name": "game", "port": "${PORT}", "module": "arena"}]})");
  CHECK(load_runtime_config(file, kEnv).listeners.at(0).port == 7000);

  hotswap::ops_test::write_file(file, "{ \"log_level\": ");
  CHECK_THROWS_WITH(load_runtime_config(file, kEnv), Catch::StartsWith(file.string() + ": invalid JSON: "));

  CHECK_THROWS_WITH(load_runtime_config(dir.path() / "absent.json", kEnv),
                    Catch::StartsWith((dir.path() / "absent.json").string() + ": cannot read: "));
  CHECK_THROWS_WITH(load_runtime_config(dir.path(), kEnv), Catch::Contains("cannot read: is a directory"));
}

TEST_CASE("RuntimeConfig equality compares every field", "[config]") {
  const json base = {{"listeners", {valid_listener()}},
                     {"modules", {{"arena", {{"tick_hz", 10}, {"config", {{"a", 1}}}}}}}};
  const RuntimeConfig a = parse_runtime_config(base, "runtime.json", kEnv);
  CHECK(a == parse_runtime_config(base, "runtime.json", kEnv));

  const std::vector<std::function<void(RuntimeConfig&)>> changes = {
      [](RuntimeConfig& c) { c.log_level = "warn"; },
      [](RuntimeConfig& c) { c.max_output_bytes += 1; },
      [](RuntimeConfig& c) { c.admin_max_request_bytes += 1; },
      [](RuntimeConfig& c) { c.shutdown_timeout += std::chrono::milliseconds(1); },
      [](RuntimeConfig& c) { c.auto_permanent_after += std::chrono::seconds(1); },
      [](RuntimeConfig& c) { c.listeners[0].name = "other"; },
      [](RuntimeConfig& c) { c.listeners[0].address = "::1"; },
      [](RuntimeConfig& c) { c.listeners[0].port = 1; },
      [](RuntimeConfig& c) { c.listeners[0].framing = Framing::LengthPrefixed; },
      [](RuntimeConfig& c) { c.listeners[0].max_frame_bytes = 1; },
      [](RuntimeConfig& c) { c.listeners[0].module = "other"; },
      [](RuntimeConfig& c) { c.listeners.push_back(c.listeners[0]); },
      [](RuntimeConfig& c) { c.modules["arena"].tick_hz = 11; },
      [](RuntimeConfig& c) { c.modules["arena"].config["a"] = 2; },
      [](RuntimeConfig& c) { c.modules["chat"] = {}; },
  };
  for (size_t i = 0; i < changes.size(); ++i) {
    CAPTURE(i);
    RuntimeConfig b = a;
    changes[i](b);
    CHECK_FALSE(a == b);
  }
}

// A 40 KB runtime.json nested ~7k deep stalled the loop 6.4 s on reload (issue 8):
// now its reading stops at level 65.
TEST_CASE("a deeply nested runtime.json is refused naming the file and the depth", "[config]") {
  hotswap::ops_test::TempDir dir;
  const auto file = dir.path() / "runtime.json";
  std::string opening, closing;
  while (opening.size() + closing.size() < 40 * 1024) {
    opening += R"({"a": )";
    closing += "}";
  }
  hotswap::ops_test::write_file(file, R"({"modules": {"arena": {"config": )" + opening + "1" + closing + "}}}");
  CHECK_THROWS_WITH(load_runtime_config(file, kEnv), file.string() + ": JSON nested deeper than 64 levels");
  CHECK_THROWS_AS(load_runtime_config(file, kEnv), ConfigError);
}

TEST_CASE("a module section at the depth limit is read, substituted and compared", "[config]") {
  hotswap::ops_test::TempDir dir;
  const auto file = dir.path() / "runtime.json";
  // The document, "modules" and the module are 3 levels: 60 objects and an array make 64.
  std::string deep = R"(["${GREETING:-hello}", 2])";
  for (int level = 0; level < 60; ++level) deep = R"({"a": )" + deep + "}";
  hotswap::ops_test::write_file(file, R"({"modules": {"arena": {"config": )" + deep + "}}}");
  const RuntimeConfig config = load_runtime_config(file, kEnv);
  const json* inner = &config.modules.at("arena").config;
  for (int level = 0; level < 60; ++level) inner = &inner->at("a");
  CHECK(*inner == json::array({"hello", 2}));
  CHECK(config == load_runtime_config(file, kEnv));
  // One level more is refused.
  hotswap::ops_test::write_file(file, R"({"modules": {"arena": {"config": {"a": )" + deep + "}}}}");
  CHECK_THROWS_WITH(load_runtime_config(file, kEnv), file.string() + ": JSON nested deeper than 64 levels");
}

TEST_CASE("a substitution error deep in a module section names its whole key path", "[config][env]") {
  const json document =
      json::parse(R"({"modules": {"arena": {"config": {"rooms": ["lobby", {"name": "${UNSET_ROOM}"}]}}}})");
  CHECK_THROWS_WITH(parse_runtime_config(document, "runtime.json", kEnv),
                    "runtime.json: modules.arena.config.rooms[1].name: environment variable UNSET_ROOM is not set");
}
