// The blue-green handover protocol: one Unix SOCK_SEQPACKET socket pair,
// created by blue, one end inherited by green (the only descriptor green
// inherits besides 0-2). Both sides are blocking and bounded by a deadline.
//
// Wire format, version kProtocolVersion (all integers little-endian):
//   Every message is one header packet, then its body in packets of at most
//   kBodyPacketBytes (none when the body is empty).
//   header (24 bytes):
//     u32 magic      0x4F485348 ("HSHO")
//     u16 version    kProtocolVersion; a receiver refuses any other version
//                    with "the peer speaks handover protocol version X, this
//                    host speaks Y" (the whole handover aborts, blue serves on)
//     u16 type       MessageType
//     u32 fd_count   descriptors attached to the header packet (SCM_RIGHTS),
//                    at most kMaxFdsPerMessage
//     u32 reserved   0
//     u64 body_bytes at most kMaxBodyBytes
//   Descriptors ride on the header packet only; the control buffer is sized
//   with CMSG_SPACE(kMaxFdsPerMessage * sizeof(int)); MSG_CTRUNC (a control
//   message cut short, as when the receiver is out of descriptors) is an
//   error, never a silent loss; received descriptors are close-on-exec
//   (MSG_CMSG_CLOEXEC). A count that differs from fd_count is an error.
//
// Conversation (G = green, B = blue):
//   G→B Hello            {u32 protocol, i64 pid, str target_version}
//   G→B Loaded           {u32 n, n × {str name, str version, u32 schema}}
//                        the target release is loaded (its modules)
//   B→G Listeners        {u32 n, n × listener}   + n descriptors, same order
//   B→G ConnectionBatch  {u32 n, n × connection} + n descriptors (n ≤ 252)
//   G→B BatchAck         {u32 n}                 after every batch
//   B→G Slots            {counters, u32 n, n × slot}
//   G→B Ready            {}  every listener accepts, every module started
//   B→G Commit           {}  blue closes its copies and exits; green serves
//   either way: Error    {str message}           the sender gives up
// Any unexpected type is an error. Until Commit, green reads and writes no
// connection and accepts nothing, so blue can take everything back.
//
// Body encoding: u32/u64 little-endian; str = u64 length + bytes; bool = u8;
// each decoder checks every length against what remains and throws
// HandoverError naming the field on anything malformed (green and blue treat
// each other's bytes as untrusted: bounded, never a crash).
//   loaded module {str name, str version, u32 schema}  name non-empty, unique
//   listener    {str name, str address, u32 port}   name non-empty, unique; port <= 65535
//   connection  {u64 id, str listener, str peer, str unread_input,
//                str unsent_output, u64 idle_ms, bool close_after_output}  id != 0, unique in a batch
//   counters    {u64 next_conn_id, u64 next_timer_id}  neither 0
//   slot        {str module, str version, u32 schema, u8 arrival (StateArrival
//                1..3), str state, str extra_json, u64 tick_number,
//                u32 n, n × timer, u32 m, m × event}  module non-empty, unique
//   timer       {u64 id, u64 remaining_ms, u64 repeat_ms, u64 tag}  id != 0, unique in its slot
//   event       {u8 kind (Connect 1, Message 2, Disconnect 3, Tick 4, Timer 5),
//                u64 conn, str payload, str peer, u32 reason
//                (hotswap_disconnect_reason 0..5), u64 number, u64 timer}
//   Hello's pid is > 0. Trailing bytes and unknown enum values are refused;
//   the encoding is canonical (a decoded body re-encodes to the same bytes).
#pragma once

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "handover/handover_state.hpp"
#include "os/fd.hpp"
#include "os/os_sys_calls.hpp"

