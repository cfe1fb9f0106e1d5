// One admin request line, parsed and checked (the protocol: admin_server.hpp).
// Pure: no socket, no state, so that it can be tested and fuzzed alone.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace hotswap::host {

struct AdminRequest {
  nlohmann::json request;  // a JSON object with a string "cmd", when error is empty
  nlohmann::json id;       // the request's "id" (null when absent or unreadable): the reply carries it
  std::string error;       // empty when the request is well formed; else what a bad_request reply says
};

// Requests come from any local client of the host's user: the line is parsed
// with appup's depth limit, so that nothing recursive (copy, dump) ever sees a
// deeply nested value.
AdminRequest parse_admin_request(std::string_view line);

}  // namespace hotswap::host
