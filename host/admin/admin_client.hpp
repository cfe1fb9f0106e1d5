// The client side of the admin protocol (admin_server.hpp), used by the CLI.
// Blocking and single-threaded: the CLI does one request at a time.
#pragma once

#include <boost/filesystem/path.hpp>
#include <functional>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace hotswap::host {

// No host answers on the socket (not running, or a stale socket).
class NotRunning : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class AdminClient {
 public:
  // Throws NotRunning when nothing listens at `socket_path`.
  explicit AdminClient(const boost::filesystem::path& socket_path);
  ~AdminClient();
  AdminClient(const AdminClient&) = delete;
  AdminClient& operator=(const AdminClient&) = delete;

  // Sends one request and returns the final reply ({"ok":..., ...}); each event
  // line before it goes to `on_event`. Throws std::runtime_error when the host
  // hangs up before replying.
  nlohmann::json request(const nlohmann::json& request,
                         const std::function<void(const nlohmann::json&)>& on_event = {});

 private:
  std::string read_line();
  int fd_ = -1;
  std::string buffer_;
  int next_id_ = 1;
};

}  // namespace hotswap::host
