// arena 2.0.0: players now have health and a score. Every move scores a point;
// health regenerates by 1 per second up to the maximum.
//
// State schema 2 (a real layout change from schema 1):
//   u32 start_health, u32 max_health, u64 total_moves,
//   u32 n, then n times: u64 conn, str name, i32 x, i32 y, u32 health, u64 score   (ascending conn)
//
// Schema 1 (arena 1.x) was:
//   u32 n, then n times: u64 conn, str name, i32 x, i32 y
//
// Upgrade from 1.x (appup `update`): players keep name and position, get
// extra.start_health health and score 0; extra.max_health caps regeneration.
// Downgrade to 1.x: health, score and the counters are dropped, which gives
// back exactly the bytes 1.x exported if nothing moved in between.
#include "arena_protocol.hpp"

#include <hotswap/module.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <string>

namespace {

constexpr uint32_t kDefaultHealth = 100;

struct Player {
  std::string name;
  int32_t x = 0;
  int32_t y = 0;
  uint32_t health = 0;
  uint64_t score = 0;
};

// Reads a health setting of the appup's `extra`, e.g. {"start_health": 100, "max_health": 100}.
uint32_t health_setting(const nlohmann::json& extra, const char* key) {
  if (!extra.is_object() || !extra.contains(key)) return kDefaultHealth;
  const nlohmann::json& v = extra[key];
  if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > 1000000)
    throw std::runtime_error(std::string("extra.") + key + " must be an integer from 1 to 1000000, got " + v.dump());
  return v.get<uint32_t>();
}

}  // namespace

class Arena : public hotswap::Module<Arena> {
 public:
  static constexpr uint32_t kStateSchema = 2;

  Arena(hotswap::Host host, std::string_view config_json)
      : Module(host), grid_(arena::grid_from_config(config_json)) {}

  void on_config_change(std::string_view config_json) { grid_ = arena::grid_from_config(config_json); }

  void on_message(hotswap::ConnId conn, std::string_view line) { host().send(conn, reply(conn, line)); }

  void on_disconnect(hotswap::ConnId conn, hotswap::DisconnectReason) {
    auto it = players_.find(conn);
    if (it == players_.end()) return;
    std::string name = std::move(it->second.name);
    players_.erase(it);
    host().broadcast(arena::others_of(players_, conn), "* left " + name);
  }

  // Regeneration follows the clock rather than counting ticks, so it stays at
  // 1 health per second whatever tick_hz runtime.json sets.
  void on_tick(uint64_t) {
    const uint64_t now = host().monotonic_ms();
    if (last_regen_ms_ == 0) last_regen_ms_ = now;
    const uint64_t seconds = (now - last_regen_ms_) / 1000;
    if (seconds == 0) return;
    last_regen_ms_ += seconds * 1000;
    for (auto& [conn, p] : players_)
      p.health = static_cast<uint32_t>(std::min<uint64_t>(max_health_, p.health + seconds));
  }

  std::string run_task(std::string_view name, std::string_view) {
    if (name == "players")
      return "{\"players\": " + std::to_string(players_.size()) + ", \"total_moves\": " +
             std::to_string(total_moves_) + "}";
    if (name == "reset_scores") {
      for (auto& [conn, p] : players_) p.score = 0;
      return "{\"reset\": " + std::to_string(players_.size()) + "}";
    }
    throw hotswap::UnsupportedTask(name);
  }

  void export_state(hotswap::StateWriter& out) const {
    out.u32(start_health_);
    out.u32(max_health_);
    out.u64(total_moves_);
    out.u32(static_cast<uint32_t>(players_.size()));
    for (const auto& [conn, p] : players_) {
      out.u64(conn);
      out.str(p.name);
      out.i32(p.x);
      out.i32(p.y);
      out.u32(p.health);
      out.u64(p.score);
    }
  }

  void import_state(hotswap::StateReader& in) {
    start_health_ = in.u32();
    max_health_ = in.u32();
    total_moves_ = in.u64();
    uint32_t n = in.u32();
    for (uint32_t i = 0; i < n; ++i) {
      uint64_t conn = in.u64();
      Player& p = players_[conn];
      p.name = in.str();
      p.x = in.i32();
      p.y = in.i32();
      p.health = in.u32();
      p.score = in.u64();
    }
    in.expect_end();
  }

