#include "ops_support.hpp"
#include "release/release_store.hpp"

#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <cerrno>

#include "../os/faulty_os_sys_calls.hpp"

using hotswap::host::ReleaseError;
using hotswap::host::ReleaseRecord;
using hotswap::host::ReleaseState;
using hotswap::host::ReleaseStore;
using hotswap::ops_test::Entry;
using hotswap::ops_test::names_in;
using hotswap::ops_test::read_file;
using hotswap::ops_test::release_entries;
using hotswap::ops_test::release_tarball;
using hotswap::ops_test::TempDir;
using hotswap::ops_test::write_file;
using hotswap::ops_test::write_tarball;
using hotswap::test::FaultyOsSysCalls;
using nlohmann::json;
namespace fs = boost::filesystem;

namespace {

unsigned mode_of(const fs::path& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

// "1.0.0:permanent 1.1.0:current": the whole listing in one comparable string.
std::string listing(const ReleaseStore& store) {
  std::string text;
  for (const ReleaseRecord& r : store.list())
    text += (text.empty() ? "" : " ") + r.version + ":" + hotswap::host::to_string(r.state);
  return text;
}

// A store under a scratch root, with tarballs made on demand. Its system
// calls go through `os`, which passes them on unless a test says otherwise.
struct Fixture {
  TempDir scratch;
  fs::path root = scratch.path() / "root";
  FaultyOsSysCalls os;
  ReleaseStore store{root, os};

  fs::path tarball(const std::string& version) { return release_tarball(scratch.path(), version); }
  void unpack(std::initializer_list<const char*> versions) {
    for (const char* v : versions) REQUIRE(store.unpack(tarball(v)) == v);
  }
  // Unpacking `entries` fails with a message containing every one of `expected`,
  // and leaves releases/ as it was.
  void refused(const std::vector<Entry>& entries, const std::vector<std::string>& expected) {
    const fs::path bad = scratch.path() / "bad.tar.gz";
    write_tarball(bad, entries);
    const std::vector<std::string> before = names_in(store.releases_dir());
    try {
      store.unpack(bad);
      FAIL("unpack accepted a bad tarball");
    } catch (const ReleaseError& e) {
      for (const std::string& part : expected) CHECK_THAT(std::string(e.what()), Catch::Contains(part));
    }
    CHECK(names_in(store.releases_dir()) == before);
    CHECK_FALSE(fs::exists(scratch.path() / "evil"));
  }
};

}  // namespace

TEST_CASE("a fresh root gets its folders, run/ private", "[releases]") {
  TempDir scratch;
  const fs::path root = scratch.path() / "a" / "root";
  const mode_t previous = ::umask(0077);  // the modes must not depend on the umask
  const ReleaseStore store(root);
  ::umask(previous);
  CHECK(store.root() == root);
  CHECK(store.releases_dir() == root / "releases");
  CHECK(mode_of(root / "releases") == 0755);
  CHECK(mode_of(root / "log") == 0755);
  CHECK(mode_of(root / "run") == 0700);
  CHECK(store.list().empty());
  CHECK_FALSE(store.permanent());
  CHECK_FALSE(store.current());
}

TEST_CASE("an existing run/ with a looser mode is made private", "[releases]") {
  TempDir scratch;
  fs::create_directories(scratch.path() / "run");
  ::chmod((scratch.path() / "run").c_str(), 0777);
  const ReleaseStore store(scratch.path());
  CHECK(mode_of(store.run_dir()) == 0700);
}

TEST_CASE("a file where a folder belongs is an error", "[releases]") {
  TempDir scratch;
  write_file(scratch.path() / "run", "not a folder");
  CHECK_THROWS_WITH(ReleaseStore(scratch.path()), Catch::Contains("run exists and is not a folder"));
}

TEST_CASE("release_dir refuses anything but a version", "[releases]") {
  Fixture f;
  CHECK(f.store.release_dir("1.2.3-rc.1") == f.root / "releases" / "1.2.3-rc.1");
  for (const std::string bad : {"../../etc", "1.0", "", "1.0.0/..", "RELEASES.json"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(f.store.release_dir(bad), ReleaseError);
    CHECK_FALSE(f.store.exists(bad));
  }
}

TEST_CASE("unpack installs a valid release with safe modes", "[releases][unpack]") {
  Fixture f;
  CHECK(f.store.unpack(f.tarball("1.0.0")) == "1.0.0");
  const fs::path dir = f.root / "releases" / "1.0.0";
  CHECK(f.store.exists("1.0.0"));
  CHECK(mode_of(dir) == 0755);
  CHECK(mode_of(dir / "modules" / "arena-1.0.0.so") == 0755);
  CHECK(mode_of(dir / "manifest.json") == 0644);
  CHECK(mode_of(dir / "bin" / "hotswap") == 0755);  // setuid dropped
  CHECK(read_file(dir / "runtime.json") == R"({"log_level": "info"})");
  CHECK(listing(f.store) == "1.0.0:unpacked");
  CHECK(names_in(f.root / "releases") == std::vector<std::string>{"1.0.0"});  // no temporary folder left
  CHECK(f.store.runtime_config_path("1.0.0") == dir / "runtime.json");
}

TEST_CASE("the operator's ROOT/runtime.json overrides the release's", "[releases]") {
  Fixture f;
  f.unpack({"1.0.0"});
  write_file(f.root / "runtime.json", "{}");
  CHECK(f.store.runtime_config_path("1.0.0") == f.root / "runtime.json");
}

TEST_CASE("unpack accepts entries with a ./ prefix and folder entries", "[releases][unpack]") {
  Fixture f;
  std::vector<Entry> entries = {{Entry::Kind::Folder, "./", "", 0755}};
  for (Entry e : release_entries("2.0.0")) {
    e.path = "./" + e.path;
    entries.push_back(e);
  }
  write_tarball(f.scratch.path() / "dot.tar.gz", entries);
  CHECK(f.store.unpack(f.scratch.path() / "dot.tar.gz") == "2.0.0");
  CHECK(f.store.exists("2.0.0"));
}

TEST_CASE("the release lifecycle moves through unpacked, permanent, current and old", "[releases]") {
  Fixture f;
  f.unpack({"1.1.0", "1.0.0", "1.0.0-rc.1"});
  CHECK(listing(f.store) == "1.0.0-rc.1:unpacked 1.0.0:unpacked 1.1.0:unpacked");  // semver order

  // First boot: the newest release becomes permanent.
  CHECK(f.store.boot_version() == "1.1.0");
  CHECK(f.store.permanent() == std::optional<std::string>("1.1.0"));
  CHECK(listing(f.store) == "1.0.0-rc.1:unpacked 1.0.0:unpacked 1.1.0:permanent");

  f.store.mark_current("1.0.0");  // a downgrade ran
  CHECK(f.store.current() == std::optional<std::string>("1.0.0"));
  CHECK(listing(f.store) == "1.0.0-rc.1:unpacked 1.0.0:current 1.1.0:permanent");

  f.store.mark_current("1.0.0-rc.1");  // the previous current becomes old
  CHECK(listing(f.store) == "1.0.0-rc.1:current 1.0.0:old 1.1.0:permanent");

  f.store.make_permanent("1.0.0-rc.1");  // the previous permanent becomes old
  CHECK(f.store.permanent() == std::optional<std::string>("1.0.0-rc.1"));
  CHECK_FALSE(f.store.current());
  CHECK(listing(f.store) == "1.0.0-rc.1:permanent 1.0.0:old 1.1.0:old");

  f.store.mark_current("1.1.0");  // leaves the old list
  CHECK(listing(f.store) == "1.0.0-rc.1:permanent 1.0.0:old 1.1.0:current");

  f.store.mark_current("1.0.0-rc.1");  // back on the permanent one: nothing is current
  CHECK_FALSE(f.store.current());
  CHECK(listing(f.store) == "1.0.0-rc.1:permanent 1.0.0:old 1.1.0:old");

  CHECK(f.store.to_json() == json::parse(R"({"releases": [{"version": "1.0.0-rc.1", "state": "permanent"},
      {"version": "1.0.0", "state": "old"}, {"version": "1.1.0", "state": "old"}],
      "permanent": "1.0.0-rc.1", "current": null})"));
}

TEST_CASE("make_permanent needs the running release", "[releases]") {
  Fixture f;
  f.unpack({"1.0.0", "1.1.0", "1.2.0"});
  CHECK_THROWS_WITH(f.store.make_permanent("1.0.0"), Catch::Contains("not the running release (running: none)"));
  f.store.mark_current("1.0.0");
  f.store.make_permanent("1.0.0");
  f.store.make_permanent("1.0.0");  // already permanent and running: nothing changes
  CHECK(listing(f.store) == "1.0.0:permanent 1.1.0:unpacked 1.2.0:unpacked");
  f.store.mark_current("1.1.0");
  CHECK_THROWS_WITH(f.store.make_permanent("1.0.0"), Catch::Contains("running: 1.1.0"));
  CHECK_THROWS_WITH(f.store.make_permanent("1.2.0"), Catch::Contains("running: 1.1.0"));
  CHECK_THROWS_WITH(f.store.make_permanent("9.9.9"), Catch::Contains("no release 9.9.9"));
  CHECK_THROWS_WITH(f.store.mark_current("9.9.9"), Catch::Contains("no release 9.9.9"));
  CHECK(listing(f.store) == "1.0.0:permanent 1.1.0:current 1.2.0:unpacked");
}

TEST_CASE("a restart boots the permanent release, not the current one", "[releases]") {
  Fixture f;
  f.unpack({"1.0.0", "1.1.0"});
  f.store.mark_current("1.0.0");
  f.store.make_permanent("1.0.0");
  f.store.mark_current("1.1.0");  // upgraded, never made permanent

  ReleaseStore restarted(f.root);
  CHECK(restarted.permanent() == std::optional<std::string>("1.0.0"));
  CHECK(restarted.current() == std::optional<std::string>("1.1.0"));
  CHECK(restarted.boot_version() == "1.0.0");
  // 1.1.0 stopped running at the restart.
  CHECK_FALSE(restarted.current());
  CHECK(listing(restarted) == "1.0.0:permanent 1.1.0:old");
  CHECK(restarted.newest_newer_than("1.0.0") == std::optional<std::string>("1.1.0"));
  CHECK_FALSE(restarted.newest_newer_than("1.1.0"));
}

TEST_CASE("boot_version fails clearly with no release or a vanished permanent one", "[releases]") {
  Fixture f;
  CHECK_THROWS_WITH(f.store.boot_version(),
                    "no release under " + (f.root / "releases").string() + ": unpack one with `hotswap unpack`");
  f.unpack({"1.0.0"});
  CHECK(f.store.boot_version() == "1.0.0");
  fs::remove_all(f.root / "releases" / "1.0.0");
  CHECK_THROWS_WITH(f.store.boot_version(), Catch::Contains("permanent release 1.0.0 is gone"));
}

TEST_CASE("remove is refused for the permanent and current releases", "[releases]") {
  Fixture f;
  f.unpack({"1.0.0", "1.1.0"});
  f.store.boot_version();
  f.store.mark_current("1.0.0");
  CHECK_THROWS_WITH(f.store.remove("1.1.0"), Catch::Contains("release 1.1.0 is permanent"));
  CHECK_THROWS_WITH(f.store.remove("1.0.0"), Catch::Contains("release 1.0.0 is current"));
  CHECK_THROWS_WITH(f.store.remove("2.0.0"), Catch::Contains("no release 2.0.0"));
  CHECK_THROWS_AS(f.store.remove("../1.0.0"), ReleaseError);
  CHECK(listing(f.store) == "1.0.0:current 1.1.0:permanent");
}

TEST_CASE("remove deletes old and unpacked releases", "[releases]") {
  Fixture f;
  f.unpack({"1.0.0", "1.1.0", "1.2.0"});
  f.store.boot_version();  // 1.2.0
  f.store.mark_current("1.0.0");
  f.store.mark_current("1.1.0");  // 1.0.0 becomes old
  REQUIRE(listing(f.store) == "1.0.0:old 1.1.0:current 1.2.0:permanent");
  f.store.remove("1.0.0");
  CHECK(listing(f.store) == "1.1.0:current 1.2.0:permanent");
  CHECK(json::parse(read_file(f.root / "releases" / "RELEASES.json"))["old"] == json::array());
  f.store.make_permanent("1.1.0");
  f.unpack({"2.0.0"});
  f.store.remove("2.0.0");
  CHECK(names_in(f.root / "releases") == std::vector<std::string>{"1.1.0", "1.2.0", "RELEASES.json"});
}

TEST_CASE("RELEASES.json is replaced atomically with the whole state", "[releases]") {
  Fixture f;
  f.unpack({"1.0.0", "1.1.0"});
  f.store.boot_version();
  f.store.mark_current("1.0.0");
  const fs::path file = f.root / "releases" / "RELEASES.json";
  CHECK(json::parse(read_file(file)) == json({{"permanent", "1.1.0"}, {"current", "1.0.0"}, {"old", json::array()}}));
  CHECK(names_in(f.root / "releases") == std::vector<std::string>{"1.0.0", "1.1.0", "RELEASES.json"});
  CHECK(mode_of(file) == 0644);
}

TEST_CASE("a corrupt RELEASES.json is an error naming the file, never a reset", "[releases]") {
  TempDir scratch;
  const fs::path file = scratch.path() / "releases" / "RELEASES.json";
  const std::vector<std::string> bad = {
      "{\"permanent\": ",
      "[]",
      R"({"permanent": 5, "current": null, "old": []})",
      R"({"permanent": "../x", "current": null, "old": []})",
      R"({"permanent": null, "current": null, "old": "1.0.0"})",
      R"({"permanent": null, "old": []})",
  };
  for (const std::string& text : bad) {
    CAPTURE(text);
    write_file(file, text);
    CHECK_THROWS_WITH(ReleaseStore(scratch.path()), Catch::Contains(file.string()) && Catch::Contains("corrupt"));
    CHECK(read_file(file) == text);
  }
}

TEST_CASE("a RELEASES.json nested too deep is refused as corrupt before anything recurses over it", "[releases]") {
  // The field checks dump a wrong value into their message, which recurses once per level.
  TempDir scratch;
  const fs::path file = scratch.path() / "releases" / "RELEASES.json";
  const std::string text =
      R"({"permanent": null, "current": )" + std::string(100'000, '[') + std::string(100'000, ']') + R"(, "old": []})";
  write_file(file, text);
  CHECK_THROWS_WITH(ReleaseStore(scratch.path()), Catch::Contains(file.string()) && Catch::Contains("corrupt") &&
                                                      Catch::Contains("JSON nested deeper than 64 levels"));
  CHECK(read_file(file) == text);
}

TEST_CASE("unpack refuses a missing or non-gzip tarball", "[releases][unpack]") {
  Fixture f;
  const fs::path absent = f.scratch.path() / "absent.tar.gz";
  CHECK_THROWS_WITH(f.store.unpack(absent), Catch::Contains(absent.string()));
  const fs::path text = f.scratch.path() / "notes.tar.gz";
  write_file(text, "this is not an archive\n");
  CHECK_THROWS_WITH(f.store.unpack(text), Catch::Contains(text.string()));
  CHECK(names_in(f.root / "releases").empty());
}

TEST_CASE("unpack refuses entries that could escape or are not plain files", "[releases][unpack]") {
  Fixture f;
  f.unpack({"1.0.0"});
  const auto with = [](Entry extra) {
    std::vector<Entry> entries = release_entries("1.5.0");
    entries.push_back(extra);
    return entries;
  };
  f.refused(with({Entry::Kind::File, "../evil", "x", 0644}), {"entry '../evil'", "'..'"});
  f.refused(with({Entry::Kind::File, "modules/../../evil", "x", 0644}), {"entry 'modules/../../evil'"});
  f.refused(with({Entry::Kind::File, "/abs", "x", 0644}), {"entry '/abs'", "absolute"});
  f.refused(with({Entry::Kind::Symlink, "modules/link.so", "/etc/passwd", 0777}),
            {"entry 'modules/link.so'", "symbolic link"});
  f.refused(with({Entry::Kind::Hardlink, "modules/hard.so", "manifest.json", 0644}),
            {"entry 'modules/hard.so'", "hard link"});
  f.refused(with({Entry::Kind::Fifo, "pipe", "", 0644}), {"entry 'pipe'", "fifo"});
  f.refused(with({Entry::Kind::File, "manifest.json", "{}", 0644}), {"entry 'manifest.json'", "appears twice"});
  CHECK(listing(f.store) == "1.0.0:unpacked");
}

TEST_CASE("unpack refuses a tarball without a valid manifest", "[releases][unpack]") {
  Fixture f;
  f.refused({{Entry::Kind::File, "modules/arena.so", "x", 0644}}, {"no manifest.json"});
  f.refused({{Entry::Kind::File, "manifest.json", R"({"release": "arena", "version": "1.x", "modules": []})", 0644}},
            {"invalid manifest", "version"});
  f.refused({{Entry::Kind::File, "manifest.json", "not json", 0644}}, {"invalid manifest", "invalid JSON"});
  std::vector<Entry> without_library = release_entries("1.0.0");
  without_library.erase(without_library.begin() + 2);
  f.refused(without_library, {"modules/arena-1.0.0.so", "does not contain"});
  std::vector<Entry> tampered = release_entries("1.0.0");
  tampered[2].content += "tampered";
  f.refused(tampered, {"modules/arena-1.0.0.so", "sha256"});
}

TEST_CASE("unpack parses every appup and refuses a malformed or hostile one, naming the file and field",
          "[releases][unpack]") {
  Fixture f;
  const auto with_appup = [](const std::string& text) {
    std::vector<Entry> entries = release_entries("1.0.0");
    entries[3].content = text;
    return entries;
  };
  const std::string file = "appups/arena-1.0.0.appup.json";
  f.refused(with_appup("{}"), {file, "invalid appup", "module"});
  f.refused(with_appup(R"({"module": "arena", "version": "1.0.0", "up": [], "down": [],})"), {file, "invalid JSON"});
  // std::regex recursed on this one until the stack overflowed.
  const std::string nested(20000, '(');
  f.refused(with_appup(R"({"module": "arena", "version": "1.0.0", "down": [], "up": [{"from": {"regex": ")" + nested +
                       R"("}, "instructions": []}]})"),
            {file, "invalid appup", "up[0].from.regex"});
  f.refused(with_appup(std::string(100000, '[') + std::string(100000, ']')), {file, "nested deeper than"});
  f.refused(with_appup(R"({"module": "arena", "version": "2.0.0", "up": [], "down": []})"),
            {file, "appup of arena 2.0.0", "module arena 1.0.0"});
  CHECK(names_in(f.root / "releases").empty());
}

