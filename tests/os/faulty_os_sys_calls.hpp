// A fake OsSysCalls for failure-path tests: the real calls, except those a
// test tells to fail (ENOSPC on the second write to a file, EIO on fsync, a
// dlopen that fails with a message), a log of the calls in order ("unlink
// /x/hotswap.pid", "close /x/hotswap.pid") and a hook that runs before each
// call, so a test can act at an exact point (another writer between our write
// and our rename).
//
// Calls are named after the OsSysCalls methods; those on a descriptor are
// logged and matched with the path it was opened with.
#pragma once

#include <algorithm>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "os/os_sys_calls.hpp"

namespace hotswap::test {

class FaultyOsSysCalls : public os::RealOsSysCalls {
 public:
  using Hook = std::function<void(const std::string& call, const std::string& path)>;

  // The calls named `call` on a path containing `path_part` fail with `error`:
  // the first `skip` matching calls go through, the next `times` fail.
  void fail(const std::string& call, const std::string& path_part, int error, int skip = 0, int times = 1) {
    std::lock_guard<std::mutex> lock(mutex_);
    faults_.push_back({call, path_part, error, {}, skip, times});
  }
  // The same for dlopen/dlclose/dlsym, which fail with a dlerror text.
  void fail_dl(const std::string& call, const std::string& path_part, const std::string& message) {
    std::lock_guard<std::mutex> lock(mutex_);
    faults_.push_back({call, path_part, 0, message, 0, 1});
  }
  // The recvmsg calls on a descriptor matching `path_part` are made for real,
  // then come back with `msg_flags` or-ed into the message's flags (MSG_CTRUNC:
  // what the kernel reports when the receiver is out of descriptors); `skip`
  // and `times` as for fail().
  void add_recvmsg_flags(const std::string& path_part, int msg_flags, int skip = 0, int times = 1) {
    std::lock_guard<std::mutex> lock(mutex_);
    faults_.push_back({"recvmsg", path_part, 0, {}, skip, times, msg_flags});
  }
  // Logs and matches `fd` (a socket, a pipe) as `path` from now on.
  void name_fd(int fd, const std::string& path) { remember(fd, path); }
  // Runs before every call (outside the fake's lock: it may make calls itself).
  void set_hook(Hook hook) {
    std::lock_guard<std::mutex> lock(mutex_);
    hook_ = std::move(hook);
  }

  // "call path" for every call so far, in order.
  std::vector<std::string> calls() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return calls_;
  }
  // The calls whose line contains `part`.
  std::vector<std::string> calls_containing(const std::string& part) const {
    std::vector<std::string> matching;
    for (const std::string& line : calls())
      if (line.find(part) != std::string::npos) matching.push_back(line);
    return matching;
  }

