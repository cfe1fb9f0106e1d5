// handover 1.0.0 / 2.0.0: the module the blue-green end-to-end tests and the
// blue_green_handover benchmark drive (protocol: handover_protocol.hpp).
// It keeps a count per connection id, so that a connection whose id or count
// did not survive a swap or a handover answers with a wrong count, and runs a
// repeating timer whose firings it counts.
//
// State schema 1 (1.0.0):
//   u64 timer_id, u64 fires, u64 ticks, u64 total, u64 closed_conns,
//   u64 closed, u64 n, n x (u64 conn, u64 count)
// State schema 2 (2.0.0, HANDOVER_SCHEMA=2): schema 1 followed by str label
//   (the appup's extra.label, "none" when it has none). migrate_up reads
//   schema 1 or 2; migrate_down writes schema 1 (drops the label).
#include <hotswap/module.hpp>

#include <map>
#include <stdexcept>
#include <string>

#include "handover_protocol.hpp"

#ifndef HANDOVER_SCHEMA
#define HANDOVER_SCHEMA 1
#endif

namespace {

constexpr uint64_t kTimerPeriodMs = 20;
constexpr uint64_t kTimerTag = 7;

// A numbered request: 1 to 19 decimal digits, nothing else.
bool parse_seq(std::string_view text, uint64_t& seq) {
  if (text.empty() || text.size() > 19) return false;
  seq = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    seq = seq * 10 + uint64_t(c - '0');
  }
  return true;
}

}  // namespace

class Handover : public hotswap::Module<Handover> {
 public:
  static constexpr uint32_t kStateSchema = HANDOVER_SCHEMA;
  using Module::Module;

  void on_message(hotswap::ConnId conn, std::string_view request) {
    // Started by the first request, not in the constructor: an upgrade's new
    // instance is constructed too, and the timer it inherits keeps running.
    if (timer_id_ == 0) timer_id_ = host().start_timer(kTimerPeriodMs, kTimerPeriodMs, kTimerTag);
    uint64_t seq = 0;
    if (parse_seq(request, seq)) {
      const uint64_t count = ++per_conn_[conn];
      ++total_;
      host().send(conn, std::to_string(seq) + " " + std::to_string(conn) + " " + std::to_string(count) +
                            (HANDOVER_SCHEMA == 1 ? " v1" : " v2"));
    } else if (request == "stats") {
      host().send(conn, stats());
    } else {
      throw std::runtime_error("unknown request '" + std::string(request.substr(0, 64)) + "'");
    }
  }
  void on_disconnect(hotswap::ConnId conn, hotswap::DisconnectReason) {
    auto it = per_conn_.find(conn);
    if (it == per_conn_.end()) return;  // never made a numbered request (a stats query)
    ++closed_conns_;
    closed_ += it->second;
    per_conn_.erase(it);
  }
  void on_timer(hotswap::TimerId, uint64_t tag) {
    if (tag == kTimerTag) ++fires_;
  }
  void on_tick(uint64_t) { ++ticks_; }

  void export_state(hotswap::StateWriter& out) const {
    write_schema_1(out);
#if HANDOVER_SCHEMA == 2
    out.str(label_);
#endif
  }
  void import_state(hotswap::StateReader& in) {
    read_schema_1(in);
#if HANDOVER_SCHEMA == 2
    label_ = in.str();
#endif
    in.expect_end();
  }
  void migrate_up(const hotswap::MigrationFrom& from, hotswap::StateReader& in) {
    if (from.schema == kStateSchema) return import_state(in);
    if (from.schema != 1) throw std::runtime_error("handover: no migration from schema " + std::to_string(from.schema));
    read_schema_1(in);
    in.expect_end();
#if HANDOVER_SCHEMA == 2
    const nlohmann::json extra = from.extra();
    label_ = extra.is_object() ? extra.value("label", "none") : "none";
#endif
  }
  void migrate_down(const hotswap::MigrationTo& to, hotswap::StateWriter& out) const {
    if (to.schema == kStateSchema) return export_state(out);
    if (to.schema != 1) throw std::runtime_error("handover: no migration to schema " + std::to_string(to.schema));
    write_schema_1(out);
  }

 private:
  std::string stats() const {
    uint64_t checksum = 0;
    for (const auto& [conn, count] : per_conn_) checksum += hotswap::test::handover::connection_checksum(conn, count);
    return "stats version=" HOTSWAP_MODULE_VERSION " conns=" + std::to_string(per_conn_.size()) +
           " total=" + std::to_string(total_) + " closed_conns=" + std::to_string(closed_conns_) +
           " closed=" + std::to_string(closed_) + " checksum=" + std::to_string(checksum) +
           " fires=" + std::to_string(fires_) + " ticks=" + std::to_string(ticks_) + " label=" + label_;
  }
  void write_schema_1(hotswap::StateWriter& out) const {
    out.u64(timer_id_);
    out.u64(fires_);
    out.u64(ticks_);
    out.u64(total_);
    out.u64(closed_conns_);
    out.u64(closed_);
    out.u64(per_conn_.size());
    for (const auto& [conn, count] : per_conn_) {
      out.u64(conn);
      out.u64(count);
    }
  }
  void read_schema_1(hotswap::StateReader& in) {
    timer_id_ = in.u64();
    fires_ = in.u64();
    ticks_ = in.u64();
    total_ = in.u64();
    closed_conns_ = in.u64();
    closed_ = in.u64();
    for (uint64_t n = in.u64(); n > 0; --n) {
      const uint64_t conn = in.u64();
      per_conn_[conn] = in.u64();
    }
  }

  hotswap::TimerId timer_id_ = 0;
  uint64_t fires_ = 0;
  uint64_t ticks_ = 0;
  uint64_t total_ = 0;
  uint64_t closed_conns_ = 0;
  uint64_t closed_ = 0;
  std::map<hotswap::ConnId, uint64_t> per_conn_;
  std::string label_ = "-";
};

HOTSWAP_MODULE(Handover)
