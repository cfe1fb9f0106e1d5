// The rehearsal kit: test a module's upgrades in an ordinary Catch2 (or any)
// test, with no sockets, no daemon and no admin socket. A RehearsalHost boots
// one release of a set of release folders (as `hotswap_add_release` makes
// them), lets the test play clients and time against it, and upgrades or
// downgrades through the releases' real appups (their real `extra`), with the
// host's own loader, registry, planner and upgrade executor.
//
//   hotswap::kit::RehearsalHost host(hotswap::kit::test_releases(), "1.0.0");
//   auto alice = host.connect();
//   CHECK(alice.ask("1 join alice") == "1 ok joined 12 40");
//   auto before = host.state();
//   REQUIRE(host.upgrade_to("2.0.0").committed());
//   CHECK(alice.ask("2 whoami") == "2 ok alice 12 40 hp 100 score 0");
//   REQUIRE(host.downgrade_to("1.0.0").committed());
//   CHECK(host.state() == before);
//
// Failures of what is rehearsed (a migration that throws, an appup with no
// matching entry, a state that does not round-trip) are results, never
// exceptions: `auto r = host.upgrade_to("2.0.0"); CHECK(r.rolled_back());`.
// Mistakes in the test itself (an unknown version, module or connection, a
// reply that is not there) throw RehearsalError with a message saying what.
//
// Time: the host's clock stands still until advance() moves it; module timers
// and the release's ticks (runtime.json tick_hz) fire inside advance(), in
// order, each at its due time. Not thread-safe: one test thread drives it.
#pragma once

#include <hotswap/module.h>

#include <boost/filesystem/path.hpp>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "net/event_trace.hpp"
#include "upgrade/upgrade_report.hpp"

namespace hotswap::kit {

// A mistake in the test (not in the code under test): what() says what.
class RehearsalError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The release folders a test built with hotswap_add_rehearsal_test was given:
// $HOTSWAP_REHEARSAL_RELEASES when set (folders separated by ':', as in PATH), else the
// folders compiled into the test (the HOTSWAP_REHEARSAL_RELEASES definition).
// Throws RehearsalError when neither is there.
inline std::vector<boost::filesystem::path> test_releases();

// Reads exported state in the C++ SDK's format (module.hpp StateWriter:
// little-endian integers, strings as a u64 length then the bytes), with the
// same calls as the SDK's StateReader, so a test decodes state the way the
// module's import_state does. Reading past the end throws RehearsalError
// naming the offset. Refers to the bytes it was given: they must outlive it.
class StateReader {
 public:
  explicit StateReader(std::string_view bytes) : bytes_(bytes) {}
  uint8_t u8() { return static_cast<uint8_t>(*take(1)); }
  uint32_t u32() { return static_cast<uint32_t>(little_endian(4)); }
  uint64_t u64() { return little_endian(8); }
  int32_t i32() { return static_cast<int32_t>(u32()); }
  int64_t i64() { return static_cast<int64_t>(u64()); }
  double f64() {
    const uint64_t bits = u64();
    double v;
    std::memcpy(&v, &bits, sizeof v);
    return v;
  }
  std::string str() { return std::string(bytes()); }
  std::string_view bytes() {
    const uint64_t n = u64();
    if (n > remaining())
      throw RehearsalError("state: a field at byte " + std::to_string(pos_ - 8) + " claims " + std::to_string(n) +
                           " bytes, " + std::to_string(remaining()) + " left");
    return std::string_view(take(size_t(n)), size_t(n));
  }
  size_t remaining() const { return bytes_.size() - pos_; }
  size_t position() const { return pos_; }
  // Throws RehearsalError when bytes are left: the layout is not what the test expected.
  void expect_end() const {
    if (pos_ != bytes_.size())
      throw RehearsalError("state: " + std::to_string(remaining()) + " unexpected bytes left at byte " +
                           std::to_string(pos_));
  }

 private:
  const char* take(size_t n) {
    if (n > remaining())
      throw RehearsalError("state: reading " + std::to_string(n) + " bytes at byte " + std::to_string(pos_) +
                           " runs past its end (" + std::to_string(bytes_.size()) + " bytes)");
    const char* p = bytes_.data() + pos_;
    pos_ += n;
    return p;
  }
  uint64_t little_endian(size_t n) {
    const char* p = take(n);
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= uint64_t(static_cast<uint8_t>(p[i])) << (8 * i);
    return v;
  }
  std::string_view bytes_;
  size_t pos_ = 0;
};

// A module's exported state: its bytes and the schema they are in.
struct State {
  std::string module;
  std::string version;  // of the code that exported it
  uint32_t schema = 0;
  std::string bytes;

