// arena_bot: a load and correctness client for the arena example.
//
// Opens N connections to an arena server, joins each as botN, then sends a mix
// of move (70%), look (20%) and chat (10%) at a fixed rate per connection, with
// at most K requests outstanding. It checks that every reply carries the
// sequence number of the oldest outstanding request (the server must answer in
// order, even across a hot swap), measures request->reply latency, and prints a
// summary. Exit status: 0 when every connection opened and none was dropped,
// no reply went missing and none came out of order; 1 otherwise; 2 for bad
// arguments.
//
// One thread, one io_context: 1,000 connections are a few thousand timer and
// socket events per second, which a single core handles easily.
#include <CLI/CLI.hpp>
#include <boost/asio.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

namespace {

// ---------------------------------------------------------------- options

struct Options {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  uint64_t connections = 10;
  double duration_s = 10;
  double rate = 5;  // requests per second per connection
  uint64_t pipeline = 4;
  bool json = false;
  uint64_t grace_ms = 2000;
  uint64_t connect_timeout_ms = 5000;
};

constexpr const char* kDescription =
    "arena_bot: connects to an arena server, joins every connection as botN and sends a mix of\n"
    "move (70%), look (20%) and chat (10%); checks that replies come back in order.";
constexpr const char* kExitStatuses =
    "Exit status: 0 all connections opened, none dropped, no reply missing or out of\n"
    "order; 1 otherwise; 2 bad arguments.";

// CLI::PositiveNumber's message names the whole range of a double; this one says it plainly.
const CLI::Validator kAboveZero(
    [](std::string& text) {
      char* end = nullptr;
      double v = std::strtod(text.c_str(), &end);
      return end != text.c_str() && *end == '\0' && v > 0 ? std::string() : "must be above 0, got '" + text + "'";
    },
    "POSITIVE");

// Fills `o` from the command line ("--name value" or "--name=value"). Returns
// the status to exit with instead of running: 0 after --help, 2 for bad arguments.
std::optional<int> parse_options(int argc, char** argv, Options& o) {
  CLI::App app(kDescription, "arena_bot");
  app.footer(kExitStatuses);
  app.add_option("--host", o.host, "server address")
      ->type_name("H")
      ->capture_default_str()
      ->check([](const std::string& v) { return v.empty() ? std::string("needs a value") : std::string(); });
  app.add_option("--port", o.port, "server port")->type_name("P")->required()->check(CLI::Range(1, 65535));
  app.add_option("--connections", o.connections, "connections to open")
      ->type_name("N")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{1}, uint64_t{1000000}));
  app.add_option("--duration-s", o.duration_s, "how long to send, in seconds")
      ->type_name("S")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0 * 365));
  app.add_option("--rate", o.rate, "requests per second per connection")
      ->type_name("R")
      ->capture_default_str()
      ->check(kAboveZero)
      ->check(CLI::Range(0.0, 1000000.0));
  app.add_option("--pipeline", o.pipeline, "max outstanding requests per connection")
      ->type_name("K")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{1}, uint64_t{1000000}));
  app.add_option("--grace-ms", o.grace_ms, "after the duration, wait up to G ms for outstanding replies")
      ->type_name("G")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{0}, uint64_t{86400000}));
  app.add_option("--connect-timeout-ms", o.connect_timeout_ms, "give up on a connection not open after T ms")
      ->type_name("T")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{1}, uint64_t{86400000}));
  app.add_flag("--json", o.json, "print the summary as one JSON object");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return 0;
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "arena_bot: %s (see --help)\n", e.what());
    return 2;
  }
  return std::nullopt;
}

// ---------------------------------------------------------------- latency

