// counter 2.0.0 impostor built with the C++ SDK (module.hpp) whose code throws
// an int, which is not a std::exception, from every handler and from its
// destructor (declared noexcept(false), as a careless class might be). The
// SDK's trampolines must turn each into an error status, and the destructor's
// into nothing: none may reach std::terminate.
#include <hotswap/module.hpp>

class ThrowingEverywhere : public hotswap::Module<ThrowingEverywhere> {
 public:
  static constexpr uint32_t kStateSchema = 2;
  using Module::Module;
  ~ThrowingEverywhere() noexcept(false) { throw 42; }

  void export_state(hotswap::StateWriter&) const { throw 42; }
  void import_state(hotswap::StateReader&) { throw 42; }
  void migrate_up(const hotswap::MigrationFrom&, hotswap::StateReader&) { throw 42; }
  void migrate_down(const hotswap::MigrationTo&, hotswap::StateWriter&) const { throw 42; }
  void on_connect(hotswap::ConnId, const hotswap::ConnInfo&) { throw 42; }
  void on_message(hotswap::ConnId, std::string_view) { throw 42; }
  void on_disconnect(hotswap::ConnId, hotswap::DisconnectReason) { throw 42; }
  void on_tick(uint64_t) { throw 42; }
  void on_timer(hotswap::TimerId, uint64_t) { throw 42; }
  std::string run_task(std::string_view, std::string_view) { throw 42; }
  void on_config_change(std::string_view) { throw 42; }
  void on_stop() { throw 42; }
};

HOTSWAP_MODULE(ThrowingEverywhere)
