// Helpers for the loader, ELF and probe tests: a private temporary folder,
// copies of libraries (whole, truncated, with a given mode), a command's output.
#pragma once

#include <sys/stat.h>

#include <array>
#include <boost/filesystem.hpp>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

namespace hotswap::test {

// A fresh 0755 folder under the system temp folder, removed with everything in it.
class ScratchDir {
 public:
  ScratchDir() : path_(boost::filesystem::temp_directory_path() / boost::filesystem::unique_path("hotswap-loader-test-%%%%%%%%")) {
    boost::filesystem::create_directories(path_);
    ::chmod(path_.c_str(), 0755);
  }
  ~ScratchDir() {
    boost::system::error_code ec;
    boost::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const boost::filesystem::path& path() const { return path_; }

 private:
  boost::filesystem::path path_;
};

// Writes the first `size` bytes of `from` (all of it when larger) to `to`, with `mode`.
inline void copy_prefix(const boost::filesystem::path& from, const boost::filesystem::path& to, size_t size,
                        mode_t mode = 0644) {
  std::ifstream in(from.string(), std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
  bytes.resize(std::min(bytes.size(), size));
  std::ofstream(to.string(), std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ::chmod(to.c_str(), mode);
}

// What `command` prints on stdout (stderr is not captured).
inline std::string command_output(const std::string& command) {
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(command.c_str(), "r"), ::pclose);
  std::string out;
  if (!pipe) return out;
  std::array<char, 4096> buffer;
  size_t got;
  while ((got = std::fread(buffer.data(), 1, buffer.size(), pipe.get())) > 0) out.append(buffer.data(), got);
  return out;
}

}  // namespace hotswap::test
