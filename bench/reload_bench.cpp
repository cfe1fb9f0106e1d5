// hotswap_reload_bench: what a client feels while a running server reloads
// its module over and over (see bench/README.md, "reload_under_load").
//
// A Runtime serves the arena example (releases 1.1.0 and 2.0.0, copied into a
// temporary root) on a background thread. A client process (forked first)
// holds N connections, each joined as a player, each sending `move` at a steady rate.
// The main thread meanwhile runs upgrade/downgrade cycles 1.1.0 -> 2.0.0 ->
// 1.1.0 through Runtime::upgrade, one every --spacing-ms. Time is cut into
// fixed windows; requests sent in a window that overlaps a reload are compared
// with requests sent in the other (baseline) windows. Prints one JSON line.
//
// With --code-only the reloads are the code-only swap 1.1.0 -> 1.0.0 -> 1.1.0
// (load_module, the state handed over in place by adoption) instead.
//
// Options: --quick (smoke run), --code-only, --diagnose (extra lines: the loop-side phases of
// each reload and an event-loop lag probe), and the knobs listed by --help.
#include "core/allocator_tuning.hpp"
#include "release/release_files.hpp"
#include "runtime.hpp"

#include <hotswap/appup/manifest.hpp>
#include <hotswap/appup/planner.hpp>

#include <CLI/CLI.hpp>
#include <boost/asio.hpp>
#include <boost/filesystem.hpp>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <spdlog/sinks/sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <nlohmann/json.hpp>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace fs = boost::filesystem;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using hotswap::host::UpgradeReport;
namespace appup = hotswap::appup;

namespace {

struct Options {
  bool quick = false;
  bool code_only = false;  // reload 1.1.0 <-> 1.0.0 (load_module, adoption) instead of 1.1.0 <-> 2.0.0 (update)
  bool diagnose = false;
  bool pin = false;           // host loop on CPU 0; client, main and the host's worker on CPU 1
  bool batch_worker = false;  // the host's worker thread runs SCHED_BATCH (no wake-up preemption)
  bool no_rehearse = false;   // reload without the live rehearsal (hotswap reload --no-rehearse)
  bool spawn_rehearsal = false;  // runtime.json "rehearsal_mechanism": "spawn" (a fresh process, not a fork)
  bool bystander_starts = false;  // control: at each reload, an unrelated process starts `hotswap` once
  int bystander_cpu_ms = 0;       // control: ... or spends this much CPU time instead (no process start)
  std::string bystander_policy = "normal";  // the bystander's scheduling: normal, nice19, batch, idle
  int stall_us = 0;           // calibration: instead of reloads, busy the loop this long
  size_t connections = 1000;
  int cycles = 100;           // one cycle = upgrade to 2.0.0 + downgrade to 1.1.0
  double rate = 20;           // move requests per second per connection
  int window_ms = 100;        // analysis window
  int spacing_ms = 150;       // start-to-start interval between reloads
  int warmup_ms = 3000;       // steady load before the first measured request
  int tail_ms = 1000;         // steady load after the last reload
  int drain_ms = 5000;        // at the end, how long to wait for outstanding replies
  size_t max_outstanding = 1000;  // per connection; a send beyond it is skipped and counted
};

// A failed check: main prints it and exits with status 1, after the
// destructors stopped the threads and removed the temporary root.
[[noreturn]] void die(const std::string& why) { throw std::runtime_error(why); }

int64_t ns_since(Clock::time_point origin, Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t - origin).count();
}

// Nearest-rank percentile of an ascending-sorted sample.
double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return sorted[std::min(sorted.size(), std::max<size_t>(rank, 1)) - 1];
}

// Pins the calling thread to one CPU (--pin); threads it creates later inherit it.
void pin_to_cpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (int err = pthread_setaffinity_np(pthread_self(), sizeof set, &set); err != 0)
    die("cannot pin a thread to CPU " + std::to_string(cpu) + ": " + std::strerror(err));
}

// Sets the calling thread's policy (--batch-worker); threads it creates later inherit it.
void set_policy(int policy) {
  sched_param param{};
  if (int err = pthread_setschedparam(pthread_self(), policy, &param); err != 0)
    die(std::string("cannot set the scheduling policy: ") + std::strerror(err));
}

// ---- the root on disk ----

// A temporary hotswap root, removed with everything in it at the end.
class TempRoot {
 public:
  TempRoot() : dir_(fs::temp_directory_path() / fs::unique_path("hotswap-reload-bench-%%%%%%%%")) {
    fs::create_directories(dir_ / "releases");
  }
  TempRoot(const TempRoot&) = delete;
  TempRoot& operator=(const TempRoot&) = delete;
  ~TempRoot() {
    boost::system::error_code ec;
    fs::remove_all(dir_, ec);
  }
  const fs::path& dir() const { return dir_; }

  // Copies a release folder built by CMake (arena-<version>/) to releases/<version>/,
  // with `runtime_changes` merged into its runtime.json.
  // The folder appears under its final name in one rename, complete.
  void add_release(const std::string& version, const nlohmann::json& runtime_changes) {
    fs::path from = fs::path(HOTSWAP_ARENA_RELEASES_DIR) / ("arena-" + version);
    if (!fs::exists(from / "manifest.json"))
      throw std::runtime_error("release folder " + from.string() + " is missing; build arena_release_* first");
    fs::path staging = dir_ / "releases" / (".copy-" + version);
    copy_tree(from, staging);
    if (!runtime_changes.empty()) {
      std::ifstream in((staging / "runtime.json").string());
      nlohmann::json runtime = nlohmann::json::parse(in);
      runtime.update(runtime_changes);
      std::ofstream((staging / "runtime.json").string(), std::ios::trunc) << runtime.dump(2);
    }
    fs::rename(staging, dir_ / "releases" / version);
  }

 private:
  static void copy_tree(const fs::path& from, const fs::path& to) {
    fs::create_directories(to);
    for (fs::recursive_directory_iterator it(from), end; it != end; ++it) {
      fs::path target = to / fs::relative(it->path(), from);
      if (fs::is_directory(it->status()))
        fs::create_directories(target);
      else
        copy_file(it->path(), target);
    }
  }

  // By hand: Boost's copy_file fails with EXDEV between file systems on some
  // kernels (TMPDIR=/dev/shm). Keeps the mode bits (bin/hotswap stays executable).
  static void copy_file(const fs::path& from, const fs::path& to) {
    std::ifstream in(from.string(), std::ios::binary);
    std::ofstream out(to.string(), std::ios::binary | std::ios::trunc);
    out << in.rdbuf();
    out.close();
    if (!in || !out) throw std::runtime_error("cannot copy " + from.string() + " to " + to.string());
    fs::permissions(to, fs::status(from).permissions());
  }

