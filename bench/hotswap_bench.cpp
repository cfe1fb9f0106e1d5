// hotswap_bench: prints one JSON object per line (see bench/README.md).
//
//   swap_pause_load_module  pause (suspend -> resume) of a code-only swap of bench_state 1.0.0 <-> 1.0.1,
//                           per state size, by adoption and by export/import, against a memcpy of
//                           the same size measured in the same run
//   swap_pause_update       the same for an update: same-schema 1.0.0 <-> 1.0.1 by adoption, and a
//                           schema change 1.0.0 <-> 2.0.0 (export, migrate) by export/import
//   swap_pause_arena        the arena example's code-only swap 1.0.0 <-> 1.1.0 at 100 and 5,000
//                           players, by adoption and by export/import
//   swap_pause_update_1MiB  pause of a migrating swap of 1 MiB of state, bench_blob 1.0.0 <-> 2.0.0,
//                           against a plain 1 MiB memcpy (cache-hot, and cold) measured in the same run
//   dispatch_overhead       ModuleRegistry::deliver_message against a direct virtual call, and
//                           against a raw call through the module's descriptor
//
// Options: --only NAME (run one benchmark), --quick (fewer runs, for a smoke run),
// --sizes LIST (state sizes of the sized benchmarks, e.g. 1KiB,1MiB,128MiB,1GiB),
// --paths LIST (adopt, export_import).
#include "core/allocator_tuning.hpp"
#include "direct_handler.hpp"
#include "full_reload_bench.hpp"

#include "core/host_services.hpp"
#include "core/library_loader.hpp"
#include "core/module_registry.hpp"
#include "core/sha256.hpp"
#include "upgrade/upgrade_executor.hpp"
#include "upgrade/rehearsal.hpp"  // rehearsal_cost

#include <hotswap/appup/planner.hpp>

#include <CLI/CLI.hpp>
#include <boost/filesystem.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace fs = boost::filesystem;
using hotswap::appup::Direction;
using hotswap::appup::StepKind;
using hotswap::host::LibraryLoader;
using hotswap::host::ModuleRegistry;
using hotswap::host::ModuleSlot;
using hotswap::host::UpgradeExecutor;
using hotswap::host::UpgradeReport;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string only;
  bool quick = false;
  std::vector<std::string> sizes = {"1KiB", "1MiB", "128MiB", "1GiB"};
  std::vector<std::string> paths = {"adopt", "export_import"};
};

// ---- plans ----

hotswap::appup::ModuleEntry module_entry(const std::string& name, const std::string& version) {
  hotswap::appup::ModuleEntry e;
  e.name = name;
  e.version = version;
  e.file = fs::path(HOTSWAP_BENCH_MODULES_DIR) / (name + "-" + version + ".so");
  if (!fs::exists(e.file)) throw std::runtime_error("bench module " + e.file.string() + " is missing; build bench_modules");
  e.sha256 = hotswap::host::sha256_file(e.file);
  return e;
}

// A one-step plan swapping `module` from one version to the other.
hotswap::appup::Plan swap_plan(StepKind kind, const std::string& module, const hotswap::appup::ModuleEntry& from,
                               const hotswap::appup::ModuleEntry& to, Direction direction) {
  hotswap::appup::PlanStep s;
  s.kind = kind;
  s.module = module;
  s.direction = direction;
  s.from_version = from.version;
  s.to_version = to.version;
  s.code = to;
  s.extra = nullptr;
  s.task_args = nullptr;
  s.origin = "bench";
  hotswap::appup::Plan p;
  p.direction = direction;
  p.release_name = "bench";
  p.from_release = from.version;
  p.to_release = to.version;
  p.steps.push_back(std::move(s));
  return p;
}

// ---- statistics ----

// Nearest-rank percentile of an ascending-sorted sample.
double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return sorted[std::min(sorted.size(), std::max<size_t>(rank, 1)) - 1];
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return percentile(v, 50);
}

double us(std::chrono::nanoseconds d) { return std::chrono::duration<double, std::micro>(d).count(); }

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "hotswap_bench: %s\n", why.c_str());
  std::exit(1);
}

