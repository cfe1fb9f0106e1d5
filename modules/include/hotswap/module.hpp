// hotswap C++ module layer: a module is a small class plus one macro.
//
//   class Counter : public hotswap::Module<Counter> {
//    public:
//     static constexpr uint32_t kStateSchema = 1;
//     using Module::Module;
//     void on_message(hotswap::ConnId conn, std::string_view msg) { ... host().send(conn, "ok"); }
//     void export_state(hotswap::StateWriter& out) const { out.u64(count_); }
//     void import_state(hotswap::StateReader& in) { count_ = in.u64(); }
//    private:
//     uint64_t count_ = 0;
//   };
//   HOTSWAP_MODULE(Counter)
//
// The module's name and version come from the compile definitions that
// hotswap_add_module() sets (HOTSWAP_MODULE_NAME, HOTSWAP_MODULE_VERSION), so the
// file, the manifest and the code cannot disagree.
//
// Handlers are found at compile time (CRTP), not through virtual calls: a
// derived class defines the ones it needs and the base supplies defaults. Every
// exception is caught at the ABI edge and becomes an error code plus message.
//
// State that stays in place (module.h, "The adoption rule"). A module that
// keeps all its state in one type and names it as the second argument opts
// into adoption: a code-only swap then hands the state object over as is,
// whatever its size.
//
//   struct ArenaState { std::map<hotswap::ConnId, Player> players; };
//   class Arena : public hotswap::Module<Arena, ArenaState> {
//    public:
//     static constexpr uint32_t kStateSchema = 1;
//     static constexpr uint32_t kStateLayout = 1;  // optional (0); bump when fields move but the size stays
//     using Module::Module;
//     void on_message(...) { state().players[conn] = ...; }
//     void export_state(hotswap::StateWriter& out) const { ... state() ... }  // still needed:
//     void import_state(hotswap::StateReader& in) { ... state() ... }         // schema changes, fallbacks
//   };
//
// The module object owns the state through a pointer; adoption moves that
// pointer, so the state keeps its address and nothing in it is copied.
// Everything that is not state (config, host handle, caches rebuilt from
// config) stays a member of the module class and is made fresh by each
// version. The state type must follow the adoption rule: no vtables, function
// pointers, string literals, std::function, type-erased deleters or typeid;
// heap memory only. Debug builds check the state's own bytes (sizeof(State))
// for addresses inside the old library when adopting and refuse the swap,
// naming the byte offset (HOTSWAP_CHECK_ADOPTED_STATE: 1 on, 0 off; default on
// unless NDEBUG). The check cannot see into heap blocks the state points to.
#ifndef HOTSWAP_MODULE_HPP
#define HOTSWAP_MODULE_HPP

#include <hotswap/module.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <memory>
#include <string_view>
#include <type_traits>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

// Parsed JSON (config(), MigrationFrom::extra(), parse_json) needs
// nlohmann_json, header-only, on the include path: the SDK's CMake target
// brings it. Without it, those accessors are left out and the raw text
// accessors remain. Force with -DHOTSWAP_SDK_JSON=0 or 1.
#ifndef HOTSWAP_SDK_JSON
#if defined(__has_include)
#if __has_include(<nlohmann/json.hpp>)
#define HOTSWAP_SDK_JSON 1
#endif
#endif
#endif
#ifndef HOTSWAP_SDK_JSON
#define HOTSWAP_SDK_JSON 0
#endif
#if HOTSWAP_SDK_JSON
#include <nlohmann/json.hpp>
#endif

#ifndef HOTSWAP_CHECK_ADOPTED_STATE
#ifdef NDEBUG
#define HOTSWAP_CHECK_ADOPTED_STATE 0
#else
#define HOTSWAP_CHECK_ADOPTED_STATE 1
#endif
#endif

