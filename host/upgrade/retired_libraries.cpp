#include "upgrade/retired_libraries.hpp"

namespace hotswap::host {

std::vector<std::string> RetiredLibraries::close_all() {
  std::vector<std::string> leaked;
  for (auto& library : libraries_) {
    if (library.use_count() != 1) continue;  // still in use elsewhere: closes with its last owner
    std::string name = library->name() + " " + library->version();
    if (!library->close()) leaked.push_back(name);
  }
  libraries_.clear();
  return leaked;
}

}  // namespace hotswap::host
