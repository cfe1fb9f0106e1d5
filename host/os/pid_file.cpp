#include "os/pid_file.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace hotswap::host {
namespace {

std::optional<pid_t> read_pid(int fd) {
  char buf[32] = {};
  ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return std::nullopt;
  long pid = std::strtol(buf, nullptr, 10);
  return pid > 0 ? std::optional<pid_t>(static_cast<pid_t>(pid)) : std::nullopt;
}

}  // namespace

PidFile::PidFile(boost::filesystem::path file) : file_(std::move(file)) {
  fd_ = ::open(file_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ < 0) throw std::runtime_error("cannot open " + file_.string() + ": " + std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    auto pid = read_pid(fd_);
    ::close(fd_);
    fd_ = -1;
    throw std::runtime_error("another hotswap host (pid " + (pid ? std::to_string(*pid) : std::string("?")) +
                             ") is running on this root (" + file_.string() + ")");
  }
  std::string text = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
    std::string why = std::strerror(errno);
    ::close(fd_);
    throw std::runtime_error("cannot write " + file_.string() + ": " + why);
  }
}

PidFile::~PidFile() {
  if (fd_ < 0) return;
  ::unlink(file_.c_str());
  ::close(fd_);
}

std::optional<pid_t> PidFile::running(const boost::filesystem::path& file) {
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::optional<pid_t> pid;
  if (::flock(fd, LOCK_SH | LOCK_NB) != 0) pid = read_pid(fd);  // locked: a live host holds it
  ::close(fd);
  return pid;
}

}  // namespace hotswap::host