  os::SysCallIntResult open(const std::string& path, int flags, mode_t mode = 0) override {
    if (const auto error = enter("open", path)) return {-1, *error};
    const os::SysCallIntResult opened = RealOsSysCalls::open(path, flags, mode);
    if (opened.ok()) remember(opened.value, path);
    return opened;
  }
  os::SysCallIntResult close(int fd) override {
    const auto error = enter("close", path_of(fd));
    forget(fd);
    const os::SysCallIntResult closed = RealOsSysCalls::close(fd);  // a failing close still frees the descriptor
    return error ? os::SysCallIntResult{-1, *error} : closed;
  }
  os::SysCallSizeResult read(int fd, void* buffer, size_t size) override {
    if (const auto error = enter("read", path_of(fd))) return {-1, *error};
    return RealOsSysCalls::read(fd, buffer, size);
  }
  os::SysCallSizeResult pread(int fd, void* buffer, size_t size, off_t offset) override {
    if (const auto error = enter("pread", path_of(fd))) return {-1, *error};
    return RealOsSysCalls::pread(fd, buffer, size, offset);
  }
  os::SysCallSizeResult write(int fd, const void* data, size_t size) override {
    if (const auto error = enter("write", path_of(fd))) return {-1, *error};
    return RealOsSysCalls::write(fd, data, size);
  }
  os::SysCallSizeResult pwrite(int fd, const void* data, size_t size, off_t offset) override {
    if (const auto error = enter("pwrite", path_of(fd))) return {-1, *error};
    return RealOsSysCalls::pwrite(fd, data, size, offset);
  }
  os::SysCallIntResult ftruncate(int fd, off_t length) override {
    if (const auto error = enter("ftruncate", path_of(fd))) return {-1, *error};
    return RealOsSysCalls::ftruncate(fd, length);
  }
  os::SysCallIntResult fsync(int fd) override {
    if (const auto error = enter("fsync", path_of(fd))) return {-1, *error};
    return RealOsSysCalls::fsync(fd);
  }
  os::SysCallIntResult syncfs(int fd) override {
    if (const auto error = enter("syncfs", path_of(fd))) return {-1, *error};
    return RealOsSysCalls::syncfs(fd);
  }
  os::SysCallIntResult fchmod(int fd, mode_t mode) override {
    if (const auto error = enter("fchmod", path_of(fd))) return {-1, *error};
    return RealOsSysCalls::fchmod(fd, mode);
  }
  os::SysCallIntResult rename(const std::string& from, const std::string& to) override {
    if (const auto error = enter("rename", from + " " + to)) return {-1, *error};
    return RealOsSysCalls::rename(from, to);
  }
  os::SysCallIntResult unlink(const std::string& path) override {
    if (const auto error = enter("unlink", path)) return {-1, *error};
    return RealOsSysCalls::unlink(path);
  }
  os::SysCallIntResult mkdir(const std::string& path, mode_t mode) override {
    if (const auto error = enter("mkdir", path)) return {-1, *error};
    return RealOsSysCalls::mkdir(path, mode);
  }
  os::SysCallIntResult flock(int fd, int operation) override {
    if (const auto error = enter("flock", path_of(fd))) return {-1, *error};
    return RealOsSysCalls::flock(fd, operation);
  }

  // A memfd is logged and matched as "memfd:<name>", as /proc/PID/fd shows it.
  os::SysCallIntResult memfd_create(const std::string& name, unsigned int flags) override {
    if (const auto error = enter("memfd_create", "memfd:" + name)) return {-1, *error};
    const os::SysCallIntResult created = RealOsSysCalls::memfd_create(name, flags);
    if (created.ok()) remember(created.value, "memfd:" + name);
    return created;
  }
  os::SysCallIntResult add_seals(int fd, int seals) override {
    if (const auto error = enter("add_seals", path_of(fd))) return {-1, *error};
    return RealOsSysCalls::add_seals(fd, seals);
  }
  os::SysCallResult<void*> mmap(size_t length, int protection, int flags, int fd, off_t offset) override {
    if (const auto error = enter("mmap", path_of(fd))) return {reinterpret_cast<void*>(-1), *error};
    return RealOsSysCalls::mmap(length, protection, flags, fd, offset);
  }
  // The path of a spawn is the program and its arguments, space-separated.
  os::SysCallResult<pid_t> spawn(const os::SpawnRequest& request) override {
    std::string line = request.path;
    for (size_t i = 1; i < request.argv.size(); ++i) line += " " + request.argv[i];
    if (const auto error = enter("spawn", line)) return {-1, *error};
    return RealOsSysCalls::spawn(request);
  }

