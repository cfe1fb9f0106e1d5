#include "os/pid_file.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace hotswap::host {
namespace {

// How often a contender starts over because the file it locked was unlinked
// meanwhile: each round means another host exited just then, so a handful is plenty.
constexpr int kLockAttempts = 16;

std::optional<pid_t> read_pid(os::OsSysCalls& os, int fd) {
  char buf[32] = {};
  const os::SysCallSizeResult got = os.pread(fd, buf, sizeof buf - 1, 0);
  if (!got.ok() || got.value <= 0) return std::nullopt;
  long pid = std::strtol(buf, nullptr, 10);
  return pid > 0 ? std::optional<pid_t>(static_cast<pid_t>(pid)) : std::nullopt;
}

// Whether `path` still names the inode open as `fd`.
bool names_same_inode(os::OsSysCalls& os, const std::string& path, int fd) {
  struct stat opened {};
  struct stat named {};
  if (!os.fstat(fd, opened).ok() || !os.stat(path, named).ok()) return false;
  return opened.st_dev == named.st_dev && opened.st_ino == named.st_ino;
}

}  // namespace

PidFile::PidFile(boost::filesystem::path file, os::OsSysCalls& os) : file_(std::move(file)), os_(os) {
  const std::string path = file_.string();
  for (int attempt = 0; attempt < kLockAttempts && !fd_; ++attempt) {
    const os::SysCallIntResult opened = os_.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (!opened.ok()) throw std::runtime_error("cannot open " + path + ": " + opened.error_text());
    os::Fd candidate(opened, os_);
    if (!os_.flock(candidate.get(), LOCK_EX | LOCK_NB).ok()) {
      const std::optional<pid_t> pid = read_pid(os_, candidate.get());
      throw std::runtime_error("another hotswap host (pid " + (pid ? std::to_string(*pid) : std::string("?")) +
                               ") is running on this root (" + path + ")");
    }
    // Locked, but maybe a nameless inode its previous owner unlinked after we opened it.
    if (names_same_inode(os_, path, candidate.get())) fd_ = std::move(candidate);
  }
  if (!fd_)
    throw std::runtime_error("cannot lock " + path + ": it was replaced " + std::to_string(kLockAttempts) +
                             " times while being locked");
  std::string text = std::to_string(::getpid()) + "\n";
  const os::SysCallIntResult truncated = os_.ftruncate(fd_.get(), 0);
  const os::SysCallSizeResult written =
      truncated.ok() ? os_.pwrite(fd_.get(), text.data(), text.size(), 0) : os::SysCallSizeResult{-1, truncated.error};
  if (!written.ok() || written.value != static_cast<ssize_t>(text.size())) {
    os_.unlink(path);  // still locked: nobody can have taken it over
    throw std::runtime_error("cannot write " + path + ": " +
                             (written.ok() ? std::string("short write") : written.error_text()));
  }
}

PidFile::PidFile(TakeOver, boost::filesystem::path file, pid_t pid, os::OsSysCalls& os)
    : file_(std::move(file)), os_(os) {
  const std::string path = file_.string();
  const std::string temporary = path + "." + std::to_string(pid) + ".new";
  const auto fail = [&](const std::string& what, const std::string& error) {
    os_.unlink(temporary);
    fd_.close();
    throw std::runtime_error("cannot take " + path + " over: " + what + ": " + error);
  };
  const os::SysCallIntResult opened = os_.open(temporary, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (!opened.ok()) throw std::runtime_error("cannot take " + path + " over: open " + temporary + ": " + opened.error_text());
  fd_ = os::Fd(opened, os_);
  // Nobody else knows the temporary name, so the lock is ours at once.
  if (const os::SysCallIntResult locked = os_.flock(fd_.get(), LOCK_EX | LOCK_NB); !locked.ok())
    fail("flock " + temporary, locked.error_text());
  const std::string text = std::to_string(pid) + "\n";
  const os::SysCallSizeResult written = os_.pwrite(fd_.get(), text.data(), text.size(), 0);
  if (!written.ok() || written.value != static_cast<ssize_t>(text.size()))
    fail("write " + temporary, written.ok() ? std::string("short write") : written.error_text());
  // The one step that changes what the path names: before it, blue's locked inode; after it, ours.
  if (const os::SysCallIntResult renamed = os_.rename(temporary, path); !renamed.ok())
    fail("rename " + temporary, renamed.error_text());
}

bool PidFile::owns_path() const { return fd_ && names_same_inode(os_, file_.string(), fd_.get()); }

void PidFile::hand_over_name() { fd_.close(); }

PidFile::~PidFile() {
  // While we hold the lock nobody else owns the name, so the unlink removes
  // our file and never a contender's; a contender that opened it before is
  // turned away by its inode check. A successor's take-over (rename) is the
  // one way the name moves while we hold the lock: then it is not ours to unlink.
  if (owns_path()) os_.unlink(file_.string());
  fd_.close();
}

std::optional<pid_t> PidFile::running(const boost::filesystem::path& file, os::OsSysCalls& os) {
  os::Fd fd(os.open(file.string(), O_RDONLY | O_CLOEXEC), os);
  if (!fd) return std::nullopt;
  std::optional<pid_t> pid;
  if (!os.flock(fd.get(), LOCK_SH | LOCK_NB).ok()) pid = read_pid(os, fd.get());  // locked: a live host holds it
  return pid;
}

}  // namespace hotswap::host
