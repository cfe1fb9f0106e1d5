// A hotswap root on disk built from the test modules, a Runtime serving it on
// a background thread with a clock that moves only when the test says so, and
// a load client that checks every reply. Nothing here asserts: the test's main
// thread does, with what these helpers return (Catch2 v2 is not thread-safe).
#pragma once

#include <sys/socket.h>

#include <boost/asio.hpp>
#include <cerrno>
#include <boost/filesystem.hpp>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "admin/admin_commands.hpp"
#include "core/sha256.hpp"
#include "net/timer_source.hpp"
#include "runtime.hpp"

namespace hotswap::test {

namespace fs = boost::filesystem;

// True when the server closed `s`: reads until end of stream or a reset,
// within a generous limit (a deadline for a server that never closes it).
inline bool closed_by_server(boost::asio::ip::tcp::socket& s, std::chrono::seconds limit = std::chrono::seconds(10)) {
  timeval tv{static_cast<time_t>(limit.count()), 0};
  ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[65536];
  for (;;) {
    ssize_t n = ::recv(s.native_handle(), buf, sizeof buf, 0);
    if (n == 0) return true;
    if (n < 0) return errno == ECONNRESET;
  }
}

// One '\n'-terminated line from `s` (without the '\n'); `in` keeps what came after it.
inline std::string read_line(boost::asio::ip::tcp::socket& s, boost::asio::streambuf& in) {
  size_t n = boost::asio::read_until(s, in, '\n');
  std::string line(boost::asio::buffers_begin(in.data()), boost::asio::buffers_begin(in.data()) + n - 1);
  in.consume(n);
  return line;
}

struct ModuleSpec {
  std::string name, version, variant = "good";
  nlohmann::json appup = nullptr;  // written as appups/<name>-<version>.appup.json when set
};

// A temporary root folder, removed at the end.
class TestRoot {
 public:
  TestRoot() : dir_(fs::temp_directory_path() / fs::unique_path("hotswap-root-%%%%%%%%")) {
    fs::create_directories(dir_);
  }
  ~TestRoot() {
    boost::system::error_code ec;
    fs::remove_all(dir_, ec);
  }
  const fs::path& dir() const { return dir_; }

  // Writes releases/<version>/ with a manifest, the module files, appups and runtime.json.
  void add_release(const std::string& version, const std::vector<ModuleSpec>& modules, const nlohmann::json& runtime) {
    fs::path rel = dir_ / "releases" / version;
    fs::create_directories(rel / "modules");
    fs::create_directories(rel / "appups");
    nlohmann::json manifest = {
        {"release", "counter"}, {"version", version}, {"config", "runtime.json"}, {"modules", nlohmann::json::array()}};
    for (const ModuleSpec& m : modules) {
      std::string file = "modules/" + m.name + "-" + m.version + ".so";
      fs::copy_file(fs::path(HOTSWAP_TEST_MODULES_DIR) / m.variant / (m.name + "-" + m.version + ".so"), rel / file,
                    fs::copy_option::overwrite_if_exists);
      nlohmann::json entry = {
          {"name", m.name}, {"version", m.version}, {"file", file}, {"sha256", host::sha256_file(rel / file)}};
      if (!m.appup.is_null()) {
        std::string appup = "appups/" + m.name + "-" + m.version + ".appup.json";
        write(rel / appup, m.appup.dump(2));
        entry["appup"] = appup;
      }
      manifest["modules"].push_back(entry);
    }
    write(rel / "manifest.json", manifest.dump(2));
    write(rel / "runtime.json", runtime.dump(2));
  }

  static void write(const fs::path& file, const std::string& text) {
    std::ofstream out(file.string(), std::ios::trunc);
    out << text;
  }

