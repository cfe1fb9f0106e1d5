#include "net/network_server.hpp"

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <malloc.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <deque>
#include <set>
#include <stdexcept>

#include "net/event_trace.hpp"
#include "net/framing.hpp"

namespace hotswap::host {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {
// A connection's buffers keep up to this much spare capacity between bursts;
// past it, an emptied buffer is given back to the heap.
constexpr size_t kRetainedBufferBytes = 64 * 1024;
// An output queue that held more frames than this is replaced by a fresh one
// once it drains (the deque's block map does not shrink on its own).
constexpr size_t kRetainedQueueFrames = 256;
}  // namespace

struct NetworkServer::Listener {
  ListenerConfig config;
  tcp::acceptor acceptor;
  tcp protocol = tcp::v4();  // of the listening address, given to the connections it accepts
  bool accepting = true;
  // Bumped whenever accepting stops: a wait or a retry armed before does nothing.
  uint64_t generation = 0;
  bool awaiting_start = false;  // green: opened or adopted, accepting from start_adopted()
  bool exported = false;        // blue: handed to green by the current pause
  bool accepted_before_pause = false;
  Listener(asio::io_context& io, ListenerConfig c) : config(std::move(c)), acceptor(io) {}
};

struct NetworkServer::Timer {
  hotswap_timer_id id;
  std::string module;
  uint64_t repeat_ms, tag;
  TimerSource::Duration due{};  // of the armed alarm (a handover carries the remaining time)
  std::unique_ptr<TimerSource::Alarm> alarm;
  Timer(hotswap_timer_id i, std::string m, uint64_t r, uint64_t t) : id(i), module(std::move(m)), repeat_ms(r), tag(t) {}
};

struct NetworkServer::Tick {
  std::string module;
  TimerSource::Duration period;
  TimerSource::Duration next{};
  std::unique_ptr<TimerSource::Alarm> alarm;
  Tick(std::string m, TimerSource::Duration p) : module(std::move(m)), period(p) {}
};

// One client connection. Reads frames and hands them to the owning module;
// writes whatever the module sends, through a bounded queue.
//
// I/O is readiness-based: the loop waits for the socket to become readable or
// writable (async_wait) and then reads or writes with non-blocking calls of its
// own. So no byte is ever inside an Asio operation: a pause (blue-green
// handover) cancels the waits and every byte read and not delivered is in
// input_, every byte not written is in output_ (from front_offset_ on). The
// reactor is edge-triggered, so a wait is armed only after a call that
// returned EAGAIN; starting or resuming always tries the call first.
class NetworkServer::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(NetworkServer& server, tcp::socket socket, hotswap_conn_id id, std::shared_ptr<Listener> listener)
      : server_(server), socket_(std::move(socket)), id_(id), listener_(std::move(listener)) {}

  hotswap_conn_id id() const { return id_; }
  const std::string& module() const { return listener_->config.module; }
  const std::string& listener_name() const { return listener_->config.name; }
  const std::shared_ptr<Listener>& listener() const { return listener_; }
  // Neither closing nor closed: it still takes messages.
  bool open() const { return !closing_ && !finished_; }
  bool paused() const { return paused_; }
  // Adopted from blue and not started yet (start_adopted()).
  bool awaiting_start() const { return awaiting_start_; }

  void start() {
    boost::system::error_code ec;
    auto peer = socket_.remote_endpoint(ec);
    peer_ = ec ? "unknown" : peer.address().to_string() + ":" + std::to_string(peer.port());
    socket_.set_option(tcp::no_delay(true), ec);
    socket_.non_blocking(true, ec);
    last_message_ = server_.timer_source_->now();  // a handover carries the idle time from here
    if (server_.trace_) server_.trace_->connect(module(), id_, listener_->config.name, peer_);
    if (ModuleSlot* slot = server_.registry_.find(module()))
      server_.registry_.deliver_connect(*slot, id_, listener_->config.name, peer_);
    if (listener_->config.idle_timeout.count() > 0 && !closing_)
      arm_idle_alarm(last_message_ + listener_->config.idle_timeout);
    read_ready();
  }

  // Green: a connection blue handed over, neither read nor written until start_adopted().
  void adopt(ConnectionHandover&& from) {
    boost::system::error_code ec;
    socket_.set_option(tcp::no_delay(true), ec);
    socket_.non_blocking(true, ec);
    peer_ = std::move(from.peer);
    input_ = std::move(from.unread_input);
    adopted_idle_ms_ = from.idle_ms;
    if (!from.unsent_output.empty()) {
      output_bytes_ = from.unsent_output.size();
      server_.output_queued(output_bytes_);
      output_.push_back(std::move(from.unsent_output));
    }
    closing_ = from.close_after_output;
    if (closing_) reason_ = HOTSWAP_DISCONNECT_CLOSED_BY_MODULE;
    awaiting_start_ = true;
    paused_ = true;
  }

