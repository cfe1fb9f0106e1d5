// Shared by the appup and manifest parsers: reading a JSON file and checking
// a document's fields, so that every complaint is an InputError naming the file
// and the JSON path of the field.
#pragma once

#include <boost/filesystem/path.hpp>
#include <nlohmann/json.hpp>

#include <cstddef>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace hotswap::appup::detail {

using nlohmann::json;

// JSON paths for messages: member("up[1]", "from") is "up[1].from", member("", "up") is "up",
// at("up", 1) is "up[1]".
std::string member(const std::string& path, const std::string& key);
std::string at(const std::string& path, std::size_t index);

// Reads and parses one JSON file; an unreadable file or a syntax error is an InputError.
json read_json_file(const boost::filesystem::path& file);

// A value inside `object`, or nullptr when the key is absent.
const json* find_member(const json& object, const char* key);

class DocumentReader {
 public:
  explicit DocumentReader(std::string source) : source_(std::move(source)) {}
  const std::string& source() const { return source_; }

  [[noreturn]] void fail(const std::string& field, const std::string& problem) const;

  // `value` must be an object; with `allowed`, every key must be one of them.
  void expect_object(const json& value, const std::string& field) const;
  void expect_object(const json& value, const std::string& field, std::initializer_list<const char*> allowed) const;
  const json& expect_array(const json& value, const std::string& field) const;
  std::string expect_string(const json& value, const std::string& field) const;
  std::string expect_name(const json& value, const std::string& field) const;     // is_valid_name
  std::string expect_version(const json& value, const std::string& field) const;  // is_valid_version
  std::vector<std::string> expect_names(const json& value, const std::string& field) const;

  // object[key], which must be present; `path` is the object's own path.
  const json& require(const json& object, const std::string& path, const char* key) const;

 private:
  std::string source_;
};

}  // namespace hotswap::appup::detail
