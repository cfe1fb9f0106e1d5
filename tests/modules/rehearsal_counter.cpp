// counter for the live-rehearsal tests (tests/rehearsal/): the counter
// protocol ("add N #tag" replies "total=<total> #tag", "get #tag"), with its
// whole state in one adoptable state type. 1.0.0 is the base; each 2.0.0
// variant breaks its upgrade one way:
//
//   REHEARSAL_SCHEMA=2    the state schema changes: the upgrade migrates (migrate_up)
//   REHEARSAL_SEGV        migrate_up writes through an unmapped address
//   REHEARSAL_ABORT       migrate_up calls abort()
//   REHEARSAL_HANG        migrate_up never returns
//   REHEARSAL_THROW       migrate_up throws
//   REHEARSAL_LOSSY       migrate_down forgets the total: the round trip does not restore the state
//   (none, schema 1)      adopts the old state as is; self_check reads `label`, which the
//                         old library's "label" task pointed at one of its string literals
//
// Tasks: "total" (the total), "label" (points state().label at a string
// literal of this library: breaks the adoption rule on purpose).
#include <signal.h>
#include <unistd.h>

#include <hotswap/module.hpp>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "counter_protocol.hpp"

#ifndef REHEARSAL_SCHEMA
#define REHEARSAL_SCHEMA 1
#endif

// Unmapped and non-null (UBSan's null check would end the process before the SIGSEGV).
volatile uintptr_t g_unmapped_address = 16;

struct RehearsalCounterState {
  uint64_t total = 0;
  uint64_t ticks = 0;
  const char* label = nullptr;  // null unless the "label" task broke the rule
};

class RehearsalCounter : public hotswap::Module<RehearsalCounter, RehearsalCounterState> {
 public:
  static constexpr uint32_t kStateSchema = REHEARSAL_SCHEMA;
  using Module::Module;

  void on_message(hotswap::ConnId conn, std::string_view request) {
    auto [msg, tag] = split_tag(request);
    if (msg.rfind("add ", 0) == 0)
      state().total += std::stoull(std::string(msg.substr(4)));
    else if (msg != "get")
      throw std::runtime_error("unknown request '" + std::string(msg) + "'");
    host().send(conn, "total=" + std::to_string(state().total) + std::string(tag));
  }
  void on_tick(uint64_t) { ++state().ticks; }

  std::string run_task(std::string_view name, std::string_view) {
    if (name == "total") return std::to_string(state().total);
    if (name == "label") {
      state().label = "a string literal of counter " HOTSWAP_MODULE_VERSION;
      return {};
    }
    throw hotswap::UnsupportedTask(name);
  }

  void export_state(hotswap::StateWriter& out) const {
    out.u64(state().total);
    out.u64(state().ticks);
  }
  void import_state(hotswap::StateReader& in) {
    state().total = in.u64();
    state().ticks = in.u64();
    in.expect_end();
  }

  void migrate_up(const hotswap::MigrationFrom& from, hotswap::StateReader& in) {
#if defined(REHEARSAL_SEGV)
    *reinterpret_cast<volatile uint64_t*>(g_unmapped_address) = from.schema;  // SIGSEGV
#elif defined(REHEARSAL_ABORT)
    (void)from;
    std::abort();
#elif defined(REHEARSAL_HANG)
    (void)from;
    for (;;) ::pause();
#elif defined(REHEARSAL_THROW)
    (void)from;
    throw std::runtime_error("the migration failed on purpose");
#else
    (void)from;
#endif
    import_state(in);
  }
  void migrate_down(const hotswap::MigrationTo&, hotswap::StateWriter& out) const {
#ifdef REHEARSAL_LOSSY
    out.u64(0);  // forgets the total
#else
    out.u64(state().total);
#endif
    out.u64(state().ticks);
  }

  void self_check() const {
    if (state().label != nullptr && std::strlen(state().label) == 0) throw std::runtime_error("empty label");
  }
};

HOTSWAP_MODULE(RehearsalCounter)
