// The running modules: one slot per module name, each holding the instance that
// serves it. A slot outlives code swaps: connections, timers and the tick count
// belong to it, not to an instance. While a slot is suspended (during an upgrade)
// its events are queued in arrival order and flushed, once each, on resume.
//
// Threading: everything here runs on the host's event-loop thread.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/host_services.hpp"
#include "core/module_call.hpp"
#include "core/module_instance.hpp"

namespace hotswap::host {

struct SlotHandover;  // handover/handover_state.hpp

struct ModuleEvent {
  enum class Kind { Connect, Message, Disconnect, Tick, Timer } kind;
  hotswap_conn_id conn = 0;
  std::string payload;  // Message: the bytes; Connect: the listener name
  std::string peer;     // Connect
  hotswap_disconnect_reason reason = HOTSWAP_DISCONNECT_PEER_CLOSED;
  uint64_t number = 0;  // Tick: tick number; Timer: tag
  hotswap_timer_id timer = 0;
};

struct SlotStats {
  uint64_t events = 0;         // delivered to an instance
  uint64_t queued_total = 0;   // ever queued while suspended
  uint64_t failed_events = 0;  // callbacks that returned an error
  size_t max_queue = 0;
};

class ModuleSlot {
 public:
  explicit ModuleSlot(std::string name) : name_(std::move(name)) {}
  const std::string& name() const { return name_; }
  ModuleInstance& active() const { return *active_; }
  bool suspended() const { return suspended_; }
  size_t queued() const { return queue_.size(); }
  uint64_t tick_number() const { return tick_number_; }
  const std::set<hotswap_timer_id>& timers() const { return timers_; }
  const SlotStats& stats() const { return stats_; }

 private:
  friend class ModuleRegistry;
  std::string name_;
  std::unique_ptr<ModuleInstance> active_;
  bool suspended_ = false;
  std::deque<ModuleEvent> queue_;
  std::set<hotswap_timer_id> timers_;
  uint64_t tick_number_ = 0;
  SlotStats stats_;
};

class ModuleRegistry {
 public:
  explicit ModuleRegistry(HostServices& services) : services_(&services) {}
  ~ModuleRegistry();
  ModuleRegistry(const ModuleRegistry&) = delete;
  ModuleRegistry& operator=(const ModuleRegistry&) = delete;

  HostServices& services() { return *services_; }
  // Points every later host function (send, close, timers) at `services`. For
  // a rehearsal child (upgrade/rehearsal.hpp), which must never reach the
  // parent's network server or event loop. `services` must outlive its use.
  void replace_services(HostServices& services) { services_ = &services; }

  ModuleSlot* find(std::string_view name);
  std::vector<ModuleSlot*> slots();
  std::vector<const ModuleSlot*> slots() const;

  // Each module's section of the runtime config (a JSON text), given to create().
  void set_module_config(const std::string& name, std::string config_json);
  std::string module_config(const std::string& name) const;

  // Creates a fresh instance and serves it in a new slot. Throws ModuleCallError
  // or std::invalid_argument (a slot of that name exists).
  ModuleSlot& start(std::shared_ptr<LoadedLibrary> library);

  // --- data path: never throws; failures are logged and counted ---
  void deliver_connect(ModuleSlot& slot, hotswap_conn_id conn, std::string_view listener, std::string_view peer);
  void deliver_message(ModuleSlot& slot, hotswap_conn_id conn, std::string_view message) {
    if (__builtin_expect(slot.suspended_, 0)) {
      enqueue(slot, ModuleEvent{ModuleEvent::Kind::Message, conn, std::string(message), {}, {}, 0, 0});
      return;
    }
    call_on_message(slot, conn, message);
  }
  void deliver_disconnect(ModuleSlot& slot, hotswap_conn_id conn, hotswap_disconnect_reason reason);
  void deliver_tick(ModuleSlot& slot);
  // `last`: a one-shot timer (or the final firing), after which the slot forgets it.
  void deliver_timer(ModuleSlot& slot, hotswap_timer_id id, uint64_t tag, bool last);

