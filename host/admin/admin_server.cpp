#include "admin/admin_server.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <boost/filesystem/operations.hpp>
#include <deque>

#include "admin/admin_request.hpp"

namespace hotswap::host {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;

class AdminSession : public std::enable_shared_from_this<AdminSession> {
 public:
  AdminSession(AdminServer& server, local::socket socket) : server_(server), socket_(std::move(socket)) {}

  void start() {
    if (!peer_allowed()) {
      write_line({{"id", nullptr},
                  {"ok", false},
                  {"code", "forbidden"},
                  {"error", "permission denied: only the host's user or root may use the admin socket"}});
      close_after_write_ = true;
      return;
    }
    read_next();
  }

  void write_line(const nlohmann::json& message) {
    if (closed_) return;
    std::string line = message.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    if (outbox_bytes_ + line.size() > server_.max_output_bytes_) return close_unread();
    outbox_bytes_ += line.size();
    server_.stats_.peak_session_output_bytes = std::max(server_.stats_.peak_session_output_bytes, outbox_bytes_);
    outbox_.push_back(std::move(line));
    if (outbox_.size() == 1) write_next();
  }

  size_t outbox_bytes() const { return outbox_bytes_; }

  // Called when a command's final reply is written: the next request may run.
  void reply_sent() {
    busy_ = false;
    if (!closed_ && !processing_) process_buffer();  // an asynchronous reply: resume the queue
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    boost::system::error_code ec;
    socket_.close(ec);
  }

 private:
  bool peer_allowed() {
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(socket_.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return false;
    if (cred.uid == ::geteuid() || cred.uid == 0) return true;
    spdlog::warn("admin socket: refused peer pid {} uid {}", cred.pid, cred.uid);
    return false;
  }

  void read_next() {
    auto self = shared_from_this();
    socket_.async_read_some(asio::buffer(chunk_), [this, self](boost::system::error_code ec, size_t n) {
      if (ec) {
        finish();
        return;
      }
      buffer_.append(chunk_.data(), n);
      // While a long command runs, later requests wait in the buffer; bound it.
      if (buffer_.size() > 4 * server_.max_request_bytes_) return reject_oversized();
      process_buffer();
      if (!closed_ && !close_after_write_) read_next();
    });
  }

  void process_buffer() {
    processing_ = true;
    process_lines();
    processing_ = false;
  }

  void process_lines() {
    while (!busy_ && !closed_ && !close_after_write_) {
      size_t nl = buffer_.find('\n');
      if (nl == std::string::npos) {
        if (buffer_.size() > server_.max_request_bytes_) reject_oversized();
        return;
      }
      if (nl > server_.max_request_bytes_) return reject_oversized();
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      handle(line);
    }
  }

  // The client sends requests but does not read the replies: drop what waits
  // for it (all but the line being written, whose buffer the write still
  // uses until its handler runs) and disconnect it.
  void close_unread() {
    ++server_.stats_.closed_over_output_limit;
    spdlog::warn("admin socket: closing a client that does not read its replies ({} bytes unsent, limit {})",
                 outbox_bytes_, server_.max_output_bytes_);
    while (outbox_.size() > 1) {
      outbox_bytes_ -= outbox_.back().size();
      outbox_.pop_back();
    }
    buffer_.clear();
    finish();  // callers hold a reference to this session (a handler's `self`, a responder's lock)
  }

  void reject_oversized() {
    write_line({{"id", nullptr},
                {"ok", false},
                {"code", "too_large"},
                {"error", "request over " + std::to_string(server_.max_request_bytes_) + " bytes"}});
    close_after_write_ = true;
    buffer_.clear();
  }

  void handle(const std::string& line) {
    AdminRequest parsed = parse_admin_request(line);
    busy_ = true;
    AdminResponder respond(weak_from_this(), parsed.id);
    if (!parsed.error.empty()) return respond.error(parsed.error, "bad_request");
    try {
      server_.handler_(parsed.request, respond);
    } catch (const std::exception& e) {
      respond.error(e.what());
    }
  }

  void write_next() {
    auto self = shared_from_this();
    asio::async_write(socket_, asio::buffer(outbox_.front()), [this, self](boost::system::error_code ec, size_t) {
      if (ec) {
        finish();
        return;
      }
      outbox_bytes_ -= outbox_.front().size();
      outbox_.pop_front();
      if (!outbox_.empty()) return write_next();
      if (close_after_write_) finish();
    });
  }

  void finish() {
    close();
    server_.sessions_.erase(shared_from_this());
  }

  AdminServer& server_;
  local::socket socket_;
  std::array<char, 4096> chunk_{};
  std::string buffer_;
  std::deque<std::string> outbox_;
  size_t outbox_bytes_ = 0;  // the sum of outbox_'s sizes: unsent reply bytes
  bool busy_ = false;
  bool processing_ = false;
  bool closed_ = false;
  bool close_after_write_ = false;
};

AdminResponder::AdminResponder(std::weak_ptr<AdminSession> session, nlohmann::json id)
    : session_(std::move(session)), id_(std::move(id)) {}

void AdminResponder::event(const nlohmann::json& event) const {
  if (auto s = session_.lock()) s->write_line({{"id", id_}, {"event", event}});
}

void AdminResponder::ok(const nlohmann::json& result) const {
  if (auto s = session_.lock()) {
    s->write_line({{"id", id_}, {"ok", true}, {"result", result}});
    s->reply_sent();
  }
}

void AdminResponder::error(const std::string& message, const std::string& code) const {
  if (auto s = session_.lock()) {
    s->write_line({{"id", id_}, {"ok", false}, {"code", code}, {"error", message}});
    s->reply_sent();
  }
}

namespace {

// A new admin socket bound at `path` (mode 0600) and listening, replacing a
// stale socket file of a host that died (PidFile rules out a live one).
// Close-on-exec from the start: a handover's new process inherits only its
// handover socket.
os::Fd bind_admin_socket(const boost::filesystem::path& path) {
  boost::system::error_code ec;
  boost::filesystem::remove(path, ec);
  os::Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw std::runtime_error("cannot create the admin socket: " + std::string(std::strerror(errno)));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.string().size() >= sizeof address.sun_path)
    throw std::runtime_error("the admin socket path " + path.string() + " is too long for a Unix socket");
  std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
  const mode_t old_mask = ::umask(0177);  // the socket file is created 0600
  const int bound = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address);
  const int bind_error = errno;
  ::umask(old_mask);
  if (bound != 0)
    throw std::runtime_error("cannot bind the admin socket " + path.string() + ": " + std::strerror(bind_error));
  ::chmod(path.c_str(), 0600);
  if (::listen(fd.get(), SOMAXCONN) != 0)
    throw std::runtime_error("cannot listen on the admin socket " + path.string() + ": " + std::strerror(errno));
  return fd;
}

}  // namespace

