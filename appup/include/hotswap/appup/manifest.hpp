// The release manifest (manifest.json at the top of a release folder): the
// release's name and version and, for each module, its version, file, sha256,
// appup and dependencies. Format: appup/README.md.
#pragma once

#include <boost/filesystem/path.hpp>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace hotswap::appup {

struct ModuleEntry {
  std::string name;
  std::string version;
  boost::filesystem::path file;   // absolute: release folder / manifest's relative path
  std::string sha256;             // 64 lowercase hex digits
  boost::filesystem::path appup;  // absolute; empty when the module ships no appup
  std::vector<std::string> depends_on;
};

struct ReleaseManifest {
  std::string source;  // the manifest file, for messages
  boost::filesystem::path dir;  // the release folder
  std::string name;
  std::string version;
  std::vector<ModuleEntry> modules;
  boost::filesystem::path config;  // absolute path of the release's runtime config template; empty when none

  const ModuleEntry* find(std::string_view module) const;
  nlohmann::json to_json() const;  // the manifest as written (relative paths)
};

// Validates names, versions, hashes and paths (relative, inside the release
// folder, no ".."), unique module names, known dependencies. Throws InputError.
// (Reading manifest.json is the host's: host/release/release_files.hpp.)
ReleaseManifest parse_manifest(const nlohmann::json& document, const boost::filesystem::path& release_dir,
                               const std::string& source);

}  // namespace hotswap::appup
