#include "admin/admin_request.hpp"

#include <hotswap/appup/error.hpp>
#include <hotswap/appup/json_reader.hpp>

namespace hotswap::host {

AdminRequest parse_admin_request(std::string_view line) {
  AdminRequest parsed;
  try {
    parsed.request = appup::parse_json_bounded(line, "request");
  } catch (const appup::InputError& e) {
    parsed.error = "malformed JSON request: " + e.problem();
    return parsed;
  }
  const nlohmann::json& request = parsed.request;
  if (request.is_object()) {
    if (const auto id = request.find("id"); id != request.end()) parsed.id = *id;
  }
  const bool has_command = request.is_object() && request.contains("cmd") && request["cmd"].is_string();
  if (!has_command) parsed.error = "a request is a JSON object with a string \"cmd\"";
  return parsed;
}

}  // namespace hotswap::host
