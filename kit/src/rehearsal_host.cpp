#include <hotswap/appup/planner.hpp>
#include <hotswap/appup/semver.hpp>
#include <hotswap/rehearsal.hpp>

#include <algorithm>
#include <boost/filesystem/operations.hpp>
#include <cstdio>
#include <deque>
#include <functional>
#include <set>
#include <sstream>

#include "core/library_loader.hpp"
#include "core/module_registry.hpp"
#include "net/timer_source.hpp"
#include "release/release_files.hpp"
#include "release/runtime_config.hpp"
#include "upgrade/upgrade_executor.hpp"

namespace hotswap::kit {

namespace fs = boost::filesystem;
using host::ModuleRegistry;
using host::ModuleSlot;

namespace {

constexpr const char* kDefaultListener = "rehearsal";

std::string hex_bytes(const std::string& bytes, size_t from, size_t count) {
  std::string out;
  char cell[4];
  for (size_t i = from; i < bytes.size() && i < from + count; ++i) {
    std::snprintf(cell, sizeof cell, "%02x", static_cast<unsigned>(static_cast<uint8_t>(bytes[i])));
    if (!out.empty()) out += ' ';
    out += cell;
  }
  return out;
}

struct Release {
  appup::ReleaseManifest manifest;
  host::RuntimeConfig config;
};

}  // namespace

// ---------------------------------------------------------------------------
// State, results

std::ostream& operator<<(std::ostream& out, const State& state) {
  out << state.module << " " << state.version << " schema " << state.schema << ", " << state.bytes.size()
      << " bytes";
  if (!state.bytes.empty()) out << ": " << hex_bytes(state.bytes, 0, 32) << (state.bytes.size() > 32 ? " ..." : "");
  return out;
}

std::string describe_difference(const State& expected, const State& actual) {
  if (expected == actual) return {};
  std::string text = "schema " + std::to_string(expected.schema) + " vs " + std::to_string(actual.schema) + "; " +
                     std::to_string(expected.bytes.size()) + " vs " + std::to_string(actual.bytes.size()) + " bytes";
  const size_t common = std::min(expected.bytes.size(), actual.bytes.size());
  size_t at = 0;
  while (at < common && expected.bytes[at] == actual.bytes[at]) ++at;
  if (at < common)
    text += "; first difference at byte " + std::to_string(at) + " (expected " + hex_bytes(expected.bytes, at, 8) +
            ", got " + hex_bytes(actual.bytes, at, 8) + ")";
  else if (expected.bytes.size() != actual.bytes.size())
    text += "; one is a prefix of the other, up to byte " + std::to_string(at);
  return text;
}

std::ostream& operator<<(std::ostream& out, const UpgradeResult& result) {
  return out << result.report().summary();
}

std::string RoundTrip::explain() const {
  if (restored()) return {};
  if (!there.committed()) return "the first leg did not commit: " + there.report().summary();
  if (!back || !back->committed())
    return "the way back did not commit: " + (back ? back->report().summary() : std::string("not run"));
  std::string text = "the state did not come back byte for byte:";
  for (const std::string& d : differences) text += "\n  " + d;
  return text;
}

std::ostream& operator<<(std::ostream& out, const RoundTrip& trip) {
  return out << (trip.restored() ? std::string("round trip restored every state") : trip.explain());
}

std::map<hotswap_conn_id, std::vector<std::string>> ReplayResult::all() const {
  auto merged = before;
  for (const auto& [conn, messages] : after)
    merged[conn].insert(merged[conn].end(), messages.begin(), messages.end());
  return merged;
}

// ---------------------------------------------------------------------------
// The host

struct RehearsalHost::Impl : host::HostServices {
  struct Connection {
    std::string module;
    std::string listener;
    std::vector<std::string> received;
    std::optional<std::string> closed_by_module;
    bool open = true;
  };
  struct Timer {
    std::string module;
    uint64_t repeat_ms = 0, tag = 0;
    std::unique_ptr<host::TimerSource::Alarm> alarm;
  };
  struct Tick {
    host::TimerSource::Duration period{};
    host::TimerSource::Duration next{};
    std::unique_ptr<host::TimerSource::Alarm> alarm;
  };

