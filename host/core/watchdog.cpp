#include "core/watchdog.hpp"

#include <algorithm>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <string>

namespace hotswap::host {
namespace {

std::string describe(const CallSite& site) {
  std::string text = std::string("module ") + site.module->name + " " + site.module->version + ", callback " +
                     (site.callback != nullptr ? site.callback : "?");
  if (site.has_conn) text += ", connection " + std::to_string(site.conn);
  return text;
}

double seconds(std::chrono::steady_clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

Watchdog::Watchdog(const CallRecord& watched, Clock clock, AbortAction abort)
    : watched_(watched), clock_(std::move(clock)), abort_(std::move(abort)) {}

Watchdog::~Watchdog() { stop_thread(); }

void Watchdog::set_limits(Limits limits) {
  std::lock_guard<std::mutex> lock(mutex_);
  limits_ = limits;
}

void Watchdog::stopping(std::chrono::milliseconds stop_timeout) {
  std::lock_guard<std::mutex> lock(mutex_);
  stopping_ = true;
  stop_timeout_ = std::max(stop_timeout, kMinStopBound);
}

Watchdog::Verdict Watchdog::check_now() {
  const CallSnapshot snap = watched_.snapshot();
  const auto now = clock_();
  std::unique_lock<std::mutex> lock(mutex_);
  if (tracking_ && (!snap.inside() || snap.sequence != sequence_)) {
    if (warned_)
      spdlog::warn("watchdog: {} returned after {:.1f} s; the event loop runs again", describe(site_),
                   seconds(now - first_seen_));
    tracking_ = false;
  }
  if (!snap.inside()) return Verdict::Idle;
  if (!tracking_) {
    tracking_ = true;
    sequence_ = snap.sequence;
    site_ = snap.site;
    first_seen_ = now;
    warned_ = false;
    aborted_ = false;
  }
  if (aborted_) return Verdict::Running;
  const auto age = now - first_seen_;
  const bool over_abort = limits_.abort_after.count() > 0 && age >= limits_.abort_after;
  const bool over_stop = stopping_ && age >= stop_timeout_;
  if (over_abort || over_stop) {
    aborted_ = true;
    if (over_stop)
      spdlog::critical(
          "watchdog: {} has not returned within the stop timeout ({} ms) while the host stops: "
          "aborting the process",
          describe(site_), stop_timeout_.count());
    else
      spdlog::critical(
          "watchdog: {} has blocked the event loop for {:.1f} s, over the abort limit ({:.1f} s): "
          "aborting the process",
          describe(site_), seconds(age), seconds(limits_.abort_after));
    const CallSite stuck = site_;
    lock.unlock();
    if (abort_) abort_(stuck);
    return Verdict::Aborted;
  }
  if (!warned_ && limits_.warn_after.count() > 0 && age >= limits_.warn_after) {
    warned_ = true;
    spdlog::warn("watchdog: {} has blocked the event loop for {:.1f} s (warning limit {:.1f} s)", describe(site_),
                 seconds(age), seconds(limits_.warn_after));
    return Verdict::Warned;
  }
  return Verdict::Running;
}

void Watchdog::start_thread(std::chrono::milliseconds period) {
  if (thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    thread_stop_ = false;
  }
  thread_ = std::thread([this, period] {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!wake_.wait_for(lock, period, [this] { return thread_stop_; })) {
      lock.unlock();
      try {
        check_now();
      } catch (const std::exception& e) {  // a log sink that throws must not end the process
        std::fprintf(stderr, "hotswap: watchdog check failed: %s\n", e.what());
      }
      lock.lock();
    }
  });
}

void Watchdog::stop_thread() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    thread_stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace hotswap::host
