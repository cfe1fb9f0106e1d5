#include "traffic.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <queue>
#include <sstream>
#include <stdexcept>

#include "handover_protocol.hpp"

namespace hotswap::test::handover {

namespace {

constexpr size_t kMaxProblems = 20;
constexpr size_t kMaxLineBytes = 4096;  // a reply longer than this is malformed
constexpr auto kReconnectRetry = std::chrono::milliseconds(5);

std::string errno_text(int err) { return std::strerror(err); }

sockaddr_in address_of(const std::string& address, uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  if (::inet_pton(AF_INET, address.c_str(), &sa.sin_addr) != 1)
    throw std::runtime_error("traffic: not an IPv4 address: '" + address + "'");
  return sa;
}

double ms_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

// "<seq> <id> <count> <tag>"; false when the line is not one.
bool parse_reply(const std::string& line, uint64_t& seq, uint64_t& id, uint64_t& count, std::string& tag) {
  std::istringstream in(line);
  if (!(in >> seq >> id >> count >> tag)) return false;
  std::string rest;
  return !(in >> rest);
}

}  // namespace

// ---- report ----

ExpectedStats TrafficReport::expected() const {
  ExpectedStats e;
  for (const ConnectionRecord& r : records) {
    e.total += r.answered_total;
    if (r.closed_by_client) {
      ++e.closed_conns;
      e.closed += r.answered;
      e.uncertain += r.unanswered_at_close;
    } else if (!r.dropped && r.answered > 0) {
      ++e.conns;
      e.checksum += connection_checksum(r.server_id, r.answered);
    }
  }
  return e;
}

std::string TrafficReport::summary() const {
  std::ostringstream out;
  out << "connections=" << connections << " sent=" << sent << " answered=" << answered << " dropped=" << dropped
      << " lost=" << lost << " duplicated=" << duplicated << " out_of_order=" << out_of_order
      << " malformed=" << malformed << " skipped_sends=" << skipped_sends << " max_stall_ms=" << max_stall_ms;
  for (const auto& [tag, n] : replies_by_tag) out << " " << tag << "=" << n;
  for (const std::string& p : problems) out << "\n  " << p;
  return out.str();
}

ModuleStats parse_stats(const std::string& reply) {
  std::istringstream in(reply);
  std::string word;
  if (!(in >> word) || word != "stats") throw std::runtime_error("not a stats reply: '" + reply + "'");
  ModuleStats s;
  std::map<std::string, std::string> fields;
  while (in >> word) {
    const size_t eq = word.find('=');
    if (eq == std::string::npos) throw std::runtime_error("stats reply field without '=': '" + word + "' in '" + reply + "'");
    fields[word.substr(0, eq)] = word.substr(eq + 1);
  }
  auto number = [&](const char* key) -> uint64_t {
    auto it = fields.find(key);
    if (it == fields.end()) throw std::runtime_error(std::string("stats reply without ") + key + ": '" + reply + "'");
    return std::stoull(it->second);
  };
  s.version = fields["version"];
  s.label = fields["label"];
  s.conns = number("conns");
  s.total = number("total");
  s.closed_conns = number("closed_conns");
  s.closed = number("closed");
  s.checksum = number("checksum");
  s.fires = number("fires");
  s.ticks = number("ticks");
  return s;
}

std::string ask(const std::string& address, uint16_t port, const std::string& request) {
  const sockaddr_in sa = address_of(address, port);
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("ask: socket: " + errno_text(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  timeval limit{30, 0};  // a host that never answers fails the caller instead of hanging it
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0)
    throw std::runtime_error("ask: connect to " + address + ":" + std::to_string(port) + ": " + errno_text(errno));
  const std::string line = request + "\n";
  if (::send(fd, line.data(), line.size(), MSG_NOSIGNAL) != ssize_t(line.size()))
    throw std::runtime_error("ask: send '" + request + "': " + errno_text(errno));
  std::string reply;
  char c;
  for (;;) {
    const ssize_t n = ::read(fd, &c, 1);
    if (n == 1 && c == '\n') return reply;
    if (n == 1) {
      reply.push_back(c);
      continue;
    }
    throw std::runtime_error("ask: no reply to '" + request + "' (" + (n == 0 ? "closed" : errno_text(errno)) +
                             "), got '" + reply + "'");
  }
}

uint64_t raise_open_files_limit(uint64_t needed) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  if (limit.rlim_cur >= needed) return limit.rlim_cur;
  limit.rlim_cur = std::min<rlim_t>(std::max<rlim_t>(needed, limit.rlim_cur), limit.rlim_max);
  ::setrlimit(RLIMIT_NOFILE, &limit);
  ::getrlimit(RLIMIT_NOFILE, &limit);
  return limit.rlim_cur;
}

// ---- the client ----

struct Traffic::Connection {
  int fd = -1;
  bool connecting = false;  // a non-blocking reconnect in progress
  bool closing = false;     // close_gracefully: no more sends
  bool closing_abruptly = false;
  std::deque<std::pair<uint64_t, Clock::time_point>> outstanding;  // seq, sent at
  std::string input;
  std::string output;  // not yet written (a full socket buffer)
  // When the connection lost its socket with requests outstanding: the stall
  // runs on until the first reply on the new socket.
  std::optional<Clock::time_point> stalled_since;
  ConnectionRecord record;
};

struct Traffic::Impl {
  sockaddr_in server{};
  int epoll = -1;
  std::vector<Connection> connections;
  // Due sends (each connection's one periodic chain) and reconnect attempts.
  struct Due {
    Clock::time_point when;
    size_t index;
    bool reconnect;
    bool operator>(const Due& other) const { return when > other.when; }
  };
  std::priority_queue<Due, std::vector<Due>, std::greater<Due>> schedule;
  size_t close_cursor = 0;  // connections are closed gracefully from the first one on
  uint64_t close_done_requests = 0;
  uint64_t abrupt_close_done_requests = 0;
  TrafficReport report;

