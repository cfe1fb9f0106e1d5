// runtime.json with environment substitution: the whole input as a config
// file, and as one string value substituted alone.
#include <hotswap/appup/error.hpp>
#include <hotswap/appup/json_reader.hpp>

#include "fuzz_support.hpp"
#include "release/runtime_config.hpp"

namespace {

using namespace hotswap::host;

std::optional<std::string> fake_env(const std::string& name) {
  if (name == "PORT") return "7000";
  if (name == "EMPTY") return "";
  if (name == "HOST") return "0.0.0.0";
  if (name == "NESTED") return "${PORT}";  // substituted once, never again
  return std::nullopt;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input = hotswap::fuzz::as_text(data, size);
  const EnvLookup env = fake_env;
  try {
    (void)substitute_environment(std::string(input), env, "runtime.json", "key");
  } catch (const ConfigError&) {
  }
  nlohmann::json document;
  try {
    document = hotswap::appup::parse_json_text(input, "runtime.json");
  } catch (const hotswap::appup::InputError&) {
    return 0;
  }
  try {
    const RuntimeConfig config = parse_runtime_config(document, "runtime.json", env);
    // What a reload does with it: compare, and hand each module its section.
    HOTSWAP_FUZZ_CHECK(config == config);
    HOTSWAP_FUZZ_CHECK(config.same_listeners(config));
    for (const auto& [name, section] : config.modules) {
      HOTSWAP_FUZZ_CHECK(config.module_section(name) == section.config.dump());
      HOTSWAP_FUZZ_CHECK(config.tick_rate(name) >= 0);
    }
    for (const ListenerConfig& listener : config.listeners) HOTSWAP_FUZZ_CHECK(listener.max_frame_bytes >= 1);
  } catch (const ConfigError&) {
  }
  return 0;
}
