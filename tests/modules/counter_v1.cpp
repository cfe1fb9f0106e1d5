// counter 1.0.0 / 1.1.0 — state schema 1:
//   u64 total, u64 ticks, u32 n, n x (u64 conn, u64 count)
// "add N" adds N to the total and to the sender's count and replies
// "<tag> total=<total>"; "get" replies the same without adding.
// "timer MS" arms a one-shot timer; when it fires, the asking connection gets "<tag> timer fired".
// "bye" replies "<tag> bye" and closes the connection; "quit" closes it without a reply.
// "config" replies the module's runtime-config section (updated by on_config_change).
// Tasks: "double" doubles the total; "fail" always fails; "disconnects" reports
// on_disconnect calls and whether one ever arrived inside on_message;
// "announce" with args CONN (a number) sends "<tag> announced" to CONN.
#include <hotswap/module.hpp>
#include <map>
#include <set>
#include <string>

#include "counter_protocol.hpp"

#ifndef COUNTER_TAG
#define COUNTER_TAG "v1"
#endif

class Counter : public hotswap::Module<Counter> {
 public:
  static constexpr uint32_t kStateSchema = 1;
  Counter(hotswap::Host host, std::string_view config) : Module(host, config), config_(config) {}

  void on_message(hotswap::ConnId conn, std::string_view request) {
    struct InMessage {
      bool& flag;
      explicit InMessage(bool& f) : flag(f) { flag = true; }
      ~InMessage() { flag = false; }
    } in_message(in_message_);
    auto [msg, tag] = split_tag(request);
    if (msg.rfind("add ", 0) == 0) {
      uint64_t n = std::stoull(std::string(msg.substr(4)));
      total_ += n;
      per_conn_[conn] += n;
    } else if (msg.rfind("timer ", 0) == 0) {
      host().start_timer(std::stoull(std::string(msg.substr(6))), 0, conn);
      host().send(conn, std::string(COUNTER_TAG) + " timer armed" + std::string(tag));
      return;
    } else if (msg == "quit") {
      host().close(conn, "asked to quit");
      return;
    } else if (msg == "bye") {
      host().send(conn, std::string(COUNTER_TAG) + " bye" + std::string(tag));
      host().close(conn, "asked to leave");
      return;
    } else if (msg == "config") {
      host().send(conn, config_ + std::string(tag));
      return;
    } else if (msg != "get") {
      throw std::runtime_error("unknown request '" + std::string(msg) + "'");
    }
    host().send(conn, std::string(COUNTER_TAG) + " total=" + std::to_string(total_) + std::string(tag));
  }
  void on_tick(uint64_t) { ++ticks_; }
  void on_timer(hotswap::TimerId, uint64_t conn) { host().send(conn, std::string(COUNTER_TAG) + " timer fired"); }
  void on_config_change(std::string_view config) { config_ = std::string(config); }
  void on_connect(hotswap::ConnId conn, const hotswap::ConnInfo&) { connected_.insert(conn); }
  // A graceful stop: every client still connected hears goodbye before the host closes it.
  void on_stop() { host().broadcast({connected_.begin(), connected_.end()}, std::string(COUNTER_TAG) + " goodbye"); }
  void on_disconnect(hotswap::ConnId conn, hotswap::DisconnectReason) {
    connected_.erase(conn);
    ++disconnects_;
    if (in_message_) reentered_ = true;  // the host must never call us back from inside a callback
  }
  std::string run_task(std::string_view name, std::string_view args) {
    if (name == "double") {
      total_ *= 2;
      return "{\"total\":" + std::to_string(total_) + "}";
    }
    if (name == "fail") throw std::runtime_error("task failed on purpose");
    if (name == "announce") {
      host().send(std::stoull(std::string(args)), std::string(COUNTER_TAG) + " announced");
      return {};
    }
    if (name == "disconnects")
      return "{\"disconnects\":" + std::to_string(disconnects_) + ",\"reentered\":" + (reentered_ ? "true" : "false") +
             "}";
    throw hotswap::UnsupportedTask(name);
  }
  void export_state(hotswap::StateWriter& out) const {
    out.u64(total_);
    out.u64(ticks_);
    out.u32(static_cast<uint32_t>(per_conn_.size()));
    for (const auto& [conn, count] : per_conn_) {
      out.u64(conn);
      out.u64(count);
    }
  }
  void import_state(hotswap::StateReader& in) {
    total_ = in.u64();
    ticks_ = in.u64();
    uint32_t n = in.u32();
    for (uint32_t i = 0; i < n; ++i) {
      uint64_t conn = in.u64();
      per_conn_[conn] = in.u64();
    }
    in.expect_end();
  }

 private:
  std::set<hotswap::ConnId> connected_;  // test instrumentation, not exported: a swapped-in version starts empty
  bool in_message_ = false;
  bool reentered_ = false;
  uint64_t disconnects_ = 0;     // not part of the exported state: test instrumentation
  std::string config_ = "null";  // the latest runtime-config section, answered to "config"
  uint64_t total_ = 0;
  uint64_t ticks_ = 0;
  std::map<hotswap::ConnId, uint64_t> per_conn_;
};

HOTSWAP_MODULE(Counter)
