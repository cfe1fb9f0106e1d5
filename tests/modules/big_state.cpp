// bigstate: a module whose whole state lives in one adoptable state type
// (hotswap::Module<BigState, State>), for the state-adoption tests.
//
// State schema 1: u64 generation, bytes blob (export/import, the fallback path).
// Tasks: "fill" (args: size in bytes), "checksum", "address" (where the state
// object lives), "note" (points a state field at a string literal of this
// library), "vtable" (builds an object with a vtable of this library inside
// the state's bytes). The last two break the adoption rule on purpose.
//
// Build variants:
//   BIG_STATE_TAG="..."       what "version" returns (code-only versions)
//   BIG_STATE_LAYOUT=N        the kStateLayout tag (a different tag: a different fingerprint)
//   BIG_STATE_OLD_DESCRIPTOR  exports a descriptor of the size ABI 1 had before state
//                             adoption was appended, as a module built against the older header
#include <hotswap/module.hpp>

#include <cstddef>
#include <new>
#include <string>

#ifndef BIG_STATE_TAG
#define BIG_STATE_TAG "1.0.0"
#endif
#ifndef BIG_STATE_LAYOUT
#define BIG_STATE_LAYOUT 1
#endif

namespace {

// Polymorphic on purpose: its vtable lives in this library.
struct Greeter {
  virtual ~Greeter() = default;
  virtual const char* greet() const { return "hello"; }
};

uint64_t checksum(const hotswap::BulkBytes& blob, uint64_t generation) {
  uint64_t h = 0xcbf29ce484222325ull ^ generation;
  const uint8_t* p = blob.data();
  for (size_t i = 0; i < blob.size(); ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

}  // namespace

struct BigStateData {
  uint64_t generation = 0;
  hotswap::BulkBytes blob;
  const char* note = nullptr;                          // null unless the "note" task broke the rule
  alignas(Greeter) unsigned char greeter[sizeof(Greeter)] = {};  // raw unless the "vtable" task ran
};

class BigState : public hotswap::Module<BigState, BigStateData> {
 public:
  static constexpr uint32_t kStateSchema = 1;
  static constexpr uint32_t kStateLayout = BIG_STATE_LAYOUT;
  using Module::Module;

  std::string run_task(std::string_view name, std::string_view args) {
    BigStateData& s = state();
    if (name == "fill") {
      s.blob.resize_uninitialized(std::stoull(std::string(args)));
      uint64_t x = 0x243f6a8885a308d3ull;
      for (size_t i = 0; i < s.blob.size(); ++i) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.blob.data()[i] = static_cast<uint8_t>(x);
      }
      s.generation = 1;
      return {};
    }
    if (name == "checksum") return std::to_string(checksum(s.blob, s.generation));
    if (name == "address") return std::to_string(reinterpret_cast<uintptr_t>(&s));
    if (name == "version") return BIG_STATE_TAG;
    if (name == "note") {
      s.note = "a string literal of the old library";
      return {};
    }
    if (name == "vtable") {
      new (s.greeter) Greeter();  // trivially forgotten: Greeter owns nothing
      return {};
    }
    throw hotswap::UnsupportedTask(name);
  }

  void export_state(hotswap::StateWriter& out) const {
    out.u64(state().generation);
    out.bytes(state().blob);
  }
  void import_state(hotswap::StateReader& in) {
    state().generation = in.u64();
    in.bytes_into(state().blob);
    in.expect_end();
  }
};

#ifdef BIG_STATE_OLD_DESCRIPTOR
namespace {
hotswap_module_descriptor older_descriptor() {
  hotswap_module_descriptor d =
      hotswap::detail::make_descriptor<BigState>(HOTSWAP_MODULE_NAME, HOTSWAP_MODULE_VERSION);
  d.struct_size = offsetof(hotswap_module_descriptor, state_fingerprint);
  d.state_fingerprint = 0;
  d.release_state = nullptr;
  d.adopt_state = nullptr;
  return d;
}
const hotswap_module_descriptor descriptor = older_descriptor();
}  // namespace
extern "C" HOTSWAP_EXPORT const hotswap_module_descriptor* hotswap_module_entry(void) { return &descriptor; }
#else
HOTSWAP_MODULE(BigState)
#endif