UpgradeReport run_swap(UpgradeExecutor& executor, const hotswap::appup::Plan& plan) {
  UpgradeReport r = executor.run(plan);
  if (!r.committed()) die("swap did not commit: " + r.summary());
  if (!r.leaked.empty()) die("swap leaked a library: " + r.summary());
  return r;
}

void check_no_leaks(const LibraryLoader& loader) {
  if (!loader.leaked().empty()) die("libraries stayed mapped: " + loader.leaked().front());
}

// ---- swap_pause_load_module / swap_pause_update (sized) ----

// "1KiB", "128MiB", "1GiB" or a number of bytes.
size_t parse_size(const std::string& text) {
  size_t pos = 0;
  unsigned long long n = std::stoull(text, &pos);
  std::string unit = text.substr(pos);
  if (unit.empty() || unit == "B") return n;
  if (unit == "KiB") return n << 10;
  if (unit == "MiB") return n << 20;
  if (unit == "GiB") return n << 30;
  throw std::invalid_argument("bad size '" + text + "' (use e.g. 1KiB, 1MiB, 128MiB, 1GiB or bytes)");
}

// The median time of `count` memcpy's of `bytes` between two buffers whose
// pages were written beforehand (hot: copied back to back; for sizes beyond
// the caches, a copy from and to DRAM with no page faults).
double memcpy_median_us(size_t bytes, int count) {
  std::vector<char> src(bytes, 1), dst(bytes, 2);
  std::vector<double> samples;
  for (int i = -2; i < count; ++i) {
    src[static_cast<size_t>(i + 2) % bytes] = static_cast<char>(i);
    Clock::time_point t0 = Clock::now();
    std::memcpy(dst.data(), src.data(), bytes);
    asm volatile("" : : "r"(dst.data()), "r"(src.data()) : "memory");
    if (i >= 0) samples.push_back(us(Clock::now() - t0));
  }
  return median(samples);
}

struct SizedCase {
  const char* name;     // the JSON name
  StepKind kind;        // LoadModule or Update
  bool adopt;           // the executor adopts (the check must choose it too)
  const char* other;    // the version swapped with 1.0.0
};

// The state of bench_state keeps its blob plus a few bytes of header.
constexpr size_t kHeaderBytes = 64;

void bench_sized(const Options& opt, const SizedCase& c, size_t requested_bytes) {
  // An export must fit the host's limit on state size, header included.
  const size_t bytes = std::min(requested_bytes, hotswap::host::kMaxStateBytes - kHeaderBytes);
  const bool big = bytes >= (size_t(64) << 20), huge = bytes >= (size_t(512) << 20);
  const int warmup = c.adopt ? 10 : big ? 2 : 10;
  const int runs = c.adopt ? (opt.quick ? 50 : 400)
                   : huge  ? (opt.quick ? 2 : 6)
                   : big   ? (opt.quick ? 4 : 20)
                           : (opt.quick ? 50 : 400);
  const int memcpy_count = huge ? 3 : big ? 10 : bytes >= (size_t(1) << 20) ? 200 : 2000;
  const std::string path = c.adopt ? "adopt" : "export_import";

  auto v0 = module_entry("bench_state", "1.0.0");
  auto v1 = module_entry("bench_state", c.other);
  auto up = swap_plan(c.kind, "bench_state", v0, v1, Direction::Upgrade);
  auto down = swap_plan(c.kind, "bench_state", v1, v0, Direction::Downgrade);

  // The memcpy baseline, before and after the swaps (so that both share the run's conditions).
  std::vector<double> memcpy_us{memcpy_median_us(bytes, memcpy_count)};

  std::vector<double> pauses;
  {
    LibraryLoader loader;
    hotswap::host::DetachedServices services;
    ModuleRegistry registry(services);
    UpgradeExecutor executor(registry, loader);
    executor.set_state_adoption(c.adopt);
    ModuleSlot& slot = registry.start(loader.load(v0.file, {v0.name, v0.version, v0.sha256}));
    slot.active().run_task("fill", std::to_string(bytes));
    const std::string checksum = slot.active().run_task("checksum", "null");
    const std::string address = slot.active().run_task("address", "null");

    pauses.reserve(static_cast<size_t>(runs));
    int swaps = 0;
    for (; swaps < warmup + runs; ++swaps) {
      UpgradeReport r = run_swap(executor, swaps % 2 == 0 ? up : down);
      if (r.steps.size() != 1 || r.steps[0].state_path != path)
        die(std::string(c.name) + ": the swap took path '" + (r.steps.empty() ? "" : r.steps[0].state_path) +
            "', not " + path + (r.steps.empty() ? "" : " (" + r.steps[0].fallback + ")"));
      if (swaps >= warmup) pauses.push_back(us(r.pause));
    }
    if (swaps % 2 != 0) run_swap(executor, down);  // back on 1.0.0
    if (slot.active().run_task("checksum", "null") != checksum) die(std::string(c.name) + ": state changed across swaps");
    if (c.adopt && slot.active().run_task("address", "null") != address)
      die(std::string(c.name) + ": adoption moved the state object");
    check_no_leaks(loader);
  }
  memcpy_us.push_back(memcpy_median_us(bytes, memcpy_count));

  std::sort(pauses.begin(), pauses.end());
  const double p50 = percentile(pauses, 50), p99 = percentile(pauses, 99), mc = median(memcpy_us);
  std::printf("{\"name\":\"%s\",\"state_bytes\":%zu,\"path\":\"%s\",\"p50_us\":%.2f,\"p99_us\":%.2f,\"max_us\":%.2f,"
              "\"runs\":%d,\"memcpy_us\":%.2f,\"ratio_to_memcpy\":%.3f,\"p99_ratio_to_memcpy\":%.3f,"
              "\"schema_change\":%s}\n",
              c.name, bytes, path.c_str(), p50, p99, pauses.back(), runs, mc, p50 / mc, p99 / mc,
              c.kind == StepKind::Update && !c.adopt ? "true" : "false");
  std::fflush(stdout);
}

