// Every body decoder of the blue-green handover protocol
// (handover/handover_channel.hpp): blue and green treat each other's bytes as
// untrusted. The first byte picks the decoder (its value modulo 7: Hello,
// Error, Listeners, ConnectionBatch, BatchAck, Slots, Loaded), the rest is the body.
// A refusal (HandoverError) is a normal outcome; anything else thrown, a crash
// or a leak is a bug. What decodes must re-encode to the very same bytes (the
// encoding is canonical) and keep the decoders' promises (no descriptor, no
// zero id, known enum values).
#include <string>
#include <string_view>

#include "fuzz_support.hpp"
#include "handover/handover_channel.hpp"

namespace {

using namespace hotswap::host;
using namespace hotswap::host::handover;

std::string decode_and_reencode(uint8_t which, std::string_view body) {
  switch (which % 7) {
    case 0: {
      const Hello hello = decode_hello(body);
      HOTSWAP_FUZZ_CHECK(hello.pid > 0);
      return encode_hello(hello);
    }
    case 1:
      return encode_error(decode_error(body));
    case 2: {
      const std::vector<ListenerHandover> listeners = decode_listeners(body);
      for (const ListenerHandover& listener : listeners) HOTSWAP_FUZZ_CHECK(listener.fd == -1 && !listener.name.empty());
      return encode_listeners(listeners);
    }
    case 3: {
      const std::vector<ConnectionHandover> connections = decode_connections(body);
      for (const ConnectionHandover& connection : connections)
        HOTSWAP_FUZZ_CHECK(connection.fd == -1 && connection.id != 0);
      return encode_connections(connections);
    }
    case 4:
      return encode_count(decode_count(body));
    case 6: {
      const std::vector<LoadedModule> modules = decode_loaded(body);
      for (const LoadedModule& module : modules) HOTSWAP_FUZZ_CHECK(!module.name.empty());
      return encode_loaded(modules);
    }
    default: {
      const SlotsMessage slots = decode_slots(body);
      HOTSWAP_FUZZ_CHECK(slots.counters.next_conn_id != 0 && slots.counters.next_timer_id != 0);
      for (const SlotHandover& slot : slots.slots) {
        HOTSWAP_FUZZ_CHECK(slot.arrival == StateArrival::Import || slot.arrival == StateArrival::MigrateUp ||
                           slot.arrival == StateArrival::Fresh);
        for (const TimerHandover& timer : slot.timers) HOTSWAP_FUZZ_CHECK(timer.id != 0);
        for (const ModuleEvent& event : slot.queued) HOTSWAP_FUZZ_CHECK(event.reason <= HOTSWAP_DISCONNECT_SHUTDOWN);
      }
      return encode_slots(slots);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string_view body = hotswap::fuzz::as_text(data + 1, size - 1);
  std::string reencoded;
  try {
    reencoded = decode_and_reencode(data[0], body);
  } catch (const HandoverError& refused) {
    HOTSWAP_FUZZ_CHECK(std::string_view(refused.what()).substr(0, 19) == "handover: decoding ");
    return 0;
  }
  HOTSWAP_FUZZ_CHECK(reencoded == body);
  return 0;
}
