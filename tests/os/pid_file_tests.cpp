#include "os/pid_file.hpp"

#include <unistd.h>

#include <algorithm>
#include <boost/filesystem/operations.hpp>
#include <catch2/catch.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "faulty_os_sys_calls.hpp"

namespace fs = boost::filesystem;
using hotswap::host::PidFile;
using hotswap::test::FaultyOsSysCalls;

namespace {

class TempDir {
 public:
  TempDir() : path_(fs::temp_directory_path() / fs::unique_path("hotswap-os-%%%%-%%%%-%%%%")) {
    fs::create_directories(path_);
  }
  ~TempDir() {
    boost::system::error_code ignored;  // a leftover temp folder is harmless; a throwing destructor is not
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

size_t position_of(const std::vector<std::string>& calls, const std::string& call) {
  return size_t(std::find(calls.begin(), calls.end(), call) - calls.begin());
}

}  // namespace

TEST_CASE("a pid file holds our pid while it lives and refuses a second host", "[os][pidfile]") {
  TempDir dir;
  const fs::path file = dir.path() / "hotswap.pid";
  {
    PidFile held(file);
    CHECK(PidFile::running(file) == ::getpid());
    CHECK_THROWS_WITH(PidFile(file), Catch::Contains("another hotswap host (pid " + std::to_string(::getpid()) + ")") &&
                                         Catch::Contains(file.string()));
  }
  CHECK_FALSE(fs::exists(file));
  CHECK_FALSE(PidFile::running(file));
  PidFile again(file);  // free again
  CHECK(PidFile::running(file) == ::getpid());
}

TEST_CASE("the pid file is unlinked while its lock is still held, then closed", "[os][pidfile]") {
  TempDir dir;
  const fs::path file = dir.path() / "hotswap.pid";
  FaultyOsSysCalls fake;
  bool gone_before_close = false;
  fake.set_hook([&](const std::string& call, const std::string& path) {
    if (call == "close" && path == file.string()) gone_before_close = !fs::exists(file);
  });
  { PidFile held(file, fake); }
  const std::vector<std::string> calls = fake.calls_containing(file.string());
  const size_t unlinked = position_of(calls, "unlink " + file.string());
  const size_t closed = position_of(calls, "close " + file.string());
  REQUIRE(unlinked < calls.size());
  REQUIRE(closed < calls.size());
  CHECK(unlinked < closed);
  CHECK(gone_before_close);
}

// The race of "unlinked before its lock is released": a second host opens the
// file, the first one exits (unlink, close), and the second one's flock then
// succeeds on an inode that no longer has a name. Without a check it would run
// holding a lock nobody can see: `stop` finds no pid file and a third host
// starts beside it.
TEST_CASE("a host that locks a pid file its previous owner just unlinked starts over", "[os][pidfile]") {
  TempDir dir;
  const fs::path file = dir.path() / "hotswap.pid";
  auto previous = std::make_unique<PidFile>(file);
  FaultyOsSysCalls fake;
  fake.set_hook([&](const std::string& call, const std::string& path) {
    // Between the contender's open and its flock, the previous owner exits.
    if (call == "flock" && path == file.string()) previous.reset();
  });
  PidFile contender(file, fake);
  CHECK_FALSE(previous);
  CHECK(fake.calls_containing("open " + file.string()).size() == 2);  // it started over once
  CHECK(fs::exists(file));
  CHECK(PidFile::running(file) == ::getpid());
  CHECK_THROWS_WITH(PidFile(file), Catch::Contains("another hotswap host"));
}

TEST_CASE("a pid file that cannot be written is an error naming it and the reason", "[os][pidfile]") {
  TempDir dir;
  const fs::path file = dir.path() / "hotswap.pid";
  FaultyOsSysCalls fake;
  fake.fail("pwrite", file.string(), ENOSPC);
  CHECK_THROWS_WITH(PidFile(file, fake),
                    Catch::Contains("cannot write " + file.string()) && Catch::Contains("No space left on device"));
  CHECK_FALSE(fs::exists(file));
  PidFile works(file);  // nothing left locked
}

// Blue-green handover: green takes the file over while blue still holds its
// lock; at every moment the path names a locked inode, so `stop`, `status` and
// a third host always see exactly one live host.
TEST_CASE("green takes the pid file over atomically while blue holds its lock, then blue lets go", "[os][pidfile]") {
  TempDir dir;
  const fs::path file = dir.path() / "hotswap.pid";
  const pid_t green_pid = ::getpid() + 1;  // any pid: running() reports what the file says
  auto blue = std::make_unique<PidFile>(file);
  CHECK(blue->owns_path());
  FaultyOsSysCalls fake;
  std::optional<pid_t> seen_before_rename;
  fake.set_hook([&](const std::string& call, const std::string&) {
    if (call == "rename") seen_before_rename = PidFile::running(file);
  });
  auto green = std::make_unique<PidFile>(PidFile::TakeOver{}, file, green_pid, fake);
  CHECK(seen_before_rename == ::getpid());  // blue's, up to the rename
  CHECK(PidFile::running(file) == green_pid);
  CHECK_FALSE(blue->owns_path());
  CHECK(green->owns_path());
  CHECK_FALSE(fs::exists(file.string() + "." + std::to_string(green_pid) + ".new"));
  CHECK_THROWS_WITH(PidFile(file), Catch::Contains("another hotswap host (pid " + std::to_string(green_pid) + ")"));

  blue->hand_over_name();
  blue->hand_over_name();  // idempotent
  blue.reset();
  CHECK(fs::exists(file));  // green's, left alone
  CHECK(PidFile::running(file) == green_pid);
  CHECK_THROWS_WITH(PidFile(file), Catch::Contains("another hotswap host"));

  green.reset();
  CHECK_FALSE(fs::exists(file));
  CHECK_FALSE(PidFile::running(file));
}

TEST_CASE("blue that exits without handing its name over still leaves green's pid file alone", "[os][pidfile]") {
  TempDir dir;
  const fs::path file = dir.path() / "hotswap.pid";
  auto blue = std::make_unique<PidFile>(file);
  PidFile green(PidFile::TakeOver{}, file, 4242);
  blue.reset();
  CHECK(fs::exists(file));
  CHECK(PidFile::running(file) == 4242);
}

TEST_CASE("a take-over whose rename fails leaves blue's pid file and no temporary file", "[os][pidfile]") {
  TempDir dir;
  const fs::path file = dir.path() / "hotswap.pid";
  PidFile blue(file);
  FaultyOsSysCalls fake;
  fake.fail("rename", file.string(), EXDEV);
  CHECK_THROWS_WITH(PidFile(PidFile::TakeOver{}, file, 4242, fake),
                    Catch::Contains("cannot take " + file.string() + " over: rename ") &&
                        Catch::Contains("Invalid cross-device link"));
  CHECK(PidFile::running(file) == ::getpid());
  CHECK(blue.owns_path());
  CHECK_FALSE(fs::exists(file.string() + ".4242.new"));
  const std::vector<std::string> entries = [&] {
    std::vector<std::string> names;
    for (const fs::directory_entry& e : fs::directory_iterator(dir.path())) names.push_back(e.path().filename().string());
    return names;
  }();
  CHECK(entries == std::vector<std::string>{"hotswap.pid"});
}

TEST_CASE("a take-over that cannot write its temporary file names it and the reason", "[os][pidfile]") {
  TempDir dir;
  const fs::path file = dir.path() / "hotswap.pid";
  PidFile blue(file);
  FaultyOsSysCalls fake;
  fake.fail("pwrite", ".4242.new", ENOSPC);
  CHECK_THROWS_WITH(PidFile(PidFile::TakeOver{}, file, 4242, fake),
                    Catch::Contains("write " + file.string() + ".4242.new") &&
                        Catch::Contains("No space left on device"));
  CHECK(PidFile::running(file) == ::getpid());
  CHECK_FALSE(fs::exists(file.string() + ".4242.new"));
}
