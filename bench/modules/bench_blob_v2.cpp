// bench_blob 2.0.0 — state schema 2:  u32 flags, u64 generation, bytes blob
// A real but cheap layout change from schema 1: a header field (flags) is added
// in front. Up from 1.0.0: flags get their default and the blob is copied once.
// Down to 1.0.0: the flags are dropped and the blob is written once.
#include "blob_common.hpp"

#include <hotswap/module.hpp>

#include <string>

class BenchBlob : public hotswap::Module<BenchBlob> {
 public:
  static constexpr uint32_t kStateSchema = 2;
  static constexpr uint32_t kDefaultFlags = 0x1;
  using Module::Module;

  std::string run_task(std::string_view name, std::string_view args) {
    if (name == "fill") {
      bench_blob::fill(blob_, std::stoull(std::string(args)));
      generation_ = 1;
      return {};
    }
    if (name == "checksum") return bench_blob::checksum(blob_, generation_);
    if (name == "flags") return std::to_string(flags_);
    throw hotswap::UnsupportedTask(name);
  }

  void export_state(hotswap::StateWriter& out) const {
    out.u32(flags_);
    out.u64(generation_);
    out.bytes(blob_.data(), blob_.size());
  }
  void import_state(hotswap::StateReader& in) {
    flags_ = in.u32();
    generation_ = in.u64();
    blob_.assign(in.bytes());
    in.expect_end();
  }

  void migrate_up(const hotswap::MigrationFrom& from, hotswap::StateReader& in) {
    if (from.schema == kStateSchema) return import_state(in);
    if (from.schema != 1)
      throw std::runtime_error("bench_blob 2.0.0 cannot migrate from state schema " + std::to_string(from.schema));
    flags_ = kDefaultFlags;
    generation_ = in.u64();
    blob_.assign(in.bytes());  // the one copy of the blob on import
    in.expect_end();
  }
  void migrate_down(const hotswap::MigrationTo& to, hotswap::StateWriter& out) const {
    if (to.schema == kStateSchema) return export_state(out);
    if (to.schema != 1)
      throw std::runtime_error("bench_blob 2.0.0 cannot write state schema " + std::to_string(to.schema));
    out.u64(generation_);
    out.bytes(blob_.data(), blob_.size());
  }

 private:
  uint32_t flags_ = kDefaultFlags;
  uint64_t generation_ = 0;
  std::string blob_;
};

HOTSWAP_MODULE(BenchBlob)
