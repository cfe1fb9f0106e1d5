#include "handover/handover_green.hpp"

#include <spdlog/spdlog.h>

#include <set>

#include "core/module_registry.hpp"
#include "net/network_server.hpp"

namespace hotswap::host {

using handover::HandoverError;
using handover::MessageType;

HandoverGreen::HandoverGreen(handover::HandoverChannel& channel, NetworkServer& server, ModuleRegistry& registry,
                             std::vector<std::shared_ptr<LoadedLibrary>> libraries, const RuntimeConfig& config,
                             Clock::time_point deadline)
    : channel_(channel),
      libraries_(std::move(libraries)),
      server_(server),
      registry_(registry),
      config_(config),
      deadline_(deadline) {}

std::vector<handover::LoadedModule> HandoverGreen::loaded_modules() const {
  std::vector<handover::LoadedModule> modules;
  for (const auto& library : libraries_) modules.push_back({library->name(), library->version(), library->state_schema()});
  return modules;
}

void HandoverGreen::receive() {
  adopt_listeners(channel_.expect(MessageType::Listeners, deadline_));
  for (;;) {
    handover::Message message = channel_.receive(deadline_);
    if (message.type == MessageType::ConnectionBatch) {
      adopt_connections(std::move(message));
      continue;
    }
    if (message.type == MessageType::Slots) return import_slots(message);
    if (message.type == MessageType::Error)
      throw HandoverError("the old process gave up: " + handover::decode_error(message.body));
    throw HandoverError(std::string("unexpected ") + handover::to_string(message.type) +
                        " while receiving connections");
  }
}

void HandoverGreen::adopt_listeners(handover::Message message) {
  listeners_received_ = Clock::now();
  std::vector<ListenerHandover> received = handover::decode_listeners(message.body);
  if (received.size() != message.fds.size())
    throw HandoverError("Listeners names " + std::to_string(received.size()) + " listeners but carries " +
                        std::to_string(message.fds.size()) + " descriptors");
  std::set<std::string> adopted;
  for (size_t i = 0; i < received.size(); ++i) {
    const ListenerHandover& l = received[i];
    if (l.name == handover::kAdminListenerName) {
      admin_listener_ = std::move(message.fds[i]);
      continue;
    }
    for (const ListenerConfig& config : config_.listeners)
      if (config.name == l.name && config.address == l.address && (config.port == 0 || config.port == l.port)) {
        ListenerConfig bound = config;
        bound.port = l.port;
        server_.adopt_listener(bound, std::move(message.fds[i]));
        adopted.insert(l.name);
        ++counts_.listeners_adopted;
      }
    // A listener the target does not keep: its descriptor closes here; blue closes its own at commit.
  }
  // The target's new listeners: bound now, so that a port that is taken fails
  // the handover while blue can still take everything back.
  for (const ListenerConfig& config : config_.listeners)
    if (adopted.count(config.name) == 0) {
      server_.listen(config, /*accept_now=*/false);
      ++counts_.listeners_opened;
    }
}

void HandoverGreen::adopt_connections(handover::Message message) {
  std::vector<ConnectionHandover> connections = handover::decode_connections(message.body);
  if (connections.size() != message.fds.size())
    throw HandoverError("ConnectionBatch names " + std::to_string(connections.size()) + " connections but carries " +
                        std::to_string(message.fds.size()) + " descriptors");
  for (size_t i = 0; i < connections.size(); ++i) {
    bytes_ += connections[i].unread_input.size() + connections[i].unsent_output.size();
    server_.adopt_connection(std::move(connections[i]), std::move(message.fds[i]));
  }
  counts_.connections += connections.size();
  channel_.send(MessageType::BatchAck, handover::encode_count(static_cast<uint32_t>(connections.size())));
}

void HandoverGreen::import_slots(const handover::Message& message) {
  handover::SlotsMessage slots = handover::decode_slots(message.body);
  server_.set_next_connection_id(slots.counters.next_conn_id);
  registry_.set_next_timer_id(slots.counters.next_timer_id);
  for (const auto& library : libraries_) {
    ModuleSlot& slot = registry_.start(library);
    registry_.suspend(slot);
  }
  for (const SlotHandover& from : slots.slots) {
    ModuleSlot* slot = registry_.find(from.module);
    if (slot == nullptr)
      throw HandoverError("the old process sent the state of module " + from.module +
                          ", which the target release does not have");
    ModuleInstance& instance = slot->active();
    bytes_ += from.state.size();
    switch (from.arrival) {
      case StateArrival::Import:
        instance.import_state(from.schema, from.state);
        break;
      case StateArrival::MigrateUp:
        instance.migrate_up(from.version, from.schema, from.state, from.extra_json);
        break;
      case StateArrival::Fresh:
        break;
    }
    registry_.restore_from_handover(*slot, from);
    ++counts_.slots;
  }
}

void HandoverGreen::start_serving() {
  committed_ = Clock::now();
  server_.start_adopted();
  for (ModuleSlot* slot : registry_.slots()) registry_.resume(*slot);
}

HandoverFigures HandoverGreen::figures() const {
  HandoverFigures figures;
  figures.committed = committed_ != Clock::time_point{};
  figures.connections = counts_.connections;
  figures.listeners = counts_.listeners_adopted + (admin_listener_ ? 1 : 0);
  figures.bytes = bytes_;
  const Clock::time_point end = figures.committed ? committed_ : Clock::now();
  figures.duration_ms = std::chrono::duration<double, std::milli>(end - created_).count();
  if (listeners_received_ != Clock::time_point{})
    figures.max_stall_ms = std::chrono::duration<double, std::milli>(end - listeners_received_).count();
  return figures;
}

}  // namespace hotswap::host
