#include "release/runtime_config.hpp"

#include <algorithm>
#include <boost/filesystem/operations.hpp>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <hotswap/appup/semver.hpp>
#include <limits>
#include <sstream>
#include <utility>

namespace hotswap::host {

namespace fs = boost::filesystem;
using nlohmann::json;

namespace {

// JSON paths for messages: member("listeners[0]", "port") is "listeners[0].port".
std::string member(const std::string& path, const std::string& key) { return path.empty() ? key : path + "." + key; }
std::string at(const std::string& path, size_t index) { return path + "[" + std::to_string(index) + "]"; }

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

Reference parse_reference(const std::string& body, const std::string& file, const std::string& key) {
  const auto malformed = [&](const std::string& why) {
    return ConfigError(
        file, key,
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

std::string resolve(const Reference& reference, const EnvLookup& env, const std::string& file, const std::string& key) {
  const std::optional<std::string> value = env(reference.variable);
  switch (reference.kind) {
    case Reference::Kind::Plain:
      if (!value) throw ConfigError(file, key, "environment variable " + reference.variable + " is not set");
      return *value;
    case Reference::Kind::Default:
      return value && !value->empty() ? *value : reference.argument;
    case Reference::Kind::Required:
      if (!value || value->empty()) {
        const std::string why = reference.argument.empty() ? "" : ": " + reference.argument;
        throw ConfigError(file, key, "environment variable " + reference.variable + " is not set or empty" + why);
      }
      return *value;
  }
  return {};  // unreachable: every Kind returns above
}

// Applies substitute_environment to every string value of `value` (not to keys),
// so a module's free-form config can use variables too.
json substitute_document(const json& value, const EnvLookup& env, const std::string& file, const std::string& path) {
  if (value.is_string()) return substitute_environment(value.get<std::string>(), env, file, path);
  if (value.is_array()) {
    json result = json::array();
    for (size_t i = 0; i < value.size(); ++i) result.push_back(substitute_document(value[i], env, file, at(path, i)));
    return result;
  }
  if (value.is_object()) {
    json result = json::object();
    for (auto it = value.begin(); it != value.end(); ++it)
      result[it.key()] = substitute_document(it.value(), env, file, member(path, it.key()));
    return result;
  }
  return value;
}

// ---- typed access with errors naming the key -----------------------------------

std::string describe(const json& value) {
  if (value.is_string()) return "string '" + value.get<std::string>() + "'";
  if (value.is_number()) return "number " + value.dump();
  return value.type_name();
}

std::string join(std::initializer_list<const char*> words, const char* separator) {
  std::string text;
  for (const char* word : words) text += (text.empty() ? "" : separator) + std::string(word);
  return text;
}

template <typename Number>
std::optional<Number> parse_whole(const std::string& text) {
  Number number{};
  const char* end = text.data() + text.size();
  const auto [stop, error] = std::from_chars(text.data(), end, number);
  if (error != std::errc() || stop != end) return std::nullopt;
  return number;
}

class ConfigReader {
 public:
  explicit ConfigReader(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void fail(const std::string& key, const std::string& problem) const {
    throw ConfigError(file_, key, problem);
  }

  void expect_object(const json& value, const std::string& key) const {
    if (!value.is_object()) fail(key, "expected an object, got " + describe(value));
  }

  void expect_object(const json& value, const std::string& key, std::initializer_list<const char*> allowed) const {
    expect_object(value, key);
    for (auto it = value.begin(); it != value.end(); ++it) {
      const bool known = std::any_of(allowed.begin(), allowed.end(), [&](const char* a) { return it.key() == a; });
      if (!known) fail(member(key, it.key()), "unknown key (expected one of: " + join(allowed, ", ") + ")");
    }
  }

  const json& expect_array(const json& value, const std::string& key) const {
    if (!value.is_array()) fail(key, "expected an array, got " + describe(value));
    return value;
  }

  std::string expect_string(const json& value, const std::string& key) const {
    if (!value.is_string()) fail(key, "expected a string, got " + describe(value));
    return value.get<std::string>();
  }

  std::string expect_name(const json& value, const std::string& key) const {
    return check_name(expect_string(value, key), key);
  }

  std::string check_name(const std::string& name, const std::string& key) const {
    if (!appup::is_valid_name(name))
      fail(key, "'" + name +
                    "' is not a valid name (1-64 characters of a-z, 0-9, '_' and '-', starting with a "
                    "letter or digit)");
    return name;
  }

  std::string expect_one_of(const json& value, const std::string& key,
                            std::initializer_list<const char*> choices) const {
    const std::string text = expect_string(value, key);
    const bool known = std::any_of(choices.begin(), choices.end(), [&](const char* c) { return text == c; });
    if (!known) fail(key, "expected one of " + join(choices, "|") + ", got '" + text + "'");
    return text;
  }

  // A JSON integer, or a string holding one (what "${PORT:-7000}" becomes).
  int64_t expect_integer(const json& value, const std::string& key, int64_t min, int64_t max) const {
    std::optional<int64_t> number;
    if (value.is_number_unsigned()) {
      // May not fit an int64_t: compare before converting.
      if (value.get<uint64_t>() > uint64_t(max)) fail_range(key, min, max, value);
      number = int64_t(value.get<uint64_t>());
    } else if (value.is_number_integer()) {
      number = value.get<int64_t>();
    } else if (value.is_string()) {
      number = parse_whole<int64_t>(value.get<std::string>());
    }
    if (!number) fail(key, "expected an integer, got " + describe(value));
    if (*number < min || *number > max) fail_range(key, min, max, value);
    return *number;
  }

  // A JSON number, or a string holding a decimal number.
  double expect_number(const json& value, const std::string& key, double min, double max) const {
    std::optional<double> number;
    if (value.is_number()) {
      number = value.get<double>();
    } else if (value.is_string()) {
      number = parse_whole<double>(value.get<std::string>());
    }
    if (!number || !std::isfinite(*number)) fail(key, "expected a number, got " + describe(value));
    if (*number < min || *number > max) fail_range(key, min, max, value);
    return *number;
  }

  const json& require(const json& object, const std::string& path, const char* key) const {
    const auto it = object.find(key);
    if (it == object.end()) fail(member(path, key), "missing (required)");
    return *it;
  }

 private:
  template <typename Number>
  [[noreturn]] void fail_range(const std::string& key, Number min, Number max, const json& value) const {
    std::ostringstream range;
    range << min << ".." << max;
    fail(key, describe(value) + " is out of range (" + range.str() + ")");
  }

  std::string file_;
};

constexpr int64_t kMaxInt = std::numeric_limits<int64_t>::max();
constexpr int64_t kMaxFrameBytes = 64 << 20;
constexpr double kMaxTickHz = 1000;

Framing parse_framing(const ConfigReader& reader, const json& value, const std::string& key) {
  return reader.expect_one_of(value, key, {"line", "length_prefixed"}) == "line" ? Framing::Line
                                                                                 : Framing::LengthPrefixed;
}

ListenerConfig parse_listener(const ConfigReader& reader, const json& value, const std::string& path) {
  reader.expect_object(value, path, {"name", "address", "port", "framing", "max_frame_bytes", "module"});
  ListenerConfig listener;
  listener.name = reader.expect_name(reader.require(value, path, "name"), member(path, "name"));
  listener.port = uint16_t(reader.expect_integer(reader.require(value, path, "port"), member(path, "port"), 0, 65535));
  listener.module = reader.expect_name(reader.require(value, path, "module"), member(path, "module"));
  if (const auto it = value.find("address"); it != value.end()) {
    listener.address = reader.expect_string(*it, member(path, "address"));
    if (listener.address.empty()) reader.fail(member(path, "address"), "empty address");
  }
  if (const auto it = value.find("framing"); it != value.end())
    listener.framing = parse_framing(reader, *it, member(path, "framing"));
  if (const auto it = value.find("max_frame_bytes"); it != value.end())
    listener.max_frame_bytes = size_t(reader.expect_integer(*it, member(path, "max_frame_bytes"), 1, kMaxFrameBytes));
  return listener;
}

std::vector<ListenerConfig> parse_listeners(const ConfigReader& reader, const json& value) {
  const json& list = reader.expect_array(value, "listeners");
  std::vector<ListenerConfig> listeners;
  for (size_t i = 0; i < list.size(); ++i) {
    ListenerConfig listener = parse_listener(reader, list[i], at("listeners", i));
    const auto same = std::find_if(listeners.begin(), listeners.end(),
                                   [&](const ListenerConfig& other) { return other.name == listener.name; });
    if (same != listeners.end()) {
      reader.fail(member(at("listeners", i), "name"), "duplicate listener '" + listener.name +
                                                          "' (already declared by " +
                                                          at("listeners", size_t(same - listeners.begin())) + ")");
    }
    listeners.push_back(std::move(listener));
  }
  return listeners;
}

ModuleRuntimeConfig parse_module(const ConfigReader& reader, const json& value, const std::string& path) {
  reader.expect_object(value, path, {"tick_hz", "config"});
  ModuleRuntimeConfig module;
  if (const auto it = value.find("tick_hz"); it != value.end())
    module.tick_hz = reader.expect_number(*it, member(path, "tick_hz"), 0, kMaxTickHz);
  if (const auto it = value.find("config"); it != value.end()) module.config = *it;  // free-form: the module's own
  return module;
}

std::map<std::string, ModuleRuntimeConfig> parse_modules(const ConfigReader& reader, const json& value) {
  reader.expect_object(value, "modules");
  std::map<std::string, ModuleRuntimeConfig> modules;
  for (auto it = value.begin(); it != value.end(); ++it) {
    const std::string path = member("modules", it.key());
    modules[reader.check_name(it.key(), path)] = parse_module(reader, it.value(), path);
  }
  return modules;
}

// Calls parse(document[key], key) when the key is present; absent keys keep their defaults.
template <typename Parse>
void optional_field(const json& document, const char* key, Parse parse) {
  if (const auto it = document.find(key); it != document.end()) parse(*it, std::string(key));
}

RuntimeConfig parse_substituted(const ConfigReader& reader, const json& document) {
  reader.expect_object(document, "",
                       {"log_level", "max_output_bytes", "admin_max_request_bytes", "shutdown_timeout_ms",
                        "auto_permanent_after_s", "listeners", "modules"});
  RuntimeConfig config;
  optional_field(document, "log_level", [&](const json& v, const std::string& key) {
    config.log_level = reader.expect_one_of(v, key, {"trace", "debug", "info", "warn", "error", "critical", "off"});
  });
  optional_field(document, "max_output_bytes", [&](const json& v, const std::string& key) {
    config.max_output_bytes = size_t(reader.expect_integer(v, key, 1, kMaxInt));
  });
  optional_field(document, "admin_max_request_bytes", [&](const json& v, const std::string& key) {
    config.admin_max_request_bytes = size_t(reader.expect_integer(v, key, 1, kMaxInt));
  });
  optional_field(document, "shutdown_timeout_ms", [&](const json& v, const std::string& key) {
    config.shutdown_timeout = std::chrono::milliseconds(reader.expect_integer(v, key, 0, kMaxInt));
  });
  // Bounded so that the seconds never overflow when converted to a finer clock unit.
  optional_field(document, "auto_permanent_after_s", [&](const json& v, const std::string& key) {
    config.auto_permanent_after = std::chrono::seconds(reader.expect_integer(v, key, 0, kMaxInt / 1'000'000'000));
  });
  optional_field(document, "listeners",
                 [&](const json& v, const std::string&) { config.listeners = parse_listeners(reader, v); });
  optional_field(document, "modules",
                 [&](const json& v, const std::string&) { config.modules = parse_modules(reader, v); });
  return config;
}

bool same_module(const ModuleRuntimeConfig& a, const ModuleRuntimeConfig& b) {
  return a.tick_hz == b.tick_hz && a.config == b.config;
}

}  // namespace

bool RuntimeConfig::operator==(const RuntimeConfig& other) const {
  return log_level == other.log_level && same_listeners(other) &&
         max_output_bytes == other.max_output_bytes && admin_max_request_bytes == other.admin_max_request_bytes &&
         shutdown_timeout == other.shutdown_timeout && auto_permanent_after == other.auto_permanent_after &&
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
        throw ConfigError(file, key, "unterminated reference '" + text.substr(i) + "' (missing '}')");
      result += resolve(parse_reference(text.substr(i + 2, close - i - 2), file, key), env, file, key);
      i = close + 1;
    }
  }
  return result;
}

RuntimeConfig parse_runtime_config(const json& document, const std::string& file, const EnvLookup& env) {
  // Substitution comes first so that every later check sees the value in force.
  return parse_substituted(ConfigReader(file), substitute_document(document, env, file, ""));
}

RuntimeConfig load_runtime_config(const fs::path& file, const EnvLookup& env) {
  const std::string name = file.string();
  boost::system::error_code ignored;
  // An ifstream opens a directory without complaint and then reads nothing.
  if (fs::is_directory(file, ignored)) throw ConfigError(name, "", "cannot read: is a directory");
  std::ifstream in(name, std::ios::binary);
  if (!in) throw ConfigError(name, "", "cannot read: " + std::string(std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw ConfigError(name, "", "cannot read: " + std::string(std::strerror(errno)));
  json document;
  try {
    document = json::parse(text.str());
  } catch (const json::parse_error& e) {
    throw ConfigError(name, "", std::string("invalid JSON: ") + e.what());
  }
  return parse_runtime_config(document, name, env);
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
                      return a.name == b.name && a.address == b.address && a.port == b.port &&
                             a.framing == b.framing && a.max_frame_bytes == b.max_frame_bytes &&
                             a.module == b.module;
                    });
}

}  // namespace hotswap::host
