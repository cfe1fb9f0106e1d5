// A HostServices for tests: records what modules ask of the outside world.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/host_services.hpp"
#include "core/module_registry.hpp"

namespace hotswap::test {

// Records what modules ask of the outside world.
class RecordingServices : public hotswap::host::HostServices {
 public:
  struct Timer {
    hotswap::host::ModuleSlot* owner;
    uint64_t delay_ms, repeat_ms, tag;
  };
  hotswap_status send(std::string_view, hotswap_conn_id conn, std::string_view message) override {
    sent.emplace_back(conn, std::string(message));
    return HOTSWAP_OK;
  }
  hotswap_status close(std::string_view, hotswap_conn_id conn, std::string_view reason) override {
    closed.emplace_back(conn, std::string(reason));
    return HOTSWAP_OK;
  }
  void schedule_timer(hotswap::host::ModuleSlot& owner, hotswap_timer_id id, uint64_t delay_ms, uint64_t repeat_ms,
                      uint64_t tag) override {
    timers[id] = Timer{&owner, delay_ms, repeat_ms, tag};
  }
  bool cancel_timer(hotswap_timer_id id) override { return timers.erase(id) > 0; }

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

  std::vector<std::pair<hotswap_conn_id, std::string>> sent;
  std::vector<std::pair<hotswap_conn_id, std::string>> closed;
  std::map<hotswap_timer_id, Timer> timers;
};

}  // namespace hotswap::test
