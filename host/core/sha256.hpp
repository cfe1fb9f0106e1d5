// SHA-256 of a file, as the release manifest records it (64 lowercase hex digits).
#pragma once

#include <boost/filesystem/path.hpp>
#include <string>

#include "os/os_sys_calls.hpp"

namespace hotswap::host {

// Throws std::runtime_error naming the file and errno's text when it cannot be read.
std::string sha256_file(const boost::filesystem::path& file, os::OsSysCalls& os = os::real_os_sys_calls());
// SHA-256 of `size` bytes in memory, in the same form.
std::string sha256_bytes(const void* data, size_t size);

}  // namespace hotswap::host