  fs::path dir_;
};

// ---- the load client ----

// One reply-carrying request in flight on a connection.
struct Pending {
  uint64_t seq;
  int64_t sent_ns;  // since the bench's origin
  bool join;
};

// A measured request: when it was sent and how long its reply took.
struct Sample {
  int64_t sent_ns;
  int64_t latency_ns;
};

// N connections on one thread with its own io_context. Each joins, then sends
// `<seq> move dx dy` at a steady rate; replies must come back in order.
class LoadClient {
 public:
  LoadClient(Clock::time_point origin, uint16_t port, const Options& opt)
      : origin_(origin), port_(port), opt_(opt), rng_(12345) {
    for (size_t i = 0; i < opt.connections; ++i) conns_.push_back(std::make_unique<Conn>(io_, i));
    samples_.reserve(static_cast<size_t>(opt.rate * static_cast<double>(opt.connections) *
                                         (opt.warmup_ms + opt.tail_ms + opt.cycles * 2.0 * opt.spacing_ms + 2000) /
                                         1000.0 * 1.1));
  }
  ~LoadClient() {
    if (thread_.joinable()) {
      io_.stop();
      thread_.join();
    }
  }

  // Connects every connection and joins it as b<N>; returns once all joined.
  void connect_and_join(std::chrono::milliseconds timeout) {
    tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), port_);
    for (auto& c : conns_) {
      Conn& conn = *c;
      conn.socket.async_connect(endpoint, [this, &conn](boost::system::error_code ec) {
        if (ec) return fail(conn);
        boost::system::error_code ignored;
        conn.socket.set_option(tcp::no_delay(true), ignored);
        read(conn);
        send(conn, "join b" + std::to_string(conn.index), true);
      });
    }
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "bench-client");
      if (opt_.pin) pin_to_cpu(1);
      if (opt_.batch_worker) set_policy(SCHED_OTHER);
      auto guard = asio::make_work_guard(io_);
      io_.run();
    });
    Clock::time_point deadline = Clock::now() + timeout;
    while (joined_.load() + dropped_.load() < conns_.size()) {
      if (Clock::now() > deadline)
        die("only " + std::to_string(joined_.load()) + " of " + std::to_string(conns_.size()) + " connections joined");
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (dropped_.load() != 0) die(std::to_string(dropped_.load()) + " connection(s) failed to connect or join");
  }

  // Starts the steady load: sends spread evenly over time, round robin over the connections.
  void start_sending() {
    asio::post(io_, [this] {
      send_start_ = Clock::now();
      pacer_next_ = send_start_;
      pace();
    });
  }

  // Stops sending (no request is sent after this returns).
  void stop_sending() {
    std::promise<void> stopped;
    asio::post(io_, [this, &stopped] {
      sending_ = false;
      pacer_.cancel();
      stopped.set_value();
    });
    stopped.get_future().wait();
  }

  // Waits up to `timeout` for the outstanding replies, then closes everything
  // and stops the client thread. Afterwards the figures below may be read.
  void drain_and_close(std::chrono::milliseconds timeout) {
    Clock::time_point deadline = Clock::now() + timeout;
    while (outstanding_.load() != 0 && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::promise<void> closed;
    asio::post(io_, [this, &closed] {
      for (auto& c : conns_) {
        lost_ += c->pending.size();
        c->closing = true;
        boost::system::error_code ec;
        c->socket.close(ec);
      }
      closed.set_value();
    });
    closed.get_future().wait();
    io_.stop();
    thread_.join();
  }

  const std::vector<Sample>& samples() const { return samples_; }
  uint64_t sent() const { return sent_; }
  uint64_t lost() const { return lost_; }
  uint64_t dropped() const { return dropped_.load(); }
  uint64_t out_of_order() const { return out_of_order_; }
  uint64_t errors() const { return errors_; }
  uint64_t skipped() const { return skipped_; }
  uint64_t pushes() const { return pushes_; }
  const std::string& first_problem() const { return first_problem_; }

 private:
  struct Conn {
    Conn(asio::io_context& io, size_t i) : socket(io), index(i) {}
    tcp::socket socket;
    size_t index;
    std::array<char, 8192> buffer{};
    std::string partial;          // an incomplete reply line
    std::string queued, writing;  // output: waiting, and in flight (one async_write at a time)
    std::deque<Pending> pending;  // oldest first
    uint64_t next_seq = 1;
    bool dead = false, closing = false;
  };

  void problem(const std::string& what) {
    if (first_problem_.empty()) first_problem_ = what;
  }

  void fail(Conn& c, const std::string& why = {}) {
    if (c.dead || c.closing) return;
    c.dead = true;
    ++dropped_;
    problem("connection " + std::to_string(c.index) + " dropped" + (why.empty() ? "" : ": " + why));
  }

  void pace() {
    if (!sending_) return;
    // The number of sends due by now; catches up if this thread was late.
    const double elapsed = std::chrono::duration<double>(Clock::now() - send_start_).count();
    const auto due = static_cast<uint64_t>(elapsed * opt_.rate * static_cast<double>(conns_.size()));
    std::uniform_int_distribution<int> step(-1, 1);
    for (; slot_ < due; ++slot_) {
      Conn& c = *conns_[slot_ % conns_.size()];
      if (c.dead) continue;
      if (c.pending.size() >= opt_.max_outstanding) {
        ++skipped_;
        continue;
      }
      send(c, "move " + std::to_string(step(rng_)) + " " + std::to_string(step(rng_)), false);
    }
    pacer_next_ += std::chrono::milliseconds(1);
    pacer_.expires_at(pacer_next_);
    pacer_.async_wait([this](boost::system::error_code ec) {
      if (!ec) pace();
    });
  }

  void send(Conn& c, const std::string& request, bool join) {
    const uint64_t seq = c.next_seq++;
    c.queued += std::to_string(seq) + " " + request + "\n";
    c.pending.push_back({seq, ns_since(origin_, Clock::now()), join});
    ++outstanding_;
    if (!join) ++sent_;
    flush(c);
  }

  void flush(Conn& c) {
    if (!c.writing.empty() || c.queued.empty() || c.dead) return;
    c.writing.swap(c.queued);
    asio::async_write(c.socket, asio::buffer(c.writing), [this, &c](boost::system::error_code ec, size_t) {
      if (ec) return fail(c, "write: " + ec.message());
      c.writing.clear();
      flush(c);
    });
  }

  void read(Conn& c) {
    c.socket.async_read_some(asio::buffer(c.buffer), [this, &c](boost::system::error_code ec, size_t n) {
      if (ec) return fail(c, ec == asio::error::eof ? "closed by the server" : "read: " + ec.message());
      const int64_t now = ns_since(origin_, Clock::now());
      c.partial.append(c.buffer.data(), n);
      size_t start = 0;
      for (size_t nl; (nl = c.partial.find('\n', start)) != std::string::npos; start = nl + 1)
        on_line(c, std::string_view(c.partial).substr(start, nl - start), now);
      c.partial.erase(0, start);
      read(c);
    });
  }

  void on_line(Conn& c, std::string_view line, int64_t now) {
    if (line.substr(0, 2) == "* ") {  // a push (another player left), never a reply
      ++pushes_;
      return;
    }
    uint64_t seq = 0;
    size_t i = 0;
    while (i < line.size() && line[i] >= '0' && line[i] <= '9') seq = seq * 10 + uint64_t(line[i++] - '0');
    const bool ok = line.substr(i, 4) == " ok ";
    if (i == 0 || c.pending.empty() || c.pending.front().seq != seq) {
      ++out_of_order_;
      problem("connection " + std::to_string(c.index) + ": reply '" + std::string(line) + "' while the oldest " +
              (c.pending.empty() ? "request is none" : "outstanding seq is " + std::to_string(c.pending.front().seq)));
      auto it = std::find_if(c.pending.begin(), c.pending.end(), [&](const Pending& p) { return p.seq == seq; });
      if (it != c.pending.end()) {
        c.pending.erase(it);
        --outstanding_;
      }
      return;
    }
    const Pending p = c.pending.front();
    c.pending.pop_front();
    --outstanding_;
    if (!ok) {
      ++errors_;
      problem("connection " + std::to_string(c.index) + ": error reply '" + std::string(line) + "'");
    }
    if (p.join)
      ++joined_;
    else
      samples_.push_back({p.sent_ns, now - p.sent_ns});
  }

  Clock::time_point origin_;
  uint16_t port_;
  Options opt_;
  asio::io_context io_;
  asio::steady_timer pacer_{io_};
  std::vector<std::unique_ptr<Conn>> conns_;
  std::thread thread_;
  std::mt19937 rng_;

  // Client thread only (read by others after drain_and_close joined it).
  Clock::time_point send_start_, pacer_next_;
  bool sending_ = true;
  uint64_t slot_ = 0, sent_ = 0, lost_ = 0, out_of_order_ = 0, errors_ = 0, skipped_ = 0, pushes_ = 0;
  std::vector<Sample> samples_;
  std::string first_problem_;

  std::atomic<uint64_t> joined_{0}, dropped_{0}, outstanding_{0};
};

