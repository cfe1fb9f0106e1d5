// pinned 1.0.0: touches a thread_local with a destructor on the event-loop
// thread. glibc then keeps the library mapped until that thread exits, so the
// host must report it as leaked after unload instead of pretending it is gone.
#include <hotswap/module.hpp>
#include <string>

namespace {
struct PerThread {
  std::string scratch = "x";
  ~PerThread() { scratch.clear(); }
};
thread_local PerThread per_thread;
}  // namespace

class Pinned : public hotswap::Module<Pinned> {
 public:
  static constexpr uint32_t kStateSchema = 1;
  Pinned(hotswap::Host host, std::string_view config) : Module(host, config) { per_thread.scratch += "y"; }
};

HOTSWAP_MODULE(Pinned)