  // Green, on commit: no on_connect (the module knows the connection from
  // blue); the complete frames blue read are delivered first, then the output
  // is written and reading starts.
  void start_adopted() {
    awaiting_start_ = false;
    paused_ = false;
    if (listener_->config.idle_timeout.count() > 0 && !closing_) {
      last_message_ = server_.timer_source_->now() - std::chrono::milliseconds(adopted_idle_ms_);
      arm_idle_alarm(last_message_ + listener_->config.idle_timeout);
    }
    auto self = shared_from_this();
    if (!closing_ && !input_.empty()) {
      const uint64_t frames_before = server_.stats_.frames_in;
      if (!deliver_frames()) return;
      if (server_.stats_.frames_in != frames_before) last_message_ = server_.timer_source_->now();
    }
    if (closing_) {
      // Closing gracefully: blue already shut its receive side down.
      if (output_.empty()) return finish();
      return write_ready();
    }
    write_ready();
    if (!finished_) read_ready();
  }

  // Blue: stops reading and writing at once. Late wait handlers see the new
  // generation and touch nothing; nothing is closed.
  void pause() {
    if (paused_ || finished_) return;
    paused_ = true;
    ++generation_;
    read_waiting_ = false;
    write_waiting_ = false;
    boost::system::error_code ec;
    socket_.cancel(ec);
    paused_at_ = server_.timer_source_->now();
    idle_alarm_.reset();
  }

  // Blue, the handover failed: as if the pause had not happened (its time
  // does not count against the idle timeout).
  void resume() {
    if (!paused_ || finished_) return;
    paused_ = false;
    if (listener_->config.idle_timeout.count() > 0) {
      last_message_ += server_.timer_source_->now() - paused_at_;
      if (!closing_) arm_idle_alarm(last_message_ + listener_->config.idle_timeout);
    }
    if (closing_) {
      boost::system::error_code ec;
      socket_.shutdown(tcp::socket::shutdown_receive, ec);  // a close_gracefully deferred by the pause
      if (output_.empty()) return finish();
    }
    write_ready();
    if (!finished_) read_ready();
  }

