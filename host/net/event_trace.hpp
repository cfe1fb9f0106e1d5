// Trace recording: a bounded window of the events the host hands to modules
// (connect, message bytes, disconnect, tick, timer fire), written to a file
// that the rehearsal kit replays (kit/include/hotswap/rehearsal.hpp).
// `hotswap trace start FILE [--max-bytes N]` / `hotswap trace stop`; off by default.
//
// File format, version 1: newline-delimited JSON (one object per line, UTF-8).
//   line 1, the header:
//     {"format":"hotswap-trace","version":1,"max_bytes":N,"clock":"module"}
//   then one line per event, in the order the network layer handed them on:
//     {"t_us":T,"ev":"connect","module":M,"conn":C,"listener":L,"peer":P}
//     {"t_us":T,"ev":"message","module":M,"conn":C,"data":BASE64}
//     {"t_us":T,"ev":"disconnect","module":M,"conn":C,"reason":R}
//     {"t_us":T,"ev":"tick","module":M}
//     {"t_us":T,"ev":"timer","module":M,"timer":ID,"tag":TAG,"last":true|false}
//   and a last line, written when recording stops:
//     {"ev":"end","events":N,"truncated":true|false,"dropped_events":D}
// T is microseconds of the host's module clock (the one behind timers, ticks
// and monotonic_ms) since recording started. C is the host's connection id,
// BASE64 the frame's payload (RFC 4648, with padding; framing removed). R is
// one of peer_closed, closed_by_module, protocol_error, slow_reader,
// io_error, shutdown. A reader must ignore keys it does not know; a change
// that an old reader would misread raises "version".
//
// Bounds: the whole file, header and end line included, stays within
// max_bytes (default 64 MiB, 4 KiB .. 1 GiB). The first event that would
// pass it stops recording: that event and every later one are counted in
// "dropped_events", and "truncated" is true.
//
// Where the bytes go: the recorder buffers the encoded lines in memory, up to
// max_bytes, on the event-loop thread (one append per event, no I/O); the file
// is created when recording starts and written in one piece when it stops,
// both on the host's worker thread, so the loop never waits on the disk.
#pragma once

#include <hotswap/module.h>

#include <boost/filesystem/path.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "net/timer_source.hpp"
#include "os/fd.hpp"

namespace hotswap::host {

constexpr const char* kTraceFormat = "hotswap-trace";
constexpr int kTraceVersion = 1;
constexpr uint64_t kTraceDefaultMaxBytes = uint64_t(64) << 20;
constexpr uint64_t kTraceMinMaxBytes = 4096;
constexpr uint64_t kTraceMaxMaxBytes = uint64_t(1) << 30;

struct TraceEvent {
  enum class Kind { Connect, Message, Disconnect, Tick, Timer };
  Kind kind = Kind::Message;
  uint64_t t_us = 0;
  std::string module;
  hotswap_conn_id conn = 0;                                           // connect, message, disconnect
  std::string listener, peer;                                         // connect
  std::string data;                                                   // message: the frame's payload
  hotswap_disconnect_reason reason = HOTSWAP_DISCONNECT_PEER_CLOSED;  // disconnect
  hotswap_timer_id timer = 0;                                         // timer
  uint64_t tag = 0;                                                   // timer
  bool last = false;                                                  // timer: a one-shot, or the final firing
};

const char* to_string(TraceEvent::Kind kind);
const char* disconnect_reason_name(hotswap_disconnect_reason reason);

// What a finished recording holds.
struct TraceSummary {
  uint64_t events = 0;          // recorded
  uint64_t dropped_events = 0;  // not recorded: past max_bytes
  uint64_t bytes = 0;           // of the whole file
  bool truncated = false;
};

// A parsed trace file. Throws TraceFormatError.
struct Trace {
  std::string source;  // the file, for messages
  uint64_t max_bytes = 0;
  std::vector<TraceEvent> events;
  bool has_end = false;  // the end line was present
  TraceSummary summary;  // from the end line (zeros without one)
};

// A trace file that cannot be read; what() reads "<file>:<line>: <problem>".
class TraceFormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Records events in memory, bounded by max_bytes. Event-loop thread only.
// The recording calls never throw (they run on the data path): an allocation
// failure stops recording as if the cap were reached.
class EventTrace {
 public:
  // Starts recording now (`clock` gives the module time; it must outlive this).
  // Throws std::invalid_argument when max_bytes is outside 4 KiB .. 1 GiB.
  EventTrace(const TimerSource& clock, uint64_t max_bytes = kTraceDefaultMaxBytes);

