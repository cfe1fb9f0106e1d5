#include <algorithm>
#include <charconv>
#include <cmath>
#include <hotswap/appup/error.hpp>
#include <hotswap/appup/json_reader.hpp>
#include <hotswap/appup/semver.hpp>
#include <optional>
#include <sstream>

namespace hotswap::appup {

using nlohmann::json;

namespace {

// nlohmann prefixes its messages with "[json.exception.parse_error.101] ", which
// tells an operator nothing; the rest carries the line and column.
std::string without_exception_id(const std::string& message) {
  const size_t end = message.find("] ");
  return message.rfind("[json.exception.", 0) == 0 && end != std::string::npos ? message.substr(end + 2) : message;
}

std::string join(std::initializer_list<const char*> words, const char* separator) {
  std::string text;
  for (const char* word : words) text += (text.empty() ? "" : separator) + std::string(word);
  return text;
}

std::string in_quotes(const std::string& text) { return "'" + text + "'"; }

// The whole text as a number: "7000" yes; " 7000", "7000 ", "7e3" for an integer, "seven" no.
template <typename Number>
std::optional<Number> parse_whole(const std::string& text) {
  Number number{};
  const char* end = text.data() + text.size();
  const auto [stop, error] = std::from_chars(text.data(), end, number);
  if (error != std::errc() || stop != end) return std::nullopt;
  return number;
}

}  // namespace

std::string key_path(const std::string& path, const std::string& key) { return path.empty() ? key : path + "." + key; }

std::string index_path(const std::string& path, std::size_t index) { return path + "[" + std::to_string(index) + "]"; }

std::string describe_json(const json& value) {
  if (value.is_string()) return "string " + in_quotes(value.get<std::string>());
  if (value.is_number()) return "number " + value.dump();
  return value.type_name();
}

json parse_json_bounded(std::string_view text, const std::string& what, std::size_t max_depth) {
  struct TooDeep {};
  // The callback sees every array and object start with the number of
  // containers around it; throwing stops the parse at the first one too deep.
  const json::parser_callback_t refuse_too_deep = [max_depth](int depth, json::parse_event_t event, json&) {
    const bool opens = event == json::parse_event_t::object_start || event == json::parse_event_t::array_start;
    if (opens && std::size_t(depth) >= max_depth) throw TooDeep{};
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), refuse_too_deep);
  } catch (const json::exception& e) {
    // Not only parse_error: a number too large for a double ("1e400") is an out_of_range.
    throw InputError(what, "", "invalid JSON: " + without_exception_id(e.what()));
  } catch (const TooDeep&) {
    throw InputError(what, "", "JSON nested deeper than " + std::to_string(max_depth) + " levels");
  }
}

json parse_json_text(std::string_view text, const std::string& source) {
  return parse_json_bounded(text, source, kMaxJsonDepth);
}

const json* find_member(const json& object, const char* key) {
  const auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

void JsonReader::fail(const std::string& path, const std::string& problem) const {
  throw InputError(source_, path, problem);
}

void JsonReader::expect_object(const json& value, const std::string& path) const {
  if (!value.is_object()) fail(path, "expected a JSON object, got " + describe_json(value));
}

void JsonReader::expect_object(const json& value, const std::string& path,
                               std::initializer_list<const char*> allowed) const {
  expect_object(value, path);
  for (auto it = value.begin(); it != value.end(); ++it) {
    const bool known = std::any_of(allowed.begin(), allowed.end(), [&](const char* a) { return it.key() == a; });
    if (!known) fail(key_path(path, it.key()), "unknown key (expected one of: " + join(allowed, ", ") + ")");
  }
}

const json& JsonReader::expect_array(const json& value, const std::string& path) const {
  if (!value.is_array()) fail(path, "expected an array, got " + describe_json(value));
  return value;
}

std::string JsonReader::expect_string(const json& value, const std::string& path) const {
  if (!value.is_string()) fail(path, "expected a string, got " + describe_json(value));
  return value.get<std::string>();
}

std::string JsonReader::expect_one_of(const json& value, const std::string& path,
                                      std::initializer_list<const char*> choices) const {
  const std::string text = expect_string(value, path);
  const bool known = std::any_of(choices.begin(), choices.end(), [&](const char* c) { return text == c; });
  if (!known) fail(path, "expected one of " + join(choices, "|") + ", got " + in_quotes(text));
  return text;
}

std::string JsonReader::expect_name(const json& value, const std::string& path) const {
  return check_name(expect_string(value, path), path);
}

std::string JsonReader::check_name(const std::string& name, const std::string& path) const {
  if (!is_valid_name(name)) {
    fail(path, in_quotes(name) +
                   " is not a valid name (1-64 characters of a-z, 0-9, '_' and '-', starting with a letter or digit)");
  }
  return name;
}

std::string JsonReader::expect_version(const json& value, const std::string& path) const {
  std::string version = expect_string(value, path);
  if (version.size() > kMaxVersionLength) {
    fail(path, "version of " + std::to_string(version.size()) + " characters is over the limit of " +
                   std::to_string(kMaxVersionLength));
  }
  if (!is_valid_version(version)) {
    fail(path, in_quotes(version) + " is not a semantic version (like 1.2.3 or 1.2.3-rc.1)");
  }
  return version;
}

std::vector<std::string> JsonReader::expect_names(const json& value, const std::string& path) const {
  std::vector<std::string> names;
  const json& list = expect_array(value, path);
  for (size_t i = 0; i < list.size(); ++i) names.push_back(expect_name(list[i], index_path(path, i)));
  return names;
}

int64_t JsonReader::expect_integer(const json& value, const std::string& path, int64_t min, int64_t max,
                                   NumberText text) const {
  std::optional<int64_t> number;
  if (value.is_number_unsigned()) {
    // May not fit an int64_t: compare before converting.
    if (value.get<uint64_t>() > uint64_t(max)) fail_range(path, min, max, value);
    number = int64_t(value.get<uint64_t>());
  } else if (value.is_number_integer()) {
    number = value.get<int64_t>();
  } else if (value.is_string() && text == NumberText::Accepted) {
    number = parse_whole<int64_t>(value.get<std::string>());
  }
  if (!number) fail(path, "expected an integer, got " + describe_json(value));
  if (*number < min || *number > max) fail_range(path, min, max, value);
  return *number;
}

double JsonReader::expect_number(const json& value, const std::string& path, double min, double max,
                                 NumberText text) const {
  std::optional<double> number;
  if (value.is_number()) {
    number = value.get<double>();
  } else if (value.is_string() && text == NumberText::Accepted) {
    number = parse_whole<double>(value.get<std::string>());
  }
  if (!number || !std::isfinite(*number)) fail(path, "expected a number, got " + describe_json(value));
  if (*number < min || *number > max) fail_range(path, min, max, value);
  return *number;
}

const json& JsonReader::require(const json& object, const std::string& path, const char* key) const {
  const json* value = find_member(object, key);
  if (!value) fail(key_path(path, key), "missing");
  return *value;
}

template <typename Number>
void JsonReader::fail_range(const std::string& path, Number min, Number max, const json& value) const {
  std::ostringstream range;
  range << min << ".." << max;
  fail(path, describe_json(value) + " is out of range (" + range.str() + ")");
}

}  // namespace hotswap::appup