namespace hotswap {

using ConnId = hotswap_conn_id;
using TimerId = hotswap_timer_id;
using DisconnectReason = hotswap_disconnect_reason;

// Thrown by a module's run_task for a task name it does not know.
class UnsupportedTask : public std::runtime_error {
 public:
  explicit UnsupportedTask(std::string_view name) : std::runtime_error("unknown task '" + std::string(name) + "'") {}
};

// Thrown by StateReader on truncated or malformed state.
class StateError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

#if HOTSWAP_SDK_JSON
// Thrown by parse_json (and the parsed accessors built on it) for text that is
// not JSON. Like every exception in a callback, it becomes the callback's
// error message at the ABI edge: the migration rolls back, create fails.
class JsonError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Parses `text` (what the host passed as JSON: a config section, an appup's
// `extra`, task arguments). `what` names it in the error message.
inline nlohmann::json parse_json(std::string_view text, std::string_view what) {
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    throw JsonError(std::string(what) + " is not valid JSON: " + e.what());
  }
}
#endif

// What Host::broadcast did: connections that got the message, and those that
// could not take it (over their output limit, closing, or the message does not
// fit their framing).
struct BroadcastResult {
  size_t sent = 0;
  size_t skipped = 0;
};

// A connection the module serves, as Host::connections lists it.
struct Connection {
  hotswap_conn_id id = 0;
  std::string listener;  // the listener's name in the runtime config
};

// The host, as seen by one instance. Cheap to copy.
//
// Each call first checks that the host's table has the function
// (HOTSWAP_HOST_HAS), so a module built against a newer module.h runs on an
// older host: a missing function is a no-op that reports failure (send, close
// and cancel_timer return false, start_timer throws), log does nothing and
// monotonic_ms falls back to the process's own monotonic clock.
class Host {
 public:
  Host(const hotswap_host_api* api, hotswap_host_ctx* ctx) : api_(api), ctx_(ctx) {}

  void log(hotswap_log_level level, const std::string& message) const {
    if (HOTSWAP_HOST_HAS(api_, log)) api_->log(ctx_, level, message.c_str());
  }
  void info(const std::string& message) const { log(HOTSWAP_LOG_INFO, message); }
  void warn(const std::string& message) const { log(HOTSWAP_LOG_WARN, message); }

  // Returns false when the connection is gone or over its output limit.
  bool send(ConnId conn, std::string_view message) const {
    return HOTSWAP_HOST_HAS(api_, send) && api_->send(ctx_, conn, message.data(), message.size()) == HOTSWAP_OK;
  }
  void broadcast(const std::vector<ConnId>& conns, std::string_view message) const {
    if (HOTSWAP_HOST_HAS(api_, broadcast))
      api_->broadcast(ctx_, conns.data(), conns.size(), message.data(), message.size());
  }
  // Sends `message` to every connection this module serves, each under its
  // own output limit (a connection that cannot take it is skipped and
  // counted). Throws std::runtime_error when the host is older than this
  // header and cannot broadcast.
  BroadcastResult broadcast(std::string_view message) const { return broadcast_on(nullptr, message); }
  // The same, for the connections of one listener of this module (its name in
  // the runtime config). Throws std::runtime_error for a listener that is not
  // this module's.
  BroadcastResult broadcast(std::string_view listener, std::string_view message) const {
    const std::string name(listener);
    return broadcast_on(name.c_str(), message);
  }
  // The connections this module serves now, in ascending id order; those of
  // one listener in the second form. Throws std::runtime_error when the host
  // cannot list them or the listener is not this module's.
  std::vector<Connection> connections() const { return list_on(nullptr); }
  std::vector<Connection> connections(std::string_view listener) const {
    const std::string name(listener);
    return list_on(name.c_str());
  }

  bool close(ConnId conn, const std::string& reason) const {
    return HOTSWAP_HOST_HAS(api_, close) && api_->close(ctx_, conn, reason.c_str()) == HOTSWAP_OK;
  }
  // Throws std::runtime_error when the host refuses the timer or has no timers.
  TimerId start_timer(uint64_t delay_ms, uint64_t repeat_ms, uint64_t tag) const {
    if (!HOTSWAP_HOST_HAS(api_, timer_start)) throw std::runtime_error("host has no timer_start");
    TimerId id = 0;
    if (api_->timer_start(ctx_, delay_ms, repeat_ms, tag, &id) != HOTSWAP_OK)
      throw std::runtime_error("host refused timer");
    return id;
  }
  bool cancel_timer(TimerId id) const {
    return HOTSWAP_HOST_HAS(api_, timer_cancel) && api_->timer_cancel(ctx_, id) == HOTSWAP_OK;
  }
  uint64_t monotonic_ms() const {
    if (HOTSWAP_HOST_HAS(api_, monotonic_ms)) return api_->monotonic_ms(ctx_);
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
  }

  // The C table and context, for calls the class does not wrap (check with HOTSWAP_HOST_HAS first).
  const hotswap_host_api* api() const { return api_; }
  hotswap_host_ctx* ctx() const { return ctx_; }

