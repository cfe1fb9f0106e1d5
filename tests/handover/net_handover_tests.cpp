// The network server's and the registry's side of a blue-green handover, in
// one process: two event loops with a server and a registry each (blue and
// green), the same counter module loaded into both, real TCP clients. Blue
// pauses mid-traffic, its descriptors are dup()ed (as SCM_RIGHTS would) and
// adopted by green, and every client must see every reply exactly once, in
// order, from connections that kept their ids. Everything runs on the test's
// thread: the loops are pumped until a condition holds, and module time moves
// only through ManualTimerSource.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/library_loader.hpp"
#include "core/module_registry.hpp"
#include "handover/handover_state.hpp"
#include "net/network_server.hpp"
#include "net/timer_source.hpp"
#include "os/fd.hpp"

namespace {

namespace asio = boost::asio;
using Catch::Matchers::Contains;
using hotswap::host::ConnectionHandover;
using hotswap::host::ListenerConfig;
using hotswap::host::ManualTimerSource;
using hotswap::host::ModuleSlot;
using hotswap::host::NetworkServer;
using hotswap::host::SlotHandover;

std::string counter_file() { return std::string(HOTSWAP_TEST_MODULES_DIR) + "/good/counter-1.0.0.so"; }

ListenerConfig main_listener(std::chrono::seconds idle_timeout = std::chrono::seconds(0)) {
  ListenerConfig config;
  config.name = "main";
  config.module = "counter";
  config.max_frame_bytes = 4096;
  config.idle_timeout = idle_timeout;
  return config;
}

// One process's host: its own loop, clock, server, registry and counter module.
struct Side {
  asio::io_context io;
  std::shared_ptr<ManualTimerSource> clock = std::make_shared<ManualTimerSource>();
  NetworkServer server{io, registry};
  hotswap::host::ModuleRegistry registry{server};
  hotswap::host::LibraryLoader loader;
  ModuleSlot* slot = nullptr;

  Side() {
    server.set_timer_source(clock);
    hotswap::host::ServerLimits limits;
    limits.max_output_bytes = 64 << 20;  // the non-reading clients must not be closed as slow readers
    server.set_limits(limits);
    slot = &registry.start(loader.load(counter_file()));
  }
  ~Side() {
    registry.stop_all();
    io.poll();  // the posted disconnects reach no module any more
  }

  // Runs this loop until `condition` holds; false if it still does not after
  // a bound that only a broken server reaches. Waiting blocks on the loop's
  // own events, never on a sleep.
  template <class Condition>
  bool pump_until(Condition condition, std::chrono::seconds limit = std::chrono::seconds(20)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!condition()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      if (io.stopped()) io.restart();
      // Short: the condition may also wait on a client (draining its socket
      // lets the server write again).
      if (io.poll() == 0) io.run_one_for(std::chrono::milliseconds(1));
    }
    return true;
  }
  // Runs every handler that is ready now.
  void settle() {
    if (io.stopped()) io.restart();
    io.poll();
  }
  std::vector<hotswap_conn_id> connection_ids() {
    std::vector<hotswap::host::HostServices::ConnectionRef> refs;
    server.list_connections("counter", nullptr, refs);
    std::vector<hotswap_conn_id> ids;
    for (const auto& ref : refs) ids.push_back(ref.id);
    return ids;
  }
};

// A blocking-connected client whose reads and writes never block: the
// server's loop runs on the same thread.
struct Client {
  int fd = -1;
  std::string received;

