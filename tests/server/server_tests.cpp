// The live server: upgrades under traffic with zero drops, rollback under
// traffic, and misbehaving clients that must affect only themselves.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>

#include "server_fixture.hpp"

using hotswap::test::LoadClient;
using hotswap::test::RunningHost;
using hotswap::test::TestRoot;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

using hotswap::test::closed_by_server;
using hotswap::test::read_line;

namespace {

// Asks the counter for its total on a fresh connection.
uint64_t counter_total(uint16_t port) {
  asio::io_context io;
  tcp::socket s(io);
  s.connect({asio::ip::make_address("127.0.0.1"), port});
  asio::write(s, asio::buffer(std::string("get #final\n")));
  asio::streambuf in;
  size_t n = asio::read_until(s, in, '\n');
  std::string line(asio::buffers_begin(in.data()), asio::buffers_begin(in.data()) + n - 1);
  size_t eq = line.find("total=");
  REQUIRE(eq != std::string::npos);
  return std::stoull(line.substr(eq + 6));
}


struct CounterServer {
  TestRoot root;
  std::unique_ptr<RunningHost> host;
  explicit CounterServer(size_t max_output_bytes = 1 << 20) {
    root.add_release("1.0.0", {{"counter", "1.0.0"}}, hotswap::test::counter_runtime(max_output_bytes));
    host = std::make_unique<RunningHost>(root.dir());
    root.add_release("2.0.0", {{"counter", "2.0.0", "good", hotswap::test::counter_v2_appup()}},
                     hotswap::test::counter_runtime(max_output_bytes));
  }
};

}  // namespace

// Under the sanitizers, which look for memory and thread errors that a few
// cycles already exercise, 50 cycles would take minutes.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr int kUpgradeCycles = 10;
#else
constexpr int kUpgradeCycles = 50;
#endif

TEST_CASE("200 connections keep every reply, in order, through many upgrade/downgrade cycles (50, 10 under the "
          "sanitizers)") {
  CounterServer server;
  uint16_t port = server.host->port();
  LoadClient client(port, 200);
  client.start();
  REQUIRE(client.wait_for_replies(2000));
  for (int cycle = 0; cycle < kUpgradeCycles; ++cycle) {
    uint64_t before = client.replies();
    server.host->advance_ms(100);  // 5 ticks at 50 Hz between swaps: the tick count migrates too
    // The first cycle is rehearsed (a forked child under this load); the other
    // 49 go straight to the live swap, which is what this test counts replies through.
    auto up = server.host->upgrade("2.0.0", /*rehearse=*/cycle == 0);
    INFO("cycle " << cycle << ": " << up.summary());
    REQUIRE(up.committed());
    REQUIRE(client.wait_for_replies(before + 400));
    server.host->advance_ms(100);
    auto down = server.host->upgrade("1.0.0", /*rehearse=*/cycle == 0);
    INFO("cycle " << cycle << ": " << down.summary());
    REQUIRE(down.committed());
    REQUIRE(down.direction == hotswap::appup::Direction::Downgrade);
    REQUIRE(client.wait_for_replies(before + 800));
  }
  CHECK(server.host->on_loop([&] { return server.host->runtime().server().connection_count(); }) == 200);
  LoadClient::Totals totals = client.stop();
  CHECK(totals.opened == 200);
  CHECK(totals.outstanding == 0);
  CHECK(totals.dropped == 0);
  CHECK(totals.out_of_order == 0);
  CHECK(totals.unexpected == 0);
  CHECK(totals.sent == totals.replies);
  CHECK(totals.replies > uint64_t(kUpgradeCycles) * 800);
  // Every "add 1" was applied exactly once, across 100 code swaps and 100 state migrations.
  CHECK(counter_total(port) == totals.replies);
  CHECK(server.host->on_loop([&] { return server.host->runtime().manifest().version; }) == "1.0.0");
}

