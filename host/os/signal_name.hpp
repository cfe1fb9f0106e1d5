// How an operator reads a signal number in a message.
#pragma once

#include <string>

namespace hotswap::os {

// "SIGSEGV (Segmentation fault)"; "signal 77" for a number glibc does not
// name. Not async-signal-safe (crash_trace.cpp has its own for its handler).
std::string signal_name(int signal);

}  // namespace hotswap::os