 private:
  static std::string listener_text(const char* listener) {
    return listener == nullptr ? std::string("this module") : "listener '" + std::string(listener) + "'";
  }
  BroadcastResult broadcast_on(const char* listener, std::string_view message) const {
    if (!HOTSWAP_HOST_HAS(api_, broadcast_all))
      throw std::runtime_error("this host cannot broadcast (it has no broadcast_all: older than the module's SDK)");
    BroadcastResult result;
    const hotswap_status status =
        api_->broadcast_all(ctx_, listener, message.data(), message.size(), &result.sent, &result.skipped);
    if (status == HOTSWAP_NOT_FOUND && listener != nullptr)
      throw std::runtime_error("broadcast: " + listener_text(listener) + " is not a listener of this module");
    if (status != HOTSWAP_OK && status != HOTSWAP_NOT_FOUND)
      throw std::runtime_error("broadcast to " + listener_text(listener) + " failed with status " +
                               std::to_string(static_cast<int>(status)));
    return result;
  }
  std::vector<Connection> list_on(const char* listener) const {
    if (!HOTSWAP_HOST_HAS(api_, list_connections))
      throw std::runtime_error(
          "this host cannot list connections (it has no list_connections: older than the module's SDK)");
    // A first try on the stack; the host says how many there are when they do not fit.
    hotswap_conn_entry local[64];
    std::vector<hotswap_conn_entry> heap;
    hotswap_conn_entry* entries = local;
    size_t capacity = sizeof local / sizeof local[0];
    size_t count = 0;
    for (int attempt = 0;; ++attempt) {
      const hotswap_status status =
          api_->list_connections(ctx_, listener, entries, capacity, sizeof(hotswap_conn_entry), &count);
      if (status == HOTSWAP_OK) break;
      if (status == HOTSWAP_NOT_FOUND)
        throw std::runtime_error("connections: " + listener_text(listener) + " is not a listener of this module");
      if (status != HOTSWAP_LIMIT || attempt == 2)
        throw std::runtime_error("listing the connections of " + listener_text(listener) + " failed with status " +
                                 std::to_string(static_cast<int>(status)));
      heap.resize(count);
      entries = heap.data();
      capacity = heap.size();
    }
    std::vector<Connection> out;
    out.reserve(count);
    for (size_t i = 0; i < count; ++i)
      out.push_back(Connection{entries[i].id, entries[i].listener != nullptr ? entries[i].listener : ""});
    return out;
  }

  const hotswap_host_api* api_;
  hotswap_host_ctx* ctx_;
};

// A byte array for bulk state (megabytes and more) that is moved through
// StateWriter/StateReader with one copy each way. Large arrays ask the kernel
// for transparent huge pages (where it allows them), so filling a fresh array
// inside a migration faults a few 2 MiB pages instead of thousands of 4 KiB
// ones. Heap memory only (aligned_alloc): it may live in adopted state.
class BulkBytes {
 public:
  BulkBytes() = default;
  explicit BulkBytes(size_t size) { resize_uninitialized(size); }
  BulkBytes(const BulkBytes& other) : BulkBytes() { assign(other.data(), other.size()); }
  BulkBytes& operator=(const BulkBytes& other) {
    if (this != &other) assign(other.data(), other.size());
    return *this;
  }
  BulkBytes(BulkBytes&& other) noexcept : data_(other.data_), size_(other.size_) {
    other.data_ = nullptr;
    other.size_ = 0;
  }
  BulkBytes& operator=(BulkBytes&& other) noexcept {
    if (this != &other) {
      std::free(data_);
      data_ = other.data_;
      size_ = other.size_;
      other.data_ = nullptr;
      other.size_ = 0;
    }
    return *this;
  }
  ~BulkBytes() { std::free(data_); }

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  std::string_view view() const { return {reinterpret_cast<const char*>(data_), size_}; }

  // New contents, copied once. Throws std::bad_alloc.
  void assign(const void* bytes, size_t size) {
    resize_uninitialized(size);
    if (size != 0) std::memcpy(data_, bytes, size);
  }
  // Contents are unspecified afterwards (the caller fills them).
  void resize_uninitialized(size_t size) {
    if (size == size_) return;
    std::free(data_);
    data_ = nullptr;
    size_ = 0;
    if (size == 0) return;
    const bool huge = size >= kHugeThreshold;
    const size_t align = huge ? kHugePage : alignof(std::max_align_t);
    const size_t rounded = (size + align - 1) / align * align;  // aligned_alloc needs a multiple
    data_ = static_cast<uint8_t*>(std::aligned_alloc(align, rounded));
    if (data_ == nullptr) throw std::bad_alloc();
    size_ = size;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (huge) (void)::madvise(data_, rounded, MADV_HUGEPAGE);  // a hint: refused is fine
#endif
  }