  // What a handover carries of this connection (paused).
  ConnectionHandover exported() {
    ConnectionHandover out;
    out.id = id_;
    out.listener = listener_->config.name;
    out.peer = peer_;
    out.unread_input = input_;
    out.unsent_output.reserve(output_bytes_);
    for (size_t i = 0; i < output_.size(); ++i) {
      if (i == 0)
        out.unsent_output.append(output_.front(), front_offset_, std::string::npos);
      else
        out.unsent_output += output_[i];
    }
    const TimerSource::Duration idle = paused_at_ - last_message_;
    out.idle_ms = idle.count() > 0 ? uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(idle).count()) : 0;
    out.close_after_output = closing_;
    out.fd = socket_.native_handle();
    return out;
  }

  // Blue, green committed: the socket is green's now. Closed with close(2)
  // only, no shutdown(2), no disconnect event.
  void release() {
    if (finished_) return;
    finished_ = true;
    ++generation_;
    boost::system::error_code ec;
    socket_.close(ec);
    idle_alarm_.reset();
    std::deque<std::string>().swap(output_);
    server_.output_released(output_bytes_);
    output_bytes_ = 0;
  }

  size_t output_bytes() const { return output_bytes_; }
  size_t buffer_capacity() const {
    size_t total = input_.capacity();
    for (const std::string& frame : output_) total += frame.capacity();
    return total;
  }

  hotswap_status send(std::string_view message) {
    if (closing_ || finished_) return HOTSWAP_NOT_FOUND;
    std::string frame;
    if (!append_frame(listener_->config.framing, message, frame)) return HOTSWAP_BAD_ARGUMENT;
    if (output_bytes_ + frame.size() > server_.limits_.max_output_bytes) {
      ++server_.stats_.slow_readers;
      spdlog::warn("connection {}: closed, output queue over {} bytes (the client does not read)", id_,
                   server_.limits_.max_output_bytes);
      abort(HOTSWAP_DISCONNECT_SLOW_READER);
      return HOTSWAP_LIMIT;
    }
    if (!server_.make_room_for_output(frame.size(), *this)) return HOTSWAP_LIMIT;
    output_bytes_ += frame.size();
    server_.output_queued(frame.size());
    output_.push_back(std::move(frame));
    queue_peak_frames_ = std::max(queue_peak_frames_, output_.size());
    ++server_.stats_.frames_out;
    // While this connection delivers its frames, the replies gather and are
    // written together afterwards (one gather write per read).
    if (!delivering_) write_ready();
    return HOTSWAP_OK;
  }

  // Stop reading; close once the pending output is written.
  void close_gracefully(hotswap_disconnect_reason reason) {
    if (closing_ || finished_) return;
    closing_ = true;
    reason_ = reason;
    // Paused (a handover): the socket may be green's too; resume() shuts down
    // the receive side if blue keeps it.
    if (paused_) return;
    boost::system::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_receive, ec);
    if (output_.empty() && !delivering_) finish();
  }

  // Close now, dropping pending output.
  void abort(hotswap_disconnect_reason reason) {
    if (finished_) return;
    closing_ = true;
    reason_ = reason;
    finish();
  }

 private:
  // Reads what the socket holds, a bounded amount per turn so that one busy
  // connection cannot starve the loop, and waits on EAGAIN.
  void read_ready() {
    constexpr int kReadsPerTurn = 4;
    for (int reads = 0; reads < kReadsPerTurn; ++reads) {
      if (closing_ || paused_ || finished_ || read_waiting_) return;
      boost::system::error_code ec;
      std::vector<char>& chunk = server_.read_buffer_;
      const size_t n = socket_.read_some(asio::buffer(chunk), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) return wait_readable();
      if (ec == asio::error::interrupted) continue;
      if (ec) return abort(ec == asio::error::eof ? HOTSWAP_DISCONNECT_PEER_CLOSED : HOTSWAP_DISCONNECT_IO_ERROR);
      input_.append(chunk.data(), n);
      // Only this connection's frames are counted while it delivers (one loop thread).
      const uint64_t frames_before = server_.stats_.frames_in;
      if (!deliver_frames()) return;
      if (server_.stats_.frames_in != frames_before) last_message_ = server_.timer_source_->now();
      if (input_.capacity() > kRetainedBufferBytes && input_.size() < kRetainedBufferBytes / 2) input_.shrink_to_fit();
    }
    if (closing_ || paused_ || finished_) return;
    auto self = shared_from_this();
    asio::post(server_.io_, [this, self, generation = generation_] {
      if (finished_ || generation != generation_) return;
      read_ready();
    });
  }

  void wait_readable() {
    read_waiting_ = true;
    auto self = shared_from_this();
    socket_.async_wait(tcp::socket::wait_read, [this, self, generation = generation_](boost::system::error_code ec) {
      if (finished_ || generation != generation_) return;
      read_waiting_ = false;
      if (ec) {
        if (!closing_) abort(HOTSWAP_DISCONNECT_IO_ERROR);
        return;
      }
      read_ready();
    });
  }

  // Hands every complete frame in input_ to the module, then writes the
  // replies gathered meanwhile. False when the connection was closed
  // (protocol error, or the module closed it).
  bool deliver_frames() {
    ModuleSlot* slot = server_.registry_.find(module());
    const ListenerConfig& cfg = listener_->config;
    FrameScanner scanner{cfg.framing, cfg.max_frame_bytes, scan_from_};
    size_t start = 0;
    delivering_ = true;
    while (!closing_) {
      const FrameCut cut = scanner.next(input_, start);
      if (cut.kind == FrameCut::Kind::Error) {
        delivering_ = false;
        return protocol_error(cut.error);
      }
      if (cut.kind == FrameCut::Kind::Incomplete) break;
      ++server_.stats_.frames_in;
      if (server_.trace_) server_.trace_->message(module(), id_, cut.frame);
      if (slot != nullptr) server_.registry_.deliver_message(*slot, id_, cut.frame);
      start = cut.next;
    }
    delivering_ = false;
    if (finished_) return false;
    input_.erase(0, start);
    scanner.consumed(start);
    scan_from_ = scanner.scan_from;
    write_ready();  // also finishes a connection the module closed once its output is out
    return !closing_ && !finished_;
  }

  bool protocol_error(const std::string& what) {
    ++server_.stats_.protocol_errors;
    spdlog::warn("connection {} on listener {}: {}; closing this connection", id_, listener_->config.name, what);
    abort(HOTSWAP_DISCONNECT_PROTOCOL_ERROR);
    return false;
  }

  // Slowloris defence: closes the connection when no message completed within
  // the listener's idle timeout. One alarm per connection, re-armed lazily
  // from the last message's time rather than on every message.
  void arm_idle_alarm(TimerSource::Duration due) {
    idle_alarm_ = server_.timer_source_->schedule(due, [this, weak = weak_from_this()] {
      std::shared_ptr<Connection> self = weak.lock();
      if (!self || closing_ || finished_ || paused_) return;
      const TimerSource::Duration deadline = last_message_ + listener_->config.idle_timeout;
      if (server_.timer_source_->now() < deadline) return arm_idle_alarm(deadline);
      ++server_.stats_.idle_timeouts;
      spdlog::warn("connection {} on listener {}: closed, no complete message for {} s", id_, listener_->config.name,
                   listener_->config.idle_timeout.count());
      abort(HOTSWAP_DISCONNECT_IO_ERROR);
    });
  }

  // Writes the queue with non-blocking gather writes (up to 64 frames each),
  // until it is empty or the socket takes no more (then waits to be writable).
  void write_ready() {
    while (!finished_ && !paused_ && !write_waiting_ && !output_.empty()) {
      buffers_.clear();
      const size_t frames = std::min<size_t>(output_.size(), 64);
      buffers_.push_back(asio::buffer(output_.front()) + front_offset_);
      for (size_t i = 1; i < frames; ++i) buffers_.push_back(asio::buffer(output_[i]));
      boost::system::error_code ec;
      size_t written = socket_.write_some(buffers_, ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) return wait_writable();
      if (ec == asio::error::interrupted) continue;
      if (ec) return abort(HOTSWAP_DISCONNECT_IO_ERROR);
      output_bytes_ -= written;
      server_.output_released(written);
      while (written > 0) {
        const size_t left_in_front = output_.front().size() - front_offset_;
        if (written < left_in_front) {
          front_offset_ += written;
          break;
        }
        written -= left_in_front;
        front_offset_ = 0;
        output_.pop_front();
      }
    }
    if (!output_.empty() || finished_) return;
    if (queue_peak_frames_ > kRetainedQueueFrames) {
      std::deque<std::string>().swap(output_);
      queue_peak_frames_ = 0;
    }
    if (closing_ && !paused_ && !delivering_) finish();
  }

  void wait_writable() {
    write_waiting_ = true;
    auto self = shared_from_this();
    socket_.async_wait(tcp::socket::wait_write, [this, self, generation = generation_](boost::system::error_code ec) {
      if (finished_ || generation != generation_) return;
      write_waiting_ = false;
      if (ec) return abort(HOTSWAP_DISCONNECT_IO_ERROR);
      write_ready();
    });
  }

  void finish() {
    if (finished_) return;
    finished_ = true;
    ++generation_;
    boost::system::error_code ec;
    // Paused for a handover, green may hold the same socket: close(2) only.
    if (!paused_) socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
    idle_alarm_.reset();
    std::deque<std::string>().swap(output_);
    front_offset_ = 0;
    const size_t dropped = output_bytes_;
    output_bytes_ = 0;
    server_.output_released(dropped);
    server_.connection_closed(id_, reason_, module());
  }

  NetworkServer& server_;
  tcp::socket socket_;
  hotswap_conn_id id_;
  std::shared_ptr<Listener> listener_;
  std::string peer_;
  std::string input_;
  size_t scan_from_ = 0;
  std::deque<std::string> output_;
  size_t front_offset_ = 0;  // bytes of output_.front() already written
  std::vector<asio::const_buffer> buffers_;
  size_t output_bytes_ = 0;       // unsent: output_ minus front_offset_
  size_t queue_peak_frames_ = 0;  // the most frames output_ held since it was last replaced
  TimerSource::Duration last_message_{};
  TimerSource::Duration paused_at_{};
  uint64_t adopted_idle_ms_ = 0;
  std::unique_ptr<TimerSource::Alarm> idle_alarm_;
  // Bumped by pause and finish: a wait handler from before does nothing.
  uint64_t generation_ = 0;
  bool read_waiting_ = false;
  bool write_waiting_ = false;
  bool delivering_ = false;
  bool paused_ = false;
  bool awaiting_start_ = false;
  bool closing_ = false;
  bool finished_ = false;
  hotswap_disconnect_reason reason_ = HOTSWAP_DISCONNECT_PEER_CLOSED;
};

