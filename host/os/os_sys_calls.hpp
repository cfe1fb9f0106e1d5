// A thin, injectable interface over the system calls the host makes (after
// Envoy's OsSysCalls). Classes that touch the system take an `OsSysCalls&`
// (defaulting to real_os_sys_calls()), so a test can hand them a fake that
// fails one call with ENOSPC or EIO, or records the order of the calls, and
// every failure path gets a unit test.
//
// Each call returns its value together with the errno it set (0 on success),
// read right after the call: nothing in between can overwrite it. The dl*
// calls report dlerror()'s text instead, as dlopen does not set errno.
//
// The interface is as thin as the calls themselves: no retry on EINTR, no
// message, no ownership. Fd (fd.hpp) owns a descriptor.
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

namespace hotswap::os {

// "No space left on device" for ENOSPC.
std::string errno_text(int error);

// This process's environment, "NAME=value" each: for a SpawnRequest that
// passes it on unchanged.
std::vector<std::string> current_environment();

template <typename T>
struct SysCallResult {
  T value{};      // what the call returned (-1, nullptr, ... on failure)
  int error = 0;  // errno after a failing call; 0 on success

  bool ok() const { return error == 0; }
  // strerror(error), for messages ("No space left on device").
  std::string error_text() const { return errno_text(error); }
};

using SysCallIntResult = SysCallResult<int>;
using SysCallSizeResult = SysCallResult<ssize_t>;

// The dynamic loader's calls report a text, not an errno.
template <typename T>
struct DlResult {
  T value{};
  std::string error;  // dlerror()'s text on failure; empty on success

  bool ok() const { return error.empty(); }
};

// A child started by spawn: `dup_fds` lists (parent fd, child fd) pairs the
// child gets (dup2 in the child), every other close-on-exec descriptor closes.
struct SpawnRequest {
  std::string path;               // the program (no PATH search)
  std::vector<std::string> argv;  // argv[0] included
  std::vector<std::string> env;   // "NAME=value"; the child gets exactly these
  std::vector<std::pair<int, int>> dup_fds;
};

class OsSysCalls {
 public:
  virtual ~OsSysCalls() = default;

  // ---- files ---------------------------------------------------------------
  virtual SysCallIntResult open(const std::string& path, int flags, mode_t mode = 0) = 0;
  virtual SysCallIntResult close(int fd) = 0;
  virtual SysCallSizeResult read(int fd, void* buffer, size_t size) = 0;
  virtual SysCallSizeResult pread(int fd, void* buffer, size_t size, off_t offset) = 0;
  virtual SysCallSizeResult write(int fd, const void* data, size_t size) = 0;
  virtual SysCallSizeResult pwrite(int fd, const void* data, size_t size, off_t offset) = 0;
  virtual SysCallIntResult ftruncate(int fd, off_t length) = 0;
  virtual SysCallIntResult fsync(int fd) = 0;
  virtual SysCallIntResult fdatasync(int fd) = 0;
  virtual SysCallIntResult syncfs(int fd) = 0;  // every file of the filesystem that holds fd
  virtual SysCallIntResult fchmod(int fd, mode_t mode) = 0;
  virtual SysCallIntResult fstat(int fd, struct stat& out) = 0;
  virtual SysCallIntResult stat(const std::string& path, struct stat& out) = 0;
  virtual SysCallIntResult rename(const std::string& from, const std::string& to) = 0;
  virtual SysCallIntResult unlink(const std::string& path) = 0;
  virtual SysCallIntResult mkdir(const std::string& path, mode_t mode) = 0;
  virtual SysCallIntResult flock(int fd, int operation) = 0;

  // ---- anonymous memory files (the module loader) --------------------------
  // memfd_create: value is the new descriptor. `name` shows in /proc/PID/maps.
  virtual SysCallIntResult memfd_create(const std::string& name, unsigned int flags) = 0;
  // fcntl(F_ADD_SEALS) and fcntl(F_GET_SEALS) (value: the seals).
  virtual SysCallIntResult add_seals(int fd, int seals) = 0;
  virtual SysCallIntResult get_seals(int fd) = 0;
  // mmap of a whole file (address chosen by the kernel); munmap.
  virtual SysCallResult<void*> mmap(size_t length, int protection, int flags, int fd, off_t offset) = 0;
  virtual SysCallIntResult munmap(void* address, size_t length) = 0;

