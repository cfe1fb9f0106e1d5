// The handover wire protocol (handover/handover_channel.hpp) over a real
// SOCK_SEQPACKET socket pair: every message with its descriptors, the limits
// (252 descriptors, bodies of several MiB in many packets), each failure the
// receiver must refuse (another protocol version, a bad magic, a truncated
// control message, a peer gone mid-body, a deadline, the peer's process
// exiting), sendmsg/recvmsg faults through the fake OsSysCalls, and the body
// codecs on good, truncated and malformed input.
//
// No test sleeps: a timeout is tested with a deadline already past; a send
// that must wait for room is released by the fake's hook seeing its poll.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <functional>
#include <future>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../os/faulty_os_sys_calls.hpp"
#include "handover/handover_channel.hpp"
#include "os/fd.hpp"

using namespace hotswap::host;
using namespace hotswap::host::handover;
using hotswap::os::Fd;
using hotswap::test::FaultyOsSysCalls;
using Catch::Matchers::Contains;
using Catch::Matchers::Equals;

namespace {

using Clock = HandoverChannel::Clock;

// A bound for waits whose condition already holds or soon will (data sent,
// a thread running): never what a test measures.
Clock::time_point backstop() { return Clock::now() + std::chrono::seconds(60); }
Clock::time_point already_past() { return Clock::now() - std::chrono::seconds(1); }

struct SocketPair {
  Fd blue, green;
  SocketPair() {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) == 0);
    blue = Fd(fds[0]);
    green = Fd(fds[1]);
  }
};

// Both ends of a handover, each through its own OsSysCalls (the fake names
// the sockets "blue" and "green" so that a fault can pick one side).
struct Channels {
  HandoverChannel blue;
  HandoverChannel green;
  Channels(SocketPair pair, hotswap::os::OsSysCalls& blue_os, hotswap::os::OsSysCalls& green_os)
      : blue(std::move(pair.blue), blue_os), green(std::move(pair.green), green_os) {}
  Channels() : Channels(SocketPair(), hotswap::os::real_os_sys_calls(), hotswap::os::real_os_sys_calls()) {}
  explicit Channels(FaultyOsSysCalls& os) : Channels(SocketPair(), os, os) {
    os.name_fd(blue.fd(), "blue");
    os.name_fd(green.fd(), "green");
  }
};

// A non-blocking pipe: its write end is what travels, its read end shows
// whether every copy of the write end is closed (read() gives 0).
struct Pipe {
  Fd read_end, write_end;
  Pipe() {
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0);
    read_end = Fd(fds[0]);
    write_end = Fd(fds[1]);
  }
  // True when no copy of the write end is open anywhere (end of file).
  bool writers_gone() const {
    char byte;
    return ::read(read_end.get(), &byte, 1) == 0;
  }
};

bool close_on_exec(int fd) {
  const int flags = ::fcntl(fd, F_GETFD);
  return flags >= 0 && (flags & FD_CLOEXEC) != 0;
}