// Latency histogram in microseconds: exact below 1024 us, then 64 buckets per
// doubling (under 1.6% error). Fixed size, so a long run does not grow memory.
class LatencyHistogram {
 public:
  void record(uint64_t us) {
    ++counts_[index_of(us)];
    ++count_;
    max_ = std::max(max_, us);
  }
  uint64_t count() const { return count_; }
  uint64_t max() const { return max_; }
  // The smallest recorded value v such that a fraction p of samples is <= v (bucket resolution).
  uint64_t percentile(double p) const {
    if (count_ == 0) return 0;
    uint64_t rank = std::max<uint64_t>(1, static_cast<uint64_t>(p * static_cast<double>(count_) + 0.999999));
    uint64_t seen = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::min(max_, upper_bound_of(i));
    }
    return max_;
  }

 private:
  static constexpr size_t kExact = 1024;
  static constexpr int kSubBits = 6;  // 64 buckets per doubling
  static size_t index_of(uint64_t v) {
    if (v < kExact) return v;
    int e = 63 - __builtin_clzll(v);  // >= 10
    return kExact + size_t(e - 10) * 64 + ((v >> (e - kSubBits)) - 64);
  }
  static uint64_t upper_bound_of(size_t i) {
    if (i < kExact) return i;
    size_t e = (i - kExact) / 64 + 10, sub = (i - kExact) % 64;
    return ((64 + sub + 1) << (e - kSubBits)) - 1;
  }
  std::array<uint64_t, kExact + 54 * 64> counts_{};
  uint64_t count_ = 0;
  uint64_t max_ = 0;
};

// ---------------------------------------------------------------- the bot

struct Totals {
  uint64_t opened = 0, failed = 0, dropped = 0;
  uint64_t sent = 0, replies = 0, missing = 0, out_of_order = 0, errors = 0, pushes = 0;
  uint64_t pipeline_full = 0;  // send slots skipped because K requests were outstanding
  std::string first_problem;   // the first err reply, unexpected line or lost connection, for diagnosis
  LatencyHistogram latency;
};

class Bot;

class Connection {
 public:
  Connection(Bot& bot, size_t index);
  void start(const tcp::endpoint& endpoint);
  void stop_sending() { send_timer_.cancel(); }
  // Closed by the bot at the end: not a drop.
  void close();
  size_t outstanding() const { return outstanding_.size(); }

 private:
  enum class State { Connecting, Open, Closed };
  struct Pending {
    uint64_t seq;
    Clock::time_point sent;
  };

  void on_connected(const error_code& ec);
  void read();
  void on_read(const error_code& ec, size_t n);
  void handle_line(std::string_view line);
  void schedule_send();
  void send_request(std::string_view command_and_args);
  void write();
  // The connection failed (before it opened) or dropped (after): the server's doing, not ours.
  void lost(const std::string& why);
  void close_socket();
  uint64_t next_random();

  Bot& bot_;
  size_t index_;
  tcp::socket socket_;
  asio::steady_timer connect_timer_;
  asio::steady_timer send_timer_;
  State state_ = State::Connecting;
  bool sending_started_ = false;
  uint64_t next_seq_ = 1;
  Clock::time_point next_send_;
  std::deque<Pending> outstanding_;
  std::array<char, 4096> read_chunk_;
  std::string input_;            // bytes received, not yet a full line
  std::string output_, writing_;  // queued lines; lines being written
  uint64_t random_;
};

class Bot {
 public:
  explicit Bot(const Options& options) : options_(options), duration_timer_(io_), grace_timer_(io_), signals_(io_) {}