  // Declared in this order: the registry's instances may cancel timers while
  // they are destroyed, so the clock and the timers outlive it.
  host::ManualTimerSource clock;
  std::map<hotswap_timer_id, Timer> timers;
  std::map<std::string, Tick> ticks;
  host::LibraryLoader loader;
  std::unique_ptr<ModuleRegistry> registry;
  std::unique_ptr<host::UpgradeExecutor> executor;

  std::map<std::string, Release> releases;  // by version
  std::string current;
  bool config_ticks = true;
  std::map<hotswap_conn_id, Connection> connections;
  hotswap_conn_id next_conn = 1;
  std::deque<hotswap_conn_id> closing;  // closed by their module; on_disconnect not yet delivered
  // Every message sent to any connection, in order: what a replay reads.
  std::vector<std::pair<hotswap_conn_id, std::string>> sent_log;

  ~Impl() override {
    ticks.clear();
    if (registry) registry->stop_all();
    executor.reset();
    registry.reset();
    timers.clear();
  }

  // --- HostServices ---
  hotswap_status send(std::string_view module, hotswap_conn_id conn, std::string_view message) override {
    auto it = connections.find(conn);
    if (it == connections.end() || !it->second.open || it->second.closed_by_module || it->second.module != module)
      return HOTSWAP_NOT_FOUND;
    it->second.received.emplace_back(message);
    sent_log.emplace_back(conn, std::string(message));
    return HOTSWAP_OK;
  }
  hotswap_status close(std::string_view module, hotswap_conn_id conn, std::string_view reason) override {
    auto it = connections.find(conn);
    if (it == connections.end() || !it->second.open || it->second.closed_by_module || it->second.module != module)
      return HOTSWAP_NOT_FOUND;
    it->second.closed_by_module = std::string(reason);
    closing.push_back(conn);
    return HOTSWAP_OK;
  }
  void schedule_timer(ModuleSlot& owner, hotswap_timer_id id, uint64_t delay_ms, uint64_t repeat_ms,
                      uint64_t tag) override {
    Timer& timer = timers[id];
    timer.module = owner.name();
    timer.repeat_ms = repeat_ms;
    timer.tag = tag;
    arm_timer(id, clock.now() + std::chrono::milliseconds(delay_ms));
  }
  bool cancel_timer(hotswap_timer_id id) override { return timers.erase(id) > 0; }
  // As the live server lists them: open connections of `module`, by id; a
  // listener the module does not own is unknown (false).
  bool list_connections(std::string_view module, const char* listener,
                        std::vector<ConnectionRef>& out) override {
    out.clear();
    if (listener != nullptr) {
      bool known = std::string_view(listener) == kDefaultListener;
      for (const auto& l : running().config.listeners) known = known || (l.module == module && l.name == listener);
      if (!known) return false;
    }
    for (const auto& [id, c] : connections) {
      if (c.module != module || !c.open || c.closed_by_module) continue;
      if (listener != nullptr && c.listener != listener) continue;
      out.push_back({id, c.listener.c_str()});
    }
    return true;
  }
  uint64_t now_ms() const override { return clock.now_ms(); }

  void arm_timer(hotswap_timer_id id, host::TimerSource::Duration due) {
    timers.at(id).alarm = clock.schedule(due, [this, id] {
      auto it = timers.find(id);
      if (it == timers.end()) return;
      const bool last = it->second.repeat_ms == 0;
      const std::string module = it->second.module;
      const uint64_t tag = it->second.tag;
      const uint64_t repeat_ms = it->second.repeat_ms;
      if (last) timers.erase(it);
      ModuleSlot* slot = registry->find(module);
      if (slot == nullptr) {
        timers.erase(id);
        return;
      }
      registry->deliver_timer(*slot, id, tag, last);
      if (!last && timers.count(id)) arm_timer(id, clock.now() + std::chrono::milliseconds(repeat_ms));
    });
  }

  void set_tick_rate(const std::string& module, double hz) {
    ticks.erase(module);
    if (hz <= 0 || !config_ticks) return;
    Tick& tick = ticks[module];
    tick.period = std::chrono::duration_cast<host::TimerSource::Duration>(std::chrono::duration<double>(1.0 / hz));
    tick.next = clock.now() + tick.period;
    arm_tick(module);
  }
  void arm_tick(const std::string& module) {
    Tick& tick = ticks.at(module);
    tick.alarm = clock.schedule(tick.next, [this, module] {
      if (ModuleSlot* slot = registry->find(module)) registry->deliver_tick(*slot);
      auto it = ticks.find(module);
      if (it == ticks.end()) return;
      it->second.next += it->second.period;
      arm_tick(module);
    });
  }
  void apply_tick_rates() {
    ticks.clear();
    const host::RuntimeConfig& config = releases.at(current).config;
    for (const auto& m : releases.at(current).manifest.modules) set_tick_rate(m.name, config.tick_rate(m.name));
  }

