// greet: replies "hello <message>".
#include <hotswap/module.hpp>
#include <string>

class Greet : public hotswap::Module<Greet> {
 public:
  static constexpr uint32_t kStateSchema = 1;
  using Module::Module;
  void on_message(hotswap::ConnId conn, std::string_view msg) { host().send(conn, "hello " + std::string(msg)); }
  void export_state(hotswap::StateWriter&) const {}
  void import_state(hotswap::StateReader& in) { in.expect_end(); }
};

HOTSWAP_MODULE(Greet)
