// bench_blob 1.0.0 — state schema 1:  u64 generation, bytes blob
// The module of the migrating-swap benchmark: it holds one large blob (1 MiB in
// the benchmark). Tasks: "fill" (args: the size in bytes, a JSON number) and "checksum".
#include "blob_common.hpp"

#include <hotswap/module.hpp>

#include <string>

class BenchBlob : public hotswap::Module<BenchBlob> {
 public:
  static constexpr uint32_t kStateSchema = 1;
  using Module::Module;

  std::string run_task(std::string_view name, std::string_view args) {
    if (name == "fill") {
      bench_blob::fill(blob_, std::stoull(std::string(args)));
      generation_ = 1;
      return {};
    }
    if (name == "checksum") return bench_blob::checksum(blob_, generation_);
    throw hotswap::UnsupportedTask(name);
  }

  void export_state(hotswap::StateWriter& out) const {
    out.u64(generation_);
    out.bytes(blob_.data(), blob_.size());
  }
  void import_state(hotswap::StateReader& in) {
    generation_ = in.u64();
    blob_.assign(in.bytes());  // the one copy of the blob on import
    in.expect_end();
  }

 private:
  uint64_t generation_ = 0;
  std::string blob_;
};

HOTSWAP_MODULE(BenchBlob)