  // The on_disconnect of connections their module closed, as the server
  // delivers it after the callback that closed them.
  void flush() {
    while (!closing.empty()) {
      hotswap_conn_id conn = closing.front();
      closing.pop_front();
      Connection& c = connections.at(conn);
      if (!c.open) continue;
      c.open = false;
      if (ModuleSlot* slot = registry->find(c.module))
        registry->deliver_disconnect(*slot, conn, HOTSWAP_DISCONNECT_CLOSED_BY_MODULE);
    }
  }

  const Release& running() const { return releases.at(current); }

  std::string module_name(const std::string& module) const {
    const auto& modules = running().manifest.modules;
    if (!module.empty()) {
      if (registry->find(module) == nullptr) {
        std::string known;
        for (const auto& m : modules) known += (known.empty() ? "" : ", ") + m.name;
        throw RehearsalError("module '" + module + "' is not running in release " + current + " (running: " + known +
                             ")");
      }
      return module;
    }
    if (modules.size() == 1) return modules.front().name;
    const auto& listeners = running().config.listeners;
    if (!listeners.empty()) return listeners.front().module;
    throw RehearsalError("release " + current + " runs " + std::to_string(modules.size()) +
                         " modules and no listener: name the module");
  }
  ModuleSlot& slot(const std::string& module) const { return *registry->find(module_name(module)); }

  Connection& connection(hotswap_conn_id id) {
    auto it = connections.find(id);
    if (it == connections.end())
      throw RehearsalError("connection " + std::to_string(id) + " was never connected in this rehearsal");
    return it->second;
  }

  void connect(hotswap_conn_id id, const std::string& module_arg, const std::string& listener_arg,
               const std::string& peer) {
    const std::string module = module_name(module_arg);
    if (connections.count(id))
      throw RehearsalError("connection " + std::to_string(id) + " is already in use in this rehearsal");
    std::string listener = listener_arg;
    if (listener.empty()) {
      listener = kDefaultListener;
      for (const auto& l : running().config.listeners)
        if (l.module == module) {
          listener = l.name;
          break;
        }
    }
    connections[id].module = module;
    connections[id].listener = listener;
    next_conn = std::max(next_conn, id + 1);
    registry->deliver_connect(*registry->find(module), id, listener, peer);
    flush();
  }

  void message(hotswap_conn_id id, const std::string& bytes) {
    Connection& c = connection(id);
    if (!c.open || c.closed_by_module)
      throw RehearsalError("connection " + std::to_string(id) + " is closed: it cannot send");
    if (ModuleSlot* slot = registry->find(c.module)) registry->deliver_message(*slot, id, bytes);
    flush();
  }

  void disconnect(hotswap_conn_id id, hotswap_disconnect_reason reason) {
    Connection& c = connection(id);
    if (!c.open) throw RehearsalError("connection " + std::to_string(id) + " is already closed");
    c.open = false;
    if (ModuleSlot* slot = registry->find(c.module)) registry->deliver_disconnect(*slot, id, reason);
    flush();
  }

  void advance(host::TimerSource::Duration by) {
    clock.advance(by);
    flush();
  }

