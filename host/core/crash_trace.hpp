// Which module callback each thread is in, kept where a signal handler and the
// watchdog thread can read it, and the fatal-signal handler that writes it down
// before the process dies.
//
// The call path (call_module with a CallSite) records the module, its version,
// the callback and the connection in its thread's CallRecord before each call
// and restores the previous record after it. Everything a record points to lives
// as long as the process (interned labels, string literals), so a reader never
// follows a pointer into a library that has since been closed.
//
// The handler only records and re-raises: it never swallows a crash (cr.h's
// mistake was to keep running on a corrupted heap). The process still dies of
// the signal, with a core dump where the system makes one.
#pragma once

#include <hotswap/module.h>

#include <atomic>
#include <boost/filesystem/path.hpp>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace hotswap::host {

// A module's name and version as NUL-terminated strings that are never freed.
struct ModuleLabel {
  const char* name;
  const char* version;
};

// The label of (name, version): one per distinct pair, made on first use and
// kept for the life of the process (a few bytes per module version ever
// loaded). Thread-safe; not for a signal handler.
const ModuleLabel* intern_module_label(std::string_view name, std::string_view version);

// Where a call into a module is made. `module` is interned, `callback` a string
// literal; `conn` counts only when `has_conn`.
struct CallSite {
  const ModuleLabel* module = nullptr;
  const char* callback = nullptr;
  bool has_conn = false;
  hotswap_conn_id conn = 0;
};

struct CallSnapshot {
  CallSite site;          // site.module == nullptr: not inside a module callback
  uint64_t sequence = 0;  // changes at every entry into and exit from a callback
  bool inside() const { return site.module != nullptr; }
};

// One per thread. Written only by its own thread, as a sequence lock: any
// other thread reads a consistent snapshot; a signal handler on the owning
// thread reads the fields directly (each one is valid on its own).
class CallRecord {
 public:
  constexpr CallRecord() = default;
  CallRecord(const CallRecord&) = delete;
  CallRecord& operator=(const CallRecord&) = delete;

  // Owning thread only.
  void set(const CallSite& site) noexcept {
    const uint64_t s = sequence_.load(std::memory_order_relaxed);
    sequence_.store(s + 1, std::memory_order_relaxed);  // odd: being written
    std::atomic_thread_fence(std::memory_order_release);
    module_.store(site.module, std::memory_order_relaxed);
    callback_.store(site.callback, std::memory_order_relaxed);
    has_conn_.store(site.has_conn, std::memory_order_relaxed);
    conn_.store(site.conn, std::memory_order_relaxed);
    sequence_.store(s + 2, std::memory_order_release);
  }
  // Owning thread (nothing else writes), or a signal handler running on it.
  CallSite current() const noexcept {
    return {module_.load(std::memory_order_relaxed), callback_.load(std::memory_order_relaxed),
            has_conn_.load(std::memory_order_relaxed), conn_.load(std::memory_order_relaxed)};
  }
  // Any other thread: a snapshot no write was in the middle of. Gives up (and
  // reports "not inside") only if the owner keeps writing through many retries.
  CallSnapshot snapshot() const noexcept;

 private:
  std::atomic<uint64_t> sequence_{0};
  std::atomic<const ModuleLabel*> module_{nullptr};
  std::atomic<const char*> callback_{nullptr};
  std::atomic<bool> has_conn_{false};
  std::atomic<uint64_t> conn_{0};
};

// Constant-initialised with a trivial destructor: no lazy TLS initialisation,
// so reading it from a signal handler allocates nothing.
inline thread_local CallRecord tls_call_record;

inline CallRecord& this_thread_call_record() noexcept { return tls_call_record; }

// Records `site` in this thread's CallRecord for the scope's lifetime, then
// restores what was there (calls may nest: a callback run while another is on
// the stack of the same thread).
class ModuleCallScope {
 public:
  explicit ModuleCallScope(const CallSite& site) noexcept
      : record_(this_thread_call_record()), previous_(record_.current()) {
    record_.set(site);
  }
  ~ModuleCallScope() { record_.set(previous_); }
  ModuleCallScope(const ModuleCallScope&) = delete;
  ModuleCallScope& operator=(const ModuleCallScope&) = delete;

 private:
  CallRecord& record_;
  CallSite previous_;
};

// Writes the one crash line into `out` (at most `capacity` bytes, always
// ending with '\n' when capacity allows) and returns its length. Async-signal-safe:
// no allocation, no locale, no stdio. `epoch_seconds` is the UTC time shown.
size_t format_crash_line(char* out, size_t capacity, int signal, const CallSite& site, int64_t epoch_seconds) noexcept;

// Installs the handler for SIGSEGV, SIGBUS, SIGFPE, SIGILL and SIGABRT. On such a
// signal it writes the crash line to standard error (the host's log) and to
// `crash_file` (created then; the next start reports and removes it), restores
// the default action and re-raises, so the process dies of that signal. The
// calling thread also gets an alternate signal stack, so that a stack overflow
// in a module callback on it is reported too. Call once, early, on the thread
// that will run the event loop. Throws std::runtime_error when the path is too long.
void install_crash_handler(const boost::filesystem::path& crash_file);

// Gives the calling thread an alternate signal stack (idempotent per thread).
void use_alternate_signal_stack();

// The line a crashed previous run left in `crash_file`, which is removed; nullopt
// when there is none. Only the first line is returned, at most 4 KiB of it.
std::optional<std::string> take_previous_crash(const boost::filesystem::path& crash_file);

}  // namespace hotswap::host
