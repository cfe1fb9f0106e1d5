// The handover wire protocol (handover_channel.hpp).
//
// Blocking or not: every sendmsg and recvmsg here passes MSG_DONTWAIT and
// waits in poll() instead, so the socket's own O_NONBLOCK flag does not matter
// and no call can block past its deadline. A full socket buffer (the peer has
// not read yet) is waited out with POLLOUT, never an error. Sends pass
// MSG_NOSIGNAL: a peer that is gone is an EPIPE error, not a SIGPIPE.
//
// After any HandoverError the channel is in an unknown state (a message may be
// half sent or half read): the handover aborts and the channel is dropped.
#include "handover/handover_channel.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <set>
#include <unordered_set>
#include <utility>

namespace hotswap::host::handover {

const char* to_string(MessageType type) {
  switch (type) {
    case MessageType::Hello: return "Hello";
    case MessageType::Loaded: return "Loaded";
    case MessageType::Listeners: return "Listeners";
    case MessageType::ConnectionBatch: return "ConnectionBatch";
    case MessageType::BatchAck: return "BatchAck";
    case MessageType::Slots: return "Slots";
    case MessageType::Ready: return "Ready";
    case MessageType::Commit: return "Commit";
    case MessageType::Error: return "Error";
  }
  return "an unknown message type";
}

namespace {

using Clock = HandoverChannel::Clock;

constexpr size_t kControlBytes = CMSG_SPACE(kMaxFdsPerMessage * sizeof(int));
// What receive() reserves for a body before its bytes arrive: an untrusted
// body_bytes never allocates more than this up front.
constexpr size_t kBodyReserveBytes = 1 << 20;
// A peer's Error text is shown at most this long (it is untrusted).
constexpr size_t kMaxShownPeerErrorBytes = 2000;

bool known_type(uint16_t value) {
  return value >= uint16_t(MessageType::Hello) && value <= uint16_t(MessageType::Error);
}

void put_u16(std::string& out, uint16_t value) {
  for (int i = 0; i < 2; ++i) out.push_back(char((value >> (8 * i)) & 0xff));
}
void put_u32(std::string& out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out.push_back(char((value >> (8 * i)) & 0xff));
}
void put_u64(std::string& out, uint64_t value) {
  for (int i = 0; i < 8; ++i) out.push_back(char((value >> (8 * i)) & 0xff));
}
uint64_t get_le(const char* bytes, size_t width) {
  uint64_t value = 0;
  for (size_t i = 0; i < width; ++i) value |= uint64_t(uint8_t(bytes[i])) << (8 * i);
  return value;
}

// The poll timeout that ends at `deadline`: -1 for none (time_point::max()),
// 0 once it has passed, rounded up so that a wake-up is never early.
int poll_timeout_ms(Clock::time_point deadline) {
  if (deadline == Clock::time_point::max()) return -1;
  const auto now = Clock::now();
  if (deadline <= now) return 0;
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
  return int(std::min<decltype(left)>(left, INT_MAX));
}

// Every SCM_RIGHTS descriptor of a received message, owned (so that each is
// closed on any error), in order.
std::vector<os::Fd> take_descriptors(msghdr& message, os::OsSysCalls& os) {
  std::vector<os::Fd> fds;
  for (cmsghdr* control = CMSG_FIRSTHDR(&message); control != nullptr; control = CMSG_NXTHDR(&message, control)) {
    if (control->cmsg_level != SOL_SOCKET || control->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (control->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const unsigned char* data = CMSG_DATA(control);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, data + i * sizeof(int), sizeof(int));
      fds.emplace_back(fd, os);
    }
  }
  return fds;
}

// One send() or receive(): the words every error starts with.
struct Activity {
  const char* verb;  // "sending", "receiving"
  std::string type;  // empty while unknown

