#include "upgrade/release_task.hpp"

#include "core/module_registry.hpp"
#include "release/release_files.hpp"

namespace hotswap::host {

std::string run_release_task(const boost::filesystem::path& release_dir, const RuntimeConfig& config, const ReleaseTask& task,
                             LibraryLoader& loader) {
  appup::ReleaseManifest manifest = load_release_manifest(release_dir);
  const appup::ModuleEntry* entry = manifest.find(task.module);
  if (entry == nullptr)
    throw std::runtime_error("release " + manifest.version + " has no module '" + task.module + "'");
  DetachedServices services;
  ModuleRegistry registry(services);
  registry.set_module_config(entry->name, config.module_section(entry->name));
  ModuleSlot& slot = registry.start(loader.load(entry->file, {entry->name, entry->version, entry->sha256}));
  std::string result = slot.active().run_task(task.name, task.args.dump());
  registry.stop_all();
  return result;
}

}  // namespace hotswap::host