void bench_sized_kind(const Options& opt, bool update) {
  for (const std::string& size : opt.sizes) {
    const size_t bytes = parse_size(size);
    for (const std::string& path : opt.paths) {
      const bool adopt = path == "adopt";
      SizedCase c = update ? SizedCase{"swap_pause_update", StepKind::Update, adopt, adopt ? "1.0.1" : "2.0.0"}
                           : SizedCase{"swap_pause_load_module", StepKind::LoadModule, adopt, "1.0.1"};
      bench_sized(opt, c, bytes);
    }
  }
}

// ---- swap_pause_arena ----

// The arena example's code-only swap (1.0.0 <-> 1.1.0, load_module) with
// `players` joined players, by adoption or by export/import.
void bench_arena(const Options& opt, int players, bool adopt) {
  const int warmup = 10, runs = opt.quick ? 40 : 400;
  auto entry = [](const std::string& version) {
    hotswap::appup::ModuleEntry e;
    e.name = "arena";
    e.version = version;
    e.file = fs::path(HOTSWAP_ARENA_MODULES_DIR) / ("arena-" + version + ".so");
    if (!fs::exists(e.file)) throw std::runtime_error("arena module " + e.file.string() + " is missing");
    e.sha256 = hotswap::host::sha256_file(e.file);
    return e;
  };
  auto v0 = entry("1.0.0"), v1 = entry("1.1.0");
  auto up = swap_plan(StepKind::LoadModule, "arena", v0, v1, Direction::Upgrade);
  auto down = swap_plan(StepKind::LoadModule, "arena", v1, v0, Direction::Downgrade);
  const std::string path = adopt ? "adopt" : "export_import";

  LibraryLoader loader;
  hotswap::host::DetachedServices services;
  ModuleRegistry registry(services);
  registry.set_module_config("arena", "{}");
  UpgradeExecutor executor(registry, loader);
  executor.set_state_adoption(adopt);
  ModuleSlot& slot = registry.start(loader.load(v0.file, {v0.name, v0.version, v0.sha256}));
  for (int p = 1; p <= players; ++p)
    registry.deliver_message(slot, static_cast<hotswap_conn_id>(p), "1 join p" + std::to_string(p));
  const std::string state = slot.active().export_state();
  std::vector<double> pauses;
  int swaps = 0;
  for (; swaps < warmup + runs; ++swaps) {
    UpgradeReport r = run_swap(executor, swaps % 2 == 0 ? up : down);
    if (r.steps.size() != 1 || r.steps[0].state_path != path) die("swap_pause_arena: the swap did not take " + path);
    if (swaps >= warmup) pauses.push_back(us(r.pause));
  }
  if (slot.active().export_state() != state) die("swap_pause_arena: the players changed across swaps");
  check_no_leaks(loader);
  std::sort(pauses.begin(), pauses.end());
  std::printf("{\"name\":\"swap_pause_arena\",\"players\":%d,\"path\":\"%s\",\"p50_us\":%.2f,\"p99_us\":%.2f,"
              "\"max_us\":%.2f,\"runs\":%d,\"state_bytes\":%zu}\n",
              players, path.c_str(), percentile(pauses, 50), percentile(pauses, 99), pauses.back(), runs,
              state.size());
  std::fflush(stdout);
}

