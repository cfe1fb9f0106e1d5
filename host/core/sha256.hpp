// SHA-256 of a file, as the release manifest records it (64 lowercase hex digits).
#pragma once

#include <boost/filesystem/path.hpp>
#include <string>

namespace hotswap::host {

// Throws std::runtime_error naming the file when it cannot be read.
std::string sha256_file(const boost::filesystem::path& file);

}  // namespace hotswap::host
