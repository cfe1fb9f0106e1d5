// Reading a release's files (moved here from tests/appup when the file I/O
// left appup/ for host/release/release_files).
#include <hotswap/appup/error.hpp>
#include <hotswap/appup/planner.hpp>

#include <catch2/catch.hpp>
#include <cerrno>
#include <fstream>
#include <sys/stat.h>
#include <unistd.h>

#include "../os/faulty_os_sys_calls.hpp"
#include "ops_support.hpp"
#include "release/release_files.hpp"

using hotswap::appup::Appup;
using hotswap::appup::InputError;
using hotswap::appup::make_plan;
using hotswap::appup::Plan;
using hotswap::appup::ReleaseManifest;
using hotswap::host::load_appup;
using hotswap::host::load_appup_of;
using hotswap::host::load_manifest;
using hotswap::host::load_release_manifest;
using hotswap::host::read_json_file;
using hotswap::ops_test::TempDir;
using hotswap::ops_test::write_file;
using nlohmann::json;
namespace fs = boost::filesystem;

namespace {

json manifest_json(const std::string& version, const std::string& module_version, char sha) {
  return {{"release", "arena"},
          {"version", version},
          {"modules",
           {{{"name", "counter"},
             {"version", module_version},
             {"file", "modules/counter-" + module_version + ".so"},
             {"sha256", std::string(64, sha)},
             {"appup", "appups/counter-" + module_version + ".appup.json"}}}}};
}

// Two releases of one module under `root`: v1 (counter 1.0.0) and v2 (counter 2.0.0).
void write_two_releases(const fs::path& root) {
  write_file(root / "v1" / "manifest.json", manifest_json("1.0.0", "1.0.0", 'a').dump());
  write_file(root / "v2" / "manifest.json", manifest_json("2.0.0", "2.0.0", 'b').dump());
}

}  // namespace

TEST_CASE("load_appup reads a file and names it as the source", "[release_files]") {
  const TempDir dir;
  const fs::path file = dir.path() / "appups" / "counter-2.0.0.appup.json";
  write_file(file,
             R"({"module": "counter", "version": "2.0.0", "up": [{"from": "1.0.0", "instructions": [{"op": "load_module"}]}]})");
  const Appup appup = load_appup(file);
  CHECK(appup.source == file.string());
  CHECK(appup.find_up("1.0.0") != nullptr);
}

TEST_CASE("load_appup reports a missing file or a folder as unreadable", "[release_files]") {
  const TempDir dir;
  const fs::path file = dir.path() / "absent.appup.json";
  try {
    load_appup(file);
    FAIL("loaded a file that does not exist");
  } catch (const InputError& e) {
    CHECK(e.file() == file.string());
    CHECK(e.field().empty());
    CHECK_THAT(e.what(), Catch::Equals(file.string() + ": cannot read: No such file or directory"));
  }
  CHECK_THROWS_WITH(load_appup(dir.path()), dir.path().string() + ": cannot read: is a directory");
}

TEST_CASE("load_appup names the file and field of a malformed appup", "[release_files]") {
  const TempDir dir;
  const fs::path file = dir.path() / "counter-2.0.0.appup.json";
  write_file(file, R"({"module": "counter", "version": "2.0.0", "up": [{"from": "1.0.0"}]})");
  CHECK_THROWS_WITH(load_appup(file), file.string() + ": up[0].instructions: missing");
  write_file(file, R"({"module": "counter",)");
  CHECK_THROWS_WITH(load_appup(file), Catch::StartsWith(file.string() + ": invalid JSON: "));
}

TEST_CASE("load_manifest reads manifest.json in the release folder", "[release_files]") {
  const TempDir dir;
  write_file(dir.path() / "manifest.json", manifest_json("1.0.0", "1.0.0", 'a').dump(2));
  const ReleaseManifest manifest = load_manifest(dir.path());
  CHECK(manifest.source == (dir.path() / "manifest.json").string());
  CHECK(manifest.modules.at(0).file == dir.path() / "modules/counter-1.0.0.so");
}

TEST_CASE("load_manifest reports a missing or malformed manifest.json", "[release_files]") {
  const TempDir dir;
  const std::string file = (dir.path() / "manifest.json").string();
  CHECK_THROWS_WITH(load_manifest(dir.path()), file + ": cannot read: No such file or directory");
  write_file(dir.path() / "manifest.json", "{\"release\": ");
  CHECK_THROWS_WITH(load_manifest(dir.path()), Catch::StartsWith(file + ": invalid JSON: "));
  CHECK_THROWS_WITH(load_release_manifest(dir.path()),
                    Catch::StartsWith("invalid release manifest: " + file + ": invalid JSON: "));
}