// ---- swap_pause_update_1MiB ----

constexpr size_t kBlobBytes = size_t(1) << 20;

// Times `count` plain memcpy's of 1 MiB into a pre-touched destination.
void time_memcpy(std::vector<char>& src, std::vector<char>& dst, int count, std::vector<double>& samples_us) {
  for (int i = 0; i < count; ++i) {
    src[static_cast<size_t>(i) % src.size()] = static_cast<char>(i);
    Clock::time_point t0 = Clock::now();
    std::memcpy(dst.data(), src.data(), kBlobBytes);
    // Compiler barrier: the copy's result is "used", so it cannot be elided or sunk.
    asm volatile("" : : "r"(dst.data()), "r"(src.data()) : "memory");
    samples_us.push_back(us(Clock::now() - t0));
  }
}

// Times `count` memcpy's of 1 MiB whose source and destination were first
// evicted from every cache level by sweeping a 64 MiB buffer: the cost of a copy
// of state that is not cache-resident.
void time_cold_memcpy(std::vector<char>& src, std::vector<char>& dst, int count, std::vector<double>& samples_us) {
  std::vector<char> sweep(size_t(64) << 20, 1);
  for (int i = 0; i < count; ++i) {
    for (size_t j = 0; j < sweep.size(); j += 64) sweep[j] = static_cast<char>(sweep[j] + 1);
    asm volatile("" : : "r"(sweep.data()) : "memory");
    Clock::time_point t0 = Clock::now();
    std::memcpy(dst.data(), src.data(), kBlobBytes);
    asm volatile("" : : "r"(dst.data()), "r"(src.data()) : "memory");
    samples_us.push_back(us(Clock::now() - t0));
  }
}

void bench_update(const Options& opt) {
  const int warmup = opt.quick ? 4 : 20;
  const int runs = opt.quick ? 20 : 400;
  const int memcpy_per_block = opt.quick ? 100 : 400;
  auto v1 = module_entry("bench_blob", "1.0.0");
  auto v2 = module_entry("bench_blob", "2.0.0");
  auto up = swap_plan(StepKind::Update, "bench_blob", v1, v2, Direction::Upgrade);
  auto down = swap_plan(StepKind::Update, "bench_blob", v2, v1, Direction::Downgrade);

  LibraryLoader loader;
  hotswap::host::DetachedServices services;
  ModuleRegistry registry(services);
  UpgradeExecutor executor(registry, loader);
  ModuleSlot& slot = registry.start(loader.load(v1.file, {v1.name, v1.version, v1.sha256}));
  slot.active().run_task("fill", std::to_string(kBlobBytes));
  const std::string checksum = slot.active().run_task("checksum", "null");

  std::vector<char> src(kBlobBytes), dst(kBlobBytes);
  for (size_t i = 0; i < kBlobBytes; ++i) src[i] = static_cast<char>(i * 31);
  std::memset(dst.data(), 1, dst.size());  // pre-touch every page
  std::vector<double> memcpy_us;
  time_memcpy(src, dst, 20, memcpy_us);  // warm up
  memcpy_us.clear();

  std::vector<double> pauses;
  pauses.reserve(runs);
  // memcpy blocks before, between and after the quarters of the swaps share the run's noise.
  const int total = warmup + runs, quarters = 4;
  int swaps = 0;
  for (int q = 0; q < quarters; ++q) {
    time_memcpy(src, dst, memcpy_per_block, memcpy_us);
    for (; swaps < total * (q + 1) / quarters; ++swaps) {
      UpgradeReport r = run_swap(executor, swaps % 2 == 0 ? up : down);
      if (swaps >= warmup) pauses.push_back(us(r.pause));
    }
  }
  time_memcpy(src, dst, memcpy_per_block, memcpy_us);
  std::vector<double> cold_memcpy_us;
  time_cold_memcpy(src, dst, opt.quick ? 10 : 50, cold_memcpy_us);
  // Even number of swaps: 1.0.0 serves again, and its blob is the one we filled.
  if (slot.active().version() != (swaps % 2 == 0 ? "1.0.0" : "2.0.0")) die("bench_blob runs the wrong version");
  if (slot.active().run_task("checksum", "null") != checksum) die("bench_blob state changed across swaps");
  check_no_leaks(loader);

  std::sort(pauses.begin(), pauses.end());
  double p50 = percentile(pauses, 50);
  double mc = median(memcpy_us);
  double cold = median(cold_memcpy_us);
  std::printf("{\"name\":\"swap_pause_update_1MiB\",\"p50_us\":%.2f,\"p99_us\":%.2f,\"max_us\":%.2f,\"runs\":%d,"
              "\"memcpy_1MiB_us\":%.2f,\"ratio_to_memcpy\":%.2f,\"memcpy_1MiB_cold_us\":%.2f,"
              "\"ratio_to_cold_memcpy\":%.2f}\n",
              p50, percentile(pauses, 99), pauses.back(), runs, mc, p50 / mc, cold, p50 / cold);
  std::fflush(stdout);
}

