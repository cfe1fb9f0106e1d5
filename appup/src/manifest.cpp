#include <hotswap/appup/manifest.hpp>

#include <hotswap/appup/error.hpp>

#include <hotswap/appup/json_reader.hpp>

#include <boost/filesystem/operations.hpp>  // absolute()

#include <algorithm>
#include <cctype>
#include <map>

namespace hotswap::appup {

namespace fs = boost::filesystem;
using nlohmann::json;

namespace {

std::string expect_sha256(const JsonReader& doc, const json& value, const std::string& field) {
  std::string digest = doc.expect_string(value, field);
  constexpr size_t kSha256HexDigits = 64;
  const bool hex = std::all_of(digest.begin(), digest.end(), [](unsigned char c) { return std::isxdigit(c) != 0; });
  if (digest.size() != kSha256HexDigits || !hex) {
    doc.fail(field, "expected 64 hexadecimal digits (a SHA-256 digest), got '" + digest + "'");
  }
  std::transform(digest.begin(), digest.end(), digest.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return digest;
}

// Paths in a manifest are relative to the release folder and may not leave it:
// a release is copied, verified and trusted as one folder.
fs::path expect_relative_path(const JsonReader& doc, const json& value, const std::string& field) {
  const std::string text = doc.expect_string(value, field);
  if (text.empty()) doc.fail(field, "empty path");
  const fs::path path(text);
  if (path.has_root_directory() || path.has_root_name()) {
    doc.fail(field, "'" + text + "' is absolute; paths are relative to the release folder");
  }
  for (const fs::path& part : path) {
    if (part == "..") doc.fail(field, "'" + text + "' contains '..'; paths must stay inside the release folder");
  }
  return path;
}

ModuleEntry parse_module(const JsonReader& doc, const json& value, const std::string& field, const fs::path& dir) {
  doc.expect_object(value, field, {"name", "version", "file", "sha256", "appup", "depends_on"});
  ModuleEntry module;
  module.name = doc.expect_name(doc.require(value, field, "name"), key_path(field, "name"));
  module.version = doc.expect_version(doc.require(value, field, "version"), key_path(field, "version"));
  module.file = dir / expect_relative_path(doc, doc.require(value, field, "file"), key_path(field, "file"));
  module.sha256 = expect_sha256(doc, doc.require(value, field, "sha256"), key_path(field, "sha256"));
  if (const json* appup = find_member(value, "appup")) {
    module.appup = dir / expect_relative_path(doc, *appup, key_path(field, "appup"));
  }
  if (const json* depends_on = find_member(value, "depends_on")) {
    module.depends_on = doc.expect_names(*depends_on, key_path(field, "depends_on"));
  }
  return module;
}

void check_unique_names(const JsonReader& doc, const ReleaseManifest& manifest) {
  std::map<std::string, size_t> first_index;
  for (size_t i = 0; i < manifest.modules.size(); ++i) {
    const auto [it, inserted] = first_index.emplace(manifest.modules[i].name, i);
    if (!inserted) {
      doc.fail(key_path(index_path("modules", i), "name"),
               "duplicate module '" + it->first + "' (already declared by " + index_path("modules", it->second) + ")");
    }
  }
}

void check_dependencies(const JsonReader& doc, const ReleaseManifest& manifest) {
  for (size_t i = 0; i < manifest.modules.size(); ++i) {
    const ModuleEntry& module = manifest.modules[i];
    for (size_t j = 0; j < module.depends_on.size(); ++j) {
      const std::string field = index_path(key_path(index_path("modules", i), "depends_on"), j);
      const std::string& dependency = module.depends_on[j];
      if (dependency == module.name) doc.fail(field, "module '" + module.name + "' cannot depend on itself");
      if (!manifest.find(dependency)) doc.fail(field, "'" + dependency + "' is not a module of this release");
    }
  }
}

}  // namespace

const ModuleEntry* ReleaseManifest::find(std::string_view module) const {
  const auto it = std::find_if(modules.begin(), modules.end(), [&](const ModuleEntry& m) { return m.name == module; });
  return it == modules.end() ? nullptr : &*it;
}

nlohmann::json ReleaseManifest::to_json() const {
  const auto relative = [this](const fs::path& path) { return path.lexically_relative(dir).generic_string(); };
  json modules_json = json::array();
  for (const ModuleEntry& module : modules) {
    json entry = {
        {"name", module.name}, {"version", module.version}, {"file", relative(module.file)}, {"sha256", module.sha256}};
    if (!module.appup.empty()) entry["appup"] = relative(module.appup);
    if (!module.depends_on.empty()) entry["depends_on"] = module.depends_on;
    modules_json.push_back(std::move(entry));
  }
  json document = {{"release", name}, {"version", version}, {"modules", std::move(modules_json)}};
  if (!config.empty()) document["config"] = relative(config);
  return document;
}

ReleaseManifest parse_manifest(const nlohmann::json& document, const fs::path& release_dir, const std::string& source) {
  const JsonReader doc(source);
  doc.expect_object(document, "", {"release", "version", "config", "modules"});
  ReleaseManifest manifest;
  manifest.source = source;
  manifest.dir = fs::absolute(release_dir);
  manifest.name = doc.expect_name(doc.require(document, "", "release"), "release");
  manifest.version = doc.expect_version(doc.require(document, "", "version"), "version");
  if (const json* config = find_member(document, "config")) {
    manifest.config = manifest.dir / expect_relative_path(doc, *config, "config");
  }
  const json& modules = doc.expect_array(doc.require(document, "", "modules"), "modules");
  for (size_t i = 0; i < modules.size(); ++i)
    manifest.modules.push_back(parse_module(doc, modules[i], index_path("modules", i), manifest.dir));
  check_unique_names(doc, manifest);
  check_dependencies(doc, manifest);
  return manifest;
}

}  // namespace hotswap::appup
