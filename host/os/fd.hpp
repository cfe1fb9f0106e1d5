// One owned file descriptor: move-only, closed exactly once (by close() or the
// destructor), through the OsSysCalls it was opened with.
#pragma once

#include <utility>

#include "os/os_sys_calls.hpp"

namespace hotswap::os {

class Fd {
 public:
  Fd() = default;
  // Takes ownership of `fd` (-1: none). `os` must outlive the Fd.
  explicit Fd(int fd, OsSysCalls& os = real_os_sys_calls()) noexcept : fd_(fd), os_(&os) {}
  // Owns what an open/socket call returned (nothing when it failed).
  explicit Fd(const SysCallIntResult& opened, OsSysCalls& os = real_os_sys_calls()) noexcept
      : Fd(opened.ok() ? opened.value : -1, os) {}

  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& other) noexcept : fd_(other.release()), os_(other.os_) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      close();
      os_ = other.os_;
      fd_ = other.release();
    }
    return *this;
  }
  ~Fd() { close(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }

  // Gives the descriptor up without closing it.
  int release() noexcept { return std::exchange(fd_, -1); }

  // Closes now, so that a late error (a deferred write error on NFS, EIO) is
  // seen; the descriptor is gone either way and never closed twice. Closing
  // an empty Fd succeeds.
  SysCallIntResult close() noexcept {
    if (fd_ < 0) return {0, 0};
    return os_->close(std::exchange(fd_, -1));
  }

 private:
  int fd_ = -1;
  OsSysCalls* os_ = &real_os_sys_calls();
};

}  // namespace hotswap::os