TEST_CASE("unpack refuses a version that is already unpacked", "[releases][unpack]") {
  Fixture f;
  f.unpack({"1.1.0"});
  const std::string before = read_file(f.root / "releases" / "1.1.0" / "manifest.json");
  f.refused(release_entries("1.1.0"), {"release 1.1.0 is already unpacked"});
  CHECK(read_file(f.root / "releases" / "1.1.0" / "manifest.json") == before);
}

TEST_CASE("unpack refuses an entry over the size limit before reading it", "[releases][unpack]") {
  Fixture f;
  const fs::path big = f.scratch.path() / "big.tar.gz";
  hotswap::ops_test::write_oversized_tarball(big, "modules/huge.so", uint64_t(2) << 30);
  CHECK_THROWS_WITH(f.store.unpack(big), Catch::Contains("entry 'modules/huge.so'") && Catch::Contains("1 GiB"));
  CHECK(names_in(f.root / "releases").empty());
}

// ---- failures of the system, through the fake OsSysCalls ---------------------

namespace {

// A store on 1.0.0 (permanent) and 1.1.0 (unpacked), and what RELEASES.json holds.
struct Booted : Fixture {
  fs::path releases_json = root / "releases" / "RELEASES.json";
  std::string saved;
  Booted() {
    unpack({"1.0.0", "1.1.0"});
    store.mark_current("1.1.0");
    store.make_permanent("1.1.0");
    store.mark_current("1.0.0");
    saved = read_file(releases_json);
  }
  // After a failed save: the file, the store and a fresh reader all still see the old state.
  void unchanged() {
    CHECK(read_file(releases_json) == saved);
    CHECK(json::parse(saved) == json({{"permanent", "1.1.0"}, {"current", "1.0.0"}, {"old", json::array()}}));
    CHECK(listing(store) == "1.0.0:current 1.1.0:permanent");
    CHECK(listing(ReleaseStore(root)) == "1.0.0:current 1.1.0:permanent");
    CHECK(names_in(root / "releases") == std::vector<std::string>{"1.0.0", "1.1.0", "RELEASES.json"});
  }
};

}  // namespace

