// The loader's probe: libraries whose static constructors throw, crash, exit
// or hang are loaded in a child `hotswap __probe-module` first, refused with
// what happened, and cost this process nothing: it then loads a good module
// and unloads everything normally (before the probe, a throwing constructor
// left glibc's loader lock held and the next dlclose deadlocked).
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "../os/faulty_os_sys_calls.hpp"
#include "core/library_loader.hpp"
#include "core/module_probe.hpp"
#include "loader_test_support.hpp"
#include "test_support.hpp"

namespace fs = boost::filesystem;
using hotswap::host::ChildProcessProbe;
using hotswap::host::LibraryLoader;
using hotswap::host::LoadError;
using hotswap::test::module_file;

namespace {

std::shared_ptr<ChildProcessProbe> probe(std::chrono::milliseconds timeout = ChildProcessProbe::kDefaultTimeout) {
  return std::make_shared<ChildProcessProbe>(HOTSWAP_BINARY, timeout);
}

// Loading ctor-`variant` is refused as ProbeFailed with a message naming the
// file and containing `text`; then a good module loads and unloads cleanly.
void expect_probe_refusal(const std::string& variant, const std::string& text,
                          std::chrono::milliseconds timeout = ChildProcessProbe::kDefaultTimeout) {
  LibraryLoader loader({}, hotswap::os::real_os_sys_calls(), probe(timeout));
  const fs::path file = module_file("ctor-" + variant, "ctor", "1.0.0");
  try {
    loader.load(file, {"ctor", "1.0.0", ""});
    FAIL("loading " << file << " should have been refused");
  } catch (const LoadError& e) {
    INFO(e.what());
    CHECK(e.kind() == LoadError::Kind::ProbeFailed);
    CHECK_THAT(e.what(), Catch::Contains(file.string()) && Catch::Contains(text));
  }
  CHECK(loader.open_count() == 0);
  // The good module goes through a probe with the default timeout: a short one
  // would make this load depend on how fast a child starts (slow under ASan).
  LibraryLoader after({}, hotswap::os::real_os_sys_calls(), probe());
  auto good = after.load(module_file("good", "counter", "1.0.0"), {"counter", "1.0.0", ""});
  CHECK(good->name() == "counter");
  CHECK(good->close());
  CHECK(after.leaked().empty());
}

}  // namespace

TEST_CASE("the probe child closes every inherited descriptor but its library and its report socket", "[probe]") {
  // Opened without close-on-exec, as Asio opens the admin sockets.
  const int stray = ::open("/dev/null", O_RDONLY);
  const int library = ::open("/dev/null", O_RDONLY);
  const int report = ::open("/dev/null", O_RDONLY);
  const int later_stray = ::open("/dev/null", O_RDONLY);
  REQUIRE((stray >= 3 && library > stray && report > library && later_stray > report));
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    hotswap::host::close_inherited_fds(report, library);
    const bool closed = ::fcntl(stray, F_GETFD) == -1 && ::fcntl(later_stray, F_GETFD) == -1;
    const bool kept = ::fcntl(library, F_GETFD) != -1 && ::fcntl(report, F_GETFD) != -1 && ::fcntl(2, F_GETFD) != -1;
    ::_exit(closed && kept ? 0 : 1);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  for (int fd : {stray, library, report, later_stray}) ::close(fd);
}

TEST_CASE("the probe passes a good module, which the host then loads", "[probe]") {
  LibraryLoader loader({}, hotswap::os::real_os_sys_calls(), probe());
  auto lib = loader.load(module_file("good", "counter", "1.0.0"), {"counter", "1.0.0", ""});
  CHECK(lib->version() == "1.0.0");
  CHECK(lib->close());
}

TEST_CASE("a static constructor that throws is refused by the probe", "[probe]") {
#if defined(__SANITIZE_THREAD__)
  // TSan's dlopen interceptor has no unwind information: the exception cannot
  // cross it, and the child (a TSan build of hotswap too) ends in terminate().
  expect_probe_refusal("throws", "the child was killed by SIGABRT");
#else
  expect_probe_refusal("throws", "a static constructor threw ctor 1.0.0: this static constructor throws on purpose");
#endif
}

TEST_CASE("a static constructor that segfaults is refused by the probe", "[probe]") {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // The sanitizer reports the fault itself and exits with a status instead of dying by the signal.
  expect_probe_refusal("segfaults", "probe process");
#else
  expect_probe_refusal("segfaults", "killed by SIGSEGV");
#endif
}

TEST_CASE("a static constructor that calls exit() is refused by the probe", "[probe]") {
  expect_probe_refusal("exits", "exited with status 3 before reporting");
}

TEST_CASE("a static constructor that never returns is killed past the probe's timeout", "[probe]") {
  // The child hangs forever: the outcome does not depend on how long the timeout is.
  expect_probe_refusal("hangs", "did not finish within 200 ms", std::chrono::milliseconds(200));
}

TEST_CASE("what the probe child finds wrong keeps the kind the loader would have given", "[probe]") {
  LibraryLoader loader({}, hotswap::os::real_os_sys_calls(), probe());
  // Untagged: a tagged one is refused by its ABI tag before the probe runs.
  const fs::path file = module_file("abi-too-new-untagged", "counter", "2.0.0");
  try {
    loader.load(file, {"counter", "2.0.0", ""});
    FAIL("should have thrown");
  } catch (const LoadError& e) {
    CHECK(e.kind() == LoadError::Kind::AbiTooNew);
    CHECK_THAT(e.what(), Catch::Contains(file.string()) && Catch::Contains("module ABI 99"));
  }
  const fs::path unresolved = module_file("unresolved", "counter", "2.0.0");
  CHECK_THROWS_WITH(loader.load(unresolved, {"counter", "2.0.0", ""}),
                    Catch::Contains(unresolved.string()) && Catch::Contains("hotswap_test_symbol_nobody_defines"));
}

TEST_CASE("a probe that cannot run refuses the library, naming why", "[probe]") {
  const fs::path file = module_file("good", "counter", "1.0.0");
  SECTION("spawn fails") {
    hotswap::test::FaultyOsSysCalls os;
    LibraryLoader loader({}, os, std::make_shared<ChildProcessProbe>(HOTSWAP_BINARY, std::chrono::seconds(10), os));
    os.fail("spawn", "__probe-module", EAGAIN);
    CHECK_THROWS_WITH(loader.load(file), Catch::Contains(file.string()) && Catch::Contains("could not start") &&
                                             Catch::Contains(hotswap::os::errno_text(EAGAIN)));
    CHECK(loader.load(file)->close());  // one failure only
  }
  SECTION("the program is not a hotswap binary") {
    LibraryLoader loader({}, hotswap::os::real_os_sys_calls(), std::make_shared<ChildProcessProbe>("/bin/false"));
    CHECK_THROWS_WITH(loader.load(file), Catch::Contains(file.string()) && Catch::Contains("exited with status 1"));
  }
}
