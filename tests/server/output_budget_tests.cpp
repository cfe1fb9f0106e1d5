// Bounded memory on the data path: a global budget for unsent output across
// every connection, memory handed back once it drains, and the listeners'
// idle timeout against clients that hold a connection without completing a
// message (slowloris). Assertions are on the server's own accounting, never on RSS.
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


hotswap::host::NetworkServer& server_of(RunningHost& host) { return host.runtime().server(); }

}  // namespace

TEST_CASE("connections that never read are held to the global output budget, and memory is given back") {
  constexpr size_t kBudget = 256 * 1024;  // under the per-connection limit (1 MiB): only the budget can act
  TestRoot root;
  nlohmann::json runtime = hotswap::test::counter_runtime();
  runtime["max_total_output_bytes"] = kBudget;
  root.add_release("1.0.0", {{"counter", "1.0.0"}}, runtime);
  RunningHost host(root.dir());
  host.on_loop([&] {
    hotswap::host::ServerLimits limits = server_of(host).limits();
    limits.trim_after_peak_bytes = kBudget / 2;  // a "large peak" at test scale
    server_of(host).set_limits(limits);
    return 0;
  });
  const uint16_t port = host.port();
  LoadClient good(port, 4);
  good.start();
  REQUIRE(good.wait_for_replies(100));

  // 16 clients that never read. Each round, every one asks for ~58 KB of replies.
  asio::io_context io;
  std::vector<std::unique_ptr<tcp::socket>> greedy;
  for (int i = 0; i < 16; ++i) {
    auto s = std::make_unique<tcp::socket>(io);
    s->open(tcp::v4());
    int small = 4096;
    ::setsockopt(s->native_handle(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    s->connect({asio::ip::make_address("127.0.0.1"), port});
    greedy.push_back(std::move(s));
  }
  const std::string tag(900, 't');
  std::string burst;
  for (int i = 0; i < 64; ++i) burst += "get #" + tag + "\n";
  bool budget_hit = false;
  for (int round = 0; round < 100 && !budget_hit; ++round) {
    for (auto& s : greedy) {
      boost::system::error_code ec;
      asio::write(*s, asio::buffer(burst), ec);  // fails once the server closed it
    }
    budget_hit = host.on_loop([&] { return server_of(host).stats().output_budget_closes; }) > 0;
  }
  CHECK(budget_hit);
  const hotswap::host::ServerStats during = host.on_loop([&] { return server_of(host).stats(); });
  CHECK(during.peak_output_bytes <= kBudget);
  CHECK(during.peak_output_bytes > kBudget / 2);
  CHECK(during.slow_readers == 0);  // the budget, not the per-connection limit, closed them
  // The polite clients were never the ones holding the most.
  uint64_t before = good.replies();
  CHECK(good.wait_for_replies(before + 100));
  nlohmann::json status = host.on_loop([&] { return host.runtime().status(); });
  CHECK(status["traffic"]["output_budget_closes"] >= during.output_budget_closes);  // requests still queued close more

  for (auto& s : greedy) s->close();
  LoadClient::Totals totals = good.stop();
  CHECK(totals.dropped == 0);
  CHECK(totals.outstanding == 0);
  CHECK(host.wait_on_loop([&] { return server_of(host).connection_count() == 0; }));
  CHECK(host.on_loop([&] { return server_of(host).output_bytes(); }) == 0);
  CHECK(host.on_loop([&] { return server_of(host).buffer_capacity(); }) == 0);
  // The peak drained: the freed heap went back to the system, once.
  CHECK(host.wait_on_loop([&] { return server_of(host).stats().memory_trims >= 1; }));
}

TEST_CASE("a connection whose queue drained gives its buffers back") {
  TestRoot root;
  root.add_release("1.0.0", {{"counter", "1.0.0"}}, hotswap::test::counter_runtime(/*max_output_bytes=*/32 << 20));
  RunningHost host(root.dir());
  asio::io_context io;
  tcp::socket s(io);
  s.open(tcp::v4());
  int small = 4096;
  ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  s.connect({asio::ip::make_address("127.0.0.1"), host.port()});
  const std::string tag(900, 'q');
  std::string burst;
  constexpr int kBurst = 1000;  // ~0.9 MB of replies; the kernel's buffers take the first few MB
  for (int i = 0; i < kBurst; ++i) burst += "get #" + tag + "\n";
  int sent = 0;
  size_t queued = 0;
  for (int round = 0; round < 20 && queued <= 256 * 1024; ++round) {
    asio::write(s, asio::buffer(burst));
    sent += kBurst;
    CHECK(host.wait_on_loop([&] { return server_of(host).stats().frames_in >= uint64_t(sent); }));
    queued = host.on_loop([&] { return server_of(host).output_bytes(); });
  }
  CHECK(queued > 256 * 1024);
  asio::streambuf in;
  int wrong = 0;
  for (int i = 0; i < sent; ++i) wrong += read_line(s, in) != "v1 total=0 #" + tag;
  CHECK(wrong == 0);
  CHECK(host.wait_on_loop([&] { return server_of(host).output_bytes() == 0; }));
  // Still connected, and holding no more than its read buffer's working size.
  CHECK(host.on_loop([&] { return server_of(host).connection_count(); }) == 1);
  CHECK(host.on_loop([&] { return server_of(host).buffer_capacity(); }) <= 64 * 1024);
}

TEST_CASE("a listener's idle timeout closes connections that complete no message in time") {
  TestRoot root;
  nlohmann::json runtime = hotswap::test::counter_runtime();
  runtime["listeners"][0]["idle_timeout_s"] = 5;  // "main"; "bin" has none
  runtime["modules"]["counter"]["tick_hz"] = 0;   // an hour of 50 Hz ticks would only slow the test
  root.add_release("1.0.0", {{"counter", "1.0.0"}}, runtime);
  RunningHost host(root.dir());
  asio::io_context io;
  const tcp::endpoint main_endpoint(asio::ip::make_address("127.0.0.1"), host.port(0));
  const tcp::endpoint bin_endpoint(asio::ip::make_address("127.0.0.1"), host.port(1));
  tcp::socket slowloris(io), active(io), untimed(io);
  slowloris.connect(main_endpoint);
  active.connect(main_endpoint);
  untimed.connect(bin_endpoint);
  REQUIRE(host.wait_on_loop([&] { return server_of(host).connection_count() == 3; }));
  asio::streambuf in;

  asio::write(slowloris, asio::buffer(std::string("ge")));  // one byte at a time, never a whole line
  asio::write(active, asio::buffer(std::string("get #1\n")));
  CHECK(read_line(active, in) == "v1 total=0 #1");
  host.advance_ms(4000);
  CHECK(host.on_loop([&] { return server_of(host).stats().idle_timeouts; }) == 0);

  asio::write(slowloris, asio::buffer(std::string("t")));
  asio::write(active, asio::buffer(std::string("get #2\n")));  // at 4 s: its deadline moves to 9 s
  CHECK(read_line(active, in) == "v1 total=0 #2");
  host.advance_ms(2000);  // 6 s: the slow one completed nothing since it connected
  CHECK(host.on_loop([&] { return server_of(host).stats().idle_timeouts; }) == 1);
  CHECK(closed_by_server(slowloris));
  CHECK(host.on_loop([&] { return server_of(host).connection_count(); }) == 2);

  host.advance_ms(2999);  // 8.999 s: the active one is still within its time
  CHECK(host.on_loop([&] { return server_of(host).stats().idle_timeouts; }) == 1);
  host.advance_ms(1);  // 9 s
  CHECK(host.on_loop([&] { return server_of(host).stats().idle_timeouts; }) == 2);
  CHECK(closed_by_server(active));

  host.advance_ms(3'600'000);  // an hour: the listener without a timeout keeps its connection
  CHECK(host.on_loop([&] { return server_of(host).connection_count(); }) == 1);
  asio::write(untimed, asio::buffer(std::string("\0\0\0\x03get", 7)));
  char reply[4];
  asio::read(untimed, asio::buffer(reply));
  CHECK(host.on_loop([&] { return server_of(host).stats().idle_timeouts; }) == 2);
}