  // ---- the dynamic loader --------------------------------------------------
  virtual DlResult<void*> dlopen(const std::string& path, int flags) = 0;
  virtual DlResult<int> dlclose(void* handle) = 0;  // value: dlclose's return
  virtual DlResult<void*> dlsym(void* handle, const std::string& symbol) = 0;
  // Whether a library loaded under exactly `path` (the name given to dlopen)
  // is still in the process's link map. Unlike dlopen(RTLD_NOLOAD), it opens
  // no file: it walks the link map (dl_iterate_phdr) under the loader's lock.
  virtual bool dl_is_loaded(const std::string& path) = 0;
  // The loader's pending message, cleared by the read (empty when none). The
  // calls above already return theirs; this is for code that calls into the
  // library itself.
  virtual std::string dlerror() = 0;

  // ---- sockets and processes (handover) ------------------------------------
  virtual SysCallIntResult socket(int domain, int type, int protocol) = 0;
  virtual SysCallIntResult socketpair(int domain, int type, int protocol, int (&fds)[2]) = 0;
  virtual SysCallSizeResult sendmsg(int fd, const msghdr& message, int flags) = 0;
  virtual SysCallSizeResult recvmsg(int fd, msghdr& message, int flags) = 0;
  // posix_spawn: value is the child's pid.
  virtual SysCallResult<pid_t> spawn(const SpawnRequest& request) = 0;
  // waitpid: value is the pid reaped, `status` its wait status.
  virtual SysCallResult<pid_t> waitpid(pid_t pid, int& status, int options) = 0;
  // pidfd_open (Linux 5.3): a descriptor that polls readable once `pid` exits.
  virtual SysCallIntResult pidfd_open(pid_t pid) = 0;
  virtual SysCallIntResult kill(pid_t pid, int signal) = 0;
  // poll: value is the number of ready descriptors (0 on timeout).
  virtual SysCallIntResult poll(struct pollfd* fds, size_t count, int timeout_ms) = 0;
};

// The real calls, nothing added. Its methods are virtual so that a test fake
// can derive from it and override only the calls it disturbs.
class RealOsSysCalls : public OsSysCalls {
 public:
  SysCallIntResult open(const std::string& path, int flags, mode_t mode = 0) override;
  SysCallIntResult close(int fd) override;
  SysCallSizeResult read(int fd, void* buffer, size_t size) override;
  SysCallSizeResult pread(int fd, void* buffer, size_t size, off_t offset) override;
  SysCallSizeResult write(int fd, const void* data, size_t size) override;
  SysCallSizeResult pwrite(int fd, const void* data, size_t size, off_t offset) override;
  SysCallIntResult ftruncate(int fd, off_t length) override;
  SysCallIntResult fsync(int fd) override;
  SysCallIntResult fdatasync(int fd) override;
  SysCallIntResult syncfs(int fd) override;
  SysCallIntResult fchmod(int fd, mode_t mode) override;
  SysCallIntResult fstat(int fd, struct stat& out) override;
  SysCallIntResult stat(const std::string& path, struct stat& out) override;
  SysCallIntResult rename(const std::string& from, const std::string& to) override;
  SysCallIntResult unlink(const std::string& path) override;
  SysCallIntResult mkdir(const std::string& path, mode_t mode) override;
  SysCallIntResult flock(int fd, int operation) override;

  SysCallIntResult memfd_create(const std::string& name, unsigned int flags) override;
  SysCallIntResult add_seals(int fd, int seals) override;
  SysCallIntResult get_seals(int fd) override;
  SysCallResult<void*> mmap(size_t length, int protection, int flags, int fd, off_t offset) override;
  SysCallIntResult munmap(void* address, size_t length) override;

  DlResult<void*> dlopen(const std::string& path, int flags) override;
  DlResult<int> dlclose(void* handle) override;
  DlResult<void*> dlsym(void* handle, const std::string& symbol) override;
  bool dl_is_loaded(const std::string& path) override;
  std::string dlerror() override;

  SysCallIntResult socket(int domain, int type, int protocol) override;
  SysCallIntResult socketpair(int domain, int type, int protocol, int (&fds)[2]) override;
  SysCallSizeResult sendmsg(int fd, const msghdr& message, int flags) override;
  SysCallSizeResult recvmsg(int fd, msghdr& message, int flags) override;
  SysCallResult<pid_t> spawn(const SpawnRequest& request) override;
  SysCallResult<pid_t> waitpid(pid_t pid, int& status, int options) override;
  SysCallIntResult pidfd_open(pid_t pid) override;
  SysCallIntResult kill(pid_t pid, int signal) override;
  SysCallIntResult poll(struct pollfd* fds, size_t count, int timeout_ms) override;
};

// The process's one real implementation (stateless; lives for the whole process,
// so an object may keep a reference to it for as long as it likes).
OsSysCalls& real_os_sys_calls();

}  // namespace hotswap::os
