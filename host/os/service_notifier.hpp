// Tells the service manager (systemd, through sd_notify) what the host is
// doing: started, reloading (a blue-green handover), which process is the
// service's main one now, stopping. With Type=notify-reload
// (examples/systemd/hotswap.service), `systemctl reload` sends the host its
// ReloadSignal and waits for READY=1 after RELOADING=1.
//
// Under no service manager (NOTIFY_SOCKET unset) every call is a no-op that
// returns false. Calls never throw: a notification that cannot be sent is
// logged and reported as false, and the host goes on.
//
// A handover, as blue sends it: reloading() at the start; once green is
// ready, main_pid_ready(green) (one datagram, so that systemd takes the new
// main pid and the readiness together, while blue is still the main process
// allowed to notify); status() whenever useful. On SIGTERM: stopping().
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace hotswap::os {

class ServiceNotifier {
 public:
  virtual ~ServiceNotifier() = default;

  // "READY=1": started (or, after reloading(), done).
  virtual bool ready() = 0;
  // "RELOADING=1\nMONOTONIC_USEC=<CLOCK_MONOTONIC in µs>" (notify-reload requires both).
  virtual bool reloading() = 0;
  // "MAINPID=<pid>": the service's main process is now `pid` (green after a handover).
  virtual bool main_pid(pid_t pid) = 0;
  // "MAINPID=<pid>\nREADY=1": the end of a handover, in one message.
  virtual bool main_pid_ready(pid_t pid) = 0;
  // "STOPPING=1".
  virtual bool stopping() = 0;
  // "STATUS=<text>" (newlines in `text` become spaces: they would end the field).
  virtual bool status(const std::string& text) = 0;
};

// Sends through sd_notify to $NOTIFY_SOCKET, read at each call (so that a
// child that should not notify can be started with it unset). The clock is
// injectable for tests; by default CLOCK_MONOTONIC in microseconds.
class SystemdNotifier : public ServiceNotifier {
 public:
  using MonotonicMicroseconds = std::function<uint64_t()>;
  explicit SystemdNotifier(MonotonicMicroseconds clock = {});

  bool ready() override;
  bool reloading() override;
  bool main_pid(pid_t pid) override;
  bool main_pid_ready(pid_t pid) override;
  bool stopping() override;
  bool status(const std::string& text) override;

  // Whether a service manager listens ($NOTIFY_SOCKET set and not empty).
  static bool enabled();
  // CLOCK_MONOTONIC now, in microseconds: what MONOTONIC_USEC carries.
  static uint64_t monotonic_usec();

 private:
  bool send(const std::string& message);
  MonotonicMicroseconds clock_;
};

// The process's notifier (a SystemdNotifier): the host sends through it.
ServiceNotifier& service_notifier();

}  // namespace hotswap::os
