// What module host functions do in the outside world. The network layer
// implements it for a live server; tests and the console demo use small fakes.
#pragma once

#include <hotswap/module.h>

#include <cstdint>
#include <string_view>

namespace hotswap::host {

class ModuleSlot;

class HostServices {
 public:
  virtual ~HostServices() = default;

  // Queue one framed message. HOTSWAP_NOT_FOUND for an unknown connection,
  // HOTSWAP_LIMIT when its output queue is over the limit.
  virtual hotswap_status send(hotswap_conn_id conn, std::string_view message) = 0;
  // Close after pending output is written.
  virtual hotswap_status close(hotswap_conn_id conn, std::string_view reason) = 0;
  // Arm a timer owned by `owner`; when it fires call ModuleRegistry::deliver_timer.
  virtual void schedule_timer(ModuleSlot& owner, hotswap_timer_id id, uint64_t delay_ms, uint64_t repeat_ms,
                              uint64_t tag) = 0;
  // Disarm; false when it is not armed.
  virtual bool cancel_timer(hotswap_timer_id id) = 0;
};

// Sends reach no one and timers never fire: for an instance that serves no
// traffic (a release task) and for benchmarks of the host alone.
class DetachedServices : public HostServices {
 public:
  hotswap_status send(hotswap_conn_id, std::string_view) override { return HOTSWAP_NOT_FOUND; }
  hotswap_status close(hotswap_conn_id, std::string_view) override { return HOTSWAP_NOT_FOUND; }
  void schedule_timer(ModuleSlot&, hotswap_timer_id, uint64_t, uint64_t, uint64_t) override {}
  bool cancel_timer(hotswap_timer_id) override { return false; }
};

}  // namespace hotswap::host