  [[noreturn]] void fail(const std::string& what) const {
    throw HandoverError(std::string("handover: ") + verb + " " + (type.empty() ? "a message" : type) + ": " + what);
  }
};

// Waits until `fd` is ready for `events` (or in error: the next call reports
// it), `watch_fd` (when >= 0) is readable, or the deadline passes.
enum class Wait { Ready, Deadline, WatchFired };
Wait wait_for(os::OsSysCalls& os, int fd, short events, Clock::time_point deadline, int watch_fd,
              const Activity& activity) {
  for (;;) {
    pollfd fds[2] = {{fd, events, 0}, {watch_fd, POLLIN, 0}};
    const os::SysCallIntResult polled = os.poll(fds, watch_fd >= 0 ? 2 : 1, poll_timeout_ms(deadline));
    if (!polled.ok()) {
      if (polled.error == EINTR) continue;
      activity.fail("poll failed: " + polled.error_text());
    }
    // The socket first: a peer that wrote its Error and exited is heard out.
    if (fds[0].revents != 0) return Wait::Ready;
    if (watch_fd >= 0 && (fds[1].revents & POLLNVAL))
      activity.fail("the watched descriptor " + std::to_string(watch_fd) + " is not open");
    if (watch_fd >= 0 && fds[1].revents != 0) return Wait::WatchFired;
    if (polled.value == 0 && poll_timeout_ms(deadline) == 0) return Wait::Deadline;
  }
}

}  // namespace

HandoverChannel::HandoverChannel(os::Fd socket, os::OsSysCalls& os) : socket_(std::move(socket)), os_(&os) {}

void HandoverChannel::send(MessageType type, std::string_view body, const std::vector<int>& fds,
                           Clock::time_point deadline) {
  const Activity activity{"sending", to_string(type)};
  if (fds.size() > kMaxFdsPerMessage)
    activity.fail(std::to_string(fds.size()) + " descriptors, at most " + std::to_string(kMaxFdsPerMessage) +
                  " ride on one message");
  if (body.size() > kMaxBodyBytes)
    activity.fail("a body of " + std::to_string(body.size()) + " bytes, at most " + std::to_string(kMaxBodyBytes));

  std::string header;
  header.reserve(kHeaderBytes);
  put_u32(header, kProtocolMagic);
  put_u16(header, kProtocolVersion);
  put_u16(header, uint16_t(type));
  put_u32(header, uint32_t(fds.size()));
  put_u32(header, 0);
  put_u64(header, body.size());

  alignas(cmsghdr) unsigned char control[kControlBytes];
  std::memset(control, 0, sizeof control);

  // One packet, whole: retried on EINTR, waited on POLLOUT while the buffer is full.
  const auto send_packet = [&](const char* data, size_t size, bool with_fds, const std::string& which) {
    iovec vector{const_cast<char*>(data), size};
    msghdr message{};
    message.msg_iov = &vector;
    message.msg_iovlen = 1;
    if (with_fds && !fds.empty()) {
      message.msg_control = control;
      message.msg_controllen = CMSG_SPACE(fds.size() * sizeof(int));
      cmsghdr* rights = CMSG_FIRSTHDR(&message);
      rights->cmsg_level = SOL_SOCKET;
      rights->cmsg_type = SCM_RIGHTS;
      rights->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
      std::memcpy(CMSG_DATA(rights), fds.data(), fds.size() * sizeof(int));
    }
    for (;;) {
      const os::SysCallSizeResult sent = os_->sendmsg(socket_.get(), message, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (sent.ok()) {
        if (size_t(sent.value) != size)
          activity.fail("sendmsg sent " + std::to_string(sent.value) + " of the " + std::to_string(size) + " bytes of " +
                        which);
        return;
      }
      if (sent.error == EINTR) continue;
      if (sent.error != EAGAIN && sent.error != EWOULDBLOCK)
        activity.fail("sendmsg of " + which + " failed: " + sent.error_text());
      if (wait_for(*os_, socket_.get(), POLLOUT, deadline, -1, activity) == Wait::Deadline)
        activity.fail("timed out: the peer has not read " + which + " (its socket buffer stays full)");
    }
  };

  send_packet(header.data(), header.size(), true, "the header");
  const size_t packets = (body.size() + kBodyPacketBytes - 1) / kBodyPacketBytes;
  for (size_t packet = 0; packet < packets; ++packet) {
    const size_t offset = packet * kBodyPacketBytes;
    send_packet(body.data() + offset, std::min(kBodyPacketBytes, body.size() - offset), false,
                "body packet " + std::to_string(packet + 1) + " of " + std::to_string(packets));
  }
}

Message HandoverChannel::receive(Clock::time_point deadline, int watch_fd) {
  Activity activity{"receiving", {}};
  alignas(cmsghdr) unsigned char control[kControlBytes];

  // One packet into [data, data + capacity): its length (0: the peer closed
  // the channel) and its descriptors, owned. A packet longer than `capacity`,
  // or with a control message cut short, is an error.
  struct Packet {
    size_t bytes = 0;
    std::vector<os::Fd> fds;
    bool control_truncated = false;
  };
  // A peer that closes with bytes of ours still unread makes the kernel report
  // ECONNRESET once, ahead of the packets it had sent before closing (its last
  // Error, typically): those are read after it, then the end of the stream.
  bool reset_reported = false;
  const auto receive_packet = [&](char* data, size_t capacity, const std::string& which) {
    for (;;) {
      switch (wait_for(*os_, socket_.get(), POLLIN, deadline, watch_fd, activity)) {
        case Wait::Ready: break;
        case Wait::Deadline: activity.fail("timed out waiting for " + which);
        case Wait::WatchFired: activity.fail("the peer process exited (waiting for " + which + ")");
      }
      iovec vector{data, capacity};
      msghdr message{};
      message.msg_iov = &vector;
      message.msg_iovlen = 1;
      message.msg_control = control;
      message.msg_controllen = sizeof control;
      const os::SysCallSizeResult received = os_->recvmsg(socket_.get(), message, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
      if (!received.ok()) {
        if (received.error == EINTR || received.error == EAGAIN || received.error == EWOULDBLOCK) continue;
        if (received.error == ECONNRESET && !reset_reported) {
          reset_reported = true;
          continue;
        }
        activity.fail("recvmsg of " + which + " failed: " + received.error_text());
      }
      Packet packet;
      packet.fds = take_descriptors(message, *os_);
      packet.bytes = size_t(received.value);
      packet.control_truncated = (message.msg_flags & MSG_CTRUNC) != 0;
      if (message.msg_flags & MSG_TRUNC)
        activity.fail(which + " is longer than " + std::to_string(capacity) + " bytes (the packet was cut)");
      return packet;
    }
  };

  char header[kHeaderBytes];
  Packet head = receive_packet(header, sizeof header, "the header");
  if (head.bytes == 0) activity.fail("the peer closed the channel");
  if (head.bytes != kHeaderBytes)
    activity.fail("a header of " + std::to_string(head.bytes) + " bytes, expected " + std::to_string(kHeaderBytes));
  const uint32_t magic = uint32_t(get_le(header, 4));
  const uint16_t version = uint16_t(get_le(header + 4, 2));
  const uint16_t type = uint16_t(get_le(header + 6, 2));
  const uint32_t fd_count = uint32_t(get_le(header + 8, 4));
  const uint32_t reserved = uint32_t(get_le(header + 12, 4));
  const uint64_t body_bytes = get_le(header + 16, 8);
  if (magic != kProtocolMagic) {
    char shown[16];
    std::snprintf(shown, sizeof shown, "0x%08X", magic);
    activity.fail(std::string("bad magic ") + shown + ": the peer does not speak the handover protocol");
  }
  if (version != kProtocolVersion)
    activity.fail("the peer speaks handover protocol version " + std::to_string(version) +
                  ", this host speaks " + std::to_string(kProtocolVersion));
  if (known_type(type)) activity.type = to_string(MessageType(type));
  if (head.control_truncated)
    activity.fail("control message truncated: descriptors were lost (is the receiver out of descriptors?)");
  if (!known_type(type)) activity.fail("unknown message type " + std::to_string(type));
  if (reserved != 0) activity.fail("reserved header field is " + std::to_string(reserved) + ", not 0");
  if (fd_count > kMaxFdsPerMessage)
    activity.fail("the header announces " + std::to_string(fd_count) + " descriptors, at most " +
                  std::to_string(kMaxFdsPerMessage) + " ride on one message");
  if (head.fds.size() != fd_count)
    activity.fail("the header announces " + std::to_string(fd_count) + " descriptors, " +
                  std::to_string(head.fds.size()) + " arrived");
  if (body_bytes > kMaxBodyBytes)
    activity.fail("a body of " + std::to_string(body_bytes) + " bytes, at most " + std::to_string(kMaxBodyBytes));

  Message received;
  received.type = MessageType(type);
  received.fds = std::move(head.fds);
  // Grown as packets arrive: a body length the peer merely claims reserves little.
  received.body.reserve(size_t(std::min<uint64_t>(body_bytes, kBodyReserveBytes)));
  while (received.body.size() < body_bytes) {
    const size_t offset = received.body.size();
    const size_t capacity = size_t(std::min<uint64_t>(kBodyPacketBytes, body_bytes - offset));
    const std::string which = "the body (" + std::to_string(offset) + " of " + std::to_string(body_bytes) + " bytes)";
    received.body.resize(offset + capacity);
    Packet packet = receive_packet(received.body.data() + offset, capacity, which);
    if (packet.control_truncated || !packet.fds.empty())
      activity.fail("descriptors attached to a body packet (they ride on the header only)");
    if (packet.bytes == 0) activity.fail("the peer closed the channel in the middle of " + which);
    received.body.resize(offset + packet.bytes);
  }
  return received;
}

Message HandoverChannel::expect(MessageType type, Clock::time_point deadline, int watch_fd) {
  Message received = receive(deadline, watch_fd);
  if (received.type == MessageType::Error && type != MessageType::Error) {
    std::string reported;
    try {
      reported = decode_error(received.body);
    } catch (const HandoverError& error) {
      throw HandoverError(std::string("handover: the peer reported an error that could not be read (") +
                          error.what() + ")");
    }
    if (reported.size() > kMaxShownPeerErrorBytes)
      reported = reported.substr(0, kMaxShownPeerErrorBytes) + "... (" + std::to_string(reported.size()) + " bytes)";
    throw HandoverError("handover: the peer reported: " + reported);
  }
  if (received.type != type)
    throw HandoverError(std::string("handover: expected ") + to_string(type) + ", received " +
                        to_string(received.type));
  return received;
}

// ---- bodies --------------------------------------------------------------
//
// Every element's layout is in handover_channel.hpp. The encoding is
// canonical: decode(body) succeeds only on what encode() of its result gives
// back byte for byte (the fuzz target checks it).

namespace {

// Wire values of ModuleEvent::Kind: fixed here, so that a reordered enum
// cannot change the protocol.
constexpr uint8_t kEventConnect = 1, kEventMessage = 2, kEventDisconnect = 3, kEventTick = 4, kEventTimer = 5;

uint8_t wire_kind(ModuleEvent::Kind kind) {
  switch (kind) {
    case ModuleEvent::Kind::Connect: return kEventConnect;
    case ModuleEvent::Kind::Message: return kEventMessage;
    case ModuleEvent::Kind::Disconnect: return kEventDisconnect;
    case ModuleEvent::Kind::Tick: return kEventTick;
    case ModuleEvent::Kind::Timer: return kEventTimer;
  }
  return 0;
}

class Writer {
 public:
  void u8(uint8_t value) { out_.push_back(char(value)); }
  void u32(uint32_t value) { put_u32(out_, value); }
  void u64(uint64_t value) { put_u64(out_, value); }
  void i64(int64_t value) { put_u64(out_, uint64_t(value)); }
  void boolean(bool value) { u8(value ? 1 : 0); }
  void str(std::string_view value) {
    u64(value.size());
    out_.append(value);
  }
  void count(size_t n) { u32(uint32_t(n)); }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

// Reads a body front to back; every failure names the message, the element
// (with its index) and the field.
class Reader {
 public:
  Reader(std::string_view body, const char* message) : body_(body), message_(message) {}

  // The element the following fields belong to ("connection", 3), and an
  // element inside it ("timer", 0); at() leaves the inner one.
  void at(const char* element, size_t index) {
    element_ = element;
    index_ = index;
    inner_ = nullptr;
  }
  void at_inner(const char* element, size_t index) {
    inner_ = element;
    inner_index_ = index;
  }
  void at_top() { element_ = inner_ = nullptr; }

  [[noreturn]] void fail(const char* field, const std::string& what) const {
    std::string where = std::string("handover: decoding ") + message_ + ": ";
    if (element_ != nullptr) where += std::string(element_) + " " + std::to_string(index_) + " ";
    if (inner_ != nullptr) where += std::string(inner_) + " " + std::to_string(inner_index_) + " ";
    throw HandoverError(where + field + ": " + what);
  }

  uint64_t fixed(const char* field, size_t width) {
    if (left() < width)
      fail(field, "needs " + std::to_string(width) + " bytes, " + std::to_string(left()) + " left in the body");
    const uint64_t value = get_le(body_.data() + offset_, width);
    offset_ += width;
    return value;
  }
  uint8_t u8(const char* field) { return uint8_t(fixed(field, 1)); }
  uint32_t u32(const char* field) { return uint32_t(fixed(field, 4)); }
  uint64_t u64(const char* field) { return fixed(field, 8); }
  int64_t i64(const char* field) { return int64_t(fixed(field, 8)); }
  bool boolean(const char* field) {
    const uint8_t value = u8(field);
    if (value > 1) fail(field, "a bool is 0 or 1, not " + std::to_string(value));
    return value == 1;
  }
  std::string str(const char* field) {
    const uint64_t length = u64(field);
    if (length > left())
      fail(field, "a length of " + std::to_string(length) + " bytes, " + std::to_string(left()) + " left in the body");
    std::string value(body_.substr(offset_, size_t(length)));
    offset_ += size_t(length);
    return value;
  }
  // An element count, each element taking at least `min_element_bytes`: a
  // count the rest of the body cannot hold is refused before anything is reserved.
  size_t count(const char* field, size_t min_element_bytes) {
    const uint32_t n = u32(field);
    if (n > left() / min_element_bytes)
      fail(field, std::to_string(n) + " elements of at least " + std::to_string(min_element_bytes) + " bytes, " +
                      std::to_string(left()) + " bytes left in the body");
    return n;
  }
  void finish() {
    at_top();
    if (left() != 0) fail("end", std::to_string(left()) + " trailing bytes after the last field");
  }

 private:
  size_t left() const { return body_.size() - offset_; }

  std::string_view body_;
  size_t offset_ = 0;
  const char* message_;
  const char* element_ = nullptr;
  size_t index_ = 0;
  const char* inner_ = nullptr;
  size_t inner_index_ = 0;
};

// Smallest encodings, for the element-count checks.
constexpr size_t kMinLoadedModuleBytes = 8 + 8 + 4;
constexpr size_t kMinListenerBytes = 8 + 8 + 4;
constexpr size_t kMinConnectionBytes = 8 + 8 + 8 + 8 + 8 + 8 + 1;
constexpr size_t kMinSlotBytes = 8 + 8 + 4 + 1 + 8 + 8 + 8 + 4 + 4;
constexpr size_t kTimerBytes = 8 * 4;
constexpr size_t kMinEventBytes = 1 + 8 + 8 + 8 + 4 + 8 + 8;

}  // namespace

std::string encode_hello(const Hello& hello) {
  Writer out;
  out.u32(hello.protocol);
  out.i64(hello.pid);
  out.str(hello.target_version);
  return out.take();
}

Hello decode_hello(std::string_view body) {
  Reader in(body, "Hello");
  Hello hello;
  hello.protocol = in.u32("protocol");
  hello.pid = in.i64("pid");
  if (hello.pid <= 0) in.fail("pid", std::to_string(hello.pid) + " is not a process id");
  hello.target_version = in.str("target_version");
  in.finish();
  return hello;
}

std::string encode_loaded(const std::vector<LoadedModule>& modules) {
  Writer out;
  out.count(modules.size());
  for (const LoadedModule& module : modules) {
    out.str(module.name);
    out.str(module.version);
    out.u32(module.schema);
  }
  return out.take();
}

std::vector<LoadedModule> decode_loaded(std::string_view body) {
  Reader in(body, "Loaded");
  const size_t n = in.count("module count", kMinLoadedModuleBytes);
  std::vector<LoadedModule> modules(n);
  std::set<std::string> names;
  for (size_t i = 0; i < n; ++i) {
    in.at("module", i);
    LoadedModule& module = modules[i];
    module.name = in.str("name");
    if (module.name.empty()) in.fail("name", "empty");
    if (!names.insert(module.name).second) in.fail("name", "\"" + module.name + "\" appears twice");
    module.version = in.str("version");
    module.schema = in.u32("schema");
  }
  in.finish();
  return modules;
}

std::string encode_error(const std::string& message) {
  Writer out;
  out.str(message);
  return out.take();
}

std::string decode_error(std::string_view body) {
  Reader in(body, "Error");
  std::string message = in.str("message");
  in.finish();
  return message;
}

std::string encode_listeners(const std::vector<ListenerHandover>& listeners) {
  Writer out;
  out.count(listeners.size());
  for (const ListenerHandover& listener : listeners) {
    out.str(listener.name);
    out.str(listener.address);
    out.u32(listener.port);
  }
  return out.take();
}

std::vector<ListenerHandover> decode_listeners(std::string_view body) {
  Reader in(body, "Listeners");
  const size_t n = in.count("listener count", kMinListenerBytes);
  std::vector<ListenerHandover> listeners(n);
  std::set<std::string> names;
  for (size_t i = 0; i < n; ++i) {
    in.at("listener", i);
    ListenerHandover& listener = listeners[i];
    listener.name = in.str("name");
    if (listener.name.empty()) in.fail("name", "empty");
    if (!names.insert(listener.name).second) in.fail("name", "\"" + listener.name + "\" appears twice");
    listener.address = in.str("address");
    const uint32_t port = in.u32("port");
    if (port > 65535) in.fail("port", std::to_string(port) + " is not a port");
    listener.port = uint16_t(port);
  }
  in.finish();
  return listeners;
}

std::string encode_connections(const std::vector<ConnectionHandover>& connections) {
  Writer out;
  out.count(connections.size());
  for (const ConnectionHandover& connection : connections) {
    out.u64(connection.id);
    out.str(connection.listener);
    out.str(connection.peer);
    out.str(connection.unread_input);
    out.str(connection.unsent_output);
    out.u64(connection.idle_ms);
    out.boolean(connection.close_after_output);
  }
  return out.take();
}

std::vector<ConnectionHandover> decode_connections(std::string_view body) {
  Reader in(body, "ConnectionBatch");
  const size_t n = in.count("connection count", kMinConnectionBytes);
  std::vector<ConnectionHandover> connections(n);
  std::unordered_set<hotswap_conn_id> ids;
  ids.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    in.at("connection", i);
    ConnectionHandover& connection = connections[i];
    connection.id = in.u64("id");
    if (connection.id == 0) in.fail("id", "0 is never a connection id");
    if (!ids.insert(connection.id).second) in.fail("id", std::to_string(connection.id) + " appears twice");
    connection.listener = in.str("listener");
    connection.peer = in.str("peer");
    connection.unread_input = in.str("unread_input");
    connection.unsent_output = in.str("unsent_output");
    connection.idle_ms = in.u64("idle_ms");
    connection.close_after_output = in.boolean("close_after_output");
  }
  in.finish();
  return connections;
}

std::string encode_count(uint32_t n) {
  Writer out;
  out.u32(n);
  return out.take();
}

uint32_t decode_count(std::string_view body) {
  Reader in(body, "BatchAck");
  const uint32_t n = in.u32("count");
  in.finish();
  return n;
}

std::string encode_slots(const SlotsMessage& message) {
  Writer out;
  out.u64(message.counters.next_conn_id);
  out.u64(message.counters.next_timer_id);
  out.count(message.slots.size());
  for (const SlotHandover& slot : message.slots) {
    out.str(slot.module);
    out.str(slot.version);
    out.u32(slot.schema);
    out.u8(uint8_t(slot.arrival));
    out.str(slot.state);
    out.str(slot.extra_json);
    out.u64(slot.tick_number);
    out.count(slot.timers.size());
    for (const TimerHandover& timer : slot.timers) {
      out.u64(timer.id);
      out.u64(timer.remaining_ms);
      out.u64(timer.repeat_ms);
      out.u64(timer.tag);
    }
    out.count(slot.queued.size());
    for (const ModuleEvent& event : slot.queued) {
      out.u8(wire_kind(event.kind));
      out.u64(event.conn);
      out.str(event.payload);
      out.str(event.peer);
      out.u32(uint32_t(event.reason));
      out.u64(event.number);
      out.u64(event.timer);
    }
  }
  return out.take();
}

SlotsMessage decode_slots(std::string_view body) {
  Reader in(body, "Slots");
  SlotsMessage message;
  message.counters.next_conn_id = in.u64("next_conn_id");
  if (message.counters.next_conn_id == 0) in.fail("next_conn_id", "0 is never a connection id");
  message.counters.next_timer_id = in.u64("next_timer_id");
  if (message.counters.next_timer_id == 0) in.fail("next_timer_id", "0 is never a timer id");
  const size_t n = in.count("slot count", kMinSlotBytes);
  message.slots.resize(n);
  std::set<std::string> modules;
  for (size_t i = 0; i < n; ++i) {
    in.at("slot", i);
    SlotHandover& slot = message.slots[i];
    slot.module = in.str("module");
    if (slot.module.empty()) in.fail("module", "empty");
    if (!modules.insert(slot.module).second) in.fail("module", "\"" + slot.module + "\" appears twice");
    slot.version = in.str("version");
    slot.schema = in.u32("schema");
    const uint8_t arrival = in.u8("arrival");
    if (arrival < uint8_t(StateArrival::Import) || arrival > uint8_t(StateArrival::Fresh))
      in.fail("arrival", "unknown state arrival " + std::to_string(arrival) + " (Import 1, MigrateUp 2, Fresh 3)");
    slot.arrival = StateArrival(arrival);
    slot.state = in.str("state");
    slot.extra_json = in.str("extra_json");
    slot.tick_number = in.u64("tick_number");

    const size_t timers = in.count("timer count", kTimerBytes);
    slot.timers.resize(timers);
    std::unordered_set<hotswap_timer_id> timer_ids;
    timer_ids.reserve(timers);
    for (size_t t = 0; t < timers; ++t) {
      in.at_inner("timer", t);
      TimerHandover& timer = slot.timers[t];
      timer.id = in.u64("id");
      if (timer.id == 0) in.fail("id", "0 is never a timer id");
      if (!timer_ids.insert(timer.id).second) in.fail("id", std::to_string(timer.id) + " appears twice");
      timer.remaining_ms = in.u64("remaining_ms");
      timer.repeat_ms = in.u64("repeat_ms");
      timer.tag = in.u64("tag");
    }
    in.at("slot", i);

    const size_t queued = in.count("queued event count", kMinEventBytes);
    slot.queued.reserve(queued);
    for (size_t e = 0; e < queued; ++e) {
      in.at_inner("queued event", e);
      ModuleEvent event{ModuleEvent::Kind::Connect, 0, {}, {}, HOTSWAP_DISCONNECT_PEER_CLOSED, 0, 0};
      switch (const uint8_t kind = in.u8("kind")) {
        case kEventConnect: event.kind = ModuleEvent::Kind::Connect; break;
        case kEventMessage: event.kind = ModuleEvent::Kind::Message; break;
        case kEventDisconnect: event.kind = ModuleEvent::Kind::Disconnect; break;
        case kEventTick: event.kind = ModuleEvent::Kind::Tick; break;
        case kEventTimer: event.kind = ModuleEvent::Kind::Timer; break;
        default:
          in.fail("kind", "unknown event kind " + std::to_string(kind) +
                              " (Connect 1, Message 2, Disconnect 3, Tick 4, Timer 5)");
      }
      event.conn = in.u64("conn");
      event.payload = in.str("payload");
      event.peer = in.str("peer");
      const uint32_t reason = in.u32("reason");
      if (reason > HOTSWAP_DISCONNECT_SHUTDOWN) in.fail("reason", "unknown disconnect reason " + std::to_string(reason));
      event.reason = hotswap_disconnect_reason(reason);
      event.number = in.u64("number");
      event.timer = in.u64("timer");
      slot.queued.push_back(std::move(event));
    }
  }
  in.finish();
  return message;
}

}  // namespace hotswap::host::handover
