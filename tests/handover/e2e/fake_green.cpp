// A fake green host for the blue-green failure tests: shipped as the
// bin/hotswap of a test release (tests/handover/e2e/CMakeLists.txt,
// HOST_BINARY), started by blue as
//   <release>/bin/hotswap handover-target --root ROOT --version VSN --fd 3
// with the handover socket (SOCK_SEQPACKET) on --fd. It speaks the wire
// format of host/handover/handover_channel.hpp with raw bytes, on purpose
// independent of the real channel, and fails the handover one way, chosen by
// the file fake_green.mode next to it ("<mode> [N]"; the environment variable
// HOTSWAP_FAKE_GREEN_MODE overrides it; default "protocol"):
//   protocol    its Hello header carries protocol version kProtocolVersion + 1
//   crash N     Hello, Loaded, reads N messages from blue, then aborts
//   exit N      the same, then exits with status 0 (gone without a word)
//   hang N      the same, then waits forever (blue's handover timeout ends it)
//   error N     the same, then sends Error "fake green refuses on purpose"
//   loading     Hello, then waits forever without Loaded: a slow load, while
//               blue still serves (and handles signals)
// N defaults to 2 (Listeners and the first ConnectionBatch, or Slots when no
// connection moves): blue has then taken connections out of its loop.
// Every step is appended to fake_green.log next to it (or to the file
// HOTSWAP_FAKE_GREEN_LOG names), so that a test can tell the fake really ran
// and how far it got. It never outlives 20 s (alarm).
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

constexpr uint32_t kMagic = 0x4F485348;
constexpr uint16_t kProtocolVersion = 1;  // handover_channel.hpp's kProtocolVersion
constexpr size_t kHeaderBytes = 24;
constexpr size_t kBodyPacketBytes = 64 * 1024;
constexpr size_t kMaxFds = 252;
constexpr uint16_t kHello = 1, kLoaded = 2, kError = 9;

std::string g_dir;  // where this binary lives: fake_green.mode and fake_green.log

void log_line(const std::string& line) {
  const char* path = std::getenv("HOTSWAP_FAKE_GREEN_LOG");
  std::ofstream log(path != nullptr ? std::string(path) : g_dir + "/fake_green.log", std::ios::app);
  log << line << "\n";
}

[[noreturn]] void fail(const std::string& why) {
  log_line("failed: " + why);
  std::_Exit(2);
}

void put_le(std::string& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(char((value >> (8 * i)) & 0xff));
}
uint64_t get_le(const unsigned char* in, int bytes) {
  uint64_t value = 0;
  for (int i = bytes - 1; i >= 0; --i) value = (value << 8) | in[i];
  return value;
}

// Blue may close the channel at any point (it refused what it read): that
// ends the fake quietly.
[[noreturn]] void blue_closed() {
  log_line("blue closed the channel");
  std::_Exit(0);
}

void send_packet(int fd, const std::string& bytes) {
  if (::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == ssize_t(bytes.size())) return;
  if (errno == EPIPE || errno == ECONNRESET) blue_closed();
  fail(std::string("send: ") + std::strerror(errno));
}

void send_message(int fd, uint16_t type, const std::string& body, uint16_t version = kProtocolVersion) {
  std::string header;
  put_le(header, kMagic, 4);
  put_le(header, version, 2);
  put_le(header, type, 2);
  put_le(header, 0, 4);  // fd_count
  put_le(header, 0, 4);  // reserved
  put_le(header, body.size(), 8);
  send_packet(fd, header);
  for (size_t at = 0; at < body.size(); at += kBodyPacketBytes) send_packet(fd, body.substr(at, kBodyPacketBytes));
}

// Loaded {u32 n, n x {str name, str version, u32 schema}}: what the fake-green
// release ships (handover 2.0.0, state schema 2), as a real green would say.
std::string loaded_body() {
  const std::string name = "handover", version = "2.0.0";
  std::string body;
  put_le(body, 1, 4);
  put_le(body, name.size(), 8);
  body += name;
  put_le(body, version.size(), 8);
  body += version;
  put_le(body, 2, 4);
  return body;
}

std::string hello_body(uint32_t protocol, const std::string& version) {
  std::string body;
  put_le(body, protocol, 4);
  put_le(body, uint64_t(::getpid()), 8);
  put_le(body, version.size(), 8);
  return body + version;
}