  explicit Client(uint16_t port, int receive_buffer = 0) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (receive_buffer > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    // Loopback: the kernel completes the handshake into the listener's backlog.
    if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  ~Client() {
    if (fd >= 0) ::close(fd);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Writes all of `data`, running `side`'s loop whenever the socket is full.
  bool send(Side& side, const std::string& data) {
    size_t sent = 0;
    return side.pump_until([&] {
      ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) sent += size_t(n);
      return sent == data.size() || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
    }) && sent == data.size();
  }
  // Takes what has arrived; false once the server closed the connection.
  bool drain() {
    char buffer[65536];
    for (;;) {
      ssize_t n = ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
      if (n > 0) {
        received.append(buffer, size_t(n));
        continue;
      }
      return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
  }
  size_t lines() const { return size_t(std::count(received.begin(), received.end(), '\n')); }
  std::vector<std::string> split() const {
    std::vector<std::string> out;
    size_t start = 0;
    for (size_t end; (end = received.find('\n', start)) != std::string::npos; start = end + 1)
      out.push_back(received.substr(start, end - start));
    return out;
  }
  // Runs `side` until `count` lines arrived.
  bool await_lines(Side& side, size_t count) {
    return side.pump_until([&] {
      drain();
      return lines() >= count;
    });
  }
  // Runs `side` until the server closed this connection.
  bool await_close(Side& side) {
    return side.pump_until([&] { return !drain(); });
  }
};

// What SCM_RIGHTS gives green: another descriptor for the same socket.
hotswap::os::Fd dup_fd(int fd) { return hotswap::os::Fd(::fcntl(fd, F_DUPFD_CLOEXEC, 0)); }

std::string get_burst(size_t first, size_t count, const std::string& tag) {
  std::string burst;
  for (size_t i = first; i < first + count; ++i) burst += "get #" + std::to_string(i) + tag + "\n";
  return burst;
}

// Sends "get" bursts from `client`, which does not read, until `side` holds
// more unsent output than before (the kernel's buffers take the first part).
// Returns how many requests it sent (0: the server did not keep up).
size_t stall_output(Side& side, Client& client, const std::string& tag) {
  const size_t before = side.server.output_bytes();
  const uint64_t frames_before = side.server.stats().frames_in;
  size_t sent = 0;
  for (int round = 0; round < 40 && side.server.output_bytes() <= before; ++round) {
    if (!client.send(side, get_burst(sent, 300, tag))) return 0;
    sent += 300;
    if (!side.pump_until([&] { return side.server.stats().frames_in >= frames_before + sent; })) return 0;
  }
  return side.server.output_bytes() > before ? sent : 0;
}

// The replies `stall_output` asked for, while the counter's total was `total`.
std::vector<std::string> get_replies(size_t count, uint64_t total, const std::string& tag) {
  std::vector<std::string> out;
  for (size_t i = 0; i < count; ++i)
    out.push_back("v1 total=" + std::to_string(total) + " #" + std::to_string(i) + tag);
  return out;
}

// Blue mid-traffic: an ordinary client (a), one with a partial frame in the
// server's input (p), one that does not read (s), and one that does not read
// and asked to leave (q): its connection closes once its output is written.
struct Traffic {
  const std::string tag = std::string(900, 'x');
  Client a, p, s, q;
  size_t s_requests = 0, q_requests = 0;

  Traffic(Side& blue, uint16_t port) : a(port), p(port), s(port, 4096), q(port, 4096) {
    REQUIRE(a.send(blue, "add 1 #1\nadd 1 #2\n"));
    REQUIRE(a.await_lines(blue, 2));
    // The reply to "get #3" proves the server read the one write that also
    // holds the incomplete "add 10 #4".
    REQUIRE(p.send(blue, "get #3\nadd 10 #4"));
    REQUIRE(p.await_lines(blue, 1));
    q_requests = stall_output(blue, q, tag);
    REQUIRE(q_requests > 0);
    const uint64_t frames = blue.server.stats().frames_in;
    REQUIRE(q.send(blue, "bye #end\n"));
    REQUIRE(blue.pump_until([&] { return blue.server.stats().frames_in == frames + 1; }));
    s_requests = stall_output(blue, s, tag);
    REQUIRE(s_requests > 0);
  }

  // Every reply each client is owed, exactly once and in order, from `side`
  // (the counter's total was 2 before the pause; a sends "add 1 #5" and p
  // completes "add 10 #4" after it).
  void check_served_by(Side& side) {
    REQUIRE(a.await_lines(side, 3));
    CHECK(a.split() == std::vector<std::string>{"v1 total=1 #1", "v1 total=2 #2", "v1 total=3 #5"});
    REQUIRE(p.send(side, "\n"));
    REQUIRE(p.await_lines(side, 2));
    CHECK(p.split() == std::vector<std::string>{"v1 total=2 #3", "v1 total=13 #4"});
    REQUIRE(s.await_lines(side, s_requests));
    CHECK(s.split() == get_replies(s_requests, 2, tag));
    CHECK(q.await_close(side));
    std::vector<std::string> q_expected = get_replies(q_requests, 2, tag);
    q_expected.push_back("v1 bye #end");
    CHECK(q.split() == q_expected);
  }
};

const ConnectionHandover* find_connection(const NetworkServer::HandoverExport& exported, hotswap_conn_id id) {
  for (const ConnectionHandover& c : exported.connections)
    if (c.id == id) return &c;
  return nullptr;
}

}  // namespace

TEST_CASE(
    "blue pauses mid-traffic and green carries every connection on with its id, its buffers and every reply once") {
  Side blue;
  const uint16_t port = blue.server.listen(main_listener());
  Traffic traffic(blue, port);
  const std::vector<hotswap_conn_id> ids = blue.connection_ids();
  REQUIRE(ids.size() == 3);  // q is closing: no longer listed as open, but still held and moved
  const size_t unsent = blue.server.output_bytes();

  NetworkServer::HandoverExport exported = blue.server.pause_for_handover();
  // A client that sends during the handover, and one that connects during it.
  REQUIRE(traffic.a.send(blue, "add 1 #5\n"));
  Client backlog(port);
  const uint64_t frames_paused = blue.server.stats().frames_in;
  blue.settle();
  CHECK(blue.server.stats().frames_in == frames_paused);  // paused: nothing read
  CHECK(blue.server.stats().accepted == 4);               // nor accepted

  REQUIRE(exported.listeners.size() == 1);
  CHECK(exported.listeners[0].name == "main");
  CHECK(exported.listeners[0].port == port);
  REQUIRE(exported.connections.size() == 4);
  CHECK(exported.next_conn_id == 5);  // a, p, s and q took 1 to 4
  const ConnectionHandover* p = find_connection(exported, ids[1]);
  REQUIRE(p != nullptr);
  CHECK(p->unread_input == "add 10 #4");
  CHECK(p->unsent_output.empty());
  CHECK(p->listener == "main");
  CHECK_THAT(p->peer, Contains("127.0.0.1:"));
  size_t exported_output = 0;
  size_t closing = 0;
  for (const ConnectionHandover& c : exported.connections) {
    exported_output += c.unsent_output.size();
    closing += c.close_after_output;
    CHECK(c.fd >= 0);
  }
  CHECK(exported_output == unsent);  // every unwritten byte, the tail of a partly written frame included
  CHECK(closing == 1);
  const std::string state = blue.slot->active().export_state();

  Side green;
  green.slot->active().import_state(1, state);
  green.server.adopt_listener(main_listener(), dup_fd(exported.listeners[0].fd));
  for (const ConnectionHandover& c : exported.connections) green.server.adopt_connection(c, dup_fd(c.fd));
  green.server.set_next_connection_id(exported.next_conn_id);
  green.settle();
  CHECK(green.server.stats().frames_in == 0);  // nothing moves before start_adopted
  CHECK(green.server.stats().accepted == 0);
  green.server.start_adopted();
  blue.server.release_after_handover();
  CHECK(blue.server.connection_count() == 0);
  CHECK(blue.server.listeners().empty());
  CHECK(blue.server.output_bytes() == 0);

  std::vector<hotswap_conn_id> green_ids = green.connection_ids();
  CHECK(green_ids == ids);
  traffic.check_served_by(green);
  // The backlog connection waited in the listener's queue and is green's, with the next id.
  REQUIRE(backlog.send(green, "get #b\n"));
  REQUIRE(backlog.await_lines(green, 1));
  CHECK(backlog.split() == std::vector<std::string>{"v1 total=13 #b"});
  Client later(port);
  REQUIRE(later.send(green, "get #c\n"));
  REQUIRE(later.await_lines(green, 1));
  green_ids = green.connection_ids();
  CHECK(std::count(green_ids.begin(), green_ids.end(), exported.next_conn_id) == 1);
  CHECK(std::count(green_ids.begin(), green_ids.end(), exported.next_conn_id + 1) == 1);

  // Blue let go with close(2) alone: its module heard of no disconnect and
  // the clients of the moved connections noticed nothing.
  blue.settle();
  CHECK(blue.server.stats().closed == 0);
  CHECK(blue.slot->active().run_task("disconnects", "null") == R"({"disconnects":0,"reentered":false})");
  CHECK(traffic.a.drain());
  CHECK(green.server.stats().protocol_errors == 0);
}

TEST_CASE("a handover that fails resumes blue on every connection and listener with no byte lost") {
  Side blue;
  const uint16_t port = blue.server.listen(main_listener());
  Traffic traffic(blue, port);
  const std::vector<hotswap_conn_id> ids = blue.connection_ids();
  const size_t unsent = blue.server.output_bytes();
  NetworkServer::HandoverExport exported = blue.server.pause_for_handover();
  CHECK_THROWS_WITH(blue.server.pause_for_handover(), Contains("already paused"));
  REQUIRE(traffic.a.send(blue, "add 1 #5\n"));
  Client backlog(port);
  blue.settle();
  CHECK(blue.server.stats().accepted == 4);
  CHECK(blue.server.output_bytes() == unsent);  // nothing written while paused

  blue.server.resume_after_handover();
  CHECK(blue.connection_ids() == ids);
  traffic.check_served_by(blue);
  REQUIRE(backlog.send(blue, "get #b\n"));
  REQUIRE(backlog.await_lines(blue, 1));
  CHECK(backlog.split() == std::vector<std::string>{"v1 total=13 #b"});
  CHECK(blue.server.stats().accepted == 5);
  CHECK(blue.server.stats().protocol_errors == 0);
  // Once more: a second pause and resume work the same way.
  blue.server.pause_for_handover();
  blue.server.resume_after_handover();
  REQUIRE(traffic.a.send(blue, "get #6\n"));
  REQUIRE(traffic.a.await_lines(blue, 4));
  CHECK(traffic.a.split().back() == "v1 total=13 #6");
}

TEST_CASE("timers, the tick number and queued events move to green: timers keep their ids and remaining time") {
  Side blue;
  const uint16_t port = blue.server.listen(main_listener());
  blue.server.set_tick_rate("counter", 10);
  Client c(port);
  REQUIRE(c.send(blue, "timer 1000 #t\n"));
  REQUIRE(c.await_lines(blue, 1));
  CHECK(c.split() == std::vector<std::string>{"v1 timer armed #t"});
  blue.clock->advance_ms(300);  // three ticks; 700 ms left on the timer
  const std::vector<hotswap_conn_id> ids = blue.connection_ids();
  REQUIRE(ids.size() == 1);

  const std::vector<hotswap::host::TimerHandover> timers = blue.server.timers_of("counter");
  REQUIRE(timers.size() == 1);
  CHECK(timers[0].remaining_ms == 700);
  CHECK(timers[0].repeat_ms == 0);
  CHECK(timers[0].tag == ids[0]);  // the counter tags its timer with the asking connection
  CHECK(blue.server.timers_of("nobody").empty());
  CHECK(blue.slot->timers().count(timers[0].id) == 1);

  // Suspended (as an upgrade leaves it), the slot queues what arrives.
  blue.registry.suspend(*blue.slot);
  const uint64_t frames = blue.server.stats().frames_in;
  REQUIRE(c.send(blue, "add 5 #q\n"));
  REQUIRE(blue.pump_until([&] { return blue.server.stats().frames_in == frames + 1; }));
  NetworkServer::HandoverExport exported = blue.server.pause_for_handover();
  SlotHandover slot = blue.registry.handover_bookkeeping(*blue.slot);
  slot.timers = blue.server.timers_of("counter");
  slot.state = blue.slot->active().export_state();
  CHECK(slot.module == "counter");
  CHECK(slot.version == "1.0.0");
  CHECK(slot.tick_number == 3);
  REQUIRE(slot.queued.size() == 1);
  CHECK(slot.queued[0].kind == hotswap::host::ModuleEvent::Kind::Message);
  CHECK(slot.queued[0].payload == "add 5 #q");
  CHECK(blue.slot->queued() == 1);  // copied: blue still delivers it if the handover fails

  Side green;
  green.registry.suspend(*green.slot);  // green's slots wait until the handover commits
  green.slot->active().import_state(1, slot.state);
  green.server.adopt_listener(main_listener(), dup_fd(exported.listeners.at(0).fd));
  green.server.adopt_connection(exported.connections.at(0), dup_fd(exported.connections.at(0).fd));
  green.registry.restore_from_handover(*green.slot, slot);
  CHECK(green.slot->tick_number() == 3);
  CHECK(green.slot->timers().count(timers[0].id) == 1);
  CHECK(green.slot->queued() == 1);
  CHECK(green.registry.next_timer_id() > timers[0].id);
  green.server.start_adopted();
  blue.server.release_after_handover();
  CHECK(blue.server.timers_of("counter").empty());

  // The queued request is answered first, by green.
  green.registry.resume(*green.slot);
  REQUIRE(c.await_lines(green, 2));
  CHECK(c.split().back() == "v1 total=5 #q");
  // The timer fires after the 700 ms it had left, not before.
  green.clock->advance_ms(699);
  green.settle();
  c.drain();
  CHECK(c.lines() == 2);
  CHECK(green.server.timers_of("counter").at(0).remaining_ms == 1);
  green.clock->advance_ms(1);
  REQUIRE(c.await_lines(green, 3));
  CHECK(c.split().back() == "v1 timer fired");
  CHECK(green.slot->timers().empty());
}

TEST_CASE("restoring timers refuses ids that are zero, repeated or in use, and timer ids never go below one in use") {
  Side side;
  SlotHandover from;
  from.module = "counter";
  from.tick_number = 7;
  from.timers = {{5, 100, 0, 1}};
  side.registry.restore_from_handover(*side.slot, from);
  CHECK(side.slot->timers().count(5) == 1);
  CHECK(side.slot->tick_number() == 7);
  CHECK(side.registry.next_timer_id() == 6);
  side.registry.set_next_timer_id(2);
  CHECK(side.registry.next_timer_id() == 6);
  side.registry.set_next_timer_id(40);
  CHECK(side.registry.next_timer_id() == 40);

  SlotHandover clash;
  clash.tick_number = 99;
  clash.timers = {{5, 10, 0, 1}};
  CHECK_THROWS_WITH(side.registry.restore_from_handover(*side.slot, clash),
                    Contains("timer id 5") && Contains("already in use by module counter"));
  clash.timers = {{0, 10, 0, 1}};
  CHECK_THROWS_WITH(side.registry.restore_from_handover(*side.slot, clash), Contains("not a timer id"));
  clash.timers = {{8, 10, 0, 1}, {8, 20, 0, 1}};
  CHECK_THROWS_WITH(side.registry.restore_from_handover(*side.slot, clash), Contains("timer id 8 twice"));
  CHECK(side.slot->tick_number() == 7);  // a refused restore changed nothing
  CHECK(side.slot->timers() == std::set<hotswap_timer_id>{5});

  // The restored timer fires under its own id after its remaining time.
  side.clock->advance_ms(100);
  CHECK(side.slot->timers().empty());
}

TEST_CASE("the idle timeout continues on green from the idle time blue carried") {
  Side blue;
  const uint16_t port = blue.server.listen(main_listener(std::chrono::seconds(10)));
  Client c(port);
  REQUIRE(c.send(blue, "get #1\n"));
  REQUIRE(c.await_lines(blue, 1));
  blue.clock->advance_ms(6000);
  NetworkServer::HandoverExport exported = blue.server.pause_for_handover();
  REQUIRE(exported.connections.size() == 1);
  CHECK(exported.connections[0].idle_ms == 6000);

  Side green;
  green.server.adopt_listener(main_listener(std::chrono::seconds(10)), dup_fd(exported.listeners.at(0).fd));
  green.server.adopt_connection(exported.connections[0], dup_fd(exported.connections[0].fd));
  green.server.start_adopted();
  blue.server.release_after_handover();
  green.clock->advance_ms(3999);
  green.settle();
  CHECK(green.server.connection_count() == 1);
  green.clock->advance_ms(1);
  CHECK(c.await_close(green));
  CHECK(green.server.stats().idle_timeouts == 1);
}

TEST_CASE("green's listeners accept only from start_adopted, and adopting refuses what it cannot serve") {
  Side green;
  ListenerConfig fresh = main_listener();
  fresh.name = "fresh";
  const uint16_t port = green.server.listen(fresh, /*accept_now=*/false);
  Client early(port);
  REQUIRE(early.send(green, "get #1\n"));
  green.settle();
  CHECK(green.server.stats().accepted == 0);
  green.server.start_adopted();
  REQUIRE(early.await_lines(green, 1));
  CHECK(early.split() == std::vector<std::string>{"v1 total=0 #1"});
  CHECK(green.server.stats().accepted == 1);

  int pipe_fds[2];
  REQUIRE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
  hotswap::os::Fd pipe_out(pipe_fds[1]);
  ListenerConfig bad = main_listener();
  bad.name = "bad";
  CHECK_THROWS_WITH(green.server.adopt_listener(bad, hotswap::os::Fd(pipe_fds[0])),
                    Contains("listener bad") && Contains("not a socket"));
  CHECK_THROWS_WITH(green.server.adopt_listener(bad, hotswap::os::Fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0))),
                    Contains("not a stream socket"));
  CHECK_THROWS_WITH(green.server.adopt_listener(bad, dup_fd(early.fd)), Contains("not listening"));
  CHECK_THROWS_WITH(green.server.adopt_listener(fresh, hotswap::os::Fd(::socket(AF_INET, SOCK_STREAM, 0))),
                    Contains("listener fresh: a listener of that name is already open"));
  CHECK(green.server.listeners().size() == 1);

  ConnectionHandover connection;
  connection.id = 9;
  connection.listener = "nowhere";
  CHECK_THROWS_WITH(green.server.adopt_connection(connection, dup_fd(early.fd)),
                    Contains("connection 9: no listener named 'nowhere'"));
  connection.listener = "fresh";
  connection.id = green.connection_ids().at(0);
  CHECK_THROWS_WITH(green.server.adopt_connection(connection, dup_fd(early.fd)), Contains("already in use"));
  connection.id = 0;
  CHECK_THROWS_WITH(green.server.adopt_connection(connection, dup_fd(early.fd)), Contains("not a connection id"));
  connection.id = 9;
  int more_pipes[2];
  REQUIRE(::pipe2(more_pipes, O_CLOEXEC) == 0);
  hotswap::os::Fd more_out(more_pipes[1]);
  CHECK_THROWS_WITH(green.server.adopt_connection(connection, hotswap::os::Fd(more_pipes[0])),
                    Contains("not a stream socket"));
  CHECK(green.server.connection_count() == 1);
  // Ids continue above what is in use, whatever blue said.
  green.server.set_next_connection_id(1);
  Client second(port);
  REQUIRE(second.send(green, "get #2\n"));
  REQUIRE(second.await_lines(green, 1));
  CHECK(green.connection_ids() == std::vector<hotswap_conn_id>{1, 2});
}

