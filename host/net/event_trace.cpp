#include "net/event_trace.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>

#include <boost/filesystem/operations.hpp>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "net/network_server.hpp"

namespace hotswap::host {

namespace fs = boost::filesystem;
using nlohmann::json;

namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Room kept for the end line, so that it always fits under max_bytes.
constexpr uint64_t kEndLineReserve = 160;

// A JSON string literal for a module, listener or peer name (quoted, escaped).
std::string quoted(std::string_view text) { return json(std::string(text)).dump(); }

const struct {
  hotswap_disconnect_reason reason;
  const char* name;
} kReasons[] = {
    {HOTSWAP_DISCONNECT_PEER_CLOSED, "peer_closed"},   {HOTSWAP_DISCONNECT_CLOSED_BY_MODULE, "closed_by_module"},
    {HOTSWAP_DISCONNECT_PROTOCOL_ERROR, "protocol_error"}, {HOTSWAP_DISCONNECT_SLOW_READER, "slow_reader"},
    {HOTSWAP_DISCONNECT_IO_ERROR, "io_error"},         {HOTSWAP_DISCONNECT_SHUTDOWN, "shutdown"},
};

}  // namespace

const char* to_string(TraceEvent::Kind kind) {
  switch (kind) {
    case TraceEvent::Kind::Connect:
      return "connect";
    case TraceEvent::Kind::Message:
      return "message";
    case TraceEvent::Kind::Disconnect:
      return "disconnect";
    case TraceEvent::Kind::Tick:
      return "tick";
    case TraceEvent::Kind::Timer:
      return "timer";
  }
  return "?";
}

const char* disconnect_reason_name(hotswap_disconnect_reason reason) {
  for (const auto& r : kReasons)
    if (r.reason == reason) return r.name;
  return "io_error";
}

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t v = uint32_t(uint8_t(bytes[i])) << 16 | uint32_t(uint8_t(bytes[i + 1])) << 8 | uint8_t(bytes[i + 2]);
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  const size_t rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t v = uint32_t(uint8_t(bytes[i])) << 16;
    if (rest == 2) v |= uint32_t(uint8_t(bytes[i + 1])) << 8;
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string base64_decode(std::string_view text) {
  if (text.size() % 4 != 0)
    throw std::invalid_argument("base64 text of " + std::to_string(text.size()) + " characters (not a multiple of 4)");
  auto value = [&](char c, size_t at) -> uint32_t {
    if (c >= 'A' && c <= 'Z') return uint32_t(c - 'A');
    if (c >= 'a' && c <= 'z') return uint32_t(c - 'a' + 26);
    if (c >= '0' && c <= '9') return uint32_t(c - '0' + 52);
    if (c == '+') return 62;
    if (c == '/') return 63;
    throw std::invalid_argument("base64: unexpected character at offset " + std::to_string(at));
  };
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    const bool final_group = i + 4 == text.size();
    size_t padding = 0;
    if (final_group && text[i + 3] == '=') padding = text[i + 2] == '=' ? 2 : 1;
    uint32_t v = value(text[i], i) << 18 | value(text[i + 1], i + 1) << 12;
    if (padding < 2) v |= value(text[i + 2], i + 2) << 6;
    if (padding < 1) v |= value(text[i + 3], i + 3);
    out += char(v >> 16);
    if (padding < 2) out += char((v >> 8) & 0xff);
    if (padding < 1) out += char(v & 0xff);
  }
  return out;
}

EventTrace::EventTrace(const TimerSource& clock, uint64_t max_bytes)
    : clock_(clock), start_(clock.now()), max_bytes_(max_bytes) {
  if (max_bytes < kTraceMinMaxBytes || max_bytes > kTraceMaxMaxBytes)
    throw std::invalid_argument("trace max_bytes must be from " + std::to_string(kTraceMinMaxBytes) + " to " +
                                std::to_string(kTraceMaxMaxBytes) + ", got " + std::to_string(max_bytes));
  text_ = json{{"format", kTraceFormat}, {"version", kTraceVersion}, {"max_bytes", max_bytes}, {"clock", "module"}}
              .dump() +
          "\n";
}

