// runtime.json: the host's runtime configuration, read at boot and on reload
// (after Elixir's config/runtime.exs). String values may use environment
// variables: ${VAR}, ${VAR:-default} and ${VAR:?message}. A numeric or boolean
// field may be given as a string that becomes a number/boolean after
// substitution ("port": "${PORT:-7000}"). Format: host/README.md.
#pragma once

#include <boost/filesystem/path.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace hotswap::host {

enum class Framing {
  Line,            // newline-delimited text ("\n"; a trailing "\r" is stripped)
  LengthPrefixed,  // 32-bit big-endian length, then that many bytes
};

struct ListenerConfig {
  std::string name;  // unique, valid name
  std::string address = "127.0.0.1";
  uint16_t port = 0;  // 0: the OS picks; the host reports the port it got
  Framing framing = Framing::Line;
  size_t max_frame_bytes = 64 * 1024;
  std::string module;  // the module that owns its connections
  // A connection that completes no message for this long is closed (slowloris
  // defence); 0: never.
  std::chrono::seconds idle_timeout{0};
};

struct ModuleRuntimeConfig {
  double tick_hz = 0;               // 0: no tick
  nlohmann::json config = nullptr;  // handed to the module (create, on_config_change)
};

// How long the event loop may stay inside one module callback (core/watchdog.hpp).
struct WatchdogConfig {
  std::chrono::milliseconds warn_after{10'000};  // logs the module and callback; 0: never
  std::chrono::milliseconds abort_after{0};      // aborts the process; 0: never
  bool operator==(const WatchdogConfig& other) const {
    return warn_after == other.warn_after && abort_after == other.abort_after;
  }
};

struct RuntimeConfig {
  std::string log_level = "info";  // trace|debug|info|warn|error|critical|off
  std::vector<ListenerConfig> listeners;
  size_t max_output_bytes = 1 << 20;  // per connection; a reader over it is closed
  // Unsent output across every connection; over it, the connections holding
  // the most unsent bytes are closed.
  size_t max_total_output_bytes = size_t(128) << 20;
  size_t admin_max_request_bytes = 64 * 1024;
  size_t admin_max_output_bytes = 4 << 20;  // unsent admin replies per client; a client over it is closed
  std::chrono::milliseconds shutdown_timeout{5000};  // SIGTERM: how long pending output may take
  std::chrono::seconds auto_permanent_after{0};      // 0: only an explicit make-permanent
  WatchdogConfig watchdog;
  std::map<std::string, ModuleRuntimeConfig> modules;
  // Live rehearsal (upgrade/rehearsal.hpp): every upgrade and downgrade runs
  // first in a forked copy of the host; `rehearse: false` turns it off (a
  // request's --no-rehearse does the same for one upgrade). A rehearsal that
  // runs longer than the timeout is killed and refuses the upgrade.
  bool rehearse = true;
  std::chrono::milliseconds rehearsal_timeout{30'000};
  // How the rehearsal child is made (`rehearsal_mechanism`): Fork, a
  // copy-on-write snapshot of this process (the live objects themselves), or
  // Spawn, a fresh process of this program fed the exported states (costs
  // the live loop an export instead of the fork's page faults).
  enum class RehearsalMechanism { Fork, Spawn };
  RehearsalMechanism rehearsal_mechanism = RehearsalMechanism::Fork;
  // Blue-green handover (handover/): how long the new process may take from
  // its start to ready; past it, it is killed and this process serves on.
  std::chrono::milliseconds handover_timeout{30'000};

  bool operator==(const RuntimeConfig& other) const;

  // The module's section as JSON text for create()/on_config_change ("null" when absent).
  std::string module_section(const std::string& module) const;
  // Ticks per second for the module (0: none).
  double tick_rate(const std::string& module) const;
  // Same listeners, in the same order, with the same settings.
  bool same_listeners(const RuntimeConfig& other) const;
};

// A configuration problem. what() names the file and the key (or variable).
// exit_code() is 78 (EX_CONFIG) so `hotswap start` can exit with it.
class ConfigError : public std::runtime_error {
 public:
  ConfigError(std::string file, std::string key, const std::string& problem);
  const std::string& file() const { return file_; }
  const std::string& key() const { return key_; }
  static constexpr int exit_code() { return 78; }

 private:
  std::string file_, key_;
};

// Looks up an environment variable; nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
EnvLookup process_environment();

// Substitutes ${VAR}, ${VAR:-default}, ${VAR:?message} in `text`; "$$" is a literal "$".
// Throws ConfigError(file, key, ...) naming the variable for ${VAR:?} or ${VAR} when unset,
// and for malformed references.
std::string substitute_environment(const std::string& text, const EnvLookup& env, const std::string& file,
                                   const std::string& key);

// Parses and validates. Unknown keys and wrong types are ConfigErrors naming the key
// (e.g. "listeners[0].port").
RuntimeConfig parse_runtime_config(const nlohmann::json& document, const std::string& file, const EnvLookup& env);
RuntimeConfig load_runtime_config(const boost::filesystem::path& file, const EnvLookup& env = process_environment());

}  // namespace hotswap::host