// ---- the load client's process ----

// What the client reports once drained: its counters and every sample.
struct ClientResults {
  uint64_t lost = 0, dropped = 0, out_of_order = 0, errors = 0, skipped = 0;
  std::string first_problem;
  std::vector<Sample> samples;
};

bool write_all(int fd, const void* data, size_t size) {
  for (size_t done = 0; done < size;) {
    const ssize_t put = ::write(fd, static_cast<const char*>(data) + done, size - done);
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) return false;
    done += static_cast<size_t>(put);
  }
  return true;
}

bool read_all(int fd, void* data, size_t size) {
  for (size_t done = 0; done < size;) {
    const ssize_t got = ::read(fd, static_cast<char*>(data) + done, size - done);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    done += static_cast<size_t>(got);
  }
  return true;
}

// --bystander-starts: a control for what a process start costs the host
// through the machine alone. A process of its own (forked first, like the load
// client; neither the host's child nor sharing its address space) starts the
// `hotswap` program once per command byte: the same executable and 30 shared
// libraries a spawned rehearsal starts, which exits at once with its usage
// message. With --no-rehearse, the reload windows then hold a process start
// that the host takes no part in.
//
// --bystander-cpu-ms MS: the same process spends MS of its own CPU time per
// command instead (a loop over a 64 KiB buffer; no process start, no system
// call but the clock): what the work of a rehearsal process that is already
// running would cost. --bystander-policy runs the bystander (and what it
// starts) at nice 19, SCHED_BATCH or SCHED_IDLE.
class BystanderProcess {
 public:
  explicit BystanderProcess(const Options& opt) : cpu_ms_(opt.bystander_cpu_ms), policy_(opt.bystander_policy) {
    int down[2];
    if (::pipe2(down, O_CLOEXEC) != 0) die(std::string("pipe: ") + std::strerror(errno));
    pid_ = ::fork();
    if (pid_ < 0) die(std::string("cannot fork the bystander: ") + std::strerror(errno));
    if (pid_ == 0) {
      ::close(down[1]);
      ::_exit(serve(down[0], cpu_ms_, policy_));
    }
    ::close(down[0]);
    to_child_ = down[1];
  }
  BystanderProcess(const BystanderProcess&) = delete;
  BystanderProcess& operator=(const BystanderProcess&) = delete;
  ~BystanderProcess() {
    ::close(to_child_);  // the bystander ends at end of file
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }

  // Asks for one start (or one spell of CPU); does not wait for it.
  void start_program() {
    if (!write_all(to_child_, "s", 1)) die("the bystander process is gone");
    ++starts_;
  }
  int starts() const { return starts_; }

 private:
  static bool set_policy(const std::string& policy) {
    sched_param none{};
    if (policy == "nice19") return ::setpriority(PRIO_PROCESS, 0, 19) == 0;
    if (policy == "batch") return ::sched_setscheduler(0, SCHED_BATCH, &none) == 0;
    if (policy == "idle") return ::sched_setscheduler(0, SCHED_IDLE, &none) == 0;
    return true;
  }

  static void spend_cpu(int ms) {
    std::vector<unsigned char> buffer(64 * 1024, 1);
    volatile unsigned sink = 0;
    timespec start{}, now{};
    ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &start);
    const int64_t budget_ns = int64_t(ms) * 1'000'000;
    do {
      for (size_t i = 0; i < buffer.size(); i += 64) sink = sink + buffer[i]++;
      ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
    } while ((now.tv_sec - start.tv_sec) * 1'000'000'000 + (now.tv_nsec - start.tv_nsec) < budget_ns);
  }