  UpgradeResult switch_to(const std::string& version) {
    auto target_it = releases.find(version);
    if (target_it == releases.end()) throw RehearsalError("release " + version + " is not among this rehearsal's releases");
    if (version == current) throw RehearsalError("release " + version + " is already running");
    const Release& target = target_it->second;
    appup::Plan plan;
    try {
      plan = appup::make_plan(running().manifest, target.manifest, host::load_appup_of);
      // A handover moves the state to another process: nothing the kit runs in place shows how that goes.
      if (!plan.blue_green.empty())
        throw std::runtime_error("it needs a blue-green handover, which the kit does not rehearse (" +
                                 plan.blue_green.front() + ")");
    } catch (const std::exception& e) {
      host::UpgradeReport refused;
      refused.outcome = host::UpgradeReport::Outcome::Refused;
      refused.release_name = target.manifest.name;
      refused.from_release = current;
      refused.to_release = version;
      refused.error = std::string("no plan from ") + current + " to " + version + ": " + e.what();
      return UpgradeResult(std::move(refused));
    }
    // New instances are created with the target release's config sections, as the host does.
    std::map<std::string, std::string> previous;
    for (const auto& m : target.manifest.modules) {
      previous[m.name] = registry->module_config(m.name);
      registry->set_module_config(m.name, target.config.module_section(m.name));
    }
    host::UpgradeReport report = executor->run(plan);
    if (report.committed()) {
      current = version;
      apply_tick_rates();
    } else {
      for (const auto& [name, section] : previous) registry->set_module_config(name, section);
    }
    flush();
    return UpgradeResult(std::move(report), plan.describe());
  }

  State state_of(const std::string& module_arg) const {
    const std::string module = module_name(module_arg);
    const host::ModuleInstance& instance = registry->find(module)->active();
    State s;
    s.module = module;
    s.version = instance.version();
    s.schema = instance.library().state_schema();
    try {
      s.bytes = instance.export_state();
    } catch (const std::exception& e) {
      throw RehearsalError(std::string("exporting the state failed: ") + e.what());
    }
    return s;
  }
};

RehearsalHost::RehearsalHost(const std::vector<fs::path>& release_dirs, const std::string& version)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  if (release_dirs.empty()) throw RehearsalError("no release folders given");
  for (const fs::path& dir : release_dirs) {
    if (!fs::is_directory(dir))
      throw RehearsalError("release folder " + dir.string() + " does not exist (was its release target built?)");
    Release release;
    try {
      release.manifest = host::load_release_manifest(dir);
      if (!release.manifest.config.empty()) release.config = host::load_runtime_config(release.manifest.config);
    } catch (const std::exception& e) {
      throw RehearsalError("release folder " + dir.string() + ": " + e.what());
    }
    const std::string v = release.manifest.version;
    auto [it, added] = m.releases.emplace(v, std::move(release));
    if (!added)
      throw RehearsalError("two release folders hold version " + v + ": " + it->second.manifest.dir.string() +
                           " and " + dir.string());
  }
  if (!m.releases.count(version)) {
    std::string known;
    for (const std::string& v : releases()) known += (known.empty() ? "" : ", ") + v;
    throw RehearsalError("release " + version + " is not among the release folders given (" + known + ")");
  }
  m.registry = std::make_unique<ModuleRegistry>(m);
  m.executor = std::make_unique<host::UpgradeExecutor>(*m.registry, m.loader);
  m.current = version;
  const Release& boot = m.releases.at(version);
  for (const auto& [name, section] : boot.config.modules) m.registry->set_module_config(name, section.config.dump());
  std::vector<const appup::ModuleEntry*> order;
  try {
    order = host::boot_order(boot.manifest);  // as the host boots
  } catch (const std::exception& e) {
    throw RehearsalError(e.what());
  }
  for (const appup::ModuleEntry* entry : order) {
    try {
      m.registry->start(m.loader.load(entry->file, {entry->name, entry->version, entry->sha256}));
    } catch (const std::exception& e) {
      throw RehearsalError("booting release " + version + ": module " + entry->name + ": " + e.what());
    }
  }
  m.apply_tick_rates();
}

RehearsalHost::~RehearsalHost() = default;

const std::string& RehearsalHost::release() const { return impl_->current; }

std::vector<std::string> RehearsalHost::releases() const {
  std::vector<std::string> out;
  for (const auto& [v, r] : impl_->releases) out.push_back(v);
  std::sort(out.begin(), out.end(), [](const std::string& a, const std::string& b) {
    auto va = appup::Version::parse(a), vb = appup::Version::parse(b);
    if (va && vb) return *va < *vb;
    return a < b;
  });
  return out;
}

std::string RehearsalHost::version(const std::string& module) const { return impl_->slot(module).active().version(); }

Client RehearsalHost::connect(const std::string& module, const std::string& listener) {
  return connect_as(impl_->next_conn, module, listener);
}

