#include "handover/handover_blue.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <set>

#include "admin/admin_server.hpp"
#include "core/module_registry.hpp"
#include "handover/handover_channel.hpp"
#include "net/network_server.hpp"
#include "os/fd.hpp"
#include "os/signal_name.hpp"

namespace hotswap::host {

namespace asio = boost::asio;
using handover::HandoverChannel;
using handover::HandoverError;
using handover::MessageType;
using Clock = std::chrono::steady_clock;

namespace {

std::string wait_status_text(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "was killed by " + os::signal_name(WTERMSIG(status));
  return "stopped";
}

double ms_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

// Whether the target keeps the running listener as it is: same name,
// address, framing, frame limit and module, and the same port (or port 0 in
// the target: any). A listener the target changes otherwise is not moved: its
// connections would be read with rules they were not made for. Green then
// fails to bind its address while blue holds it, and blue serves on.
bool target_keeps(const RuntimeConfig& target, const ListenerConfig& running, uint16_t bound_port) {
  for (const ListenerConfig& l : target.listeners)
    if (l.name == running.name && l.address == running.address && (l.port == 0 || l.port == bound_port) &&
        l.framing == running.framing && l.max_frame_bytes == running.max_frame_bytes && l.module == running.module)
      return true;
  return false;
}

}  // namespace

// One handover from spawn to commit or abort.
struct HandoverBlue::Run : std::enable_shared_from_this<HandoverBlue::Run> {
  Run(HandoverBlue& owner, const BlueGreenRequest& request, std::chrono::milliseconds timeout,
      ProgressListener progress, Done done)
      : owner(owner),
        side(owner.side_),
        request(request),
        timeout(timeout),
        progress(std::move(progress)),
        done(std::move(done)),
        socket_wait(side.io),
        exit_wait(side.io),
        deadline_timer(side.io) {}

  HandoverBlue& owner;
  BlueSide& side;
  BlueGreenRequest request;
  std::chrono::milliseconds timeout;
  ProgressListener progress;
  Done done;

  Clock::time_point started = Clock::now();
  Clock::time_point deadline = started + timeout;
  Clock::time_point paused_at{};
  pid_t green = 0;
  bool reaped = false;
  os::Fd green_exit;  // pidfd: readable once green exits
  std::unique_ptr<HandoverChannel> channel;
  // Asio waits on duplicates of the channel socket and the pidfd (the
  // descriptor objects own and close their duplicates).
  asio::posix::stream_descriptor socket_wait, exit_wait;
  asio::steady_timer deadline_timer;
  std::vector<handover::LoadedModule> loaded;
  bool paused = false;
  bool finished = false;
  HandoverFigures figures;

  void begin() {
    int pair[2] = {-1, -1};
    const auto made = side.os.socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair);
    if (!made.ok()) return fail("cannot create the handover socket pair: " + made.error_text());
    os::Fd ours(pair[0], side.os), theirs(pair[1], side.os);
    const std::string binary = request.host_binary.string();
    os::SpawnRequest spawn{binary,
                           {binary, "handover-target", "--root", side.root.string(), "--version",
                            request.target.version, "--fd", "3"},
                           os::current_environment(),
                           {{theirs.get(), 3}}};
    const auto spawned = side.os.spawn(spawn);
    if (!spawned.ok()) return fail("cannot start " + binary + ": " + spawned.error_text());
    green = spawned.value;
    theirs.close();
    channel = std::make_unique<HandoverChannel>(std::move(ours), side.os);
    const auto pidfd = side.os.pidfd_open(green);
    if (!pidfd.ok()) return fail("cannot watch the new process (pidfd_open): " + pidfd.error_text());
    green_exit = os::Fd(pidfd.value, side.os);
    spdlog::info("handover to release {}: new process pid {} started ({})", request.target.version, green, binary);
    emit_progress(progress, {{"event", "handover_started"}, {"pid", green}, {"to", request.target.version}});

