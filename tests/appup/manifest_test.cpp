#include <hotswap/appup/error.hpp>
#include <hotswap/appup/manifest.hpp>

#include <catch2/catch.hpp>

using hotswap::appup::InputError;
using hotswap::appup::parse_manifest;
using hotswap::appup::ReleaseManifest;
using nlohmann::json;

namespace {

const std::string kSha(64, 'a');

json valid_manifest() {
  return json::parse(R"({
    "release": "arena", "version": "1.1.0", "config": "runtime.json",
    "modules": [
      {"name": "chat", "version": "1.0.0", "file": "modules/chat-1.0.0.so", "sha256": ")" +
                     kSha + R"("},
      {"name": "arena", "version": "1.1.0", "file": "modules/arena-1.1.0.so",
       "sha256": "0123456789ABCDEFabcdef0123456789abcdef0123456789abcdef0123456789",
       "appup": "appups/arena-1.1.0.appup.json", "depends_on": ["chat"]}
    ]
  })");
}

struct BadManifest {
  json document;
  std::string field;
  std::string problem;
};

// `edit` breaks one thing in an otherwise valid manifest.
template <typename Edit>
json broken(Edit edit) {
  json document = valid_manifest();
  edit(document);
  return document;
}

}  // namespace

TEST_CASE("parse_manifest makes paths absolute under the release folder", "[manifest]") {
  const ReleaseManifest manifest =
      parse_manifest(valid_manifest(), "/releases/arena-1.1.0", "/releases/arena-1.1.0/manifest.json");
  CHECK(manifest.source == "/releases/arena-1.1.0/manifest.json");
  CHECK(manifest.dir == "/releases/arena-1.1.0");
  CHECK(manifest.name == "arena");
  CHECK(manifest.version == "1.1.0");
  CHECK(manifest.config == "/releases/arena-1.1.0/runtime.json");
  REQUIRE(manifest.modules.size() == 2);

  const auto& chat = manifest.modules[0];
  CHECK(chat.name == "chat");
  CHECK(chat.file == "/releases/arena-1.1.0/modules/chat-1.0.0.so");
  CHECK(chat.appup.empty());
  CHECK(chat.depends_on.empty());

  const auto* arena = manifest.find("arena");
  REQUIRE(arena == &manifest.modules[1]);
  CHECK(arena->appup == "/releases/arena-1.1.0/appups/arena-1.1.0.appup.json");
  CHECK(arena->depends_on == std::vector<std::string>{"chat"});
  CHECK(manifest.find("score") == nullptr);
}

TEST_CASE("parse_manifest lowercases sha256 digests", "[manifest]") {
  const ReleaseManifest manifest = parse_manifest(valid_manifest(), "/r", "manifest.json");
  CHECK(manifest.modules[1].sha256 == "0123456789abcdefabcdef0123456789abcdef0123456789abcdef0123456789");
}

TEST_CASE("parse_manifest resolves a relative release folder against the working directory", "[manifest]") {
  const ReleaseManifest manifest = parse_manifest(valid_manifest(), "releases/arena", "manifest.json");
  CHECK(manifest.dir.is_absolute());
  CHECK(manifest.modules[0].file.is_absolute());
  CHECK(manifest.modules[0].file == manifest.dir / "modules/chat-1.0.0.so");
}

// A fuzz find: only a ".." element leaves the folder; a name that begins with
// two dots is an ordinary name inside it, and round-trips as one.
TEST_CASE("A file name that begins with two dots stays inside the release folder", "[manifest]") {
  const ReleaseManifest manifest = parse_manifest(
      broken([](json& d) { d["modules"][0]["file"] = "..4../etc/passwd"; }), "/releases/x", "manifest.json");
  CHECK(manifest.modules[0].file == "/releases/x/..4../etc/passwd");
  CHECK(parse_manifest(manifest.to_json(), "/releases/x", "manifest.json").modules[0].file ==
        manifest.modules[0].file);
}

TEST_CASE("config is optional", "[manifest]") {
  const ReleaseManifest manifest = parse_manifest(broken([](json& d) { d.erase("config"); }), "/r", "manifest.json");
  CHECK(manifest.config.empty());
  CHECK_FALSE(manifest.to_json().contains("config"));
}

