#include "release/runtime_config.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <hotswap/appup/error.hpp>
#include <hotswap/appup/json_reader.hpp>
#include <limits>
#include <utility>

#include "release/release_files.hpp"

namespace hotswap::host {

namespace fs = boost::filesystem;
using nlohmann::json;

namespace {

using appup::index_path;
using appup::key_path;

std::string config_error_message(const std::string& file, const std::string& key, const std::string& problem) {
  // A problem with the whole file (unreadable, not JSON) has no key to name.
  if (key.empty()) return file + ": " + problem;
  return file + ": " + key + ": " + problem;
}

// ---- environment substitution -------------------------------------------------

bool is_variable_start(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
bool is_variable_char(char c) { return is_variable_start(c) || (c >= '0' && c <= '9'); }

// One "${...}" reference, already cut out of the text.
struct Reference {
  std::string variable;
  enum class Kind { Plain, Default, Required } kind = Kind::Plain;
  std::string argument;  // the default or the message; literal text
};

// The key a substitution error names, built only when there is an error (see ValuePath).
using KeyText = std::function<std::string()>;

Reference parse_reference(const std::string& body, const std::string& file, const KeyText& key) {
  const auto malformed = [&](const std::string& why) {
    return ConfigError(
        file, key(),
        "malformed reference '${" + body + "}': " + why + " (expected ${VAR}, ${VAR:-default} or ${VAR:?message})");
  };
  if (body.empty() || !is_variable_start(body[0])) throw malformed("a variable name is [A-Za-z_][A-Za-z0-9_]*");
  const size_t name_end = std::find_if_not(body.begin(), body.end(), is_variable_char) - body.begin();
  Reference reference;
  reference.variable = body.substr(0, name_end);
  const std::string rest = body.substr(name_end);
  if (rest.empty()) return reference;
  if (rest.compare(0, 2, ":-") == 0) {
    reference.kind = Reference::Kind::Default;
  } else if (rest.compare(0, 2, ":?") == 0) {
    reference.kind = Reference::Kind::Required;
  } else {
    throw malformed("unexpected '" + rest + "' after the variable name");
  }
  reference.argument = rest.substr(2);
  return reference;
}

std::string resolve(const Reference& reference, const EnvLookup& env, const std::string& file, const KeyText& key) {
  const std::optional<std::string> value = env(reference.variable);
  switch (reference.kind) {
    case Reference::Kind::Plain:
      if (!value) throw ConfigError(file, key(), "environment variable " + reference.variable + " is not set");
      return *value;
    case Reference::Kind::Default:
      return value && !value->empty() ? *value : reference.argument;
    case Reference::Kind::Required:
      if (!value || value->empty()) {
        const std::string why = reference.argument.empty() ? "" : ": " + reference.argument;
        throw ConfigError(file, key(), "environment variable " + reference.variable + " is not set or empty" + why);
      }
      return *value;
  }
  return {};  // unreachable: every Kind returns above
}

std::string substitute_text(const std::string& text, const EnvLookup& env, const std::string& file,
                            const KeyText& key) {
  std::string result;
  for (size_t i = 0; i < text.size();) {
    const char next = i + 1 < text.size() ? text[i + 1] : '\0';
    if (text[i] != '$' || (next != '{' && next != '$')) {  // a lone '$' is literal
      result += text[i++];
    } else if (next == '$') {
      result += '$';
      i += 2;
    } else {
      const size_t close = text.find('}', i + 2);
      if (close == std::string::npos)
        throw ConfigError(file, key(), "unterminated reference '" + text.substr(i) + "' (missing '}')");
      result += resolve(parse_reference(text.substr(i + 2, close - i - 2), file, key), env, file, key);
      i = close + 1;
    }
  }
  return result;
}

// Where a value sits in the document, as a chain of the levels above it. The
// text ("modules.chat.config.rooms[3]") is built only for an error message:
// building it for every value costs the path's length per value, which a long
// key over a long array makes quadratic in the file's size.
struct ValuePath {
  const ValuePath* parent = nullptr;
  const std::string* key = nullptr;  // an object member; nullptr for an array element
  size_t index = 0;

  std::string text() const {
    if (parent == nullptr) return "";
    const std::string above = parent->text();
    return key != nullptr ? key_path(above, *key) : index_path(above, index);
  }
};

// Applies substitute_environment to every string value of `value` (not to keys),
// so a module's free-form config can use variables too. The document was parsed
// with a depth limit (read_json_file), so the recursion is bounded.
json substitute_document(const json& value, const EnvLookup& env, const std::string& file, const ValuePath& path) {
  if (value.is_string()) {
    const std::string& text = value.get_ref<const std::string&>();
    return substitute_text(text, env, file, [&path] { return path.text(); });
  }
  if (value.is_array()) {
    json result = json::array();
    for (size_t i = 0; i < value.size(); ++i)
      result.push_back(substitute_document(value[i], env, file, {&path, nullptr, i}));
    return result;
  }
  if (value.is_object()) {
    json result = json::object();
    for (auto it = value.begin(); it != value.end(); ++it)
      result[it.key()] = substitute_document(it.value(), env, file, {&path, &it.key(), 0});
    return result;
  }
  return value;
}

// ---- typed access: appup's JsonReader, whose InputError becomes a ConfigError ---

using appup::JsonReader;
using appup::NumberText;

constexpr int64_t kMaxInt = std::numeric_limits<int64_t>::max();
constexpr int64_t kMaxFrameBytes = 64 << 20;
constexpr double kMaxTickHz = 1000;
// Seconds that never overflow when converted to nanoseconds.
constexpr int64_t kMaxSeconds = kMaxInt / 1'000'000'000;

Framing parse_framing(const JsonReader& reader, const json& value, const std::string& key) {
  return reader.expect_one_of(value, key, {"line", "length_prefixed"}) == "line" ? Framing::Line
                                                                                 : Framing::LengthPrefixed;
}

ListenerConfig parse_listener(const JsonReader& reader, const json& value, const std::string& path) {
  reader.expect_object(value, path,
                       {"name", "address", "port", "framing", "max_frame_bytes", "module", "idle_timeout_s"});
  ListenerConfig listener;
  listener.name = reader.expect_name(reader.require(value, path, "name"), key_path(path, "name"));
  listener.port = uint16_t(reader.expect_integer(reader.require(value, path, "port"), key_path(path, "port"), 0, 65535,
                                                 NumberText::Accepted));
  listener.module = reader.expect_name(reader.require(value, path, "module"), key_path(path, "module"));
  if (const auto it = value.find("address"); it != value.end()) {
    listener.address = reader.expect_string(*it, key_path(path, "address"));
    if (listener.address.empty()) reader.fail(key_path(path, "address"), "empty address");
  }
  if (const auto it = value.find("framing"); it != value.end())
    listener.framing = parse_framing(reader, *it, key_path(path, "framing"));
  if (const auto it = value.find("max_frame_bytes"); it != value.end())
    listener.max_frame_bytes =
        size_t(reader.expect_integer(*it, key_path(path, "max_frame_bytes"), 1, kMaxFrameBytes, NumberText::Accepted));
  if (const auto it = value.find("idle_timeout_s"); it != value.end())
    listener.idle_timeout = std::chrono::seconds(
        reader.expect_integer(*it, key_path(path, "idle_timeout_s"), 0, kMaxSeconds, NumberText::Accepted));
  return listener;
}

std::vector<ListenerConfig> parse_listeners(const JsonReader& reader, const json& value) {
  const json& list = reader.expect_array(value, "listeners");
  std::vector<ListenerConfig> listeners;
  for (size_t i = 0; i < list.size(); ++i) {
    ListenerConfig listener = parse_listener(reader, list[i], index_path("listeners", i));
    const auto same = std::find_if(listeners.begin(), listeners.end(),
                                   [&](const ListenerConfig& other) { return other.name == listener.name; });
    if (same != listeners.end()) {
      reader.fail(key_path(index_path("listeners", i), "name"),
                  "duplicate listener '" + listener.name + "' (already declared by " +
                      index_path("listeners", size_t(same - listeners.begin())) + ")");
    }
    listeners.push_back(std::move(listener));
  }
  return listeners;
}

ModuleRuntimeConfig parse_module(const JsonReader& reader, const json& value, const std::string& path) {
  reader.expect_object(value, path, {"tick_hz", "config"});
  ModuleRuntimeConfig module;
  if (const auto it = value.find("tick_hz"); it != value.end())
    module.tick_hz = reader.expect_number(*it, key_path(path, "tick_hz"), 0, kMaxTickHz, NumberText::Accepted);
  if (const auto it = value.find("config"); it != value.end()) module.config = *it;  // free-form: the module's own
  return module;
}

std::map<std::string, ModuleRuntimeConfig> parse_modules(const JsonReader& reader, const json& value) {
  reader.expect_object(value, "modules");
  std::map<std::string, ModuleRuntimeConfig> modules;
  for (auto it = value.begin(); it != value.end(); ++it) {
    const std::string path = key_path("modules", it.key());
    modules[reader.check_name(it.key(), path)] = parse_module(reader, it.value(), path);
  }
  return modules;
}

// Seconds, fractions allowed, bounded to a day: a longer limit is no limit.
constexpr double kMaxWatchdogSeconds = 86400;

WatchdogConfig parse_watchdog(const JsonReader& reader, const json& value, const std::string& path) {
  reader.expect_object(value, path, {"warn_after_s", "abort_after_s"});
  WatchdogConfig watchdog;
  const auto milliseconds = [&](const char* key) {
    const double s =
        reader.expect_number(value.at(key), key_path(path, key), 0, kMaxWatchdogSeconds, NumberText::Accepted);
    // Rounded up: a positive limit never becomes 0, which means "never".
    return std::chrono::milliseconds(static_cast<int64_t>(std::ceil(s * 1000)));
  };
  if (value.contains("warn_after_s")) watchdog.warn_after = milliseconds("warn_after_s");
  if (value.contains("abort_after_s")) watchdog.abort_after = milliseconds("abort_after_s");
  return watchdog;
}

// Calls parse(document[key], key) when the key is present; absent keys keep their defaults.
template <typename Parse>
void optional_field(const json& document, const char* key, Parse parse) {
  if (const auto it = document.find(key); it != document.end()) parse(*it, std::string(key));
}

RuntimeConfig parse_substituted(const JsonReader& reader, const json& document) {
  reader.expect_object(document, "",
                       {"log_level", "max_output_bytes", "max_total_output_bytes", "admin_max_request_bytes",
                        "admin_max_output_bytes", "shutdown_timeout_ms", "auto_permanent_after_s", "watchdog",
                        "listeners", "modules", "rehearse", "rehearsal_mechanism", "rehearsal_timeout_s",
                        "handover_timeout_s"});
  RuntimeConfig config;
  optional_field(document, "log_level", [&](const json& v, const std::string& key) {
    config.log_level = reader.expect_one_of(v, key, {"trace", "debug", "info", "warn", "error", "critical", "off"});
  });
  optional_field(document, "max_output_bytes", [&](const json& v, const std::string& key) {
    config.max_output_bytes = size_t(reader.expect_integer(v, key, 1, kMaxInt, NumberText::Accepted));
  });
  optional_field(document, "max_total_output_bytes", [&](const json& v, const std::string& key) {
    config.max_total_output_bytes = size_t(reader.expect_integer(v, key, 1, kMaxInt, NumberText::Accepted));
  });
  optional_field(document, "admin_max_request_bytes", [&](const json& v, const std::string& key) {
    config.admin_max_request_bytes = size_t(reader.expect_integer(v, key, 1, kMaxInt, NumberText::Accepted));
  });
  optional_field(document, "admin_max_output_bytes", [&](const json& v, const std::string& key) {
    config.admin_max_output_bytes = size_t(reader.expect_integer(v, key, 1, kMaxInt, NumberText::Accepted));
  });
  optional_field(document, "shutdown_timeout_ms", [&](const json& v, const std::string& key) {
    config.shutdown_timeout =
        std::chrono::milliseconds(reader.expect_integer(v, key, 0, kMaxInt, NumberText::Accepted));
  });
  // Bounded so that the seconds never overflow when converted to a finer clock unit.
  optional_field(document, "auto_permanent_after_s", [&](const json& v, const std::string& key) {
    config.auto_permanent_after =
        std::chrono::seconds(reader.expect_integer(v, key, 0, kMaxInt / 1'000'000'000, NumberText::Accepted));
  });
  optional_field(document, "watchdog",
                 [&](const json& v, const std::string& key) { config.watchdog = parse_watchdog(reader, v, key); });
  optional_field(document, "listeners",
                 [&](const json& v, const std::string&) { config.listeners = parse_listeners(reader, v); });
  optional_field(document, "rehearse", [&](const json& v, const std::string& key) {
    if (v.is_boolean())
      config.rehearse = v.get<bool>();
    else if (v.is_string() && (v == "true" || v == "false"))  // after ${VAR} substitution
      config.rehearse = v == "true";
    else
      reader.fail(key, "expected true or false, got " + v.dump());
  });
  optional_field(document, "rehearsal_mechanism", [&](const json& v, const std::string& key) {
    config.rehearsal_mechanism = reader.expect_one_of(v, key, {"fork", "spawn"}) == "spawn"
                                     ? RuntimeConfig::RehearsalMechanism::Spawn
                                     : RuntimeConfig::RehearsalMechanism::Fork;
  });
  // Seconds, fractions allowed; at least a millisecond, at most a day.
  optional_field(document, "rehearsal_timeout_s", [&](const json& v, const std::string& key) {
    const double s = reader.expect_number(v, key, 0.001, kMaxWatchdogSeconds, NumberText::Accepted);
    config.rehearsal_timeout = std::chrono::milliseconds(static_cast<int64_t>(std::ceil(s * 1000)));
  });
  optional_field(document, "handover_timeout_s", [&](const json& v, const std::string& key) {
    const double s = reader.expect_number(v, key, 0.001, kMaxWatchdogSeconds, NumberText::Accepted);
    config.handover_timeout = std::chrono::milliseconds(static_cast<int64_t>(std::ceil(s * 1000)));
  });
  optional_field(document, "modules",
                 [&](const json& v, const std::string&) { config.modules = parse_modules(reader, v); });
  return config;
}

bool same_module(const ModuleRuntimeConfig& a, const ModuleRuntimeConfig& b) {
  return a.tick_hz == b.tick_hz && a.config == b.config;
}

}  // namespace

bool RuntimeConfig::operator==(const RuntimeConfig& other) const {
  return log_level == other.log_level && same_listeners(other) && max_output_bytes == other.max_output_bytes &&
         max_total_output_bytes == other.max_total_output_bytes &&
         admin_max_request_bytes == other.admin_max_request_bytes &&
         admin_max_output_bytes == other.admin_max_output_bytes && shutdown_timeout == other.shutdown_timeout &&
         auto_permanent_after == other.auto_permanent_after && watchdog == other.watchdog &&
         rehearse == other.rehearse && rehearsal_timeout == other.rehearsal_timeout &&
         rehearsal_mechanism == other.rehearsal_mechanism &&
         handover_timeout == other.handover_timeout &&
         std::equal(modules.begin(), modules.end(), other.modules.begin(), other.modules.end(),
                    [](const auto& a, const auto& b) { return a.first == b.first && same_module(a.second, b.second); });
}

ConfigError::ConfigError(std::string file, std::string key, const std::string& problem)
    : std::runtime_error(config_error_message(file, key, problem)), file_(std::move(file)), key_(std::move(key)) {}

EnvLookup process_environment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

std::string substitute_environment(const std::string& text, const EnvLookup& env, const std::string& file,
                                   const std::string& key) {
  return substitute_text(text, env, file, [&key] { return key; });
}

RuntimeConfig parse_runtime_config(const json& document, const std::string& file, const EnvLookup& env) {
  // Substitution comes first so that every later check sees the value in force.
  const json substituted = substitute_document(document, env, file, ValuePath{});
  try {
    return parse_substituted(JsonReader(file), substituted);
  } catch (const appup::InputError& e) {
    throw ConfigError(e.file(), e.field(), e.problem());
  }
}

RuntimeConfig load_runtime_config(const fs::path& file, const EnvLookup& env) {
  json document;
  try {
    document = read_json_file(file);
  } catch (const appup::InputError& e) {
    throw ConfigError(e.file(), e.field(), e.problem());
  }
  return parse_runtime_config(document, file.string(), env);
}

std::string RuntimeConfig::module_section(const std::string& module) const {
  auto it = modules.find(module);
  return it == modules.end() ? "null" : it->second.config.dump();
}

double RuntimeConfig::tick_rate(const std::string& module) const {
  auto it = modules.find(module);
  return it == modules.end() ? 0 : it->second.tick_hz;
}

bool RuntimeConfig::same_listeners(const RuntimeConfig& other) const {
  return std::equal(listeners.begin(), listeners.end(), other.listeners.begin(), other.listeners.end(),
                    [](const ListenerConfig& a, const ListenerConfig& b) {
                      return a.name == b.name && a.address == b.address && a.port == b.port && a.framing == b.framing &&
                             a.max_frame_bytes == b.max_frame_bytes && a.module == b.module &&
                             a.idle_timeout == b.idle_timeout;
                    });
}

}  // namespace hotswap::host