NetworkServer::NetworkServer(asio::io_context& io, ModuleRegistry& registry)
    : io_(io), registry_(registry), timer_source_(std::make_shared<AsioTimerSource>(io)) {}

void NetworkServer::set_timer_source(std::shared_ptr<TimerSource> source) {
  if (!timers_.empty() || !ticks_.empty() || !connections_.empty())
    throw std::logic_error("the timer source cannot change while timers or ticks are armed or connections are open");
  timer_source_ = std::move(source);
}

NetworkServer::~NetworkServer() {
  for (auto& l : listeners_) {
    boost::system::error_code ec;
    l->acceptor.close(ec);
  }
  auto connections = std::move(connections_);
  for (auto& [id, c] : connections) c->abort(HOTSWAP_DISCONNECT_SHUTDOWN);
}

uint16_t NetworkServer::listen(const ListenerConfig& config, bool accept_now) {
  auto listener = std::make_shared<Listener>(io_, config);
  boost::system::error_code ec;
  auto address = asio::ip::make_address(config.address, ec);
  if (ec) throw std::runtime_error("listener " + config.name + ": invalid address '" + config.address + "'");
  tcp::endpoint endpoint(address, config.port);
  listener->protocol = endpoint.protocol();
  // Close-on-exec from the start: anything the host execs (a handover's new
  // process, a helper) must not inherit a listener by accident.
  int fd = ::socket(endpoint.protocol().family(), SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
  if (fd < 0)
    ec.assign(errno, boost::system::system_category());
  else if (listener->acceptor.assign(endpoint.protocol(), fd, ec); ec)
    ::close(fd);  // not adopted, so still ours
  if (!ec) listener->acceptor.non_blocking(true, ec);
  if (!ec) listener->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) listener->acceptor.bind(endpoint, ec);
  if (!ec) listener->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw std::runtime_error("listener " + config.name + ": cannot listen on " + config.address + ":" +
                             std::to_string(config.port) + ": " + ec.message());
  listener->config.port = listener->acceptor.local_endpoint().port();
  listeners_.push_back(listener);
  spdlog::info("listener {} on {}:{} ({} framing) for module {}", config.name, config.address, listener->config.port,
               config.framing == Framing::Line ? "line" : "length-prefixed", config.module);
  if (accept_now) {
    accept_next(listener);
  } else {
    listener->accepting = false;
    listener->awaiting_start = true;
  }
  return listener->config.port;
}

