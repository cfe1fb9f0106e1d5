// Broadcast and connection listing on a live server (module.h broadcast_all
// and list_connections): the caster module serves two listeners, "a" (line
// framing) and "b" (length-prefixed); the counter serves "main" beside it.
#include <boost/asio.hpp>
#include <catch2/catch.hpp>
#include <string>

#include "server_fixture.hpp"

namespace asio = boost::asio;
using asio::ip::tcp;
using hotswap::test::RunningHost;
using hotswap::test::TestRoot;

namespace {

constexpr size_t kListenerA = 2, kListenerB = 3;  // after the counter's "main" and "bin"

nlohmann::json caster_runtime() {
  nlohmann::json runtime = hotswap::test::counter_runtime();
  runtime["listeners"].push_back({{"name", "a"},
                                  {"address", "127.0.0.1"},
                                  {"port", 0},
                                  {"framing", "line"},
                                  {"max_frame_bytes", 1024},
                                  {"module", "caster"}});
  runtime["listeners"].push_back({{"name", "b"},
                                  {"address", "127.0.0.1"},
                                  {"port", 0},
                                  {"framing", "length_prefixed"},
                                  {"max_frame_bytes", 1024},
                                  {"module", "caster"}});
  return runtime;
}

// A client of one listener, line or length-prefixed.
class Client {
 public:
  Client(asio::io_context& io, uint16_t port, bool length_prefixed) : socket_(io), length_prefixed_(length_prefixed) {
    socket_.connect({asio::ip::make_address("127.0.0.1"), port});
  }
  void send(const std::string& message) {
    std::string out = message;
    if (length_prefixed_) {
      const auto n = static_cast<uint32_t>(message.size());
      out = std::string{char(n >> 24), char(n >> 16), char(n >> 8), char(n)} + message;
    } else {
      out += "\n";
    }
    asio::write(socket_, asio::buffer(out));
  }
  std::string receive() {
    if (!length_prefixed_) {
      const size_t n = asio::read_until(socket_, in_, '\n');
      std::string line(asio::buffers_begin(in_.data()), asio::buffers_begin(in_.data()) + n - 1);
      in_.consume(n);
      return line;
    }
    unsigned char header[4];
    read_exactly(header, 4);
    const size_t n = size_t(header[0]) << 24 | size_t(header[1]) << 16 | size_t(header[2]) << 8 | size_t(header[3]);
    std::string payload(n, '\0');
    read_exactly(payload.data(), n);
    return payload;
  }
  std::string ask(const std::string& request) {
    send(request);
    return receive();
  }
  void close() { socket_.close(); }

 private:
  void read_exactly(void* into, size_t n) {
    auto* bytes = static_cast<char*>(into);
    const size_t buffered = std::min(n, in_.size());
    asio::buffer_copy(asio::buffer(bytes, buffered), in_.data());
    in_.consume(buffered);
    if (n > buffered) asio::read(socket_, asio::buffer(bytes + buffered, n - buffered));
  }
  tcp::socket socket_;
  asio::streambuf in_;
  bool length_prefixed_;
};

// "conns 1@a 2@a" -> the ids' text, for building the expected listing.
std::string id_of(Client& c) {
  const std::string listing = c.ask("list");
  return listing.substr(listing.rfind(' ') + 1, listing.rfind('@') - listing.rfind(' ') - 1);
}

}  // namespace

TEST_CASE("a module broadcasts to all its connections or one listener's, and lists them") {
  TestRoot root;
  root.add_release("1.0.0", {{"counter", "1.0.0"}, {"caster", "1.0.0"}}, caster_runtime());
  RunningHost host(root.dir());
  asio::io_context io;
  Client counter(io, host.port(0), false);
  Client first(io, host.port(kListenerA), false);
  // Each newest connection is the last one listed: its reply proves it was accepted.
  const std::string id1 = id_of(first);
  Client second(io, host.port(kListenerA), false);
  const std::string id2 = id_of(second);
  Client third(io, host.port(kListenerB), true);
  const std::string id3 = id_of(third);

  SECTION("listing: every connection of the module, or of one listener, never another module's") {
    CHECK(first.ask("list") == "conns " + id1 + "@a " + id2 + "@a " + id3 + "@b");
    CHECK(first.ask("list a") == "conns " + id1 + "@a " + id2 + "@a");
    CHECK(third.ask("list b") == "conns " + id3 + "@b");
    CHECK(first.ask("list main") == "error connections: listener 'main' is not a listener of this module");
    CHECK(first.ask("list nope") == "error connections: listener 'nope' is not a listener of this module");
    // A closed connection leaves the listing.
    second.close();
    REQUIRE(host.wait_on_loop([&] { return host.runtime().server().connection_count() == 3; }));
    CHECK(first.ask("list") == "conns " + id1 + "@a " + id3 + "@b");
  }

  SECTION("broadcast to all reaches every connection of the module, once, and no other module's") {
    CHECK(first.ask("all hello") == "hello");  // the broadcast is queued before the reply
    CHECK(first.receive() == "sent=3 skipped=0");
    CHECK(second.receive() == "hello");
    CHECK(third.receive() == "hello");
    // The counter's client heard nothing: its next line answers its own request.
    CHECK(counter.ask("get #1") == "v1 total=0 #1");
  }

  SECTION("broadcast to one listener reaches only that listener's connections") {
    CHECK(first.ask("on b news") == "sent=1 skipped=0");
    CHECK(third.receive() == "news");
    CHECK(second.ask("list a") == "conns " + id1 + "@a " + id2 + "@a");  // second got nothing before this
    CHECK(first.ask("on main news") == "error broadcast: listener 'main' is not a listener of this module");
  }

  SECTION("a connection that cannot take the message is skipped and counted; the others get it") {
    // Line framing cannot carry a newline; the length-prefixed listener can.
    CHECK(third.ask("all two\\nlines") == "two\nlines");
    CHECK(third.receive() == "sent=1 skipped=2");
    // The skipped connections are still served.
    CHECK(first.ask("list b") == "conns " + id3 + "@b");
    CHECK(second.ask("list b") == "conns " + id3 + "@b");
  }
}
