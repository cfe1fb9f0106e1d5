// A release as `hotswap check` and the offline `hotswap plan` read it: a
// release folder used in place, or a release tarball unpacked into a
// temporary folder of its own that is deleted with this object. Nothing is
// written under a release root and no host needs to run.
#pragma once

#include <boost/filesystem/path.hpp>
#include <exception>
#include <string>

#include "check/check_problem.hpp"

#include "os/os_sys_calls.hpp"

namespace hotswap::host {

class ReleaseSource {
 public:
  // A folder is read in place. Any other file is taken for a tarball and
  // unpacked with the release store's rules and limits (release_store.hpp,
  // unpack_release_tarball) into a fresh folder under the system's temporary
  // folder. Throws std::runtime_error (ReleaseError for a bad tarball) naming `path`.
  explicit ReleaseSource(boost::filesystem::path path, os::OsSysCalls& os = os::real_os_sys_calls());
  ~ReleaseSource();
  ReleaseSource(const ReleaseSource&) = delete;
  ReleaseSource& operator=(const ReleaseSource&) = delete;

  // As the caller named it.
  const boost::filesystem::path& path() const { return path_; }
  // The release folder: path() itself, or the temporary folder a tarball went to.
  const boost::filesystem::path& dir() const { return dir_; }
  bool is_tarball() const { return !temporary_.empty(); }

  // `file` relative to the release folder ("appups/counter-2.0.0.appup.json")
  // when it lies inside it; otherwise `file` as given.
  std::string relative(const boost::filesystem::path& file) const;
  // `text` with the temporary folder's path replaced by the tarball's, so a
  // message names a file as "dist/counter-2.0.0.tar.gz/manifest.json" rather
  // than a folder that is gone once the check ends.
  std::string shown(std::string text) const;

 private:
  boost::filesystem::path path_;
  boost::filesystem::path dir_;
  boost::filesystem::path temporary_;  // empty for a folder
};

// The file, field and message of the exception that reported a problem: an
// appup::InputError or a ConfigError gives its own file (the path as it was
// read) and field; anything else gives an empty file and field and its what().
CheckProblem problem_of(const std::exception& error);

}  // namespace hotswap::host
