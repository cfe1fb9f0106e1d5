// ctor 1.0.0, built once per misbehaviour: a static constructor that runs
// inside dlopen and throws (CTOR_THROWS), writes through a null pointer
// (CTOR_SEGFAULTS), calls exit(3) (CTOR_EXITS) or never returns (CTOR_HANGS).
// The host must load such a library in a probe child first, so that only the
// child pays; the module itself would be harmless.
#include <cstdint>
#include <unistd.h>

#include <cstdlib>
#include <hotswap/module.hpp>
#include <stdexcept>

namespace {

struct Misbehaves {
  Misbehaves() {
#if defined(CTOR_THROWS)
    throw std::runtime_error("ctor 1.0.0: this static constructor throws on purpose");
#elif defined(CTOR_SEGFAULTS)
    // Volatile both ways: the compiler can neither see the address nor drop the write.
    // An address in the never-mapped first page, but not null: UBSan's null
    // check would otherwise end the process before the fault happens.
    volatile int* volatile nowhere = reinterpret_cast<volatile int*>(std::uintptr_t{16});
    *nowhere = 1;
#elif defined(CTOR_EXITS)
    std::exit(3);
#elif defined(CTOR_HANGS)
    for (;;) ::pause();
#endif
  }
};
const Misbehaves misbehaves;

}  // namespace

class Ctor : public hotswap::Module<Ctor> {
 public:
  static constexpr uint32_t kStateSchema = 1;
  Ctor(hotswap::Host host, std::string_view config) : Module(host, config) {}
};

HOTSWAP_MODULE(Ctor)
