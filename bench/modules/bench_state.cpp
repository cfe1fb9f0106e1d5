// bench_state: the module of the sized swap benchmarks (swap_pause_load_module,
// swap_pause_update). Its whole state is one adoptable type (hotswap::Module
// with a state type), holding a blob of any size.
//
//   1.0.0 / 1.0.1  state schema 1: u64 generation, bytes blob (code-only versions, same fingerprint)
//   2.0.0          state schema 2 (BENCH_STATE_SCHEMA2): u32 flags, u64 generation, bytes blob
//
// Tasks: "fill" (args: the size in bytes), "checksum", "address" (where the
// state object lives), "version", "touch" (writes one byte in every 4 KiB
// page of the blob, as a live module writing its state would; returns the
// page count).
#include <hotswap/module.hpp>

#include <cstring>
#include <string>

#ifndef BENCH_STATE_TAG
#define BENCH_STATE_TAG "1.0.0"
#endif

struct BenchStateData {
#ifdef BENCH_STATE_SCHEMA2
  uint32_t flags = 1;
#endif
  uint64_t generation = 0;
  hotswap::BulkBytes blob;
};

class BenchState : public hotswap::Module<BenchState, BenchStateData> {
 public:
#ifdef BENCH_STATE_SCHEMA2
  static constexpr uint32_t kStateSchema = 2;
#else
  static constexpr uint32_t kStateSchema = 1;
#endif
  using Module::Module;

  std::string run_task(std::string_view name, std::string_view args) {
    BenchStateData& s = state();
    if (name == "fill") {
      s.blob.resize_uninitialized(std::stoull(std::string(args)));
      uint64_t x = 0x243f6a8885a308d3ull;
      size_t i = 0;
      for (; i + 8 <= s.blob.size(); i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        std::memcpy(s.blob.data() + i, &x, 8);
      }
      for (; i < s.blob.size(); ++i) s.blob.data()[i] = static_cast<uint8_t>(i);
      s.generation = 1;
      return {};
    }
    if (name == "checksum") {
      uint64_t h = 0xcbf29ce484222325ull ^ s.generation;
      size_t i = 0;
      for (; i + 8 <= s.blob.size(); i += 8) {
        uint64_t w;
        std::memcpy(&w, s.blob.data() + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
      }
      for (; i < s.blob.size(); ++i) h = (h ^ s.blob.data()[i]) * 0x100000001b3ull;
      return std::to_string(h) + ":" + std::to_string(s.blob.size());
    }
    if (name == "touch") {
      size_t pages = 0;
      for (size_t i = 0; i < s.blob.size(); i += 4096, ++pages) ++s.blob.data()[i];
      return std::to_string(pages);
    }
    if (name == "address") return std::to_string(reinterpret_cast<uintptr_t>(&s));
    if (name == "version") return BENCH_STATE_TAG;
    throw hotswap::UnsupportedTask(name);
  }

  void export_state(hotswap::StateWriter& out) const {
#ifdef BENCH_STATE_SCHEMA2
    out.u32(state().flags);
#endif
    out.u64(state().generation);
    out.bytes(state().blob);  // one copy into the host's (reused) buffer
  }
  void import_state(hotswap::StateReader& in) {
#ifdef BENCH_STATE_SCHEMA2
    state().flags = in.u32();
#endif
    state().generation = in.u64();
    in.bytes_into(state().blob);  // one copy out of it
    in.expect_end();
  }

#ifdef BENCH_STATE_SCHEMA2
  // Up from schema 1: the flags header is new.
  void migrate_up(const hotswap::MigrationFrom& from, hotswap::StateReader& in) {
    if (from.schema == kStateSchema) return import_state(in);
    if (from.schema != 1) throw std::runtime_error("bench_state 2.0.0 cannot migrate from schema " + std::to_string(from.schema));
    state().flags = 1;
    state().generation = in.u64();
    in.bytes_into(state().blob);
    in.expect_end();
  }
  void migrate_down(const hotswap::MigrationTo& to, hotswap::StateWriter& out) const {
    if (to.schema == kStateSchema) return export_state(out);
    if (to.schema != 1) throw std::runtime_error("bench_state 2.0.0 cannot write schema " + std::to_string(to.schema));
    out.u64(state().generation);
    out.bytes(state().blob);
  }
#endif
};

HOTSWAP_MODULE(BenchState)
