// bench_echo 1.0.0 / 1.0.1: the small module of the swap-pause and dispatch benchmarks.
// The two versions differ in code only (BENCH_ECHO_TAG), so the appup uses load_module.
//
// State schema 1 (432 bytes once filled):
//   u64 messages, 32 x u64 slots, str label (160 bytes after the "fill" task)
// on_message does trivial work: it counts the message and sends nothing.
// Tasks: "fill" gives the state its benchmark size; "count" returns the message count;
// "version" returns the tag.
#include <hotswap/module.hpp>

#include <array>
#include <string>

#ifndef BENCH_ECHO_TAG
#define BENCH_ECHO_TAG "1.0.0"
#endif

class BenchEcho : public hotswap::Module<BenchEcho> {
 public:
  static constexpr uint32_t kStateSchema = 1;
  using Module::Module;

  void on_message(hotswap::ConnId, std::string_view) { ++messages_; }

  std::string run_task(std::string_view name, std::string_view) {
    if (name == "fill") {
      for (size_t i = 0; i < slots_.size(); ++i) slots_[i] = i * 0x9e3779b97f4a7c15ull;
      label_.assign(160, 'e');
      return {};
    }
    if (name == "count") return std::to_string(messages_);
    if (name == "version") return "\"" BENCH_ECHO_TAG "\"";
    throw hotswap::UnsupportedTask(name);
  }

  void export_state(hotswap::StateWriter& out) const {
    out.u64(messages_);
    for (uint64_t s : slots_) out.u64(s);
    out.str(label_);
  }
  void import_state(hotswap::StateReader& in) {
    messages_ = in.u64();
    for (uint64_t& s : slots_) s = in.u64();
    label_ = in.str();
    in.expect_end();
  }

 private:
  uint64_t messages_ = 0;
  std::array<uint64_t, 32> slots_{};
  std::string label_;
};

HOTSWAP_MODULE(BenchEcho)
