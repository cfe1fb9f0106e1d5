// The new process's side of a blue-green handover (green), started by blue as
// `hotswap handover-target --root ROOT --version VSN --fd N`. It loads the
// target release (the caller's Runtime does), then adopts what blue sends:
// listeners, connections in acknowledged batches, and each module's state,
// timers, tick count and queued events (migrate_up in this newer code where
// blue asked for it). Nothing is accepted, read or written before Commit, so
// a handover that fails leaves blue with everything; green then just exits.
//
// Blocking, before this process's loop runs.
#pragma once

#include <chrono>
#include <vector>

#include "core/library_loader.hpp"
#include "handover/handover_channel.hpp"
#include "os/fd.hpp"
#include "release/runtime_config.hpp"

namespace hotswap::host {

class NetworkServer;
class ModuleRegistry;

class HandoverGreen {
 public:
  using Clock = std::chrono::steady_clock;

  // `libraries`: the target release's modules, loaded, in boot order; their
  // instances are created once blue's counters have arrived (so that ids a
  // create() allocates never collide with blue's). `config`: the target
  // release's runtime config (its listeners). `deadline` bounds every wait
  // (blue enforces the real handover timeout and kills this process past it;
  // this only keeps an orphan from waiting forever).
  HandoverGreen(handover::HandoverChannel& channel, NetworkServer& server, ModuleRegistry& registry,
                std::vector<std::shared_ptr<LoadedLibrary>> libraries, const RuntimeConfig& config,
                Clock::time_point deadline);

  // What this process loaded, for the Loaded message.
  std::vector<handover::LoadedModule> loaded_modules() const;

  // Receives and adopts everything up to and including the module slots, then
  // opens the listeners the target adds (not accepting yet). Throws
  // HandoverError or std::runtime_error naming what failed (a listener that
  // cannot be opened, a state a module refuses).
  void receive();

  // After Commit: accepts, reads and writes, and resumes every module.
  void start_serving();

  // The admin socket blue listened on (invalid when blue sent none).
  os::Fd take_admin_listener() { return std::move(admin_listener_); }

  // The figures of this handover as green saw it (status shows them once it
  // serves): duration from this object's creation (the process start) to
  // Commit, stall from the Listeners message (blue paused just before) to Commit.
  HandoverFigures figures() const;

  struct Counts {
    size_t listeners_adopted = 0, listeners_opened = 0, connections = 0, slots = 0;
  };
  const Counts& counts() const { return counts_; }

 private:
  void adopt_listeners(handover::Message message);
  void adopt_connections(handover::Message message);
  void import_slots(const handover::Message& message);

  handover::HandoverChannel& channel_;
  std::vector<std::shared_ptr<LoadedLibrary>> libraries_;
  NetworkServer& server_;
  ModuleRegistry& registry_;
  const RuntimeConfig& config_;
  Clock::time_point deadline_;
  os::Fd admin_listener_;
  Counts counts_;
  uint64_t bytes_ = 0;
  Clock::time_point created_ = Clock::now();
  Clock::time_point listeners_received_{};
  Clock::time_point committed_{};
};

}  // namespace hotswap::host