TEST_CASE("a full disk while saving RELEASES.json keeps the old file and says so", "[releases][os]") {
  Booted f;
  f.os.fail("write", "/.RELEASES.json.", ENOSPC);
  CHECK_THROWS_WITH(f.store.make_permanent("1.0.0"), Catch::StartsWith("cannot save " + f.releases_json.string()) &&
                                                         Catch::Contains("No space left on device"));
  f.unchanged();
  f.store.make_permanent("1.0.0");  // space again: the same change goes through
  CHECK(listing(f.store) == "1.0.0:permanent 1.1.0:old");
}

TEST_CASE("an I/O error while syncing or replacing RELEASES.json keeps the old file", "[releases][os]") {
  Booted f;
  f.os.fail("fsync", "/.RELEASES.json.", EIO);
  CHECK_THROWS_WITH(f.store.mark_current("1.1.0"), Catch::Contains(f.releases_json.string()) &&
                                                       Catch::Contains("Input/output error"));
  f.unchanged();
  f.os.fail("close", "/.RELEASES.json.", EIO);  // a write error reported late, by close
  CHECK_THROWS_WITH(f.store.mark_current("1.1.0"), Catch::Contains(f.releases_json.string()) &&
                                                       Catch::Contains("Input/output error"));
  f.unchanged();
  f.os.fail("rename", "/.RELEASES.json.", EIO);
  CHECK_THROWS_WITH(f.store.mark_current("1.1.0"), Catch::Contains(f.releases_json.string()) &&
                                                       Catch::Contains("Input/output error"));
  f.unchanged();
}