 private:
  fs::path dir_;
};

// The counter appup for 2.0.0: update from/to 1.0.0 with `extra`.
inline nlohmann::json counter_v2_appup(const nlohmann::json& extra = {{"label", "live"}}) {
  return {{"module", "counter"},
          {"version", "2.0.0"},
          {"up", {{{"from", "1.0.0"}, {"instructions", {{{"op", "update"}, {"extra", extra}}}}}}},
          {"down", {{{"to", "1.0.0"}, {"instructions", {{{"op", "update"}}}}}}}};
}

// Two listeners for the counter: "main" (line framing) and "bin" (32-bit length prefix).
inline nlohmann::json counter_runtime(size_t max_output_bytes = 1 << 20, size_t max_frame = 1024) {
  return {{"log_level", "warn"},
          {"max_output_bytes", max_output_bytes},
          {"listeners",
           {{{"name", "main"},
             {"address", "127.0.0.1"},
             {"port", 0},
             {"framing", "line"},
             {"max_frame_bytes", max_frame},
             {"module", "counter"}},
            {{"name", "bin"},
             {"address", "127.0.0.1"},
             {"port", 0},
             {"framing", "length_prefixed"},
             {"max_frame_bytes", max_frame},
             {"module", "counter"}}}},
          {"modules", {{"counter", {{"tick_hz", 50}}}}}};
}

// Runs a booted Runtime's event loop on a background thread. Module time
// (timers, ticks, monotonic_ms) stands still until advance_ms().
class RunningHost {
 public:
  explicit RunningHost(const fs::path& root, os::OsSysCalls& os = os::real_os_sys_calls()) : runtime_(root, nullptr, os) {
    runtime_.server().set_timer_source(clock_);
    runtime_.boot();
    thread_ = std::thread([this] { runtime_.io().run(); });
  }
  ~RunningHost() {
    boost::asio::post(runtime_.io(), [this] { runtime_.stop(); });
    thread_.join();
  }
  host::Runtime& runtime() { return runtime_; }
  uint16_t port(size_t listener = 0) {
    return on_loop([this, listener] { return runtime_.server().listeners().at(listener).port; });
  }

  // Moves module time forward on the loop thread; the timers and ticks that fall
  // due have fired, in order, when this returns.
  void advance_ms(uint64_t ms) {
    on_loop([this, ms] { clock_->advance_ms(ms); });
  }

  // Evaluates `condition` on the loop thread until it holds; false when it
  // still does not after `limit`. For effects the loop applies after a post
  // (a disconnect is delivered in a later turn than the socket is closed).
  template <class Condition>
  bool wait_on_loop(Condition condition, std::chrono::seconds limit = std::chrono::seconds(60)) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    do {
      if (on_loop(condition)) return true;
    } while (std::chrono::steady_clock::now() < deadline);
    return false;
  }

  // Runs fn on the loop thread and returns its result.
  template <class Fn>
  auto on_loop(Fn fn) -> decltype(fn()) {
    std::packaged_task<decltype(fn())()> task(std::move(fn));
    auto result = task.get_future();
    boost::asio::post(runtime_.io(), [&task] { task(); });
    return result.get();
  }

  // Upgrades or downgrades and waits for the outcome.
  // `rehearse`: false skips the live rehearsal (to reach the live rollback path).
  host::UpgradeReport upgrade(const std::string& version, bool rehearse = true) {
    std::promise<host::UpgradeReport> done;
    boost::asio::post(runtime_.io(), [&] {
      host::UpgradeRequest request;
      request.version = version;
      request.rehearse = rehearse;
      runtime_.upgrade(request, {}, [&done](const host::UpgradeReport& r) { done.set_value(r); });
    });
    return done.get_future().get();
  }

 private:
  std::shared_ptr<host::ManualTimerSource> clock_ = std::make_shared<host::ManualTimerSource>();
  host::Runtime runtime_;
  std::thread thread_;
};

// N connections, each sending "add 1 #<n>" and waiting for its reply before
// the next, checking that every reply carries the tag of the oldest request.
class LoadClient {
 public:
  struct Totals {
    uint64_t opened = 0, dropped = 0, sent = 0, replies = 0, out_of_order = 0, unexpected = 0, outstanding = 0;
  };