bool same_file(int a, int b) {
  struct stat sa {};
  struct stat sb {};
  return ::fstat(a, &sa) == 0 && ::fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

// A received write end is a working copy: what is written through it comes
// out of the original pipe.
bool carries_into(int received, const Pipe& pipe, const std::string& text) {
  if (::write(received, text.data(), text.size()) != ssize_t(text.size())) return false;
  std::string out(text.size(), '\0');
  return ::read(pipe.read_end.get(), out.data(), out.size()) == ssize_t(out.size()) && out == text;
}

std::string pseudo_random_bytes(size_t size, uint32_t seed) {
  std::mt19937 generator(seed);
  std::string bytes(size, '\0');
  for (char& byte : bytes) byte = char(generator() & 0xff);
  return bytes;
}

// A header as a peer might write it, field by field (little-endian).
std::string raw_header(uint32_t magic, uint16_t version, uint16_t type, uint32_t fd_count, uint64_t body_bytes,
                       uint32_t reserved = 0) {
  std::string header;
  const auto put = [&](uint64_t value, int width) {
    for (int i = 0; i < width; ++i) header.push_back(char((value >> (8 * i)) & 0xff));
  };
  put(magic, 4);
  put(version, 2);
  put(type, 2);
  put(fd_count, 4);
  put(reserved, 4);
  put(body_bytes, 8);
  return header;
}
std::string raw_header(MessageType type, uint32_t fd_count, uint64_t body_bytes) {
  return raw_header(kProtocolMagic, kProtocolVersion, uint16_t(type), fd_count, body_bytes);
}

// One packet written straight to the socket, with `fds` attached; false when
// sendmsg failed. Safe on any thread (no assertion).
bool write_packet(int socket, const std::string& packet, const std::vector<int>& fds = {}) {
  iovec vector{const_cast<char*>(packet.data()), packet.size()};
  msghdr message{};
  message.msg_iov = &vector;
  message.msg_iovlen = 1;
  alignas(cmsghdr) unsigned char control[CMSG_SPACE(kMaxFdsPerMessage * sizeof(int))] = {};
  if (!fds.empty()) {
    message.msg_control = control;
    message.msg_controllen = CMSG_SPACE(fds.size() * sizeof(int));
    cmsghdr* rights = CMSG_FIRSTHDR(&message);
    rights->cmsg_level = SOL_SOCKET;
    rights->cmsg_type = SCM_RIGHTS;
    rights->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
    std::memcpy(CMSG_DATA(rights), fds.data(), fds.size() * sizeof(int));
  }
  return ::sendmsg(socket, &message, MSG_NOSIGNAL) == ssize_t(packet.size());
}
void send_raw(int socket, const std::string& packet, const std::vector<int>& fds = {}) {
  REQUIRE(write_packet(socket, packet, fds));
}

std::string receive_error(HandoverChannel& channel, Clock::time_point deadline, int watch_fd = -1) {
  try {
    channel.receive(deadline, watch_fd);
  } catch (const HandoverError& error) {
    return error.what();
  }
  return "(no error)";
}

template <typename Call>
std::string error_of(Call&& call) {
  try {
    call();
  } catch (const HandoverError& error) {
    return error.what();
  }
  return "(no error)";
}

// Samples with every field set, every enum value used.
std::vector<LoadedModule> sample_loaded() { return {{"counter", "2.0.0", 4}, {"echo", "1.0.0", 0}}; }

std::vector<ListenerHandover> sample_listeners() {
  return {{"game", "0.0.0.0", 7000, -1}, {"admin", "127.0.0.1", 65535, -1}};
}

std::vector<ConnectionHandover> sample_connections(size_t n = 3) {
  std::vector<ConnectionHandover> connections;
  for (size_t i = 0; i < n; ++i) {
    ConnectionHandover connection;
    connection.id = 1000 + i;
    connection.listener = i % 2 ? "admin" : "game";
    connection.peer = "10.0.0." + std::to_string(i) + ":5" + std::to_string(i);
    connection.unread_input = i == 0 ? std::string() : std::string("half a li\0ne", 12);
    connection.unsent_output = std::string((i % 5) * 7, char('a' + i % 26));
    connection.idle_ms = 17 * i;
    connection.close_after_output = i == 2;
    connections.push_back(connection);
  }
  return connections;
}

SlotsMessage sample_slots() {
  SlotsMessage message;
  message.counters = {4242, 99};
  SlotHandover counter;
  counter.module = "counter";
  counter.version = "1.2.0";
  counter.schema = 3;
  counter.arrival = StateArrival::MigrateUp;
  counter.state = std::string("{\"n\":7}\0\xff", 10);
  counter.extra_json = "{\"rename\":\"x\"}";
  counter.tick_number = 123456789012345ULL;
  counter.timers = {{7, 250, 1000, 0xdeadbeefULL}, {8, 0, 0, 1}};
  counter.queued = {
      {ModuleEvent::Kind::Connect, 1001, "game", "10.0.0.1:51", HOTSWAP_DISCONNECT_PEER_CLOSED, 0, 0},
      {ModuleEvent::Kind::Message, 1001, std::string("hi\0\n", 4), "", HOTSWAP_DISCONNECT_PEER_CLOSED, 0, 0},
      {ModuleEvent::Kind::Disconnect, 1002, "", "", HOTSWAP_DISCONNECT_SHUTDOWN, 0, 0},
      {ModuleEvent::Kind::Tick, 0, "", "", HOTSWAP_DISCONNECT_PEER_CLOSED, 77, 0},
      {ModuleEvent::Kind::Timer, 0, "", "", HOTSWAP_DISCONNECT_SLOW_READER, 0xdeadbeefULL, 7},
  };
  SlotHandover echo;
  echo.module = "echo";
  echo.version = "2.0.0";
  echo.schema = 0;
  echo.arrival = StateArrival::Fresh;
  echo.extra_json = "null";
  SlotHandover chat;
  chat.module = "chat";
  chat.version = "0.9.1";
  chat.schema = 1;
  chat.arrival = StateArrival::Import;
  chat.state = "rooms";
  message.slots = {counter, echo, chat};
  return message;
}

void check_equal(const ListenerHandover& a, const ListenerHandover& b) {
  CHECK(a.name == b.name);
  CHECK(a.address == b.address);
  CHECK(a.port == b.port);
  CHECK(a.fd == -1);
}

void check_equal(const ConnectionHandover& a, const ConnectionHandover& b) {
  CHECK(a.id == b.id);
  CHECK(a.listener == b.listener);
  CHECK(a.peer == b.peer);
  CHECK(a.unread_input == b.unread_input);
  CHECK(a.unsent_output == b.unsent_output);
  CHECK(a.idle_ms == b.idle_ms);
  CHECK(a.close_after_output == b.close_after_output);
  CHECK(a.fd == -1);
}

void check_equal(const SlotsMessage& a, const SlotsMessage& b) {
  CHECK(a.counters.next_conn_id == b.counters.next_conn_id);
  CHECK(a.counters.next_timer_id == b.counters.next_timer_id);
  REQUIRE(a.slots.size() == b.slots.size());
  for (size_t i = 0; i < a.slots.size(); ++i) {
    const SlotHandover& x = a.slots[i];
    const SlotHandover& y = b.slots[i];
    CHECK(x.module == y.module);
    CHECK(x.version == y.version);
    CHECK(x.schema == y.schema);
    CHECK(x.arrival == y.arrival);
    CHECK(x.state == y.state);
    CHECK(x.extra_json == y.extra_json);
    CHECK(x.tick_number == y.tick_number);
    REQUIRE(x.timers.size() == y.timers.size());
    for (size_t t = 0; t < x.timers.size(); ++t) {
      CHECK(x.timers[t].id == y.timers[t].id);
      CHECK(x.timers[t].remaining_ms == y.timers[t].remaining_ms);
      CHECK(x.timers[t].repeat_ms == y.timers[t].repeat_ms);
      CHECK(x.timers[t].tag == y.timers[t].tag);
    }
    REQUIRE(x.queued.size() == y.queued.size());
    for (size_t e = 0; e < x.queued.size(); ++e) {
      CHECK(x.queued[e].kind == y.queued[e].kind);
      CHECK(x.queued[e].conn == y.queued[e].conn);
      CHECK(x.queued[e].payload == y.queued[e].payload);
      CHECK(x.queued[e].peer == y.queued[e].peer);
      CHECK(x.queued[e].reason == y.queued[e].reason);
      CHECK(x.queued[e].number == y.queued[e].number);
      CHECK(x.queued[e].timer == y.queued[e].timer);
    }
  }
}

// Every decoder, by the message it decodes, as the fuzz target feeds them.
struct Decoder {
  const char* name;
  std::function<std::string(std::string_view)> decode_and_reencode;
};
std::vector<Decoder> decoders() {
  return {
      {"Hello", [](std::string_view b) { return encode_hello(decode_hello(b)); }},
      {"Error", [](std::string_view b) { return encode_error(decode_error(b)); }},
      {"Listeners", [](std::string_view b) { return encode_listeners(decode_listeners(b)); }},
      {"ConnectionBatch", [](std::string_view b) { return encode_connections(decode_connections(b)); }},
      {"BatchAck", [](std::string_view b) { return encode_count(decode_count(b)); }},
      {"Slots", [](std::string_view b) { return encode_slots(decode_slots(b)); }},
      {"Loaded", [](std::string_view b) { return encode_loaded(decode_loaded(b)); }},
  };
}
// A good body for each decoder, in the same order.
std::vector<std::string> sample_bodies() {
  return {encode_hello({kProtocolVersion, 4321, "2.0.0"}),
          encode_error("green could not load 2.0.0"),
          encode_listeners(sample_listeners()),
          encode_connections(sample_connections()),
          encode_count(252),
          encode_slots(sample_slots()),
          encode_loaded(sample_loaded())};
}

}  // namespace

