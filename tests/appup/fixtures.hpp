// Helpers shared by the appup tests: a scratch folder that removes itself.
#pragma once

#include <boost/filesystem/fstream.hpp>
#include <boost/filesystem/operations.hpp>
#include <boost/filesystem/path.hpp>

#include <string>

namespace hotswap::appup::testing {

class TempDir {
 public:
  TempDir()
      : path_(boost::filesystem::temp_directory_path() /
              boost::filesystem::unique_path("hotswap-appup-%%%%-%%%%-%%%%")) {
    boost::filesystem::create_directories(path_);
  }
  ~TempDir() {
    boost::system::error_code ignored;  // a destructor must not throw; a leftover temp folder is harmless
    boost::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const boost::filesystem::path& path() const { return path_; }

  // Writes `text` to path()/relative, creating folders on the way; returns the full path.
  boost::filesystem::path write(const std::string& relative, const std::string& text) const {
    const boost::filesystem::path file = path_ / relative;
    boost::filesystem::create_directories(file.parent_path());
    boost::filesystem::ofstream out(file, std::ios::binary);
    out << text;
    return file;
  }

 private:
  boost::filesystem::path path_;
};

}  // namespace hotswap::appup::testing