  LoadClient(uint16_t port, size_t connections) : port_(port) {
    for (size_t i = 0; i < connections; ++i) conns_.push_back(std::make_unique<Conn>(io_));
  }
  ~LoadClient() { stop(); }

  void start() {
    boost::asio::ip::tcp::endpoint endpoint(boost::asio::ip::make_address("127.0.0.1"), port_);
    for (auto& c : conns_) {
      c->socket.connect(endpoint);
      ++totals_.opened;
      read(*c);
      send(*c);
    }
    thread_ = std::thread([this] { io_.run(); });
  }

  // Waits until at least `at_least` replies have arrived; false when they did
  // not within `limit` (a generous bound that only a broken server reaches).
  bool wait_for_replies(uint64_t at_least, std::chrono::seconds limit = std::chrono::seconds(120)) {
    std::unique_lock<std::mutex> lock(mutex_);
    return progress_.wait_for(lock, limit, [&] { return replies_ >= at_least; });
  }

  // Stops sending, waits for outstanding replies, closes. Totals::outstanding
  // counts the requests whose replies never came.
  Totals stop() {
    if (!thread_.joinable()) return totals_;
    boost::asio::post(io_, [this] { stopping_ = true; });
    {
      std::unique_lock<std::mutex> lock(mutex_);
      progress_.wait_for(lock, std::chrono::seconds(60), [&] { return outstanding_ == 0; });
    }
    boost::asio::post(io_, [this] {
      for (auto& c : conns_) {
        c->closing = true;
        boost::system::error_code ec;
        c->socket.close(ec);
      }
    });
    thread_.join();
    totals_.outstanding = outstanding_;
    return totals_;
  }

  uint64_t replies() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return replies_;
  }

 private:
  struct Conn {
    explicit Conn(boost::asio::io_context& io) : socket(io) {}
    boost::asio::ip::tcp::socket socket;
    boost::asio::streambuf in;
    std::string out;
    uint64_t next_tag = 1;
    uint64_t awaiting = 0;
    bool closing = false;
  };

  void send(Conn& c) {
    if (stopping_) return;
    c.awaiting = c.next_tag++;
    c.out = "add 1 #" + std::to_string(c.awaiting) + "\n";
    ++totals_.sent;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++outstanding_;
    }
    boost::asio::async_write(c.socket, boost::asio::buffer(c.out), [this, &c](boost::system::error_code ec, size_t) {
      if (ec && !c.closing) ++totals_.dropped;
    });
  }

  void read(Conn& c) {
    boost::asio::async_read_until(c.socket, c.in, '\n', [this, &c](boost::system::error_code ec, size_t n) {
      if (ec) {
        if (!c.closing) ++totals_.dropped;
        return;
      }
      std::string line(boost::asio::buffers_begin(c.in.data()), boost::asio::buffers_begin(c.in.data()) + n - 1);
      c.in.consume(n);
      size_t hash = line.rfind(" #");
      if (hash == std::string::npos) {
        ++totals_.unexpected;
      } else if (std::stoull(line.substr(hash + 2)) != c.awaiting) {
        ++totals_.out_of_order;
      } else {
        ++totals_.replies;
        {
          std::lock_guard<std::mutex> lock(mutex_);
          ++replies_;
          --outstanding_;
        }
        progress_.notify_all();
        send(c);
      }
      read(c);
    });
  }

  uint16_t port_;
  boost::asio::io_context io_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::thread thread_;
  Totals totals_;
  bool stopping_ = false;  // client thread only
  mutable std::mutex mutex_;
  std::condition_variable progress_;
  uint64_t outstanding_ = 0;  // guarded by mutex_
  uint64_t replies_ = 0;      // guarded by mutex_
};

}  // namespace hotswap::test
