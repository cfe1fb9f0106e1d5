#include "os/service_notifier.hpp"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace hotswap::os {

SystemdNotifier::SystemdNotifier(MonotonicMicroseconds clock)
    : clock_(clock ? std::move(clock) : MonotonicMicroseconds(&SystemdNotifier::monotonic_usec)) {}

bool SystemdNotifier::enabled() {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  return socket != nullptr && socket[0] != '\0';
}

uint64_t SystemdNotifier::monotonic_usec() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return uint64_t(now.tv_sec) * 1'000'000 + uint64_t(now.tv_nsec) / 1'000;
}

bool SystemdNotifier::send(const std::string& message) {
  if (!enabled()) return false;
  // unset_environment 0: every later notification (and a handover's) needs NOTIFY_SOCKET still.
  const int sent = ::sd_notify(0, message.c_str());
  if (sent > 0) return true;
  std::string first_line = message.substr(0, message.find('\n'));
  if (sent < 0)
    spdlog::warn("cannot notify the service manager ({}): {}", first_line, std::strerror(-sent));
  return false;
}

bool SystemdNotifier::ready() { return send("READY=1"); }

bool SystemdNotifier::reloading() {
  return send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(clock_()));
}

bool SystemdNotifier::main_pid(pid_t pid) { return send("MAINPID=" + std::to_string(pid)); }

bool SystemdNotifier::main_pid_ready(pid_t pid) { return send("MAINPID=" + std::to_string(pid) + "\nREADY=1"); }

bool SystemdNotifier::stopping() { return send("STOPPING=1"); }

bool SystemdNotifier::status(const std::string& text) {
  std::string line = text;
  std::replace(line.begin(), line.end(), '\n', ' ');
  return send("STATUS=" + line);
}

ServiceNotifier& service_notifier() {
  static SystemdNotifier notifier;
  return notifier;
}

}  // namespace hotswap::os
