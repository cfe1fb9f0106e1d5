// The admin request parser: one line from the admin socket. What it accepts
// is an object with a string "cmd"; whatever it returns can be answered (the
// reply carries the id, dumped as the server does).
#include "admin/admin_request.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const hotswap::host::AdminRequest parsed = hotswap::host::parse_admin_request(hotswap::fuzz::as_text(data, size));
  if (parsed.error.empty()) {
    HOTSWAP_FUZZ_CHECK(parsed.request.is_object());
    HOTSWAP_FUZZ_CHECK(parsed.request.at("cmd").is_string());
  }
  const nlohmann::json reply = {{"id", parsed.id}, {"ok", false}, {"code", "bad_request"}, {"error", parsed.error}};
  (void)reply.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return 0;
}
