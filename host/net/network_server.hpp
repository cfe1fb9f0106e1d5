// The host's network layer (Boost.Asio, one event-loop thread): listeners,
// connections, framing, bounded output queues, timers and fixed-rate ticks.
// Every socket, buffer and connection id belongs to the host, never to module
// code, so swapping a module's code cannot close a connection. Implements the
// HostServices that modules reach through the host function table.
#pragma once

#include <boost/asio.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/host_services.hpp"
#include "core/module_registry.hpp"
#include "handover/handover_state.hpp"
#include "net/timer_source.hpp"
#include "os/fd.hpp"
#include "release/runtime_config.hpp"

namespace hotswap::host {

class EventTrace;

struct ServerLimits {
  size_t max_output_bytes = 1 << 20;  // per connection; over it the reader is closed
  // Unsent output across every connection. A send that would pass it first
  // closes the connections holding the most unsent bytes (the sender too, when
  // it holds the most), until the frame fits.
  size_t max_total_output_bytes = size_t(128) << 20;
  // Once unsent output has peaked at this many bytes or more and then drained
  // to an eighth of that peak, the heap's free memory is handed back to the
  // kernel (malloc_trim), once per such peak: never on an ordinary write.
  size_t trim_after_peak_bytes = 16 << 20;
};

struct ListenerStatus {
  std::string name, module, address;
  uint16_t port = 0;
};

struct ServerStats {
  uint64_t accepted = 0;
  uint64_t closed = 0;
  uint64_t frames_in = 0;
  uint64_t frames_out = 0;
  uint64_t protocol_errors = 0;
  uint64_t slow_readers = 0;
  uint64_t output_budget_closes = 0;  // closed to keep unsent output under max_total_output_bytes
  uint64_t idle_timeouts = 0;         // closed after their listener's idle_timeout without a message
  uint64_t memory_trims = 0;          // heap memory handed back after a peak of unsent output drained
  size_t peak_output_bytes = 0;       // the most unsent output ever held at once, every connection together
};

class NetworkServer : public HostServices {
 public:
  NetworkServer(boost::asio::io_context& io, ModuleRegistry& registry);
  ~NetworkServer() override;
  NetworkServer(const NetworkServer&) = delete;
  NetworkServer& operator=(const NetworkServer&) = delete;

  void set_limits(const ServerLimits& limits) { limits_ = limits; }
  const ServerLimits& limits() const { return limits_; }

  // The clock that drives module timers, ticks and now_ms (the steady clock by
  // default), and the listeners' idle timeouts. Replace it only before any
  // timer or tick is armed and while no connection is open (throws
  // std::logic_error otherwise). Other host-side timeouts (graceful shutdown,
  // accept retry) stay on the real clock: they bound waits.
  void set_timer_source(std::shared_ptr<TimerSource> source);
  TimerSource& timer_source() { return *timer_source_; }

  // Binds and starts accepting; returns the bound port (the OS's pick for port 0).
  // Throws std::runtime_error naming the listener and address when binding fails.
  // `accept_now` false: bound and listening, but not accepting until
  // start_adopted() (green opens the target's new listeners this way).
  uint16_t listen(const ListenerConfig& config, bool accept_now = true);
  // Stops accepting on every listener (queued connections stay in the kernel's backlog until close).
  void stop_accepting();
  std::vector<ListenerStatus> listeners() const;
  // True when some listener hands its connections to `module`.
  bool module_owns_listener(const std::string& module) const;

  // Sets (or, with hz == 0, stops) the fixed-rate tick of a module.
  void set_tick_rate(const std::string& module, double hz);

  // Graceful shutdown: stop reading, write pending output, then close every
  // connection; `done` runs when all are closed or `timeout` passes.
  void shutdown(std::chrono::milliseconds timeout, std::function<void()> done);

  // Trace recording (net/event_trace.hpp): while set, every event this server
  // hands to a module (connect, message, disconnect, tick, timer) is also
  // given to `trace`, in the same order; nullptr stops. Loop thread only; the
  // trace must stay alive until it is unset.
  void set_event_trace(EventTrace* trace) { trace_ = trace; }
  EventTrace* event_trace() const { return trace_; }

  // ---- blue-green handover (handover/), loop thread --------------------------
  // Blue. Stops accepting (the listeners stay open with their backlog) and
  // stops reading and writing every connection, synchronously: when it
  // returns, no read or write is in flight and every byte the server holds is
  // in the result. Nothing is closed, no module hears of it, timers and ticks
  // keep running. Connections of a listener not in `moving_listeners` are not
  // exported (they stay with blue, paused like the rest). Descriptors in the
  // result stay owned by the server.
  struct HandoverExport {
    std::vector<ListenerHandover> listeners;
    std::vector<ConnectionHandover> connections;
    hotswap_conn_id next_conn_id = 1;
  };
  HandoverExport pause_for_handover();
  // The same, moving only the listeners named in `moving_listeners` (and their
  // connections); the others stay with blue, paused, and after
  // release_after_handover() serve on (not accepting) until the caller stops.
  // Throws std::logic_error when already paused.
  HandoverExport pause_for_handover(const std::set<std::string>& moving_listeners);
  // Blue, the handover failed: accepting, reading and writing resume on every
  // listener and connection as if nothing happened; no byte was lost.
  void resume_after_handover();
  // Blue, green committed: forgets every exported listener and connection with
  // close(2) only (never shutdown(2): green holds the same sockets) and without
  // disconnect events; cancels every timer and tick. What stays (connections
  // of listeners the target removed) is closed gracefully by the caller's stop().
  void release_after_handover();
  // A timer's due time as a handover carries it.
  std::vector<TimerHandover> timers_of(const std::string& module) const;