// Reads one message (header packet, its descriptors, the body packets),
// closes the descriptors, and logs its type and sizes. False at end of stream.
bool receive_message(int fd) {
  unsigned char header[kHeaderBytes];
  alignas(cmsghdr) char control[CMSG_SPACE(kMaxFds * sizeof(int))];
  iovec iov{header, sizeof header};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  const ssize_t n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  if (n == 0) return false;
  if (n < 0 && errno == ECONNRESET) return false;
  if (n < 0) fail(std::string("recvmsg: ") + std::strerror(errno));
  if (n != ssize_t(kHeaderBytes)) fail("a header packet of " + std::to_string(n) + " bytes");
  size_t fds = 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int received;
      std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof received);
      ::close(received);
    }
    fds += count;
  }
  const uint64_t type = get_le(header + 6, 2);
  uint64_t body = get_le(header + 16, 8);
  std::vector<char> packet(kBodyPacketBytes);
  for (uint64_t left = body; left > 0;) {
    const ssize_t got = ::recv(fd, packet.data(), packet.size(), 0);
    if (got <= 0) fail("the body of message type " + std::to_string(type) + " was cut short");
    left -= std::min<uint64_t>(left, uint64_t(got));
  }
  log_line("received type=" + std::to_string(type) + " fds=" + std::to_string(fds) + " body=" + std::to_string(body) +
           ((msg.msg_flags & MSG_CTRUNC) != 0 ? " ctrunc" : ""));
  return true;
}

std::string read_mode() {
  if (const char* env = std::getenv("HOTSWAP_FAKE_GREEN_MODE")) return env;
  std::ifstream in(g_dir + "/fake_green.mode");
  std::string mode;
  std::getline(in, mode);
  return mode.empty() ? "protocol" : mode;
}

}  // namespace

int main(int argc, char** argv) {
  ::alarm(20);  // a fake that nobody ends must not linger
  rlimit no_core{0, 0};
  ::setrlimit(RLIMIT_CORE, &no_core);  // "crash" aborts: no core file
  char exe[4096];
  const ssize_t len = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (len <= 0) return 2;
  g_dir.assign(exe, size_t(len));
  g_dir.erase(g_dir.rfind('/'));

  int fd = 3;
  std::string version = "?", command = argc > 1 ? argv[1] : "";
  for (int i = 2; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--fd") == 0) fd = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--version") == 0) version = argv[i + 1];
  }
  std::istringstream words(read_mode());
  std::string mode;
  int messages = 2;
  words >> mode >> messages;
  log_line("started pid=" + std::to_string(::getpid()) + " command=" + command + " version=" + version + " fd=" +
           std::to_string(fd) + " mode=" + mode + " messages=" + std::to_string(messages));
  if (command != "handover-target") fail("not started as a handover target");
  if (::fcntl(fd, F_GETFD) < 0) fail("no handover socket on fd " + std::to_string(fd));

  if (mode == "protocol") {
    // Logged first: blue kills this process as soon as it reads the header.
    log_line("sending Hello with protocol version " + std::to_string(kProtocolVersion + 1));
    send_message(fd, kHello, hello_body(kProtocolVersion + 1, version), kProtocolVersion + 1);
    while (receive_message(fd)) {
    }
    log_line("blue closed the channel");
    return 0;
  }
  send_message(fd, kHello, hello_body(kProtocolVersion, version));
  if (mode == "loading") {
    log_line("loading forever");
    for (;;) ::pause();
  }
  send_message(fd, kLoaded, loaded_body());
  log_line("sent Hello and Loaded");
  for (int i = 0; i < messages; ++i)
    if (!receive_message(fd)) {
      log_line("blue closed the channel");
      return 0;
    }
  if (mode == "crash") {
    log_line("crashing");
    std::abort();
  }
  if (mode == "exit") {
    log_line("exiting");
    return 0;
  }
  if (mode == "hang") {
    log_line("hanging");
    for (;;) ::pause();
  }
  if (mode == "error") {
    const std::string why = "fake green refuses on purpose";
    std::string body;
    put_le(body, why.size(), 8);
    send_message(fd, kError, body + why);
    log_line("sent Error");
    while (receive_message(fd)) {
    }
    return 0;
  }
  fail("unknown mode '" + mode + "'");
}
