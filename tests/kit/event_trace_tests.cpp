// Trace recording (host/net/event_trace.*): the format, its bounds and its
// reader; the recorder behind `hotswap trace start|stop`; and a trace recorded
// from a live host through the `hotswap` command, replayed with the kit.
#include <hotswap/rehearsal.hpp>

#include <boost/asio.hpp>
#include <boost/filesystem.hpp>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>

#include "admin/admin_commands.hpp"
#include "net/event_trace.hpp"
#include "net/network_server.hpp"
#include "server_fixture.hpp"

namespace fs = boost::filesystem;
using Catch::Matchers::Contains;
using hotswap::host::EventTrace;
using hotswap::host::ManualTimerSource;
using hotswap::host::Trace;
using hotswap::host::TraceEvent;
using hotswap::host::TraceFormatError;

namespace {

// A temporary folder, removed at the end.
struct TempDir {
  fs::path dir = fs::temp_directory_path() / fs::unique_path("hotswap-kit-%%%%%%%%");
  TempDir() { fs::create_directories(dir); }
  ~TempDir() {
    boost::system::error_code ec;
    fs::remove_all(dir, ec);
  }
};

std::string header() { return R"({"format":"hotswap-trace","version":1})"; }

std::string parse_error(const std::string& text) {
  try {
    hotswap::host::parse_trace(text, "t.trace");
  } catch (const TraceFormatError& e) {
    return e.what();
  }
  return "(parsed)";
}

}  // namespace