AdminServer::AdminServer(asio::io_context& io, boost::filesystem::path socket_path, size_t max_request_bytes,
                         AdminHandler handler)
    : AdminServer(io, socket_path, bind_admin_socket(socket_path), max_request_bytes, std::move(handler)) {}

// Assigned rather than opened, so that Asio takes the socket out of its event
// loop when this process's copy closes after a handover (the successor holds
// the same socket).
AdminServer::AdminServer(asio::io_context& io, boost::filesystem::path socket_path, os::Fd listening,
                         size_t max_request_bytes, AdminHandler handler)
    : io_(io),
      path_(std::move(socket_path)),
      max_request_bytes_(max_request_bytes),
      handler_(std::move(handler)),
      acceptor_(io) {
  boost::system::error_code ec;
  acceptor_.assign(local(), listening.get(), ec);
  if (ec) throw std::runtime_error("cannot use the admin socket " + path_.string() + ": " + ec.message());
  listening.release();
  accept_next();
}

AdminServer::~AdminServer() { close(); }

void AdminServer::release_after_handover() {
  boost::system::error_code ec;
  acceptor_.close(ec);  // close(2) of this copy only; the path stays the successor's
}

void AdminServer::close() {
  boost::system::error_code ec;
  if (acceptor_.is_open()) {
    acceptor_.close(ec);
    boost::filesystem::remove(path_, ec);
  }
  auto sessions = std::move(sessions_);
  for (auto& s : sessions) s->close();
}

size_t AdminServer::queued_output_bytes() const {
  size_t total = 0;
  for (const auto& session : sessions_) total += session->outbox_bytes();
  return total;
}

void AdminServer::accept_next() {
  acceptor_.async_accept([this](boost::system::error_code ec, local::socket socket) {
    if (ec) {
      if (ec != asio::error::operation_aborted) spdlog::warn("admin socket: accept failed: {}", ec.message());
      if (!acceptor_.is_open()) return;
    } else {
      ::fcntl(socket.native_handle(), F_SETFD, FD_CLOEXEC);  // see the constructor
      auto session = std::make_shared<AdminSession>(*this, std::move(socket));
      sessions_.insert(session);
      session->start();
    }
    accept_next();
  });
}

}  // namespace hotswap::host
