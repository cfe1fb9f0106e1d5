// The running process's side of a blue-green handover (blue). It starts the
// target release's host binary (green) with one inherited socket, waits while
// serving until green has loaded, then pauses and hands over the listening
// sockets, the established connections and the module state
// (handover_channel.hpp has the conversation), and retires only once green
// reports ready. Until that point any failure (green exits or crashes, times
// out, reports an error, a message fails) kills green and resumes every
// listener and connection here: nothing is closed, no byte is lost.
//
// Loop thread only. The wait for green to load is asynchronous (traffic flows
// meanwhile); from the pause to the commit the loop is held, bounded by the
// handover timeout: that stretch is the stall the clients see.
#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/filesystem/path.hpp>
#include <chrono>
#include <functional>
#include <memory>

#include "handover/handover_state.hpp"
#include "os/os_sys_calls.hpp"
#include "upgrade/upgrade_coordinator.hpp"
#include "upgrade/upgrade_report.hpp"

namespace hotswap::host {

class AdminServer;
class NetworkServer;
class ModuleRegistry;

// What blue hands over, in the running host.
struct BlueSide {
  boost::asio::io_context& io;
  NetworkServer& server;
  ModuleRegistry& registry;
  os::OsSysCalls& os;
  boost::filesystem::path root;
  AdminServer* admin = nullptr;  // its listening socket moves too; nullptr: none
  const RuntimeConfig* running_config = nullptr;  // the listeners as configured (framing, module)
};

class HandoverBlue {
 public:
  using Done = std::function<void(const HandoverFigures& figures)>;

  explicit HandoverBlue(BlueSide side);
  // A handover still running is abandoned: green is killed and reaped, and
  // what was paused resumes (only while the loop still exists).
  ~HandoverBlue();
  HandoverBlue(const HandoverBlue&) = delete;
  HandoverBlue& operator=(const HandoverBlue&) = delete;

  bool running() const;
  // Ends a running handover now as failed (`reason`): green is killed and
  // everything paused resumes; its `done` is called as for any failure.
  void abort(const std::string& reason);
  // The admin socket that moves with the listeners (it opens after boot).
  void set_admin(AdminServer* admin) { side_.admin = admin; }
  // Starts green on `request.host_binary` and runs the handover. `done` is
  // called exactly once, on the loop (never before start returns): committed,
  // green serves and this process must retire without touching a connection
  // (the server and the admin socket already let go of theirs); otherwise
  // everything here serves on and figures.error says why.
  void start(const BlueGreenRequest& request, std::chrono::milliseconds timeout, const ProgressListener& progress,
             Done done);
  // Green's pid once started (MAINPID for the service manager); 0 before.
  pid_t green_pid() const;
  // The last handover's figures (committed or not); null before the first.
  nlohmann::json last_figures() const;
  // The new process records the handover that made it (status shows it).
  void set_last_figures(nlohmann::json figures) { last_figures_ = std::move(figures); }

 private:
  struct Run;
  BlueSide side_;
  std::shared_ptr<Run> run_;  // while running
  nlohmann::json last_figures_ = nullptr;
  pid_t last_green_ = 0;  // of the last handover that committed
};

}  // namespace hotswap::host