  // --- control plane (event-loop thread, at a quiescent point) ---
  void suspend(ModuleSlot& slot) { slot.suspended_ = true; }
  // Resumes delivery and flushes the queue, in order, to the active instance.
  void resume(ModuleSlot& slot);
  // Puts `next` in place of the active instance and returns the old one, detached
  // (still alive: the caller destroys it after resuming). The slot stays suspended.
  std::unique_ptr<ModuleInstance> replace(ModuleSlot& slot, std::unique_ptr<ModuleInstance> next);
  // Adds a slot served by an already-created (staged) instance; the slot starts suspended.
  ModuleSlot& adopt(const std::string& name, std::unique_ptr<ModuleInstance> instance);
  // Removes a slot: cancels its timers, drops (and logs) its queued events and
  // returns its instance, detached, for the caller to destroy.
  std::unique_ptr<ModuleInstance> remove(ModuleSlot& slot);

  // Timers, on behalf of the host function table.
  hotswap_timer_id allocate_timer_id() { return next_timer_id_++; }
  void arm_timer(ModuleSlot& slot, hotswap_timer_id id, uint64_t delay_ms, uint64_t repeat_ms, uint64_t tag);
  bool cancel_timer(ModuleSlot& slot, hotswap_timer_id id);

  // ---- blue-green handover (handover/) ----
  // Blue: the slot's bookkeeping that moves (tick number, queued events; the
  // caller adds the state, the version and the timers' due times).
  SlotHandover handover_bookkeeping(const ModuleSlot& slot) const;
  // Green, before the loop serves: the slot continues from blue's tick
  // number, its queued events are delivered first (in order) when it resumes,
  // and blue's timers are armed under their own ids (registry and server).
  // A slot that is not suspended gets its queued events at once. Throws
  // std::invalid_argument (and changes nothing) when a timer id is 0,
  // repeated, or already in use by any slot.
  void restore_from_handover(ModuleSlot& slot, const SlotHandover& from);
  hotswap_timer_id next_timer_id() const { return next_timer_id_; }
  // Never below an id in use; timer ids continue from blue's.
  void set_next_timer_id(hotswap_timer_id next);

  // Graceful stop, first half: on_stop for every module (their sends are still delivered).
  void notify_stop();
  // Cancels every module's timers and destroys every module (each detached first).
  void stop_all();

 private:
  void enqueue(ModuleSlot& slot, ModuleEvent&& event);
  void dispatch(ModuleSlot& slot, ModuleEvent& event);
  void call_on_message(ModuleSlot& slot, hotswap_conn_id conn, std::string_view message) {
    ModuleInstance& instance = *slot.active_;
    auto on_message = instance.descriptor().on_message;
    ++slot.stats_.events;
    if (on_message == nullptr) return;
    char message_buffer[kErrorCapacity];
    message_buffer[0] = '\0';
    hotswap_error err{message_buffer, sizeof message_buffer};
    hotswap_instance* handle = instance.handle();
    hotswap_status status = call_module(instance.call_site("on_message", conn), &err, [&] {
      return on_message(handle, conn, {reinterpret_cast<const uint8_t*>(message.data()), message.size()}, &err);
    });
    if (__builtin_expect(status != HOTSWAP_OK, 0)) report_failure(slot, "on_message", status, message_buffer);
  }
  void report_failure(ModuleSlot& slot, const char* callback, hotswap_status status, const char* message);
  // Detaches and destroys every instance while every slot still exists, then drops the slots.
  void destroy_all_slots();

  HostServices* services_;
  std::map<std::string, std::unique_ptr<ModuleSlot>, std::less<>> slots_;
  std::map<std::string, std::string> configs_;
  hotswap_timer_id next_timer_id_ = 1;
};

}  // namespace hotswap::host
