// Parsing one admin request line (admin/admin_request.hpp); the fuzz target
// tests/fuzz/fuzz_admin_request.cpp drives the same function.
#include <catch2/catch.hpp>
#include <string>

#include "admin/admin_request.hpp"

using hotswap::host::AdminRequest;
using hotswap::host::parse_admin_request;

TEST_CASE("a well-formed admin request is returned with its id", "[admin_request]") {
  const AdminRequest parsed = parse_admin_request(R"({"id": 7, "cmd": "plan", "version": "2.0.0"})");
  CHECK(parsed.error.empty());
  CHECK(parsed.id == 7);
  CHECK(parsed.request["cmd"] == "plan");
  CHECK(parsed.request["version"] == "2.0.0");
}

TEST_CASE("a malformed admin request says what is wrong and keeps the id it could read", "[admin_request]") {
  const AdminRequest not_json = parse_admin_request(R"({"id": 7, "cmd": )");
  CHECK_THAT(not_json.error, Catch::StartsWith("malformed JSON request: invalid JSON: "));
  CHECK(not_json.id.is_null());

  const AdminRequest no_command = parse_admin_request(R"({"id": "x", "command": "status"})");
  CHECK(no_command.error == "a request is a JSON object with a string \"cmd\"");
  CHECK(no_command.id == "x");

  CHECK(parse_admin_request(R"({"cmd": 3})").error == "a request is a JSON object with a string \"cmd\"");
  CHECK(parse_admin_request("[1, 2]").error == "a request is a JSON object with a string \"cmd\"");
  CHECK(parse_admin_request("[1, 2]").id.is_null());
}

// The id is copied into every reply and dumped: 100k levels overflowed the stack.
TEST_CASE("an admin request nested deeper than 64 levels is refused before its id is copied", "[admin_request]") {
  const std::string deep_id = std::string(100'000, '[') + std::string(100'000, ']');
  const AdminRequest parsed = parse_admin_request(R"({"id": )" + deep_id + R"(, "cmd": "status"})");
  CHECK(parsed.error == "malformed JSON request: JSON nested deeper than 64 levels");
  CHECK(parsed.id.is_null());

  const std::string deep_args = std::string(63, '[') + std::string(63, ']');
  CHECK(parse_admin_request(R"({"cmd": "status", "args": )" + deep_args + "}").error.empty());
}

// Found by tests/fuzz/fuzz_admin_request (corpus/fuzz_admin_request/number-overflow).
TEST_CASE("an admin request with a number too large for a double is a malformed request", "[admin_request]") {
  const AdminRequest parsed =
      parse_admin_request(R"({"id": 1, "cmd": "status", "n": 8880E00000000000006642254319167413362})");
  CHECK(parsed.error ==
        "malformed JSON request: invalid JSON: number overflow parsing '8880E00000000000006642254319167413362'");
}