    const int socket_copy = ::fcntl(channel->fd(), F_DUPFD_CLOEXEC, 0);
    const int exit_copy = ::fcntl(green_exit.get(), F_DUPFD_CLOEXEC, 0);
    if (socket_copy < 0 || exit_copy < 0) {
      if (socket_copy >= 0) ::close(socket_copy);
      if (exit_copy >= 0) ::close(exit_copy);
      return fail(std::string("cannot watch the handover socket: ") + std::strerror(errno));
    }
    boost::system::error_code assigned;
    socket_wait.assign(socket_copy, assigned);
    if (assigned) {
      ::close(socket_copy);
      ::close(exit_copy);
      return fail("cannot watch the handover socket: " + assigned.message());
    }
    exit_wait.assign(exit_copy, assigned);
    if (assigned) {
      ::close(exit_copy);
      return fail("cannot watch the new process: " + assigned.message());
    }
    auto self = shared_from_this();
    deadline_timer.expires_at(deadline);
    deadline_timer.async_wait([self](boost::system::error_code ec) {
      if (!ec)
        self->fail("the new process was not ready within " + std::to_string(self->timeout.count()) +
                   " ms (handover_timeout_s)");
    });
    exit_wait.async_wait(asio::posix::descriptor_base::wait_read, [self](boost::system::error_code ec) {
      if (!ec) self->fail("the new process " + self->reap() + " before it was ready");
    });
    wait_for_message();
  }

  // Loading phase: Hello, then Loaded, while this process serves on.
  void wait_for_message() {
    auto self = shared_from_this();
    socket_wait.async_wait(asio::posix::descriptor_base::wait_read, [self](boost::system::error_code ec) {
      if (ec || self->finished) return;
      try {
        handover::Message message = self->channel->receive(self->deadline, self->green_exit.get());
        if (message.type == MessageType::Hello) {
          const handover::Hello hello = handover::decode_hello(message.body);
          if (hello.target_version != self->request.target.version)
            throw HandoverError("the new process loads release " + hello.target_version + ", not " +
                                self->request.target.version);
          return self->wait_for_message();
        }
        if (message.type == MessageType::Error)
          throw HandoverError("the new process reported: " + handover::decode_error(message.body));
        if (message.type != MessageType::Loaded)
          throw HandoverError(std::string("unexpected ") + handover::to_string(message.type) +
                              " while waiting for the new process to load");
        self->loaded = handover::decode_loaded(message.body);
        self->pause();
      } catch (const std::exception& e) {
        return self->fail(e.what());
      }
    });
  }

  // Stops every listener and connection here, then (posted, so that events
  // already posted to the loop, such as disconnect deliveries, land in the
  // suspended slots' queues first) hands everything over.
  void pause() {
    emit_progress(progress, {{"event", "handover_paused"}});
    paused_at = Clock::now();
    paused = true;
    for (ModuleSlot* slot : side.registry.slots()) side.registry.suspend(*slot);
    // Listeners the target drops stay here with their connections, which
    // close gracefully once this process retires.
    std::set<std::string> moving;
    for (const ListenerStatus& l : side.server.listeners())
      for (const ListenerConfig& running : side.running_config->listeners)
        if (running.name == l.name && target_keeps(request.target_config, running, l.port)) moving.insert(l.name);
    exported = side.server.pause_for_handover(moving);
    asio::post(side.io, [self = shared_from_this()] { self->transfer(); });
  }

  NetworkServer::HandoverExport exported;

  void transfer() {
    if (finished) return;
    try {
      send_listeners();
      send_connections();
      send_slots();
      channel->expect(MessageType::Ready, deadline, green_exit.get());
      channel->send(MessageType::Commit, {}, {}, deadline);
    } catch (const std::exception& e) {
      return fail(e.what());
    }
    commit();
  }

  void send_listeners() {
    std::vector<ListenerHandover> moving = exported.listeners;
    std::vector<int> fds;
    for (const ListenerHandover& l : moving) fds.push_back(l.fd);
    if (side.admin != nullptr) {
      moving.push_back({handover::kAdminListenerName, side.admin->path().string(), 0, side.admin->listening_fd()});
      fds.push_back(side.admin->listening_fd());
    }
    if (moving.size() > handover::kMaxFdsPerMessage) throw HandoverError("too many listeners to hand over");
    channel->send(MessageType::Listeners, handover::encode_listeners(moving), fds, deadline);
    figures.listeners = moving.size();
  }

