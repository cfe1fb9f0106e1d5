#include "os/signal_name.hpp"

#include <string.h>

namespace hotswap::os {

std::string signal_name(int signal) {
  const char* abbreviation = ::sigabbrev_np(signal);
  const char* description = ::strsignal(signal);
  std::string name = abbreviation != nullptr ? "SIG" + std::string(abbreviation) : "signal " + std::to_string(signal);
  if (abbreviation != nullptr && description != nullptr) name += " (" + std::string(description) + ")";
  return name;
}

}  // namespace hotswap::os