// ---- dispatch_overhead ----

void bench_dispatch(const Options& opt, int variant) {
  const int rounds = opt.quick ? 4 : 20;
  const uint64_t batch = opt.quick ? 250'000 : 1'000'000;
  auto v0 = module_entry("bench_echo", "1.0.0");

  LibraryLoader loader;
  hotswap::host::DetachedServices services;
  ModuleRegistry registry(services);
  ModuleSlot& slot = registry.start(loader.load(v0.file, {v0.name, v0.version, v0.sha256}));
  std::unique_ptr<hotswap::bench::DirectHandler> direct = hotswap::bench::make_direct_handler(variant);
  const std::string_view message = "ping";

  // The floor for any dispatch from this executable into the module: its
  // on_message called through the descriptor, with everything looked up once.
  const auto module_on_message = slot.active().descriptor().on_message;
  hotswap_instance* const module_handle = slot.active().handle();
  const hotswap_bytes message_bytes{reinterpret_cast<const uint8_t*>(message.data()), message.size()};
  char error_text[hotswap::host::kErrorCapacity] = {};
  hotswap_error error{error_text, sizeof error_text};
  bool module_call_failed = false;

  auto per_call_ns = [&](Clock::time_point t0) {
    return std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / static_cast<double>(batch);
  };
  auto measured_batch = [&] {
    Clock::time_point t0 = Clock::now();
    for (uint64_t i = 0; i < batch; ++i) registry.deliver_message(slot, 1, message);
    return per_call_ns(t0);
  };
  auto direct_batch = [&] {
    Clock::time_point t0 = Clock::now();
    for (uint64_t i = 0; i < batch; ++i) direct->on_message(1, message);
    return per_call_ns(t0);
  };
  auto module_call_batch = [&] {
    Clock::time_point t0 = Clock::now();
    for (uint64_t i = 0; i < batch; ++i)
      module_call_failed |= module_on_message(module_handle, 1, message_bytes, &error) != HOTSWAP_OK;
    return per_call_ns(t0);
  };
  measured_batch();  // warm up (not counted below)
  direct_batch();
  module_call_batch();
  std::vector<double> measured, baseline, module_call;
  for (int r = 0; r < rounds; ++r) {
    // Rotate the order, so that none always follows another.
    for (int k = 0; k < 3; ++k) {
      switch ((r + k) % 3) {
        case 0: measured.push_back(measured_batch()); break;
        case 1: baseline.push_back(direct_batch()); break;
        case 2: module_call.push_back(module_call_batch()); break;
      }
    }
  }
  const uint64_t calls = batch * static_cast<uint64_t>(rounds);
  // Every call arrived: the module counted the registry's and the raw calls.
  if (slot.active().run_task("count", "null") != std::to_string(2 * (calls + batch))) die("bench_echo missed messages");
  if (direct->count() != calls + batch) die("direct handler missed calls");
  if (slot.stats().failed_events != 0 || module_call_failed) die("on_message failed");
  check_no_leaks(loader);

  double ns = median(measured), direct_ns = median(baseline), module_ns = median(module_call);
  std::printf("{\"name\":\"dispatch_overhead\",\"ns_per_call\":%.3f,\"direct_ns_per_call\":%.3f,\"ratio\":%.2f,"
              "\"calls\":%llu,\"module_call_ns_per_call\":%.3f,\"ratio_to_module_call\":%.2f}\n",
              ns, direct_ns, ns / direct_ns, static_cast<unsigned long long>(calls), module_ns, ns / module_ns);
  std::fflush(stdout);
}