// ---- round trips ---------------------------------------------------------

TEST_CASE("every message of the conversation crosses with its body and descriptors", "[handover][channel]") {
  Channels channels;
  Pipe listener_a, listener_b, conn_a, conn_b, conn_c;

  channels.green.send(MessageType::Hello, encode_hello({kProtocolVersion, 4321, "2.0.0"}));
  channels.green.send(MessageType::Loaded, encode_loaded(sample_loaded()));
  channels.blue.send(MessageType::Listeners, encode_listeners(sample_listeners()),
                     {listener_a.write_end.get(), listener_b.write_end.get()});
  channels.blue.send(MessageType::ConnectionBatch, encode_connections(sample_connections()),
                     {conn_a.write_end.get(), conn_b.write_end.get(), conn_c.write_end.get()});
  channels.green.send(MessageType::BatchAck, encode_count(3));
  channels.blue.send(MessageType::Slots, encode_slots(sample_slots()));
  channels.green.send(MessageType::Ready);
  channels.blue.send(MessageType::Commit);
  channels.green.send(MessageType::Error, encode_error("late"));

  const Message hello = channels.blue.expect(MessageType::Hello, backstop());
  const Hello decoded_hello = decode_hello(hello.body);
  CHECK(decoded_hello.protocol == kProtocolVersion);
  CHECK(decoded_hello.pid == 4321);
  CHECK(decoded_hello.target_version == "2.0.0");
  CHECK(hello.fds.empty());
  const std::vector<LoadedModule> loaded = decode_loaded(channels.blue.expect(MessageType::Loaded, backstop()).body);
  REQUIRE(loaded.size() == 2);
  for (size_t i = 0; i < 2; ++i) {
    CHECK(loaded[i].name == sample_loaded()[i].name);
    CHECK(loaded[i].version == sample_loaded()[i].version);
    CHECK(loaded[i].schema == sample_loaded()[i].schema);
  }

  const Message listeners = channels.green.expect(MessageType::Listeners, backstop());
  const std::vector<ListenerHandover> decoded_listeners = decode_listeners(listeners.body);
  REQUIRE(decoded_listeners.size() == 2);
  for (size_t i = 0; i < 2; ++i) check_equal(decoded_listeners[i], sample_listeners()[i]);
  REQUIRE(listeners.fds.size() == 2);
  // Same order as sent; each a working, close-on-exec copy (a new descriptor).
  CHECK(carries_into(listeners.fds[0].get(), listener_a, "a"));
  CHECK(carries_into(listeners.fds[1].get(), listener_b, "b"));
  for (const Fd& fd : listeners.fds) {
    CHECK(close_on_exec(fd.get()));
    CHECK(fd.get() != listener_a.write_end.get());
  }

  const Message batch = channels.green.expect(MessageType::ConnectionBatch, backstop());
  const std::vector<ConnectionHandover> decoded_connections = decode_connections(batch.body);
  REQUIRE(decoded_connections.size() == 3);
  for (size_t i = 0; i < 3; ++i) check_equal(decoded_connections[i], sample_connections()[i]);
  REQUIRE(batch.fds.size() == 3);
  CHECK(carries_into(batch.fds[0].get(), conn_a, "first"));
  CHECK(carries_into(batch.fds[1].get(), conn_b, "second"));
  CHECK(carries_into(batch.fds[2].get(), conn_c, "third"));

  CHECK(decode_count(channels.blue.expect(MessageType::BatchAck, backstop()).body) == 3);
  check_equal(decode_slots(channels.green.expect(MessageType::Slots, backstop()).body), sample_slots());
  CHECK(channels.blue.expect(MessageType::Ready, backstop()).body.empty());
  CHECK(channels.green.expect(MessageType::Commit, backstop()).body.empty());
  // receive() hands an Error back like any message; expect(Error) too.
  const Message error = channels.blue.receive(backstop());
  CHECK(error.type == MessageType::Error);
  CHECK(decode_error(error.body) == "late");
}

TEST_CASE("252 descriptors ride on one message and 253 are refused before anything is sent", "[handover][channel]") {
  Channels channels;
  Pipe pipe;
  std::vector<Fd> copies;
  std::vector<int> fds;
  for (size_t i = 0; i < kMaxFdsPerMessage; ++i) {
    copies.emplace_back(::fcntl(pipe.write_end.get(), F_DUPFD_CLOEXEC, 0));
    REQUIRE(copies.back().valid());
    fds.push_back(copies.back().get());
  }
  channels.blue.send(MessageType::ConnectionBatch, encode_connections(sample_connections(252)), fds);
  const Message batch = channels.green.expect(MessageType::ConnectionBatch, backstop());
  REQUIRE(batch.fds.size() == 252);
  CHECK(decode_connections(batch.body).size() == 252);
  for (const Fd& fd : batch.fds) {
    CHECK(same_file(fd.get(), pipe.write_end.get()));
    CHECK(close_on_exec(fd.get()));
  }
  CHECK(carries_into(batch.fds.back().get(), pipe, "last of 252"));

  Fd one_more(::fcntl(pipe.write_end.get(), F_DUPFD_CLOEXEC, 0));
  fds.push_back(one_more.get());
  CHECK_THAT(error_of([&] { channels.blue.send(MessageType::ConnectionBatch, "", fds); }),
             Equals("handover: sending ConnectionBatch: 253 descriptors, at most 252 ride on one message"));
  CHECK_THAT(receive_error(channels.green, already_past()), Contains("timed out waiting for the header"));
}