  void connect(std::string_view module, hotswap_conn_id conn, std::string_view listener, std::string_view peer);
  void message(std::string_view module, hotswap_conn_id conn, std::string_view data);
  void disconnect(std::string_view module, hotswap_conn_id conn, hotswap_disconnect_reason reason);
  void tick(std::string_view module);
  void timer(std::string_view module, hotswap_timer_id id, uint64_t tag, bool last);

  uint64_t max_bytes() const { return max_bytes_; }
  // So far (the end line not counted in bytes yet).
  TraceSummary summary() const { return summary_; }

  // Appends the end line and hands over the whole file's text; the recorder
  // is empty afterwards and records nothing more.
  std::string finish();

 private:
  // Adds one event line (without its time, which this adds first).
  void record(const std::string& body_after_time);

  const TimerSource& clock_;
  TimerSource::Duration start_;
  uint64_t max_bytes_;
  std::string text_;
  TraceSummary summary_;
  bool finished_ = false;
};

// RFC 4648 base64 with padding.
std::string base64_encode(std::string_view bytes);
// Throws std::invalid_argument for a character outside the alphabet or a bad length.
std::string base64_decode(std::string_view text);

// Parses a trace file's text; `source` names it in errors. Checks the header
// (format and version), every event's fields and types, and that times never
// go backwards. Throws TraceFormatError("<source>:<line>: ...").
Trace parse_trace(std::string_view text, const std::string& source);
// Reads and parses a trace file (at most kTraceMaxMaxBytes). Throws TraceFormatError.
Trace read_trace_file(const boost::filesystem::path& file);

// Creates `file` for a trace, mode 0600 (it holds client traffic),
// close-on-exec, so that a path that cannot be written fails when recording
// starts, not when it stops. An existing file is never overwritten. Throws
// std::runtime_error naming the file.
os::Fd create_trace_file(const boost::filesystem::path& file);
// Writes `text` to `fd`, fsyncs and closes it. Throws std::runtime_error naming `file`.
void write_trace_file(os::Fd fd, const boost::filesystem::path& file, const std::string& text);

class NetworkServer;

// `hotswap trace start|stop`: one recording at a time, from a NetworkServer
// to a file. Event-loop thread only. The file is created (start) and written
// (stop) by `run_on_worker` (the host's worker thread, UpgradeCoordinator::
// run_on_worker); the events are buffered in memory meanwhile (EventTrace).
class TraceRecorder {
 public:
  // Runs `work` on the worker, then `then` on the loop; false (and neither
  // runs) when the host is stopping.
  using RunOnWorker = std::function<bool(std::function<void()> work, std::function<void()> then)>;
  // `error` is empty on success; `result` describes the recording.
  using Done = std::function<void(const nlohmann::json& result, const std::string& error)>;

  // `server` must outlive the recorder.
  TraceRecorder(NetworkServer& server, RunOnWorker run_on_worker);
  // A recording still running is written here, on the calling thread (the
  // host is exiting and its loop no longer runs), and the server unhooked.
  ~TraceRecorder();
  TraceRecorder(const TraceRecorder&) = delete;
  TraceRecorder& operator=(const TraceRecorder&) = delete;

  // Creates `file` (absolute) on the worker, then records from the moment the
  // loop hears back. `done` gets {"file","max_bytes"}, or an error: a
  // recording already running or starting, a bad max_bytes, a file that
  // cannot be created, or the host stopping.
  void start(const boost::filesystem::path& file, uint64_t max_bytes, Done done);
  // Stops recording at once and writes the file on the worker. `done` gets
  // {"file","events","bytes","truncated","dropped_events"}, or an error (no
  // recording running, the write failed: the message names the file).
  void stop(Done done);
  // {"recording": bool, "file", "events", "truncated"}: for status.
  nlohmann::json status() const;

 private:
  enum class Phase { Idle, Opening, Recording, Writing };
  struct Recording;

  NetworkServer& server_;
  RunOnWorker run_on_worker_;
  Phase phase_ = Phase::Idle;
  std::shared_ptr<Recording> recording_;
  // Expires with the recorder: a worker hop that comes back later finds it gone.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace hotswap::host