TEST_CASE("base64 follows RFC 4648's test vectors both ways") {
  const std::pair<const char*, const char*> vectors[] = {{"", ""},         {"f", "Zg=="},     {"fo", "Zm8="},
                                                         {"foo", "Zm9v"}, {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
                                                         {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, encoded] : vectors) {
    CHECK(hotswap::host::base64_encode(plain) == encoded);
    CHECK(hotswap::host::base64_decode(encoded) == plain);
  }
  std::string binary;
  for (int i = 0; i < 256; ++i) binary += char(i);
  CHECK(hotswap::host::base64_decode(hotswap::host::base64_encode(binary)) == binary);
  CHECK_THROWS_WITH(hotswap::host::base64_decode("Zm9"), Contains("not a multiple of 4"));
  CHECK_THROWS_WITH(hotswap::host::base64_decode("Zm9*"), Contains("unexpected character at offset 3"));
}

TEST_CASE("a recording holds each event with its time on the module clock, and reads back the same") {
  ManualTimerSource clock;
  EventTrace trace(clock);
  trace.connect("tally", 7, "main", "127.0.0.1:5000");
  clock.advance_ms(2);
  const std::string binary("a\0b\nc\"\\", 7);
  trace.message("tally", 7, binary);
  clock.advance(std::chrono::microseconds(1500));
  trace.tick("tally");
  trace.timer("tally", 3, 99, true);
  trace.disconnect("tally", 7, HOTSWAP_DISCONNECT_CLOSED_BY_MODULE);
  CHECK(trace.summary().events == 5);
  const std::string text = trace.finish();
  CHECK(text.rfind(R"({"clock":"module","format":"hotswap-trace","max_bytes":67108864,"version":1})", 0) == 0);

  const Trace parsed = hotswap::host::parse_trace(text, "mem");
  REQUIRE(parsed.events.size() == 5);
  CHECK(parsed.has_end);
  CHECK(parsed.summary.events == 5);
  CHECK_FALSE(parsed.summary.truncated);
  const auto& e = parsed.events;
  CHECK(e[0].kind == TraceEvent::Kind::Connect);
  CHECK(e[0].t_us == 0);
  CHECK(e[0].conn == 7);
  CHECK(e[0].listener == "main");
  CHECK(e[0].peer == "127.0.0.1:5000");
  CHECK(e[1].kind == TraceEvent::Kind::Message);
  CHECK(e[1].t_us == 2000);
  CHECK(e[1].data == binary);
  CHECK(e[2].kind == TraceEvent::Kind::Tick);
  CHECK(e[2].t_us == 3500);
  CHECK(e[3].kind == TraceEvent::Kind::Timer);
  CHECK(e[3].timer == 3);
  CHECK(e[3].tag == 99);
  CHECK(e[3].last);
  CHECK(e[4].kind == TraceEvent::Kind::Disconnect);
  CHECK(e[4].reason == HOTSWAP_DISCONNECT_CLOSED_BY_MODULE);
  CHECK(trace.finish().empty());  // finished: nothing more
}

TEST_CASE("a recording stops at its size cap, counts what it dropped, and still ends well-formed") {
  ManualTimerSource clock;
  EventTrace trace(clock, 4096);
  for (int i = 0; i < 200; ++i) trace.message("tally", 1, "add " + std::to_string(i) + std::string(40, 'x'));
  trace.tick("tally");
  trace.message("tally", 1, std::string(1 << 20, 'y'));
  const auto before = trace.summary();
  CHECK(before.truncated);
  CHECK(before.events > 10);
  CHECK(before.events + before.dropped_events == 202);
  const std::string text = trace.finish();
  CHECK(text.size() <= 4096);
  const Trace parsed = hotswap::host::parse_trace(text, "mem");
  CHECK(parsed.has_end);
  CHECK(parsed.summary.truncated);
  CHECK(parsed.summary.dropped_events == before.dropped_events);
  CHECK(parsed.events.size() == before.events);
  CHECK(parsed.events.back().data == "add " + std::to_string(before.events - 1) + std::string(40, 'x'));

  CHECK_THROWS_WITH(EventTrace(clock, 100), Contains("max_bytes must be from 4096"));
  CHECK_THROWS_WITH(EventTrace(clock, (uint64_t(1) << 30) + 1), Contains("max_bytes must be from 4096"));
}

TEST_CASE("a trace that is not well-formed is refused, naming the file, the line and the problem") {
  CHECK(parse_error("") == "t.trace: empty file (not a hotswap trace)");
  CHECK(parse_error(R"({"format":"other","version":1})") ==
        "t.trace:1: not a hotswap trace (the header's \"format\" must be \"hotswap-trace\")");
  CHECK(parse_error(R"({"format":"hotswap-trace","version":2})") ==
        "t.trace:1: trace format version 2 is not supported (this build reads version 1)");
  CHECK(parse_error(header() + "\nnot json") == "t.trace:2: not a JSON object");
  CHECK(parse_error(header() + "\n" + R"({"t_us":1,"ev":"dance","module":"m"})") ==
        "t.trace:2: unknown event \"dance\" (connect, message, disconnect, tick, timer, end)");
  CHECK(parse_error(header() + "\n" + R"({"t_us":5,"ev":"tick","module":"m"})" + "\n" +
                    R"({"t_us":4,"ev":"tick","module":"m"})") ==
        "t.trace:3: time goes backwards (4 us after 5 us)");
  CHECK(parse_error(header() + "\n" + R"({"t_us":1,"ev":"message","module":"m","conn":1,"data":"@@@@"})") ==
        "t.trace:2: \"data\": base64: unexpected character at offset 0");
  CHECK(parse_error(header() + "\n" + R"({"t_us":1,"ev":"message","module":"m","conn":-1,"data":""})") ==
        "t.trace:2: \"conn\" must be a non-negative integer, got -1");
  CHECK(parse_error(header() + "\n" + R"({"t_us":1,"ev":"disconnect","module":"m","conn":1,"reason":"bored"})") ==
        "t.trace:2: unknown disconnect reason \"bored\"");
  CHECK(parse_error(header() + "\n" + R"({"ev":"end","events":0,"truncated":false,"dropped_events":0})" + "\n" +
                    R"({"t_us":1,"ev":"tick","module":"m"})") == "t.trace:3: an event after the end line");
  CHECK(parse_error(header() + "\n" + R"({"t_us":1,"ev":"tick"})") == "t.trace:2: missing \"module\"");
  CHECK_THROWS_WITH(hotswap::host::read_trace_file("/nonexistent/t.trace"),
                    Contains("/nonexistent/t.trace: cannot read"));
}

TEST_CASE("the trace recorder refuses a second start, a stop with nothing recording, and a file it cannot create") {
  boost::asio::io_context io;
  struct Server {
    explicit Server(boost::asio::io_context& io) : server(io, registry) {}
    hotswap::host::NetworkServer server;
    hotswap::host::ModuleRegistry registry{server};
  } s(io);
  // The worker hop runs inline: this test is about the recorder's rules.
  hotswap::host::TraceRecorder recorder(s.server, [](std::function<void()> work, std::function<void()> then) {
    work();
    then();
    return true;
  });
  std::string error;
  nlohmann::json result;
  auto done = [&](const nlohmann::json& r, const std::string& e) {
    result = r;
    error = e;
  };
  recorder.stop(done);
  CHECK(error == "no trace is recording (hotswap trace start FILE begins one)");
  recorder.start("relative.trace", hotswap::host::kTraceDefaultMaxBytes, done);
  CHECK_THAT(error, Contains("must be an absolute path"));
  recorder.start("/nonexistent/folder/t.trace", hotswap::host::kTraceDefaultMaxBytes, done);
  CHECK_THAT(error, Contains("cannot create trace file /nonexistent/folder/t.trace"));
  CHECK(s.server.event_trace() == nullptr);

  TempDir tmp;
  recorder.start(tmp.dir / "t.trace", 1000, done);
  CHECK_THAT(error, Contains("max_bytes must be from 4096"));
  recorder.start(tmp.dir / "t.trace", 8192, done);
  REQUIRE(error.empty());
  CHECK(result["max_bytes"] == 8192);
  CHECK(s.server.event_trace() != nullptr);
  CHECK(recorder.status()["recording"] == true);
  recorder.start(tmp.dir / "u.trace", 8192, done);
  CHECK_THAT(error, Contains("a trace is already recording to " + (tmp.dir / "t.trace").string()));
  s.server.event_trace()->tick("tally");
  recorder.stop(done);
  REQUIRE(error.empty());
  CHECK(result["events"] == 1);
  CHECK(s.server.event_trace() == nullptr);
  const Trace written = hotswap::host::read_trace_file(tmp.dir / "t.trace");
  CHECK(written.events.size() == 1);
  CHECK(written.has_end);
  CHECK((fs::status(tmp.dir / "t.trace").permissions() & fs::perms_mask) == (fs::owner_read | fs::owner_write));
  // A second recording to the same file would overwrite the first.
  recorder.start(tmp.dir / "t.trace", 8192, done);
  CHECK_THAT(error, Contains("already exists (a trace never overwrites a file)"));
  CHECK(hotswap::host::read_trace_file(tmp.dir / "t.trace").events.size() == 1);
}

namespace {

// A line client over a real socket, on the test thread (blocking; the host's
// loop runs on its own thread).
struct LineClient {
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket socket{io};
  boost::asio::streambuf in;
  explicit LineClient(uint16_t port) {
    socket.connect({boost::asio::ip::make_address("127.0.0.1"), port});
  }
  std::string read_line() {
    size_t n = boost::asio::read_until(socket, in, '\n');
    std::string line(boost::asio::buffers_begin(in.data()), boost::asio::buffers_begin(in.data()) + long(n) - 1);
    in.consume(n);
    return line;
  }
  std::string ask(const std::string& line) {
    boost::asio::write(socket, boost::asio::buffer(line + "\n"));
    return read_line();
  }
};

int run_cli(const std::string& arguments) {
  const std::string command = std::string(HOTSWAP_BINARY) + " " + arguments + " >/dev/null";
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST_CASE("a trace recorded from a live host with `hotswap trace` replays in the kit with the same replies") {
  TempDir tmp;
  hotswap::test::TestRoot root;
  // The root serves tally 1.0.0, copied from the release folder the build made.
  const fs::path release = root.dir() / "releases" / "1.0.0";
  const fs::path built = fs::path(TALLY_RELEASES_DIR) / "tally-1.0.0";
  for (const char* sub : {"modules", "appups"}) {
    fs::create_directories(release / sub);
    for (fs::directory_iterator it(built / sub), end; it != end; ++it)
      fs::copy_file(it->path(), release / sub / it->path().filename());
  }
  for (const char* file : {"manifest.json", "runtime.json"}) fs::copy_file(built / file, release / file);

  const fs::path trace_file = tmp.dir / "live.trace";
  std::vector<std::string> live1, live2;
  {
    hotswap::test::RunningHost host(root.dir());
    host.on_loop([&] { host.runtime().open_admin(hotswap::host::make_admin_handler(host.runtime())); });
    const std::string at_root = " --root " + root.dir().string();
    CHECK(run_cli("trace stop" + at_root) == 1);  // nothing recording yet
    REQUIRE(run_cli("trace start " + trace_file.string() + " --max-bytes 65536" + at_root) == 0);

    // One client at a time while they connect: the host's accept of the
    // second and its read of the first's request would race.
    LineClient c1(host.port());
    live1.push_back(c1.ask("add 2"));
    LineClient c2(host.port());
    live2.push_back(c2.ask("add 3"));
    live1.push_back(c1.ask("remind 100"));
    host.advance_ms(100);  // the reminder fires, and one tick (tick_hz 10)
    live1.push_back(c1.read_line());
    live2.push_back(c2.ask("bye"));
    CHECK(host.wait_on_loop([&] { return host.runtime().server().connection_count() == 1; }));
    host.on_loop([] { return 0; });  // the disconnect posted with the close has run
    live1.push_back(c1.ask("get"));

    REQUIRE(run_cli("trace stop" + at_root) == 0);
    CHECK(run_cli("trace stop" + at_root) == 1);
  }
  CHECK(live1 == std::vector<std::string>{"total 2 count 2", "ok", "reminder", "total 5 count 2"});
  CHECK(live2 == std::vector<std::string>{"total 5 count 3", "bye"});

  const Trace trace = hotswap::host::read_trace_file(trace_file);
  CHECK(trace.has_end);
  CHECK_FALSE(trace.summary.truncated);
  std::vector<std::string> kinds;
  for (const TraceEvent& e : trace.events) kinds.push_back(hotswap::host::to_string(e.kind));
  CHECK(kinds == std::vector<std::string>{"connect", "message", "connect", "message", "message", "tick", "timer",
                                          "message", "disconnect", "message"});
  CHECK(trace.events[8].reason == HOTSWAP_DISCONNECT_CLOSED_BY_MODULE);
  CHECK(trace.events[6].t_us - trace.events[4].t_us == 100000);

  // Replayed against the same release, the module says exactly what it said live.
  hotswap::kit::RehearsalHost same(hotswap::kit::test_releases(), "1.0.0");
  const auto replay = same.replay(trace_file);
  CHECK(replay.events == trace.events.size());
  CHECK(replay.recorded_timer_fires == 1);
  CHECK(replay.before.at(1) == live1);
  CHECK(replay.before.at(2) == live2);
  CHECK(replay.after.empty());

  // Upgraded to 2.0.0 before the last request: 2.0.0 answers it, with the
  // label its appup's extra gave.
  hotswap::kit::RehearsalHost upgraded(hotswap::kit::test_releases(), "1.0.0");
  hotswap::kit::ReplayOptions options;
  options.switch_to = "2.0.0";
  options.at_event = 9;
  const auto across = upgraded.replay(trace, options);
  REQUIRE(across.upgrade);
  CHECK(across.upgrade->committed());
  CHECK(across.before.at(1) == std::vector<std::string>(live1.begin(), live1.end() - 1));
  CHECK(across.after.at(1) == std::vector<std::string>{"total 5 count 2 label two ticks 0"});
  CHECK(across.all().at(2) == live2);
}
