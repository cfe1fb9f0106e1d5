// Reading the files of an unpacked release (its manifest), with messages for the
// operator. appup/ parses; this is where the host touches the disk for it.
#pragma once

#include <boost/filesystem/path.hpp>
#include <hotswap/appup/manifest.hpp>

namespace hotswap::host {

// Reads and validates <dir>/manifest.json. Throws std::runtime_error naming the file and field.
appup::ReleaseManifest load_release_manifest(const boost::filesystem::path& dir);

}  // namespace hotswap::host