void EventTrace::record(const std::string& body) {
  if (finished_) return;
  if (summary_.truncated) {
    ++summary_.dropped_events;
    return;
  }
  try {
    const auto elapsed = std::chrono::duration_cast<std::chrono::microseconds>(clock_.now() - start_).count();
    std::string line = "{\"t_us\":" + std::to_string(elapsed < 0 ? 0 : elapsed) + "," + body + "}\n";
    if (text_.size() + line.size() + kEndLineReserve > max_bytes_) {
      summary_.truncated = true;
      ++summary_.dropped_events;
      return;
    }
    text_ += line;
    ++summary_.events;
  } catch (const std::bad_alloc&) {
    summary_.truncated = true;
    ++summary_.dropped_events;
  }
}

void EventTrace::connect(std::string_view module, hotswap_conn_id conn, std::string_view listener,
                         std::string_view peer) {
  // Runs on the data path: building the line may throw (bad_alloc); a failure ends the recording.
  try {
    if (finished_ || summary_.truncated) return record({});
    record("\"ev\":\"connect\",\"module\":" + quoted(module) + ",\"conn\":" + std::to_string(conn) +
           ",\"listener\":" + quoted(listener) + ",\"peer\":" + quoted(peer));
  } catch (...) {
    summary_.truncated = true;
  }
}

void EventTrace::message(std::string_view module, hotswap_conn_id conn, std::string_view data) {
  // Runs on the data path: building the line may throw (bad_alloc); a failure ends the recording.
  try {
    if (finished_ || summary_.truncated) return record({});
    // Encoding a frame larger than the room left would only be thrown away.
    if (text_.size() + data.size() / 3 * 4 + kEndLineReserve > max_bytes_) {
      summary_.truncated = true;
      return record({});
    }
    record("\"ev\":\"message\",\"module\":" + quoted(module) + ",\"conn\":" + std::to_string(conn) + ",\"data\":\"" +
           base64_encode(data) + "\"");
  } catch (...) {
    summary_.truncated = true;
  }
}

void EventTrace::disconnect(std::string_view module, hotswap_conn_id conn, hotswap_disconnect_reason reason) {
  // Runs on the data path: building the line may throw (bad_alloc); a failure ends the recording.
  try {
    if (finished_ || summary_.truncated) return record({});
    record("\"ev\":\"disconnect\",\"module\":" + quoted(module) + ",\"conn\":" + std::to_string(conn) +
           ",\"reason\":\"" + disconnect_reason_name(reason) + "\"");
  } catch (...) {
    summary_.truncated = true;
  }
}

void EventTrace::tick(std::string_view module) {
  // Runs on the data path: building the line may throw (bad_alloc); a failure ends the recording.
  try {
    if (finished_ || summary_.truncated) return record({});
    record("\"ev\":\"tick\",\"module\":" + quoted(module));
  } catch (...) {
    summary_.truncated = true;
  }
}

void EventTrace::timer(std::string_view module, hotswap_timer_id id, uint64_t tag, bool last) {
  // Runs on the data path: building the line may throw (bad_alloc); a failure ends the recording.
  try {
    if (finished_ || summary_.truncated) return record({});
    record("\"ev\":\"timer\",\"module\":" + quoted(module) + ",\"timer\":" + std::to_string(id) +
           ",\"tag\":" + std::to_string(tag) + ",\"last\":" + (last ? "true" : "false"));
  } catch (...) {
    summary_.truncated = true;
  }
}

std::string EventTrace::finish() {
  if (finished_) return {};
  finished_ = true;
  text_ += json{{"ev", "end"},
                {"events", summary_.events},
                {"truncated", summary_.truncated},
                {"dropped_events", summary_.dropped_events}}
               .dump() +
           "\n";
  summary_.bytes = text_.size();
  return std::move(text_);
}

namespace {

class LineParser {
 public:
  LineParser(const std::string& source, size_t line) : where_(source + ":" + std::to_string(line) + ": ") {}