  void problem(const std::string& text) {
    if (report.problems.size() < kMaxProblems) report.problems.push_back(text);
  }
};

Traffic::Traffic(TrafficOptions options) : options_(std::move(options)), impl_(std::make_unique<Impl>()) {
  impl_->server = address_of(options_.address, options_.port);
  impl_->epoll = ::epoll_create1(EPOLL_CLOEXEC);
  if (impl_->epoll < 0) throw std::runtime_error("traffic: epoll_create1: " + errno_text(errno));
  impl_->connections.resize(options_.connections);
  impl_->report.connections = options_.connections;
  for (size_t i = 0; i < options_.connections; ++i) {
    Connection& c = impl_->connections[i];
    c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c.fd < 0) throw std::runtime_error("traffic: socket for connection " + std::to_string(i) + ": " + errno_text(errno));
    if (::connect(c.fd, reinterpret_cast<const sockaddr*>(&impl_->server), sizeof impl_->server) != 0)
      throw std::runtime_error("traffic: connection " + std::to_string(i) + " to " + options_.address + ":" +
                               std::to_string(options_.port) + ": " + errno_text(errno));
    const int one = 1;
    ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::fcntl(c.fd, F_SETFL, O_NONBLOCK) != 0)
      throw std::runtime_error("traffic: O_NONBLOCK: " + errno_text(errno));
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = i;
    if (::epoll_ctl(impl_->epoll, EPOLL_CTL_ADD, c.fd, &ev) != 0)
      throw std::runtime_error("traffic: epoll_ctl: " + errno_text(errno));
  }
}

Traffic::~Traffic() {
  stopping_ = true;
  drain_ms_ = 0;
  if (thread_.joinable()) thread_.join();
  for (Connection& c : impl_->connections)
    if (c.fd >= 0) ::close(c.fd);
  if (impl_->epoll >= 0) ::close(impl_->epoll);
}

void Traffic::start() {
  const Clock::time_point now = Clock::now();
  const size_t n = impl_->connections.size();
  for (size_t i = 0; i < n; ++i)
    impl_->schedule.push({now + options_.interval * i / std::max<size_t>(n, 1), i, false});
  thread_ = std::thread([this] { run(); });
}

uint64_t Traffic::answered_with_tag(const std::string& tag) const {
  if (tag == "v1") return tag_v1_.load();
  if (tag == "v2") return tag_v2_.load();
  return tag_other_.load();
}