  // Green. A listener received from blue: registered under `config` (its name
  // must be unique) but not accepting until start_adopted(). Throws
  // std::runtime_error naming the listener when the descriptor is not a
  // listening TCP socket.
  void adopt_listener(const ListenerConfig& config, os::Fd fd);
  // A connection received from blue, under its own id, on the adopted or
  // opened listener it names (throws std::runtime_error when none has that
  // name). Neither read nor written, and no on_connect, until start_adopted().
  void adopt_connection(ConnectionHandover connection, os::Fd fd);
  // Connection ids continue from blue's (never below the adopted ones).
  void set_next_connection_id(hotswap_conn_id next);
  // Green, on Commit: every adopted listener accepts, every adopted connection
  // delivers its unread input (complete frames first), writes its unsent
  // output and reads again. Listeners opened with listen() while adopting do
  // not accept before this either (see listen()'s `accept_now`).
  void start_adopted();

  size_t connection_count() const { return connections_.size(); }
  const ServerStats& stats() const { return stats_; }
  // Unsent output queued on every connection now (counted against max_total_output_bytes).
  size_t output_bytes() const { return total_output_bytes_; }
  // Heap bytes the connections' input and output buffers hold now (capacity, not content).
  size_t buffer_capacity() const;

  // HostServices
  hotswap_status send(std::string_view module, hotswap_conn_id conn, std::string_view message) override;
  hotswap_status close(std::string_view module, hotswap_conn_id conn, std::string_view reason) override;
  void schedule_timer(ModuleSlot& owner, hotswap_timer_id id, uint64_t delay_ms, uint64_t repeat_ms,
                      uint64_t tag) override;
  bool cancel_timer(hotswap_timer_id id) override;
  uint64_t now_ms() const override { return timer_source_->now_ms(); }
  bool list_connections(std::string_view module, const char* listener, std::vector<ConnectionRef>& out) override;

 private:
  class Connection;
  struct Listener;
  struct Timer;
  struct Tick;
  friend class Connection;

  void accept_next(const std::shared_ptr<Listener>& listener);
  void accept_then_wait(const std::shared_ptr<Listener>& listener);
  void retry_accept_later(const std::shared_ptr<Listener>& listener);
  void start_accepting(const std::shared_ptr<Listener>& listener);
  // Accepts what the backlog holds; false after an error that calls for a pause.
  bool accept_ready(const std::shared_ptr<Listener>& listener);
  void connection_closed(hotswap_conn_id id, hotswap_disconnect_reason reason, const std::string& module);
  void arm_timer(const std::shared_ptr<Timer>& timer, uint64_t delay_ms);
  void arm_tick(const std::shared_ptr<Tick>& tick);
  // Output accounting across connections; see ServerLimits.
  void output_queued(size_t bytes);
  void output_released(size_t bytes);
  // Closes the connections holding the most unsent output until `bytes` more
  // fit in the budget. False when `sender` itself had to be closed.
  bool make_room_for_output(size_t bytes, const Connection& sender);

  boost::asio::io_context& io_;
  ModuleRegistry& registry_;
  // Declared before the timers and ticks: their alarms must not outlive it.
  std::shared_ptr<TimerSource> timer_source_;
  ServerLimits limits_;
  ServerStats stats_;
  hotswap_conn_id next_conn_id_ = 1;
  std::vector<std::shared_ptr<Listener>> listeners_;
  std::map<hotswap_conn_id, std::shared_ptr<Connection>> connections_;
  std::map<hotswap_timer_id, std::shared_ptr<Timer>> timers_;
  std::map<std::string, std::shared_ptr<Tick>> ticks_;
  size_t total_output_bytes_ = 0;
  size_t output_peak_since_trim_ = 0;
  bool trim_posted_ = false;
  // Every connection reads into this one buffer and appends what came to its
  // own input at once (reads are synchronous on the loop), instead of holding
  // 16 KiB of its own: 160 MB at 10,000 connections, zeroed at each accept.
  std::vector<char> read_buffer_ = std::vector<char>(16 * 1024);
  bool shutting_down_ = false;
  bool handover_paused_ = false;  // between pause_for_handover and resume / release
  std::function<void()> on_all_closed_;
  std::unique_ptr<boost::asio::steady_timer> shutdown_timer_;
  EventTrace* trace_ = nullptr;  // set_event_trace
};

}  // namespace hotswap::host