// Asio's accept cannot ask for SOCK_CLOEXEC, so the loop waits for the
// listener to be readable and accepts with accept4 itself.
void NetworkServer::accept_next(const std::shared_ptr<Listener>& listener) {
  if (!listener->accepting) return;
  listener->acceptor.async_wait(
      tcp::acceptor::wait_read, [this, listener, generation = listener->generation](boost::system::error_code ec) {
        if (!listener->accepting || generation != listener->generation) return;
        if (ec) {
          if (ec == asio::error::operation_aborted) return;
          spdlog::warn("listener {}: waiting for connections failed: {}", listener->config.name, ec.message());
          return retry_accept_later(listener);
        }
        accept_then_wait(listener);
      });
}

void NetworkServer::accept_then_wait(const std::shared_ptr<Listener>& listener) {
  if (!listener->accepting) return;
  if (accept_ready(listener)) return accept_next(listener);
  retry_accept_later(listener);
}

// Out of descriptors (or another resource): accepting again at once would
// spin on the same error; pending clients wait in the backlog meanwhile. The
// retry accepts before it waits: the reactor is edge-triggered, and the
// clients already queued raise no new event.
void NetworkServer::retry_accept_later(const std::shared_ptr<Listener>& listener) {
  auto retry = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(100));
  retry->async_wait([this, listener, retry, generation = listener->generation](boost::system::error_code) {
    if (generation != listener->generation) return;
    accept_then_wait(listener);
  });
}

// Accepting again after a pause, or for the first time on a listener that was
// not: connections that queued meanwhile raise no new readiness event, so the
// backlog is taken first (posted: no module is called from inside the caller).
void NetworkServer::start_accepting(const std::shared_ptr<Listener>& listener) {
  listener->accepting = true;
  listener->awaiting_start = false;
  ++listener->generation;
  asio::post(io_, [this, listener, generation = listener->generation] {
    if (generation != listener->generation) return;
    accept_then_wait(listener);
  });
}