bool Traffic::wait_until(const std::function<bool()>& condition, std::chrono::milliseconds limit) const {
  // Woken by the traffic thread after every turn of its loop (announce_progress).
  std::unique_lock<std::mutex> lock(progress_mutex_);
  progress_.wait_for(lock, limit, [&] { return condition() || finished_.load(); });
  return condition();
}

void Traffic::announce_progress() {
  { std::lock_guard<std::mutex> lock(progress_mutex_); }
  progress_.notify_all();
}

TrafficReport Traffic::stop(std::chrono::milliseconds drain) {
  drain_ms_ = drain.count();
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
  TrafficReport& report = impl_->report;
  const Clock::time_point end = Clock::now();
  report.records.clear();
  for (const Connection& c : impl_->connections) {
    report.lost += c.outstanding.size();
    for (const auto& pending : c.outstanding) report.max_stall_ms = std::max(report.max_stall_ms, ms_between(pending.second, end));
    report.records.push_back(c.record);
  }
  if (report.lost > 0) impl_->problem(std::to_string(report.lost) + " request(s) never answered");
  return report;
}

void Traffic::run() {
  Impl& s = *impl_;
  TrafficReport& report = s.report;
  std::vector<epoll_event> events(1024);
  std::optional<Clock::time_point> drain_deadline;

  auto send_request = [&](size_t index, Connection& c, Clock::time_point now) {
    const uint64_t seq = ++c.record.sent;
    c.outstanding.emplace_back(seq, now);
    ++report.sent;
    c.output += std::to_string(seq) + "\n";
    const ssize_t n = ::send(c.fd, c.output.data(), c.output.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) c.output.erase(0, size_t(n));
    if (!c.output.empty()) {  // a full socket buffer: the rest goes out on EPOLLOUT
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP | EPOLLOUT;
      ev.data.u64 = index;
      ::epoll_ctl(s.epoll, EPOLL_CTL_MOD, c.fd, &ev);
    }
  };

  auto close_socket = [&](Connection& c) {
    if (c.fd >= 0) ::close(c.fd);  // also leaves the epoll set
    c.fd = -1;
    c.input.clear();
    c.output.clear();
  };

  // A reconnect completed: with interval 0 nothing else would start its requests.
  auto connected = [&](size_t index, Connection& c, Clock::time_point now) {
    if (options_.interval.count() == 0 && !stopping_.load())
      while (c.outstanding.size() < options_.window) send_request(index, c, now);
  };

  auto reconnect = [&](size_t index, Connection& c, Clock::time_point now) {
    c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (c.fd < 0) {
      s.schedule.push({now + kReconnectRetry, index, true});
      return;
    }
    const int rc = ::connect(c.fd, reinterpret_cast<const sockaddr*>(&s.server), sizeof s.server);
    if (rc != 0 && errno != EINPROGRESS) {  // refused: the server is not back yet
      close_socket(c);
      s.schedule.push({now + kReconnectRetry, index, true});
      return;
    }
    const int one = 1;
    ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c.connecting = rc != 0;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP | (c.connecting ? uint32_t(EPOLLOUT) : 0u);
    ev.data.u64 = index;
    ::epoll_ctl(s.epoll, EPOLL_CTL_ADD, c.fd, &ev);
    if (!c.connecting) connected(index, c, now);
  };

  // The server closed the connection, or it failed.
  auto drop = [&](size_t index, Connection& c, Clock::time_point now, const std::string& why) {
    ++report.dropped;
    ++dropped_;
    if (report.dropped <= 3) s.problem("connection " + std::to_string(index) + " (id " + std::to_string(c.record.server_id) + ") dropped: " + why);
    if (!c.outstanding.empty()) {
      c.stalled_since = c.outstanding.front().second;
      report.lost += c.outstanding.size();
      lost_ += c.outstanding.size();
      c.outstanding.clear();
    } else {
      c.stalled_since = now;
    }
    close_socket(c);
    if (options_.reconnect && !stopping_.load()) {
      ++c.record.reconnects;
      c.record.sent = c.record.answered = 0;
      c.record.server_id = 0;
      reconnect(index, c, now);
    } else {
      c.record.dropped = true;
    }
  };

  auto on_reply = [&](size_t index, Connection& c, const std::string& line, Clock::time_point now) {
    uint64_t seq = 0, id = 0, count = 0;
    std::string tag;
    if (!parse_reply(line, seq, id, count, tag)) {
      ++report.malformed;
      s.problem("connection " + std::to_string(index) + ": not a reply: '" + line.substr(0, 200) + "'");
      return;
    }
    if (seq <= c.record.answered) {
      ++report.duplicated;
      s.problem("connection " + std::to_string(index) + ": reply " + std::to_string(seq) + " again (answered up to " +
                std::to_string(c.record.answered) + ")");
      return;
    }
    if (c.outstanding.empty() || seq > c.outstanding.back().first) {
      ++report.malformed;
      s.problem("connection " + std::to_string(index) + ": reply to " + std::to_string(seq) + ", never sent (sent " +
                std::to_string(c.record.sent) + ")");
      return;
    }
    if (seq != c.outstanding.front().first) {
      ++report.out_of_order;
      s.problem("connection " + std::to_string(index) + ": reply " + std::to_string(seq) + " before " +
                std::to_string(c.outstanding.front().first));
      while (c.outstanding.front().first != seq) {  // overtaken: never answered in order
        ++report.lost;
        ++lost_;
        c.outstanding.pop_front();
      }
    }
    if (c.record.server_id == 0) {
      c.record.server_id = id;
    } else if (id != c.record.server_id) {
      ++report.malformed;
      s.problem("connection " + std::to_string(index) + ": its id changed from " + std::to_string(c.record.server_id) +
                " to " + std::to_string(id));
    }
    if (count != seq) {
      ++report.malformed;
      s.problem("connection " + std::to_string(index) + " (id " + std::to_string(id) + "): reply " + std::to_string(seq) +
                " says the module counted " + std::to_string(count) + " requests");
    }
    Clock::time_point since = c.outstanding.front().second;
    if (c.stalled_since) {
      since = std::min(since, *c.stalled_since);
      c.stalled_since.reset();
      ++reconnected_answered_;
    }
    const double stall_ms = ms_between(since, now);
    report.max_stall_ms = std::max(report.max_stall_ms, stall_ms);
    const auto stall_us = int64_t(stall_ms * 1000.0);
    for (int64_t seen = max_stall_us_.load(); stall_us > seen && !max_stall_us_.compare_exchange_weak(seen, stall_us);) {
    }
    c.outstanding.pop_front();
    c.record.answered = seq;
    ++c.record.answered_total;
    ++report.answered;
    ++report.replies_by_tag[tag];
    (tag == "v1" ? tag_v1_ : tag == "v2" ? tag_v2_ : tag_other_)++;
    ++answered_;
  };

  auto on_readable = [&](size_t index, Connection& c, Clock::time_point now) {
    char buffer[16384];
    for (;;) {
      const ssize_t n = ::recv(c.fd, buffer, sizeof buffer, MSG_DONTWAIT);
      if (n > 0) {
        c.input.append(buffer, size_t(n));
        size_t start = 0;
        for (size_t nl; (nl = c.input.find('\n', start)) != std::string::npos; start = nl + 1)
          on_reply(index, c, c.input.substr(start, nl - start), now);
        c.input.erase(0, start);
        if (c.input.size() > kMaxLineBytes) {
          ++report.malformed;
          s.problem("connection " + std::to_string(index) + ": a reply line over " + std::to_string(kMaxLineBytes) + " bytes");
          c.input.clear();
        }
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n < 0 && errno == EINTR) continue;
      drop(index, c, now, n == 0 ? "closed by the server" : errno_text(errno));
      return;
    }
  };

  for (;;) {
    Clock::time_point now = Clock::now();
    // Graceful closes asked for by the caller: from the first connection on.
    auto next_to_close = [&]() -> Connection* {
      while (s.close_cursor < s.connections.size() && s.connections[s.close_cursor].fd < 0) ++s.close_cursor;
      return s.close_cursor < s.connections.size() ? &s.connections[s.close_cursor++] : nullptr;
    };
    for (uint64_t wanted = close_requests_.load(); s.close_done_requests < wanted; ++s.close_done_requests)
      if (Connection* c = next_to_close()) c->closing = true;
    for (uint64_t wanted = abrupt_close_requests_.load(); s.abrupt_close_done_requests < wanted;
         ++s.abrupt_close_done_requests)
      if (Connection* c = next_to_close()) c->closing = c->closing_abruptly = true;
    for (size_t i = 0; i < s.close_cursor; ++i) {
      Connection& c = s.connections[i];
      if (c.closing && c.fd >= 0 && (c.closing_abruptly || (c.outstanding.empty() && c.output.empty()))) {
        c.record.closed_abruptly = c.closing_abruptly;
        c.record.unanswered_at_close = c.outstanding.size();
        c.outstanding.clear();
        close_socket(c);
        c.record.closed_by_client = true;
        ++closed_;
      }
    }

    const bool stopping = stopping_.load();
    if (stopping && !drain_deadline) drain_deadline = now + std::chrono::milliseconds(drain_ms_.load());
    if (stopping) {
      bool pending = false;
      // Outstanding replies, and graceful closes asked for and not made yet.
      for (const Connection& c : s.connections) pending = pending || (c.fd >= 0 && (!c.outstanding.empty() || c.closing));
      if (!pending || now >= *drain_deadline) break;
    }

    // Due sends and reconnects.
    while (!s.schedule.empty() && s.schedule.top().when <= now) {
      const Impl::Due due = s.schedule.top();
      s.schedule.pop();
      Connection& c = s.connections[due.index];
      if (due.reconnect) {
        if (c.fd < 0 && !c.record.dropped && !stopping) reconnect(due.index, c, now);
        continue;
      }
      if (c.record.closed_by_client || c.record.dropped) continue;  // its chain ends
      if (options_.interval.count() > 0) s.schedule.push({std::max(due.when + options_.interval, now), due.index, false});
      if (c.fd < 0 || c.connecting || c.closing || stopping) continue;
      if (c.outstanding.size() < options_.window)
        send_request(due.index, c, now);
      else
        ++report.skipped_sends;
    }

    int timeout_ms = 5;
    if (!s.schedule.empty()) {
      const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(s.schedule.top().when - now).count();
      timeout_ms = int(std::clamp<int64_t>(wait, 0, 5));
    }
    const int n = ::epoll_wait(s.epoll, events.data(), int(events.size()), timeout_ms);
    if (n < 0 && errno != EINTR) {
      s.problem("epoll_wait: " + errno_text(errno));
      break;
    }
    now = Clock::now();
    for (int e = 0; e < n; ++e) {
      const size_t index = size_t(events[size_t(e)].data.u64);
      Connection& c = s.connections[index];
      if (c.fd < 0) continue;
      const uint32_t what = events[size_t(e)].events;
      if (c.connecting) {
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {  // refused: try again shortly
          close_socket(c);
          s.schedule.push({now + kReconnectRetry, index, true});
          continue;
        }
        c.connecting = false;
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLRDHUP;
        ev.data.u64 = index;
        ::epoll_ctl(s.epoll, EPOLL_CTL_MOD, c.fd, &ev);
        connected(index, c, now);
        continue;
      }
      if ((what & EPOLLOUT) != 0 && !c.output.empty()) {
        const ssize_t w = ::send(c.fd, c.output.data(), c.output.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) c.output.erase(0, size_t(w));
        if (c.output.empty()) {
          epoll_event ev{};
          ev.events = EPOLLIN | EPOLLRDHUP;
          ev.data.u64 = index;
          ::epoll_ctl(s.epoll, EPOLL_CTL_MOD, c.fd, &ev);
        }
      }
      if ((what & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) on_readable(index, c, now);
      // With interval 0, a connection sends again as soon as its window allows.
      if (options_.interval.count() == 0 && c.fd >= 0 && !c.closing && !stopping_.load())
        while (c.outstanding.size() < options_.window) send_request(index, c, now);
    }
    announce_progress();
  }
  finished_ = true;
  announce_progress();
}

}  // namespace hotswap::test::handover