 private:
  static constexpr size_t kHugePage = size_t(2) << 20;
  static constexpr size_t kHugeThreshold = size_t(4) << 20;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Little-endian, length-prefixed encoding for exported state. Small writes are
// collected in a local chunk; large byte runs go straight to the host buffer,
// so a big blob is copied once. The SDK flushes after export_state/migrate_down.
class StateWriter {
 public:
  // Throws StateError when the host's table lacks buffer_append (checked once, here).
  StateWriter(const hotswap_host_api* api, hotswap_buffer* out) : api_(api), out_(out) {
    if (!HOTSWAP_HOST_HAS(api_, buffer_append)) throw StateError("host has no buffer_append");
  }
  StateWriter(const StateWriter&) = delete;
  StateWriter& operator=(const StateWriter&) = delete;

  void u8(uint8_t v) { raw(&v, 1); }
  void u32(uint32_t v) {
    uint8_t b[4];
    for (int i = 0; i < 4; ++i) b[i] = uint8_t(v >> (8 * i));
    raw(b, 4);
  }
  void u64(uint64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; ++i) b[i] = uint8_t(v >> (8 * i));
    raw(b, 8);
  }
  void i64(int64_t v) { u64(static_cast<uint64_t>(v)); }
  void i32(int32_t v) { u32(static_cast<uint32_t>(v)); }
  void f64(double v) {
    uint64_t bits;
    std::memcpy(&bits, &v, 8);
    u64(bits);
  }
  void str(std::string_view s) {
    u64(s.size());
    raw(s.data(), s.size());
  }
  void bytes(const void* data, size_t size) {
    u64(size);
    raw(data, size);
  }
  // Bulk bytes: the same encoding as bytes(); large runs go to the host buffer in one copy.
  void bytes(const BulkBytes& bulk) { bytes(bulk.data(), bulk.size()); }

  void raw(const void* data, size_t size) {
    if (size == 0) return;  // an empty run may have no data pointer (an empty BulkBytes): memcpy must not see it
    if (size >= kChunk) {
      flush();
      append(data, size);
      return;
    }
    if (used_ + size > kChunk) flush();
    std::memcpy(chunk_ + used_, data, size);
    used_ += size;
  }
  void flush() {
    if (used_ == 0) return;
    size_t n = used_;
    used_ = 0;
    append(chunk_, n);
  }

 private:
  static constexpr size_t kChunk = 16 * 1024;
  void append(const void* data, size_t size) {
    if (api_->buffer_append(out_, data, size) != HOTSWAP_OK) throw StateError("host refused to grow the state buffer");
  }
  const hotswap_host_api* api_;
  hotswap_buffer* out_;
  size_t used_ = 0;
  char chunk_[kChunk];
};

class StateReader {
 public:
  explicit StateReader(hotswap_bytes bytes) : data_(bytes.data), size_(bytes.size) {}

  uint8_t u8() { return *take(1); }
  uint32_t u32() {
    const uint8_t* p = take(4);
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t(p[i]) << (8 * i);
    return v;
  }
  uint64_t u64() {
    const uint8_t* p = take(8);
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t(p[i]) << (8 * i);
    return v;
  }
  int64_t i64() { return static_cast<int64_t>(u64()); }
  int32_t i32() { return static_cast<int32_t>(u32()); }
  double f64() {
    uint64_t bits = u64();
    double v;
    std::memcpy(&v, &bits, 8);
    return v;
  }
  std::string str() {
    std::string_view v = bytes();
    return std::string(v);
  }
  // A view into the caller's buffer, valid while the import/migrate call runs.
  std::string_view bytes() {
    uint64_t n = u64();
    if (n > remaining())
      throw StateError("state truncated: a field claims " + std::to_string(n) + " bytes, " +
                       std::to_string(remaining()) + " left");
    return std::string_view(reinterpret_cast<const char*>(take(n)), n);
  }
  // Reads a bytes() field into `out` with one copy (no intermediate string).
  void bytes_into(BulkBytes& out) {
    std::string_view v = bytes();
    out.assign(v.data(), v.size());
  }
  size_t remaining() const { return size_ - pos_; }
  // Call after reading everything: trailing bytes mean the layout is not what
  // the reader expected, most often because export_state changed while
  // kStateSchema stayed the same (so no migration ran).
  void expect_end() const {
    if (pos_ != size_)
      throw StateError("state has " + std::to_string(size_ - pos_) + " unexpected trailing bytes (read " +
                       std::to_string(pos_) + " of " + std::to_string(size_) +
                       "): the state layout changed without a new kStateSchema? A version whose export_state "
                       "writes another layout needs a new kStateSchema and a migrate_up from the old one");
  }