TEST_CASE("a body of several MiB crosses in packets of 64 KiB while the sender waits for room",
          "[handover][channel]") {
  // The sender's poll for POLLOUT shows it found the buffer full and waited
  // instead of failing: only then does the receiver start reading.
  FaultyOsSysCalls sender_os;
  std::promise<void> sender_waiting;
  std::atomic<bool> seen{false};
  sender_os.set_hook([&](const std::string& call, const std::string&) {
    if (call == "poll" && !seen.exchange(true)) sender_waiting.set_value();
  });
  FaultyOsSysCalls receiver_os;
  Channels channels(SocketPair(), sender_os, receiver_os);
  const std::string body = pseudo_random_bytes(5 * 1024 * 1024 + 123, 7);

  std::future<void> sent =
      std::async(std::launch::async, [&] { channels.blue.send(MessageType::Slots, body, {}, backstop()); });
  sender_waiting.get_future().wait();
  const Message received = channels.green.expect(MessageType::Slots, backstop());
  REQUIRE_NOTHROW(sent.get());
  CHECK(received.body.size() == body.size());
  CHECK(received.body == body);
  // The header, then ceil(5 MiB + 123 / 64 KiB) = 81 body packets, each its own recvmsg.
  CHECK(receiver_os.calls_containing("recvmsg").size() == 1 + 81);
  CHECK(sender_os.calls_containing("sendmsg").size() >= 1 + 81);
}

TEST_CASE("a body sent in many small packets is put together in order", "[handover][channel]") {
  SocketPair pair;
  const int raw_blue = pair.blue.get();
  HandoverChannel green(std::move(pair.green));
  const std::string body = pseudo_random_bytes(40000, 11);
  std::future<void> sent = std::async(std::launch::async, [&] {
    const auto write = [&](const std::string& packet) {
      if (!write_packet(raw_blue, packet)) throw std::runtime_error("sendmsg: " + std::string(std::strerror(errno)));
    };
    write(raw_header(MessageType::Slots, 0, body.size()));
    // Packets of 1, 2, ... bytes: the receiver takes any size up to 64 KiB.
    for (size_t offset = 0, size = 1; offset < body.size(); offset += size, ++size)
      write(body.substr(offset, std::min(size, body.size() - offset)));
  });
  const Message received = green.expect(MessageType::Slots, backstop());
  REQUIRE_NOTHROW(sent.get());
  CHECK(received.body == body);
}

TEST_CASE("a message already waiting is received even when the deadline has passed", "[handover][channel]") {
  Channels channels;
  channels.green.send(MessageType::Ready);
  CHECK(channels.blue.expect(MessageType::Ready, already_past()).type == MessageType::Ready);
}

// ---- send failures -------------------------------------------------------

TEST_CASE("a sendmsg that fails names the message, the packet and the errno text", "[handover][channel]") {
  FaultyOsSysCalls os;
  Channels channels(os);
  SECTION("the header") {
    os.fail("sendmsg", "blue", ENOBUFS);
    CHECK_THAT(error_of([&] { channels.blue.send(MessageType::Listeners, "x"); }),
               Equals("handover: sending Listeners: sendmsg of the header failed: No buffer space available"));
  }
  SECTION("mid-body") {
    // The header and the first body packet go; the second fails.
    os.fail("sendmsg", "blue", EPIPE, 2);
    const std::string body(3 * kBodyPacketBytes - 5, 'b');
    CHECK_THAT(error_of([&] { channels.blue.send(MessageType::Slots, body); }),
               Equals("handover: sending Slots: sendmsg of body packet 2 of 3 failed: Broken pipe"));
  }
  SECTION("the peer is gone: EPIPE for real, no SIGPIPE") {
    HandoverChannel lonely(std::move(channels.green));
    {
      HandoverChannel gone = std::move(channels.blue);
    }
    CHECK_THAT(error_of([&] { lonely.send(MessageType::Ready); }),
               Equals("handover: sending Ready: sendmsg of the header failed: Broken pipe"));
  }
}

TEST_CASE("a sendmsg failing on the Nth call of a series of batches stops at that batch", "[handover][channel]") {
  FaultyOsSysCalls os;
  Channels channels(os);
  Pipe pipe;
  // Each batch is a header and one body packet: the 7th sendmsg is batch 4's header.
  os.fail("sendmsg", "blue", EPIPE, 6);
  size_t batches_sent = 0;
  const std::string error = error_of([&] {
    for (; batches_sent < 10; ++batches_sent)
      channels.blue.send(MessageType::ConnectionBatch, encode_connections(sample_connections()),
                         {pipe.write_end.get(), pipe.write_end.get(), pipe.write_end.get()});
  });
  CHECK_THAT(error, Equals("handover: sending ConnectionBatch: sendmsg of the header failed: Broken pipe"));
  CHECK(batches_sent == 3);
  for (size_t i = 0; i < 3; ++i) {
    const Message batch = channels.green.expect(MessageType::ConnectionBatch, backstop());
    CHECK(batch.fds.size() == 3);
    CHECK(decode_connections(batch.body).size() == 3);
  }
  CHECK_THAT(receive_error(channels.green, already_past()), Contains("timed out waiting for the header"));
}

TEST_CASE("sendmsg, recvmsg and poll interrupted by a signal (EINTR) are retried", "[handover][channel]") {
  FaultyOsSysCalls os;
  Channels channels(os);
  Pipe pipe;
  os.fail("sendmsg", "blue", EINTR, 0, 3);
  os.fail("recvmsg", "green", EINTR, 0, 2);
  os.fail("poll", "green", EINTR, 0, 2);
  const std::string body(kBodyPacketBytes + 1, 'x');
  channels.blue.send(MessageType::Listeners, body, {pipe.write_end.get()});
  const Message received = channels.green.expect(MessageType::Listeners, backstop());
  CHECK(received.body == body);
  REQUIRE(received.fds.size() == 1);
  CHECK(carries_into(received.fds[0].get(), pipe, "after EINTR"));
  CHECK(os.calls_containing("sendmsg blue").size() == 3 + 3);  // 3 interrupted, header, 2 body packets
  CHECK(os.calls_containing("recvmsg green").size() == 2 + 3);
}

