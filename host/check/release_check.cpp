#include "check/release_check.hpp"

#include <boost/filesystem/operations.hpp>
#include <hotswap/appup/error.hpp>
#include <hotswap/appup/json_reader.hpp>
#include <hotswap/appup/planner.hpp>
#include <hotswap/appup/semver.hpp>
#include <memory>
#include <optional>
#include <set>

#include "check/release_source.hpp"
#include "core/sha256.hpp"
#include "release/release_files.hpp"
#include "release/runtime_config.hpp"
#include "upgrade/upgrade_coordinator.hpp"

namespace hotswap::host {

namespace fs = boost::filesystem;
using appup::Op;
using nlohmann::json;

namespace {

constexpr const char* kManifest = "manifest.json";

// The part of a library a load failure is about.
std::string library_field(LoadError::Kind kind) {
  switch (kind) {
    case LoadError::Kind::NotSharedObject:
    case LoadError::Kind::CorruptElf:
      return "ELF image";
    case LoadError::Kind::GnuUnique:
      return "dynamic symbols";
    case LoadError::Kind::MissingEntry:
      return HOTSWAP_ENTRY_SYMBOL;
    case LoadError::Kind::AbiTooOld:
    case LoadError::Kind::AbiTooNew:
      return "descriptor.abi_version";
    case LoadError::Kind::BadDescriptor:
      return "descriptor";
    case LoadError::Kind::NameMismatch:
      return "descriptor.name";
    case LoadError::Kind::VersionMismatch:
      return "descriptor.version";
    default:
      return "";
  }
}

bool changes_code(Op op) { return op == Op::LoadModule || op == Op::Update || op == Op::RestartModule; }

class ReleaseChecker {
 public:
  ReleaseChecker(const fs::path& release, LibraryLoader& loader, const std::vector<fs::path>& against)
      : release_(release), loader_(loader), against_(against) {}

  ReleaseCheck run() {
    result_.release = release_.string();
    std::unique_ptr<ReleaseSource> source;
    try {
      source = std::make_unique<ReleaseSource>(release_);
    } catch (const std::exception& e) {
      problem({release_.string(), "", e.what()});
      return std::move(result_);
    }
    source_ = source.get();
    std::optional<appup::ReleaseManifest> manifest;
    try {
      manifest = load_manifest(source_->dir());
    } catch (const std::exception& e) {
      problem(found_in(e, kManifest));
      return std::move(result_);
    }
    result_.name = manifest->name;
    result_.version = manifest->version;
    for (size_t i = 0; i < manifest->modules.size(); ++i) check_module(*manifest, i);
    check_runtime_config(*manifest);
    for (const fs::path& other : against_) check_against(other);
    return std::move(result_);
  }

 private:
  void problem(CheckProblem found) { result_.problems.push_back(std::move(found)); }
  void warning(CheckProblem found) { result_.warnings.push_back(std::move(found)); }
  std::string relative(const fs::path& file) const { return source_->shown(source_->relative(file)); }

  // The problem an exception reports, its file named relative to the release
  // (`file` when it names none).
  CheckProblem found_in(const std::exception& e, const std::string& file) const {
    CheckProblem found = problem_of(e);
    found.file = found.file.empty() ? file : relative(found.file);
    found.message = source_->shown(found.message);
    return found;
  }

  bool file_present(const fs::path& file, const std::string& field) {
    boost::system::error_code ec;
    if (fs::is_regular_file(file, ec)) return true;
    problem({kManifest, field, "names " + relative(file) + ", which the release does not contain"});
    return false;
  }

  void check_module(const appup::ReleaseManifest& manifest, size_t index) {
    const appup::ModuleEntry& module = manifest.modules[index];
    const std::string field = appup::index_path("modules", index);
    CheckedModule& checked = result_.modules.emplace_back();
    checked.name = module.name;
    checked.version = module.version;
    checked.file = relative(module.file);
    if (file_present(module.file, appup::key_path(field, "file"))) check_library(module, field, checked);
    if (!module.appup.empty() && file_present(module.appup, appup::key_path(field, "appup")))
      check_appup(manifest, module);
  }

