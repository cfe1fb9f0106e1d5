// The clock behind module time: module timers, fixed-rate ticks and
// module.h's monotonic_ms. The live server uses AsioTimerSource (the steady
// clock and the event loop); tests and anything that must replay time exactly
// use ManualTimerSource, whose time moves only when told to.
//
// Loop thread only: alarms are scheduled, cancelled and fired on the thread
// that runs the event loop, and ManualTimerSource::advance must be called there.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <utility>

namespace hotswap::host {

class TimerSource {
 public:
  // Time since the source's own epoch.
  using Duration = std::chrono::nanoseconds;

  // A scheduled call. Destroying it cancels the call if it has not run yet;
  // that is allowed from inside the call itself. An alarm must not outlive its source.
  class Alarm {
   public:
    virtual ~Alarm() = default;
  };

  virtual ~TimerSource() = default;

  virtual Duration now() const = 0;
  // Runs `fire` once, on the loop thread, when now() has reached `due`
  // (a due time already past fires at the next opportunity). `fire` may
  // schedule further alarms.
  [[nodiscard]] virtual std::unique_ptr<Alarm> schedule(Duration due, std::function<void()> fire) = 0;

  uint64_t now_ms() const {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(now()).count());
  }
};

// The steady clock, with alarms on the io_context's timers.
class AsioTimerSource : public TimerSource {
 public:
  explicit AsioTimerSource(boost::asio::io_context& io) : io_(io) {}

  Duration now() const override { return std::chrono::steady_clock::now().time_since_epoch(); }

  std::unique_ptr<Alarm> schedule(Duration due, std::function<void()> fire) override {
    auto alarm = std::make_unique<SteadyAlarm>(io_);
    alarm->timer.expires_at(std::chrono::steady_clock::time_point(
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(due)));
    // A cancel() cannot recall a completion that is already queued, so the
    // handler also checks the shared flag that the alarm's destructor clears.
    alarm->timer.async_wait([armed = alarm->armed, fire = std::move(fire)](boost::system::error_code ec) {
      if (ec || !*armed) return;
      *armed = false;
      fire();
    });
    return alarm;
  }

 private:
  struct SteadyAlarm : Alarm {
    explicit SteadyAlarm(boost::asio::io_context& io) : timer(io) {}
    ~SteadyAlarm() override {
      *armed = false;
      timer.cancel();
    }
    boost::asio::steady_timer timer;
    std::shared_ptr<bool> armed = std::make_shared<bool>(true);
  };

  boost::asio::io_context& io_;
};

// Time that stands still until advance() moves it. Alarms fire inside
// advance(), on the caller's thread (which must be the loop thread), in order
// of due time and, for equal due times, of scheduling; during each call now()
// reads that alarm's due time.
class ManualTimerSource : public TimerSource {
 public:
  // The epoch is not zero so that code treating 0 as "never" behaves as it would live.
  explicit ManualTimerSource(Duration start = std::chrono::hours(1)) : now_(start) {}
  ~ManualTimerSource() override = default;
  ManualTimerSource(const ManualTimerSource&) = delete;
  ManualTimerSource& operator=(const ManualTimerSource&) = delete;

  Duration now() const override { return now_; }

  std::unique_ptr<Alarm> schedule(Duration due, std::function<void()> fire) override {
    Key key{due, next_sequence_++};
    pending_.emplace(key, std::move(fire));
    return std::make_unique<ManualAlarm>(*this, key);
  }

  // Moves time forward by `by`, firing every alarm that falls due on the way,
  // including alarms those calls schedule within the window.
  void advance(Duration by) {
    const Duration target = now_ + by;
    for (auto next = pending_.begin(); next != pending_.end() && next->first.due <= target;
         next = pending_.begin()) {
      if (next->first.due > now_) now_ = next->first.due;
      std::function<void()> fire = std::move(next->second);
      pending_.erase(next);
      fire();
    }
    now_ = target;
  }
  void advance_ms(uint64_t ms) { advance(std::chrono::milliseconds(ms)); }

  size_t pending() const { return pending_.size(); }

 private:
  struct Key {
    Duration due;
    uint64_t sequence;
    bool operator<(const Key& other) const {
      return due != other.due ? due < other.due : sequence < other.sequence;
    }
  };
  struct ManualAlarm : Alarm {
    ManualAlarm(ManualTimerSource& source, Key key) : source(source), key(key) {}
    ~ManualAlarm() override { source.pending_.erase(key); }
    ManualTimerSource& source;
    Key key;
  };

  Duration now_;
  uint64_t next_sequence_ = 0;
  std::map<Key, std::function<void()>> pending_;
};

}  // namespace hotswap::host
