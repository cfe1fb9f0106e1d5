// The traffic harness of the blue-green end-to-end tests and benchmark: N TCP
// connections to the `handover` test module (tests/modules/handover_protocol.hpp),
// driven by one epoll client thread that sends each connection's numbered
// requests ("1", "2", ...) at a steady pace, pipelined up to a window, and
// checks every reply as it arrives: its seq is the connection's oldest
// outstanding one (else out of order, or a duplicate when already answered),
// its connection id never changes (ids survive swaps and handovers), and its
// count equals its seq (the module counted every request of this connection
// exactly once, whichever process or version served it).
//
// Threading: the constructor, start(), stop() and the queries run on the
// caller's thread (a test's main thread); everything else on the client
// thread. The harness asserts nothing itself: problems are counted and
// described in the TrafficReport, which the caller checks.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace hotswap::test::handover {

using Clock = std::chrono::steady_clock;

struct TrafficOptions {
  std::string address = "127.0.0.1";
  uint16_t port = 0;
  size_t connections = 100;
  // Numbered requests a connection may have outstanding; a send due while the
  // window is full waits for the next interval.
  size_t window = 2;
  // Each connection sends a request this often (the connections are spread
  // evenly over the interval); 0: the next one as soon as the window allows.
  std::chrono::milliseconds interval{50};
  // A connection the server closes connects again and starts over at seq 1
  // (the restart baseline); otherwise it stays closed and counts as dropped.
  bool reconnect = false;
};

// One connection as the harness saw it.
struct ConnectionRecord {
  uint64_t server_id = 0;  // the id the replies carry (0: no reply yet)
  uint64_t sent = 0;       // numbered requests sent on the current socket
  uint64_t answered = 0;   // of them, answered in order (the module's count for it)
  uint64_t answered_total = 0;  // over every socket of this connection
  uint64_t reconnects = 0;
  bool closed_by_client = false;  // close_gracefully or close_abruptly
  bool closed_abruptly = false;   // close_abruptly: closed with requests still unanswered
  uint64_t unanswered_at_close = 0;
  bool dropped = false;           // the server closed it or it failed (and it was not reconnected)
};

// What the module's stats must say for the traffic seen (handover_protocol.hpp).
struct ExpectedStats {
  uint64_t conns = 0;     // open connections that made a request
  uint64_t total = 0;     // requests answered, all connections
  uint64_t closed_conns = 0;
  uint64_t closed = 0;    // requests of the connections the client closed
  uint64_t checksum = 0;  // over the open connections' (id, count)
  // Requests of abruptly closed connections that were never answered: the
  // module may or may not have counted them, so its `closed` and `total` may
  // exceed the figures above by up to this much.
  uint64_t uncertain = 0;
};

struct TrafficReport {
  size_t connections = 0;
  uint64_t sent = 0;
  uint64_t answered = 0;
  uint64_t dropped = 0;       // connections the server closed or that failed (each time, with reconnect)
  uint64_t lost = 0;          // requests sent and never answered
  uint64_t duplicated = 0;    // replies to a request already answered
  uint64_t out_of_order = 0;  // replies that overtook an older outstanding request
  uint64_t malformed = 0;     // not the protocol, a changed connection id, a count other than the seq
  uint64_t skipped_sends = 0; // sends not made because the window was full
  double max_stall_ms = 0;    // the longest a request waited for its reply (a lost one: until the end)
  std::map<std::string, uint64_t> replies_by_tag;  // "v1", "v2"
  std::vector<std::string> problems;               // the first 20, described
  std::vector<ConnectionRecord> records;

  bool clean() const { return dropped == 0 && lost == 0 && duplicated == 0 && out_of_order == 0 && malformed == 0; }
  ExpectedStats expected() const;
  std::string summary() const;  // one line: every counter, then the problems
};

// The module's stats reply, parsed ("stats version=... conns=..."). Throws
// std::runtime_error naming the reply when it is not one.
struct ModuleStats {
  std::string version;
  uint64_t conns = 0, total = 0, closed_conns = 0, closed = 0, checksum = 0, fires = 0, ticks = 0;
  std::string label;
};
ModuleStats parse_stats(const std::string& reply);

// One request on a fresh connection, its one-line reply (without the newline).
// Throws std::runtime_error naming what failed.
std::string ask(const std::string& address, uint16_t port, const std::string& request);
inline ModuleStats query_stats(uint16_t port) { return parse_stats(ask("127.0.0.1", port, "stats")); }

// Raises this process's RLIMIT_NOFILE soft limit to at least `needed` (up to
// the hard limit); processes started afterwards inherit it. Returns the new
// soft limit; the caller checks it is enough.
uint64_t raise_open_files_limit(uint64_t needed);

class Traffic {
 public:
  // Opens every connection (blocking connects). Throws std::runtime_error
  // naming the connection and the error when one cannot be opened.
  explicit Traffic(TrafficOptions options);
  ~Traffic();  // stops the client thread; closes every connection
  Traffic(const Traffic&) = delete;
  Traffic& operator=(const Traffic&) = delete;

  void start();  // starts the client thread: the requests begin

  uint64_t answered() const { return answered_.load(); }
  uint64_t answered_with_tag(const std::string& tag) const;  // "v1", "v2"
  // Replies that came after a reconnect, the first one on each new socket.
  uint64_t first_replies_after_reconnect() const { return reconnected_answered_.load(); }
  uint64_t dropped_so_far() const { return dropped_.load(); }
  // Requests known lost so far: outstanding on a dropped connection, or overtaken.
  uint64_t lost_so_far() const { return lost_.load(); }
  // The longest a request waited for its reply since the last reset (a
  // benchmark's phase): requests still outstanding are not in it.
  double max_stall_ms_since_reset() const { return double(max_stall_us_.load()) / 1000.0; }
  void reset_max_stall() { max_stall_us_ = 0; }
  // Waits until `condition` on this harness holds (the client thread's
  // counters), polling; false when `limit` passed first.
  bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds limit) const;

  // Asks the client thread to close `count` more connections gracefully:
  // each stops sending, waits for its outstanding replies, then closes.
  // Returns at once; closed_by_client() counts those closed so far.
  void close_gracefully(size_t count) { close_requests_ += count; }
  // Asks the client thread to close `count` more connections at once, with
  // whatever requests they have outstanding (those are neither lost nor
  // answered: ExpectedStats::uncertain).
  void close_abruptly(size_t count) { abrupt_close_requests_ += count; }
  uint64_t closed_by_client() const { return closed_.load(); }

  // Stops sending, waits up to `drain` for every outstanding reply, stops the
  // client thread and reports. The connections stay open until destruction.
  TrafficReport stop(std::chrono::milliseconds drain = std::chrono::seconds(20));

 private:
  struct Connection;
  struct Impl;
  void run();
  // Wakes wait_until() once the traffic thread's counters may have moved.
  void announce_progress();

  TrafficOptions options_;
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> finished_{false};
  mutable std::mutex progress_mutex_;
  mutable std::condition_variable progress_;
  std::atomic<uint64_t> answered_{0};
  std::atomic<uint64_t> reconnected_answered_{0};
  std::atomic<uint64_t> dropped_{0};
  std::atomic<uint64_t> lost_{0};
  std::atomic<int64_t> max_stall_us_{0};
  std::atomic<uint64_t> closed_{0};
  std::atomic<uint64_t> close_requests_{0};
  std::atomic<uint64_t> abrupt_close_requests_{0};
  std::atomic<uint64_t> tag_v1_{0}, tag_v2_{0}, tag_other_{0};
  std::atomic<int64_t> drain_ms_{0};
};

}  // namespace hotswap::test::handover