  void migrate_up(const hotswap::MigrationFrom& from, hotswap::StateReader& in) {
    if (from.schema == kStateSchema) return import_state(in);
    if (from.schema != 1)
      throw std::runtime_error("cannot migrate from state schema " + std::to_string(from.schema) + " (version " +
                               std::string(from.version) + ")");
    const nlohmann::json extra = nlohmann::json::parse(from.extra_json);
    start_health_ = health_setting(extra, "start_health");
    max_health_ = health_setting(extra, "max_health");
    if (start_health_ > max_health_)
      throw std::runtime_error("extra.start_health (" + std::to_string(start_health_) +
                               ") is above extra.max_health (" + std::to_string(max_health_) + ")");
    uint32_t n = in.u32();
    for (uint32_t i = 0; i < n; ++i) {
      uint64_t conn = in.u64();
      Player& p = players_[conn];
      p.name = in.str();
      p.x = in.i32();
      p.y = in.i32();
      p.health = start_health_;
    }
    in.expect_end();
  }

  void migrate_down(const hotswap::MigrationTo& to, hotswap::StateWriter& out) const {
    if (to.schema == kStateSchema) return export_state(out);
    if (to.schema != 1)
      throw std::runtime_error("cannot migrate down to state schema " + std::to_string(to.schema) + " (version " +
                               std::string(to.version) + ")");
    out.u32(static_cast<uint32_t>(players_.size()));
    for (const auto& [conn, p] : players_) {
      out.u64(conn);
      out.str(p.name);
      out.i32(p.x);
      out.i32(p.y);
    }
  }

 private:
  std::string reply(hotswap::ConnId conn, std::string_view line) {
    arena::Request req;
    if (!arena::parse_request(line, req)) return arena::err(req.seq, "bad request");
    const uint64_t seq = req.seq;

    if (req.command == "join") {
      if (players_.count(conn)) return arena::err(seq, "already joined");
      if (!arena::valid_name(req.args)) return arena::err(seq, "bad name");
      auto [x, y] = arena::spawn_position(conn, grid_);
      players_[conn] = Player{std::string(req.args), x, y, start_health_, 0};
      return arena::ok(seq, "joined " + std::to_string(x) + " " + std::to_string(y));
    }
    if (req.command != "move" && req.command != "chat" && req.command != "look" && req.command != "whoami")
      return arena::err(seq, "unknown command");
    auto it = players_.find(conn);
    if (it == players_.end()) return arena::err(seq, "join first");
    Player& me = it->second;

    if (req.command == "move") {
      int dx = 0, dy = 0;
      if (!arena::parse_move(req.args, dx, dy)) return arena::err(seq, "bad move");
      me.x = std::clamp(me.x + dx, 0, grid_ - 1);
      me.y = std::clamp(me.y + dy, 0, grid_ - 1);
      ++me.score;
      ++total_moves_;
      return arena::ok(seq, "pos " + std::to_string(me.x) + " " + std::to_string(me.y));
    }
    if (req.command == "chat") {
      if (req.args.empty() || req.args.size() > arena::kMaxChatLength) return arena::err(seq, "bad chat");
      host().broadcast(arena::others_of(players_, conn), "* chat " + me.name + " " + std::string(req.args));
      return arena::ok(seq, "chat");
    }
    if (!req.args.empty()) return arena::err(seq, "bad request");  // look and whoami take no arguments
    if (req.command == "look") return arena::ok(seq, arena::look_reply(players_, conn));
    return arena::ok(seq, me.name + " " + std::to_string(me.x) + " " + std::to_string(me.y) + " hp " +
                              std::to_string(me.health) + " score " + std::to_string(me.score));
  }

  int32_t grid_;
  uint32_t start_health_ = kDefaultHealth;  // health of players who join from now on
  uint32_t max_health_ = kDefaultHealth;    // regeneration stops here
  uint64_t total_moves_ = 0;                // every move since 2.0.0 took over
  uint64_t last_regen_ms_ = 0;              // clock reading of the last regeneration; 0: not started
  std::map<hotswap::ConnId, Player> players_;
};

HOTSWAP_MODULE(Arena)
