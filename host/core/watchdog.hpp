// Notices that one thread (the event loop) has been inside one module callback
// too long: it logs the module, version, callback and connection past a warning
// limit, and past an abort limit (off by default) calls an abort action, which in
// the host kills the process so that the crash line is written and a supervisor
// restarts it. While the host stops, a callback that outlives the stop timeout
// aborts too: a hung on_stop must not keep the process alive forever.
//
// It lives in core/ because all it watches is core's call record
// (crash_trace.hpp); it knows nothing of upgrades or sockets.
//
// It samples: each check reads the watched CallRecord; a call is "the same"
// while the record's sequence number does not change, and its age is counted
// from the first check that saw it. So a hang is noticed at most one check
// period late, and the call path pays nothing for it (no clock read per call).
// The clock is injectable and check_now() runs one check, so tests need no
// thread and no sleeping.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "core/crash_trace.hpp"

namespace hotswap::host {

class Watchdog {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  // Called (on the checking thread) once for a call that overstayed the abort
  // limit, after the log line. The host's action does not return.
  using AbortAction = std::function<void(const CallSite& stuck)>;

  struct Limits {
    std::chrono::milliseconds warn_after{10'000};  // 0: no warning
    std::chrono::milliseconds abort_after{0};      // 0: never abort (while serving)
    bool operator==(const Limits& other) const {
      return warn_after == other.warn_after && abort_after == other.abort_after;
    }
  };

  enum class Verdict {
    Idle,     // not inside a module callback
    Running,  // inside one, within the limits (or already warned about)
    Warned,   // this check logged the warning
    Aborted,  // this check called the abort action
  };

  // `watched` must outlive the watchdog (a thread's record: the thread must too).
  Watchdog(const CallRecord& watched, Clock clock, AbortAction abort);
  ~Watchdog();  // stops the thread
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Any thread.
  void set_limits(Limits limits);
  // The host is stopping: from now on a callback running longer than
  // `stop_timeout`, and at least kMinStopBound, aborts, whatever abort_after
  // says. The floor keeps a stop timeout of 0 (drop unsent output at once)
  // from aborting a clean stop whose on_stop or destroy merely runs.
  static constexpr std::chrono::milliseconds kMinStopBound{1000};
  void stopping(std::chrono::milliseconds stop_timeout);

  // One check, now. Thread-safe (one check at a time).
  Verdict check_now();

  // Checks every `period` (real time) on a thread of its own until stop_thread().
  void start_thread(std::chrono::milliseconds period);
  void stop_thread();

 private:
  const CallRecord& watched_;
  Clock clock_;
  AbortAction abort_;

  std::mutex mutex_;  // everything below
  Limits limits_;
  std::chrono::milliseconds stop_timeout_{0};
  bool stopping_ = false;
  // The call the previous check saw.
  bool tracking_ = false;
  uint64_t sequence_ = 0;
  CallSite site_;
  std::chrono::steady_clock::time_point first_seen_{};
  bool warned_ = false;
  bool aborted_ = false;

  std::condition_variable wake_;
  bool thread_stop_ = false;
  std::thread thread_;
};

}  // namespace hotswap::host