bool NetworkServer::accept_ready(const std::shared_ptr<Listener>& listener) {
  // Bounded, so that one busy listener cannot starve the rest of the loop.
  for (int accepted = 0; accepted < 64 && listener->accepting; ++accepted) {
    int fd = ::accept4(listener->acceptor.native_handle(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      int error = errno;
      if (error == EAGAIN || error == EWOULDBLOCK) return true;
      // The connection died in the backlog, or a network error that accept(2)
      // says to treat like EAGAIN: move on to the next one.
      if (error == EINTR || error == ECONNABORTED || error == EPROTO || error == ENETDOWN || error == ENOPROTOOPT ||
          error == EHOSTDOWN || error == ENONET || error == EHOSTUNREACH || error == EOPNOTSUPP ||
          error == ENETUNREACH)
        continue;
      spdlog::warn("listener {}: accept failed: {}", listener->config.name,
                   boost::system::error_code(error, boost::system::system_category()).message());
      return false;
    }
    tcp::socket socket(io_);
    boost::system::error_code ec;
    socket.assign(listener->protocol, fd, ec);
    if (ec) {
      ::close(fd);
      spdlog::warn("listener {}: cannot adopt an accepted connection: {}", listener->config.name, ec.message());
      continue;
    }
    hotswap_conn_id id = next_conn_id_++;
    auto connection = std::make_shared<Connection>(*this, std::move(socket), id, listener);
    connections_.emplace(id, connection);
    ++stats_.accepted;
    connection->start();
  }
  return true;
}

void NetworkServer::stop_accepting() {
  for (auto& l : listeners_) {
    l->accepting = false;
    l->awaiting_start = false;
    ++l->generation;
    boost::system::error_code ec;
    l->acceptor.close(ec);
  }
}

std::vector<ListenerStatus> NetworkServer::listeners() const {
  std::vector<ListenerStatus> out;
  for (const auto& l : listeners_) out.push_back({l->config.name, l->config.module, l->config.address, l->config.port});
  return out;
}

size_t NetworkServer::buffer_capacity() const {
  size_t total = 0;
  for (const auto& [id, c] : connections_) total += c->buffer_capacity();
  return total;
}

void NetworkServer::output_queued(size_t bytes) {
  total_output_bytes_ += bytes;
  output_peak_since_trim_ = std::max(output_peak_since_trim_, total_output_bytes_);
  stats_.peak_output_bytes = std::max(stats_.peak_output_bytes, total_output_bytes_);
}

void NetworkServer::output_released(size_t bytes) {
  total_output_bytes_ -= bytes;
  if (output_peak_since_trim_ < limits_.trim_after_peak_bytes || total_output_bytes_ > output_peak_since_trim_ / 8 ||
      trim_posted_)
    return;
  // glibc keeps freed memory for reuse (the host raises its trim threshold for
  // short pauses), so after a large peak the process would stay at its peak
  // size. Posted: this may run inside a module's send, and trimming a large
  // heap takes a moment.
  trim_posted_ = true;
  asio::post(io_, [this] {
    trim_posted_ = false;
    ::malloc_trim(0);
    ++stats_.memory_trims;
    output_peak_since_trim_ = total_output_bytes_;
    spdlog::debug("unsent output drained after a peak; freed heap memory returned to the system");
  });
}

bool NetworkServer::make_room_for_output(size_t bytes, const Connection& sender) {
  while (total_output_bytes_ + bytes > limits_.max_total_output_bytes) {
    std::shared_ptr<Connection> largest;
    for (const auto& [id, c] : connections_)
      if (!largest || c->output_bytes() > largest->output_bytes()) largest = c;
    // Nothing else to close (the frame alone is over the budget): the sender goes.
    if (!largest || largest->output_bytes() == 0) {
      const auto it = connections_.find(sender.id());
      if (it == connections_.end()) return false;
      largest = it->second;
    }
    ++stats_.output_budget_closes;
    spdlog::warn(
        "connection {}: closed, holding {} unsent bytes when the host's unsent output reached its budget of {} bytes "
        "(max_total_output_bytes)",
        largest->id(), largest->output_bytes(), limits_.max_total_output_bytes);
    largest->abort(HOTSWAP_DISCONNECT_SLOW_READER);
    if (largest.get() == &sender) return false;
  }
  return true;
}

bool NetworkServer::module_owns_listener(const std::string& module) const {
  for (const auto& l : listeners_)
    if (l->config.module == module) return true;
  return false;
}

void NetworkServer::connection_closed(hotswap_conn_id id, hotswap_disconnect_reason reason, const std::string& module) {
  if (connections_.erase(id) == 0) return;
  ++stats_.closed;
  // Posted, not called: the close may come from inside one of the module's own
  // callbacks (it called close, or its send overflowed the queue), and modules
  // are never called back re-entrantly.
  asio::post(io_, [this, id, reason, module] {
    if (trace_) trace_->disconnect(module, id, reason);
    if (ModuleSlot* slot = registry_.find(module)) registry_.deliver_disconnect(*slot, id, reason);
  });
  if (shutting_down_ && connections_.empty() && on_all_closed_) {
    auto done = std::move(on_all_closed_);
    on_all_closed_ = nullptr;
    if (shutdown_timer_) shutdown_timer_->cancel();
    asio::post(io_, std::move(done));
  }
}

hotswap_status NetworkServer::send(std::string_view module, hotswap_conn_id conn, std::string_view message) {
  auto it = connections_.find(conn);
  if (it == connections_.end() || it->second->module() != module) return HOTSWAP_NOT_FOUND;
  auto keep = it->second;  // send may close it (slow reader)
  return keep->send(message);
}

bool NetworkServer::list_connections(std::string_view module, const char* listener, std::vector<ConnectionRef>& out) {
  out.clear();
  if (listener != nullptr) {
    const bool known = std::any_of(listeners_.begin(), listeners_.end(), [&](const std::shared_ptr<Listener>& l) {
      return l->config.module == module && l->config.name == listener;
    });
    if (!known) return false;
  }
  for (const auto& [id, connection] : connections_) {  // ordered by id
    if (connection->module() != module || !connection->open()) continue;
    if (listener != nullptr && connection->listener_name() != listener) continue;
    out.push_back({id, connection->listener_name().c_str()});
  }
  return true;
}

hotswap_status NetworkServer::close(std::string_view module, hotswap_conn_id conn, std::string_view reason) {
  auto it = connections_.find(conn);
  if (it == connections_.end() || it->second->module() != module) return HOTSWAP_NOT_FOUND;
  spdlog::debug("connection {}: closed by module {}: {}", conn, it->second->module(), reason);
  auto keep = it->second;
  keep->close_gracefully(HOTSWAP_DISCONNECT_CLOSED_BY_MODULE);
  return HOTSWAP_OK;
}

void NetworkServer::schedule_timer(ModuleSlot& owner, hotswap_timer_id id, uint64_t delay_ms, uint64_t repeat_ms,
                                   uint64_t tag) {
  auto timer = std::make_shared<Timer>(id, owner.name(), repeat_ms, tag);
  timers_[id] = timer;
  arm_timer(timer, delay_ms);
}

void NetworkServer::arm_timer(const std::shared_ptr<Timer>& timer, uint64_t delay_ms) {
  TimerSource::Duration due = timer_source_->now() + std::chrono::milliseconds(delay_ms);
  timer->due = due;
  // Weak: a cancelled timer is erased from timers_ and must not be kept alive by its own alarm.
  timer->alarm = timer_source_->schedule(due, [this, weak = std::weak_ptr<Timer>(timer)] {
    std::shared_ptr<Timer> timer = weak.lock();
    if (!timer) return;
    auto it = timers_.find(timer->id);
    if (it == timers_.end() || it->second != timer) return;
    bool last = timer->repeat_ms == 0;
    if (last) timers_.erase(it);
    ModuleSlot* slot = registry_.find(timer->module);
    if (slot == nullptr) {
      timers_.erase(timer->id);
      return;
    }
    if (trace_) trace_->timer(timer->module, timer->id, timer->tag, last);
    registry_.deliver_timer(*slot, timer->id, timer->tag, last);
    auto still = timers_.find(timer->id);
    if (!last && still != timers_.end() && still->second == timer) arm_timer(timer, timer->repeat_ms);
  });
}

bool NetworkServer::cancel_timer(hotswap_timer_id id) {
  auto it = timers_.find(id);
  if (it == timers_.end()) return false;
  it->second->alarm.reset();
  timers_.erase(it);
  return true;
}

void NetworkServer::set_tick_rate(const std::string& module, double hz) {
  auto it = ticks_.find(module);
  if (it != ticks_.end()) {
    it->second->alarm.reset();
    ticks_.erase(it);
  }
  if (hz <= 0) return;
  auto period = std::chrono::duration_cast<TimerSource::Duration>(std::chrono::duration<double>(1.0 / hz));
  auto tick = std::make_shared<Tick>(module, period);
  tick->next = timer_source_->now() + period;
  ticks_[module] = tick;
  arm_tick(tick);
}

void NetworkServer::arm_tick(const std::shared_ptr<Tick>& tick) {
  tick->alarm = timer_source_->schedule(tick->next, [this, weak = std::weak_ptr<Tick>(tick)] {
    std::shared_ptr<Tick> tick = weak.lock();
    if (!tick) return;
    auto it = ticks_.find(tick->module);
    if (it == ticks_.end() || it->second != tick) return;
    if (ModuleSlot* slot = registry_.find(tick->module)) {
      if (trace_) trace_->tick(tick->module);
      registry_.deliver_tick(*slot);
    }
    // The delivery may have reached code that changed or stopped this tick.
    it = ticks_.find(tick->module);
    if (it == ticks_.end() || it->second != tick) return;
    // Fixed rate: the next tick is due one period after the previous one was due,
    // unless we fell far behind (then skip ahead rather than burst).
    auto now = timer_source_->now();
    tick->next += tick->period;
    if (tick->next + 10 * tick->period < now) tick->next = now + tick->period;
    arm_tick(tick);
  });
}

void NetworkServer::shutdown(std::chrono::milliseconds timeout, std::function<void()> done) {
  shutting_down_ = true;
  stop_accepting();
  ticks_.clear();  // their alarms are cancelled as they go
  timers_.clear();
  if (connections_.empty()) {
    asio::post(io_, std::move(done));
    return;
  }
  on_all_closed_ = std::move(done);
  shutdown_timer_ = std::make_unique<asio::steady_timer>(io_, timeout);
  shutdown_timer_->async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    spdlog::warn("shutdown: {} connection(s) still had output after the timeout; closing them", connections_.size());
    auto remaining = connections_;
    for (auto& [id, c] : remaining) c->abort(HOTSWAP_DISCONNECT_SHUTDOWN);
  });
  auto all = connections_;
  for (auto& [id, c] : all) c->close_gracefully(HOTSWAP_DISCONNECT_SHUTDOWN);
}

