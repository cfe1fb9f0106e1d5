// full_reload (issue 12): the wall time of a whole code-only reload of a
// trivial module (bench_echo 1.0.0 <-> 1.0.1) through UpgradeExecutor::run:
// load (copy into a sealed memory file, hash, ELF check, probe when on,
// dlopen), check, pause, purge (dlclose and the check that it unmapped).
//
// Its floor, measured in the same run on the same file system, is what every
// dlopen-based reloader pays (cr.h's reload is about this): a plain copy of
// the same library to a fresh file, then dlopen + dlsym + dlclose.
// `full_reload_vs_floor` is the ratio of the two medians.
//
// Run on the build folder's file system and on /dev/shm (tmpfs), each with
// the probe child off and on. One JSON line per combination. With
// FULL_RELOAD_BREAKDOWN set, a line before each gives LibraryLoader::load and
// LoadedLibrary::close alone.
#include "full_reload_bench.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/filesystem.hpp>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <hotswap/appup/planner.hpp>
#include <hotswap/module.h>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/host_services.hpp"
#include "core/library_loader.hpp"
#include "core/module_probe.hpp"
#include "core/module_registry.hpp"
#include "core/sha256.hpp"
#include "upgrade/upgrade_executor.hpp"

namespace hotswap::bench {
namespace {

namespace fs = boost::filesystem;
using Clock = std::chrono::steady_clock;

double us_since(Clock::time_point start) {
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
}

double percentile(std::vector<double> samples, double p) {
  if (samples.empty()) return 0;
  std::sort(samples.begin(), samples.end());
  const size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(samples.size())));
  return samples[std::min(samples.size(), std::max<size_t>(rank, 1)) - 1];
}

