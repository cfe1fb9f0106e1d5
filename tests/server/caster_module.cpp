// caster 1.0.0: broadcasts and lists its connections through the host
// (module.h broadcast_all / list_connections, module.hpp Host::broadcast and
// Host::connections). Requests, one per message; `\n` in a text stands for a
// newline (a message line framing cannot carry):
//   "all <text>"             -> broadcast(<text>) to every connection; replies "sent=S skipped=K"
//   "on <listener> <text>"   -> the same for one listener's connections
//   "list" / "list <listener>" -> "conns <id>@<listener> ..." (ascending ids)
// A refused request (a listener that is not the module's) replies "error <message>".
#include <hotswap/module.hpp>
#include <string>

class Caster : public hotswap::Module<Caster> {
 public:
  static constexpr uint32_t kStateSchema = 1;
  using Module::Module;

  void on_message(hotswap::ConnId conn, std::string_view request) {
    try {
      host().send(conn, answer(std::string(request)));
    } catch (const std::exception& e) {
      host().send(conn, std::string("error ") + e.what());
    }
  }

 private:
  static std::string unescape(std::string text) {
    for (size_t at = text.find("\\n"); at != std::string::npos; at = text.find("\\n", at + 1)) text.replace(at, 2, "\n");
    return text;
  }
  static std::string counts(const hotswap::BroadcastResult& result) {
    return "sent=" + std::to_string(result.sent) + " skipped=" + std::to_string(result.skipped);
  }

  std::string answer(const std::string& text) {
    if (text.rfind("all ", 0) == 0) return counts(host().broadcast(unescape(text.substr(4))));
    if (text.rfind("on ", 0) == 0) {
      const size_t space = text.find(' ', 3);
      if (space == std::string::npos) throw std::runtime_error("on needs a listener and a text");
      return counts(host().broadcast(text.substr(3, space - 3), unescape(text.substr(space + 1))));
    }
    if (text == "list" || text.rfind("list ", 0) == 0) {
      const std::vector<hotswap::Connection> connections =
          text == "list" ? host().connections() : host().connections(text.substr(5));
      std::string out = "conns";
      for (const hotswap::Connection& c : connections) out += " " + std::to_string(c.id) + "@" + c.listener;
      return out;
    }
    throw std::runtime_error("unknown request '" + text + "'");
  }
};

HOTSWAP_MODULE(Caster)
