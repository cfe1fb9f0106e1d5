// `hotswap check RELEASE [--against OTHER]...`: everything a host would find
// wrong with a release, found before anything runs, with no host (no admin
// socket, no release root). RELEASE is a release folder or a tarball made by
// hotswap_add_release. Checked, each problem naming the file and the field:
//  - the manifest (appup::parse_manifest), that every file it names exists,
//    and every library's sha256;
//  - every appup, with the runtime's own parser (load_appup), that it is the
//    appup of its module and version (appup::check_appup_is_of, the planner's
//    own check), and that its entries can apply: an exact `from`/`to` version
//    older than the module's, at least one code change per entry, add_module
//    and delete_module naming modules this release has (or has not);
//  - every library, loaded as the host loads it (LibraryLoader: ELF checks,
//    the probe child, the entry symbol, the descriptor's ABI) with the name
//    and version the manifest gives;
//  - the runtime config template, and that it names modules of the release.
// One release alone has one state schema per module, so whether a load_module
// crosses a schema change needs the other release: each OTHER given with
// --against is planned both ways (plan_offline), which refuses it in the live
// host's words.
#pragma once

#include <boost/filesystem/path.hpp>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "check/check_problem.hpp"
#include "check/offline_plan.hpp"
#include "core/library_loader.hpp"

namespace hotswap::host {

struct CheckedModule {
  std::string name;
  std::string version;
  std::string file;  // relative to the release
  bool loaded = false;
  uint32_t abi_version = 0;   // as the loaded descriptor says (when loaded)
  uint32_t state_schema = 0;  // likewise
};

struct ReleaseCheck {
  std::string release;  // as named
  std::string name;     // from the manifest, when it could be read
  std::string version;
  std::vector<CheckedModule> modules;
  std::vector<CheckProblem> problems;  // each makes the release fail the check
  // Not wrong in the release itself, but worth knowing (a blue_green entry
  // this host cannot run, an environment variable the config needs that is
  // unset here).
  std::vector<CheckProblem> warnings;
  std::vector<OfflinePlan> plans;  // one per direction per --against release

  bool ok() const { return problems.empty(); }
  // {"ok", "release", "name", "version", "modules": [...], "problems": [{"file","field","message"}],
  //  "warnings": [...], "plans": [...]}
  nlohmann::json to_json() const;
  // One line per problem and warning, then a verdict line.
  std::string describe() const;
};

// Checks `release` (a folder or a tarball). `loader` should carry a
// ChildProcessProbe, so a library that crashes while loading costs only the
// probe child. Never throws for a problem of the release: every one found is
// in `problems`.
ReleaseCheck check_release(const boost::filesystem::path& release, LibraryLoader& loader,
                           const std::vector<boost::filesystem::path>& against = {});

}  // namespace hotswap::host