  // Runs to the end and returns the totals.
  Totals run(const tcp::endpoint& endpoint) {
    for (size_t i = 0; i < options_.connections; ++i) connections_.push_back(std::make_unique<Connection>(*this, i));
    live_ = connections_.size();
    for (auto& c : connections_) c->start(endpoint);
    duration_timer_.expires_after(std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(options_.duration_s)));
    duration_timer_.async_wait([this](const error_code& ec) {
      if (!ec) begin_stop();
    });
    // Ctrl-C once: stop sending and drain, as at the end of the duration. Twice: finish now.
    signals_.add(SIGINT);
    signals_.add(SIGTERM);
    wait_for_signal();
    io_.run();
    for (auto& c : connections_) totals_.missing += c->outstanding();
    return std::move(totals_);
  }

  asio::io_context& io() { return io_; }
  const Options& options() const { return options_; }
  Totals& totals() { return totals_; }
  bool stopping() const { return stopping_; }

  void request_sent() { ++outstanding_total_; }
  // A reply arrived, or a connection took its outstanding requests with it.
  void requests_settled(size_t n) {
    outstanding_total_ -= n;
    if (stopping_ && outstanding_total_ == 0) finish();
  }
  void connection_ended() {
    if (--live_ == 0) finish();
  }

 private:
  void wait_for_signal() {
    signals_.async_wait([this](const error_code& ec, int) {
      if (ec) return;
      if (stopping_) return finish();
      begin_stop();
      wait_for_signal();
    });
  }
  void begin_stop() {
    if (stopping_) return;
    stopping_ = true;
    for (auto& c : connections_) c->stop_sending();
    if (outstanding_total_ == 0) return finish();
    grace_timer_.expires_after(std::chrono::milliseconds(options_.grace_ms));
    grace_timer_.async_wait([this](const error_code& ec) {
      if (!ec) finish();
    });
  }
  void finish() {
    if (finished_) return;
    finished_ = stopping_ = true;
    duration_timer_.cancel();
    grace_timer_.cancel();
    signals_.cancel();
    for (auto& c : connections_) c->close();
  }

  Options options_;
  asio::io_context io_;  // declared before everything that uses it, so destroyed last
  asio::steady_timer duration_timer_;
  asio::steady_timer grace_timer_;
  asio::signal_set signals_;
  std::vector<std::unique_ptr<Connection>> connections_;
  Totals totals_;
  size_t live_ = 0;
  size_t outstanding_total_ = 0;
  bool stopping_ = false;
  bool finished_ = false;
};

Connection::Connection(Bot& bot, size_t index)
    : bot_(bot),
      index_(index),
      socket_(bot.io()),
      connect_timer_(bot.io()),
      send_timer_(bot.io()),
      random_(0x9e3779b97f4a7c15ull * (index + 1)) {}

void Connection::start(const tcp::endpoint& endpoint) {
  connect_timer_.expires_after(std::chrono::milliseconds(bot_.options().connect_timeout_ms));
  connect_timer_.async_wait([this](const error_code& ec) {
    if (!ec && state_ == State::Connecting) lost("connect timed out");
  });
  socket_.async_connect(endpoint, [this](const error_code& ec) { on_connected(ec); });
}

void Connection::on_connected(const error_code& ec) {
  if (state_ != State::Connecting) return;  // timed out or closed meanwhile
  if (ec) return lost("connect: " + ec.message());
  connect_timer_.cancel();
  state_ = State::Open;
  ++bot_.totals().opened;
  // Requests are one small line each: without TCP_NODELAY, Nagle's algorithm
  // would hold them back and the latency would measure the kernel, not the server.
  error_code ignored;
  socket_.set_option(tcp::no_delay(true), ignored);
  read();
  send_request("join bot" + std::to_string(index_));
}

void Connection::read() {
  socket_.async_read_some(asio::buffer(read_chunk_), [this](const error_code& ec, size_t n) { on_read(ec, n); });
}

