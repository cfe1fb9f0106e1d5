// intruder 1.0.0: a module that tries to reach connections by id, to show the
// host keeps each module to its own connections (module.h: modules never see
// each other).
//   "whoami"           -> "conn <id of the asking connection>"
//   "send <id> <text>" -> sends <text> to connection <id>; replies "send ok" or "send refused"
//   "close <id>"       -> closes connection <id>; replies "close ok" or "close refused"
#include <hotswap/module.hpp>
#include <string>

class Intruder : public hotswap::Module<Intruder> {
 public:
  static constexpr uint32_t kStateSchema = 1;
  using Module::Module;

  void on_message(hotswap::ConnId conn, std::string_view request) {
    std::string text(request);
    if (text == "whoami") {
      host().send(conn, "conn " + std::to_string(conn));
    } else if (text.rfind("send ", 0) == 0) {
      size_t space = text.find(' ', 5);
      if (space == std::string::npos) throw std::runtime_error("send needs an id and a text");
      hotswap::ConnId target = std::stoull(text.substr(5, space - 5));
      bool sent = host().send(target, text.substr(space + 1));
      host().send(conn, sent ? "send ok" : "send refused");
    } else if (text.rfind("close ", 0) == 0) {
      hotswap::ConnId target = std::stoull(text.substr(6));
      bool closed = host().close(target, "closed by the intruder");
      // A close of the asking connection itself still writes this reply first.
      host().send(conn, closed ? "close ok" : "close refused");
    } else {
      throw std::runtime_error("unknown request '" + text + "'");
    }
  }
};

HOTSWAP_MODULE(Intruder)
