// hotswap_bench: prints one JSON object per line (see bench/README.md).
//
//   swap_pause_load_module  pause (suspend -> resume) of a code-only swap, bench_echo 1.0.0 <-> 1.0.1
//   swap_pause_update_1MiB  pause of a migrating swap of 1 MiB of state, bench_blob 1.0.0 <-> 2.0.0,
//                           against a plain 1 MiB memcpy (cache-hot, and cold) measured in the same run
//   dispatch_overhead       ModuleRegistry::deliver_message against a direct virtual call, and
//                           against a raw call through the module's descriptor
//
// Options: --only NAME (run one benchmark), --quick (fewer runs, for a smoke run).
#include "core/allocator_tuning.hpp"
#include "direct_handler.hpp"
#include "full_reload_bench.hpp"

#include "core/host_services.hpp"
#include "core/library_loader.hpp"
#include "core/module_registry.hpp"
#include "core/sha256.hpp"
#include "upgrade/upgrade_executor.hpp"

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

// ---- swap_pause_load_module ----

void bench_load_module(const Options& opt) {
  const int warmup = opt.quick ? 10 : 50;
  const int runs = opt.quick ? 100 : 2000;
  auto v0 = module_entry("bench_echo", "1.0.0");
  auto v1 = module_entry("bench_echo", "1.0.1");
  auto up = swap_plan(StepKind::LoadModule, "bench_echo", v0, v1, Direction::Upgrade);
  auto down = swap_plan(StepKind::LoadModule, "bench_echo", v1, v0, Direction::Downgrade);

  LibraryLoader loader;
  hotswap::host::DetachedServices services;
  ModuleRegistry registry(services);
  UpgradeExecutor executor(registry, loader);
  ModuleSlot& slot = registry.start(loader.load(v0.file, {v0.name, v0.version, v0.sha256}));
  slot.active().run_task("fill", "null");
  const std::string state_before = slot.active().export_state();

  std::vector<double> pauses;
  pauses.reserve(runs);
  uint64_t messages = 0;
  for (int i = 0; i < warmup + runs; ++i) {
    UpgradeReport r = run_swap(executor, i % 2 == 0 ? up : down);
    if (i >= warmup) pauses.push_back(us(r.pause));
    registry.deliver_message(slot, 1, "ping");  // the new code serves
    ++messages;
  }
  // The state went through every swap unchanged (apart from the messages counted).
  if (slot.active().run_task("count", "null") != std::to_string(messages)) die("bench_echo lost messages");
  if (slot.active().export_state().size() != state_before.size()) die("bench_echo state changed size");
  check_no_leaks(loader);

  std::sort(pauses.begin(), pauses.end());
  std::printf("{\"name\":\"swap_pause_load_module\",\"p50_us\":%.2f,\"p99_us\":%.2f,\"max_us\":%.2f,\"runs\":%d,"
              "\"state_bytes\":%zu}\n",
              percentile(pauses, 50), percentile(pauses, 99), pauses.back(), runs, state_before.size());
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

const std::vector<std::string> kBenchmarks = {"swap_pause_load_module", "swap_pause_update_1MiB",
                                              "dispatch_overhead", "full_reload"};

// Fills `opt` from the command line. Returns the status to exit with instead
// of running: 0 after --help, 2 for a bad command line.
std::optional<int> parse_options(int argc, char** argv, Options& opt) {
  CLI::App app("hotswap_bench: prints one JSON object per benchmark (see bench/README.md)", "hotswap_bench");
  app.add_option("--only", opt.only, "run this benchmark only")->type_name("NAME")->check(CLI::IsMember(kBenchmarks));
  app.add_flag("--quick", opt.quick, "fewer runs (a smoke run; the figures are not meaningful)");
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
    if (opt.only.empty() || opt.only == kBenchmarks[0]) bench_load_module(opt);
    if (opt.only.empty() || opt.only == kBenchmarks[1]) bench_update(opt);
    if (opt.only.empty() || opt.only == kBenchmarks[2]) bench_dispatch(opt, variant);
    if (opt.only.empty() || opt.only == kBenchmarks[3]) hotswap::bench::bench_full_reload(opt.quick);
  } catch (const std::exception& e) {
    die(e.what());
  }
  return 0;
}
