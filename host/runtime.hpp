// The running host: one release booted from a root folder, its modules, its
// listeners, and the operations an operator asks for (upgrade, downgrade,
// reload, make-permanent...). Everything here runs on the event-loop thread;
// only an upgrade's check phase runs on a worker thread while traffic flows.
#pragma once

#include <boost/asio.hpp>
#include <boost/filesystem/path.hpp>
#include <chrono>
#include <functional>
#include <hotswap/appup/manifest.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "admin/admin_server.hpp"
#include "core/library_loader.hpp"
#include "core/module_registry.hpp"
#include "net/network_server.hpp"
#include "release/release_store.hpp"
#include "release/runtime_config.hpp"
#include "upgrade/release_task.hpp"
#include "upgrade/upgrade_executor.hpp"

namespace hotswap::host {

struct UpgradeRequest {
  std::string version;
  std::optional<ReleaseTask> pre_task;  // run before anything pauses; failure aborts
  // Set by the caller that expects a direction ("upgrade"/"downgrade" commands).
  std::optional<appup::Direction> expected_direction;
};

class Runtime {
 public:
  explicit Runtime(const boost::filesystem::path& root);
  ~Runtime();

  boost::asio::io_context& io() { return io_; }
  ReleaseStore& store() { return store_; }
  const appup::ReleaseManifest& manifest() const { return *manifest_; }
  const RuntimeConfig& config() const { return config_; }
  NetworkServer& server() { return server_; }
  ModuleRegistry& registry() { return registry_; }

  // Boots the permanent release: loads its modules (in dependency order),
  // opens its listeners, starts ticks. Throws ConfigError (exit 78) or
  // std::runtime_error with a message for the operator.
  void boot();

  // Opens ROOT/run/admin.sock with `handler` answering requests (see admin_commands.hpp).
  void open_admin(AdminHandler handler);

  // Runs the event loop until stop() finishes. SIGHUP reloads; SIGTERM and SIGINT stop.
  void run();
  // Graceful stop: stop accepting, on_stop for modules, write pending output, close.
  void stop();

  using Done = std::function<void(const UpgradeReport&)>;
  // Starts an upgrade or downgrade to an unpacked release. Refused at once
  // (Refused report, `done` called before returning) when another upgrade runs
  // ("busy"), the release is unknown, the plan or the target config is invalid.
  void upgrade(const UpgradeRequest& request, const ProgressListener& progress, Done done);
  bool busy() const { return busy_; }

  struct ReloadResult {
    nlohmann::json result;  // {"action": "upgrade"|"config"|"none", ...}
    std::string error;      // empty on success
    bool busy = false;      // refused because an upgrade is running
  };
  // Newest newer release → upgrade; otherwise re-reads the runtime config and
  // tells modules whose section changed.
  void reload(const ProgressListener& progress, std::function<void(const ReloadResult&)> done);

  // The plan to `version`, without doing it. Throws.
  appup::Plan plan_to(const std::string& version);

  // Unpacks a release tarball on the worker thread (it reads, hashes and writes
  // megabytes, which must not stall the event loop); `done` runs on the loop.
  void unpack(const std::string& tarball, std::function<void(std::string version, std::string error)> done);

  nlohmann::json status() const;
  void set_log_level(const std::string& level);  // throws std::invalid_argument
  void make_permanent(const std::string& version);

 private:
  void apply_config(const RuntimeConfig& next, bool at_boot);
  struct UpgradeJob;
  appup::ReleaseManifest load_unpacked(const std::string& version) const;  // throws naming the release
  void check_upgradable(const appup::Plan& plan, const RuntimeConfig& target_config) const;
  void prepare_upgrade(UpgradeJob& job);                        // worker thread
  void apply_upgrade(const std::shared_ptr<UpgradeJob>& job);   // loop
  void finish_upgrade(const std::shared_ptr<UpgradeJob>& job);  // worker, then loop
  void schedule_auto_permanent();
  void wait_for_signals();

  boost::asio::io_context io_;
  boost::asio::signal_set signals_;
  ReleaseStore store_;
  LibraryLoader loader_;
  NetworkServer server_;
  ModuleRegistry registry_;
  UpgradeExecutor executor_;
  boost::asio::thread_pool worker_{1};
  boost::asio::steady_timer auto_permanent_timer_;

  std::optional<appup::ReleaseManifest> manifest_;
  RuntimeConfig config_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  bool busy_ = false;
  std::string busy_with_;
  bool stopping_ = false;
  std::optional<UpgradeReport> last_upgrade_;
  std::unique_ptr<AdminServer> admin_;
};

}  // namespace hotswap::host