  static int serve(int from_parent, int cpu_ms, const std::string& policy) {
    if (!set_policy(policy)) return 3;
    char command = 0;
    while (read_all(from_parent, &command, 1)) {
      if (cpu_ms > 0) {
        spend_cpu(cpu_ms);
        continue;
      }
      const char* argv[] = {HOTSWAP_BINARY, nullptr};
      posix_spawn_file_actions_t actions;
      ::posix_spawn_file_actions_init(&actions);
      ::posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
      ::posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
      pid_t child = -1;
      const int failed = ::posix_spawn(&child, HOTSWAP_BINARY, &actions, nullptr, const_cast<char**>(argv), environ);
      ::posix_spawn_file_actions_destroy(&actions);
      if (failed != 0) return 1;
      int status = 0;
      ::waitpid(child, &status, 0);
    }
    return 0;
  }

  int cpu_ms_ = 0;
  std::string policy_;
  pid_t pid_ = -1;
  int to_child_ = -1;
  int starts_ = 0;
};

// The load client in a process of its own, forked before the host starts
// (while this process still has one thread). Players are remote in
// production: the host's rehearsal fork write-protects every page of the host
// process, and the copy-on-write faults that follow, like the rehearsal
// child's CPU, are the host's cost. A client thread in the host's process paid
// them too, and measured itself: at 5,000 connections its p50 in reload
// windows was 100 ms against 0.25 ms outside.
//
// The pipes carry one command byte each way: the parent sends 'c' (then the
// port), 's' (stop sending) and 'f' (drain, close, report); the child answers
// each with kOk, or kFailed and a length-prefixed message. After 'f' come the
// counters, the first problem and the samples.
class ClientProcess {
 public:
  ClientProcess(Clock::time_point origin, const Options& opt) {
    int down[2], up[2];
    if (::pipe2(down, O_CLOEXEC) != 0) die(std::string("pipe: ") + std::strerror(errno));
    if (::pipe2(up, O_CLOEXEC) != 0) die(std::string("pipe: ") + std::strerror(errno));
    pid_ = ::fork();
    if (pid_ < 0) die(std::string("cannot fork the load client: ") + std::strerror(errno));
    if (pid_ == 0) {
      ::close(down[1]);
      ::close(up[0]);
      // _exit: none of the parent's destructors (its temporary root) may run here.
      ::_exit(serve(down[0], up[1], origin, opt));
    }
    ::close(down[0]);
    ::close(up[1]);
    to_child_ = down[1];
    from_child_ = up[0];
  }
  ClientProcess(const ClientProcess&) = delete;
  ClientProcess& operator=(const ClientProcess&) = delete;
  ~ClientProcess() {
    ::close(to_child_);
    ::close(from_child_);
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
  }

  // Connects and joins every connection to `port`, then starts the steady load.
  void start(uint16_t port) {
    send_command('c');
    if (!write_all(to_child_, &port, sizeof port)) die("the load client process is gone");
    expect_ok("connecting");
  }

  // Returns once no request will be sent any more.
  void stop_sending() {
    send_command('s');
    expect_ok("stopping");
  }

  ClientResults finish() {
    send_command('f');
    expect_ok("draining");
    ClientResults r;
    uint64_t counters[5], problem_size = 0, sample_count = 0;
    bool ok = read_all(from_child_, counters, sizeof counters) &&
              read_all(from_child_, &problem_size, sizeof problem_size) && problem_size < (1u << 20);
    if (ok) {
      r.first_problem.resize(problem_size);
      ok = read_all(from_child_, r.first_problem.data(), problem_size) &&
           read_all(from_child_, &sample_count, sizeof sample_count) && sample_count < (1ull << 32);
    }
    if (ok) {
      r.samples.resize(sample_count);
      ok = read_all(from_child_, r.samples.data(), sample_count * sizeof(Sample));
    }
    if (!ok) die("the load client process ended before its report");
    r.lost = counters[0];
    r.dropped = counters[1];
    r.out_of_order = counters[2];
    r.errors = counters[3];
    r.skipped = counters[4];
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return r;
  }

 private:
  static constexpr char kOk = 0, kFailed = 1;

  static void reply(int out, char status, const std::string& message = {}) {
    const uint64_t size = message.size();
    (void)(write_all(out, &status, 1) && (status == kOk || (write_all(out, &size, sizeof size) &&
                                                            write_all(out, message.data(), message.size()))));
  }

  static int serve(int in, int out, Clock::time_point origin, const Options& opt) {
    try {
      char command = 0;
      uint16_t port = 0;
      if (!read_all(in, &command, 1) || command != 'c' || !read_all(in, &port, sizeof port)) return 1;
      LoadClient client(origin, port, opt);
      client.connect_and_join(std::chrono::seconds(30));
      client.start_sending();
      reply(out, kOk);
      if (!read_all(in, &command, 1) || command != 's') return 1;
      client.stop_sending();
      reply(out, kOk);
      if (!read_all(in, &command, 1) || command != 'f') return 1;
      client.drain_and_close(std::chrono::milliseconds(opt.drain_ms));
      reply(out, kOk);
      const uint64_t counters[5] = {client.lost(), client.dropped(), client.out_of_order(), client.errors(),
                                    client.skipped()};
      const uint64_t problem_size = client.first_problem().size(), sample_count = client.samples().size();
      const bool sent = write_all(out, counters, sizeof counters) && write_all(out, &problem_size, sizeof problem_size) &&
                        write_all(out, client.first_problem().data(), problem_size) &&
                        write_all(out, &sample_count, sizeof sample_count) &&
                        write_all(out, client.samples().data(), sample_count * sizeof(Sample));
      return sent ? 0 : 1;
    } catch (const std::exception& e) {
      reply(out, kFailed, e.what());
      return 1;
    }
  }

  void send_command(char command) {
    if (!write_all(to_child_, &command, 1)) die("the load client process is gone");
  }

  void expect_ok(const char* doing) {
    char status = kFailed;
    if (!read_all(from_child_, &status, 1)) die(std::string("the load client process ended while ") + doing);
    if (status == kOk) return;
    uint64_t size = 0;
    std::string message;
    if (read_all(from_child_, &size, sizeof size) && size < (1u << 20)) {
      message.resize(size);
      if (!read_all(from_child_, message.data(), size)) message.clear();
    }
    die("the load client failed while " + std::string(doing) + ": " + message);
  }

  pid_t pid_ = -1;
  int to_child_ = -1, from_child_ = -1;
};

// ---- the host ----