TEST_CASE("a send to a full socket buffer gives up at its deadline, naming the packet", "[handover][channel]") {
  Channels channels;
  const std::string body(4 * 1024 * 1024, 'f');  // more than any socket buffer takes unread
  CHECK_THAT(error_of([&] { channels.blue.send(MessageType::Slots, body, {}, already_past()); }),
             Contains("handover: sending Slots: timed out: the peer has not read body packet "));
}

// ---- receive failures ----------------------------------------------------

TEST_CASE("a control message cut short (MSG_CTRUNC) is an error and the descriptors that came are closed",
          "[handover][channel]") {
  FaultyOsSysCalls os;
  Channels channels(os);
  Pipe pipe;
  os.add_recvmsg_flags("green", MSG_CTRUNC);
  channels.blue.send(MessageType::ConnectionBatch, encode_connections(sample_connections(2)),
                     {pipe.write_end.get(), pipe.write_end.get()});
  CHECK_THAT(receive_error(channels.green, backstop()),
             Equals("handover: receiving ConnectionBatch: control message truncated: descriptors were lost (is the "
                    "receiver out of descriptors?)"));
  // Our own copy closed, no copy of the write end is left: the received ones were closed.
  CHECK_FALSE(pipe.writers_gone());
  pipe.write_end.close();
  CHECK(pipe.writers_gone());
}

TEST_CASE("out of descriptors for real (EMFILE in the receiver): MSG_CTRUNC is reported, nothing leaks",
          "[handover][channel]") {
  // A forked child lowers its RLIMIT_NOFILE to a few descriptors above those
  // it holds, receives 252, and reports through its exit status:
  // 0 as expected, 1 no error, 2 another error, 3 descriptors leaked, 4 setup.
  SocketPair pair;
  Pipe pipe;
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    pair.blue.release();  // the parent's end: left alone, never closed twice
    const auto open_descriptors = [] {
      int count = 0;
      int highest = 0;
      DIR* dir = ::opendir("/proc/self/fd");
      if (dir == nullptr) ::_exit(4);
      while (const dirent* entry = ::readdir(dir)) {
        if (entry->d_name[0] == '.') continue;
        ++count;
        highest = std::max(highest, std::atoi(entry->d_name));
      }
      ::closedir(dir);
      return std::make_pair(count, highest);
    };
    const auto before = open_descriptors();
    const rlimit limit{rlim_t(before.second + 8), rlim_t(before.second + 8)};
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) ::_exit(4);
    int status = 1;
    try {
      HandoverChannel green(std::move(pair.green));
      green.receive(Clock::now() + std::chrono::seconds(60));
    } catch (const HandoverError& error) {
      status = std::string(error.what()).find("control message truncated: descriptors were lost") != std::string::npos
                   ? 0
                   : 2;
    } catch (...) {
      status = 2;
    }
    // The channel (and its socket) is gone: one descriptor fewer than before.
    if (status == 0 && open_descriptors().first != before.first - 1) status = 3;
    ::_exit(status);
  }
  pair.green.close();
  std::vector<int> fds(kMaxFdsPerMessage, pipe.write_end.get());
  HandoverChannel blue(std::move(pair.blue));
  blue.send(MessageType::ConnectionBatch, {}, fds);  // the header alone: the child stops reading after it
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("a peer speaking another protocol version is refused with both versions named", "[handover][channel]") {
  SocketPair pair;
  HandoverChannel green(std::move(pair.green));
  send_raw(pair.blue.get(), raw_header(kProtocolMagic, 2, uint16_t(MessageType::Hello), 0, 0));
  CHECK_THAT(receive_error(green, backstop()),
             Equals("handover: receiving a message: the peer speaks handover protocol version 2, this host speaks 1"));
}

TEST_CASE("headers that are not the protocol's are refused, naming what is wrong", "[handover][channel]") {
  SocketPair pair;
  HandoverChannel green(std::move(pair.green));
  const int blue = pair.blue.get();
  SECTION("bad magic") {
    send_raw(blue, raw_header(0x12345678, kProtocolVersion, 1, 0, 0));
    CHECK_THAT(receive_error(green, backstop()),
               Equals("handover: receiving a message: bad magic 0x12345678: the peer does not speak the handover "
                      "protocol"));
  }
  SECTION("unknown type") {
    send_raw(blue, raw_header(kProtocolMagic, kProtocolVersion, 42, 0, 0));
    CHECK_THAT(receive_error(green, backstop()), Equals("handover: receiving a message: unknown message type 42"));
  }
  SECTION("type 0") {
    send_raw(blue, raw_header(kProtocolMagic, kProtocolVersion, 0, 0, 0));
    CHECK_THAT(receive_error(green, backstop()), Contains("unknown message type 0"));
  }
  SECTION("reserved field set") {
    send_raw(blue, raw_header(kProtocolMagic, kProtocolVersion, uint16_t(MessageType::Ready), 0, 0, 7));
    CHECK_THAT(receive_error(green, backstop()),
               Equals("handover: receiving Ready: reserved header field is 7, not 0"));
  }
  SECTION("a short header") {
    send_raw(blue, raw_header(MessageType::Ready, 0, 0).substr(0, 10));
    CHECK_THAT(receive_error(green, backstop()),
               Equals("handover: receiving a message: a header of 10 bytes, expected 24"));
  }
  SECTION("a header packet longer than a header") {
    send_raw(blue, raw_header(MessageType::Ready, 0, 0) + "xx");
    CHECK_THAT(receive_error(green, backstop()),
               Equals("handover: receiving a message: the header is longer than 24 bytes (the packet was cut)"));
  }
  SECTION("a body over the limit, refused before any byte of it is read") {
    send_raw(blue, raw_header(MessageType::Slots, 0, kMaxBodyBytes + 1));
    CHECK_THAT(receive_error(green, backstop()),
               Equals("handover: receiving Slots: a body of 8589934593 bytes, at most 8589934592"));
  }
  SECTION("more descriptors announced than a message may carry") {
    send_raw(blue, raw_header(MessageType::ConnectionBatch, 253, 0));
    CHECK_THAT(receive_error(green, backstop()),
               Equals("handover: receiving ConnectionBatch: the header announces 253 descriptors, at most 252 ride "
                      "on one message"));
  }
}

