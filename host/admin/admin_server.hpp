// The admin control socket: a Unix stream socket at ROOT/run/admin.sock
// (mode 0600 in a 0700 folder). Every peer is checked with SO_PEERCRED; only
// the host's own user or root is served.
//
// Protocol: JSON lines (documented in host/README.md, "Admin protocol").
//   request   {"id": <any>, "cmd": "<command>", ...arguments}
//   event     {"id": <same>, "event": {...}}          zero or more, while the command runs
//   reply     {"id": <same>, "ok": true, "result": ...}
//          or {"id": <same>, "ok": false, "error": "<message>", "code": "<busy|bad_request|failed|...>"}
// Requests on one connection are answered in order, one at a time. A request
// over the size limit gets an error reply and the connection is closed. The
// replies and events waiting to be written to one client are bounded too
// (max_output_bytes): a client that sends requests but does not read its
// replies is disconnected, with a log line, once they pass the bound.
#pragma once

#include <boost/asio.hpp>
#include <boost/filesystem/path.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "os/fd.hpp"

namespace hotswap::host {

class AdminSession;

// How a command answers: any number of events, then exactly one reply.
// Safe to keep after the client left (writes are then dropped).
class AdminResponder {
 public:
  AdminResponder(std::weak_ptr<AdminSession> session, nlohmann::json id);
  void event(const nlohmann::json& event) const;
  void ok(const nlohmann::json& result) const;
  void error(const std::string& message, const std::string& code = "failed") const;

 private:
  std::weak_ptr<AdminSession> session_;
  nlohmann::json id_;
};

using AdminHandler = std::function<void(const nlohmann::json& request, const AdminResponder& respond)>;

class AdminServer {
 public:
  // A status or an upgrade report is a few kilobytes; a client that lets
  // megabytes of them pile up is not reading.
  static constexpr size_t kDefaultMaxOutputBytes = 4 << 20;

  // Binds the socket (replacing a stale one). Throws std::runtime_error on failure.
  AdminServer(boost::asio::io_context& io, boost::filesystem::path socket_path, size_t max_request_bytes,
              AdminHandler handler);
  // Serves on `listening`, an admin socket already bound and listening at
  // `socket_path` (passed on by a blue-green handover): the file is left as it is.
  AdminServer(boost::asio::io_context& io, boost::filesystem::path socket_path, os::Fd listening,
              size_t max_request_bytes, AdminHandler handler);
  ~AdminServer();

  // The listening socket (a handover passes it on); -1 once closed.
  int listening_fd() { return acceptor_.is_open() ? acceptor_.native_handle() : -1; }
  // A handover committed: stop accepting and close this process's copy of the
  // listening socket, leaving the socket file to the successor. Sessions stay
  // open until their replies are written (close() ends them).
  void release_after_handover();

  const boost::filesystem::path& path() const { return path_; }
  void set_max_request_bytes(size_t n) { max_request_bytes_ = n; }
  // Unsent reply bytes allowed per client; applies to what is queued from now on.
  void set_max_output_bytes(size_t n) { max_output_bytes_ = n; }
  void close();

  // Accounting, for status and tests (loop thread).
  struct Stats {
    uint64_t closed_over_output_limit = 0;  // clients disconnected because they did not read
    size_t peak_session_output_bytes = 0;   // the most unsent bytes one client ever had queued
  };
  const Stats& stats() const { return stats_; }
  // Unsent reply bytes queued for every client now.
  size_t queued_output_bytes() const;
  size_t session_count() const { return sessions_.size(); }

 private:
  void accept_next();

  boost::asio::io_context& io_;
  boost::filesystem::path path_;
  size_t max_request_bytes_;
  size_t max_output_bytes_ = kDefaultMaxOutputBytes;
  Stats stats_;
  AdminHandler handler_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  std::set<std::shared_ptr<AdminSession>> sessions_;
  friend class AdminSession;
};

}  // namespace hotswap::host
