#include "json_input.hpp"

#include <hotswap/appup/error.hpp>
#include <hotswap/appup/semver.hpp>

#include <boost/filesystem/operations.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace hotswap::appup::detail {

namespace {

// nlohmann prefixes its messages with "[json.exception.parse_error.101] ", which
// tells an operator nothing; the rest carries the line and column.
std::string without_exception_id(const std::string& message) {
  const size_t end = message.find("] ");
  return message.rfind("[json.exception.", 0) == 0 && end != std::string::npos ? message.substr(end + 2) : message;
}

std::string join(std::initializer_list<const char*> words) {
  std::string text;
  for (const char* word : words) text += (text.empty() ? "" : ", ") + std::string(word);
  return text;
}

std::string in_quotes(const std::string& text) { return "'" + text + "'"; }

}  // namespace

std::string member(const std::string& path, const std::string& key) { return path.empty() ? key : path + "." + key; }

std::string at(const std::string& path, std::size_t index) { return path + "[" + std::to_string(index) + "]"; }

json read_json_file(const boost::filesystem::path& file) {
  const std::string source = file.string();
  boost::system::error_code ignored;
  // An ifstream opens a directory without complaint and then reads nothing.
  if (boost::filesystem::is_directory(file, ignored)) throw InputError(source, "", "cannot read: is a directory");
  std::ifstream in(source, std::ios::binary);
  if (!in) throw InputError(source, "", "cannot read: " + std::string(std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw InputError(source, "", "cannot read: " + std::string(std::strerror(errno)));
  try {
    return json::parse(text.str());
  } catch (const json::parse_error& e) {
    throw InputError(source, "", "invalid JSON: " + without_exception_id(e.what()));
  }
}

const json* find_member(const json& object, const char* key) {
  const auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

void DocumentReader::fail(const std::string& field, const std::string& problem) const {
  throw InputError(source_, field, problem);
}

void DocumentReader::expect_object(const json& value, const std::string& field) const {
  if (!value.is_object()) fail(field, std::string("expected a JSON object, got ") + value.type_name());
}

void DocumentReader::expect_object(const json& value, const std::string& field,
                                   std::initializer_list<const char*> allowed) const {
  expect_object(value, field);
  for (auto it = value.begin(); it != value.end(); ++it) {
    const bool known = std::any_of(allowed.begin(), allowed.end(), [&](const char* a) { return it.key() == a; });
    if (!known) fail(member(field, it.key()), "unknown key (expected one of: " + join(allowed) + ")");
  }
}

const json& DocumentReader::expect_array(const json& value, const std::string& field) const {
  if (!value.is_array()) fail(field, std::string("expected an array, got ") + value.type_name());
  return value;
}

std::string DocumentReader::expect_string(const json& value, const std::string& field) const {
  if (!value.is_string()) fail(field, std::string("expected a string, got ") + value.type_name());
  return value.get<std::string>();
}

std::string DocumentReader::expect_name(const json& value, const std::string& field) const {
  std::string name = expect_string(value, field);
  if (!is_valid_name(name)) {
    fail(field, in_quotes(name) +
                    " is not a valid name (1-64 characters of a-z, 0-9, '_' and '-', starting with a letter or digit)");
  }
  return name;
}

std::string DocumentReader::expect_version(const json& value, const std::string& field) const {
  std::string version = expect_string(value, field);
  if (!is_valid_version(version)) {
    fail(field, in_quotes(version) + " is not a semantic version (like 1.2.3 or 1.2.3-rc.1)");
  }
  return version;
}

std::vector<std::string> DocumentReader::expect_names(const json& value, const std::string& field) const {
  std::vector<std::string> names;
  const json& list = expect_array(value, field);
  for (size_t i = 0; i < list.size(); ++i) names.push_back(expect_name(list[i], at(field, i)));
  return names;
}

const json& DocumentReader::require(const json& object, const std::string& path, const char* key) const {
  const json* value = find_member(object, key);
  if (!value) fail(member(path, key), "missing");
  return *value;
}

}  // namespace hotswap::appup::detail
