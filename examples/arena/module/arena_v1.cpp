// arena 1.0.0 and 1.1.0: players walk a square grid and chat.
//
// State schema 1 (export_state, little-endian, see hotswap::StateWriter):
//   u32 n, then n times: u64 conn, str name, i32 x, i32 y      (ascending conn)
//
// 1.0.0 ships with a bug: the clamp lets x or y reach `grid`, one cell past the
// edge. 1.1.0 is the same file built with ARENA_FIXED_CLAMP: a code-only
// change, so its appup says load_module and the state passes through as is.
#include "arena_protocol.hpp"

#include <hotswap/module.hpp>

#include <algorithm>
#include <map>
#include <string>

namespace {

#ifdef ARENA_FIXED_CLAMP
constexpr bool kFixedClamp = true;
#else
constexpr bool kFixedClamp = false;
#endif

struct Player {
  std::string name;
  int32_t x = 0;
  int32_t y = 0;
};

}  // namespace

class Arena : public hotswap::Module<Arena> {
 public:
  static constexpr uint32_t kStateSchema = 1;

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

  std::string run_task(std::string_view name, std::string_view) {
    if (name == "players") return "{\"players\": " + std::to_string(players_.size()) + "}";
    throw hotswap::UnsupportedTask(name);
  }

  void export_state(hotswap::StateWriter& out) const {
    out.u32(static_cast<uint32_t>(players_.size()));
    for (const auto& [conn, p] : players_) {
      out.u64(conn);
      out.str(p.name);
      out.i32(p.x);
      out.i32(p.y);
    }
  }

  void import_state(hotswap::StateReader& in) {
    uint32_t n = in.u32();
    for (uint32_t i = 0; i < n; ++i) {
      uint64_t conn = in.u64();
      Player& p = players_[conn];
      p.name = in.str();
      p.x = in.i32();
      p.y = in.i32();
    }
    in.expect_end();
  }

 private:
  // The one reply line for one request line.
  std::string reply(hotswap::ConnId conn, std::string_view line) {
    arena::Request req;
    if (!arena::parse_request(line, req)) return arena::err(req.seq, "bad request");
    const uint64_t seq = req.seq;

    if (req.command == "join") {
      if (players_.count(conn)) return arena::err(seq, "already joined");
      if (!arena::valid_name(req.args)) return arena::err(seq, "bad name");
      auto [x, y] = arena::spawn_position(conn, grid_);
      players_[conn] = Player{std::string(req.args), x, y};
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
      me.x = clamp(me.x + dx);
      me.y = clamp(me.y + dy);
      return arena::ok(seq, "pos " + std::to_string(me.x) + " " + std::to_string(me.y));
    }
    if (req.command == "chat") {
      if (req.args.empty() || req.args.size() > arena::kMaxChatLength) return arena::err(seq, "bad chat");
      host().broadcast(arena::others_of(players_, conn), "* chat " + me.name + " " + std::string(req.args));
      return arena::ok(seq, "chat");
    }
    if (!req.args.empty()) return arena::err(seq, "bad request");  // look and whoami take no arguments
    if (req.command == "look") return arena::ok(seq, arena::look_reply(players_, conn));
    return arena::ok(seq, me.name + " " + std::to_string(me.x) + " " + std::to_string(me.y));
  }

  int32_t clamp(int32_t v) const {
    // The last cell is grid - 1. 1.0.0 got this wrong and allowed `grid`.
    const int32_t last = kFixedClamp ? grid_ - 1 : grid_;
    return std::clamp(v, 0, last);
  }

  int32_t grid_;
  std::map<hotswap::ConnId, Player> players_;
};

HOTSWAP_MODULE(Arena)