// ---- rehearsal_cost ----

// The live rehearsal of an update (bench_state 1.0.0 -> 2.0.0, a schema
// change: export, migrate_up, import) with `bytes` of state, forked from this
// process as the host forks it: the live pause the fork costs, the
// rehearsal's wall time, and the live upgrade's own pause for the same plan.
// `export_ms`: what exporting the state on the loop costs, the pause a
// rehearsal by a fresh process fed the exported state would add instead of the fork.
// The fork is not all the live process pays: it leaves every page of the
// process write-protected, so each page the live side writes afterwards
// faults once (a copy while the child lives). `touch_after_fork_ms` is
// writing one byte in every page of the state right after the fork, against
// `touch_ms`, the same writes with no fork before them, in the same run.
void bench_rehearsal_cost(const Options& opt, size_t bytes) {
  const bool big = bytes >= (size_t(64) << 20);
  const int runs = opt.quick ? 1 : big ? 3 : 10;
  auto v0 = module_entry("bench_state", "1.0.0");
  auto v2 = module_entry("bench_state", "2.0.0");
  auto up = swap_plan(StepKind::Update, "bench_state", v0, v2, Direction::Upgrade);
  auto down = swap_plan(StepKind::Update, "bench_state", v2, v0, Direction::Downgrade);

  boost::asio::io_context loop;
  LibraryLoader loader;
  hotswap::host::DetachedServices services;
  ModuleRegistry registry(services);
  UpgradeExecutor executor(registry, loader);
  ModuleSlot& slot = registry.start(loader.load(v0.file, {v0.name, v0.version, v0.sha256}));
  slot.active().run_task("fill", std::to_string(bytes));
  // One swap there and back first: the executor's export buffer is ready, as in a host that upgraded before.
  run_swap(executor, up);
  run_swap(executor, down);

  auto touch_ms = [&slot] {
    const Clock::time_point t0 = Clock::now();
    slot.active().run_task("touch", "null");
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  };
  const size_t pages = std::stoull(slot.active().run_task("touch", "null"));
  std::vector<double> fork_ms, wall_ms, pause_estimate_ms, export_ms, touch_plain_ms, touch_forked_ms;
  for (int i = 0; i < runs; ++i) {
    touch_plain_ms.push_back(touch_ms());
    // Timed the second time: the first pays the write faults the last fork left behind.
    for (int pass = 0; pass < 2; ++pass) {
      const Clock::time_point t0 = Clock::now();
      const std::string exported = slot.active().export_state();
      if (pass == 1) export_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    hotswap::host::RehearsalInput input;
    input.plan = up;
    input.back = down;
    std::optional<hotswap::host::RehearsalReport> report;
    auto rehearsal = hotswap::host::Rehearsal::start(
        loop, registry, loader, executor, input, std::chrono::minutes(10), {},
        [&report](const hotswap::host::RehearsalReport& r) { report = r; });
    touch_forked_ms.push_back(touch_ms());  // the child is alive: its snapshot shares every page
    loop.restart();
    loop.run();
    if (!report || !report->passed()) die("rehearsal_cost: " + (report ? report->summary() : "no report"));
    fork_ms.push_back(report->fork_ms);
    wall_ms.push_back(report->wall_ms);
    pause_estimate_ms.push_back(report->pause_estimate_ms);
  }
  // The live upgrade's own pause for the same plan (and back, to measure again).
  std::vector<double> live_pause_ms;
  for (int i = 0; i < runs; ++i) {
    live_pause_ms.push_back(us(run_swap(executor, up).pause) / 1000);
    run_swap(executor, down);
  }
  check_no_leaks(loader);
  const double fork = median(fork_ms), pause = median(live_pause_ms);
  const double touch = median(touch_plain_ms), touch_forked = median(touch_forked_ms);
  std::printf("{\"name\":\"rehearsal_cost\",\"state_bytes\":%zu,\"path\":\"export_import\",\"fork_ms\":%.3f,"
              "\"rehearsal_wall_ms\":%.2f,\"child_pause_estimate_ms\":%.2f,\"live_pause_ms\":%.3f,"
              "\"ratio_fork_to_live_pause\":%.3f,\"export_ms\":%.2f,\"ratio_export_to_fork\":%.2f,"
              "\"pages\":%zu,\"touch_ms\":%.3f,\"touch_after_fork_ms\":%.3f,\"fault_us_per_page\":%.2f,"
              "\"ratio_touch_after_fork\":%.1f,\"runs\":%d}\n",
              bytes, fork, median(wall_ms), median(pause_estimate_ms), pause, fork / pause, median(export_ms),
              median(export_ms) / fork, pages, touch, touch_forked, (touch_forked - touch) * 1000 / double(pages),
              touch_forked / touch, runs);
  std::fflush(stdout);
}

const std::vector<std::string> kBenchmarks = {"swap_pause_load_module", "swap_pause_update", "swap_pause_arena",
                                              "swap_pause_update_1MiB", "dispatch_overhead", "full_reload",
                                              "rehearsal_cost"};

// Fills `opt` from the command line. Returns the status to exit with instead
// of running: 0 after --help, 2 for a bad command line.
std::optional<int> parse_options(int argc, char** argv, Options& opt) {
  CLI::App app("hotswap_bench: prints one JSON object per benchmark (see bench/README.md)", "hotswap_bench");
  app.add_option("--only", opt.only, "run this benchmark only")->type_name("NAME")->check(CLI::IsMember(kBenchmarks));
  app.add_flag("--quick", opt.quick, "fewer runs (a smoke run; the figures are not meaningful)");
  app.add_option("--sizes", opt.sizes, "state sizes of swap_pause_load_module and swap_pause_update")
      ->type_name("LIST")
      ->delimiter(',')
      ->capture_default_str()
      ->check([](const std::string& size) {
        try {
          parse_size(size);
          return std::string();
        } catch (const std::exception& e) {
          return std::string(e.what());
        }
      });
  app.add_option("--paths", opt.paths, "state paths of the sized and arena benchmarks")
      ->type_name("LIST")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::IsMember({"adopt", "export_import"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return 0;
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "hotswap_bench: %s\n%s", e.what(), app.help().c_str());
    return 2;
  }
  return std::nullopt;
}

}  // namespace

