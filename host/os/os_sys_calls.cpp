#include "os/os_sys_calls.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <spawn.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

extern char** environ;

namespace hotswap::os {
namespace {

// errno is read right after the call, so that nothing in between can change it.
template <typename T>
SysCallResult<T> result(T value, bool failed) {
  return {value, failed ? errno : 0};
}

SysCallIntResult int_result(int value) { return result(value, value < 0); }
SysCallSizeResult size_result(ssize_t value) { return result(value, value < 0); }

// dlerror()'s text, or `fallback` when the loader left none.
std::string take_dlerror(const char* fallback) {
  const char* message = ::dlerror();
  return message != nullptr ? message : fallback;
}

// argv/envp for posix_spawn: pointers into `strings`, which must outlive them.
std::vector<char*> c_strings(const std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  pointers.reserve(strings.size() + 1);
  for (const std::string& s : strings) pointers.push_back(const_cast<char*>(s.c_str()));
  pointers.push_back(nullptr);
  return pointers;
}

}  // namespace

std::string errno_text(int error) {
  char buffer[256];
  // The GNU strerror_r: returns the message, which may or may not be in buffer.
  return ::strerror_r(error, buffer, sizeof buffer);
}

std::vector<std::string> current_environment() {
  std::vector<std::string> env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) env.emplace_back(*entry);
  return env;
}

SysCallIntResult RealOsSysCalls::open(const std::string& path, int flags, mode_t mode) {
  return int_result(::open(path.c_str(), flags, mode));
}
SysCallIntResult RealOsSysCalls::close(int fd) { return int_result(::close(fd)); }
SysCallSizeResult RealOsSysCalls::read(int fd, void* buffer, size_t size) {
  return size_result(::read(fd, buffer, size));
}
SysCallSizeResult RealOsSysCalls::pread(int fd, void* buffer, size_t size, off_t offset) {
  return size_result(::pread(fd, buffer, size, offset));
}
SysCallSizeResult RealOsSysCalls::write(int fd, const void* data, size_t size) {
  return size_result(::write(fd, data, size));
}
SysCallSizeResult RealOsSysCalls::pwrite(int fd, const void* data, size_t size, off_t offset) {
  return size_result(::pwrite(fd, data, size, offset));
}
SysCallIntResult RealOsSysCalls::ftruncate(int fd, off_t length) { return int_result(::ftruncate(fd, length)); }
SysCallIntResult RealOsSysCalls::fsync(int fd) { return int_result(::fsync(fd)); }
SysCallIntResult RealOsSysCalls::fdatasync(int fd) { return int_result(::fdatasync(fd)); }
SysCallIntResult RealOsSysCalls::syncfs(int fd) { return int_result(::syncfs(fd)); }
SysCallIntResult RealOsSysCalls::fchmod(int fd, mode_t mode) { return int_result(::fchmod(fd, mode)); }
SysCallIntResult RealOsSysCalls::fstat(int fd, struct stat& out) { return int_result(::fstat(fd, &out)); }
SysCallIntResult RealOsSysCalls::stat(const std::string& path, struct stat& out) {
  return int_result(::stat(path.c_str(), &out));
}
SysCallIntResult RealOsSysCalls::rename(const std::string& from, const std::string& to) {
  return int_result(::rename(from.c_str(), to.c_str()));
}
SysCallIntResult RealOsSysCalls::unlink(const std::string& path) { return int_result(::unlink(path.c_str())); }
SysCallIntResult RealOsSysCalls::mkdir(const std::string& path, mode_t mode) {
  return int_result(::mkdir(path.c_str(), mode));
}
SysCallIntResult RealOsSysCalls::flock(int fd, int operation) { return int_result(::flock(fd, operation)); }

SysCallIntResult RealOsSysCalls::memfd_create(const std::string& name, unsigned int flags) {
  return int_result(::memfd_create(name.c_str(), flags));
}
SysCallIntResult RealOsSysCalls::add_seals(int fd, int seals) { return int_result(::fcntl(fd, F_ADD_SEALS, seals)); }
SysCallIntResult RealOsSysCalls::get_seals(int fd) { return int_result(::fcntl(fd, F_GET_SEALS)); }
SysCallResult<void*> RealOsSysCalls::mmap(size_t length, int protection, int flags, int fd, off_t offset) {
  void* address = ::mmap(nullptr, length, protection, flags, fd, offset);
  return result(address, address == MAP_FAILED);
}
SysCallIntResult RealOsSysCalls::munmap(void* address, size_t length) { return int_result(::munmap(address, length)); }

