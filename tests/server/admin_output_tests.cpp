// The admin socket's reply queue is bounded per client: a client that sends
// requests and never reads its replies is disconnected, and the others are served.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/filesystem.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <future>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>

#include "admin/admin_server.hpp"

namespace {

namespace asio = boost::asio;
namespace fs = boost::filesystem;
using hotswap::host::AdminResponder;
using hotswap::host::AdminServer;
using nlohmann::json;

// An AdminServer on its own loop thread, answering every request with a reply
// of about `reply_bytes` bytes.
class AdminHost {
 public:
  AdminHost(size_t max_output_bytes, size_t reply_bytes)
      : dir_(fs::temp_directory_path() / fs::unique_path("hotswap-admin-%%%%%%%%")) {
    fs::create_directories(dir_);
    const std::string blob(reply_bytes, 'x');
    server_.emplace(io_, dir_ / "admin.sock", 64 * 1024,
                    [blob](const json&, const AdminResponder& respond) { respond.ok({{"blob", blob}}); });
    server_->set_max_output_bytes(max_output_bytes);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~AdminHost() {
    on_loop([this] {
      server_->close();
      return 0;
    });
    work_.reset();
    io_.stop();
    thread_.join();
    server_.reset();
    boost::system::error_code ec;
    fs::remove_all(dir_, ec);
  }

  fs::path socket_path() const { return dir_ / "admin.sock"; }

  template <class Fn>
  auto on_loop(Fn fn) -> decltype(fn()) {
    std::packaged_task<decltype(fn())()> task(std::move(fn));
    auto result = task.get_future();
    asio::post(io_, [&task] { task(); });
    return result.get();
  }

  // Polls `condition` on the loop until it holds; false after a generous limit.
  template <class Condition>
  bool wait_on_loop(Condition condition) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    do {
      if (on_loop(condition)) return true;
    } while (std::chrono::steady_clock::now() < deadline);
    return false;
  }

  AdminServer& server() { return *server_; }

 private:
  fs::path dir_;
  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_{io_.get_executor()};
  std::optional<AdminServer> server_;
  std::thread thread_;
};

// A connected Unix stream socket; -1 on failure.
int connect_to(const fs::path& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Sends all of `bytes`; false when the host closed the connection.
bool send_all(int fd, const std::string& bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    sent += size_t(n);
  }
  return true;
}

std::string read_line(int fd) {
  std::string line;
  char c;
  while (::read(fd, &c, 1) == 1 && c != '\n') line.push_back(c);
  return line;
}

}  // namespace

TEST_CASE("an admin client that sends requests but never reads is disconnected at its reply limit") {
  constexpr size_t kLimit = 64 * 1024;
  AdminHost host(kLimit, /*reply_bytes=*/1000);
  int greedy = connect_to(host.socket_path());
  REQUIRE(greedy >= 0);
  int small = 4096;
  ::setsockopt(greedy, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);

  // 100 requests a batch, about 100 KB of replies; 300 batches would queue
  // 30 MB on a host without a limit.
  std::string batch;
  for (int i = 0; i < 100; ++i) batch += "{\"id\": " + std::to_string(i) + ", \"cmd\": \"status\"}\n";
  bool closed = false;
  for (int i = 0; i < 300 && !closed; ++i) {
    closed = !send_all(greedy, batch);
    if (!closed) closed = host.on_loop([&] { return host.server().stats().closed_over_output_limit; }) > 0;
  }
  CHECK(closed);
  CHECK(host.wait_on_loop([&] { return host.server().session_count() == 0; }));
  const AdminServer::Stats stats = host.on_loop([&] { return host.server().stats(); });
  CHECK(stats.closed_over_output_limit == 1);
  CHECK(stats.peak_session_output_bytes <= kLimit);
  CHECK(stats.peak_session_output_bytes > kLimit / 2);  // the limit, not something else, stopped it
  CHECK(host.on_loop([&] { return host.server().queued_output_bytes(); }) == 0);
  ::close(greedy);

  // Another client is served as before.
  int polite = connect_to(host.socket_path());
  REQUIRE(polite >= 0);
  REQUIRE(send_all(polite, "{\"id\": 7, \"cmd\": \"status\"}\n"));
  json reply = json::parse(read_line(polite), nullptr, false);
  CHECK(reply.value("ok", false));
  CHECK(reply["id"] == 7);
  ::close(polite);
}

TEST_CASE("an admin client that reads its replies is served past the reply limit") {
  constexpr size_t kLimit = 16 * 1024;
  AdminHost host(kLimit, /*reply_bytes=*/1000);
  int fd = connect_to(host.socket_path());
  REQUIRE(fd >= 0);
  for (int i = 0; i < 200; ++i) {  // 200 KB of replies in all, read as they come
    REQUIRE(send_all(fd, "{\"id\": " + std::to_string(i) + ", \"cmd\": \"status\"}\n"));
    json reply = json::parse(read_line(fd), nullptr, false);
    REQUIRE(reply["id"] == i);
  }
  CHECK(host.on_loop([&] { return host.server().stats().closed_over_output_limit; }) == 0);
  ::close(fd);
}
