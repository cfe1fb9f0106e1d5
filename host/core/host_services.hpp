// What module host functions do in the outside world. The network layer
// implements it for a live server; tests and the console demo use small fakes.
#pragma once

#include <hotswap/module.h>

#include <chrono>
#include <cstdint>
#include <string_view>
#include <vector>

namespace hotswap::host {

class ModuleSlot;

class HostServices {
 public:
  virtual ~HostServices() = default;

  // Queue one framed message on a connection that `module` owns (a module never
  // reaches another module's connections). HOTSWAP_NOT_FOUND for an unknown
  // connection or one owned by another module, HOTSWAP_LIMIT when its output
  // queue is over the limit.
  virtual hotswap_status send(std::string_view module, hotswap_conn_id conn, std::string_view message) = 0;
  // Close a connection `module` owns, after its pending output is written. Same errors as send.
  virtual hotswap_status close(std::string_view module, hotswap_conn_id conn, std::string_view reason) = 0;
  // One connection a module serves. `listener` is the listener's name, owned
  // by the services: it lives as long as the listener.
  struct ConnectionRef {
    hotswap_conn_id id;
    const char* listener;
  };
  // The open connections `module` serves, in ascending id order, into `out`
  // (cleared first); only those of the listener named `listener` when it is
  // not null. False, with `out` empty, when `listener` names no listener of
  // `module`. The default serves no connection and has no listener.
  virtual bool list_connections(std::string_view module, const char* listener, std::vector<ConnectionRef>& out) {
    (void)module;
    out.clear();
    return listener == nullptr;
  }
  // Arm a timer owned by `owner`; when it fires call ModuleRegistry::deliver_timer.
  virtual void schedule_timer(ModuleSlot& owner, hotswap_timer_id id, uint64_t delay_ms, uint64_t repeat_ms,
                              uint64_t tag) = 0;
  // Disarm; false when it is not armed.
  virtual bool cancel_timer(hotswap_timer_id id) = 0;
  // Milliseconds of the monotonic clock that drives the timers (module.h monotonic_ms).
  // Tests inject a clock by overriding it together with the timers.
  virtual uint64_t now_ms() const { return steady_now_ms(); }

  static uint64_t steady_now_ms() {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
  }
};

// Sends reach no one and timers never fire: for an instance that serves no
// traffic (a release task) and for benchmarks of the host alone.
class DetachedServices : public HostServices {
 public:
  hotswap_status send(std::string_view, hotswap_conn_id, std::string_view) override { return HOTSWAP_NOT_FOUND; }
  hotswap_status close(std::string_view, hotswap_conn_id, std::string_view) override { return HOTSWAP_NOT_FOUND; }
  void schedule_timer(ModuleSlot&, hotswap_timer_id, uint64_t, uint64_t, uint64_t) override {}
  bool cancel_timer(hotswap_timer_id) override { return false; }
};

}  // namespace hotswap::host