void Connection::on_read(const error_code& ec, size_t n) {
  if (state_ != State::Open) return;
  if (ec == asio::error::eof) return lost("closed by the server");
  if (ec) return lost("read: " + ec.message());
  input_.append(read_chunk_.data(), n);
  size_t start = 0;
  for (size_t nl; (nl = input_.find('\n', start)) != std::string::npos; start = nl + 1) {
    std::string_view line(input_.data() + start, nl - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    handle_line(line);
    if (state_ != State::Open) return;
  }
  input_.erase(0, start);
  // The server's lines are far shorter; a runaway line means the stream is broken.
  if (input_.size() > 64 * 1024) return lost("a line from the server exceeds 64 KiB");
  read();
}

void Connection::handle_line(std::string_view line) {
  Totals& t = bot_.totals();
  if (line.substr(0, 2) == "* ") {
    ++t.pushes;
    return;
  }
  ++t.replies;
  // "<seq> ok ..." or "<seq> err <reason>"
  uint64_t seq = 0;
  size_t digits = 0;
  while (digits < line.size() && digits < 20 && line[digits] >= '0' && line[digits] <= '9')
    seq = seq * 10 + uint64_t(line[digits++] - '0');
  std::string_view verdict = digits > 0 ? line.substr(digits) : std::string_view();
  auto starts_word = [&](std::string_view word) {
    return verdict.substr(0, word.size()) == word && (verdict.size() == word.size() || verdict[word.size()] == ' ');
  };
  bool is_ok = starts_word(" ok");
  bool is_err = starts_word(" err");
  if (is_err) {
    ++t.errors;
    if (t.first_problem.empty()) t.first_problem = "bot" + std::to_string(index_) + ": " + std::string(line);
  }

  auto match = outstanding_.begin();
  if (!is_ok && !is_err) {
    match = outstanding_.end();  // not a reply at all: it cannot match anything
  } else if (outstanding_.empty() || outstanding_.front().seq != seq) {
    match = std::find_if(outstanding_.begin(), outstanding_.end(), [&](const Pending& p) { return p.seq == seq; });
  }
  if (match == outstanding_.end() || match != outstanding_.begin()) {
    ++t.out_of_order;
    if (t.first_problem.empty())
      t.first_problem = "bot" + std::to_string(index_) + ": expected a reply to seq " +
                        (outstanding_.empty() ? "(none outstanding)" : std::to_string(outstanding_.front().seq)) +
                        ", got '" + std::string(line) + "'";
  }
  if (match == outstanding_.end()) return;
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - match->sent).count();
  t.latency.record(static_cast<uint64_t>(us));
  outstanding_.erase(match);

  // The join was seq 1; the request loop starts once it is answered, so
  // every later request finds the player in the arena.
  if (seq == 1 && !sending_started_ && !bot_.stopping()) {
    sending_started_ = true;
    // Spread the connections' send times over one period instead of sending in bursts.
    auto period = std::chrono::duration<double>(1.0 / bot_.options().rate);
    next_send_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                    period * (double(index_) / double(bot_.options().connections)));
    schedule_send();
  }
  bot_.requests_settled(1);
}

void Connection::schedule_send() {
  auto period = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / bot_.options().rate));
  // After a stall, resume at the rate instead of firing every missed slot at once.
  next_send_ = std::max(next_send_ + period, Clock::now());
  send_timer_.expires_at(next_send_);
  send_timer_.async_wait([this](const error_code& ec) {
    if (ec || state_ != State::Open || bot_.stopping()) return;
    if (outstanding_.size() >= bot_.options().pipeline) {
      ++bot_.totals().pipeline_full;
    } else {
      uint64_t r = next_random() % 100;
      if (r < 70) {
        int dx = int(next_random() % 3) - 1, dy = int(next_random() % 3) - 1;
        send_request("move " + std::to_string(dx) + " " + std::to_string(dy));
      } else if (r < 90) {
        send_request("look");
      } else {
        send_request("chat hello from bot" + std::to_string(index_));
      }
    }
    schedule_send();
  });
}

void Connection::send_request(std::string_view command_and_args) {
  uint64_t seq = next_seq_++;
  output_ += std::to_string(seq);
  output_ += ' ';
  output_ += command_and_args;
  output_ += '\n';
  outstanding_.push_back({seq, Clock::now()});
  ++bot_.totals().sent;
  bot_.request_sent();
  if (writing_.empty()) write();
}

// One write in flight at a time; lines queued meanwhile go out together in the next.
void Connection::write() {
  writing_.swap(output_);
  asio::async_write(socket_, asio::buffer(writing_), [this](const error_code& ec, size_t) {
    if (state_ != State::Open) return;
    if (ec) return lost("write: " + ec.message());
    writing_.clear();
    if (!output_.empty()) write();
  });
}

void Connection::lost(const std::string& why) {
  if (state_ == State::Closed) return;
  Totals& t = bot_.totals();
  if (state_ == State::Open) {
    ++t.dropped;
  } else {
    ++t.failed;
  }
  if (t.first_problem.empty()) t.first_problem = "bot" + std::to_string(index_) + ": " + why;
  state_ = State::Closed;
  close_socket();
  bot_.requests_settled(outstanding_.size());  // they stay listed, and count as missing at the end
  bot_.connection_ended();
}

void Connection::close() {
  if (state_ == State::Closed) return;
  // Still connecting when the run ends: it never opened.
  if (state_ == State::Connecting) ++bot_.totals().failed;
  state_ = State::Closed;
  close_socket();
}

void Connection::close_socket() {
  error_code ignored;
  connect_timer_.cancel();
  send_timer_.cancel();
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
}

