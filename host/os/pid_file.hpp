// ROOT/run/hotswap.pid: holds the host's pid under an exclusive flock for as
// long as the host runs, so that two hosts never serve one root and `stop`
// can tell when the host is gone (the lock is free).
#pragma once

#include <sys/types.h>

#include <boost/filesystem/path.hpp>
#include <optional>

namespace hotswap::host {

class PidFile {
 public:
  // Locks and writes our pid. Throws std::runtime_error naming the running pid when locked.
  explicit PidFile(boost::filesystem::path file);
  ~PidFile();
  PidFile(const PidFile&) = delete;
  PidFile& operator=(const PidFile&) = delete;

  // The pid of a live host holding the lock, if any.
  static std::optional<pid_t> running(const boost::filesystem::path& file);

 private:
  boost::filesystem::path file_;
  int fd_ = -1;
};

}  // namespace hotswap::host