TEST_CASE("remove puts the release back when RELEASES.json cannot be saved", "[releases][os]") {
  Booted f;
  f.store.make_permanent("1.0.0");  // 1.1.0 becomes old: removable
  f.saved = read_file(f.releases_json);
  f.os.fail("write", "/.RELEASES.json.", ENOSPC);
  CHECK_THROWS_WITH(f.store.remove("1.1.0"), Catch::Contains("No space left on device"));
  CHECK(read_file(f.releases_json) == f.saved);
  CHECK(listing(f.store) == "1.0.0:permanent 1.1.0:old");
  CHECK(f.store.exists("1.1.0"));
  CHECK(names_in(f.root / "releases") == std::vector<std::string>{"1.0.0", "1.1.0", "RELEASES.json"});
}

// Two processes (here two stores on one root) saving at the same moment: with
// one fixed temporary name, the second truncates and renames away the first's
// file, and the first's rename then fails.
TEST_CASE("two writers saving RELEASES.json at once each use a temporary file of their own", "[releases][os]") {
  Booted first;
  ReleaseStore second(first.root);
  bool second_wrote = false;
  first.os.set_hook([&](const std::string& call, const std::string& path) {
    // After the first writer has written and closed its temporary file, just before its rename.
    if (call != "rename" || path.find("RELEASES.json") == std::string::npos || second_wrote) return;
    second_wrote = true;
    second.make_permanent("1.0.0");
  });
  first.store.make_permanent("1.0.0");
  CHECK(second_wrote);
  CHECK(json::parse(read_file(first.releases_json)) ==
        json({{"permanent", "1.0.0"}, {"current", nullptr}, {"old", {"1.1.0"}}}));
  CHECK(listing(first.store) == "1.0.0:permanent 1.1.0:old");
  CHECK(listing(second) == "1.0.0:permanent 1.1.0:old");
  CHECK(names_in(first.root / "releases") == std::vector<std::string>{"1.0.0", "1.1.0", "RELEASES.json"});
}