 private:
  const uint8_t* take(size_t n) {
    if (n > size_ - pos_) throw StateError("state truncated at byte " + std::to_string(pos_));
    const uint8_t* p = data_ + pos_;
    pos_ += n;
    return p;
  }
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

struct ConnInfo {
  std::string_view listener;
  std::string_view peer_address;
};

struct MigrationFrom {
  std::string_view version;  // the old module version
  uint32_t schema;           // the old state schema
  std::string_view extra_json;  // the appup's `extra` as JSON text ("null" when absent)
#if HOTSWAP_SDK_JSON
  // `extra`, parsed. Throws JsonError (the migration then fails and rolls back).
  nlohmann::json extra() const { return parse_json(extra_json, "the appup's extra"); }
#endif
};

struct MigrationTo {
  std::string_view version;  // the older version being downgraded to
  uint32_t schema;           // the schema it expects
  std::string_view extra_json;  // the appup's `extra` as JSON text ("null" when absent)
#if HOTSWAP_SDK_JSON
  nlohmann::json extra() const { return parse_json(extra_json, "the appup's extra"); }
#endif
};

namespace detail {
template <class T>
struct Trampolines;

// What every module class has, with or without an adoptable state type.
template <class Derived>
class ModuleCommon {
 public:
  explicit ModuleCommon(Host host, std::string_view config_json = "null") : host_(host), config_json_(config_json) {}

  // Defaults: a module redefines what it needs (same name and signature).
  void export_state(StateWriter&) const {}
  void import_state(StateReader& in) { in.expect_end(); }
  // Default upgrade: the layout did not change.
  void migrate_up(const MigrationFrom& from, StateReader& in) {
    if (from.schema != Derived::kStateSchema)
      throw std::runtime_error("no migration from state schema " + std::to_string(from.schema) + " (version " +
                               std::string(from.version) + ")");
    self().import_state(in);
  }
  // Default downgrade: the layout did not change.
  void migrate_down(const MigrationTo& to, StateWriter& out) const {
    if (to.schema != Derived::kStateSchema)
      throw std::runtime_error("no migration down to state schema " + std::to_string(to.schema) + " (version " +
                               std::string(to.version) + ")");
    static_cast<const Derived&>(*this).export_state(out);
  }
  void on_connect(ConnId, const ConnInfo&) {}
  void on_message(ConnId, std::string_view) {}
  void on_disconnect(ConnId, DisconnectReason) {}
  void on_tick(uint64_t) {}
  void on_timer(TimerId, uint64_t) {}
  std::string run_task(std::string_view name, std::string_view) { throw UnsupportedTask(name); }
  void on_config_change(std::string_view) {}
  void on_stop() {}
  // Live rehearsal (module.h self_check): after an upgrade or downgrade moved
  // the state in and the old code was unloaded, in a copy of the host that
  // serves no traffic. Throw to say an invariant broke (the upgrade is then
  // refused); must not change the state. Default: nothing to check.
  void self_check() const {}

  const Host& host() const { return host_; }

  // The module's section of the runtime config as JSON text ("null" when
  // absent): the one create() got, then the one of the latest
  // on_config_change (updated before on_config_change runs).
  const std::string& config_json() const { return config_json_; }
#if HOTSWAP_SDK_JSON
  // The same, parsed. Throws JsonError (create or on_config_change then fails with that message).
  nlohmann::json config() const { return parse_json(config_json_, "the module's runtime config section"); }
#endif

 private:
  template <class T>
  friend struct Trampolines;
  Derived& self() { return static_cast<Derived&>(*this); }
  Host host_;
  std::string config_json_;
};

}  // namespace detail

// Base of every module class. Derived must define `static constexpr uint32_t kStateSchema`.
// State = void: the module keeps its state in its own members and is always
// swapped by export/import. A state type: see "State that stays in place" above.
template <class Derived, class State = void>
class Module : public detail::ModuleCommon<Derived> {
  static_assert(std::is_class<State>::value, "the state type of hotswap::Module must be a class");
  static_assert(std::is_default_constructible<State>::value, "a fresh instance starts with a default State");

 public:
  using StateType = State;
  explicit Module(Host host, std::string_view config_json = "null")
      : detail::ModuleCommon<Derived>(host, config_json), state_(new State()) {}

  // The instance's state. Throws std::logic_error once the instance gave it
  // away (the host never calls such an instance; this catches a module bug).
  State& state() {
    if (state_ == nullptr) no_state();
    return *state_;
  }
  const State& state() const {
    if (state_ == nullptr) no_state();
    return *state_;
  }

  // A module that opts into adoption must still say how to copy its state:
  // the host falls back to export/import for a schema change, a fingerprint
  // mismatch, or an older peer. The defaults refuse, so a swap that would
  // otherwise silently drop the state rolls back instead.
  void export_state(StateWriter&) const {
    throw std::runtime_error("this module keeps its state in place and defines no export_state");
  }
  void import_state(StateReader&) {
    throw std::runtime_error("this module keeps its state in place and defines no import_state");
  }