DlResult<void*> RealOsSysCalls::dlopen(const std::string& path, int flags) {
  ::dlerror();  // a stale message must not be taken for this call's
  void* handle = ::dlopen(path.c_str(), flags);
  if (handle != nullptr) return {handle, {}};
  // RTLD_NOLOAD on a library that is not loaded fails without a message: not an error to report.
  return {nullptr, take_dlerror((flags & RTLD_NOLOAD) != 0 ? "not loaded" : "unknown dlopen error")};
}

DlResult<int> RealOsSysCalls::dlclose(void* handle) {
  ::dlerror();
  const int status = ::dlclose(handle);
  if (status == 0) return {0, {}};
  return {status, take_dlerror("unknown dlclose error")};
}

bool RealOsSysCalls::dl_is_loaded(const std::string& path) {
  auto same_name = [](dl_phdr_info* info, size_t, void* wanted) -> int {
    return info->dlpi_name != nullptr && *static_cast<const std::string*>(wanted) == info->dlpi_name ? 1 : 0;
  };
  return ::dl_iterate_phdr(same_name, const_cast<std::string*>(&path)) != 0;
}

DlResult<void*> RealOsSysCalls::dlsym(void* handle, const std::string& symbol) {
  ::dlerror();
  void* address = ::dlsym(handle, symbol.c_str());
  // A symbol may legitimately be null; only a message means failure.
  const char* message = ::dlerror();
  if (message != nullptr) return {nullptr, message};
  if (address == nullptr) return {nullptr, "symbol " + symbol + " is null"};
  return {address, {}};
}

std::string RealOsSysCalls::dlerror() {
  const char* message = ::dlerror();
  return message != nullptr ? message : std::string();
}

SysCallIntResult RealOsSysCalls::socket(int domain, int type, int protocol) {
  return int_result(::socket(domain, type, protocol));
}

SysCallIntResult RealOsSysCalls::socketpair(int domain, int type, int protocol, int (&fds)[2]) {
  return int_result(::socketpair(domain, type, protocol, fds));
}

SysCallSizeResult RealOsSysCalls::sendmsg(int fd, const msghdr& message, int flags) {
  return size_result(::sendmsg(fd, &message, flags));
}

SysCallSizeResult RealOsSysCalls::recvmsg(int fd, msghdr& message, int flags) {
  return size_result(::recvmsg(fd, &message, flags));
}

SysCallResult<pid_t> RealOsSysCalls::spawn(const SpawnRequest& request) {
  posix_spawn_file_actions_t actions;
  if (const int error = ::posix_spawn_file_actions_init(&actions); error != 0) return {-1, error};
  int error = 0;
  for (const auto& [from, to] : request.dup_fds) {
    error = ::posix_spawn_file_actions_adddup2(&actions, from, to);
    if (error != 0) break;
  }
  pid_t child = -1;
  if (error == 0) {
    std::vector<char*> argv = c_strings(request.argv);
    std::vector<char*> env = c_strings(request.env);
    // posix_spawn returns the error number; it does not set errno.
    error = ::posix_spawn(&child, request.path.c_str(), &actions, nullptr, argv.data(), env.data());
  }
  ::posix_spawn_file_actions_destroy(&actions);
  if (error != 0) return {-1, error};
  return {child, 0};
}

SysCallResult<pid_t> RealOsSysCalls::waitpid(pid_t pid, int& status, int options) {
  const pid_t reaped = ::waitpid(pid, &status, options);
  return result(reaped, reaped < 0);
}

SysCallIntResult RealOsSysCalls::pidfd_open(pid_t pid) {
  // glibc 2.36 has no wrapper in every build: the raw call.
  return int_result(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
}
SysCallIntResult RealOsSysCalls::kill(pid_t pid, int signal) { return int_result(::kill(pid, signal)); }
SysCallIntResult RealOsSysCalls::poll(struct pollfd* fds, size_t count, int timeout_ms) {
  return int_result(::poll(fds, count, timeout_ms));
}

OsSysCalls& real_os_sys_calls() {
  static RealOsSysCalls real;
  return real;
}

}  // namespace hotswap::os