  void send_connections() {
    std::vector<ConnectionHandover> batch;
    std::vector<int> fds;
    auto flush = [&] {
      if (batch.empty()) return;
      channel->send(MessageType::ConnectionBatch, handover::encode_connections(batch), fds, deadline);
      const handover::Message ack = channel->expect(MessageType::BatchAck, deadline, green_exit.get());
      const uint32_t acknowledged = handover::decode_count(ack.body);
      if (acknowledged != batch.size())
        throw HandoverError("the new process acknowledged " + std::to_string(acknowledged) + " of a batch of " +
                            std::to_string(batch.size()) + " connections");
      figures.connections += batch.size();
      batch.clear();
      fds.clear();
    };
    for (const ConnectionHandover& c : exported.connections) {
      batch.push_back(c);
      fds.push_back(c.fd);
      figures.bytes += c.unread_input.size() + c.unsent_output.size();
      if (batch.size() == handover::kMaxFdsPerMessage) flush();
    }
    flush();
  }

  // The last code step the plan makes for `module` (load, update or restart), if any.
  const appup::PlanStep* code_step(const std::string& module) const {
    const appup::PlanStep* found = nullptr;
    for (const appup::PlanStep& step : request.plan.steps)
      if (step.module == module && (step.kind == appup::StepKind::LoadModule || step.kind == appup::StepKind::Update ||
                                    step.kind == appup::StepKind::RestartModule))
        found = &step;
    return found;
  }

  // Fills in how green gives `slot` its state back, running migrate_down
  // here (in the newer code) on a downgrade that changes the layout.
  void fill_state(ModuleSlot& slot, const appup::ModuleEntry& target, const handover::LoadedModule& green_module,
                  SlotHandover& out) const {
    ModuleInstance& running = slot.active();
    out.version = running.version();
    out.schema = running.library().state_schema();
    const appup::PlanStep* step = code_step(slot.name());
    // The plan's direction where it has a step (as the in-place executor), the versions' otherwise.
    const bool downgrade = step != nullptr ? step->direction == appup::Direction::Downgrade
                                           : direction_between(running.version(), target.version) ==
                                                 appup::Direction::Downgrade;
    nlohmann::json extra = nullptr;
    bool migrate = false;
    if (step != nullptr && step->kind == appup::StepKind::RestartModule) {
      out.arrival = StateArrival::Fresh;
      return;
    }
    if (step != nullptr && step->kind == appup::StepKind::Update) {
      migrate = true;
      extra = step->extra;
    } else if (running.version() != target.version && green_module.schema != out.schema) {
      migrate = true;  // a blue_green entry alone: the layout still has to change
    }
    if (!migrate) {
      out.arrival = StateArrival::Import;
      out.state = running.export_state();
    } else if (!downgrade) {
      out.arrival = StateArrival::MigrateUp;
      out.extra_json = extra.dump();
      out.state = running.export_state();
    } else {
      out.arrival = StateArrival::Import;
      out.state = running.migrate_down(target.version, green_module.schema, extra.dump());
      out.schema = green_module.schema;
    }
  }

  void send_slots() {
    handover::SlotsMessage message;
    message.counters.next_conn_id = exported.next_conn_id;
    message.counters.next_timer_id = side.registry.next_timer_id();
    for (ModuleSlot* slot : side.registry.slots()) {
      const appup::ModuleEntry* target = request.target.find(slot->name());
      if (target == nullptr) continue;  // deleted by the target: stops here
      const handover::LoadedModule* green_module = nullptr;
      for (const handover::LoadedModule& m : loaded)
        if (m.name == slot->name()) green_module = &m;
      if (green_module == nullptr)
        throw HandoverError("the new process did not load module " + slot->name() + " of release " +
                            request.target.version);
      SlotHandover handover = side.registry.handover_bookkeeping(*slot);
      handover.module = slot->name();
      handover.timers = side.server.timers_of(slot->name());
      fill_state(*slot, *target, *green_module, handover);
      figures.bytes += handover.state.size();
      message.slots.push_back(std::move(handover));
    }
    channel->send(MessageType::Slots, handover::encode_slots(message), {}, deadline);
  }