 private:
  template <class T>
  friend struct detail::Trampolines;
  [[noreturn]] static void no_state() { throw std::logic_error("this instance has given its state away"); }
  std::unique_ptr<State> state_;
};

template <class Derived>
class Module<Derived, void> : public detail::ModuleCommon<Derived> {
 public:
  using StateType = void;
  using detail::ModuleCommon<Derived>::ModuleCommon;
};

namespace detail {

// The optional kStateLayout tag of a module class (0 when it has none).
template <class T, class = void>
struct StateLayoutTag : std::integral_constant<uint32_t, 0> {};
template <class T>
struct StateLayoutTag<T, std::void_t<decltype(T::kStateLayout)>>
    : std::integral_constant<uint32_t, static_cast<uint32_t>(T::kStateLayout)> {};

constexpr uint64_t fnv1a(uint64_t h, uint64_t value) {
  for (int i = 0; i < 8; ++i) {
    h ^= (value >> (8 * i)) & 0xffu;
    h *= 0x100000001b3ull;
  }
  return h;
}

// The standard library's own layout switches: a state built with another
// std::string ABI or debug containers has another layout at the same size.
#if defined(_GLIBCXX_USE_CXX11_ABI)
constexpr uint64_t kLibraryLayout = 0x100u | static_cast<uint64_t>(_GLIBCXX_USE_CXX11_ABI);
#else
constexpr uint64_t kLibraryLayout = 0x200u;
#endif
#if defined(_GLIBCXX_DEBUG)
constexpr uint64_t kDebugContainers = 1;
#else
constexpr uint64_t kDebugContainers = 0;
#endif

// module.h state_fingerprint: kStateSchema, sizeof/alignof State, kStateLayout
// and the library's layout flags. Never 0 (0 means "does not opt in").
template <class T>
constexpr uint64_t state_fingerprint() {
  using State = typename T::StateType;
  uint64_t h = 0xcbf29ce484222325ull;
  h = fnv1a(h, T::kStateSchema);
  h = fnv1a(h, sizeof(State));
  h = fnv1a(h, alignof(State));
  h = fnv1a(h, StateLayoutTag<T>::value);
  h = fnv1a(h, kLibraryLayout);
  h = fnv1a(h, kDebugContainers);
  return h == 0 ? 1 : h;
}

// The adoption check: the first 8-byte-aligned word of [state, state+size)
// that holds an address inside one of the ranges, as a message; empty when
// there is none.
inline std::string find_foreign_address(const void* state, size_t size, const hotswap_address_range* ranges,
                                        size_t count) {
  if (ranges == nullptr || count == 0) return {};
  const auto* bytes = static_cast<const unsigned char*>(state);
  for (size_t offset = 0; offset + sizeof(uintptr_t) <= size; offset += sizeof(uintptr_t)) {
    uintptr_t word;
    std::memcpy(&word, bytes + offset, sizeof word);
    for (size_t r = 0; r < count; ++r) {
      if (word >= ranges[r].begin && word < ranges[r].end) {
        char text[320];
        std::snprintf(text, sizeof text,
                      "adopted state holds an address inside the old library at byte offset %zu of %zu "
                      "(0x%llx): a vtable, function pointer, string literal or static of the old code; "
                      "state that is adopted must hold heap memory only (module.h, \"The adoption rule\")",
                      offset, size, static_cast<unsigned long long>(word));
        return text;
      }
    }
  }
  return {};
}

inline void set_error(hotswap_error* err, const char* message) {
  if (err == nullptr || err->message == nullptr || err->capacity == 0) return;
  std::snprintf(err->message, err->capacity, "%s", message);
}

// Runs fn, turning every exception into a status plus message. Nothing escapes.
template <class Fn>
hotswap_status guarded(hotswap_error* err, Fn&& fn) noexcept {
  try {
    fn();
    return HOTSWAP_OK;
  } catch (const UnsupportedTask& e) {
    set_error(err, e.what());
    return HOTSWAP_UNSUPPORTED;
  } catch (const std::exception& e) {
    set_error(err, e.what());
    return HOTSWAP_ERROR;
  } catch (...) {
    set_error(err, "threw an exception that is not a std::exception");
    return HOTSWAP_ERROR;
  }
}

template <class T>
T* self(hotswap_instance* instance) {
  return reinterpret_cast<T*>(instance);
}

// One trampoline per callback: C signature outside, direct (non-virtual) call inside.
template <class T>
struct Trampolines {
  static hotswap_instance* create(const hotswap_create_args* args, hotswap_error* err) noexcept {
    T* made = nullptr;
    const char* config = args->config_json != nullptr ? args->config_json : "null";
    hotswap_status st = guarded(err, [&] { made = new T(Host(args->host, args->ctx), std::string_view(config)); });
    return st == HOTSWAP_OK ? reinterpret_cast<hotswap_instance*>(made) : nullptr;
  }
  // destroy() has no way to report failure. A destructor declared
  // noexcept(false) (the class's or a member's) that throws would otherwise hit
  // this noexcept boundary and end the whole host in std::terminate; the
  // exception ends here instead (the memory is freed all the same) and is logged.
  static void destroy(hotswap_instance* instance) noexcept {
    T* t = self<T>(instance);
    const Host host = t->host();
    try {
      delete t;
    } catch (...) {
      try {
        host.warn("destroy: the destructor threw an exception; it was ignored");
      } catch (...) {
      }
    }
  }
  static hotswap_status export_state(hotswap_instance* instance, hotswap_buffer* out, hotswap_error* err) noexcept {
    return guarded(err, [&] {
      T* t = self<T>(instance);
      StateWriter w(host_api(t), out);
      static_cast<const T*>(t)->export_state(w);
      w.flush();
    });
  }
  static hotswap_status import_state(hotswap_instance* instance, uint32_t schema, hotswap_bytes state,
                                     hotswap_error* err) noexcept {
    return guarded(err, [&] {
      if (schema != T::kStateSchema)
        throw std::runtime_error("import_state got schema " + std::to_string(schema) + ", expected " +
                                 std::to_string(T::kStateSchema));
      StateReader r(state);
      self<T>(instance)->import_state(r);
    });
  }
  static hotswap_status migrate_up(hotswap_instance* instance, const hotswap_migrate_up_args* args,
                                   hotswap_error* err) noexcept {
    return guarded(err, [&] {
      StateReader r(args->state);
      MigrationFrom from{args->from_version, args->from_schema, args->extra_json ? args->extra_json : "null"};
      self<T>(instance)->migrate_up(from, r);
    });
  }
  static hotswap_status migrate_down(hotswap_instance* instance, const hotswap_migrate_down_args* args,
                                     hotswap_error* err) noexcept {
    return guarded(err, [&] {
      T* t = self<T>(instance);
      StateWriter w(host_api(t), args->out);
      MigrationTo to{args->to_version, args->to_schema, args->extra_json ? args->extra_json : "null"};
      static_cast<const T*>(t)->migrate_down(to, w);
      w.flush();
    });
  }
  static hotswap_status on_connect(hotswap_instance* instance, hotswap_conn_id conn, const hotswap_conn_info* info,
                                   hotswap_error* err) noexcept {
    return guarded(err, [&] {
      ConnInfo ci{info && info->listener ? info->listener : "", info && info->peer_address ? info->peer_address : ""};
      self<T>(instance)->on_connect(conn, ci);
    });
  }
  static hotswap_status on_message(hotswap_instance* instance, hotswap_conn_id conn, hotswap_bytes message,
                                   hotswap_error* err) noexcept {
    return guarded(err, [&] {
      self<T>(instance)->on_message(conn, std::string_view(reinterpret_cast<const char*>(message.data), message.size));
    });
  }
  static hotswap_status on_disconnect(hotswap_instance* instance, hotswap_conn_id conn,
                                      hotswap_disconnect_reason reason, hotswap_error* err) noexcept {
    return guarded(err, [&] { self<T>(instance)->on_disconnect(conn, reason); });
  }
  static hotswap_status on_tick(hotswap_instance* instance, uint64_t tick, hotswap_error* err) noexcept {
    return guarded(err, [&] { self<T>(instance)->on_tick(tick); });
  }
  static hotswap_status on_timer(hotswap_instance* instance, hotswap_timer_id id, uint64_t tag,
                                 hotswap_error* err) noexcept {
    return guarded(err, [&] { self<T>(instance)->on_timer(id, tag); });
  }
  static hotswap_status run_task(hotswap_instance* instance, const char* name, const char* args_json,
                                 hotswap_buffer* out, hotswap_error* err) noexcept {
    return guarded(err, [&] {
      T* t = self<T>(instance);
      std::string result = t->run_task(name, args_json ? args_json : "null");
      const hotswap_host_api* api = host_api(t);
      if (!result.empty() &&
          (!HOTSWAP_HOST_HAS(api, buffer_append) || api->buffer_append(out, result.data(), result.size()) != HOTSWAP_OK))
        throw std::runtime_error("host refused the task result");
    });
  }
  static hotswap_status on_config_change(hotswap_instance* instance, const char* config_json,
                                         hotswap_error* err) noexcept {
    return guarded(err, [&] {
      T* t = self<T>(instance);
      std::string& current = static_cast<ModuleCommon<T>*>(t)->config_json_;
      std::string previous = current;
      current = config_json ? config_json : "null";
      try {
        t->on_config_change(static_cast<const ModuleCommon<T>*>(t)->config_json());
      } catch (...) {
        current = std::move(previous);  // a refused config is not the module's config
        throw;
      }
    });
  }
  static hotswap_status on_stop(hotswap_instance* instance, hotswap_error* err) noexcept {
    return guarded(err, [&] { self<T>(instance)->on_stop(); });
  }
  static hotswap_status self_check(hotswap_instance* instance, hotswap_error* err) noexcept {
    return guarded(err, [&] { static_cast<const T*>(self<T>(instance))->self_check(); });
  }
  static void* release_state(hotswap_instance* instance) noexcept {
    return self<T>(instance)->state_.release();
  }
  static hotswap_status adopt_state(hotswap_instance* instance, const hotswap_adopt_state_args* args,
                                    hotswap_error* err) noexcept {
    using State = typename T::StateType;
    return guarded(err, [&] {
      if (args == nullptr || args->state == nullptr) throw std::runtime_error("adopt_state got no state");
      if (args->from_fingerprint != state_fingerprint<T>())
        throw std::runtime_error("adopt_state: the state's fingerprint differs from this version's");
      if (reinterpret_cast<uintptr_t>(args->state) % alignof(State) != 0)
        throw std::runtime_error("adopt_state: the state pointer is misaligned for this state type");
#if HOTSWAP_CHECK_ADOPTED_STATE
      std::string foreign = find_foreign_address(args->state, sizeof(State), args->old_code, args->old_code_count);
      if (!foreign.empty()) throw std::runtime_error(foreign);
#endif
      self<T>(instance)->state_.reset(static_cast<State*>(args->state));  // drops the fresh state
    });
  }

