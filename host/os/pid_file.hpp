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
//
// A blue-green handover moves the file to the successor without a moment in
// which the path names no locked inode: green (TakeOver) writes its pid to a
// temporary file beside the path, locks it and renames it over the path while
// blue still holds its lock on the old inode, now nameless; blue then calls
// hand_over_name(), which lets its lock go without unlinking the path (green's
// now). running() reports blue's pid before the rename and green's after it.
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

  struct TakeOver {};
  // Green's side of a handover: writes `pid` to "<file>.<pid>.new", locks it
  // and renames it over `file`, whoever holds the lock on the inode `file`
  // named. Throws std::runtime_error naming the file and the call that failed
  // (the temporary file is removed, `file` is left as it was).
  PidFile(TakeOver, boost::filesystem::path file, pid_t pid, os::OsSysCalls& os = os::real_os_sys_calls());

  // Unlinks the file (unless hand_over_name() ran, or the path no longer
  // names our inode: a successor took it over), then releases the lock.
  ~PidFile();
  PidFile(const PidFile&) = delete;
  PidFile& operator=(const PidFile&) = delete;

  // The pid of a live host holding the lock, if any.
  static std::optional<pid_t> running(const boost::filesystem::path& file,
                                      os::OsSysCalls& os = os::real_os_sys_calls());

  // Blue's side of a handover, once green took the file over: releases the
  // lock on our (now nameless) inode and leaves the path alone. Idempotent;
  // the destructor then does nothing.
  void hand_over_name();
  // Whether the path still names the inode we hold locked (false after a take-over or hand_over_name()).
  bool owns_path() const;

 private:
  boost::filesystem::path file_;
  os::OsSysCalls& os_;
  os::Fd fd_;
};

}  // namespace hotswap::host