// ---- blue-green handover ----------------------------------------------------

NetworkServer::HandoverExport NetworkServer::pause_for_handover() {
  std::set<std::string> every_listener;
  for (const auto& l : listeners_) every_listener.insert(l->config.name);
  return pause_for_handover(every_listener);
}

NetworkServer::HandoverExport NetworkServer::pause_for_handover(const std::set<std::string>& moving_listeners) {
  if (handover_paused_) throw std::logic_error("the network server is already paused for a handover");
  handover_paused_ = true;
  HandoverExport out;
  for (auto& l : listeners_) {
    // Not closed: the backlog stays in the kernel, for green (or for blue again).
    l->accepted_before_pause = l->accepting;
    l->accepting = false;
    ++l->generation;
    boost::system::error_code ec;
    l->acceptor.cancel(ec);
    l->exported = moving_listeners.count(l->config.name) != 0;
    if (l->exported)
      out.listeners.push_back({l->config.name, l->config.address, l->config.port, l->acceptor.native_handle()});
  }
  for (auto& [id, connection] : connections_) {
    connection->pause();
    if (connection->listener()->exported) out.connections.push_back(connection->exported());
  }
  out.next_conn_id = next_conn_id_;
  return out;
}

void NetworkServer::resume_after_handover() {
  if (!handover_paused_) return;
  handover_paused_ = false;
  for (auto& l : listeners_) {
    l->exported = false;
    if (l->accepted_before_pause && l->acceptor.is_open()) start_accepting(l);
  }
  auto connections = connections_;  // resuming may close one (its peer left meanwhile)
  for (auto& [id, connection] : connections) connection->resume();
}

void NetworkServer::release_after_handover() {
  if (!handover_paused_) throw std::logic_error("release_after_handover without pause_for_handover");
  handover_paused_ = false;
  auto connections = connections_;
  for (auto& [id, connection] : connections) {
    if (connection->listener()->exported) {
      connection->release();
      connections_.erase(id);
    }
  }
  std::vector<std::shared_ptr<Listener>> kept;
  for (auto& l : listeners_) {
    if (!l->exported) {
      kept.push_back(l);
      continue;
    }
    // Asio's close takes the descriptor out of the reactor (EPOLL_CTL_DEL: an
    // assigned descriptor may be a dup, as green's copy is) and close(2)s it:
    // no shutdown(2).
    boost::system::error_code ec;
    l->acceptor.close(ec);
  }
  listeners_ = std::move(kept);
  // What stays with blue (listeners the target removed) serves on until the
  // caller's graceful stop; those listeners do not accept again.
  // A copy: resuming may close one (a peer that hung up meanwhile).
  const auto staying = connections_;
  for (auto& [id, connection] : staying) connection->resume();
  timers_.clear();  // their alarms are cancelled as they go
  ticks_.clear();
}