 private:
  static const hotswap_host_api* host_api(const T* t);
};

template <class T>
const hotswap_host_api* Trampolines<T>::host_api(const T* t) {
  return t->host().api();
}

template <class T>
constexpr hotswap_module_descriptor make_descriptor(const char* name, const char* version) {
  static_assert(std::is_same<decltype(T::kStateSchema), const uint32_t>::value,
                "a module class needs `static constexpr uint32_t kStateSchema`");
  using Tr = Trampolines<T>;
  hotswap_module_descriptor d{};
  d.abi_version = HOTSWAP_ABI_VERSION;
  d.struct_size = sizeof(hotswap_module_descriptor);
  d.name = name;
  d.version = version;
  d.state_schema = T::kStateSchema;
  d.create = &Tr::create;
  d.destroy = &Tr::destroy;
  d.export_state = &Tr::export_state;
  d.import_state = &Tr::import_state;
  d.migrate_up = &Tr::migrate_up;
  d.migrate_down = &Tr::migrate_down;
  d.on_connect = &Tr::on_connect;
  d.on_message = &Tr::on_message;
  d.on_disconnect = &Tr::on_disconnect;
  d.on_tick = &Tr::on_tick;
  d.on_timer = &Tr::on_timer;
  d.run_task = &Tr::run_task;
  d.on_config_change = &Tr::on_config_change;
  d.on_stop = &Tr::on_stop;
  d.self_check = &Tr::self_check;
  if constexpr (!std::is_void<typename T::StateType>::value) {
    d.state_fingerprint = state_fingerprint<T>();
    d.release_state = &Tr::release_state;
    d.adopt_state = &Tr::adopt_state;
  }
  return d;
}

}  // namespace detail
}  // namespace hotswap

#if !defined(HOTSWAP_MODULE_NAME) || !defined(HOTSWAP_MODULE_VERSION)
#error "build modules with hotswap_add_module(), which defines HOTSWAP_MODULE_NAME and HOTSWAP_MODULE_VERSION"
#endif

// Exports the module's entry symbol and its ABI tag. Use once, in one source file of the module.
#define HOTSWAP_MODULE(ClassName)                                                                 \
  static const hotswap_module_descriptor hotswap_module_descriptor_ =                             \
      ::hotswap::detail::make_descriptor<ClassName>(HOTSWAP_MODULE_NAME, HOTSWAP_MODULE_VERSION); \
  HOTSWAP_DEFINE_ABI_TAG();                                                                       \
  extern "C" HOTSWAP_EXPORT const hotswap_module_descriptor* hotswap_module_entry(void) {         \
    return &hotswap_module_descriptor_;                                                           \
  }

#endif  // HOTSWAP_MODULE_HPP