  [[noreturn]] void fail(const std::string& problem) const { throw TraceFormatError(where_ + problem); }

  const json& field(const json& object, const char* key) const {
    auto it = object.find(key);
    if (it == object.end()) fail(std::string("missing \"") + key + "\"");
    return *it;
  }
  uint64_t number(const json& object, const char* key) const {
    const json& v = field(object, key);
    if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0))
      fail(std::string("\"") + key + "\" must be a non-negative integer, got " + v.dump());
    return v.get<uint64_t>();
  }
  std::string text(const json& object, const char* key) const {
    const json& v = field(object, key);
    if (!v.is_string()) fail(std::string("\"") + key + "\" must be a string, got " + v.dump());
    return v.get<std::string>();
  }
  bool boolean(const json& object, const char* key) const {
    const json& v = field(object, key);
    if (!v.is_boolean()) fail(std::string("\"") + key + "\" must be true or false, got " + v.dump());
    return v.get<bool>();
  }

 private:
  std::string where_;
};

}  // namespace

Trace parse_trace(std::string_view text, const std::string& source) {
  Trace trace;
  trace.source = source;
  size_t line_number = 0;
  bool header_seen = false;  // the header is the first line that is not empty
  size_t pos = 0;
  uint64_t last_time = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_number;
    LineParser p(source, line_number);
    if (line.empty()) continue;
    json object = json::parse(line.begin(), line.end(), nullptr, false);
    if (object.is_discarded() || !object.is_object()) p.fail("not a JSON object");
    if (!header_seen) {
      header_seen = true;
      if (object.value("format", json()) != kTraceFormat)
        p.fail(std::string("not a hotswap trace (the header's \"format\" must be \"") + kTraceFormat + "\")");
      const uint64_t version = p.number(object, "version");
      if (version != uint64_t(kTraceVersion))
        p.fail("trace format version " + std::to_string(version) + " is not supported (this build reads version " +
               std::to_string(kTraceVersion) + ")");
      if (object.contains("max_bytes")) trace.max_bytes = p.number(object, "max_bytes");
      continue;
    }
    if (trace.has_end) p.fail("an event after the end line");
    const std::string ev = p.text(object, "ev");
    if (ev == "end") {
      trace.has_end = true;
      trace.summary.events = p.number(object, "events");
      trace.summary.truncated = p.boolean(object, "truncated");
      trace.summary.dropped_events = p.number(object, "dropped_events");
      trace.summary.bytes = text.size();
      continue;
    }
    TraceEvent e;
    e.t_us = p.number(object, "t_us");
    if (e.t_us > (uint64_t(1) << 53)) p.fail("t_us " + std::to_string(e.t_us) + " is out of range");
    if (e.t_us < last_time)
      p.fail("time goes backwards (" + std::to_string(e.t_us) + " us after " + std::to_string(last_time) + " us)");
    last_time = e.t_us;
    e.module = p.text(object, "module");
    if (ev == "connect") {
      e.kind = TraceEvent::Kind::Connect;
      e.conn = p.number(object, "conn");
      e.listener = p.text(object, "listener");
      e.peer = object.contains("peer") ? p.text(object, "peer") : "";
    } else if (ev == "message") {
      e.kind = TraceEvent::Kind::Message;
      e.conn = p.number(object, "conn");
      try {
        e.data = base64_decode(p.text(object, "data"));
      } catch (const std::invalid_argument& bad) {
        p.fail(std::string("\"data\": ") + bad.what());
      }
    } else if (ev == "disconnect") {
      e.kind = TraceEvent::Kind::Disconnect;
      e.conn = p.number(object, "conn");
      const std::string reason = p.text(object, "reason");
      bool known = false;
      for (const auto& r : kReasons)
        if (reason == r.name) {
          e.reason = r.reason;
          known = true;
        }
      if (!known) p.fail("unknown disconnect reason \"" + reason + "\"");
    } else if (ev == "tick") {
      e.kind = TraceEvent::Kind::Tick;
    } else if (ev == "timer") {
      e.kind = TraceEvent::Kind::Timer;
      e.timer = p.number(object, "timer");
      e.tag = p.number(object, "tag");
      e.last = p.boolean(object, "last");
    } else {
      p.fail("unknown event \"" + ev + "\" (connect, message, disconnect, tick, timer, end)");
    }
    trace.events.push_back(std::move(e));
  }
  if (!header_seen) throw TraceFormatError(source + ": empty file (not a hotswap trace)");
  return trace;
}