TEST_CASE("a migration that fails under traffic rolls back with no connection dropped and no reply lost") {
  CounterServer server;
  server.root.add_release("2.0.1", {{"counter", "2.0.0", "good", hotswap::test::counter_v2_appup({{"fail", "throw"}})}},
                          hotswap::test::counter_runtime());
  uint16_t port = server.host->port();
  LoadClient client(port, 50);
  client.start();
  REQUIRE(client.wait_for_replies(500));
  for (int i = 0; i < 5; ++i) {
    uint64_t before = client.replies();
    auto report = server.host->upgrade("2.0.1", /*rehearse=*/false);  // the live rollback path
    CHECK(report.outcome == hotswap::host::UpgradeReport::Outcome::RolledBack);
    CHECK_THAT(report.error, Catch::Contains("migration failed on purpose"));
    REQUIRE(client.wait_for_replies(before + 200));
  }
  LoadClient::Totals totals = client.stop();
  CHECK(totals.outstanding == 0);
  CHECK(totals.dropped == 0);
  CHECK(totals.out_of_order == 0);
  CHECK(totals.sent == totals.replies);
  CHECK(counter_total(port) == totals.replies);
  CHECK(server.host->on_loop([&] { return server.host->runtime().manifest().version; }) == "1.0.0");
}

TEST_CASE("misbehaving clients are closed one by one while the others are served") {
  CounterServer server(/*max_output_bytes=*/64 * 1024);
  uint16_t port = server.host->port();
  LoadClient good(port, 20);
  good.start();
  asio::io_context io;
  tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), port);

  SECTION("an oversized frame") {
    tcp::socket s(io);
    s.connect(endpoint);
    asio::write(s, asio::buffer(std::string(4096, 'x') + "\n"));
    CHECK(closed_by_server(s));
  }
  SECTION("a line that never ends grows past the frame limit") {
    tcp::socket s(io);
    s.connect(endpoint);
    asio::write(s, asio::buffer(std::string(2000, 'y')));
    CHECK(closed_by_server(s));
  }
  SECTION("bytes that are invalid for line framing") {
    tcp::socket s(io);
    s.connect(endpoint);
    asio::write(s, asio::buffer(std::string("add 1\0 #1\n", 10)));
    CHECK(closed_by_server(s));
  }
  SECTION("a client that disconnects mid-frame") {
    tcp::socket s(io);
    s.connect(endpoint);
    asio::write(s, asio::buffer(std::string("add 5")));
    s.close();
  }
  SECTION("a client that never reads") {
    tcp::socket s(io);
    int small = 4096;
    ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    s.connect(endpoint);
    std::string burst;
    for (int i = 0; i < 20000; ++i) burst += "get\n";
    bool closed = false;
    for (int i = 0; i < 200 && !closed; ++i) {
      boost::system::error_code ec;
      asio::write(s, asio::buffer(burst), ec);
      closed = ec.failed();
      if (!closed)
        closed = server.host->on_loop([&] { return server.host->runtime().server().stats().slow_readers; }) > 0;
    }
    CHECK(closed);
  }
  uint64_t before = good.replies();
  CHECK(good.wait_for_replies(before + 200));
  LoadClient::Totals totals = good.stop();
  CHECK(totals.outstanding == 0);
  CHECK(totals.dropped == 0);
  CHECK(totals.out_of_order == 0);
  CHECK(totals.sent == totals.replies);
  CHECK(totals.replies >= before + 200);
}

namespace {

std::string frame(const std::string& payload) {
  uint32_t n = static_cast<uint32_t>(payload.size());
  std::string out{char(n >> 24), char(n >> 16), char(n >> 8), char(n)};
  return out + payload;
}

}  // namespace

TEST_CASE("a timer armed by the old version fires into the new one after an upgrade") {
  CounterServer server;
  asio::io_context io;
  tcp::socket s(io);
  s.connect({asio::ip::make_address("127.0.0.1"), server.host->port()});
  asio::streambuf in;
  asio::write(s, asio::buffer(std::string("timer 300 #1\n")));
  CHECK(read_line(s, in) == "v1 timer armed #1");
  server.host->advance_ms(299);  // not due yet: had it fired, v1 would answer first below
  REQUIRE(server.host->upgrade("2.0.0").committed());
  server.host->advance_ms(1);
  CHECK(read_line(s, in) == "v2 timer fired");
}

