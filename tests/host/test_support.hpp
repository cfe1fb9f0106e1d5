// Shared helpers for host tests: paths of the test modules, a recording
// HostServices, and small builders for plans.
#pragma once

#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <boost/filesystem.hpp>
#include <fstream>
#include <memory>
#include <hotswap/appup/planner.hpp>
#include <hotswap/appup/semver.hpp>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/host_services.hpp"
#include "core/module_registry.hpp"
#include "recording_services.hpp"
#include "core/sha256.hpp"

namespace hotswap::test {

inline boost::filesystem::path module_file(const std::string& variant, const std::string& name,
                                           const std::string& version) {
  return boost::filesystem::path(HOTSWAP_TEST_MODULES_DIR) / variant / (name + "-" + version + ".so");
}

inline appup::ModuleEntry module_entry(const std::string& name, const std::string& version,
                                       const std::string& variant = "good") {
  appup::ModuleEntry e;
  e.name = name;
  e.version = version;
  e.file = module_file(variant, name, version);
  if (boost::filesystem::exists(e.file)) e.sha256 = host::sha256_file(e.file);
  return e;
}

inline appup::PlanStep step(appup::StepKind kind, const std::string& module, const std::string& from,
                            const std::string& to, const std::string& variant = "good") {
  appup::PlanStep s;
  s.kind = kind;
  s.module = module;
  s.from_version = from;
  s.to_version = to;
  bool down = !from.empty() && !to.empty() && *appup::Version::parse(to) < *appup::Version::parse(from);
  s.direction = down ? appup::Direction::Downgrade : appup::Direction::Upgrade;
  if (kind != appup::StepKind::DeleteModule && kind != appup::StepKind::Apply)
    s.code = module_entry(module, to, variant);
  s.extra = nullptr;
  s.task_args = nullptr;
  s.origin = "test";
  return s;
}

inline appup::Plan plan_of(std::vector<appup::PlanStep> steps, const std::string& from = "1",
                           const std::string& to = "2") {
  appup::Plan p;
  p.release_name = "test";
  p.from_release = from;
  p.to_release = to;
  p.steps = std::move(steps);
  return p;
}

// Captures what the default spdlog logger writes while it lives.
class LogCapture {
 public:
  LogCapture() : previous_(spdlog::default_logger()) {
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink_));
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  std::vector<std::string> lines() const { return sink_->last_formatted(); }
  size_t count(const std::string& text) const {
    size_t n = 0;
    for (const std::string& line : lines())
      if (line.find(text) != std::string::npos) ++n;
    return n;
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_ = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(4096);
  std::shared_ptr<spdlog::logger> previous_;
};

// Counts the lines of /proc/self/maps (only those mapping a file when
// `files_only`: a sanitizer's allocator adds and drops anonymous mappings of
// its own) and the open descriptors of this process.
inline size_t mapping_count(bool files_only = false) {
  size_t lines = 0;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line))
    if (!files_only || line.find(" /") != std::string::npos) ++lines;
  return lines;
}

inline size_t open_fd_count() {
  size_t n = 0;
  for (auto it = boost::filesystem::directory_iterator("/proc/self/fd"); it != boost::filesystem::directory_iterator();
       ++it)
    ++n;
  return n;
}

}  // namespace hotswap::test
