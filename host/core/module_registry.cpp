#include "core/module_registry.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <stdexcept>

#include "handover/handover_state.hpp"

namespace hotswap::host {

ModuleRegistry::~ModuleRegistry() { destroy_all_slots(); }

void ModuleRegistry::destroy_all_slots() {
  // Every instance is detached before any destroy() runs, so a module's
  // destructor reaches no slot (its own or another module's) and no registry.
  for (auto& [name, slot] : slots_)
    if (slot->active_) slot->active_->detach();
  // Instances before libraries (an instance's destroy() runs the library's
  // code) and before their slots.
  for (auto& [name, slot] : slots_) slot->active_.reset();
  slots_.clear();
}

ModuleSlot* ModuleRegistry::find(std::string_view name) {
  auto it = slots_.find(name);
  return it == slots_.end() ? nullptr : it->second.get();
}

std::vector<ModuleSlot*> ModuleRegistry::slots() {
  std::vector<ModuleSlot*> out;
  for (auto& [name, slot] : slots_) out.push_back(slot.get());
  return out;
}

std::vector<const ModuleSlot*> ModuleRegistry::slots() const {
  std::vector<const ModuleSlot*> out;
  for (const auto& [name, slot] : slots_) out.push_back(slot.get());
  return out;
}

void ModuleRegistry::set_module_config(const std::string& name, std::string config_json) {
  configs_[name] = std::move(config_json);
}

std::string ModuleRegistry::module_config(const std::string& name) const {
  auto it = configs_.find(name);
  return it == configs_.end() ? "null" : it->second;
}

ModuleSlot& ModuleRegistry::start(std::shared_ptr<LoadedLibrary> library) {
  std::string name = library->name();
  if (find(name) != nullptr) throw std::invalid_argument("module " + name + " is already running");
  auto instance = std::make_unique<ModuleInstance>(std::move(library), *this, module_config(name), /*staged=*/true);
  ModuleSlot& slot = adopt(name, std::move(instance));
  resume(slot);
  return slot;
}

ModuleSlot& ModuleRegistry::adopt(const std::string& name, std::unique_ptr<ModuleInstance> instance) {
  auto slot = std::make_unique<ModuleSlot>(name);
  slot->suspended_ = true;
  ModuleSlot& ref = *slot;
  slots_.emplace(name, std::move(slot));
  ref.active_ = std::move(instance);
  ref.active_->commit(ref);
  return ref;
}

std::unique_ptr<ModuleInstance> ModuleRegistry::replace(ModuleSlot& slot, std::unique_ptr<ModuleInstance> next) {
  std::unique_ptr<ModuleInstance> old = std::move(slot.active_);
  // Before the new instance takes over the slot's timers: the old one's
  // destroy() must not cancel a timer the new one inherited.
  old->detach();
  slot.active_ = std::move(next);
  slot.active_->commit(slot);
  return old;
}

std::unique_ptr<ModuleInstance> ModuleRegistry::remove(ModuleSlot& slot) {
  for (hotswap_timer_id id : slot.timers_) services_->cancel_timer(id);
  if (!slot.queue_.empty())
    spdlog::warn("module {} removed with {} queued events; they are dropped", slot.name_, slot.queue_.size());
  std::unique_ptr<ModuleInstance> old = std::move(slot.active_);
  // The slot is freed below; the instance's destroy() runs later, detached.
  if (old) old->detach();
  std::string name = slot.name_;
  slots_.erase(name);
  return old;
}

void ModuleRegistry::enqueue(ModuleSlot& slot, ModuleEvent&& event) {
  slot.queue_.push_back(std::move(event));
  ++slot.stats_.queued_total;
  if (slot.queue_.size() > slot.stats_.max_queue) slot.stats_.max_queue = slot.queue_.size();
}

void ModuleRegistry::resume(ModuleSlot& slot) {
  // The slot stays "suspended" while the queue drains, so an event that arrives
  // re-entrantly during the drain queues behind the older ones instead of jumping them.
  while (!slot.queue_.empty()) {
    ModuleEvent event = std::move(slot.queue_.front());
    slot.queue_.pop_front();
    dispatch(slot, event);
  }
  slot.suspended_ = false;
}

void ModuleRegistry::report_failure(ModuleSlot& slot, const char* callback, hotswap_status status,
                                    const char* message) {
  uint64_t failures = ++slot.stats_.failed_events;
  // A module that fails on every message must not flood the log: the first ten, then every thousandth.
  if (failures > 10 && failures % 1000 != 0) return;
  spdlog::warn("module {} {}: {} failed (status {}): {} ({} failure(s) so far)", slot.name_, slot.active_->version(),
               callback, static_cast<int>(status), (message && *message) ? message : "no reason given", failures);
}

void ModuleRegistry::dispatch(ModuleSlot& slot, ModuleEvent& event) {
  if (event.kind == ModuleEvent::Kind::Message) {
    call_on_message(slot, event.conn, event.payload);
    return;
  }
  ModuleInstance& instance = *slot.active_;
  const hotswap_module_descriptor& d = instance.descriptor();
  char text[kErrorCapacity];
  text[0] = '\0';
  hotswap_error err{text, sizeof text};
  hotswap_status status = HOTSWAP_OK;
  const char* callback = "";
  ++slot.stats_.events;
  hotswap_instance* handle = instance.handle();
  switch (event.kind) {
    case ModuleEvent::Kind::Connect: {
      callback = "on_connect";
      hotswap_conn_info info{sizeof(hotswap_conn_info), event.payload.c_str(), event.peer.c_str()};
      if (d.on_connect)
        status = call_module(instance.call_site("on_connect", event.conn), &err,
                             [&] { return d.on_connect(handle, event.conn, &info, &err); });
      break;
    }
    case ModuleEvent::Kind::Disconnect:
      callback = "on_disconnect";
      if (d.on_disconnect)
        status = call_module(instance.call_site("on_disconnect", event.conn), &err,
                             [&] { return d.on_disconnect(handle, event.conn, event.reason, &err); });
      break;
    case ModuleEvent::Kind::Tick:
      callback = "on_tick";
      if (d.on_tick)
        status =
            call_module(instance.call_site("on_tick"), &err, [&] { return d.on_tick(handle, event.number, &err); });
      break;
    case ModuleEvent::Kind::Timer:
      callback = "on_timer";
      if (d.on_timer)
        status = call_module(instance.call_site("on_timer"), &err,
                             [&] { return d.on_timer(handle, event.timer, event.number, &err); });
      break;
    case ModuleEvent::Kind::Message:
      break;
  }
  if (status != HOTSWAP_OK) report_failure(slot, callback, status, text);
}

void ModuleRegistry::deliver_connect(ModuleSlot& slot, hotswap_conn_id conn, std::string_view listener,
                                     std::string_view peer) {
  ModuleEvent event{ModuleEvent::Kind::Connect, conn, std::string(listener), std::string(peer), {}, 0, 0};
  if (slot.suspended_) return enqueue(slot, std::move(event));
  dispatch(slot, event);
}

void ModuleRegistry::deliver_disconnect(ModuleSlot& slot, hotswap_conn_id conn, hotswap_disconnect_reason reason) {
  ModuleEvent event{ModuleEvent::Kind::Disconnect, conn, {}, {}, reason, 0, 0};
  if (slot.suspended_) return enqueue(slot, std::move(event));
  dispatch(slot, event);
}

void ModuleRegistry::deliver_tick(ModuleSlot& slot) {
  ModuleEvent event{ModuleEvent::Kind::Tick, 0, {}, {}, {}, ++slot.tick_number_, 0};
  if (slot.suspended_) return enqueue(slot, std::move(event));
  dispatch(slot, event);
}

void ModuleRegistry::deliver_timer(ModuleSlot& slot, hotswap_timer_id id, uint64_t tag, bool last) {
  if (last) slot.timers_.erase(id);
  ModuleEvent event{ModuleEvent::Kind::Timer, 0, {}, {}, {}, tag, id};
  if (slot.suspended_) return enqueue(slot, std::move(event));
  dispatch(slot, event);
}

void ModuleRegistry::arm_timer(ModuleSlot& slot, hotswap_timer_id id, uint64_t delay_ms, uint64_t repeat_ms,
                               uint64_t tag) {
  slot.timers_.insert(id);
  try {
    services_->schedule_timer(slot, id, delay_ms, repeat_ms, tag);
  } catch (...) {
    slot.timers_.erase(id);  // the slot owns only timers that are armed
    throw;
  }
}

bool ModuleRegistry::cancel_timer(ModuleSlot& slot, hotswap_timer_id id) {
  if (slot.timers_.erase(id) == 0) return false;
  return services_->cancel_timer(id);
}

void ModuleRegistry::notify_stop() {
  for (auto& [name, slot] : slots_) {
    try {
      slot->active_->stop();
    } catch (const std::exception& e) {
      spdlog::warn("{}", e.what());
    }
  }
}

void ModuleRegistry::stop_all() {
  for (auto& [name, slot] : slots_) {
    for (hotswap_timer_id id : slot->timers_) services_->cancel_timer(id);
    slot->timers_.clear();
  }
  destroy_all_slots();
}

SlotHandover ModuleRegistry::handover_bookkeeping(const ModuleSlot& slot) const {
  SlotHandover out;
  out.module = slot.name_;
  if (slot.active_) out.version = slot.active_->version();
  out.tick_number = slot.tick_number_;
  // Copied, not moved: if the handover fails, blue resumes and delivers them itself.
  out.queued.assign(slot.queue_.begin(), slot.queue_.end());
  return out;
}

void ModuleRegistry::restore_from_handover(ModuleSlot& slot, const SlotHandover& from) {
  // Every id is checked before anything changes: a clash leaves the slot as it was.
  std::set<hotswap_timer_id> incoming;
  for (const TimerHandover& timer : from.timers) {
    if (timer.id == 0 || !incoming.insert(timer.id).second)
      throw std::invalid_argument("module " + slot.name_ + ": the handover carries timer id " +
                                  std::to_string(timer.id) + (timer.id == 0 ? ", not a timer id" : " twice"));
    for (const auto& [name, other] : slots_)
      if (other->timers_.count(timer.id) != 0)
        throw std::invalid_argument("module " + slot.name_ + ": timer id " + std::to_string(timer.id) +
                                    " from the handover is already in use by module " + name);
  }
  slot.tick_number_ = from.tick_number;
  // Ahead of anything queued here meanwhile, in blue's order.
  slot.queue_.insert(slot.queue_.begin(), from.queued.begin(), from.queued.end());
  slot.stats_.queued_total += from.queued.size();
  if (slot.queue_.size() > slot.stats_.max_queue) slot.stats_.max_queue = slot.queue_.size();
  for (const TimerHandover& timer : from.timers)
    arm_timer(slot, timer.id, timer.remaining_ms, timer.repeat_ms, timer.tag);
  if (!incoming.empty()) next_timer_id_ = std::max(next_timer_id_, *incoming.rbegin() + 1);
  // A slot already serving delivers them now; a suspended one on resume.
  if (!slot.suspended_ && !slot.queue_.empty()) resume(slot);
}

void ModuleRegistry::set_next_timer_id(hotswap_timer_id next) {
  hotswap_timer_id floor = 1;
  for (const auto& [name, slot] : slots_)
    if (!slot->timers_.empty()) floor = std::max(floor, *slot->timers_.rbegin() + 1);
  next_timer_id_ = std::max({next, floor, next_timer_id_});
}

}  // namespace hotswap::host
