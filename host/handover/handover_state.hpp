// What a blue-green handover moves from the running process (blue) to its
// successor (green): listening sockets, established connections with their
// buffers, and each module's state, timers, tick count and queued events.
// Plain data: the network server and the registry fill and consume it
// (net/network_server.hpp, core/module_registry.hpp), the channel encodes it
// (handover/handover_channel.hpp), the two sides drive it
// (handover/handover_blue.hpp, handover/handover_green.hpp).
//
// Descriptors: on blue's side `fd` is the server's own descriptor, still owned
// by the server (blue closes it only after green committed, with close(2) and
// never shutdown(2): green holds the same socket). On green's side it is the
// received descriptor, owned by whoever adopts it.
#pragma once

#include <hotswap/module.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/module_registry.hpp"

namespace hotswap::host {

struct ListenerHandover {
  std::string name;  // the runtime config's listener name (green matches on it)
  std::string address;
  uint16_t port = 0;  // the bound port
  int fd = -1;
};

struct ConnectionHandover {
  hotswap_conn_id id = 0;      // kept: modules key their state on it
  std::string listener;        // name of the listener that accepted it
  std::string peer;            // "address:port", as on_connect gave it
  std::string unread_input;    // read from the socket but not yet delivered (framing restarts on it)
  std::string unsent_output;   // framed bytes queued and not yet written, in order
  uint64_t idle_ms = 0;        // since its last complete message (the listener's idle timeout continues)
  bool close_after_output = false;  // closing gracefully: close once unsent_output is written
  int fd = -1;
};

struct TimerHandover {
  hotswap_timer_id id = 0;
  uint64_t remaining_ms = 0;  // until it is due (0: overdue, fires at once)
  uint64_t repeat_ms = 0;     // 0: one-shot
  uint64_t tag = 0;
};

// How green gives a module its state back.
enum class StateArrival : uint8_t {
  Import = 1,     // import_state(schema, state): same schema (or blue already ran migrate_down)
  MigrateUp = 2,  // migrate_up(from version, schema, state, extra) in green's newer code
  Fresh = 3,      // nothing moves (restart_module): green's create() state stays
};

struct SlotHandover {
  std::string module;
  std::string version;  // the version blue ran
  uint32_t schema = 0;  // of `state`
  StateArrival arrival = StateArrival::Import;
  std::string state;       // exported (or migrated down) by blue's code; empty for Fresh
  std::string extra_json;  // MigrateUp: the appup instruction's extra ("null" when none)
  uint64_t tick_number = 0;
  std::vector<TimerHandover> timers;
  std::vector<ModuleEvent> queued;  // suspended-time events, delivered first, in order
};

// Counters that must continue, so that ids never repeat across the handover.
struct HostCountersHandover {
  hotswap_conn_id next_conn_id = 1;
  hotswap_timer_id next_timer_id = 1;
};

// What `status` and the upgrade report show of a handover.
struct HandoverFigures {
  uint64_t connections = 0;  // moved
  uint64_t listeners = 0;
  uint64_t bytes = 0;        // unread input + unsent output + state, moved
  double duration_ms = 0;    // blue paused -> green committed (or blue resumed)
  double max_stall_ms = 0;   // the longest any moved connection went unserved
  bool committed = false;
  std::string error;         // why it failed; empty when committed
};

}  // namespace hotswap::host
