// The runtime.json keys that bound memory and idle time: the global output
// budget, the admin reply limit and a listener's idle timeout.
#include <catch2/catch.hpp>

#include "release/runtime_config.hpp"

using hotswap::host::ConfigError;
using hotswap::host::parse_runtime_config;
using hotswap::host::RuntimeConfig;
using nlohmann::json;

namespace {

std::optional<std::string> no_environment(const std::string&) { return std::nullopt; }

RuntimeConfig parse_limits(const json& document) { return parse_runtime_config(document, "runtime.json", no_environment); }

std::string limits_error(const json& document) {
  try {
    parse_limits(document);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

json listener(const json& extra = json::object()) {
  json l = {{"name", "game"}, {"port", 7000}, {"module", "arena"}};
  l.update(extra);
  return l;
}

}  // namespace

TEST_CASE("the memory and idle limits have defaults and take their keys", "[config]") {
  const RuntimeConfig defaults = parse_limits({{"listeners", {listener()}}});
  CHECK(defaults.max_total_output_bytes == size_t(128) << 20);
  CHECK(defaults.admin_max_output_bytes == size_t(4) << 20);
  CHECK(defaults.listeners.at(0).idle_timeout.count() == 0);

  const RuntimeConfig set = parse_limits({{"max_total_output_bytes", 1000000},
                                   {"admin_max_output_bytes", "65536"},
                                   {"listeners", {listener({{"idle_timeout_s", 30}})}}});
  CHECK(set.max_total_output_bytes == 1000000);
  CHECK(set.admin_max_output_bytes == 65536);
  CHECK(set.listeners.at(0).idle_timeout.count() == 30);
  CHECK_FALSE(set == defaults);
  CHECK_FALSE(set.same_listeners(defaults));  // an idle timeout is a listener setting: a restart applies it
}

TEST_CASE("bad memory and idle limits are errors naming the key", "[config]") {
  CHECK_THAT(limits_error({{"max_total_output_bytes", 0}}), Catch::StartsWith("runtime.json: max_total_output_bytes: "));
  CHECK_THAT(limits_error({{"admin_max_output_bytes", "lots"}}),
             Catch::StartsWith("runtime.json: admin_max_output_bytes: "));
  CHECK_THAT(limits_error({{"listeners", {listener({{"idle_timeout_s", -1}})}}}),
             Catch::StartsWith("runtime.json: listeners[0].idle_timeout_s: "));
  CHECK_THAT(limits_error({{"listeners", {listener({{"idle_timeout_s", 100000000000}})}}}),
             Catch::StartsWith("runtime.json: listeners[0].idle_timeout_s: "));
}
