// The appup file: shipped with each module version, it says how to get there
// from older versions (`up`) and back to them (`down`). Format: appup/README.md.
#pragma once

#include <hotswap/appup/version_pattern.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace hotswap::appup {

enum class Op {
  LoadModule,     // code-only change; state handed over as is (same schema required)
  Update,         // state migrated by the newer code, with `extra`
  AddModule,      // start a module that the old release does not have
  DeleteModule,   // stop a module that the new release does not have
  RestartModule,  // new code, fresh state
  Apply,          // run a named task of a module
  BlueGreen,      // cannot be done in place: needs a blue-green process handover
};

const char* to_string(Op op);

struct Instruction {
  Op op = Op::LoadModule;
  std::string module;      // the module it acts on; the appup's own module unless given
  nlohmann::json extra;    // Update: handed to the migration (null when absent)
  std::string task;        // Apply: the task name
  nlohmann::json args;     // Apply: the task's arguments (null when absent)
  std::optional<std::chrono::milliseconds> timeout;  // optional per-step limit
  std::vector<std::string> depends_on;  // modules whose steps must run first
  std::string reason;      // BlueGreen: why (optional, for the operator)
  std::string field;       // where it was declared, e.g. "up[0].instructions[1]"
};

struct AppupEntry {
  VersionPattern versions;  // `from` (up entries) or `to` (down entries)
  std::vector<Instruction> instructions;
  std::string field;        // e.g. "up[0]"
};

struct Appup {
  std::string source;   // the file it came from, for messages
  std::string module;
  std::string version;  // the module version this appup ships with
  std::vector<AppupEntry> up;
  std::vector<AppupEntry> down;

  // The first entry whose pattern matches, in file order; nullptr when none does.
  const AppupEntry* find_up(std::string_view from_version) const;
  const AppupEntry* find_down(std::string_view to_version) const;
};

// Validates and converts a parsed document. Throws InputError naming `source` and the field.
// (Reading an appup file is the host's: host/release/release_files.hpp.)
Appup parse_appup(const nlohmann::json& document, const std::string& source);

}  // namespace hotswap::appup