  // A reader over `bytes` in the SDK's format: valid while this State lives.
  StateReader reader() const { return StateReader(bytes); }
  // Same schema and same bytes (module and version may differ: a round trip).
  bool operator==(const State& other) const { return schema == other.schema && bytes == other.bytes; }
  bool operator!=(const State& other) const { return !(*this == other); }
};
// "arena 1.0.0 schema 1, 42 bytes: 01 00 00 00 ..." (for Catch2 failure messages).
std::ostream& operator<<(std::ostream& out, const State& state);
// Where two states first differ, e.g. "schema 1 vs 1; 40 vs 42 bytes; first
// difference at byte 12 (0x00 vs 0x07)"; empty when they are equal.
std::string describe_difference(const State& expected, const State& actual);

// What one upgrade or downgrade did. Never throws.
class UpgradeResult {
 public:
  explicit UpgradeResult(host::UpgradeReport report, std::string plan_text = {})
      : report_(std::move(report)), plan_text_(std::move(plan_text)) {}
  bool committed() const { return report_.outcome == host::UpgradeReport::Outcome::Committed; }
  // A step failed while paused; the old code serves with its state.
  bool rolled_back() const { return report_.outcome == host::UpgradeReport::Outcome::RolledBack; }
  // Refused before anything paused: no plan (no matching appup entry, a
  // blue_green instruction), or the check failed (a library that does not
  // load, load_module across a schema change, no migrate_up...).
  bool refused() const { return report_.outcome == host::UpgradeReport::Outcome::Refused; }
  // Empty when committed; otherwise names the step and what went wrong.
  const std::string& error() const { return report_.error; }
  // The host's report: steps, durations, pause, leaked libraries.
  const host::UpgradeReport& report() const { return report_; }
  // The plan as `hotswap plan` prints it (empty when there was none).
  const std::string& plan() const { return plan_text_; }
  // Libraries that stayed mapped after the old code was purged.
  const std::vector<std::string>& leaked() const { return report_.leaked; }

 private:
  host::UpgradeReport report_;
  std::string plan_text_;
};
std::ostream& operator<<(std::ostream& out, const UpgradeResult& result);

// The result of round_trip(): there and back, with each module's state compared.
struct RoundTrip {
  UpgradeResult there;
  std::optional<UpgradeResult> back;   // absent when `there` did not commit
  std::vector<std::string> differences;  // "module arena: <describe_difference>", one per module that differs
  // Both legs committed and every module's state came back byte for byte.
  bool restored() const { return there.committed() && back && back->committed() && differences.empty(); }
  // Why restored() is false, in one paragraph; empty when it is true.
  std::string explain() const;
};
std::ostream& operator<<(std::ostream& out, const RoundTrip& trip);

class RehearsalHost;

// One client connection of a RehearsalHost. A cheap handle: copies refer to
// the same connection; it must not outlive its host.
class Client {
 public:
  hotswap_conn_id id() const { return id_; }
  // Delivers one message (a frame's payload, without framing) to the module.
  void send(const std::string& message) const;
  // send(), then returns the one message the module sent back to this
  // connection while handling it. Throws RehearsalError when it sent none or
  // several (pushes to other connections do not count).
  std::string ask(const std::string& message) const;
  // Everything the module sent to this connection so far, in order (pushes
  // and replies alike), including effects applied at an upgrade's commit.
  const std::vector<std::string>& received() const;
  // received(), then forgets it.
  std::vector<std::string> take_received() const;
  // The connection closes from the client's side (the module's on_disconnect runs).
  void disconnect(hotswap_disconnect_reason reason = HOTSWAP_DISCONNECT_PEER_CLOSED) const;
  // The module asked to close this connection (its reason), or nullopt.
  std::optional<std::string> closed_by_module() const;

 private:
  friend class RehearsalHost;
  Client(RehearsalHost& host, hotswap_conn_id id) : host_(&host), id_(id) {}
  RehearsalHost* host_;
  hotswap_conn_id id_;
};

// Replaying a recorded trace (host/net/event_trace.hpp, `hotswap trace`).
struct ReplayOptions {
  // Upgrade or downgrade to this release during the replay (empty: none) ...
  std::string switch_to;
  // ... just before the event of this index (0-based; events.size(): after
  // the last one) ...
  std::optional<size_t> at_event;
  // ... or just before the first event at or after this many microseconds of
  // trace time. With neither, before the first event.
  std::optional<uint64_t> at_time_us;
};

struct ReplayResult {
  // Messages the module sent to each connection, before and after the switch
  // (effects a migration held until commit count as after).
  std::map<hotswap_conn_id, std::vector<std::string>> before, after;
  std::optional<UpgradeResult> upgrade;  // when switch_to was given
  size_t switched_at_event = 0;          // the index the switch ran before
  size_t events = 0;                     // replayed
  // Recorded timer fires are not replayed (the module's own timers fire from
  // the replay clock, which follows the trace's times); counted here.
  size_t recorded_timer_fires = 0;