Trace read_trace_file(const fs::path& file) {
  boost::system::error_code ec;
  const uint64_t size = fs::file_size(file, ec);
  if (ec) throw TraceFormatError(file.string() + ": cannot read: " + ec.message());
  if (size > kTraceMaxMaxBytes)
    throw TraceFormatError(file.string() + ": " + std::to_string(size) + " bytes, larger than any trace (" +
                           std::to_string(kTraceMaxMaxBytes) + ")");
  std::ifstream in(file.string(), std::ios::binary);
  if (!in) throw TraceFormatError(file.string() + ": cannot read: " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  return parse_trace(text.str(), file.string());
}

os::Fd create_trace_file(const fs::path& file) {
  os::OsSysCalls& sys = os::real_os_sys_calls();
  // O_EXCL: a trace never overwrites a file (nor follows a symlink planted in its place).
  const os::SysCallIntResult opened = sys.open(file.string(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (!opened.ok() && opened.error == EEXIST)
    throw std::runtime_error("trace file " + file.string() + " already exists (a trace never overwrites a file)");
  if (!opened.ok())
    throw std::runtime_error("cannot create trace file " + file.string() + ": " + os::errno_text(opened.error));
  return os::Fd(opened, sys);
}

void write_trace_file(os::Fd fd, const fs::path& file, const std::string& text) {
  os::OsSysCalls& sys = os::real_os_sys_calls();
  auto failed = [&](const char* what, int error) {
    return std::runtime_error("cannot write trace file " + file.string() + ": " + what + ": " + os::errno_text(error));
  };
  size_t done = 0;
  while (done < text.size()) {
    const os::SysCallSizeResult wrote = sys.write(fd.get(), text.data() + done, text.size() - done);
    if (!wrote.ok() && wrote.error == EINTR) continue;
    if (!wrote.ok()) throw failed("write", wrote.error);
    done += size_t(wrote.value);
  }
  if (const os::SysCallIntResult synced = sys.fsync(fd.get()); !synced.ok()) throw failed("fsync", synced.error);
  if (const os::SysCallIntResult closed = fd.close(); !closed.ok()) throw failed("close", closed.error);
}

}  // namespace hotswap::host

// ---------------------------------------------------------------------------
// TraceRecorder

namespace hotswap::host {

struct TraceRecorder::Recording {
  fs::path file;
  uint64_t max_bytes = 0;
  os::Fd fd;
  std::unique_ptr<EventTrace> trace;
};

TraceRecorder::TraceRecorder(NetworkServer& server, RunOnWorker run_on_worker)
    : server_(server), run_on_worker_(std::move(run_on_worker)) {}

TraceRecorder::~TraceRecorder() {
  if (phase_ != Phase::Recording) return;
  server_.set_event_trace(nullptr);
  try {
    const std::string text = recording_->trace->finish();
    write_trace_file(std::move(recording_->fd), recording_->file, text);
    spdlog::info("trace to {} written as the host stopped ({} bytes)", recording_->file.string(), text.size());
  } catch (const std::exception& e) {
    spdlog::error("the trace still recording when the host stopped was lost: {}", e.what());
  }
}

void TraceRecorder::start(const fs::path& file, uint64_t max_bytes, Done done) {
  if (phase_ != Phase::Idle)
    return done(nullptr, "a trace is already " + std::string(phase_ == Phase::Writing ? "being written" : "recording") +
                             " to " + recording_->file.string() + " (hotswap trace stop ends it)");
  if (!file.is_absolute()) return done(nullptr, "the trace file must be an absolute path, got '" + file.string() + "'");
  if (max_bytes < kTraceMinMaxBytes || max_bytes > kTraceMaxMaxBytes)
    return done(nullptr, "max_bytes must be from " + std::to_string(kTraceMinMaxBytes) + " to " +
                             std::to_string(kTraceMaxMaxBytes) + ", got " + std::to_string(max_bytes));
  auto recording = std::make_shared<Recording>();
  recording->file = file;
  recording->max_bytes = max_bytes;
  auto error = std::make_shared<std::string>();
  phase_ = Phase::Opening;
  recording_ = recording;
  bool posted = run_on_worker_(
      [recording, error] {
        try {
          recording->fd = create_trace_file(recording->file);
        } catch (const std::exception& e) {
          *error = e.what();
        }
      },
      [this, alive = std::weak_ptr<bool>(alive_), recording, error, done] {
        if (alive.expired()) return;
        if (!error->empty()) {
          phase_ = Phase::Idle;
          recording_.reset();
          return done(nullptr, *error);
        }
        recording->trace = std::make_unique<EventTrace>(server_.timer_source(), recording->max_bytes);
        server_.set_event_trace(recording->trace.get());
        phase_ = Phase::Recording;
        spdlog::info("trace recording to {} (at most {} bytes)", recording->file.string(), recording->max_bytes);
        done({{"file", recording->file.string()}, {"max_bytes", recording->max_bytes}}, {});
      });
  if (!posted) {
    phase_ = Phase::Idle;
    recording_.reset();
    done(nullptr, "the host is stopping");
  }
}

void TraceRecorder::stop(Done done) {
  if (phase_ != Phase::Recording)
    return done(nullptr, phase_ == Phase::Idle ? "no trace is recording (hotswap trace start FILE begins one)"
                                               : "the trace is still " +
                                                     std::string(phase_ == Phase::Opening ? "starting" : "being written"));
  server_.set_event_trace(nullptr);
  std::shared_ptr<Recording> recording = recording_;
  const TraceSummary summary = recording->trace->summary();
  auto text = std::make_shared<std::string>(recording->trace->finish());
  recording->trace.reset();
  const uint64_t bytes = text->size();
  phase_ = Phase::Writing;
  auto error = std::make_shared<std::string>();
  nlohmann::json result = {{"file", recording->file.string()},
                           {"events", summary.events},
                           {"bytes", bytes},
                           {"truncated", summary.truncated},
                           {"dropped_events", summary.dropped_events}};
  bool posted = run_on_worker_(
      [recording, text, error] {
        try {
          write_trace_file(std::move(recording->fd), recording->file, *text);
        } catch (const std::exception& e) {
          *error = e.what();
        }
        text->clear();
        text->shrink_to_fit();
      },
      [this, alive = std::weak_ptr<bool>(alive_), error, result, done] {
        if (alive.expired()) return;
        phase_ = Phase::Idle;
        recording_.reset();
        if (!error->empty()) return done(nullptr, *error);
        spdlog::info("trace written to {}: {} event(s), {} bytes{}", result["file"].get<std::string>(),
                     result["events"].get<uint64_t>(), result["bytes"].get<uint64_t>(),
                     result["truncated"].get<bool>() ? ", truncated at its size cap" : "");
        done(result, {});
      });
  if (!posted) {
    // The worker takes nothing more: write here rather than lose the recording.
    try {
      write_trace_file(std::move(recording->fd), recording->file, *text);
    } catch (const std::exception& e) {
      *error = e.what();
    }
    phase_ = Phase::Idle;
    recording_.reset();
    if (!error->empty()) return done(nullptr, *error);
    done(result, {});
  }
}

nlohmann::json TraceRecorder::status() const {
  if (phase_ == Phase::Idle) return {{"recording", false}};
  nlohmann::json s = {{"recording", phase_ == Phase::Recording}, {"file", recording_->file.string()}};
  if (recording_->trace) {
    const TraceSummary summary = recording_->trace->summary();
    s["events"] = summary.events;
    s["truncated"] = summary.truncated;
  }
  return s;
}

}  // namespace hotswap::host
