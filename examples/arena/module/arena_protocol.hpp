// The arena's wire protocol and the rules every version shares. Each version's
// state layout lives in its own source file (arena_v1.cpp, arena_v2.cpp); what is
// here never crosses a version boundary, so changing it only affects the
// versions built after the change.
//
// One request per line, one reply per request, in order:
//   <seq> join <name>     -> <seq> ok joined <x> <y>
//   <seq> move <dx> <dy>  -> <seq> ok pos <x> <y>          (dx, dy each -1, 0 or 1)
//   <seq> chat <text>     -> <seq> ok chat                 (others get "* chat <name> <text>")
//   <seq> look            -> <seq> ok players <count> [name:x,y ...]
//   <seq> whoami          -> <seq> ok <name> <x> <y> [...]
//   failures              -> <seq> err <reason>            ("0 err bad request" when there is no seq)
// Lines starting with "* " are pushes, never replies.
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace arena {

constexpr int kDefaultGrid = 64;
constexpr int kMaxGrid = 1 << 20;
constexpr size_t kMaxNameLength = 16;
constexpr size_t kMaxChatLength = 200;
constexpr size_t kLookLimit = 8;  // nearest players listed by `look`

struct Request {
  uint64_t seq = 0;           // 0 when the line has no readable sequence number
  std::string_view command;
  std::string_view args;      // everything after "<seq> <command> ", possibly empty
};

// Splits "<seq> <command>[ <args>]". Returns false for a malformed line; `out.seq`
// is still set when the sequence number itself was readable, so the error
// reply can carry it.
inline bool parse_request(std::string_view line, Request& out) {
  out = Request{};
  size_t space = line.find(' ');
  std::string_view seq_text = line.substr(0, space);
  auto [end, ec] = std::from_chars(seq_text.data(), seq_text.data() + seq_text.size(), out.seq);
  if (seq_text.empty() || ec != std::errc() || end != seq_text.data() + seq_text.size()) {
    out.seq = 0;
    return false;
  }
  if (space == std::string_view::npos) return false;
  std::string_view rest = line.substr(space + 1);
  space = rest.find(' ');
  out.command = rest.substr(0, space);
  out.args = space == std::string_view::npos ? std::string_view() : rest.substr(space + 1);
  return !out.command.empty();
}

inline std::string ok(uint64_t seq, std::string_view text) {
  return std::to_string(seq) + " ok " + std::string(text);
}
inline std::string err(uint64_t seq, std::string_view reason) {
  return std::to_string(seq) + " err " + std::string(reason);
}

// 1..16 characters of [A-Za-z0-9_]: no spaces, so names stay single tokens in replies and pushes.
inline bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

// "<dx> <dy>", each exactly -1, 0 or 1.
inline bool parse_move(std::string_view args, int& dx, int& dy) {
  auto step = [](std::string_view text, int& v) {
    if (text == "-1") v = -1;
    else if (text == "0") v = 0;
    else if (text == "1") v = 1;
    else return false;
    return true;
  };
  size_t space = args.find(' ');
  return space != std::string_view::npos && step(args.substr(0, space), dx) && step(args.substr(space + 1), dy);
}

// The spawn cell depends only on the connection id, so a test (or a replay)
// knows where a player appears. splitmix64 spreads consecutive ids over the grid.
inline std::pair<int, int> spawn_position(uint64_t conn, int grid) {
  uint64_t h = conn + 0x9e3779b97f4a7c15ull;
  h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
  h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
  h ^= h >> 31;
  return {static_cast<int>((h & 0xffffffffu) % uint64_t(grid)), static_cast<int>((h >> 32) % uint64_t(grid))};
}

// The module's section of runtime.json ("modules": {"arena": {"config": {...}}}):
// null or {"grid": N}. A typo must not silently fall back to the default, so
// unknown keys are refused.
inline int grid_from_config(std::string_view config_json) {
  nlohmann::json config = nlohmann::json::parse(config_json);
  if (config.is_null()) return kDefaultGrid;
  if (!config.is_object()) throw std::runtime_error("arena config must be an object, got " + config.dump());
  int grid = kDefaultGrid;
  for (const auto& [key, value] : config.items()) {
    if (key != "grid") throw std::runtime_error("arena config: unknown key '" + key + "' (known: grid)");
    if (!value.is_number_integer() || value.get<int64_t>() < 2 || value.get<int64_t>() > kMaxGrid)
      throw std::runtime_error("arena config: grid must be an integer from 2 to " + std::to_string(kMaxGrid) +
                               ", got " + value.dump());
    grid = value.get<int>();
  }
  return grid;
}

// `look`: "players <count>" (every joined player, the asker included), then
// the kLookLimit nearest other players as name:x,y, nearest first (ties by
// connection id, so the answer is deterministic). Players is a map from
// connection id to a struct with name, x and y.
template <class Players>
std::string look_reply(const Players& players, uint64_t self) {
  const auto& me = players.at(self);
  struct Seen {
    int64_t distance;
    uint64_t conn;
    const typename Players::mapped_type* player;
  };
  std::vector<Seen> others;
  others.reserve(players.size());
  for (const auto& [conn, p] : players) {
    if (conn == self) continue;
    int64_t dx = p.x - me.x, dy = p.y - me.y;
    others.push_back({dx * dx + dy * dy, conn, &p});
  }
  size_t shown = std::min(others.size(), kLookLimit);
  std::partial_sort(others.begin(), others.begin() + shown, others.end(), [](const Seen& a, const Seen& b) {
    return a.distance != b.distance ? a.distance < b.distance : a.conn < b.conn;
  });
  std::string text = "players " + std::to_string(players.size());
  for (size_t i = 0; i < shown; ++i) {
    const auto& p = *others[i].player;
    text += " " + p.name + ":" + std::to_string(p.x) + "," + std::to_string(p.y);
  }
  return text;
}

// The connections of every joined player except `self`: who gets a push.
template <class Players>
std::vector<uint64_t> others_of(const Players& players, uint64_t self) {
  std::vector<uint64_t> conns;
  conns.reserve(players.size());
  for (const auto& entry : players)
    if (entry.first != self) conns.push_back(entry.first);
  return conns;
}

}  // namespace arena
