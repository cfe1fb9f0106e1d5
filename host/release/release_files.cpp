#include "release/release_files.hpp"

#include <hotswap/appup/error.hpp>
#include <stdexcept>

namespace hotswap::host {

namespace fs = boost::filesystem;

appup::ReleaseManifest load_release_manifest(const fs::path& dir) {
  try {
    return appup::load_manifest(dir);
  } catch (const appup::InputError& e) {
    throw std::runtime_error(std::string("invalid release manifest: ") + e.what());
  }
}

}  // namespace hotswap::host
