// runtime.json's `watchdog` section (issue 8: a callback that never returns).
#include <catch2/catch.hpp>

#include "release/runtime_config.hpp"

using hotswap::host::ConfigError;
using hotswap::host::parse_runtime_config;
using hotswap::host::RuntimeConfig;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

std::optional<std::string> env(const std::string& name) {
  if (name == "ABORT_S") return std::string("2.5");
  return std::nullopt;
}

RuntimeConfig parse_watchdog(const json& document) { return parse_runtime_config(document, "runtime.json", env); }

std::string error_of(const json& document) {
  try {
    parse_watchdog(document);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("watchdog: warn after 10 s and never abort by default", "[config][watchdog]") {
  const RuntimeConfig config = parse_watchdog(json::object());
  CHECK(config.watchdog.warn_after == 10s);
  CHECK(config.watchdog.abort_after == 0ms);
}

TEST_CASE("watchdog: both limits in seconds, fractions and environment strings allowed", "[config][watchdog]") {
  const RuntimeConfig config = parse_watchdog({{"watchdog", {{"warn_after_s", 0.25}, {"abort_after_s", "${ABORT_S}"}}}});
  CHECK(config.watchdog.warn_after == 250ms);
  CHECK(config.watchdog.abort_after == 2500ms);
  CHECK(parse_watchdog({{"watchdog", {{"abort_after_s", 1}}}}).watchdog.warn_after == 10s);  // the other keeps its default
  // A tiny positive limit is rounded up, never down to 0 ("off").
  CHECK(parse_watchdog({{"watchdog", {{"abort_after_s", 0.0001}}}}).watchdog.abort_after == 1ms);
  CHECK_FALSE(parse_watchdog({{"watchdog", {{"abort_after_s", 1}}}}) == parse_watchdog(json::object()));  // a reload sees the change
}

TEST_CASE("watchdog: bad values are refused naming the key", "[config][watchdog]") {
  CHECK_THAT(error_of({{"watchdog", {{"abort_after", 1}}}}),
             Catch::StartsWith("runtime.json: watchdog.abort_after: unknown key"));
  CHECK_THAT(error_of({{"watchdog", {{"warn_after_s", -1}}}}),
             Catch::StartsWith("runtime.json: watchdog.warn_after_s:"));
  CHECK_THAT(error_of({{"watchdog", {{"abort_after_s", 86401}}}}),
             Catch::StartsWith("runtime.json: watchdog.abort_after_s:"));
  CHECK_THAT(error_of({{"watchdog", {{"abort_after_s", "soon"}}}}),
             Catch::StartsWith("runtime.json: watchdog.abort_after_s:"));
  CHECK_THAT(error_of({{"watchdog", 10}}), Catch::StartsWith("runtime.json: watchdog:"));
}