  void check_library(const appup::ModuleEntry& module, const std::string& field, CheckedModule& checked) {
    try {
      const std::string actual = sha256_file(module.file);
      if (actual != module.sha256)
        problem({kManifest, appup::key_path(field, "sha256"),
                 "is " + module.sha256 + ", but " + relative(module.file) + " has sha256 " + actual});
    } catch (const std::exception& e) {
      problem({relative(module.file), "", source_->shown(e.what())});
      return;
    }
    // The hash was compared above, so that a library with a wrong hash is still
    // checked for everything else.
    try {
      const std::shared_ptr<LoadedLibrary> library = loader_.load(module.file, {module.name, module.version, ""});
      checked.loaded = true;
      checked.abi_version = library->descriptor().abi_version;
      checked.state_schema = library->state_schema();
    } catch (const LoadError& e) {
      problem({relative(module.file), library_field(e.kind()), source_->shown(e.what())});
    } catch (const std::exception& e) {
      problem({relative(module.file), "", source_->shown(e.what())});
    }
  }

  void check_appup(const appup::ReleaseManifest& manifest, const appup::ModuleEntry& module) {
    appup::Appup parsed;
    try {
      parsed = load_appup_of(module);
      appup::check_appup_is_of(parsed, module);
    } catch (const std::exception& e) {
      problem(found_in(e, relative(module.appup)));
      return;
    }
    const std::string file = relative(module.appup);
    const appup::Version own = *appup::Version::parse(module.version);
    for (const appup::AppupEntry& entry : parsed.up) check_entry(manifest, module, file, own, entry, true);
    for (const appup::AppupEntry& entry : parsed.down) check_entry(manifest, module, file, own, entry, false);
  }

  // What can be told of one entry without the other release. The planner uses
  // `up` entries for upgrades from older versions and `down` entries for
  // downgrades to older ones; this release is the target of the first and
  // the running release of the second.
  void check_entry(const appup::ReleaseManifest& manifest, const appup::ModuleEntry& module, const std::string& file,
                   const appup::Version& own, const appup::AppupEntry& entry, bool up) {
    const char* pattern_key = up ? "from" : "to";
    if (!entry.versions.is_regex()) {
      const std::string other = entry.versions.describe();
      const std::optional<appup::Version> version = appup::Version::parse(other);
      if (version && !(*version < own))
        problem({file, appup::key_path(entry.field, pattern_key),
                 "names " + other + ", which is not older than " + module.name + " " + module.version + ": " +
                     (up ? "an upgrade to " : "a downgrade from ") + module.version +
                     (up ? " only comes from older versions" : " only goes to older versions") +
                     ", so this entry never applies"});
    }
    bool code_change = false, blue_green = false;
    for (const appup::Instruction& instruction : entry.instructions) {
      code_change = code_change || changes_code(instruction.op);
      if (instruction.op == Op::BlueGreen) {
        blue_green = true;
        warning({file, instruction.field,
                 "requires a blue-green handover" +
                     (instruction.reason.empty() ? std::string() : " (" + instruction.reason + ")") +
                     ": an upgrade through this entry is made by handing the listeners, connections and "
                     "module state over to a new process on the target release (its bin/hotswap)"});
      }
      const bool here = manifest.find(instruction.module) != nullptr;
      const std::string& name = instruction.module;
      // An upgrade to this release adds modules it has and deletes modules it
      // has not; a downgrade from it, the reverse.
      if (instruction.op == Op::AddModule && up && !here)
        problem({file, instruction.field, "adds " + name + ", which this release does not have"});
      if (instruction.op == Op::DeleteModule && up && here)
        problem({file, instruction.field, "deletes " + name + ", which this release still has"});
      if (instruction.op == Op::AddModule && !up && here)
        problem({file, instruction.field,
                 "adds " + name + " on a downgrade from this release, which already runs it"});
      if (instruction.op == Op::DeleteModule && !up && !here)
        problem({file, instruction.field,
                 "deletes " + name + " on a downgrade from this release, which does not have it"});
    }
    if (!code_change && !blue_green)
      problem({file, appup::key_path(entry.field, "instructions"),
               "instructions never change the code of " + module.name +
                   " (add load_module, update or restart_module)"});
  }