// --diagnose: a 1 ms timer on the host's loop; how late it fires is how long
// the loop was busy with something else.
class LagProbe {
 public:
  LagProbe(asio::io_context& io, Clock::time_point origin) : timer_(io), origin_(origin) {}
  void start() {
    next_ = Clock::now() + std::chrono::milliseconds(1);
    arm();
  }
  void stop() {  // on the loop
    stopped_ = true;
    timer_.cancel();
  }
  struct Lag {
    int64_t at_ns, lag_ns;
  };
  const std::vector<Lag>& lags() const { return lags_; }

 private:
  void arm() {
    timer_.expires_at(next_);
    timer_.async_wait([this](boost::system::error_code ec) {
      if (ec || stopped_) return;
      Clock::time_point now = Clock::now();
      lags_.push_back({ns_since(origin_, next_), ns_since(next_, now)});
      next_ = std::max(next_ + std::chrono::milliseconds(1), now);
      arm();
    });
  }
  asio::steady_timer timer_;
  Clock::time_point origin_, next_;
  std::vector<Lag> lags_;
  bool stopped_ = false;
};

// A booted Runtime whose event loop runs on a background thread (Runtime::run
// is not used: it installs signal handlers). With `probe`, a LagProbe runs on the loop.
class Host {
 public:
  Host(const fs::path& root, Clock::time_point origin, bool probe, bool pin, bool batch_worker) : runtime_(root) {
    runtime_.boot();
    if (probe) {
      probe_ = std::make_unique<LagProbe>(runtime_.io(), origin);
      probe_->start();
    }
    thread_ = std::thread([this, pin, batch_worker] {
      pthread_setname_np(pthread_self(), "host-loop");
      if (pin) pin_to_cpu(0);
      if (batch_worker) set_policy(SCHED_OTHER);
      runtime_.io().run();
    });
  }
  ~Host() { stop(); }
  void stop() {
    if (!thread_.joinable()) return;
    asio::post(runtime_.io(), [this] {
      if (probe_) probe_->stop();
      runtime_.stop();
    });
    thread_.join();
  }
  hotswap::host::Runtime& runtime() { return runtime_; }
  const LagProbe* probe() const { return probe_.get(); }

  template <class Fn>
  auto on_loop(Fn fn) -> decltype(fn()) {
    std::packaged_task<decltype(fn())()> task(std::move(fn));
    auto result = task.get_future();
    asio::post(runtime_.io(), [&task] { task(); });
    return result.get();
  }

 private:
  hotswap::host::Runtime runtime_;
  std::unique_ptr<LagProbe> probe_;  // destroyed before the Runtime and its io_context
  std::thread thread_;
};

// Loop-side timestamps of one reload (--diagnose), in ns since the origin.
struct Phases {
  int64_t posted = 0;     // our task began on the loop (Runtime::upgrade called)
  int64_t handed = 0;     // Runtime::upgrade returned: plan + manifests + config read, check posted to the worker
  int64_t rehearsing = 0;  // "rehearsing" event: the rehearsal child is about to be forked
  int64_t rehearsed = 0;   // "rehearsed" event: the rehearsal child ended
  int64_t committed = 0;  // "committed" event: the modules resumed
  int64_t purged = 0;     // "purged" event: old instance destroyed, dlclose'd
  int64_t done = 0;       // done callback: after finish_upgrade (RELEASES.json, config)
};

struct Reload {
  int64_t start_ns, end_ns;  // main thread: before posting, after the outcome arrived
  UpgradeReport report;
  Phases phases;
};

Reload reload(Host& host, Clock::time_point origin, const std::string& version, bool diagnose, bool rehearse) {
  Reload r;
  r.start_ns = ns_since(origin, Clock::now());
  std::promise<UpgradeReport> outcome;
  auto future = outcome.get_future();
  Phases& ph = r.phases;
  asio::post(host.runtime().io(), [&] {
    auto stamp = [origin] { return ns_since(origin, Clock::now()); };
    hotswap::host::ProgressListener progress;
    if (diagnose) {
      progress = [&ph, stamp](const nlohmann::json& event) {
        const std::string name = event.value("event", "");
        if (name == "rehearsing") ph.rehearsing = stamp();
        if (name == "rehearsed") ph.rehearsed = stamp();
        if (name == "committed") ph.committed = stamp();
        if (name == "purged") ph.purged = stamp();
      };
      ph.posted = stamp();
    }
    hotswap::host::UpgradeRequest request;
    request.version = version;
    request.rehearse = rehearse;
    // A refused upgrade calls `done` before upgrade() returns; after that, `ph` may be gone.
    auto finished = std::make_shared<bool>(false);
    host.runtime().upgrade(request, progress, [&, diagnose, stamp, finished](const UpgradeReport& report) {
      *finished = true;
      if (diagnose) ph.done = stamp();
      outcome.set_value(report);
    });
    if (diagnose && !*finished) ph.handed = stamp();
  });
  r.report = future.get();
  r.end_ns = ns_since(origin, Clock::now());
  return r;
}

std::string fmt_dist(const char* name, std::vector<double> v, const char* unit) {
  std::sort(v.begin(), v.end());
  char buf[256];
  std::snprintf(buf, sizeof buf, "\"%s_p50_%s\":%.3f,\"%s_p99_%s\":%.3f,\"%s_max_%s\":%.3f", name, unit,
                percentile(v, 50), name, unit, percentile(v, 99), name, unit, v.empty() ? 0.0 : v.back());
  return buf;
}

// --stall-us: no reload; the loop spins for `us` microseconds, reported as the "pause".
Reload stall(Host& host, Clock::time_point origin, int us) {
  Reload r;
  r.start_ns = ns_since(origin, Clock::now());
  host.on_loop([us] {
    const Clock::time_point until = Clock::now() + std::chrono::microseconds(us);
    while (Clock::now() < until) {
    }
    return 0;
  });
  r.end_ns = ns_since(origin, Clock::now());
  r.report.outcome = UpgradeReport::Outcome::Committed;
  r.report.pause = std::chrono::microseconds(us);
  return r;
}