TEST_CASE("a descriptor count that differs from the header's is refused and what came is closed",
          "[handover][channel]") {
  SocketPair pair;
  HandoverChannel green(std::move(pair.green));
  Pipe pipe;
  SECTION("fewer than announced") {
    send_raw(pair.blue.get(), raw_header(MessageType::Listeners, 2, 0), {pipe.write_end.get()});
    CHECK_THAT(receive_error(green, backstop()),
               Equals("handover: receiving Listeners: the header announces 2 descriptors, 1 arrived"));
  }
  SECTION("descriptors on a message that announces none") {
    send_raw(pair.blue.get(), raw_header(MessageType::Ready, 0, 0), {pipe.write_end.get()});
    CHECK_THAT(receive_error(green, backstop()),
               Equals("handover: receiving Ready: the header announces 0 descriptors, 1 arrived"));
  }
  SECTION("descriptors on a body packet") {
    send_raw(pair.blue.get(), raw_header(MessageType::Slots, 0, 4));
    send_raw(pair.blue.get(), "body", {pipe.write_end.get()});
    CHECK_THAT(receive_error(green, backstop()),
               Equals("handover: receiving Slots: descriptors attached to a body packet (they ride on the header "
                      "only)"));
  }
  pipe.write_end.close();
  CHECK(pipe.writers_gone());
}

TEST_CASE("a body packet longer than the body announced is refused", "[handover][channel]") {
  SocketPair pair;
  HandoverChannel green(std::move(pair.green));
  send_raw(pair.blue.get(), raw_header(MessageType::BatchAck, 0, 4));
  send_raw(pair.blue.get(), "12345678");
  CHECK_THAT(receive_error(green, backstop()),
             Equals("handover: receiving BatchAck: the body (0 of 4 bytes) is longer than 4 bytes (the packet was "
                    "cut)"));
}

TEST_CASE("a peer that closes the channel before or in the middle of a message", "[handover][channel]") {
  SocketPair pair;
  HandoverChannel green(std::move(pair.green));
  SECTION("before the header") {
    pair.blue.close();
    CHECK_THAT(receive_error(green, backstop()), Equals("handover: receiving a message: the peer closed the channel"));
  }
  SECTION("mid-body") {
    send_raw(pair.blue.get(), raw_header(MessageType::Slots, 0, 1000));
    send_raw(pair.blue.get(), std::string(100, 's'));
    pair.blue.close();
    CHECK_THAT(receive_error(green, backstop()),
               Equals("handover: receiving Slots: the peer closed the channel in the middle of the body (100 of 1000 "
                      "bytes)"));
  }
}

TEST_CASE("a deadline that has passed ends the wait, naming what was awaited", "[handover][channel]") {
  SocketPair pair;
  HandoverChannel green(std::move(pair.green));
  SECTION("no message at all") {
    CHECK_THAT(receive_error(green, already_past()),
               Equals("handover: receiving a message: timed out waiting for the header"));
  }
  SECTION("half a body, the peer alive") {
    send_raw(pair.blue.get(), raw_header(MessageType::ConnectionBatch, 0, 1000));
    send_raw(pair.blue.get(), std::string(100, 'c'));
    CHECK_THAT(receive_error(green, already_past()),
               Equals("handover: receiving ConnectionBatch: timed out waiting for the body (100 of 1000 bytes)"));
  }
}

TEST_CASE("the watched descriptor becoming readable (the peer exited) ends the wait", "[handover][channel]") {
  Channels channels;
  Pipe peer_alive;  // stands for a pidfd: readable (end of file) once its write end is closed
  SECTION("nothing sent") {
    peer_alive.write_end.close();
    CHECK_THAT(receive_error(channels.green, backstop(), peer_alive.read_end.get()),
               Equals("handover: receiving a message: the peer process exited (waiting for the header)"));
  }
  SECTION("what the peer sent before it exited is read first") {
    channels.blue.send(MessageType::Error, encode_error("cannot load"));
    peer_alive.write_end.close();
    CHECK_THAT(error_of([&] { channels.green.expect(MessageType::Loaded, backstop(), peer_alive.read_end.get()); }),
               Equals("handover: the peer reported: cannot load"));
    CHECK_THAT(receive_error(channels.green, backstop(), peer_alive.read_end.get()),
               Contains("the peer process exited"));
  }
  SECTION("a watched descriptor that is not open") {
    CHECK_THAT(receive_error(channels.green, backstop(), 1 << 30),
               Equals("handover: receiving a message: the watched descriptor 1073741824 is not open"));
  }
}

TEST_CASE("a poll or recvmsg that fails is an error with its errno text", "[handover][channel]") {
  FaultyOsSysCalls os;
  Channels channels(os);
  channels.blue.send(MessageType::Ready);
  SECTION("poll") {
    os.fail("poll", "green", ENOMEM);
    CHECK_THAT(receive_error(channels.green, backstop()),
               Equals("handover: receiving a message: poll failed: Cannot allocate memory"));
  }
  SECTION("recvmsg") {
    os.fail("recvmsg", "green", ENOMEM);
    CHECK_THAT(receive_error(channels.green, backstop()),
               Equals("handover: receiving a message: recvmsg of the header failed: Cannot allocate memory"));
  }
}