int main(int argc, char** argv) {
  hotswap::host::tune_allocator_for_short_pauses();  // as the hotswap host runs
  Options opt;
  if (std::optional<int> exit_status = parse_options(argc, argv, opt)) return *exit_status;
  // Every upgrade logs its summary at info; keep logging out of the measurements.
  spdlog::set_level(spdlog::level::warn);

  // The direct baseline's implementation is picked at run time (argc is at least 1).
  volatile int variant = argc > 1000 ? 1 : 0;
  try {
    auto selected = [&](const std::string& name) { return opt.only.empty() || opt.only == name; };
    if (selected("swap_pause_load_module")) bench_sized_kind(opt, false);
    if (selected("swap_pause_update")) bench_sized_kind(opt, true);
    if (selected("swap_pause_arena"))
      for (int players : {100, 5000})
        for (const std::string& path : opt.paths) bench_arena(opt, players, path == "adopt");
    if (selected("swap_pause_update_1MiB")) bench_update(opt);
    if (selected("dispatch_overhead")) bench_dispatch(opt, variant);
    if (selected("full_reload")) hotswap::bench::bench_full_reload(opt.quick);
    if (selected("rehearsal_cost"))
      for (size_t mib : {1, 64, 512}) bench_rehearsal_cost(opt, mib << 20);
  } catch (const std::exception& e) {
    die(e.what());
  }
  return 0;
}
