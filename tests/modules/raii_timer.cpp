// raii 1.0.0 / 1.1.0 — a module that owns its timer the plain C++ way: an RAII
// member cancels it in the destructor, and the destructor says goodbye.
// State schema 1: u64 timer id, u64 conn.
// "arm MS" starts a repeating timer (cancelling the previous one) and replies
// "<tag> armed"; each firing sends "<tag> tick" to the connection that armed it.
// On destroy it sends "<tag> destroyed" to that connection, and logs what every
// host function answered there: "destroy: send=S close=S broadcast=S
// timer_start=S timer_cancel=S monotonic=ok|zero" (S: a hotswap_status number).
#include <hotswap/module.hpp>
#include <string>

#ifndef RAII_TAG
#define RAII_TAG "v1"
#endif

namespace {

// Cancels the timer it owns when it goes away (or is given another one).
class OwnedTimer {
 public:
  explicit OwnedTimer(hotswap::Host host) : host_(host) {}
  OwnedTimer(const OwnedTimer&) = delete;
  OwnedTimer& operator=(const OwnedTimer&) = delete;
  ~OwnedTimer() { reset(0); }
  void reset(hotswap::TimerId id) {
    if (id_ != 0) host_.cancel_timer(id_);
    id_ = id;
  }
  hotswap::TimerId id() const { return id_; }

 private:
  hotswap::Host host_;
  hotswap::TimerId id_ = 0;
};

}  // namespace

class Raii : public hotswap::Module<Raii> {
 public:
  static constexpr uint32_t kStateSchema = 1;
  Raii(hotswap::Host host, std::string_view config) : Module(host, config), timer_(host) {}
  ~Raii() {
    host().send(conn_, std::string(RAII_TAG) + " destroyed");
    log_what_the_host_answers();
  }

  void on_message(hotswap::ConnId conn, std::string_view msg) {
    if (msg.rfind("arm ", 0) != 0) throw std::runtime_error("unknown request '" + std::string(msg) + "'");
    uint64_t ms = std::stoull(std::string(msg.substr(4)));
    conn_ = conn;
    timer_.reset(host().start_timer(ms, ms, 0));
    host().send(conn, std::string(RAII_TAG) + " armed");
  }
  void on_timer(hotswap::TimerId, uint64_t) { host().send(conn_, std::string(RAII_TAG) + " tick"); }
  void export_state(hotswap::StateWriter& out) const {
    out.u64(timer_.id());
    out.u64(conn_);
  }
  void import_state(hotswap::StateReader& in) {
    timer_.reset(in.u64());  // the timer belongs to the module, so this version owns it now
    conn_ = in.u64();
    in.expect_end();
  }

 private:
  void log_what_the_host_answers() const {
    const hotswap_host_api* api = host().api();
    hotswap_host_ctx* ctx = host().ctx();
    hotswap_conn_id conns[1] = {conn_};
    hotswap_timer_id started = 0;
    int send = api->send(ctx, conn_, "x", 1);
    int close = api->close(ctx, conn_, "from destroy");
    int broadcast = api->broadcast(ctx, conns, 1, "x", 1);
    int timer_start = api->timer_start(ctx, 10, 0, 0, &started);
    int timer_cancel = api->timer_cancel(ctx, timer_.id());
    host().info("destroy: send=" + std::to_string(send) + " close=" + std::to_string(close) +
                " broadcast=" + std::to_string(broadcast) + " timer_start=" + std::to_string(timer_start) +
                " timer_cancel=" + std::to_string(timer_cancel) +
                " monotonic=" + (api->monotonic_ms(ctx) != 0 ? "ok" : "zero"));
  }

  OwnedTimer timer_;
  hotswap::ConnId conn_ = 0;
};

HOTSWAP_MODULE(Raii)