TEST_CASE("expect() turns an Error into the peer's words and any other surprise into an error",
          "[handover][channel]") {
  Channels channels;
  SECTION("the peer's error") {
    channels.green.send(MessageType::Error, encode_error("listener game: Address already in use"));
    CHECK_THAT(error_of([&] { channels.blue.expect(MessageType::Ready, backstop()); }),
               Equals("handover: the peer reported: listener game: Address already in use"));
  }
  SECTION("a long error is shortened") {
    channels.green.send(MessageType::Error, encode_error(std::string(100000, 'e')));
    const std::string error = error_of([&] { channels.blue.expect(MessageType::Ready, backstop()); });
    CHECK(error.size() < 2100);
    CHECK_THAT(error, Contains("... (100000 bytes)"));
  }
  SECTION("an Error whose body is malformed") {
    channels.green.send(MessageType::Error, "\x05");
    CHECK_THAT(error_of([&] { channels.blue.expect(MessageType::Ready, backstop()); }),
               Contains("the peer reported an error that could not be read (handover: decoding Error: message: "));
  }
  SECTION("another type") {
    channels.green.send(MessageType::Loaded);
    CHECK_THAT(error_of([&] { channels.blue.expect(MessageType::Ready, backstop()); }),
               Equals("handover: expected Ready, received Loaded"));
  }
}

// ---- codecs --------------------------------------------------------------

TEST_CASE("every body round-trips through its codec, canonically", "[handover][codec]") {
  const std::vector<Decoder> all = decoders();
  const std::vector<std::string> bodies = sample_bodies();
  for (size_t i = 0; i < all.size(); ++i) {
    INFO(all[i].name);
    CHECK(all[i].decode_and_reencode(bodies[i]) == bodies[i]);
  }
  CHECK(decode_listeners(encode_listeners({})).empty());
  CHECK(decode_loaded(encode_loaded({})).empty());
  CHECK(decode_connections(encode_connections({})).empty());
  CHECK(decode_slots(encode_slots({})).slots.empty());
  CHECK(decode_error(encode_error("")).empty());
  CHECK(decode_count(encode_count(0xffffffffu)) == 0xffffffffu);
  const Hello hello = decode_hello(encode_hello({7, 1, ""}));
  CHECK(hello.protocol == 7);  // the version check is the header's; Hello's field is reported as is
}

TEST_CASE("every decoder refuses each truncation of a good body and a trailing byte", "[handover][codec]") {
  const std::vector<Decoder> all = decoders();
  const std::vector<std::string> bodies = sample_bodies();
  for (size_t i = 0; i < all.size(); ++i) {
    INFO(all[i].name);
    const std::string& body = bodies[i];
    size_t refused = 0;
    for (size_t length = 0; length < body.size(); ++length) {
      try {
        all[i].decode_and_reencode(std::string_view(body).substr(0, length));
      } catch (const HandoverError& error) {
        if (std::string(error.what()).find(std::string("handover: decoding ") + all[i].name + ": ") == 0) ++refused;
      }
    }
    CHECK(refused == body.size());
    CHECK_THAT(error_of([&] { all[i].decode_and_reencode(body + "!"); }),
               Equals(std::string("handover: decoding ") + all[i].name + ": end: 1 trailing bytes after the last field"));
  }
}

TEST_CASE("garbage bodies are refused with HandoverError and nothing else", "[handover][codec]") {
  // A small in-test fuzz (the libFuzzer target goes further): random bytes,
  // and good bodies with one byte changed. Anything that decodes re-encodes
  // to the same bytes.
  const std::vector<Decoder> all = decoders();
  const std::vector<std::string> bodies = sample_bodies();
  std::mt19937 generator(1234);
  size_t decoded = 0;
  for (size_t i = 0; i < all.size(); ++i) {
    for (int round = 0; round < 400; ++round) {
      std::string body;
      if (round % 2 == 0) {
        body = pseudo_random_bytes(generator() % 200, generator());
      } else {
        body = bodies[i];
        body[generator() % body.size()] = char(generator());
      }
      std::string reencoded;
      try {
        reencoded = all[i].decode_and_reencode(body);
      } catch (const HandoverError&) {
        continue;
      }
      CHECK(reencoded == body);
      ++decoded;
    }
  }
  CHECK(decoded > 0);  // the mutated good bodies include ones that still decode
}

