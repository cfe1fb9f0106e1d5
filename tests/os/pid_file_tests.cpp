#include "os/pid_file.hpp"

#include <unistd.h>

#include <algorithm>
#include <boost/filesystem/operations.hpp>
#include <catch2/catch.hpp>
#include <memory>
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