  // Sockets: matched with the name given by name_fd() ("fd N" otherwise); a
  // poll with the path of its first descriptor.
  os::SysCallSizeResult sendmsg(int fd, const msghdr& message, int flags) override {
    if (const auto error = enter("sendmsg", path_of(fd))) return {-1, *error};
    return RealOsSysCalls::sendmsg(fd, message, flags);
  }
  os::SysCallSizeResult recvmsg(int fd, msghdr& message, int flags) override {
    const std::optional<Fault> fault = enter_any("recvmsg", path_of(fd));
    if (fault && fault->msg_flags == 0) return {-1, fault->error};
    const os::SysCallSizeResult received = RealOsSysCalls::recvmsg(fd, message, flags);
    if (fault && received.ok()) message.msg_flags |= fault->msg_flags;
    return received;
  }
  os::SysCallIntResult poll(struct pollfd* fds, size_t count, int timeout_ms) override {
    if (const auto error = enter("poll", count > 0 ? path_of(fds[0].fd) : std::string())) return {-1, *error};
    return RealOsSysCalls::poll(fds, count, timeout_ms);
  }

  os::DlResult<void*> dlopen(const std::string& path, int flags) override {
    if (const auto message = enter_dl("dlopen", path)) return {nullptr, *message};
    os::DlResult<void*> opened = RealOsSysCalls::dlopen(path, flags);
    if (opened.ok()) {
      std::lock_guard<std::mutex> lock(mutex_);
      handles_[opened.value] = path;
    }
    return opened;
  }
  // A failing dlclose here still unmaps: the test checks what the caller
  // reports, and the test process keeps no stray mapping.
  os::DlResult<int> dlclose(void* handle) override {
    const auto message = enter_dl("dlclose", path_of_handle(handle));
    const os::DlResult<int> closed = RealOsSysCalls::dlclose(handle);
    return message ? os::DlResult<int>{-1, *message} : closed;
  }
  os::DlResult<void*> dlsym(void* handle, const std::string& symbol) override {
    if (const auto message = enter_dl("dlsym", path_of_handle(handle) + " " + symbol)) return {nullptr, *message};
    return RealOsSysCalls::dlsym(handle, symbol);
  }

 private:
  struct Fault {
    std::string call;
    std::string path_part;
    int error;
    std::string message;
    int skip;
    int times;
    int msg_flags = 0;  // recvmsg: or-ed into the received message's flags instead of failing
  };

  // Logs the call, runs the hook, and returns the fault that applies, if any.
  std::optional<Fault> enter_any(const std::string& call, const std::string& path) {
    Hook hook;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      calls_.push_back(call + " " + path);
      hook = hook_;
    }
    if (hook) hook(call, path);
    std::lock_guard<std::mutex> lock(mutex_);
    for (Fault& fault : faults_) {
      if (fault.call != call || fault.times == 0 || path.find(fault.path_part) == std::string::npos) continue;
      if (fault.skip > 0) {
        --fault.skip;
        continue;
      }
      --fault.times;
      return fault;
    }
    return std::nullopt;
  }
  std::optional<int> enter(const std::string& call, const std::string& path) {
    const std::optional<Fault> fault = enter_any(call, path);
    return fault ? std::optional<int>(fault->error) : std::nullopt;
  }
  std::optional<std::string> enter_dl(const std::string& call, const std::string& path) {
    const std::optional<Fault> fault = enter_any(call, path);
    return fault ? std::optional<std::string>(fault->message) : std::nullopt;
  }

  void remember(int fd, const std::string& path) {
    std::lock_guard<std::mutex> lock(mutex_);
    paths_[fd] = path;
  }
  void forget(int fd) {
    std::lock_guard<std::mutex> lock(mutex_);
    paths_.erase(fd);
  }
  std::string path_of(int fd) const {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = paths_.find(fd);
    return it == paths_.end() ? "fd " + std::to_string(fd) : it->second;
  }
  std::string path_of_handle(void* handle) const {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = handles_.find(handle);
    return it == handles_.end() ? "handle" : it->second;
  }

  mutable std::mutex mutex_;
  std::vector<Fault> faults_;
  std::vector<std::string> calls_;
  std::map<int, std::string> paths_;
  std::map<void*, std::string> handles_;
  Hook hook_;
};

}  // namespace hotswap::test
