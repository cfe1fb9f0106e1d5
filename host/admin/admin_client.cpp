#include "admin/admin_client.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace hotswap::host {

AdminClient::AdminClient(const boost::filesystem::path& socket_path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.string().size() >= sizeof addr.sun_path)
    throw std::runtime_error("admin socket path too long: " + socket_path.string());
  std::strcpy(addr.sun_path, socket_path.c_str());
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    std::string why = std::strerror(errno);
    ::close(fd_);
    fd_ = -1;
    throw NotRunning("no hotswap host answers at " + socket_path.string() + " (" + why + ")");
  }
}

AdminClient::~AdminClient() {
  if (fd_ >= 0) ::close(fd_);
}

std::string AdminClient::read_line() {
  for (;;) {
    size_t nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return line;
    }
    char chunk[8192];
    ssize_t n = ::read(fd_, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::runtime_error("the host closed the admin connection before replying");
    buffer_.append(chunk, static_cast<size_t>(n));
  }
}

nlohmann::json AdminClient::request(const nlohmann::json& request,
                                    const std::function<void(const nlohmann::json&)>& on_event) {
  nlohmann::json message = request;
  message["id"] = next_id_++;
  std::string line = message.dump() + "\n";
  for (size_t sent = 0; sent < line.size();) {
    ssize_t n = ::send(fd_, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw std::runtime_error(std::string("cannot send to the host: ") + std::strerror(errno));
    sent += static_cast<size_t>(n);
  }
  for (;;) {
    nlohmann::json reply = nlohmann::json::parse(read_line(), nullptr, false);
    if (reply.is_discarded() || !reply.is_object()) throw std::runtime_error("the host sent a malformed reply");
    if (reply.contains("event")) {
      if (on_event) on_event(reply["event"]);
      continue;
    }
    return reply;
  }
}

}  // namespace hotswap::host