TEST_CASE("length-prefixed framing carries requests and replies and refuses oversized frames") {
  CounterServer server;
  asio::io_context io;
  tcp::endpoint bin(asio::ip::make_address("127.0.0.1"), server.host->port(1));
  tcp::socket s(io);
  s.connect(bin);
  asio::write(s, asio::buffer(frame("add 2 #1") + frame("get #2")));
  for (const char* expected : {"v1 total=2 #1", "v1 total=2 #2"}) {
    unsigned char header[4];
    asio::read(s, asio::buffer(header));
    size_t n = (size_t(header[0]) << 24) | (size_t(header[1]) << 16) | (size_t(header[2]) << 8) | header[3];
    std::string payload(n, '\0');
    asio::read(s, asio::buffer(payload));
    CHECK(payload == expected);
  }
  tcp::socket big(io);
  big.connect(bin);
  asio::write(big, asio::buffer(std::string("\x00\x10\x00\x00", 4)));  // claims 1 MiB, over the 1 KiB limit
  CHECK(closed_by_server(big));
  asio::write(s, asio::buffer(frame("get #3")));
  unsigned char header[4];
  asio::read(s, asio::buffer(header));
  CHECK(header[3] == std::string("v1 total=2 #3").size());
}

TEST_CASE("a module that closes a connection from on_message is told of it afterwards, never re-entrantly") {
  CounterServer server;
  asio::io_context io;
  tcp::socket s(io);
  s.connect({asio::ip::make_address("127.0.0.1"), server.host->port()});
  asio::streambuf in;
  asio::write(s, asio::buffer(std::string("bye #1\n")));
  CHECK(read_line(s, in) == "v1 bye #1");  // the pending output is written before the close
  CHECK(closed_by_server(s));
  tcp::socket q(io);  // nothing pending: the close happens inside on_message
  q.connect({asio::ip::make_address("127.0.0.1"), server.host->port()});
  asio::write(q, asio::buffer(std::string("quit\n")));
  CHECK(closed_by_server(q));
  // The disconnect reaches the module in a later loop turn than the close the client saw.
  std::string report;
  server.host->wait_on_loop([&] {
    report = server.host->runtime().registry().find("counter")->active().run_task("disconnects", "null");
    return report.find("\"disconnects\":2") != std::string::npos;
  });
  CHECK(report == "{\"disconnects\":2,\"reentered\":false}");
}

TEST_CASE("a graceful stop tells the modules first and writes their last words before closing") {
  CounterServer server;
  asio::io_context io;
  tcp::socket s(io);
  s.connect({asio::ip::make_address("127.0.0.1"), server.host->port()});
  asio::streambuf in;
  asio::write(s, asio::buffer(std::string("add 3 #1\n")));
  CHECK(read_line(s, in) == "v1 total=3 #1");
  asio::post(server.host->runtime().io(), [&] { server.host->runtime().stop(); });
  CHECK(read_line(s, in) == "v1 goodbye");
  CHECK(closed_by_server(s));
}

TEST_CASE("module ticks and timers follow the server's clock, not the wall clock") {
  CounterServer server;  // counter ticks at 50 Hz
  auto ticks = [&] {
    return server.host->on_loop([&] { return server.host->runtime().registry().find("counter")->tick_number(); });
  };
  CHECK(ticks() == 0);
  server.host->advance_ms(19);
  CHECK(ticks() == 0);
  server.host->advance_ms(1);
  CHECK(ticks() == 1);
  server.host->advance_ms(980);
  CHECK(ticks() == 50);
  CHECK(server.host->on_loop([&] { return server.host->runtime().server().now_ms(); }) ==
        server.host->on_loop([&] { return server.host->runtime().server().timer_source().now_ms(); }));
}