// --diagnose, after the load stopped: parts of a reload's loop-side work timed
// one by one on the idle loop, on the same root (same file system):
//   plan_to        the planning of `hotswap plan` and of an upgrade's check (make_plan
//                  over the store's files); the host does it on the worker
//   mark_current   ReleaseStore::mark_current of the running release: what
//                  finish_upgrade does on the loop (read RELEASES.json, write a
//                  temporary, fsync it, rename, fsync the folder)
//   library_close  LoadedLibrary::close of an arena module: the purge's dlclose,
//                  the link-map check and closing its memory copy
std::string measure_isolated_costs(Host& host, const fs::path& root, const std::string& other_version) {
  constexpr int kRuns = 20;
  hotswap::host::Runtime& rt = host.runtime();
  std::vector<double> plan, mark, close;
  const std::string running = host.on_loop([&] { return rt.manifest().version; });
  const std::string other = running == "1.1.0" ? other_version : "1.1.0";
  auto ms_of = [](Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); };
  for (int i = 0; i < kRuns; ++i) {
    host.on_loop([&] {
      Clock::time_point t0 = Clock::now();
      appup::make_plan(rt.manifest(), hotswap::host::load_unpacked_release(rt.store(), other),
                       hotswap::host::load_appup_of);
      plan.push_back(ms_of(t0));
      t0 = Clock::now();
      rt.store().mark_current(running);
      mark.push_back(ms_of(t0));
      return 0;
    });
  }
  hotswap::host::LibraryLoader loader(root / "run");
  const appup::ReleaseManifest manifest = hotswap::host::load_manifest(root / "releases" / other);
  const appup::ModuleEntry& m = manifest.modules.at(0);
  for (int i = 0; i < kRuns; ++i) {
    std::shared_ptr<hotswap::host::LoadedLibrary> lib = loader.load(m.file, {m.name, m.version, m.sha256});
    Clock::time_point t0 = Clock::now();
    if (!lib->close()) die("the arena module stayed mapped after close");
    close.push_back(ms_of(t0));
  }
  return "{\"name\":\"reload_under_load_isolated\"," + fmt_dist("plan_to", plan, "ms") + "," +
         fmt_dist("mark_current", mark, "ms") + "," + fmt_dist("library_close", close, "ms") + "}";
}