std::vector<TimerHandover> NetworkServer::timers_of(const std::string& module) const {
  std::vector<TimerHandover> out;
  const TimerSource::Duration now = timer_source_->now();
  for (const auto& [id, timer] : timers_) {
    if (timer->module != module) continue;
    const TimerSource::Duration left = timer->due > now ? timer->due - now : TimerSource::Duration{};
    // Rounded up: a timer must never fire before its time.
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    out.push_back({id, static_cast<uint64_t>(ms), timer->repeat_ms, timer->tag});
  }
  return out;
}

namespace {
// Why `fd` cannot be a listener to adopt, or empty when it can.
std::string not_a_tcp_listener(int fd, int& family) {
  int value = 0;
  socklen_t length = sizeof value;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &value, &length) != 0)
    return std::string("not a socket (") + std::strerror(errno) + ")";
  if (value != SOCK_STREAM) return "not a stream socket";
  length = sizeof value;
  if (::getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &value, &length) != 0 || value != IPPROTO_TCP) return "not TCP";
  length = sizeof value;
  if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &value, &length) != 0 || value == 0) return "not listening";
  sockaddr_storage address{};
  length = sizeof address;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) return "without a local address";
  family = address.ss_family;
  if (family != AF_INET && family != AF_INET6) return "neither IPv4 nor IPv6";
  return {};
}
}  // namespace

void NetworkServer::adopt_listener(const ListenerConfig& config, os::Fd fd) {
  for (const auto& l : listeners_)
    if (l->config.name == config.name)
      throw std::runtime_error("listener " + config.name + ": a listener of that name is already open");
  int family = AF_INET;
  const std::string wrong = not_a_tcp_listener(fd.get(), family);
  if (!wrong.empty())
    throw std::runtime_error("listener " + config.name + ": the descriptor handed over (fd " +
                             std::to_string(fd.get()) + ") is " + wrong + ", not a listening TCP socket");
  auto listener = std::make_shared<Listener>(io_, config);
  listener->protocol = family == AF_INET6 ? tcp::v6() : tcp::v4();
  boost::system::error_code ec;
  listener->acceptor.assign(listener->protocol, fd.get(), ec);
  if (ec) throw std::runtime_error("listener " + config.name + ": cannot adopt its descriptor: " + ec.message());
  fd.release();  // the acceptor owns it now
  listener->acceptor.non_blocking(true, ec);
  const tcp::endpoint local = listener->acceptor.local_endpoint(ec);
  if (!ec) listener->config.port = local.port();
  listener->accepting = false;
  listener->awaiting_start = true;
  listeners_.push_back(listener);
  spdlog::info("listener {} on {}:{} adopted for module {} (accepting from commit)", config.name, config.address,
               listener->config.port, config.module);
}

void NetworkServer::adopt_connection(ConnectionHandover connection, os::Fd fd) {
  std::shared_ptr<Listener> listener;
  for (const auto& l : listeners_)
    if (l->config.name == connection.listener) listener = l;
  if (!listener)
    throw std::runtime_error("connection " + std::to_string(connection.id) + ": no listener named '" +
                             connection.listener + "' to adopt it on");
  if (connection.id == 0 || connections_.count(connection.id) != 0)
    throw std::runtime_error("connection " + std::to_string(connection.id) + ": that id is " +
                             (connection.id == 0 ? "not a connection id" : "already in use"));
  int type = 0;
  socklen_t length = sizeof type;
  if (::getsockopt(fd.get(), SOL_SOCKET, SO_TYPE, &type, &length) != 0 || type != SOCK_STREAM)
    throw std::runtime_error("connection " + std::to_string(connection.id) + ": the descriptor handed over (fd " +
                             std::to_string(fd.get()) + ") is not a stream socket");
  tcp::socket socket(io_);
  boost::system::error_code ec;
  socket.assign(listener->protocol, fd.get(), ec);
  if (ec)
    throw std::runtime_error("connection " + std::to_string(connection.id) +
                             ": cannot adopt its descriptor: " + ec.message());
  fd.release();  // the socket owns it now
  const hotswap_conn_id id = connection.id;
  auto adopted = std::make_shared<Connection>(*this, std::move(socket), id, listener);
  adopted->adopt(std::move(connection));
  connections_.emplace(id, adopted);
  next_conn_id_ = std::max(next_conn_id_, id + 1);
}

void NetworkServer::set_next_connection_id(hotswap_conn_id next) {
  hotswap_conn_id floor = connections_.empty() ? 1 : connections_.rbegin()->first + 1;
  next_conn_id_ = std::max({next, floor, next_conn_id_});
}

void NetworkServer::start_adopted() {
  auto connections = connections_;  // delivering may close some
  for (auto& [id, connection] : connections)
    if (connection->awaiting_start()) connection->start_adopted();
  for (auto& l : listeners_)
    if (l->awaiting_start) start_accepting(l);
}

}  // namespace hotswap::host
