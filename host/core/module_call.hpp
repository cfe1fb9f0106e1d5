// The one way the host calls into module code. A module not built with the SDK
// may let a C++ exception escape a callback (module.h forbids it, nothing can
// prevent it). It must neither unwind through the host (the event loop's data
// path and the C ABI promise nothing does) nor outlive the call: the exception
// object may run the module's code when destroyed, and that code goes away at
// dlclose. So every call is made inside call_module, which ends any exception
// right there and turns it into an ordinary failed callback.
//
// A call made with a CallSite is also recorded in the calling thread's
// CallRecord (core/crash_trace.hpp) for its duration: a fatal signal or the
// watchdog can then say which module, version, callback and connection the
// thread was in.
#pragma once

#include <hotswap/module.h>

#include <cstdio>
#include <utility>

#include "core/crash_trace.hpp"

namespace hotswap::host {

// The message of a callback that threw instead of returning a status.
inline constexpr const char kThrewAcrossAbi[] = "threw a C++ exception across the C ABI";

// Runs `call`, a callable that makes one call into a module and returns its
// hotswap_status. An exception that escapes it becomes HOTSWAP_ERROR with
// kThrewAcrossAbi written to `err` (when given). Costs nothing when nothing throws.
template <class Call>
hotswap_status call_module(hotswap_error* err, Call&& call) noexcept {
  try {
    return call();
  } catch (...) {
    if (err != nullptr && err->message != nullptr && err->capacity > 0)
      std::snprintf(err->message, err->capacity, "%s", kThrewAcrossAbi);
    return HOTSWAP_ERROR;
  }
}

// The same, recorded as `site` while it runs. Every call into a module whose
// name and version are known goes through this one.
template <class Call>
hotswap_status call_module(const CallSite& site, hotswap_error* err, Call&& call) noexcept {
  ModuleCallScope scope(site);
  return call_module(err, std::forward<Call>(call));
}

}  // namespace hotswap::host