  // before + after, per connection.
  std::map<hotswap_conn_id, std::vector<std::string>> all() const;
};

class RehearsalHost {
 public:
  // Reads every release folder (manifest.json; its runtime.json for each
  // module's config section and tick rate) and boots release `version` as
  // the host would: each module created with its config section, in
  // dependency order. Throws RehearsalError naming the folder or version
  // when a release cannot be read, two folders hold the same version, or
  // `version` is not among them; a module that fails to load or create
  // throws too (the message is the host's).
  RehearsalHost(const std::vector<boost::filesystem::path>& release_dirs, const std::string& version);
  ~RehearsalHost();
  RehearsalHost(const RehearsalHost&) = delete;
  RehearsalHost& operator=(const RehearsalHost&) = delete;

  // --- what runs ---
  const std::string& release() const;  // the release version serving now
  std::vector<std::string> releases() const;  // every version given, oldest first
  // The version of `module`'s running code. `module` may be empty when the
  // release has exactly one module (so for every call taking a module).
  std::string version(const std::string& module = {}) const;

  // --- clients ---
  // Connects a client to `module` (empty: the only module, or the module of
  // the release's first listener), as from `listener` (empty: the module's
  // first listener in runtime.json, else "rehearsal"). Ids count from 1, as
  // the server's do; connect_as picks one (throws RehearsalError if it is in use).
  Client connect(const std::string& module = {}, const std::string& listener = {});
  Client connect_as(hotswap_conn_id id, const std::string& module = {}, const std::string& listener = {});
  // A client connected earlier (throws when unknown).
  Client client(hotswap_conn_id id);

  // --- time ---
  // Moves the clock forward, firing every timer and tick that falls due on
  // the way, in order, each at its due time.
  void advance_ms(uint64_t ms);
  // Delivers `count` ticks to `module` at once, whatever its tick rate.
  void tick(const std::string& module = {}, size_t count = 1);
  // Whether the release's tick_hz ticks fire inside advance_ms (on by default).
  void set_config_ticks(bool enabled);
  // The clock, in module time (monotonic_ms).
  uint64_t now_ms() const;
  // Timers the module has armed and not yet fired or cancelled.
  size_t armed_timers() const;

  // --- state and tasks ---
  // `module`'s state, exported by its running code.
  State state(const std::string& module = {}) const;
  // Every module's state.
  std::map<std::string, State> states() const;
  // Runs a task on the running instance (its result, JSON text). A failing
  // task throws RehearsalError with the module's message.
  std::string task(const std::string& name, const std::string& args_json = "null", const std::string& module = {});
  // Module callbacks that returned an error (on_message, on_tick...).
  uint64_t failed_events(const std::string& module = {}) const;

  // --- upgrades ---
  // Plans from the running release to `version` with the releases' appups
  // and runs the plan (check, suspend, migrate, commit or roll back, purge)
  // with the target release's config sections. Never throws for what the
  // plan or the module does; throws RehearsalError for an unknown version,
  // the running one, or (upgrade_to/downgrade_to) the wrong direction.
  UpgradeResult upgrade_to(const std::string& version);
  UpgradeResult downgrade_to(const std::string& version);
  UpgradeResult switch_to(const std::string& version);  // either direction
  // Exports every module's state, switches to `version`, switches back to
  // the release running now, and compares each module's state with the one
  // it had before. Anything that happens between the legs happens in `between`.
  RoundTrip round_trip(const std::string& version, const std::function<void()>& between = {});

  // --- traces ---
  // Replays `trace` (read_trace_file) from the current state: each event at
  // its recorded time (the clock advances to it first, firing what falls
  // due), connections by their recorded ids (a connect whose id is in use
  // throws). Ticks are replayed from the trace (the config ticks are off
  // meanwhile). Throws RehearsalError for an event naming an unknown module
  // or connection; what the module does is in the result.
  ReplayResult replay(const host::Trace& trace, const ReplayOptions& options = {});
  ReplayResult replay(const boost::filesystem::path& trace_file, const ReplayOptions& options = {});

 private:
  friend class Client;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------------------

inline std::vector<boost::filesystem::path> test_releases() {
  const char* from_env = std::getenv("HOTSWAP_REHEARSAL_RELEASES");
  std::string list = from_env != nullptr ? from_env : "";
#ifdef HOTSWAP_REHEARSAL_RELEASES
  if (list.empty()) list = HOTSWAP_REHEARSAL_RELEASES;
#endif
  if (list.empty())
    throw RehearsalError(
        "no release folders: set HOTSWAP_REHEARSAL_RELEASES (folders separated by ':'), or build the test with "
        "hotswap_add_rehearsal_test(... RELEASES ...)");
  std::vector<boost::filesystem::path> dirs;
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(':', start);
    if (end == std::string::npos) end = list.size();
    if (end > start) dirs.emplace_back(list.substr(start, end - start));
    start = end + 1;
  }
  return dirs;
}

}  // namespace hotswap::kit