  void commit() {
    finished = true;
    const auto now = Clock::now();
    side.server.release_after_handover();
    if (side.admin != nullptr) side.admin->release_after_handover();
    figures.committed = true;
    figures.duration_ms = ms_between(started, now);
    figures.max_stall_ms = ms_between(paused_at, now);
    spdlog::info("handover to release {} committed: pid {} serves {} connection(s) on {} listener(s); {} bytes in {:.1f} "
                 "ms, stall {:.1f} ms",
                 request.target.version, green, figures.connections, figures.listeners, figures.bytes,
                 figures.duration_ms, figures.max_stall_ms);
    stop_waiting();
    finish();
  }

  // Kills green (when started) and serves on with everything that was paused.
  void fail(std::string reason) {
    if (finished) return;
    finished = true;
    reason = with_last_words(std::move(reason));
    stop_waiting();
    if (green > 0 && !reaped) {
      side.os.kill(green, SIGKILL);
      reap();
    }
    if (paused) {
      side.server.resume_after_handover();
      for (ModuleSlot* slot : side.registry.slots()) side.registry.resume(*slot);
    }
    figures = {};
    figures.committed = false;
    figures.error = "blue-green handover to " + request.target.version + " failed: " + reason;
    figures.duration_ms = ms_between(started, Clock::now());
    if (paused) figures.max_stall_ms = ms_between(paused_at, Clock::now());
    spdlog::error("{}; this process (pid {}) serves on", figures.error, ::getpid());
    // Posted: fail() may run inside start(), and `done` never runs before start returns.
    asio::post(side.io, [self = shared_from_this()] { self->finish(); });
  }

  // A failure seen on our side (a send that found green gone, its exit) often
  // has its cause in an Error green sent just before: that message, already
  // queued, is the better reason.
  std::string with_last_words(std::string reason) {
    if (!channel) return reason;
    try {
      handover::Message last = channel->receive(Clock::now());
      if (last.type == MessageType::Error)
        return "the new process reported: " + handover::decode_error(last.body) + " (then: " + reason + ")";
    } catch (const std::exception&) {
      // Nothing queued, or nothing readable: the reason stands.
    }
    return reason;
  }

  // Waits for green to exit; the text says how it ended.
  std::string reap() {
    if (reaped || green <= 0) return "exited";
    int status = 0;
    for (;;) {
      const auto r = side.os.waitpid(green, status, 0);
      if (r.ok() || r.error != EINTR) break;
    }
    reaped = true;
    return wait_status_text(status);
  }

  void stop_waiting() {
    boost::system::error_code ec;
    deadline_timer.cancel();
    socket_wait.cancel(ec);
    exit_wait.cancel(ec);
  }

  void finish() {
    owner.last_figures_ = handover_json(figures, request.reasons);
    if (figures.committed) owner.last_green_ = green;
    Done finished_done = std::move(done);
    owner.run_.reset();  // `this` lives on in the handler that called us
    finished_done(figures);
  }
};

HandoverBlue::HandoverBlue(BlueSide side) : side_(std::move(side)) {}

HandoverBlue::~HandoverBlue() {
  if (run_ && !run_->finished) {
    run_->done = [](const HandoverFigures&) {};
    run_->fail("the host is shutting down");
  }
}

bool HandoverBlue::running() const { return run_ != nullptr; }

void HandoverBlue::abort(const std::string& reason) {
  if (run_ && !run_->finished) run_->fail(reason);
}

pid_t HandoverBlue::green_pid() const { return run_ ? run_->green : last_green_; }

nlohmann::json HandoverBlue::last_figures() const { return last_figures_; }

void HandoverBlue::start(const BlueGreenRequest& request, std::chrono::milliseconds timeout,
                         const ProgressListener& progress, Done done) {
  if (run_) {
    HandoverFigures busy;
    busy.error = "a blue-green handover is already running";
    asio::post(side_.io, [done, busy] { done(busy); });
    return;
  }
  run_ = std::make_shared<Run>(*this, request, timeout, progress, std::move(done));
  for (const appup::PlanStep& step : request.plan.steps)
    if (step.kind == appup::StepKind::Apply)
      return run_->fail("the plan runs task " + step.task + " of module " + step.module + " (" + step.origin +
                        "), which a blue-green handover cannot run yet");
  run_->begin();
}

}  // namespace hotswap::host
