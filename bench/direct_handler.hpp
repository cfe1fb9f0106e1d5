// The baseline of the dispatch benchmark: a plain virtual call doing the same
// trivial work as bench_echo's on_message (count the message). The
// implementation lives in another translation unit and is chosen at run time,
// so the compiler cannot devirtualize or inline the call.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

namespace hotswap::bench {

class DirectHandler {
 public:
  virtual ~DirectHandler() = default;
  virtual void on_message(uint64_t conn, std::string_view message) = 0;
  virtual uint64_t count() const = 0;
};

// `variant` picks one of two identical implementations; pass a value the
// compiler cannot know (argc, a volatile).
std::unique_ptr<DirectHandler> make_direct_handler(int variant);

}  // namespace hotswap::bench
