// A HostServices for tests: records what modules ask of the outside world.
#pragma once

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/host_services.hpp"
#include "core/module_registry.hpp"

namespace hotswap::test {

// Records what modules ask of the outside world. Its clock stands still until
// advance() moves it; timers fire only there, never on their own.
class RecordingServices : public hotswap::host::HostServices {
 public:
  struct Timer {
    hotswap::host::ModuleSlot* owner;
    uint64_t delay_ms, repeat_ms, tag;
    std::string module;  // looked up again when firing: the owner slot may be gone by then
    uint64_t due_ms;
    uint64_t sequence;  // orders timers due at the same time, as they were armed
  };
  hotswap_status send(std::string_view, hotswap_conn_id conn, std::string_view message) override {
    if (full.count(conn) != 0) return HOTSWAP_LIMIT;
    sent.emplace_back(conn, std::string(message));
    return HOTSWAP_OK;
  }
  // Lists `connections` of `module`, as a server would; a listener is known
  // when `listeners` names it for that module.
  bool list_connections(std::string_view module, const char* listener, std::vector<ConnectionRef>& out) override {
    out.clear();
    if (listener != nullptr) {
      const auto known = listeners.find(listener);
      if (known == listeners.end() || known->second != module) return false;
    }
    for (const auto& [id, connection] : connections)
      if (connection.module == module && (listener == nullptr || connection.listener == listener))
        out.push_back({id, connection.listener.c_str()});
    return true;
  }
  hotswap_status close(std::string_view, hotswap_conn_id conn, std::string_view reason) override {
    closed.emplace_back(conn, std::string(reason));
    return HOTSWAP_OK;
  }
  void schedule_timer(hotswap::host::ModuleSlot& owner, hotswap_timer_id id, uint64_t delay_ms, uint64_t repeat_ms,
                      uint64_t tag) override {
    timers[id] = Timer{&owner, delay_ms, repeat_ms, tag, owner.name(), clock_ms + delay_ms, next_sequence_++};
  }
  bool cancel_timer(hotswap_timer_id id) override { return timers.erase(id) > 0; }
  uint64_t now_ms() const override { return clock_ms; }

  // Moves the clock forward by `ms`, firing every timer that falls due on the
  // way into `registry`, in order of due time, each at its due time, as the
  // server's loop would. A repeating timer re-arms from its due time.
  void advance(hotswap::host::ModuleRegistry& registry, uint64_t ms) {
    const uint64_t target = clock_ms + ms;
    for (;;) {
      auto next = timers.end();
      for (auto it = timers.begin(); it != timers.end(); ++it)
        if (it->second.due_ms <= target &&
            (next == timers.end() || std::make_pair(it->second.due_ms, it->second.sequence) <
                                         std::make_pair(next->second.due_ms, next->second.sequence)))
          next = it;
      if (next == timers.end()) break;
      const hotswap_timer_id id = next->first;
      const Timer timer = next->second;
      clock_ms = std::max(clock_ms, timer.due_ms);
      const bool last = timer.repeat_ms == 0;
      if (last) {
        timers.erase(next);
      } else {
        next->second.due_ms = clock_ms + timer.repeat_ms;
        next->second.sequence = next_sequence_++;
      }
      if (hotswap::host::ModuleSlot* slot = registry.find(timer.module)) {
        registry.deliver_timer(*slot, id, timer.tag, last);
      } else {
        timers.erase(id);
      }
    }
    clock_ms = target;
  }

  // The messages sent to one connection, in order.
  std::vector<std::string> sent_to(hotswap_conn_id conn) const {
    std::vector<std::string> out;
    for (const auto& [c, m] : sent)
      if (c == conn) out.push_back(m);
    return out;
  }
  std::string last_to(hotswap_conn_id conn) const {
    auto all = sent_to(conn);
    return all.empty() ? std::string() : all.back();
  }

  struct Connection {
    std::string module, listener;
  };
  std::map<hotswap_conn_id, Connection> connections;  // what list_connections reports
  std::map<std::string, std::string> listeners;       // listener name -> the module it serves
  std::set<hotswap_conn_id> full;                     // send answers HOTSWAP_LIMIT for these
  std::vector<std::pair<hotswap_conn_id, std::string>> sent;
  std::vector<std::pair<hotswap_conn_id, std::string>> closed;
  std::map<hotswap_timer_id, Timer> timers;
  // Not zero, so that module code treating 0 as "never" behaves as it would live.
  uint64_t clock_ms = 1'000'000;

 private:
  uint64_t next_sequence_ = 0;
};

}  // namespace hotswap::test