TEST_CASE("to_json writes the manifest back with relative paths", "[manifest]") {
  json expected = valid_manifest();
  expected["modules"][1]["sha256"] = "0123456789abcdefabcdef0123456789abcdef0123456789abcdef0123456789";
  const ReleaseManifest manifest = parse_manifest(valid_manifest(), "/releases/arena-1.1.0", "manifest.json");
  CHECK(manifest.to_json() == expected);
  CHECK(parse_manifest(manifest.to_json(), "/elsewhere", "copy.json").modules[1].appup ==
        "/elsewhere/appups/arena-1.1.0.appup.json");
}

TEST_CASE("Malformed manifests are rejected naming the file and field", "[manifest]") {
  const BadManifest bad = GENERATE(values<BadManifest>({
      {json::array(), "", "expected a JSON object, got array"},
      {broken([](json& d) { d["owner"] = "ops"; }), "owner",
       "unknown key (expected one of: release, version, config, modules)"},
      {broken([](json& d) { d.erase("release"); }), "release", "missing"},
      {broken([](json& d) { d["release"] = "../arena"; }), "release", "is not a valid name"},
      {broken([](json& d) { d["version"] = "1.1"; }), "version", "is not a semantic version"},
      {broken([](json& d) { d.erase("modules"); }), "modules", "missing"},
      {broken([](json& d) { d["modules"] = json::object(); }), "modules", "expected an array"},
      {broken([](json& d) { d["config"] = "/etc/runtime.json"; }), "config", "'/etc/runtime.json' is absolute"},
      {broken([](json& d) { d["config"] = "../runtime.json"; }), "config", "contains '..'"},
      {broken([](json& d) { d["modules"][0]["path"] = "x"; }), "modules[0].path",
       "unknown key (expected one of: name, version, file, sha256, appup, depends_on)"},
      {broken([](json& d) { d["modules"][0].erase("sha256"); }), "modules[0].sha256", "missing"},
      {broken([](json& d) { d["modules"][0]["sha256"] = "abc"; }), "modules[0].sha256",
       "expected 64 hexadecimal digits"},
      {broken([](json& d) { d["modules"][0]["sha256"] = std::string(63, 'a') + "g"; }), "modules[0].sha256",
       "expected 64 hexadecimal digits"},
      {broken([](json& d) { d["modules"][0]["sha256"] = std::string(65, 'a'); }), "modules[0].sha256",
       "expected 64 hexadecimal digits"},
      {broken([](json& d) { d["modules"][0]["file"] = "/usr/lib/chat.so"; }), "modules[0].file", "is absolute"},
      {broken([](json& d) { d["modules"][0]["file"] = ""; }), "modules[0].file", "empty path"},
      {broken([](json& d) { d["modules"][1]["appup"] = "appups/../../x.json"; }), "modules[1].appup", "contains '..'"},
      {broken([](json& d) { d["modules"][1]["version"] = "latest"; }), "modules[1].version",
       "'latest' is not a semantic version"},
      {broken([](json& d) { d["modules"][1]["name"] = "chat"; }), "modules[1].name",
       "duplicate module 'chat' (already declared by modules[0])"},
      {broken([](json& d) {
         d["modules"][1]["depends_on"] = {"chat", "score"};
       }),
       "modules[1].depends_on[1]", "'score' is not a module of this release"},
      {broken([](json& d) { d["modules"][1]["depends_on"] = {"arena"}; }), "modules[1].depends_on[0]",
       "module 'arena' cannot depend on itself"},
      {broken([](json& d) { d["modules"][1]["depends_on"] = "chat"; }), "modules[1].depends_on", "expected an array"},
  }));
  CAPTURE(bad.document.dump());
  try {
    parse_manifest(bad.document, "/releases/arena", "/releases/arena/manifest.json");
    FAIL("accepted a malformed manifest");
  } catch (const InputError& e) {
    CAPTURE(e.what());
    CHECK(e.file() == "/releases/arena/manifest.json");
    CHECK(e.field() == bad.field);
    CHECK_THAT(e.problem(), Catch::Contains(bad.problem));
    CHECK_THAT(e.what(), Catch::StartsWith("/releases/arena/manifest.json: " + bad.field));
  }
}
