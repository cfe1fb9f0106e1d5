// The SDK as a module author outside this tree uses it (issue 9):
// - [outside]: tests/sdk/outside_project, built by the ctest fixture
//   sdk:outside_project_build against the prefix sdk:install made, with nothing
//   of this tree on its path; its releases served and upgraded by the
//   installed `hotswap`, under a connected client.
// - assemble_release.cmake (hotswap_add_release's build step) refusing broken
//   inputs, naming the file and the field.
#include <signal.h>

#include <boost/asio.hpp>
#include <boost/filesystem.hpp>
#include <catch2/catch.hpp>
#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "process_support.hpp"

namespace fs = boost::filesystem;
using nlohmann::json;

using hotswap::test::eventually;
using hotswap::test::Result;
using hotswap::test::run_shell;

namespace {

const fs::path kPrefix = SDK_PREFIX;
const fs::path kOutsideBuild = SDK_OUTSIDE_BUILD;
const fs::path kBadInputs = SDK_BAD_INPUTS;
const fs::path kInstalledHotswap = kPrefix / "bin" / "hotswap";

std::string read_file(const fs::path& path) {
  std::ifstream in(path.string(), std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string quoted(const fs::path& path) { return "'" + path.string() + "'"; }

fs::path outside_tarball(const std::string& version) {
  return kOutsideBuild / "releases" / ("tally-" + version + ".tar.gz");
}

// A release root served by the installed hotswap; the host is killed and the
// root removed at the end.
struct InstalledHostRoot {
  fs::path dir = fs::temp_directory_path() / fs::unique_path("hotswap-sdk-%%%%%%%%");
  InstalledHostRoot() { fs::create_directories(dir); }
  ~InstalledHostRoot() {
    run("stop");
    boost::system::error_code ec;
    fs::remove_all(dir, ec);
  }
  Result run(const std::string& args) const {
    return run_shell(quoted(kInstalledHotswap) + " " + args + " --root " + quoted(dir));
  }
  void must(const std::string& args) const {
    Result r = run(args);
    INFO("hotswap " << args << "\n" << r.out);
    REQUIRE(r.code == 0);
  }
};

// One line-protocol client that stays connected.
struct Client {
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket socket{io};
  boost::asio::streambuf input;
  explicit Client(uint16_t port) { socket.connect({boost::asio::ip::make_address("127.0.0.1"), port}); }
  std::string ask(const std::string& request) {
    boost::asio::write(socket, boost::asio::buffer(request + "\n"));
    const size_t n = boost::asio::read_until(socket, input, '\n');
    std::string line(boost::asio::buffers_begin(input.data()), boost::asio::buffers_begin(input.data()) + n - 1);
    input.consume(n);
    return line;
  }
};

// Runs assemble_release.cmake as hotswap_add_release does, for a release
// "tally 1.0.0" with one module tally 1.0.0 (a stand-in file), the given
// appups and config, into `out`.
Result assemble(const fs::path& out, const std::vector<std::string>& appups, const std::string& config = "") {
  std::string appup_arg;
  for (const std::string& a : appups) appup_arg += (appup_arg.empty() ? "" : ",") + (kBadInputs / a).string();
  const std::string config_arg = config.empty() ? "" : (kBadInputs / config).string();
  return run_shell(std::string(SDK_CMAKE) + " -DNAME=tally -DVERSION=1.0.0 -DOUTPUT_DIR=" + quoted(out) +
                   " '-DMODULES=tally|1.0.0|" + (kBadInputs / "module.so").string() + "'" + " '-DAPPUPS=" +
                   appup_arg + "' '-DCONFIG=" + config_arg + "' -DHOTSWAP_BINARY=" + quoted(kBadInputs / "module.so") +
                   " -DSTRIP= -DCHECK_COMMAND= -P " + quoted(SDK_ASSEMBLE_SCRIPT));
}

struct ScratchDir {
  fs::path dir = fs::temp_directory_path() / fs::unique_path("hotswap-sdk-assemble-%%%%%%%%");
  ~ScratchDir() {
    boost::system::error_code ec;
    fs::remove_all(dir, ec);
  }
};

}  // namespace

TEST_CASE("an outside project finds the installed package alone and builds its modules as in-tree ones are built",
          "[outside]") {
  // find_package found the prefix's package, not this source tree.
  const std::string cache = read_file(kOutsideBuild / "CMakeCache.txt");
  CHECK_THAT(cache, Catch::Contains("hotswap_DIR:PATH=" + (kPrefix / "lib" / "cmake" / "hotswap").string()));
  json commands = json::array();  // the modules' (the rehearsal test's are the kit's business)
  for (const json& command : json::parse(read_file(kOutsideBuild / "compile_commands.json")))
    if (fs::path(command.value("file", "")).filename() == "tally.cpp") commands.push_back(command);
  REQUIRE(commands.size() == 2);  // tally.cpp, once per version
  for (const json& command : commands) {
    const std::string line = command["command"];
    INFO(line);
    CHECK_THAT(line, Catch::Contains("-Wall -Wextra -Werror") && Catch::Contains("-fno-gnu-unique") &&
                         Catch::Contains("-fvisibility=hidden") &&
                         Catch::Contains(" " + (kPrefix / "include").string() + " "));  // -isystem: an imported target
    CHECK_THAT(line, !Catch::Contains("/modules/include"));  // no header of this source tree
    // 1.1.0 names its own warnings (WARNINGS ...), 1.0.0 has the default ones.
    const bool own_warnings = line.find("tally_1_1_0") != std::string::npos;
    CHECK(own_warnings == (line.find("-Wno-unused-parameter") != std::string::npos));
  }
}

TEST_CASE("an outside project's release carries its appup and a stripped host", "[outside]") {
  const fs::path release = kOutsideBuild / "releases" / "tally-1.1.0";
  const json manifest = json::parse(read_file(release / "manifest.json"));
  INFO(manifest.dump());
  CHECK(manifest["version"] == "1.1.0");
  CHECK(manifest["modules"][0]["appup"] == "appups/tally-1.1.0.appup.json");
  Result sections = run_shell("readelf -SW " + quoted(release / "bin" / "hotswap"));
  REQUIRE(sections.code == 0);
  CHECK_THAT(sections.out, !Catch::Contains(".debug_info") && !Catch::Contains(".symtab"));
  // The binary it was made from (installed unstripped, as built) has them.
  CHECK_THAT(run_shell("readelf -SW " + quoted(kInstalledHotswap)).out, Catch::Contains(".symtab"));
}

TEST_CASE("the installed hotswap serves the outside project's release and upgrades it under a connected client",
          "[outside]") {
  InstalledHostRoot root;
  root.must("unpack " + quoted(outside_tarball("1.0.0")));
  root.must("daemon");
  Result status = root.run("status --json");
  REQUIRE(status.code == 0);
  const uint16_t port = json::parse(status.out)["listeners"][0]["port"];
  Client client(port);
  CHECK(client.ask("add 2") == "v1.0 total=2");

  root.must("unpack " + quoted(outside_tarball("1.1.0")));
  Result upgrade = root.run("upgrade 1.1.0");
  INFO(upgrade.out);
  REQUIRE(upgrade.code == 0);
  CHECK_THAT(upgrade.out, Catch::Contains("load_module tally 1.0.0 -> 1.1.0") && Catch::Contains("committed"));
  // The same connection, now served by 1.1.0, with the total migrated.
  CHECK(client.ask("add 3") == "v1.1 total=5");
  root.must("stop");
}

TEST_CASE("a module builds with the installed pkg-config file's flags alone", "[outside]") {
  ScratchDir out;
  fs::create_directories(out.dir);
  const std::string pkg_config = "PKG_CONFIG_PATH=" + quoted(kPrefix / "share" / "pkgconfig") + " pkg-config ";
  Result cflags = run_shell(pkg_config + "--cflags hotswap");
  INFO(cflags.out);
  REQUIRE(cflags.code == 0);
  CHECK_THAT(cflags.out, Catch::Contains("-fno-gnu-unique") && Catch::Contains("-fvisibility=hidden"));
  const fs::path library = out.dir / "tally-1.0.0.so";
  Result build = run_shell("c++ $(" + pkg_config + "--cflags hotswap) -Wall -Wextra -Werror" +
                           " -DHOTSWAP_MODULE_NAME='\"tally\"' -DHOTSWAP_MODULE_VERSION='\"1.0.0\"' " +
                           quoted(SDK_OUTSIDE_SOURCE "/tally.cpp") + " -o " + quoted(library) + " $(" + pkg_config +
                           "--libs hotswap)");
  INFO(build.out);
  REQUIRE(build.code == 0);
  Result unique_check = run_shell(std::string(SDK_CMAKE) + " -DLIBRARY=" + quoted(library) + " -P \"$(" +
                                  pkg_config + "--variable=check_unique_script hotswap)\"");
  INFO(unique_check.out);
  CHECK(unique_check.code == 0);
  // Hidden visibility: the module's own code exports its entry point and its
  // ABI tag and nothing else (the standard library's inline templates keep
  // theirs, weak).
  Result exported = run_shell("nm -D --defined-only " + quoted(library) + " | grep -v ' [WVu] '");
  INFO(exported.out);
  CHECK(exported.out.find(" T hotswap_module_entry\n") != std::string::npos);
  CHECK(exported.out.find(" R hotswap_module_abi\n") != std::string::npos);
  CHECK(std::count(exported.out.begin(), exported.out.end(), '\n') == 2);
}

TEST_CASE("hotswap_add_release accepts an appup of its own module version and lists it in the manifest") {
  ScratchDir out;
  Result r = assemble(out.dir, {"good-1.0.0.appup.json"}, "runtime.json");
  INFO(r.out);
  REQUIRE(r.code == 0);
  const json manifest = json::parse(read_file(out.dir / "tally-1.0.0" / "manifest.json"));
  CHECK(manifest["modules"][0]["appup"] == "appups/tally-1.0.0.appup.json");
  CHECK(manifest["config"] == "runtime.json");
  CHECK(fs::exists(out.dir / "tally-1.0.0.tar.gz"));
}

TEST_CASE("hotswap_add_release fails the build on an appup that is not strict JSON, naming the file and where") {
  ScratchDir out;
  struct Case {
    const char* file;
    const char* problem;
  };
  for (const Case& c : {Case{"trailing-comma.appup.json", "line 4, column 67: a trailing comma before ']'"},
                        Case{"comment.appup.json", "line 4, column 3: a comment; JSON has none"}}) {
    Result r = assemble(out.dir, {c.file});
    INFO(r.out);
    CHECK(r.code != 0);
    CHECK_THAT(r.out, Catch::Contains((kBadInputs / c.file).string() + ": invalid JSON at " + c.problem));
    CHECK(!fs::exists(out.dir / "tally-1.0.0.tar.gz"));
  }
}

TEST_CASE("hotswap_add_release fails the build on a runtime config that is not strict JSON") {
  ScratchDir out;
  Result r = assemble(out.dir, {}, "trailing-comma-runtime.json");
  INFO(r.out);
  CHECK(r.code != 0);
  CHECK_THAT(r.out, Catch::Contains((kBadInputs / "trailing-comma-runtime.json").string() +
                                    ": invalid JSON at line 4, column 1: a trailing comma before '}'"));
}

TEST_CASE("hotswap_add_release fails the build on an appup of another module version instead of leaving it out") {
  ScratchDir out;
  Result r = assemble(out.dir, {"version-mismatch.appup.json"});
  INFO(r.out);
  CHECK(r.code != 0);
  CHECK_THAT(r.out, Catch::Contains((kBadInputs / "version-mismatch.appup.json").string() +
                                    ": field \"version\" is \"1.1.0\", but the release ships tally 1.0.0"));
  CHECK(!fs::exists(out.dir / "tally-1.0.0.tar.gz"));
}

TEST_CASE("hotswap_add_release fails the build on an appup of a module the release does not ship, or with no version") {
  ScratchDir out;
  Result unknown = assemble(out.dir, {"unknown-module.appup.json"});
  INFO(unknown.out);
  CHECK(unknown.code != 0);
  CHECK_THAT(unknown.out, Catch::Contains((kBadInputs / "unknown-module.appup.json").string() +
                                          ": field \"module\" is \"scoreboard\", but the release ships no such module"));
  Result no_version = assemble(out.dir, {"no-version.appup.json"});
  INFO(no_version.out);
  CHECK(no_version.code != 0);
  CHECK_THAT(no_version.out,
             Catch::Contains((kBadInputs / "no-version.appup.json").string() + ": field \"version\" is missing"));
}
