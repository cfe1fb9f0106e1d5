// tally: "add N" adds N to a total kept across upgrades and replies "<tag> total=<total>".
#include <hotswap/module.hpp>
#include <string>

#ifndef TALLY_TAG
#define TALLY_TAG "v1.0"
#endif

class Tally : public hotswap::Module<Tally> {
 public:
  static constexpr uint32_t kStateSchema = 1;
  using Module::Module;
  void on_message(hotswap::ConnId conn, std::string_view msg) {
    if (msg.rfind("add ", 0) == 0) total_ += std::stoull(std::string(msg.substr(4)));
    host().send(conn, std::string(TALLY_TAG) + " total=" + std::to_string(total_));
  }
  void export_state(hotswap::StateWriter& out) const { out.u64(total_); }
  void import_state(hotswap::StateReader& in) {
    total_ = in.u64();
    in.expect_end();
  }

 private:
  uint64_t total_ = 0;
};

HOTSWAP_MODULE(Tally)