Client RehearsalHost::connect_as(hotswap_conn_id id, const std::string& module, const std::string& listener) {
  if (id == 0) throw RehearsalError("connection id 0 is not a valid id");
  impl_->connect(id, module, listener, "127.0.0.1:" + std::to_string(40000 + id % 20000));
  return Client(*this, id);
}

Client RehearsalHost::client(hotswap_conn_id id) {
  impl_->connection(id);
  return Client(*this, id);
}

void RehearsalHost::advance_ms(uint64_t ms) { impl_->advance(std::chrono::milliseconds(ms)); }

void RehearsalHost::tick(const std::string& module, size_t count) {
  ModuleSlot& slot = impl_->slot(module);
  for (size_t i = 0; i < count; ++i) impl_->registry->deliver_tick(slot);
  impl_->flush();
}

void RehearsalHost::set_config_ticks(bool enabled) {
  impl_->config_ticks = enabled;
  impl_->apply_tick_rates();
}

uint64_t RehearsalHost::now_ms() const { return impl_->clock.now_ms(); }
size_t RehearsalHost::armed_timers() const { return impl_->timers.size(); }

State RehearsalHost::state(const std::string& module) const { return impl_->state_of(module); }

std::map<std::string, State> RehearsalHost::states() const {
  std::map<std::string, State> out;
  for (const ModuleSlot* slot : impl_->registry->slots()) out.emplace(slot->name(), impl_->state_of(slot->name()));
  return out;
}

std::string RehearsalHost::task(const std::string& name, const std::string& args_json, const std::string& module) {
  ModuleSlot& slot = impl_->slot(module);
  try {
    std::string result = slot.active().run_task(name, args_json);
    impl_->flush();
    return result;
  } catch (const std::exception& e) {
    impl_->flush();
    throw RehearsalError(std::string("task ") + name + " failed: " + e.what());
  }
}

uint64_t RehearsalHost::failed_events(const std::string& module) const {
  return impl_->slot(module).stats().failed_events;
}

UpgradeResult RehearsalHost::switch_to(const std::string& version) { return impl_->switch_to(version); }

UpgradeResult RehearsalHost::upgrade_to(const std::string& version) {
  auto target = appup::Version::parse(version), now = appup::Version::parse(impl_->current);
  if (target && now && !(*now < *target))
    throw RehearsalError("upgrade_to(" + version + "): not newer than the running release " + impl_->current +
                         " (downgrade_to goes back)");
  return switch_to(version);
}

UpgradeResult RehearsalHost::downgrade_to(const std::string& version) {
  auto target = appup::Version::parse(version), now = appup::Version::parse(impl_->current);
  if (target && now && !(*target < *now))
    throw RehearsalError("downgrade_to(" + version + "): not older than the running release " + impl_->current +
                         " (upgrade_to goes forward)");
  return switch_to(version);
}

RoundTrip RehearsalHost::round_trip(const std::string& version, const std::function<void()>& between) {
  const std::string home = impl_->current;
  const std::map<std::string, State> before = states();
  RoundTrip trip{switch_to(version), std::nullopt, {}};
  if (!trip.there.committed()) return trip;
  if (between) between();
  trip.back = switch_to(home);
  if (!trip.back->committed()) return trip;
  const std::map<std::string, State> after = states();
  for (const auto& [module, state] : before) {
    auto it = after.find(module);
    if (it == after.end())
      trip.differences.push_back("module " + module + ": not running after the round trip");
    else if (std::string d = describe_difference(state, it->second); !d.empty())
      trip.differences.push_back("module " + module + ": " + d);
  }
  return trip;
}

ReplayResult RehearsalHost::replay(const fs::path& trace_file, const ReplayOptions& options) {
  host::Trace trace;
  try {
    trace = host::read_trace_file(trace_file);
  } catch (const std::exception& e) {
    throw RehearsalError(e.what());
  }
  return replay(trace, options);
}