TEST_CASE("a full disk while unpacking names the tarball, the entry and the reason", "[releases][unpack][os]") {
  Fixture f;
  const fs::path tarball = f.tarball("1.0.0");
  f.os.fail("write", "/modules/arena-1.0.0.so", ENOSPC);
  CHECK_THROWS_WITH(f.store.unpack(tarball), Catch::Contains("tarball " + tarball.string()) &&
                                                 Catch::Contains("entry 'modules/arena-1.0.0.so'") &&
                                                 Catch::Contains("No space left on device"));
  CHECK(names_in(f.root / "releases").empty());  // the staging folder is gone
  CHECK(f.store.unpack(tarball) == "1.0.0");     // space again: the same tarball unpacks
}

TEST_CASE("an I/O error while unpacking names the tarball and leaves nothing behind", "[releases][unpack][os]") {
  Fixture f;
  const fs::path tarball = f.tarball("1.0.0");
  SECTION("a write error reported by close") {
    f.os.fail("close", "/manifest.json", EIO);
    CHECK_THROWS_WITH(f.store.unpack(tarball), Catch::Contains("tarball " + tarball.string()) &&
                                                   Catch::Contains("entry 'manifest.json'") &&
                                                   Catch::Contains("Input/output error"));
  }
  SECTION("syncing the unpacked files fails") {
    f.os.fail("syncfs", "/.unpack-", EIO);
    CHECK_THROWS_WITH(f.store.unpack(tarball), Catch::Contains("tarball " + tarball.string()) &&
                                                   Catch::Contains("cannot sync") &&
                                                   Catch::Contains("Input/output error"));
  }
  SECTION("a folder cannot be made") {
    f.os.fail("mkdir", "/modules", ENOSPC);
    CHECK_THROWS_WITH(f.store.unpack(tarball), Catch::Contains("tarball " + tarball.string()) &&
                                                   Catch::Contains("No space left on device"));
  }
  CHECK(names_in(f.root / "releases").empty());
  CHECK_FALSE(f.store.exists("1.0.0"));
}

