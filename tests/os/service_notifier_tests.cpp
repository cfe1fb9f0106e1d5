// The sd_notify messages, received by a fake service manager: a datagram Unix
// socket bound in a temporary folder and named by NOTIFY_SOCKET. sd_notify
// sends synchronously, so each message is queued on the socket when the call
// returns: the test reads it without waiting.
#include "os/service_notifier.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/filesystem/operations.hpp>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <optional>
#include <string>

#include "os/fd.hpp"

namespace fs = boost::filesystem;
using hotswap::os::SystemdNotifier;

namespace {

// Binds the fake NOTIFY_SOCKET and sets the variable; both undone at the end.
class FakeServiceManager {
 public:
  FakeServiceManager() : dir_(fs::temp_directory_path() / fs::unique_path("hotswap-notify-%%%%-%%%%")) {
    fs::create_directories(dir_);
    const std::string path = (dir_ / "notify.sock").string();
    socket_ = hotswap::os::Fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    REQUIRE(socket_);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    REQUIRE(path.size() < sizeof address.sun_path);
    std::copy(path.begin(), path.end(), address.sun_path);
    REQUIRE(::bind(socket_.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0);
    ::setenv("NOTIFY_SOCKET", path.c_str(), 1);
  }
  ~FakeServiceManager() {
    ::unsetenv("NOTIFY_SOCKET");
    boost::system::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  // The next queued message; nullopt when none is queued.
  std::optional<std::string> next() {
    char buffer[4096];
    const ssize_t got = ::recv(socket_.get(), buffer, sizeof buffer, MSG_DONTWAIT);
    if (got < 0) return std::nullopt;
    return std::string(buffer, size_t(got));
  }

 private:
  fs::path dir_;
  hotswap::os::Fd socket_;
};

}  // namespace

TEST_CASE("each notification reaches NOTIFY_SOCKET with its exact text", "[os][notify]") {
  FakeServiceManager manager;
  SystemdNotifier notifier([] { return uint64_t(123456789); });
  CHECK(SystemdNotifier::enabled());

  CHECK(notifier.ready());
  CHECK(manager.next() == "READY=1");
  CHECK(notifier.reloading());
  CHECK(manager.next() == "RELOADING=1\nMONOTONIC_USEC=123456789");
  CHECK(notifier.main_pid(4242));
  CHECK(manager.next() == "MAINPID=4242");
  CHECK(notifier.main_pid_ready(4343));
  CHECK(manager.next() == "MAINPID=4343\nREADY=1");
  CHECK(notifier.stopping());
  CHECK(manager.next() == "STOPPING=1");
  CHECK(notifier.status("handing over 10 connections\nto pid 4242"));
  CHECK(manager.next() == "STATUS=handing over 10 connections to pid 4242");
  CHECK_FALSE(manager.next());  // one datagram per call, nothing more
}

TEST_CASE("RELOADING carries CLOCK_MONOTONIC in microseconds by default", "[os][notify]") {
  FakeServiceManager manager;
  SystemdNotifier notifier;
  const uint64_t before = SystemdNotifier::monotonic_usec();
  REQUIRE(notifier.reloading());
  const uint64_t after = SystemdNotifier::monotonic_usec();
  const std::optional<std::string> message = manager.next();
  REQUIRE(message);
  const std::string prefix = "RELOADING=1\nMONOTONIC_USEC=";
  REQUIRE(message->rfind(prefix, 0) == 0);
  const uint64_t sent = std::stoull(message->substr(prefix.size()));
  CHECK(sent >= before);
  CHECK(sent <= after);
}

TEST_CASE("without NOTIFY_SOCKET every notification is a no-op", "[os][notify]") {
  std::optional<std::string> saved;
  if (const char* value = std::getenv("NOTIFY_SOCKET")) saved = value;  // ctest under systemd
  ::unsetenv("NOTIFY_SOCKET");
  SystemdNotifier notifier;
  CHECK_FALSE(SystemdNotifier::enabled());
  CHECK_FALSE(notifier.ready());
  CHECK_FALSE(notifier.reloading());
  CHECK_FALSE(notifier.main_pid(1));
  CHECK_FALSE(notifier.main_pid_ready(1));
  CHECK_FALSE(notifier.stopping());
  CHECK_FALSE(notifier.status("x"));
  if (saved) ::setenv("NOTIFY_SOCKET", saved->c_str(), 1);
}

TEST_CASE("a NOTIFY_SOCKET nobody listens on fails the call without throwing", "[os][notify]") {
  const fs::path dir = fs::temp_directory_path() / fs::unique_path("hotswap-notify-%%%%-%%%%");
  ::setenv("NOTIFY_SOCKET", (dir / "nobody.sock").c_str(), 1);
  SystemdNotifier notifier;
  CHECK_FALSE(notifier.ready());
  CHECK_FALSE(notifier.status("x"));
  ::unsetenv("NOTIFY_SOCKET");
}