ReplayResult RehearsalHost::replay(const host::Trace& trace, const ReplayOptions& options) {
  Impl& m = *impl_;
  ReplayResult result;
  const size_t count = trace.events.size();
  std::optional<size_t> switch_at;
  if (!options.switch_to.empty()) {
    if (!m.releases.count(options.switch_to))
      throw RehearsalError("replay: release " + options.switch_to + " is not among this rehearsal's releases");
    if (options.at_event && options.at_time_us)
      throw RehearsalError("replay: give at_event or at_time_us, not both");
    size_t index = 0;
    if (options.at_event) {
      if (*options.at_event > count)
        throw RehearsalError("replay: at_event " + std::to_string(*options.at_event) + " is past the trace's " +
                             std::to_string(count) + " events");
      index = *options.at_event;
    } else if (options.at_time_us) {
      while (index < count && trace.events[index].t_us < *options.at_time_us) ++index;
    }
    switch_at = index;
  }
  const bool ticks_were_on = m.config_ticks;
  set_config_ticks(false);
  const host::TimerSource::Duration start = m.clock.now();
  size_t log_start = m.sent_log.size();
  size_t switch_log = std::string::npos;
  auto do_switch = [&](size_t index) {
    result.switched_at_event = index;
    switch_log = m.sent_log.size();
    result.upgrade = m.switch_to(options.switch_to);
  };
  try {
    for (size_t i = 0; i < count; ++i) {
      if (switch_at && *switch_at == i) do_switch(i);
      const host::TraceEvent& e = trace.events[i];
      const auto due = start + std::chrono::microseconds(e.t_us);
      if (due > m.clock.now()) m.advance(due - m.clock.now());
      const std::string where = trace.source + ": event " + std::to_string(i) + " (" + host::to_string(e.kind) + "): ";
      if (m.registry->find(e.module) == nullptr)
        throw RehearsalError(where + "module '" + e.module + "' is not running in release " + m.current);
      switch (e.kind) {
        case host::TraceEvent::Kind::Connect:
          if (m.connections.count(e.conn))
            throw RehearsalError(where + "connection " + std::to_string(e.conn) + " is already in use");
          m.connect(e.conn, e.module, e.listener, e.peer);
          break;
        case host::TraceEvent::Kind::Message: {
          auto it = m.connections.find(e.conn);
          if (it == m.connections.end())
            throw RehearsalError(where + "connection " + std::to_string(e.conn) +
                                 " sends before it connected (the trace began after it did: replay needs its connect)");
          // The module closed it in this replay: the live host would not have read more from it.
          if (!it->second.open || it->second.closed_by_module) break;
          m.message(e.conn, e.data);
          break;
        }
        case host::TraceEvent::Kind::Disconnect: {
          auto it = m.connections.find(e.conn);
          if (it == m.connections.end() || !it->second.open) break;  // closed by its module here too
          m.disconnect(e.conn, e.reason);
          break;
        }
        case host::TraceEvent::Kind::Tick:
          m.registry->deliver_tick(*m.registry->find(e.module));
          m.flush();
          break;
        case host::TraceEvent::Kind::Timer:
          ++result.recorded_timer_fires;
          break;
      }
      ++result.events;
    }
    if (switch_at && *switch_at == count) do_switch(count);
  } catch (...) {
    set_config_ticks(ticks_were_on);
    throw;
  }
  set_config_ticks(ticks_were_on);
  if (switch_log == std::string::npos) switch_log = m.sent_log.size();
  for (size_t i = log_start; i < m.sent_log.size(); ++i)
    (i < switch_log ? result.before : result.after)[m.sent_log[i].first].push_back(m.sent_log[i].second);
  return result;
}

// ---------------------------------------------------------------------------
// Client

void Client::send(const std::string& message) const { host_->impl_->message(id_, message); }

std::string Client::ask(const std::string& message) const {
  const size_t before = host_->impl_->connection(id_).received.size();
  send(message);
  const std::vector<std::string>& all = host_->impl_->connection(id_).received;
  if (all.size() == before + 1) return all.back();
  std::string got;
  for (size_t i = before; i < all.size(); ++i) got += "\n  " + all[i];
  throw RehearsalError("connection " + std::to_string(id_) + " asked '" + message + "' and got " +
                       std::to_string(all.size() - before) + " messages back instead of one" + got);
}

const std::vector<std::string>& Client::received() const { return host_->impl_->connection(id_).received; }

std::vector<std::string> Client::take_received() const {
  std::vector<std::string> out;
  out.swap(host_->impl_->connection(id_).received);
  return out;
}

void Client::disconnect(hotswap_disconnect_reason reason) const { host_->impl_->disconnect(id_, reason); }

std::optional<std::string> Client::closed_by_module() const {
  return host_->impl_->connection(id_).closed_by_module;
}

}  // namespace hotswap::kit