TEST_CASE("read_json_file names the file and the system's reason when a read fails", "[release_files]") {
  const TempDir dir;
  const fs::path file = dir.path() / "runtime.json";
  write_file(file, "{}");
  hotswap::test::FaultyOsSysCalls os;
  os.fail("read", file.string(), EIO);
  CHECK_THROWS_WITH(read_json_file(file, os), file.string() + ": cannot read: Input/output error");
  CHECK(read_json_file(file, os) == json::object());
}

TEST_CASE("read_json_file refuses a FIFO without blocking on it, and a file over the size bound", "[release_files]") {
  const TempDir dir;
  // A FIFO with no writer would block a plain open forever: the host's loop or worker would hang.
  const fs::path fifo = dir.path() / "manifest.json";
  REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
  CHECK_THROWS_WITH(read_json_file(fifo), fifo.string() + ": cannot read: not a regular file");

  const fs::path huge = dir.path() / "runtime.json";
  {
    std::ofstream out(huge.string());
    out << "{\"pad\": \"";
  }
  REQUIRE(::truncate(huge.c_str(), static_cast<off_t>(hotswap::host::kMaxTextFileBytes) + 1) == 0);
  CHECK_THROWS_WITH(read_json_file(huge), Catch::StartsWith(huge.string() + ": cannot read: larger than 16777216 bytes"));
}

TEST_CASE("make_plan with load_appup_of reads appup files from the release folders", "[release_files]") {
  const TempDir root;
  write_two_releases(root.path());
  write_file(
      root.path() / "v2" / "appups" / "counter-2.0.0.appup.json",
      R"({"module": "counter", "version": "2.0.0", "up": [{"from": "1.0.0", "instructions": [{"op": "update"}]}]})");
  const Plan plan = make_plan(load_manifest(root.path() / "v1"), load_manifest(root.path() / "v2"), load_appup_of);
  REQUIRE(plan.steps.size() == 1);
  CHECK(plan.steps[0].origin ==
        (root.path() / "v2/appups/counter-2.0.0.appup.json").string() + " up[0].instructions[0]");
}

TEST_CASE("A malformed appup file surfaces as an InputError from make_plan", "[release_files]") {
  const TempDir root;
  write_two_releases(root.path());
  const fs::path appup = root.path() / "v2" / "appups" / "counter-2.0.0.appup.json";
  write_file(appup, R"({"module": "counter", "version": "2.0.0", "up": [{"from": "1.0.0"}]})");
  CHECK_THROWS_WITH(make_plan(load_manifest(root.path() / "v1"), load_manifest(root.path() / "v2"), load_appup_of),
                    appup.string() + ": up[0].instructions: missing");
}

namespace {

// `depth` arrays, one inside the other, around `inner`.
std::string nested_arrays(size_t depth, const std::string& inner = "1") {
  return std::string(depth, '[') + inner + std::string(depth, ']');
}

}  // namespace

// The host died of a stack overflow copying such an `extra` (issue 8).
TEST_CASE("an appup whose extra is nested 100k deep is refused naming the file and the depth", "[release_files]") {
  const TempDir dir;
  const fs::path file = dir.path() / "counter-2.0.0.appup.json";
  write_file(file, R"({"module": "counter", "version": "2.0.0", "up": [{"from": "1.0.0", "instructions": [)"
                   R"({"op": "update", "extra": )" +
                       nested_arrays(100'000) + "}]}]}");
  CHECK_THROWS_WITH(load_appup(file), file.string() + ": JSON nested deeper than 64 levels");
}

TEST_CASE("a manifest nested too deep is refused naming the file and the depth", "[release_files]") {
  const TempDir dir;
  write_file(dir.path() / "manifest.json",
             R"({"release": "arena", "version": "1.0.0", "modules": )" + nested_arrays(65, "") + "}");
  CHECK_THROWS_WITH(
      load_release_manifest(dir.path()),
      "invalid release manifest: " + (dir.path() / "manifest.json").string() + ": JSON nested deeper than 64 levels");
}

TEST_CASE("boot_order starts each module after those it depends on, and names a dependency cycle", "[release]") {
  hotswap::appup::ReleaseManifest manifest;
  manifest.version = "1.0.0";
  auto module = [](const std::string& name, std::vector<std::string> depends_on) {
    hotswap::appup::ModuleEntry entry;
    entry.name = name;
    entry.depends_on = std::move(depends_on);
    return entry;
  };
  manifest.modules = {module("lobby", {"chat", "auth"}), module("chat", {"auth"}), module("auth", {}),
                      module("stats", {"unknown"})};
  std::vector<std::string> order;
  for (const hotswap::appup::ModuleEntry* entry : hotswap::host::boot_order(manifest)) order.push_back(entry->name);
  CHECK(order == std::vector<std::string>{"auth", "chat", "lobby", "stats"});

  manifest.modules = {module("a", {"b"}), module("b", {"a"})};
  CHECK_THROWS_WITH(hotswap::host::boot_order(manifest),
                    Catch::Contains("release 1.0.0") && Catch::Contains("dependency cycle through module"));
}