TEST_CASE("only the named listeners move: blue keeps serving the connections of the others after the release") {
  Side blue;
  const uint16_t port = blue.server.listen(main_listener());
  ListenerConfig removed = main_listener();
  removed.name = "removed";
  const uint16_t removed_port = blue.server.listen(removed);
  Client moving(port);
  Client staying(removed_port);
  REQUIRE(moving.send(blue, "add 1 #1\n"));
  REQUIRE(moving.await_lines(blue, 1));
  REQUIRE(staying.send(blue, "add 1 #2\n"));
  REQUIRE(staying.await_lines(blue, 1));

  NetworkServer::HandoverExport exported = blue.server.pause_for_handover({"main"});
  REQUIRE(exported.listeners.size() == 1);
  CHECK(exported.listeners[0].name == "main");
  REQUIRE(exported.connections.size() == 1);
  CHECK(exported.connections[0].listener == "main");
  REQUIRE(staying.send(blue, "get #3\n"));  // waits in the socket while blue is paused

  Side green;
  green.server.adopt_listener(main_listener(), dup_fd(exported.listeners[0].fd));
  green.server.adopt_connection(exported.connections[0], dup_fd(exported.connections[0].fd));
  green.server.start_adopted();
  blue.server.release_after_handover();
  CHECK(blue.server.connection_count() == 1);
  REQUIRE(blue.server.listeners().size() == 1);
  CHECK(blue.server.listeners()[0].name == "removed");

  REQUIRE(staying.await_lines(blue, 2));
  CHECK(staying.split().back() == "v1 total=2 #3");
  REQUIRE(moving.send(green, "get #4\n"));
  REQUIRE(moving.await_lines(green, 2));
  CHECK(moving.split().back() == "v1 total=0 #4");  // green's counter started fresh: no state was moved here
  // The listener the target removed no longer accepts on blue.
  Client late(removed_port);
  blue.settle();
  CHECK(blue.server.stats().accepted == 2);
}
