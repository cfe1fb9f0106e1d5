// ROOT/run/hotswap.pid: holds the host's pid under an exclusive flock for as
// long as the host runs, so that two hosts never serve one root and `stop`
// can tell when the host is gone (the lock is free).
//
// The lock lives on the file's inode, not on its name. The owner unlinks the
// file while it still holds the lock and only then closes it; a contender
// that opened the old inode before the unlink may get the lock on that
// nameless inode, so after locking it checks that the path still names the
// inode it locked, and starts over when it does not. Whoever holds the lock
// on the inode the path names is the one live host.
#pragma once

#include <sys/types.h>

#include <boost/filesystem/path.hpp>
#include <optional>

#include "os/fd.hpp"
#include "os/os_sys_calls.hpp"

namespace hotswap::host {

class PidFile {
 public:
  // Locks and writes our pid. Throws std::runtime_error naming the running pid
  // when locked. `os` must outlive the PidFile.
  explicit PidFile(boost::filesystem::path file, os::OsSysCalls& os = os::real_os_sys_calls());
  // Unlinks the file, then releases the lock (closes it).
  ~PidFile();
  PidFile(const PidFile&) = delete;
  PidFile& operator=(const PidFile&) = delete;

  // The pid of a live host holding the lock, if any.
  static std::optional<pid_t> running(const boost::filesystem::path& file,
                                      os::OsSysCalls& os = os::real_os_sys_calls());

 private:
  boost::filesystem::path file_;
  os::OsSysCalls& os_;
  os::Fd fd_;
};

}  // namespace hotswap::host