TEST_CASE("malformed fields are refused, naming the element and the field", "[handover][codec]") {
  const auto u32 = [](uint32_t value) { return encode_count(value); };
  const auto u64 = [](uint64_t value) {
    std::string out;
    for (int i = 0; i < 8; ++i) out.push_back(char((value >> (8 * i)) & 0xff));
    return out;
  };
  const auto str = [&](const std::string& value) { return u64(value.size()) + value; };

  SECTION("Hello") {
    CHECK_THAT(error_of([&] { decode_hello(u32(1) + u64(0) + str("2.0.0")); }),
               Equals("handover: decoding Hello: pid: 0 is not a process id"));
    CHECK_THAT(error_of([&] { decode_hello(u32(1) + u64(5) + u64(1000)); }),
               Equals("handover: decoding Hello: target_version: a length of 1000 bytes, 0 left in the body"));
    CHECK_THAT(error_of([&] { decode_hello(u32(1) + u64(5) + u64(~0ULL)); }),
               Contains("target_version: a length of 18446744073709551615 bytes"));
  }
  SECTION("BatchAck") {
    CHECK_THAT(error_of([&] { decode_count("abc"); }),
               Equals("handover: decoding BatchAck: count: needs 4 bytes, 3 left in the body"));
  }
  SECTION("Loaded") {
    CHECK_THAT(error_of([&] { decode_loaded(u32(2) + str("a") + str("1") + u32(1) + str("a") + str("2") + u32(2)); }),
               Equals("handover: decoding Loaded: module 1 name: \"a\" appears twice"));
    CHECK_THAT(error_of([&] { decode_loaded(u32(1) + str("") + str("1") + u32(1)); }),
               Equals("handover: decoding Loaded: module 0 name: empty"));
    CHECK_THAT(error_of([&] { decode_loaded(u32(3) + str("a") + str("1") + u32(1)); }),
               Equals("handover: decoding Loaded: module count: 3 elements of at least 20 bytes, 22 bytes left in "
                      "the body"));
  }
  SECTION("Listeners") {
    CHECK_THAT(error_of([&] { decode_listeners(u32(0xffffffffu)); }),
               Equals("handover: decoding Listeners: listener count: 4294967295 elements of at least 20 bytes, 0 "
                      "bytes left in the body"));
    CHECK_THAT(error_of([&] { decode_listeners(u32(1) + str("game") + str("::") + u32(70000)); }),
               Equals("handover: decoding Listeners: listener 0 port: 70000 is not a port"));
    CHECK_THAT(
        error_of([&] { decode_listeners(u32(2) + str("game") + str("::") + u32(1) + str("game") + str("::") + u32(2)); }),
        Equals("handover: decoding Listeners: listener 1 name: \"game\" appears twice"));
    CHECK_THAT(error_of([&] { decode_listeners(u32(1) + str("") + str("::") + u32(1)); }),
               Equals("handover: decoding Listeners: listener 0 name: empty"));
  }
  SECTION("ConnectionBatch") {
    const auto connection = [&](uint64_t id, uint8_t close_flag) {
      return u64(id) + str("game") + str("1.2.3.4:5") + str("in") + str("out") + u64(3) + std::string(1, char(close_flag));
    };
    CHECK_THAT(error_of([&] { decode_connections(u32(1) + connection(1, 2)); }),
               Equals("handover: decoding ConnectionBatch: connection 0 close_after_output: a bool is 0 or 1, not 2"));
    CHECK_THAT(error_of([&] { decode_connections(u32(2) + connection(1, 0) + connection(0, 0)); }),
               Equals("handover: decoding ConnectionBatch: connection 1 id: 0 is never a connection id"));
    CHECK_THAT(error_of([&] { decode_connections(u32(2) + connection(9, 0) + connection(9, 0)); }),
               Equals("handover: decoding ConnectionBatch: connection 1 id: 9 appears twice"));
    CHECK_THAT(error_of([&] { decode_connections(u32(1) + u64(1) + str("game") + u64(50) + std::string(30, 'p')); }),
               Equals("handover: decoding ConnectionBatch: connection 0 peer: a length of 50 bytes, 30 left in the "
                      "body"));
    CHECK_THAT(error_of([&] { decode_connections(u32(1) + u64(1) + str("game") + u64(50)); }),
               Equals("handover: decoding ConnectionBatch: connection count: 1 elements of at least 49 bytes, 28 "
                      "bytes left in the body"));
  }
  SECTION("Slots") {
    const auto slot = [&](const std::string& module, uint8_t arrival, const std::string& timers,
                          const std::string& events) {
      return str(module) + str("1.0.0") + u32(1) + std::string(1, char(arrival)) + str("state") + str("null") + u64(5) +
             timers + events;
    };
    const auto timer = [&](uint64_t id) { return u64(id) + u64(10) + u64(0) + u64(3); };
    const auto event = [&](uint8_t kind, uint32_t reason) {
      return std::string(1, char(kind)) + u64(1) + str("") + str("") + u32(reason) + u64(0) + u64(0);
    };
    const std::string counters = u64(10) + u64(20);
    const std::string good = counters + u32(1) + slot("a", 1, u32(1) + timer(1), u32(1) + event(2, 0));
    CHECK_NOTHROW(decode_slots(good));
    CHECK_THAT(error_of([&] { decode_slots(u64(0) + u64(1) + u32(0)); }),
               Equals("handover: decoding Slots: next_conn_id: 0 is never a connection id"));
    CHECK_THAT(error_of([&] { decode_slots(u64(1) + u64(0) + u32(0)); }),
               Equals("handover: decoding Slots: next_timer_id: 0 is never a timer id"));
    CHECK_THAT(error_of([&] { decode_slots(counters + u32(1) + slot("a", 4, u32(0), u32(0))); }),
               Equals("handover: decoding Slots: slot 0 arrival: unknown state arrival 4 (Import 1, MigrateUp 2, "
                      "Fresh 3)"));
    CHECK_THAT(error_of([&] { decode_slots(counters + u32(1) + slot("a", 0, u32(0), u32(0))); }),
               Contains("slot 0 arrival: unknown state arrival 0"));
    CHECK_THAT(error_of([&] { decode_slots(counters + u32(2) + slot("a", 1, u32(0), u32(0)) + slot("a", 1, u32(0), u32(0))); }),
               Equals("handover: decoding Slots: slot 1 module: \"a\" appears twice"));
    CHECK_THAT(error_of([&] { decode_slots(counters + u32(1) + slot("a", 1, u32(2) + timer(4) + timer(4), u32(0))); }),
               Equals("handover: decoding Slots: slot 0 timer 1 id: 4 appears twice"));
    CHECK_THAT(error_of([&] { decode_slots(counters + u32(1) + slot("a", 1, u32(1) + timer(0), u32(0))); }),
               Equals("handover: decoding Slots: slot 0 timer 0 id: 0 is never a timer id"));
    CHECK_THAT(error_of([&] { decode_slots(counters + u32(1) + slot("a", 1, u32(0), u32(2) + event(1, 0) + event(6, 0))); }),
               Equals("handover: decoding Slots: slot 0 queued event 1 kind: unknown event kind 6 (Connect 1, "
                      "Message 2, Disconnect 3, Tick 4, Timer 5)"));
    CHECK_THAT(error_of([&] { decode_slots(counters + u32(1) + slot("a", 1, u32(0), u32(1) + event(0, 0))); }),
               Contains("slot 0 queued event 0 kind: unknown event kind 0"));
    CHECK_THAT(error_of([&] { decode_slots(counters + u32(1) + slot("a", 1, u32(0), u32(1) + event(3, 6))); }),
               Equals("handover: decoding Slots: slot 0 queued event 0 reason: unknown disconnect reason 6"));
    CHECK_THAT(error_of([&] { decode_slots(counters + u32(1) + slot("a", 1, u32(1000), u32(0))); }),
               Equals("handover: decoding Slots: slot 0 timer count: 1000 elements of at least 32 bytes, 4 bytes "
                      "left in the body"));
    CHECK_THAT(error_of([&] { decode_slots(counters + u32(1) + slot("a", 1, u32(0), u32(0xffffffffu))); }),
               Contains("slot 0 queued event count: 4294967295 elements"));
    CHECK_THAT(error_of([&] { decode_slots(counters + u32(1) + slot("a", 1, u32(0), u32(0)) + "x"); }),
               Equals("handover: decoding Slots: end: 1 trailing bytes after the last field"));
  }
}
