#include "direct_handler.hpp"

namespace hotswap::bench {
namespace {

class CountingA final : public DirectHandler {
 public:
  void on_message(uint64_t, std::string_view) override { ++messages_; }
  uint64_t count() const override { return messages_; }

 private:
  uint64_t messages_ = 0;
};

class CountingB final : public DirectHandler {
 public:
  void on_message(uint64_t, std::string_view) override { ++messages_; }
  uint64_t count() const override { return messages_; }

 private:
  uint64_t messages_ = 0;
};

}  // namespace

std::unique_ptr<DirectHandler> make_direct_handler(int variant) {
  if (variant == 1) return std::make_unique<CountingB>();
  return std::make_unique<CountingA>();
}

}  // namespace hotswap::bench
