// counter 3.0.0 — state schema 3 (another layout change):
//   u64 ticks, u32 bonus, str label, i64 total, u64 n, n x (u64 conn, u64 messages, i64 count)
// Upgrade from schema 2: bonus from extra.bonus (default 0). Downgrade to schema 2 drops bonus.
#include <hotswap/module.hpp>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "counter_protocol.hpp"

class Counter : public hotswap::Module<Counter> {
 public:
  static constexpr uint32_t kStateSchema = 3;
  using Module::Module;

  void on_message(hotswap::ConnId conn, std::string_view request) {
    auto [msg, tag] = split_tag(request);
    Entry& e = per_conn_[conn];
    ++e.messages;
    if (msg.rfind("add ", 0) == 0) {
      int64_t n = std::stoll(std::string(msg.substr(4))) + bonus_;
      total_ += n;
      e.count += n;
    } else if (msg != "get") {
      throw std::runtime_error("unknown request '" + std::string(msg) + "'");
    }
    host().send(conn, "v3 total=" + std::to_string(total_) + std::string(tag));
  }
  void on_tick(uint64_t) { ++ticks_; }

  void export_state(hotswap::StateWriter& out) const {
    out.u64(ticks_);
    out.u32(bonus_);
    out.str(label_);
    out.i64(total_);
    out.u64(per_conn_.size());
    for (const auto& [conn, e] : per_conn_) {
      out.u64(conn);
      out.u64(e.messages);
      out.i64(e.count);
    }
  }
  void import_state(hotswap::StateReader& in) {
    ticks_ = in.u64();
    bonus_ = in.u32();
    label_ = in.str();
    total_ = in.i64();
    uint64_t n = in.u64();
    for (uint64_t i = 0; i < n; ++i) {
      Entry& e = per_conn_[in.u64()];
      e.messages = in.u64();
      e.count = in.i64();
    }
    in.expect_end();
  }
  void migrate_up(const hotswap::MigrationFrom& from, hotswap::StateReader& in) {
    if (from.schema == kStateSchema) return import_state(in);
    if (from.schema != 2) throw std::runtime_error("cannot migrate from schema " + std::to_string(from.schema));
    nlohmann::json extra = nlohmann::json::parse(from.extra_json);
    bonus_ = extra.is_object() ? extra.value("bonus", 0u) : 0u;
    label_ = in.str();
    uint64_t n = in.u64();
    for (uint64_t i = 0; i < n; ++i) {
      Entry& e = per_conn_[in.u64()];
      e.count = in.i64();
      e.messages = in.u64();
    }
    total_ = in.i64();
    ticks_ = in.u64();
    in.expect_end();
  }
  void migrate_down(const hotswap::MigrationTo& to, hotswap::StateWriter& out) const {
    if (to.schema == kStateSchema) return export_state(out);
    if (to.schema != 2) throw std::runtime_error("cannot migrate down to schema " + std::to_string(to.schema));
    out.str(label_);
    out.u64(per_conn_.size());
    for (const auto& [conn, e] : per_conn_) {
      out.u64(conn);
      out.i64(e.count);
      out.u64(e.messages);
    }
    out.i64(total_);
    out.u64(ticks_);
  }

 private:
  struct Entry {
    int64_t count = 0;
    uint64_t messages = 0;
  };
  uint64_t ticks_ = 0;
  uint32_t bonus_ = 0;
  std::string label_ = "default";
  int64_t total_ = 0;
  std::map<hotswap::ConnId, Entry> per_conn_;
};

HOTSWAP_MODULE(Counter)