namespace hotswap::host::handover {

constexpr uint32_t kProtocolMagic = 0x4F485348;
constexpr uint16_t kProtocolVersion = 1;
constexpr size_t kHeaderBytes = 24;
constexpr size_t kMaxFdsPerMessage = 252;
constexpr size_t kBodyPacketBytes = 64 * 1024;
constexpr uint64_t kMaxBodyBytes = uint64_t(8) << 30;

// The name under which the admin socket travels in Listeners (no runtime
// config listener can have it: listener names are identifiers).
constexpr const char kAdminListenerName[] = "@admin";

enum class MessageType : uint16_t {
  Hello = 1,
  Loaded = 2,
  Listeners = 3,
  ConnectionBatch = 4,
  BatchAck = 5,
  Slots = 6,
  Ready = 7,
  Commit = 8,
  Error = 9,
};
const char* to_string(MessageType type);

// Every protocol failure: its message says what went wrong and where
// ("handover: receiving ConnectionBatch: control message truncated ...").
class HandoverError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Message {
  MessageType type = MessageType::Error;
  std::string body;
  std::vector<os::Fd> fds;  // owned, close-on-exec
};

class HandoverChannel {
 public:
  using Clock = std::chrono::steady_clock;

  // Owns `socket` (a SOCK_SEQPACKET Unix socket). `os` must outlive the channel.
  explicit HandoverChannel(os::Fd socket, os::OsSysCalls& os = os::real_os_sys_calls());
  int fd() const { return socket_.get(); }

  // Sends one message: the header packet with `fds` attached (at most
  // kMaxFdsPerMessage; the descriptors stay the caller's), then the body.
  // Throws HandoverError (sendmsg failed, the peer is gone: EPIPE, too many fds).
  // While the socket buffer is full (the peer has not read yet) it waits for
  // room, until `deadline` (by default for as long as it takes); then throws.
  // The socket's O_NONBLOCK flag does not matter (each call is MSG_DONTWAIT).
  // After any HandoverError (either direction) the channel is unusable.
  void send(MessageType type, std::string_view body = {}, const std::vector<int>& fds = {},
            Clock::time_point deadline = Clock::time_point::max());

  // The next message, waiting until `deadline`. When `watch_fd` (a pidfd of
  // the peer, or -1) becomes readable first, throws HandoverError("the peer
  // process exited"). Throws HandoverError on timeout, end of stream, a bad
  // magic or version, a truncated control message, a descriptor count that
  // does not match, a body over kMaxBodyBytes or cut short. An Error message
  // is returned like any other (see expect()).
  Message receive(Clock::time_point deadline, int watch_fd = -1);

  // receive(), then: an Error message throws HandoverError("the peer reported:
  // <its message>"); any type other than `type` throws naming both.
  Message expect(MessageType type, Clock::time_point deadline, int watch_fd = -1);

 private:
  os::Fd socket_;
  os::OsSysCalls* os_;
};

// ---- bodies --------------------------------------------------------------
// encode_* never fail; decode_* throw HandoverError naming what is malformed
// (a length past the end, an unknown enum value, trailing bytes).

struct Hello {
  uint32_t protocol = kProtocolVersion;
  int64_t pid = 0;
  std::string target_version;
};
std::string encode_hello(const Hello& hello);
Hello decode_hello(std::string_view body);

// Loaded: what green loaded, so that blue can tell which state each module
// can take (a downgrade's migrate_down needs the older schema).
struct LoadedModule {
  std::string name;
  std::string version;
  uint32_t schema = 0;
};
std::string encode_loaded(const std::vector<LoadedModule>& modules);
std::vector<LoadedModule> decode_loaded(std::string_view body);

std::string encode_error(const std::string& message);
std::string decode_error(std::string_view body);

// Listener and connection `fd` fields are not encoded: the descriptors travel
// beside the body, in the same order. decode_* leave fd = -1.
std::string encode_listeners(const std::vector<ListenerHandover>& listeners);
std::vector<ListenerHandover> decode_listeners(std::string_view body);

std::string encode_connections(const std::vector<ConnectionHandover>& connections);
std::vector<ConnectionHandover> decode_connections(std::string_view body);

std::string encode_count(uint32_t n);  // BatchAck
uint32_t decode_count(std::string_view body);

struct SlotsMessage {
  HostCountersHandover counters;
  std::vector<SlotHandover> slots;
};
std::string encode_slots(const SlotsMessage& slots);
SlotsMessage decode_slots(std::string_view body);

}  // namespace hotswap::host::handover