// --- issue 9: what reload picks; a failed target is marked and skipped ---

TEST_CASE("reload picks the newest unpacked release newer than the running one, never an old one", "[releases]") {
  Fixture f;
  f.unpack({"1.0.0", "1.1.0", "1.2.0"});
  f.store.boot_version();         // a first boot: the newest, 1.2.0, becomes permanent
  f.store.mark_current("1.0.0");  // downgraded to 1.0.0: 1.2.0 (permanent) and 1.1.0 (unpacked) are newer
  f.store.make_permanent("1.0.0");
  CHECK(listing(f.store) == "1.0.0:permanent 1.1.0:unpacked 1.2.0:old");
  // 1.2.0 ran before (old): reload does not go back to it by itself.
  CHECK(f.store.reload_target("1.0.0") == std::optional<std::string>("1.1.0"));
  CHECK_FALSE(f.store.reload_target("1.1.0"));
  CHECK_FALSE(f.store.reload_target("1.2.0"));
  CHECK_THROWS_WITH(f.store.reload_target("one"), Catch::Contains("'one' is not a release version"));
}

TEST_CASE("a failed target is recorded, skipped by reload, and cleared when it runs, is removed or unpacked again",
          "[releases]") {
  Fixture f;
  f.unpack({"1.0.0", "1.1.0", "1.2.0"});
  f.store.mark_current("1.0.0");
  f.store.make_permanent("1.0.0");
  REQUIRE(f.store.reload_target("1.0.0") == std::optional<std::string>("1.2.0"));

  f.store.mark_failed("1.2.0", "step 1 (update counter) failed: boom");
  CHECK(f.store.reload_target("1.0.0") == std::optional<std::string>("1.1.0"));  // the next newest instead
  const json listed = f.store.to_json();
  CHECK(listed["releases"][2] ==
        json({{"version", "1.2.0"}, {"state", "unpacked"}, {"failed", "step 1 (update counter) failed: boom"}}));
  CHECK(listed["releases"][1].count("failed") == 0);
  // Recorded in RELEASES.json: another process (a restart) sees it.
  ReleaseStore restarted(f.root);
  CHECK(restarted.list()[2].failed == std::optional<std::string>("step 1 (update counter) failed: boom"));
  CHECK(restarted.reload_target("1.0.0") == std::optional<std::string>("1.1.0"));

  f.store.mark_failed("1.1.0", std::string(5000, 'x'));  // bounded
  CHECK(f.store.list()[1].failed->size() == ReleaseStore::kMaxFailureText);
  CHECK_FALSE(f.store.reload_target("1.0.0"));  // nothing left: reload re-reads the config

  // Named explicitly and committed: the mark goes.
  f.store.mark_current("1.2.0");
  CHECK_FALSE(f.store.list()[2].failed);
  // Removed, then unpacked again: a fresh chance.
  f.store.remove("1.1.0");
  f.unpack({"1.1.0"});
  CHECK_FALSE(f.store.list()[1].failed);
  // The folder deleted by hand (the mark stays behind), then unpacked again: cleared too.
  f.store.mark_failed("1.1.0", "boom");
  fs::remove_all(f.root / "releases" / "1.1.0");
  f.unpack({"1.1.0"});
  CHECK_FALSE(f.store.list()[1].failed);
  CHECK_THROWS_WITH(f.store.mark_failed("9.9.9", "x"), Catch::Contains("no release 9.9.9"));
}

TEST_CASE("a RELEASES.json with a malformed failed record is refused, naming the field", "[releases]") {
  Fixture f;
  f.unpack({"1.0.0"});
  const fs::path file = f.root / "releases" / "RELEASES.json";
  write_file(file, R"({"permanent": "1.0.0", "current": null, "old": [], "failed": {"1.0.0": 3}})");
  CHECK_THROWS_WITH(ReleaseStore(f.root), Catch::Contains("failed.1.0.0: expected the error text"));
  write_file(file, R"({"permanent": "1.0.0", "current": null, "old": [], "failed": ["1.0.0"]})");
  CHECK_THROWS_WITH(ReleaseStore(f.root), Catch::Contains("'failed' must be an object"));
  write_file(file, R"({"permanent": "1.0.0", "current": null, "old": [], "failed": {"../x": "e"}})");
  CHECK_THROWS_WITH(ReleaseStore(f.root), Catch::Contains("failed: '../x' is not a release version"));
}