namespace {

struct SocketFd {
  int fd;
  bool connected;
};

// This process's IPv4 sockets whose local port is `port`: a listener (no peer)
// and the connections it accepted. A client's own socket has another local port.
std::vector<SocketFd> sockets_on_port(uint16_t port) {
  std::vector<SocketFd> out;
  for (const auto& entry : boost::filesystem::directory_iterator("/proc/self/fd")) {
    int fd = std::stoi(entry.path().filename().string());
    sockaddr_in local{};
    socklen_t length = sizeof local;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) != 0 || local.sin_family != AF_INET) continue;
    if (ntohs(local.sin_port) != port) continue;
    sockaddr_in peer{};
    length = sizeof peer;
    out.push_back({fd, ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &length) == 0});
  }
  return out;
}

bool close_on_exec(int fd) {
  int flags = ::fcntl(fd, F_GETFD);
  return flags >= 0 && (flags & FD_CLOEXEC) != 0;
}

}  // namespace

TEST_CASE("listening sockets and accepted connections are close-on-exec") {
  CounterServer server;
  for (size_t listener : {0, 1}) {
    uint16_t port = server.host->port(listener);
    asio::io_context io;
    tcp::socket s(io);
    s.connect({asio::ip::make_address("127.0.0.1"), port});
    asio::streambuf in;
    if (listener == 0) {
      asio::write(s, asio::buffer(std::string("get #1\n")));
      CHECK(read_line(s, in) == "v1 total=0 #1");
    } else {
      asio::write(s, asio::buffer(frame("get #1")));
      unsigned char header[4];
      asio::read(s, asio::buffer(header));  // answered, so accepted
    }
    std::vector<SocketFd> sockets = sockets_on_port(port);
    INFO("listener " << listener << " on port " << port);
    REQUIRE(sockets.size() == 2);
    for (const SocketFd& socket : sockets) {
      INFO((socket.connected ? "accepted connection" : "listener") << " fd " << socket.fd);
      CHECK(close_on_exec(socket.fd));
    }
    CHECK(sockets[0].connected != sockets[1].connected);
  }
}

TEST_CASE("a module can neither send to nor close another module's connection") {
  TestRoot root;
  nlohmann::json runtime = hotswap::test::counter_runtime();
  runtime["listeners"].push_back({{"name", "sneak"},
                                  {"address", "127.0.0.1"},
                                  {"port", 0},
                                  {"framing", "line"},
                                  {"max_frame_bytes", 1024},
                                  {"module", "intruder"}});
  root.add_release("1.0.0", {{"counter", "1.0.0"}, {"intruder", "1.0.0"}}, runtime);
  RunningHost host(root.dir());
  asio::io_context io;
  tcp::socket victim(io), intruder(io);
  asio::streambuf victim_in, intruder_in;
  victim.connect({asio::ip::make_address("127.0.0.1"), host.port(0)});
  asio::write(victim, asio::buffer(std::string("add 4 #1\n")));
  REQUIRE(read_line(victim, victim_in) == "v1 total=4 #1");
  intruder.connect({asio::ip::make_address("127.0.0.1"), host.port(2)});
  auto ask_intruder = [&](const std::string& request) {
    asio::write(intruder, asio::buffer(request + "\n"));
    return read_line(intruder, intruder_in);
  };
  std::string whoami = ask_intruder("whoami");
  REQUIRE(whoami.rfind("conn ", 0) == 0);
  uint64_t own = std::stoull(whoami.substr(5));
  // Ids follow accept order, and the victim was accepted (it was answered)
  // before the intruder connected, with no other connection in between.
  REQUIRE(own >= 2);
  const std::string victim_id = std::to_string(own - 1);

  CHECK(ask_intruder("send " + victim_id + " you have been hacked") == "send refused");
  CHECK(ask_intruder("close " + victim_id) == "close refused");
  // The same calls on its own connection work: the refusals above are about ownership.
  CHECK(ask_intruder("send " + std::to_string(own) + " note to self") == "note to self");
  CHECK(read_line(intruder, intruder_in) == "send ok");

  // The victim heard nothing from the intruder and is still served.
  asio::write(victim, asio::buffer(std::string("get #2\n")));
  CHECK(read_line(victim, victim_in) == "v1 total=4 #2");
  CHECK(host.on_loop([&] { return host.runtime().server().connection_count(); }) == 2);
}
