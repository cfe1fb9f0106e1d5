// arena 1.0.0 and 1.1.0: players walk a square grid and chat.
//
// State schema 1 (export_state, little-endian, see hotswap::StateWriter):
//   u32 n, then n times: u64 conn, str name, i32 x, i32 y      (ascending conn)
//
// 1.0.0 ships with a bug: the clamp lets x or y reach `grid`, one cell past the
// edge. 1.1.0 is the same file built with ARENA_FIXED_CLAMP: a code-only
// change, so its appup says load_module and the state passes through as is.
//
// The players live in one state type, ArenaState, that both versions share
// (hotswap::Module<Arena, ArenaState>): the 1.0.0 <-> 1.1.0 swap hands that
// object over in place instead of exporting and importing it, so it costs the
// same at 100 players as at 5,000. ArenaState holds heap memory only (a
// std::map of std::string names), as the adoption rule in module.h asks; the
// grid size is config, not state, and each version reads it afresh.
// export_state/import_state stay: 2.0.0 (schema 2) migrates from those bytes.
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

struct ArenaState {
  std::map<hotswap::ConnId, Player> players;
};

class Arena : public hotswap::Module<Arena, ArenaState> {
 public:
  static constexpr uint32_t kStateSchema = 1;
  static constexpr uint32_t kStateLayout = 1;  // bump when ArenaState or Player change

  Arena(hotswap::Host host, std::string_view config_json)
      : Module(host), grid_(arena::grid_from_config(config_json)) {}

  void on_config_change(std::string_view config_json) { grid_ = arena::grid_from_config(config_json); }

  void on_message(hotswap::ConnId conn, std::string_view line) { host().send(conn, reply(conn, line)); }

  void on_disconnect(hotswap::ConnId conn, hotswap::DisconnectReason) {
    auto it = players().find(conn);
    if (it == players().end()) return;
    std::string name = std::move(it->second.name);
    players().erase(it);
    host().broadcast(arena::others_of(players(), conn), "* left " + name);
  }

  std::string run_task(std::string_view name, std::string_view) {
    if (name == "players") return "{\"players\": " + std::to_string(players().size()) + "}";
    throw hotswap::UnsupportedTask(name);
  }

  void export_state(hotswap::StateWriter& out) const {
    out.u32(static_cast<uint32_t>(players().size()));
    for (const auto& [conn, p] : players()) {
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
      Player& p = players()[conn];
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
      if (players().count(conn)) return arena::err(seq, "already joined");
      if (!arena::valid_name(req.args)) return arena::err(seq, "bad name");
      auto [x, y] = arena::spawn_position(conn, grid_);
      players()[conn] = Player{std::string(req.args), x, y};
      return arena::ok(seq, "joined " + std::to_string(x) + " " + std::to_string(y));
    }
    if (req.command != "move" && req.command != "chat" && req.command != "look" && req.command != "whoami")
      return arena::err(seq, "unknown command");
    auto it = players().find(conn);
    if (it == players().end()) return arena::err(seq, "join first");
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
      host().broadcast(arena::others_of(players(), conn), "* chat " + me.name + " " + std::string(req.args));
      return arena::ok(seq, "chat");
    }
    if (!req.args.empty()) return arena::err(seq, "bad request");  // look and whoami take no arguments
    if (req.command == "look") return arena::ok(seq, arena::look_reply(players(), conn));
    return arena::ok(seq, me.name + " " + std::to_string(me.x) + " " + std::to_string(me.y));
  }

  int32_t clamp(int32_t v) const {
    // The last cell is grid - 1. 1.0.0 got this wrong and allowed `grid`.
    const int32_t last = kFixedClamp ? grid_ - 1 : grid_;
    return std::clamp(v, 0, last);
  }

  std::map<hotswap::ConnId, Player>& players() { return state().players; }
  const std::map<hotswap::ConnId, Player>& players() const { return state().players; }

  int32_t grid_;
};

HOTSWAP_MODULE(Arena)