int run(const Options& opt) {
  // Releases carry no log_level, so every committed upgrade sets spdlog back to
  // "info" (Runtime::apply_config). Filter at the sinks too, so that its info
  // lines stay out of the output; the loop still formats them, as in production.
  spdlog::set_level(spdlog::level::warn);
  for (auto& sink : spdlog::default_logger()->sinks()) sink->set_level(spdlog::level::warn);
  ::unsetenv("ARENA_PORT");  // the OS picks the port

  TempRoot root;
  const nlohmann::json runtime_changes =
      opt.spawn_rehearsal ? nlohmann::json{{"rehearsal_mechanism", "spawn"}} : nlohmann::json::object();
  root.add_release("1.1.0", runtime_changes);  // first boot boots the newest release on disk
  const Clock::time_point origin = Clock::now();  // CLOCK_MONOTONIC: the same in the client's process
  ClientProcess client_process(origin, opt);      // before any thread starts here
  std::optional<BystanderProcess> bystander;
  if (opt.bystander_starts || opt.bystander_cpu_ms > 0) bystander.emplace(opt);
  // --pin: the Runtime's worker thread is created in its constructor and inherits main's CPU.
  // --batch-worker: likewise its scheduling policy; every other thread goes back to SCHED_OTHER.
  if (opt.pin) pin_to_cpu(1);
  if (opt.batch_worker) set_policy(SCHED_BATCH);
  Host host(root.dir(), origin, opt.diagnose, opt.pin, opt.batch_worker);
  if (opt.batch_worker) set_policy(SCHED_OTHER);
  const std::string other_version = opt.code_only ? "1.0.0" : "2.0.0";
  root.add_release(other_version, runtime_changes);
  // The host runs inside this program: a spawned rehearsal starts the real `hotswap`.
  host.on_loop([&] { host.runtime().coordinator().set_running_program(HOTSWAP_BINARY); });
  const uint16_t port = host.on_loop([&] { return host.runtime().server().listeners().at(0).port; });

  client_process.start(port);
  std::this_thread::sleep_for(std::chrono::milliseconds(opt.warmup_ms));
  const int64_t measure_start = ns_since(origin, Clock::now());

  std::vector<Reload> reloads;
  std::mt19937 rng(777);
  std::uniform_int_distribution<int> jitter(0, opt.spacing_ms / 8);  // keeps reloads off a fixed phase of the windows
  Clock::time_point next = Clock::now() + std::chrono::milliseconds(opt.window_ms);
  for (int i = 0; i < 2 * opt.cycles; ++i) {
    std::this_thread::sleep_until(next + std::chrono::milliseconds(jitter(rng)));
    next += std::chrono::milliseconds(opt.spacing_ms);
    const std::string version = i % 2 == 0 ? other_version : "1.1.0";
    if (bystander) bystander->start_program();
    Reload r = opt.stall_us > 0 ? stall(host, origin, opt.stall_us) : reload(host, origin, version, opt.diagnose, !opt.no_rehearse);
    if (!r.report.committed()) die("reload " + std::to_string(i + 1) + " to " + version + " did not commit: " +
                                   r.report.summary());
    if (!r.report.leaked.empty()) die("reload " + std::to_string(i + 1) + " leaked a library: " + r.report.summary());
    reloads.push_back(std::move(r));
  }
  std::this_thread::sleep_until(next + std::chrono::milliseconds(opt.tail_ms));
  client_process.stop_sending();
  const int64_t measure_end = ns_since(origin, Clock::now());
  const ClientResults client = client_process.finish();
  const std::string running = host.on_loop([&] { return host.runtime().manifest().version; });
  std::string isolated_costs;
  if (opt.diagnose) isolated_costs = measure_isolated_costs(host, root.dir(), other_version);
  host.stop();
  if (running != "1.1.0") die("after " + std::to_string(reloads.size()) + " reloads, " + running + " runs, not 1.1.0");

  // ---- windows ----
  const int64_t window = int64_t(opt.window_ms) * 1'000'000;
  const size_t windows = static_cast<size_t>((measure_end - measure_start + window - 1) / window);
  std::vector<bool> reload_window(windows, false);
  for (const Reload& r : reloads) {
    int64_t s = std::max(r.start_ns, measure_start), e = std::min(r.end_ns, measure_end - 1);
    if (e < s) continue;
    for (int64_t w = (s - measure_start) / window; w <= (e - measure_start) / window; ++w)
      reload_window[static_cast<size_t>(w)] = true;
  }
  std::vector<double> baseline_ms, during_ms;
  for (const Sample& s : client.samples) {
    if (s.sent_ns < measure_start || s.sent_ns >= measure_end) continue;
    const double ms = static_cast<double>(s.latency_ns) / 1e6;
    (reload_window[static_cast<size_t>((s.sent_ns - measure_start) / window)] ? during_ms : baseline_ms).push_back(ms);
  }
  std::sort(baseline_ms.begin(), baseline_ms.end());
  std::sort(during_ms.begin(), during_ms.end());
  std::vector<double> pauses_us;
  for (const Reload& r : reloads)
    pauses_us.push_back(std::chrono::duration<double, std::micro>(r.report.pause).count());
  std::sort(pauses_us.begin(), pauses_us.end());

  const double seconds = static_cast<double>(measure_end - measure_start) / 1e9;
  const double replies_measured = static_cast<double>(baseline_ms.size() + during_ms.size());
  const double p99_base = percentile(baseline_ms, 99), p99_during = percentile(during_ms, 99);
  const size_t n_reload_windows = static_cast<size_t>(std::count(reload_window.begin(), reload_window.end(), true));
  std::printf(
      "{\"name\":\"%s\",\"connections\":%zu,\"msgs_per_s\":%.0f,\"reloads\":%zu,\"dropped\":%llu,"
      "\"lost\":%llu,\"out_of_order\":%llu,\"p99_ms_baseline\":%.3f,\"p99_ms_during_reload\":%.3f,\"ratio\":%.2f,"
      "\"p50_ms_baseline\":%.3f,\"p50_ms_during_reload\":%.3f,\"pause_p50_us\":%.1f,\"pause_p99_us\":%.1f,"
      "\"errors\":%llu,\"skipped\":%llu,\"max_ms_baseline\":%.3f,\"max_ms_during_reload\":%.3f,"
      "\"windows_baseline\":%zu,\"windows_reload\":%zu,\"window_ms\":%d,\"bystander_starts\":%d,"
      "\"bystander_cpu_ms\":%d,\"bystander_policy\":\"%s\"}\n",
      opt.stall_us > 0 ? "loop_stall_calibration" : opt.code_only ? "reload_under_load_code_only" : "reload_under_load", opt.connections, replies_measured / seconds, reloads.size(), static_cast<unsigned long long>(client.dropped),
      static_cast<unsigned long long>(client.lost), static_cast<unsigned long long>(client.out_of_order), p99_base,
      p99_during, p99_base > 0 ? p99_during / p99_base : 0.0, percentile(baseline_ms, 50), percentile(during_ms, 50),
      percentile(pauses_us, 50), percentile(pauses_us, 99), static_cast<unsigned long long>(client.errors),
      static_cast<unsigned long long>(client.skipped), baseline_ms.empty() ? 0.0 : baseline_ms.back(),
      during_ms.empty() ? 0.0 : during_ms.back(), windows - n_reload_windows, n_reload_windows, opt.window_ms,
      bystander ? bystander->starts() : 0, opt.bystander_cpu_ms, opt.bystander_policy.c_str());
  std::fflush(stdout);

  if (opt.diagnose) {
    // Where the loop spends a reload: each phase's duration, in ms.
    std::vector<double> pre, apply, migrate, purge, finish, total, check, fork, exported, faults, rehearsal;
    for (const Reload& r : reloads) {
      const Phases& p = r.phases;
      if (r.report.rehearsal.is_object()) {
        fork.push_back(r.report.rehearsal.value("fork_ms", 0.0));
        exported.push_back(r.report.rehearsal.value("export_ms", 0.0));
        faults.push_back(r.report.rehearsal.value("live_page_faults", 0.0));
      }
      if (p.rehearsed != 0) rehearsal.push_back(static_cast<double>(p.rehearsed - p.rehearsing) / 1e6);
      const double pause_ms = std::chrono::duration<double, std::milli>(r.report.pause).count();
      pre.push_back(static_cast<double>(p.handed - p.posted) / 1e6);
      check.push_back(std::chrono::duration<double, std::milli>(r.report.check_time).count());
      apply.push_back(pause_ms);
      double steps_ms = 0;  // the migration steps inside the pause; the rest is suspend, commit, resume (queue drain)
      for (const auto& step : r.report.steps) steps_ms += std::chrono::duration<double, std::milli>(step.duration).count();
      migrate.push_back(steps_ms);
      purge.push_back(static_cast<double>(p.purged - p.committed) / 1e6);
      finish.push_back(static_cast<double>(p.done - p.purged) / 1e6);
      total.push_back(static_cast<double>(r.end_ns - r.start_ns) / 1e6);
    }
    std::printf("{\"name\":\"reload_under_load_phases\",%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s}\n",
                fmt_dist("loop_upgrade_call", pre, "ms").c_str(), fmt_dist("loop_rehearsal_fork", fork, "ms").c_str(),
                fmt_dist("loop_rehearsal_export", exported, "ms").c_str(),
                fmt_dist("rehearsal_live_page_faults", faults, "count").c_str(),
                fmt_dist("rehearsal_wall", rehearsal, "ms").c_str(), fmt_dist("worker_check", check, "ms").c_str(),
                fmt_dist("loop_pause", apply, "ms").c_str(), fmt_dist("loop_pause_migrate_steps", migrate, "ms").c_str(), fmt_dist("loop_purge", purge, "ms").c_str(),
                fmt_dist("loop_finish_upgrade", finish, "ms").c_str(), fmt_dist("reload_total", total, "ms").c_str());
    // Loop lag: how late a 1 ms timer fired, in and out of reloads.
    std::vector<double> lag_reload, lag_base;
    for (const LagProbe::Lag& l : host.probe()->lags()) {
      if (l.at_ns < measure_start || l.at_ns >= measure_end) continue;
      bool in = false;
      for (const Reload& r : reloads)
        if (l.at_ns + l.lag_ns >= r.start_ns && l.at_ns <= r.end_ns) in = true;
      (in ? lag_reload : lag_base).push_back(static_cast<double>(l.lag_ns) / 1e6);
    }
    std::printf("{\"name\":\"reload_under_load_loop_lag\",%s,%s}\n", fmt_dist("lag_in_reload", lag_reload, "ms").c_str(),
                fmt_dist("lag_outside_reload", lag_base, "ms").c_str());
    // The reload phase each lag of 5 ms or more began in: where the loop stalls.
    std::map<std::string, std::pair<int, double>> stalls;  // phase -> count, longest ms
    for (const LagProbe::Lag& l : host.probe()->lags()) {
      if (l.lag_ns < 5'000'000 || l.at_ns < measure_start || l.at_ns >= measure_end) continue;
      std::string phase = "outside_reload";
      for (const Reload& r : reloads) {
        const Phases& p = r.phases;
        const int64_t pause_start = p.committed - std::chrono::duration_cast<std::chrono::nanoseconds>(r.report.pause).count();
        if (l.at_ns < r.start_ns || l.at_ns > r.end_ns) continue;
        phase = l.at_ns < p.posted      ? "before_upgrade_call"
                : l.at_ns < p.handed    ? "upgrade_call"
                : p.rehearsing != 0 && l.at_ns >= p.rehearsing && l.at_ns < p.rehearsed ? "rehearsal"
                : l.at_ns < pause_start ? "check"
                : l.at_ns < p.committed ? "pause"
                : l.at_ns < p.purged    ? "purge"
                                        : "finish";
      }
      auto& [count, longest] = stalls[phase];
      ++count;
      longest = std::max(longest, static_cast<double>(l.lag_ns) / 1e6);
    }
    std::string stall_json;
    for (const auto& [phase, figures] : stalls)
      stall_json += (stall_json.empty() ? "" : ",") + fmt::format("\"{}\":{{\"count\":{},\"longest_ms\":{:.1f}}}", phase, figures.first, figures.second);
    std::printf("{\"name\":\"reload_under_load_loop_stalls\",\"over_ms\":5,%s}\n", stall_json.c_str());
    std::printf("%s\n", isolated_costs.c_str());
    std::fflush(stdout);
  }

  std::string failed;
  if (client.dropped != 0) failed = std::to_string(client.dropped) + " connection(s) dropped";
  else if (client.lost != 0) failed = std::to_string(client.lost) + " request(s) got no reply";
  else if (client.out_of_order != 0) failed = std::to_string(client.out_of_order) + " reply(ies) out of order";
  else if (client.errors != 0) failed = std::to_string(client.errors) + " error reply(ies)";
  if (!failed.empty()) {
    std::fprintf(stderr, "hotswap_reload_bench: %s; first problem: %s\n", failed.c_str(),
                 client.first_problem.c_str());
    return 1;
  }
  return 0;
}

