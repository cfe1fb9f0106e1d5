#pragma once

#include <boost/filesystem/path.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "core/library_loader.hpp"
#include "release/runtime_config.hpp"

namespace hotswap::host {

// A named task of a module, run on a fresh instance of a release's code that
// serves no traffic (`hotswap task`, and an upgrade's pre-upgrade task).
struct ReleaseTask {
  std::string module;
  std::string name;
  nlohmann::json args = nullptr;
};

// Loads `task.module` from `release_dir` (hash-checked), creates it with its
// config section from `config`, runs the task and returns its result. Sends
// reach no one and timers never fire. Throws with a clear message.
std::string run_release_task(const boost::filesystem::path& release_dir, const RuntimeConfig& config,
                             const ReleaseTask& task, LibraryLoader& loader);

}  // namespace hotswap::host