// A 0755 folder removed with its contents.
class Folder {
 public:
  explicit Folder(const fs::path& parent) : path_(parent / fs::unique_path("hotswap-full-reload-%%%%%%%%")) {
    fs::create_directories(path_);
    ::chmod(path_.c_str(), 0755);
  }
  ~Folder() {
    boost::system::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// read/write copy, no sync: what a reloader that copies to a fresh path does.
void plain_copy(const fs::path& from, const fs::path& to) {
  const int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  const int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
  if (in < 0 || out < 0) throw std::runtime_error("floor: cannot copy " + from.string() + " to " + to.string());
  char buffer[256 * 1024];
  for (ssize_t got; (got = ::read(in, buffer, sizeof buffer)) > 0;)
    if (::write(out, buffer, static_cast<size_t>(got)) != got) throw std::runtime_error("floor: short write");
  ::close(in);
  ::close(out);
}

appup::ModuleEntry entry_in(const fs::path& folder, const std::string& version) {
  appup::ModuleEntry e;
  e.name = "bench_echo";
  e.version = version;
  e.file = folder / ("bench_echo-" + version + ".so");
  // Not fs::copy_file: Boost 1.74's fails across file systems ("Invalid cross-device link").
  plain_copy(fs::path(HOTSWAP_BENCH_MODULES_DIR) / e.file.filename(), e.file);
  e.sha256 = host::sha256_file(e.file);
  return e;
}

appup::Plan load_module_plan(const appup::ModuleEntry& from, const appup::ModuleEntry& to, appup::Direction direction) {
  appup::PlanStep s;
  s.kind = appup::StepKind::LoadModule;
  s.module = "bench_echo";
  s.direction = direction;
  s.from_version = from.version;
  s.to_version = to.version;
  s.code = to;
  s.extra = nullptr;
  s.task_args = nullptr;
  s.origin = "bench";
  appup::Plan p;
  p.direction = direction;
  p.release_name = "bench";
  p.from_release = from.version;
  p.to_release = to.version;
  p.steps.push_back(std::move(s));
  return p;
}

// The floor's samples: copy to a fresh file, dlopen, dlsym, dlclose.
std::vector<double> floor_samples(const fs::path& folder, const fs::path& library, int warmup, int runs) {
  std::vector<double> samples;
  for (int i = 0; i < warmup + runs; ++i) {
    const fs::path copy = folder / ("floor-" + std::to_string(i) + ".so");
    const Clock::time_point start = Clock::now();
    plain_copy(library, copy);
    void* handle = ::dlopen(copy.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) throw std::runtime_error(std::string("floor: dlopen failed: ") + ::dlerror());
    if (::dlsym(handle, HOTSWAP_ENTRY_SYMBOL) == nullptr) throw std::runtime_error("floor: no entry symbol");
    ::dlclose(handle);
    const double took = us_since(start);
    ::unlink(copy.c_str());  // not timed: a reloader may leave its copies for later
    if (i >= warmup) samples.push_back(took);
  }
  return samples;
}

void run_one(const std::string& fs_name, const fs::path& parent, bool probe_on, bool quick) {
  const int warmup = quick ? 3 : 20;
  const int runs = quick ? 20 : (probe_on ? 200 : 1000);
  Folder folder(parent);
  const appup::ModuleEntry v0 = entry_in(folder.path(), "1.0.0");
  const appup::ModuleEntry v1 = entry_in(folder.path(), "1.0.1");
  const appup::Plan up = load_module_plan(v0, v1, appup::Direction::Upgrade);
  const appup::Plan down = load_module_plan(v1, v0, appup::Direction::Downgrade);

  std::shared_ptr<host::ModuleProbe> probe;
  if (probe_on) probe = std::make_shared<host::ChildProcessProbe>(HOTSWAP_BINARY);
  host::LibraryLoader loader({}, os::real_os_sys_calls(), probe);
  host::DetachedServices services;
  host::ModuleRegistry registry(services);
  host::UpgradeExecutor executor(registry, loader);
  registry.start(loader.load(v0.file, {v0.name, v0.version, v0.sha256}));

  // Interleaved with the floor in blocks, so that both see the same machine load.
  std::vector<double> reloads, floors;
  const int blocks = 10;
  for (int block = 0; block < blocks; ++block) {
    for (int i = 0; i < warmup / blocks + runs / blocks; ++i) {
      const Clock::time_point start = Clock::now();
      const host::UpgradeReport report = executor.run((reloads.size() + i) % 2 == 0 ? up : down);
      const double took = us_since(start);
      if (!report.committed()) throw std::runtime_error("full_reload: the swap did not commit: " + report.summary());
      if (!report.leaked.empty()) throw std::runtime_error("full_reload: a library stayed mapped");
      if (i >= warmup / blocks) reloads.push_back(took);
    }
    const std::vector<double> more = floor_samples(folder.path(), v0.file, warmup / blocks, runs / blocks);
    floors.insert(floors.end(), more.begin(), more.end());
  }
  registry.stop_all();
  if (std::getenv("FULL_RELOAD_BREAKDOWN") != nullptr) {
    std::vector<double> loads, closes;
    for (int i = 0; i < runs; ++i) {
      Clock::time_point start = Clock::now();
      auto lib = loader.load(v1.file, {v1.name, v1.version, v1.sha256});
      loads.push_back(us_since(start));
      start = Clock::now();
      lib->close();
      closes.push_back(us_since(start));
    }
    std::printf("{\"breakdown\":1,\"load_p50_us\":%.1f,\"close_p50_us\":%.1f}\n", percentile(loads, 50),
                percentile(closes, 50));
  }

  const double p50 = percentile(reloads, 50), floor_p50 = percentile(floors, 50);
  std::printf(
      "{\"name\":\"full_reload\",\"fs\":\"%s\",\"probe\":%s,\"p50_us\":%.1f,\"p99_us\":%.1f,\"floor_us\":%.1f,"
      "\"floor_p99_us\":%.1f,\"full_reload_vs_floor\":%.2f,\"runs\":%zu}\n",
      fs_name.c_str(), probe_on ? "true" : "false", p50, percentile(reloads, 99), floor_p50, percentile(floors, 99),
      p50 / floor_p50, reloads.size());
  std::fflush(stdout);
}

}  // namespace

void bench_full_reload(bool quick) {
  const fs::path build_fs = fs::path(HOTSWAP_BENCH_MODULES_DIR);
  for (const bool probe_on : {false, true}) {
    run_one("build", build_fs, probe_on, quick);
    if (fs::is_directory("/dev/shm")) run_one("tmpfs", "/dev/shm", probe_on, quick);
  }
}

}  // namespace hotswap::bench