  void check_runtime_config(const appup::ReleaseManifest& manifest) {
    if (manifest.config.empty()) return;
    if (!file_present(manifest.config, "config")) return;
    // The config is read where the host runs: an environment variable unset
    // here is not a fault of the release.
    std::set<std::string> unset;
    const EnvLookup process = process_environment();
    const EnvLookup recording = [&](const std::string& name) {
      std::optional<std::string> value = process(name);
      if (!value) unset.insert(name);
      return value;
    };
    try {
      const RuntimeConfig config = load_runtime_config(manifest.config, recording);
      check_config_matches(config, manifest, manifest.config);
    } catch (const ConfigError& e) {
      CheckProblem found = found_in(e, relative(manifest.config));
      const bool environment = !unset.empty() && std::string(e.what()).find("environment variable") != std::string::npos;
      if (environment) {
        found.message += " (not checked further: set it where the host runs)";
        warning(std::move(found));
      } else {
        problem(std::move(found));
      }
    } catch (const std::exception& e) {
      problem(found_in(e, relative(manifest.config)));
    }
  }

  void check_against(const fs::path& other) {
    std::unique_ptr<ReleaseSource> source;
    try {
      source = std::make_unique<ReleaseSource>(other);
    } catch (const std::exception& e) {
      problem({other.string(), "", e.what()});
      return;
    }
    for (bool to_this : {true, false}) {
      OfflinePlan plan = to_this ? plan_offline(*source, *source_, loader_, source_)
                                 : plan_offline(*source_, *source, loader_, source_);
      for (const CheckProblem& found : plan.problems) problem(found);
      result_.plans.push_back(std::move(plan));
    }
  }

  fs::path release_;
  LibraryLoader& loader_;
  const std::vector<fs::path>& against_;
  const ReleaseSource* source_ = nullptr;
  ReleaseCheck result_;
};

json problems_json(const std::vector<CheckProblem>& problems) {
  json list = json::array();
  for (const CheckProblem& problem : problems) list.push_back(problem.to_json());
  return list;
}

}  // namespace

json ReleaseCheck::to_json() const {
  json module_list = json::array();
  for (const CheckedModule& module : modules) {
    json entry = {{"name", module.name}, {"version", module.version}, {"file", module.file}, {"loaded", module.loaded}};
    if (module.loaded) {
      entry["abi_version"] = module.abi_version;
      entry["state_schema"] = module.state_schema;
    }
    module_list.push_back(std::move(entry));
  }
  json plan_list = json::array();
  for (const OfflinePlan& plan : plans) plan_list.push_back(plan.to_json());
  return {{"ok", ok()},           {"release", release},       {"name", name},
          {"version", version},   {"modules", module_list},   {"problems", problems_json(problems)},
          {"warnings", problems_json(warnings)}, {"plans", plan_list}};
}

std::string ReleaseCheck::describe() const {
  std::string text;
  for (const CheckProblem& problem : problems) text += "error: " + problem.describe() + "\n";
  for (const CheckProblem& found : warnings) text += "warning: " + found.describe() + "\n";
  const std::string what = name.empty() ? release : "release " + name + " " + version + " (" + release + ")";
  if (ok()) {
    text += what + ": ok, " + std::to_string(modules.size()) + (modules.size() == 1 ? " module" : " modules") +
            " checked";
    if (!plans.empty()) text += ", " + std::to_string(plans.size()) + " plans checked";
    return text + "\n";
  }
  return text + what + ": " + std::to_string(problems.size()) + (problems.size() == 1 ? " problem" : " problems") +
         "\n";
}

ReleaseCheck check_release(const fs::path& release, LibraryLoader& loader, const std::vector<fs::path>& against) {
  return ReleaseChecker(release, loader, against).run();
}

}  // namespace hotswap::host