// kAboveZero's message names the whole range of a double; this one says it plainly.
const CLI::Validator kAboveZero(
    [](std::string& text) {
      char* end = nullptr;
      double v = std::strtod(text.c_str(), &end);
      return end != text.c_str() && *end == '\0' && v > 0 ? std::string() : "must be above 0, got '" + text + "'";
    },
    "POSITIVE");

// Fills `opt` from the command line. Returns the status to exit with instead
// of running: 0 after --help, 2 for a bad command line.
std::optional<int> parse_options(int argc, char** argv, Options& opt) {
  CLI::App app("hotswap_reload_bench: reload_under_load, the arena example reloaded under load (bench/README.md)",
               "hotswap_reload_bench");
  app.add_flag("--quick", opt.quick, "100 connections, 5 cycles, short warm-up (a smoke run; figures not meaningful)");
  app.add_flag("--code-only", opt.code_only,
               "reload 1.1.0 <-> 1.0.0 (load_module: the state stays in place) instead of 1.1.0 <-> 2.0.0 (update)");
  app.add_flag("--no-rehearse", opt.no_rehearse, "reload without the live rehearsal (hotswap reload --no-rehearse)");
  app.add_flag("--spawn-rehearsal", opt.spawn_rehearsal,
               "rehearse in a spawned process fed the exported states (runtime.json rehearsal_mechanism: spawn)");
  app.add_flag("--bystander-starts", opt.bystander_starts,
               "control: at each reload, an unrelated process starts the hotswap program once (use with --no-rehearse)");
  app.add_option("--bystander-cpu-ms", opt.bystander_cpu_ms,
                 "control: at each reload, an unrelated process spends MS of CPU time (no process start)")
      ->type_name("MS")
      ->check(kAboveZero);
  app.add_option("--bystander-policy", opt.bystander_policy, "the bystander's scheduling")
      ->type_name("normal|nice19|batch|idle")
      ->capture_default_str()
      ->check(CLI::IsMember({"normal", "nice19", "batch", "idle"}));
  app.add_flag("--diagnose", opt.diagnose, "also print the loop-side phases of the reloads and an event-loop lag probe");
  app.add_flag("--pin", opt.pin, "host loop on CPU 0; client, main thread and the host's worker thread on CPU 1");
  app.add_flag("--batch-worker", opt.batch_worker, "the host's worker thread (the check phase) runs SCHED_BATCH");
  app.add_option("--stall-us", opt.stall_us, "calibration: no reload; the loop spins US microseconds at each reload slot")
      ->type_name("US")
      ->check(kAboveZero);
  CLI::Option* connections = app.add_option("--connections", opt.connections, "client connections")
                                 ->type_name("N")
                                 ->capture_default_str()
                                 ->check(kAboveZero);
  CLI::Option* cycles = app.add_option("--cycles", opt.cycles, "upgrade+downgrade cycles, two reloads each")
                            ->type_name("N")
                            ->capture_default_str()
                            ->check(kAboveZero);
  app.add_option("--rate", opt.rate, "move requests per second per connection")
      ->type_name("R")
      ->capture_default_str()
      ->check(kAboveZero);
  app.add_option("--window-ms", opt.window_ms, "analysis window")
      ->type_name("W")
      ->capture_default_str()
      ->check(kAboveZero);
  app.add_option("--spacing-ms", opt.spacing_ms, "start-to-start interval between reloads")
      ->type_name("S")
      ->capture_default_str()
      ->check(kAboveZero);
  CLI::Option* warmup = app.add_option("--warmup-ms", opt.warmup_ms, "steady load before the first measured request")
                            ->type_name("M")
                            ->capture_default_str()
                            ->check(kAboveZero);
  CLI::Option* tail = app.add_option("--tail-ms", opt.tail_ms, "steady load after the last reload")
                          ->type_name("T")
                          ->capture_default_str()
                          ->check(kAboveZero);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return 0;
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "hotswap_reload_bench: %s\n%s", e.what(), app.help().c_str());
    return 2;
  }
  if (opt.quick) {  // a smoke run's sizes, except those given explicitly
    if (connections->count() == 0) opt.connections = 100;
    if (cycles->count() == 0) opt.cycles = 5;
    if (warmup->count() == 0) opt.warmup_ms = 500;
    if (tail->count() == 0) opt.tail_ms = 300;
  }
  return std::nullopt;
}

}  // namespace

int main(int argc, char** argv) {
  hotswap::host::tune_allocator_for_short_pauses();  // as the hotswap host runs
  ::signal(SIGPIPE, SIG_IGN);  // a load client process that died is reported, not a silent exit
  Options opt;
  if (std::optional<int> exit_status = parse_options(argc, argv, opt)) return *exit_status;
  try {
    return run(opt);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hotswap_reload_bench: %s\n", e.what());
    return 1;
  }
}
