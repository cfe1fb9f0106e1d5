// tally: the rehearsal kit's own test module, one source for every version.
//
// Requests (one line each, one reply each):
//   add N      -> "total T count C"   adds N to this connection's count and the total
//   get        -> "total T count C" (+ " label L ticks K" from schema 2 on)
//   remind MS  -> "ok"                arms a one-shot timer; MS later "reminder" is pushed
//   bye        -> "bye"               and the module closes the connection
// A connection that leaves takes its count with it; the total stays.
//
// State schema 1 (TALLY_SCHEMA=1, 1.x):
//   u64 total, u32 n, n x (u64 conn, u64 count)
// State schema 2 (TALLY_SCHEMA=2, 2.x):
//   str label, u64 ticks, u64 total, u32 n, n x (u64 conn, u64 count)
// Upgrade 1 -> 2 (appup update): label from extra.label (a string; default
// "none"), ticks 0. Downgrade 2 -> 1: drops label and ticks.
//
// Deliberate defects, one per build flag, for the kit to catch:
//   TALLY_LOSES_TOTAL  migrate_down writes a total of 0 (the round trip loses it)
#include <hotswap/module.hpp>

#include <map>
#include <nlohmann/json.hpp>
#include <string>

#ifndef TALLY_SCHEMA
#error "build tally with TALLY_SCHEMA=1 or 2"
#endif

class Tally : public hotswap::Module<Tally> {
 public:
  static constexpr uint32_t kStateSchema = TALLY_SCHEMA;
  using Module::Module;

  void on_message(hotswap::ConnId conn, std::string_view line) {
    if (line.rfind("add ", 0) == 0) {
      const uint64_t n = std::stoull(std::string(line.substr(4)));
      total_ += n;
      counts_[conn] += n;
      return reply(conn);
    }
    if (line == "get") return reply(conn, kStateSchema >= 2 ? " label " + label_ + " ticks " + std::to_string(ticks_) : "");
    if (line.rfind("remind ", 0) == 0) {
      host().start_timer(std::stoull(std::string(line.substr(7))), 0, conn);
      host().send(conn, "ok");
      return;
    }
    if (line == "bye") {
      host().send(conn, "bye");
      host().close(conn, "asked to leave");
      return;
    }
    throw std::runtime_error("unknown request '" + std::string(line) + "'");
  }
  void on_disconnect(hotswap::ConnId conn, hotswap::DisconnectReason) { counts_.erase(conn); }
  void on_tick(uint64_t) {
    if (kStateSchema >= 2) ++ticks_;
  }
  void on_timer(hotswap::TimerId, uint64_t conn) { host().send(conn, "reminder"); }

  void export_state(hotswap::StateWriter& out) const {
    if (kStateSchema >= 2) {
      out.str(label_);
      out.u64(ticks_);
    }
    write_counts(out, total_);
  }
  void import_state(hotswap::StateReader& in) {
    if (kStateSchema >= 2) {
      label_ = in.str();
      ticks_ = in.u64();
    }
    read_counts(in);
  }
  void migrate_up(const hotswap::MigrationFrom& from, hotswap::StateReader& in) {
    if (from.schema == kStateSchema) return import_state(in);
    if (from.schema != 1 || kStateSchema != 2)
      throw std::runtime_error("cannot migrate from schema " + std::to_string(from.schema));
    const nlohmann::json extra = nlohmann::json::parse(from.extra_json);
    label_ = "none";
    if (extra.is_object() && extra.contains("label")) {
      if (!extra["label"].is_string()) throw std::runtime_error("extra.label must be a string, got " + extra["label"].dump());
      label_ = extra["label"].get<std::string>();
    }
    read_counts(in);
  }
  void migrate_down(const hotswap::MigrationTo& to, hotswap::StateWriter& out) const {
    if (to.schema == kStateSchema) return export_state(out);
    if (to.schema != 1) throw std::runtime_error("cannot migrate down to schema " + std::to_string(to.schema));
#ifdef TALLY_LOSES_TOTAL
    write_counts(out, 0);
#else
    write_counts(out, total_);
#endif
  }

 private:
  void reply(hotswap::ConnId conn, const std::string& more = {}) {
    auto it = counts_.find(conn);
    host().send(conn, "total " + std::to_string(total_) + " count " +
                          std::to_string(it == counts_.end() ? 0 : it->second) + more);
  }
  void write_counts(hotswap::StateWriter& out, uint64_t total) const {
    out.u64(total);
    out.u32(static_cast<uint32_t>(counts_.size()));
    for (const auto& [conn, count] : counts_) {
      out.u64(conn);
      out.u64(count);
    }
  }
  void read_counts(hotswap::StateReader& in) {
    total_ = in.u64();
    const uint32_t n = in.u32();
    for (uint32_t i = 0; i < n; ++i) {
      const uint64_t conn = in.u64();
      counts_[conn] = in.u64();
    }
    in.expect_end();
  }

  std::string label_ = "none";
  uint64_t ticks_ = 0;
  uint64_t total_ = 0;
  std::map<hotswap::ConnId, uint64_t> counts_;
};

HOTSWAP_MODULE(Tally)
