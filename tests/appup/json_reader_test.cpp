#include <hotswap/appup/error.hpp>
#include <hotswap/appup/json_reader.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>

using hotswap::appup::describe_json;
using hotswap::appup::index_path;
using hotswap::appup::InputError;
using hotswap::appup::JsonReader;
using hotswap::appup::key_path;
using hotswap::appup::NumberText;
using hotswap::appup::parse_json_text;
using nlohmann::json;

namespace {

// The message `read` fails with.
template <typename Read>
std::string failure(Read read) {
  try {
    read();
  } catch (const InputError& e) {
    return e.what();
  }
  FAIL("expected an InputError");
  return {};
}

const JsonReader kReader("runtime.json");

}  // namespace

TEST_CASE("key paths name a value inside a document", "[json_reader]") {
  CHECK(key_path("", "listeners") == "listeners");
  CHECK(key_path(index_path("listeners", 0), "port") == "listeners[0].port");
  CHECK(index_path(key_path("up", "instructions"), 2) == "up.instructions[2]");
}

TEST_CASE("values are described with their content where it helps", "[json_reader]") {
  CHECK(describe_json("seven") == "string 'seven'");
  CHECK(describe_json(1.5) == "number 1.5");
  CHECK(describe_json(true) == "boolean");
  CHECK(describe_json(json::array()) == "array");
  CHECK(describe_json(nullptr) == "null");
}

TEST_CASE("every complaint names the source, the key path and what was found", "[json_reader]") {
  const json port = "seven";
  CHECK(failure([&] { kReader.expect_integer(port, "listeners[0].port", 0, 65535, NumberText::Accepted); }) ==
        "runtime.json: listeners[0].port: expected an integer, got string 'seven'");
  CHECK(failure([&] { kReader.expect_number(port, "modules.arena.tick_hz", 0, 10, NumberText::Accepted); }) ==
        "runtime.json: modules.arena.tick_hz: expected a number, got string 'seven'");
  CHECK(failure([&] { kReader.expect_object(json::array(), ""); }) == "runtime.json: expected a JSON object, got array");
  CHECK(failure([&] { kReader.expect_object(json{{"prot", 1}}, "listeners[1]", {"port"}); }) ==
        "runtime.json: listeners[1].prot: unknown key (expected one of: port)");
  CHECK(failure([&] { kReader.require(json::object(), "listeners[0]", "port"); }) ==
        "runtime.json: listeners[0].port: missing");
  CHECK(failure([&] { kReader.expect_one_of("loud", "log_level", {"info", "off"}); }) ==
        "runtime.json: log_level: expected one of info|off, got 'loud'");
  CHECK(failure([&] { kReader.expect_version("1.0", "version"); }) ==
        "runtime.json: version: '1.0' is not a semantic version (like 1.2.3 or 1.2.3-rc.1)");
  CHECK(failure([&] { kReader.expect_names(json{"chat", 3}, "depends_on"); }) ==
        "runtime.json: depends_on[1]: expected a string, got number 3");
}

TEST_CASE("numbers are checked against their range, and strings only where accepted", "[json_reader]") {
  CHECK(kReader.expect_integer(7000, "port", 0, 65535) == 7000);
  CHECK(kReader.expect_integer("7000", "port", 0, 65535, NumberText::Accepted) == 7000);
  CHECK(failure([&] { kReader.expect_integer("7000", "port", 0, 65535); }) ==
        "runtime.json: port: expected an integer, got string '7000'");
  CHECK(failure([&] { kReader.expect_integer(json(uint64_t(1) << 63), "port", 0, 65535); }) ==
        "runtime.json: port: number 9223372036854775808 is out of range (0..65535)");
  CHECK(failure([&] { kReader.expect_integer(1.5, "port", 0, 65535); }) ==
        "runtime.json: port: expected an integer, got number 1.5");
  CHECK(kReader.expect_number("2.5", "tick_hz", 0, 10, NumberText::Accepted) == 2.5);
  CHECK(failure([&] { kReader.expect_number(11, "tick_hz", 0, 10); }) ==
        "runtime.json: tick_hz: number 11 is out of range (0..10)");
}

TEST_CASE("parse_json_text names the source of a syntax error without the library's prefix", "[json_reader]") {
  CHECK(parse_json_text(R"({"a": 1})", "x.json") == json{{"a", 1}});
  const std::string message = failure([] { parse_json_text("{\"a\": ", "x.json"); });
  CHECK_THAT(message, Catch::StartsWith("x.json: invalid JSON: "));
  CHECK_THAT(message, !Catch::Contains("[json.exception"));
}

TEST_CASE("parse_json_bounded refuses nesting deeper than the limit, at any size", "[json_reader]") {
  using hotswap::appup::kMaxJsonDepth;
  using hotswap::appup::parse_json_bounded;
  const auto arrays = [](size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); };
  CHECK(parse_json_bounded(arrays(kMaxJsonDepth), "f.json").is_array());
  CHECK_THROWS_WITH(parse_json_bounded(arrays(kMaxJsonDepth + 1), "f.json"),
                    "f.json: JSON nested deeper than 64 levels");
  CHECK_THROWS_WITH(parse_json_bounded(arrays(100'000), "f.json"), "f.json: JSON nested deeper than 64 levels");
  CHECK_THROWS_WITH(parse_json_bounded(R"({"a": {"b": [1]}})", "request", 2),
                    "request: JSON nested deeper than 2 levels");
  CHECK(parse_json_bounded(R"({"a": {"b": 1}})", "request", 2)["a"]["b"] == 1);
  // Deep, but broken before the limit: the syntax error is what is reported.
  CHECK_THROWS_WITH(parse_json_bounded("[[}", "f.json"), Catch::StartsWith("f.json: invalid JSON: "));
}

// The host died of a stack overflow when an appup's `extra` 100k deep was copied (issue 8).
TEST_CASE("parse_json_text bounds the depth of appups", "[json_reader]") {
  const std::string deep_extra = std::string(100'000, '[') + std::string(100'000, ']');
  const std::string text = R"({"module": "counter", "version": "2.0.0", "up": [{"from": "1.0.0", "instructions": [)"
                           R"({"op": "update", "extra": )" +
                           deep_extra + "}]}]}";
  CHECK_THROWS_WITH(hotswap::appup::parse_json_text(text, "counter.appup.json"),
                    "counter.appup.json: JSON nested deeper than 64 levels");
}

// Found by tests/fuzz/fuzz_admin_request: nlohmann reports a number too large
// for a double as out_of_range, not parse_error, and it escaped as such.
TEST_CASE("parse_json_text reports a number overflow as invalid JSON naming the file", "[json_reader]") {
  CHECK_THROWS_WITH(parse_json_text(R"({"port": 1e400})", "runtime.json"),
                    "runtime.json: invalid JSON: number overflow parsing '1e400'");
  CHECK_THROWS_AS(parse_json_text("[8880E00000000000006642254319167413362]", "f.json"), InputError);
}