// xorshift64: a fixed sequence per connection, so runs are repeatable.
uint64_t Connection::next_random() {
  random_ ^= random_ << 13;
  random_ ^= random_ >> 7;
  random_ ^= random_ << 17;
  return random_;
}

// ---------------------------------------------------------------- output

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

void print_summary(const Options& o, const Totals& t, bool passed, double elapsed_s) {
  auto ms = [](uint64_t us) { return double(us) / 1000.0; };
  const LatencyHistogram& l = t.latency;
  if (o.json) {
    std::printf(
        "{\"connections\": %llu, \"opened\": %llu, \"failed\": %llu, \"dropped\": %llu, \"sent\": %llu, "
        "\"replies\": %llu, \"missing\": %llu, \"out_of_order\": %llu, \"errors\": %llu, \"pushes\": %llu, "
        "\"pipeline_full\": %llu, \"latency_ms\": {\"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, \"max\": %.3f}, "
        "\"elapsed_s\": %.3f, \"first_problem\": %s, \"passed\": %s}\n",
        (unsigned long long)o.connections, (unsigned long long)t.opened, (unsigned long long)t.failed,
        (unsigned long long)t.dropped, (unsigned long long)t.sent, (unsigned long long)t.replies,
        (unsigned long long)t.missing, (unsigned long long)t.out_of_order, (unsigned long long)t.errors,
        (unsigned long long)t.pushes, (unsigned long long)t.pipeline_full, ms(l.percentile(0.5)),
        ms(l.percentile(0.9)), ms(l.percentile(0.99)), ms(l.max()), elapsed_s,
        t.first_problem.empty() ? "null" : json_string(t.first_problem).c_str(), passed ? "true" : "false");
    return;
  }
  std::printf("connections opened      %llu / %llu\n", (unsigned long long)t.opened, (unsigned long long)o.connections);
  std::printf("connections failed      %llu\n", (unsigned long long)t.failed);
  std::printf("connections dropped     %llu\n", (unsigned long long)t.dropped);
  std::printf("requests sent           %llu\n", (unsigned long long)t.sent);
  std::printf("replies received        %llu\n", (unsigned long long)t.replies);
  std::printf("replies missing         %llu\n", (unsigned long long)t.missing);
  std::printf("replies out of order    %llu\n", (unsigned long long)t.out_of_order);
  std::printf("errors                  %llu\n", (unsigned long long)t.errors);
  std::printf("pushes received         %llu\n", (unsigned long long)t.pushes);
  std::printf("pipeline full (skipped) %llu\n", (unsigned long long)t.pipeline_full);
  std::printf("latency ms              p50 %.3f  p90 %.3f  p99 %.3f  max %.3f\n", ms(l.percentile(0.5)),
              ms(l.percentile(0.9)), ms(l.percentile(0.99)), ms(l.max()));
  std::printf("elapsed s               %.3f\n", elapsed_s);
  if (!t.first_problem.empty()) std::printf("first problem           %s\n", t.first_problem.c_str());
  std::printf("result                  %s\n", passed ? "PASS" : "FAIL");
}

// Each connection is a descriptor; the common soft limit of 1024 would cap a
// 1,000-connection run, so raise it to the hard limit.
void raise_descriptor_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (std::optional<int> exit_status = parse_options(argc, argv, options)) return *exit_status;
  // A write to a connection the server closed must be an error code, not a signal that kills the bot.
  std::signal(SIGPIPE, SIG_IGN);
  raise_descriptor_limit();

  tcp::endpoint endpoint;
  try {
    asio::io_context resolver_io;
    tcp::resolver resolver(resolver_io);
    endpoint = *resolver.resolve(options.host, std::to_string(options.port)).begin();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "arena_bot: cannot resolve %s: %s\n", options.host.c_str(), e.what());
    return 1;
  }

  auto started = Clock::now();
  Totals totals = Bot(options).run(endpoint);
  double elapsed_s = std::chrono::duration<double>(Clock::now() - started).count();
  bool passed = totals.opened == options.connections && totals.dropped == 0 && totals.missing == 0 &&
                totals.out_of_order == 0;
  print_summary(options, totals, passed, elapsed_s);
  return passed ? 0 : 1;
}
