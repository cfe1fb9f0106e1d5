// The fake green host (fake_green.cpp) itself: the bytes it puts on the
// handover socket in each mode, read here with the layout of
// host/handover/handover_channel.hpp, so that a blue-green failure test fails
// for the reason it names and not because the fake spoke nonsense.
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/filesystem.hpp>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace fs = boost::filesystem;

namespace {

uint64_t le(const std::string& bytes, size_t at, int width) {
  uint64_t value = 0;
  for (int i = width - 1; i >= 0; --i) value = (value << 8) | uint8_t(bytes.at(at + size_t(i)));
  return value;
}

std::string put_le(uint64_t value, int width) {
  std::string out;
  for (int i = 0; i < width; ++i) out.push_back(char((value >> (8 * i)) & 0xff));
  return out;
}

struct Header {
  uint32_t magic = 0;
  uint16_t version = 0, type = 0;
  uint32_t fd_count = 0;
  uint64_t body_bytes = 0;
};

// The fake on one end of a SOCK_SEQPACKET pair (its fd 3), in `mode`.
class FakeGreen {
 public:
  explicit FakeGreen(const std::string& mode, const std::string& command = "handover-target") {
    int pair[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) == 0);
    fd_ = pair[0];
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, pair[1], 3);  // the copy on 3 is inherited
    std::vector<std::string> args{"hotswap", command, "--root", "/nonexistent", "--version", "2.0.0", "--fd", "3"};
    std::vector<std::string> env{"HOTSWAP_FAKE_GREEN_MODE=" + mode, "HOTSWAP_FAKE_GREEN_LOG=" + log_.string()};
    std::vector<char*> argv, envp;
    for (std::string& a : args) argv.push_back(a.data());
    for (std::string& e : env) envp.push_back(e.data());
    argv.push_back(nullptr);
    envp.push_back(nullptr);
    const int rc = ::posix_spawn(&pid_, HOTSWAP_FAKE_GREEN, &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    ::close(pair[1]);
    REQUIRE(rc == 0);
  }
  ~FakeGreen() {
    if (fd_ >= 0) ::close(fd_);
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    boost::system::error_code ec;
    fs::remove(log_, ec);
  }

  // One packet (waits up to 10 s: the fake answers at once or never).
  std::string packet() {
    pollfd p{fd_, POLLIN, 0};
    REQUIRE(::poll(&p, 1, 10'000) == 1);
    std::string bytes(70000, '\0');
    const ssize_t n = ::recv(fd_, bytes.data(), bytes.size(), 0);
    REQUIRE(n >= 0);
    bytes.resize(size_t(n));
    return bytes;
  }
  Header header() {
    const std::string bytes = packet();
    REQUIRE(bytes.size() == 24);
    return {uint32_t(le(bytes, 0, 4)), uint16_t(le(bytes, 4, 2)), uint16_t(le(bytes, 6, 2)), uint32_t(le(bytes, 8, 4)),
            le(bytes, 16, 8)};
  }
  // A header carrying one descriptor (a socket of ours) and no body.
  void send_header_with_fd(uint16_t type) {
    const std::string h = put_le(0x4F485348, 4) + put_le(1, 2) + put_le(type, 2) + put_le(1, 4) + put_le(0, 4) + put_le(0, 8);
    const int passed = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    iovec iov{const_cast<char*>(h.data()), h.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &passed, sizeof passed);
    const ssize_t sent = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
    ::close(passed);
    REQUIRE(sent == ssize_t(h.size()));
  }
  void close_channel() {
    ::close(fd_);
    fd_ = -1;
  }
  // The fake's wait status once it ended.
  int wait() {
    int status = 0;
    REQUIRE(::waitpid(pid_, &status, 0) == pid_);
    pid_ = -1;
    return status;
  }
  std::string log() const {
    std::ifstream in(log_.string());
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }

 private:
  int fd_ = -1;
  pid_t pid_ = -1;
  fs::path log_ = fs::temp_directory_path() / fs::unique_path("fake-green-%%%%%%%%.log");
};

// Hello {u32 protocol, i64 pid, str version}, then Loaded {u32 1, str, str, u32}.
void expect_hello_and_loaded(FakeGreen& fake) {
  const Header hello = fake.header();
  CHECK(hello.magic == 0x4F485348);
  CHECK(hello.version == 1);
  CHECK(hello.type == 1);
  const std::string body = fake.packet();
  REQUIRE(body.size() == hello.body_bytes);
  CHECK(le(body, 0, 4) == 1);
  CHECK(le(body, 12, 8) == 5);
  CHECK(body.substr(20) == "2.0.0");
  const Header loaded = fake.header();
  CHECK(loaded.type == 2);
  const std::string modules = fake.packet();
  REQUIRE(modules.size() == loaded.body_bytes);
  CHECK(modules == put_le(1, 4) + put_le(8, 8) + "handover" + put_le(5, 8) + "2.0.0" + put_le(2, 4));
}

}  // namespace

TEST_CASE("fake green, protocol: its Hello header and body say protocol version 2, and it ends when blue closes") {
  FakeGreen fake("protocol");
  const Header hello = fake.header();
  CHECK(hello.magic == 0x4F485348);
  CHECK(hello.version == 2);
  CHECK(hello.type == 1);
  CHECK(hello.fd_count == 0);
  const std::string body = fake.packet();
  REQUIRE(body.size() == hello.body_bytes);
  CHECK(le(body, 0, 4) == 2);
  fake.close_channel();
  const int status = fake.wait();
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK_THAT(fake.log(), Catch::Contains("blue closed the channel"));
}

TEST_CASE("fake green, crash 2: Hello and Loaded as a real green sends them, then it aborts after two messages") {
  FakeGreen fake("crash 2");
  expect_hello_and_loaded(fake);
  fake.send_header_with_fd(3);  // Listeners
  fake.send_header_with_fd(4);  // ConnectionBatch
  const int status = fake.wait();
  REQUIRE(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGABRT);
  const std::string log = fake.log();
  CHECK_THAT(log, Catch::Contains("received type=3 fds=1 body=0") && Catch::Contains("received type=4 fds=1 body=0") &&
                      Catch::Contains("crashing"));
}

TEST_CASE("fake green, error 1: after one message it sends an Error with its reason") {
  FakeGreen fake("error 1");
  expect_hello_and_loaded(fake);
  fake.send_header_with_fd(3);
  const Header error = fake.header();
  CHECK(error.type == 9);
  const std::string why = "fake green refuses on purpose";
  CHECK(fake.packet() == put_le(why.size(), 8) + why);
  fake.close_channel();
  CHECK(WIFEXITED(fake.wait()));
}

TEST_CASE("fake green refuses to run as anything but a handover target, and an unknown mode") {
  {
    FakeGreen fake("protocol", "start");
    const int status = fake.wait();
    CHECK(WEXITSTATUS(status) == 2);
    CHECK_THAT(fake.log(), Catch::Contains("failed: not started as a handover target"));
  }
  {
    FakeGreen fake("dance 0");
    expect_hello_and_loaded(fake);
    const int status = fake.wait();
    CHECK(WEXITSTATUS(status) == 2);
    CHECK_THAT(fake.log(), Catch::Contains("failed: unknown mode 'dance'"));
  }
}
