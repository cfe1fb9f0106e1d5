// The one typed JSON reader of the project: the appup and manifest parsers and
// the host's runtime.json parser read their documents with it, so that every
// complaint is an InputError naming the source and the key path of the value,
// in the same words everywhere:
//
//   runtime.json: listeners[0].port: expected an integer, got string 'seven'
//   counter.appup.json: up[0].instructions[1].op: missing
//
// Pure: it reads values, never files (host/release/release_files.hpp does).
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hotswap::appup {

// Key paths for messages: key_path("up[1]", "from") is "up[1].from",
// key_path("", "up") is "up", index_path("up", 1) is "up[1]".
std::string key_path(const std::string& path, const std::string& key);
std::string index_path(const std::string& path, std::size_t index);

// A value as a message names it: "string 'game'", "number 3", "boolean", "array".
std::string describe_json(const nlohmann::json& value);

// How deep arrays and objects may nest in a file a release carries or in an
// admin request. Copying, dumping and comparing a JSON value recurse once per
// level: an unbounded depth is a stack overflow (an appup `extra` 100k deep
// killed the host). Real documents stay under 10 levels.
constexpr std::size_t kMaxJsonDepth = 64;

// Parses untrusted JSON text. A syntax error is InputError(what, "", "invalid JSON: ..."),
// nesting deeper than max_depth levels ("[[1]]" has 2) is InputError(what, "",
// "JSON nested deeper than <max_depth> levels"), refused while parsing, before
// anything recursive sees the value. The parser itself never recurses.
nlohmann::json parse_json_bounded(std::string_view text, const std::string& what,
                                  std::size_t max_depth = kMaxJsonDepth);
// parse_json_bounded with kMaxJsonDepth.
nlohmann::json parse_json_text(std::string_view text, const std::string& source);

// A value inside `object`, or nullptr when the key is absent.
const nlohmann::json* find_member(const nlohmann::json& object, const char* key);

// Whether a number field also takes a string holding the number (what
// "${PORT:-7000}" becomes after the runtime config's substitution).
enum class NumberText { Refused, Accepted };

class JsonReader {
 public:
  explicit JsonReader(std::string source) : source_(std::move(source)) {}
  const std::string& source() const { return source_; }

  // Throws InputError(source, path, problem).
  [[noreturn]] void fail(const std::string& path, const std::string& problem) const;

  // `value` must be an object; with `allowed`, every key must be one of them.
  void expect_object(const nlohmann::json& value, const std::string& path) const;
  void expect_object(const nlohmann::json& value, const std::string& path,
                     std::initializer_list<const char*> allowed) const;
  const nlohmann::json& expect_array(const nlohmann::json& value, const std::string& path) const;
  std::string expect_string(const nlohmann::json& value, const std::string& path) const;
  // A string that is one of `choices`.
  std::string expect_one_of(const nlohmann::json& value, const std::string& path,
                            std::initializer_list<const char*> choices) const;
  std::string expect_name(const nlohmann::json& value, const std::string& path) const;     // is_valid_name
  std::string check_name(const std::string& name, const std::string& path) const;          // for object keys
  std::string expect_version(const nlohmann::json& value, const std::string& path) const;  // is_valid_version
  std::vector<std::string> expect_names(const nlohmann::json& value, const std::string& path) const;
  // A whole number in min..max.
  int64_t expect_integer(const nlohmann::json& value, const std::string& path, int64_t min, int64_t max,
                         NumberText text = NumberText::Refused) const;
  // A finite number in min..max.
  double expect_number(const nlohmann::json& value, const std::string& path, double min, double max,
                       NumberText text = NumberText::Refused) const;

  // object[key], which must be present; `path` is the object's own path.
  const nlohmann::json& require(const nlohmann::json& object, const std::string& path, const char* key) const;

 private:
  template <typename Number>
  [[noreturn]] void fail_range(const std::string& path, Number min, Number max, const nlohmann::json& value) const;

  std::string source_;
};

}  // namespace hotswap::appup
