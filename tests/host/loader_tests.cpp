#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include <catch2/catch.hpp>

#include "../os/faulty_os_sys_calls.hpp"
#include "core/library_loader.hpp"
#include "loader_test_support.hpp"
#include "test_support.hpp"

namespace fs = boost::filesystem;
using hotswap::host::LibraryLoader;
using hotswap::host::LoadError;
using hotswap::test::module_file;

namespace {

// Loading `variant`'s counter-2.0.0.so fails with `kind` and a message containing `text`.
void expect_load_error(const std::string& variant, LoadError::Kind kind, const std::string& text) {
  LibraryLoader loader;
  fs::path file = module_file(variant, "counter", "2.0.0");
  try {
    loader.load(file, {"counter", "2.0.0", ""});
    FAIL("loading " << file << " should have failed");
  } catch (const LoadError& e) {
    INFO(e.what());
    CHECK(e.kind() == kind);
    CHECK_THAT(e.what(), Catch::Contains(text));
    CHECK_THAT(e.what(), Catch::Contains(file.string()));
  }
  // A failed load leaves nothing loaded.
  CHECK(loader.open_count() == 0);
}

}  // namespace

TEST_CASE("loader loads a module and reads its descriptor") {
  LibraryLoader loader;
  auto lib = loader.load(module_file("good", "counter", "1.0.0"), {"counter", "1.0.0", ""});
  CHECK(lib->name() == "counter");
  CHECK(lib->version() == "1.0.0");
  CHECK(lib->state_schema() == 1);
  CHECK(lib->descriptor().abi_version == HOTSWAP_ABI_VERSION);
  CHECK(lib->descriptor().on_message != nullptr);
}

TEST_CASE("loader copies every load to a fresh memory file so the same file loads twice independently") {
  LibraryLoader loader;
  fs::path file = module_file("good", "counter", "1.0.0");
  auto a = loader.load(file);
  auto b = loader.load(file);
  // Distinct copies are distinct libraries: their code lives at different addresses.
  CHECK(a->descriptor().create != b->descriptor().create);
  CHECK(a->loaded_path() != b->loaded_path());
  CHECK(loader.open_count() == 2);
}

TEST_CASE("loader loads from a sealed memory file, never from a copy on disk") {
  hotswap::test::ScratchDir run;
  LibraryLoader loader(run.path());
  auto lib = loader.load(module_file("good", "counter", "1.0.0"), {"counter", "1.0.0", ""});
  REQUIRE_THAT(lib->loaded_path(), Catch::StartsWith("/proc/self/fd/"));
  const int fd = std::stoi(lib->loaded_path().substr(std::strlen("/proc/self/fd/")));
  CHECK(fs::read_symlink(lib->loaded_path()).string().rfind("/memfd:hotswap:counter-1.0.0", 0) == 0);
  // What was hashed and checked cannot change any more: every seal is set.
  const int seals = ::fcntl(fd, F_GET_SEALS);
  CHECK((seals & (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)) ==
        (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL));
  CHECK(::write(fd, "x", 1) == -1);
  // Nothing was written to the run folder.
  CHECK(fs::is_empty(run.path()));
}

TEST_CASE("loader verifies the library is unmapped after close and closes its memory file") {
  LibraryLoader loader;
  const size_t fds_before = hotswap::test::open_fd_count();
  auto lib = loader.load(module_file("good", "counter", "1.0.0"));
  CHECK(loader.open_count() == 1);
  const std::string loaded_path = lib->loaded_path();
  CHECK(hotswap::os::real_os_sys_calls().dl_is_loaded(loaded_path));
  CHECK(lib->close());
  CHECK_FALSE(hotswap::os::real_os_sys_calls().dl_is_loaded(loaded_path));
  CHECK(loader.open_count() == 0);
  CHECK(hotswap::test::open_fd_count() == fds_before);
  CHECK(loader.leaked().empty());
}

TEST_CASE("loader reports a library that stays mapped (thread_local destructor) as leaked") {
  LibraryLoader loader;
  hotswap::test::RecordingServices services;
  hotswap::host::ModuleRegistry registry(services);
  auto lib = loader.load(module_file("pinned", "pinned", "1.0.0"), {"pinned", "1.0.0", ""});
  registry.start(lib);
  auto removed = registry.remove(*registry.find("pinned"));
  removed.reset();
  CHECK_FALSE(lib->close());
  REQUIRE(loader.leaked().size() == 1);
  CHECK_THAT(loader.leaked()[0], Catch::Contains("pinned 1.0.0"));
  // Its memory file stays open, so its /proc/self/fd path names no other library:
  // the next load gets another path, and the library is still in the link map under it,
  // as RTLD_NOLOAD agrees.
  CHECK(fs::exists(lib->loaded_path()));
  CHECK(hotswap::os::real_os_sys_calls().dl_is_loaded(lib->loaded_path()));
  void* still = ::dlopen(lib->loaded_path().c_str(), RTLD_NOW | RTLD_NOLOAD);
  CHECK(still != nullptr);
  if (still != nullptr) ::dlclose(still);
  auto next = loader.load(module_file("good", "counter", "1.0.0"));
  CHECK(next->loaded_path() != lib->loaded_path());
  CHECK(next->close());
}

TEST_CASE("a closed library refuses to hand out its descriptor") {
  LibraryLoader loader;
  auto lib = loader.load(module_file("good", "counter", "1.0.0"), {"counter", "1.0.0", ""});
  REQUIRE(lib->descriptor().create != nullptr);
  CHECK_FALSE(lib->closed());
  CHECK(lib->close());
  CHECK(lib->closed());
  // Its function pointers pointed into code that is unmapped now.
  CHECK_THROWS_AS(lib->descriptor(), std::logic_error);
  CHECK_THROWS_WITH(lib->descriptor(), Catch::Contains("counter 1.0.0") && Catch::Contains("closed"));
  CHECK(lib->name() == "counter");  // what it was stays known, for messages
}

TEST_CASE("a failing dlopen names the library and the loader's message") {
  hotswap::test::FaultyOsSysCalls os;
  LibraryLoader loader({}, os);
  os.fail_dl("dlopen", "/proc/self/fd/", "fake: cannot map segment from shared object");
  const fs::path file = module_file("good", "counter", "1.0.0");
  try {
    loader.load(file, {"counter", "1.0.0", ""});
    FAIL("loading " << file << " should have failed");
  } catch (const LoadError& e) {
    CHECK(e.kind() == LoadError::Kind::DlopenFailed);
    CHECK_THAT(e.what(), Catch::Contains(file.string()) &&
                             Catch::Contains("fake: cannot map segment from shared object"));
  }
  CHECK(loader.open_count() == 0);
  CHECK(loader.load(file, {"counter", "1.0.0", ""})->name() == "counter");  // one failure only
}

TEST_CASE("a failing dlclose is reported as a leak and the library is never reused") {
  hotswap::test::FaultyOsSysCalls os;
  LibraryLoader loader({}, os);
  const fs::path file = module_file("good", "counter", "1.0.0");
  auto lib = loader.load(file, {"counter", "1.0.0", ""});
  os.fail_dl("dlclose", "/proc/self/fd/", "fake: dlclose failed");
  CHECK_FALSE(lib->close());
  CHECK(lib->closed());
  REQUIRE(loader.leaked().size() == 1);
  CHECK_THAT(loader.leaked()[0], Catch::Contains("counter 1.0.0"));
  CHECK_THROWS_AS(lib->descriptor(), std::logic_error);

  // A new load gets a new copy under a new name, never the leaked one.
  auto again = loader.load(file, {"counter", "1.0.0", ""});
  const std::vector<std::string> opened = os.calls_containing("dlopen ");
  REQUIRE(opened.size() >= 2);
  CHECK(opened.front() != opened.back());
  CHECK(again->close());
  CHECK(loader.leaked().size() == 1);
}

TEST_CASE("loader refuses a missing file") {
  LibraryLoader loader;
  try {
    loader.load("/nonexistent/counter-1.0.0.so");
    FAIL("should have thrown");
  } catch (const LoadError& e) {
    CHECK(e.kind() == LoadError::Kind::MissingFile);
    CHECK_THAT(e.what(), Catch::Contains("/nonexistent/counter-1.0.0.so") && Catch::Contains("does not exist"));
  }
}

TEST_CASE("loader refuses a FIFO or a folder named as a module without blocking on it") {
  // A FIFO with no writer would block a plain open forever: the planner's worker would hang.
  hotswap::test::ScratchDir dir;
  const fs::path fifo = dir.path() / "counter-2.0.0.so";
  REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
  const fs::path folder = dir.path() / "counter-3.0.0.so";
  fs::create_directory(folder);
  for (const fs::path& file : {fifo, folder}) {
    LibraryLoader loader;
    try {
      loader.load(file);
      FAIL("loading " << file << " should have failed");
    } catch (const LoadError& e) {
      CHECK(e.kind() == LoadError::Kind::NotSharedObject);
      CHECK_THAT(e.what(), Catch::Contains(file.string()) && Catch::Contains("is not a regular file"));
    }
    CHECK(loader.open_count() == 0);
  }
}

TEST_CASE("loader refuses a file that is not a library") {
  expect_load_error("not-a-library", LoadError::Kind::NotSharedObject, "not an ELF file");
}

TEST_CASE("loader refuses a library without the entry symbol") {
  expect_load_error("no-entry", LoadError::Kind::MissingEntry, "hotswap_module_entry");
}

TEST_CASE("loader refuses a library with unresolved symbols") {
  expect_load_error("unresolved", LoadError::Kind::UnresolvedSymbol, "hotswap_test_symbol_nobody_defines");
}

TEST_CASE("loader refuses a module built for a newer ABI by its ABI tag, before loading it") {
  expect_load_error("abi-too-new", LoadError::Kind::AbiTooNew,
                    "counter-2.0.0.so (by its ABI tag) was built for module ABI 99, newer than this host supports (1..1)");
}

TEST_CASE("loader refuses a module built for a newer ABI by its descriptor when it has no ABI tag") {
  expect_load_error("abi-too-new-untagged", LoadError::Kind::AbiTooNew,
                    "counter-2.0.0.so was built for module ABI 99, newer than this host supports (1..1)");
}

TEST_CASE("loader refuses a module built for an older ABI") {
  expect_load_error("abi-too-old", LoadError::Kind::AbiTooOld, "(by its ABI tag) was built for module ABI 0");
}

TEST_CASE("loader refuses a descriptor shorter than its ABI requires") {
  expect_load_error("short-descriptor", LoadError::Kind::BadDescriptor, "descriptor is 16 bytes");
}

TEST_CASE("loader refuses a module whose name or version differs from what was asked") {
  LibraryLoader loader;
  fs::path file = module_file("good", "counter", "1.0.0");
  try {
    loader.load(file, {"chat", "1.0.0", ""});
    FAIL("should have thrown");
  } catch (const LoadError& e) {
    CHECK(e.kind() == LoadError::Kind::NameMismatch);
    CHECK_THAT(e.what(), Catch::Contains("is module 'counter', expected 'chat'"));
  }
  try {
    loader.load(file, {"counter", "1.1.0", ""});
    FAIL("should have thrown");
  } catch (const LoadError& e) {
    CHECK(e.kind() == LoadError::Kind::VersionMismatch);
    CHECK_THAT(e.what(), Catch::Contains("counter version 1.0.0, expected 1.1.0"));
  }
}

TEST_CASE("loader refuses a file whose sha256 differs from the manifest") {
  LibraryLoader loader;
  fs::path file = module_file("good", "counter", "1.0.0");
  std::string wrong(64, '0');
  try {
    loader.load(file, {"counter", "1.0.0", wrong});
    FAIL("should have thrown");
  } catch (const LoadError& e) {
    CHECK(e.kind() == LoadError::Kind::HashMismatch);
    CHECK_THAT(e.what(), Catch::Contains(file.string()) && Catch::Contains(wrong));
  }
  CHECK_NOTHROW(loader.load(file, {"counter", "1.0.0", hotswap::host::sha256_file(file)}));
}

TEST_CASE("loader refuses a file or folder that other users can write") {
  fs::path dir = fs::temp_directory_path() / fs::unique_path("hotswap-perm-%%%%%%%%");
  fs::create_directories(dir);
  struct Cleanup {
    fs::path dir;
    ~Cleanup() { fs::remove_all(dir); }
  } cleanup{dir};
  fs::path file = dir / "counter-1.0.0.so";
  fs::copy_file(module_file("good", "counter", "1.0.0"), file);
  LibraryLoader loader;

  ::chmod(file.c_str(), 0666);
  try {
    loader.load(file);
    FAIL("should have thrown");
  } catch (const LoadError& e) {
    CHECK(e.kind() == LoadError::Kind::UnsafePermissions);
    CHECK_THAT(e.what(), Catch::Contains("its group and other users can write it"));
  }
  ::chmod(file.c_str(), 0644);
  ::chmod(dir.c_str(), 0777);
  try {
    loader.load(file);
    FAIL("should have thrown");
  } catch (const LoadError& e) {
    CHECK(e.kind() == LoadError::Kind::UnsafePermissions);
    CHECK_THAT(e.what(), Catch::Contains("its folder"));
  }
  ::chmod(dir.c_str(), 0755);
  CHECK_NOTHROW(loader.load(file));
}

TEST_CASE("500 load/unload cycles leave mappings and descriptors where they started") {
  LibraryLoader loader;
  hotswap::test::RecordingServices services;
  hotswap::host::ModuleRegistry registry(services);
  fs::path file = module_file("good", "counter", "1.0.0");
  // Warm up once so that lazily created process-wide mappings (libstdc++ pools, locale) exist.
  {
    auto lib = loader.load(file);
    registry.start(lib);
    registry.remove(*registry.find("counter")).reset();
    REQUIRE(lib->close());
  }
  [[maybe_unused]] size_t maps_before = hotswap::test::mapping_count();
  size_t file_maps_before = hotswap::test::mapping_count(/*files_only=*/true);
  size_t fds_before = hotswap::test::open_fd_count();
  for (int i = 0; i < 500; ++i) {
    auto lib = loader.load(file);
    auto& slot = registry.start(lib);
    registry.deliver_message(slot, 1, "add 1");
    registry.remove(slot).reset();
    REQUIRE(lib->close());
  }
  CHECK(hotswap::test::mapping_count(/*files_only=*/true) == file_maps_before);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)  // their runtimes map shadow memory as they go
  CHECK(hotswap::test::mapping_count() == maps_before);
#endif
  CHECK(hotswap::test::open_fd_count() == fds_before);
  CHECK(loader.leaked().empty());
  CHECK(loader.open_count() == 0);
}

TEST_CASE("loader refuses a file or folder that its group can write") {
  hotswap::test::ScratchDir dir;
  const fs::path file = dir.path() / "counter-1.0.0.so";
  hotswap::test::copy_prefix(module_file("good", "counter", "1.0.0"), file, SIZE_MAX, 0664);
  LibraryLoader loader;
  try {
    loader.load(file);
    FAIL("should have thrown");
  } catch (const LoadError& e) {
    CHECK(e.kind() == LoadError::Kind::UnsafePermissions);
    CHECK_THAT(e.what(), Catch::Contains(file.string()) && Catch::Contains("its group can write it (mode 0664)"));
  }
  ::chmod(file.c_str(), 0644);
  ::chmod(dir.path().c_str(), 0775);
  try {
    loader.load(file);
    FAIL("should have thrown");
  } catch (const LoadError& e) {
    CHECK(e.kind() == LoadError::Kind::UnsafePermissions);
    CHECK_THAT(e.what(), Catch::Contains("its group can write its folder " + dir.path().string()));
  }
  ::chmod(dir.path().c_str(), 0755);
  CHECK(loader.load(file)->close());
}

TEST_CASE("a truncated library whose sha256 matches is refused before dlopen, not killed by SIGBUS") {
  hotswap::test::ScratchDir dir;
  const fs::path original = module_file("good", "counter", "2.0.0");
  const size_t full = fs::file_size(original);
  for (const size_t size : {size_t{1024}, std::min<size_t>(100 * 1024, full * 3 / 4), full - 1}) {
    INFO("truncated to " << size << " of " << full << " bytes");
    const fs::path file = dir.path() / ("counter-2.0.0-" + std::to_string(size) + ".so");
    hotswap::test::copy_prefix(original, file, size);
    // The manifest's hash was taken over the truncated file: only the ELF check can tell.
    const std::string sha = hotswap::host::sha256_file(file);
    LibraryLoader loader;
    try {
      loader.load(file, {"counter", "2.0.0", sha});
      FAIL("should have thrown");
    } catch (const LoadError& e) {
      INFO(e.what());
      CHECK(e.kind() == LoadError::Kind::CorruptElf);
      CHECK_THAT(e.what(), Catch::Contains(file.string()) && Catch::Contains("truncated"));
    }
    CHECK(loader.open_count() == 0);
  }
}

TEST_CASE("a library with STB_GNU_UNIQUE symbols is refused before dlopen, naming the flag that avoids them") {
  const fs::path file = module_file("unique-gnu", "unique", "1.0.0");
  // Not vacuous: the library really carries UNIQUE symbols.
  REQUIRE_THAT(hotswap::test::command_output("readelf --dyn-syms -W " + file.string()), Catch::Contains("UNIQUE"));
  hotswap::test::FaultyOsSysCalls os;
  LibraryLoader loader({}, os);
  try {
    loader.load(file, {"unique", "1.0.0", ""});
    FAIL("should have thrown");
  } catch (const LoadError& e) {
    CHECK(e.kind() == LoadError::Kind::GnuUnique);
    CHECK_THAT(e.what(), Catch::Contains(file.string()) && Catch::Contains("STB_GNU_UNIQUE") &&
                             Catch::Contains("-fno-gnu-unique"));
  }
  CHECK(os.calls_containing("dlopen").empty());  // refused before the loader ran any of its code
}

TEST_CASE("stale hotswap-modules folders of a host that died are removed at the next start") {
  hotswap::test::ScratchDir run;
  const fs::path stale = run.path() / "hotswap-modules-Ab12Cd";
  fs::create_directories(stale);
  hotswap::test::copy_prefix(module_file("good", "counter", "1.0.0"), stale / "counter-1.0.0.1234.0.so", SIZE_MAX);
  fs::create_directories(run.path() / "hotswap-modules-Zz99Yy");
  hotswap::test::copy_prefix(module_file("good", "counter", "1.0.0"), run.path() / "hotswap-modules-file", 64);
  hotswap::test::copy_prefix(module_file("good", "counter", "1.0.0"), run.path() / "hotswap.pid", 8);
  {
    LibraryLoader loader(run.path());
    CHECK(loader.removed_stale().size() == 2);
    CHECK(loader.load(module_file("good", "counter", "1.0.0"))->close());
  }
  CHECK_FALSE(fs::exists(stale));
  CHECK_FALSE(fs::exists(run.path() / "hotswap-modules-Zz99Yy"));
  // Only those folders: a file of that name and the run folder's other files stay.
  CHECK(fs::exists(run.path() / "hotswap-modules-file"));
  CHECK(fs::exists(run.path() / "hotswap.pid"));
  // A loader without a run folder touches nothing.
  fs::create_directories(stale);
  LibraryLoader plain;
  CHECK(plain.removed_stale().empty());
  CHECK(fs::exists(stale));
}

TEST_CASE("a failing memfd_create, copy or seal names the library and the error, and leaks no descriptor") {
  const fs::path file = module_file("good", "counter", "1.0.0");
  struct Case {
    std::string call;
    int error;
    std::string text;
  };
  for (const Case& c : {Case{"memfd_create", EMFILE, "memfd_create failed"},
                        Case{"write", ENOSPC, "cannot copy"},
                        Case{"add_seals", EBUSY, "sealing its memory copy failed"},
                        Case{"pread", EIO, "cannot read back the memory copy"}}) {
    INFO(c.call);
    hotswap::test::FaultyOsSysCalls os;
    LibraryLoader loader({}, os);
    os.fail(c.call, "memfd:hotswap:counter-1.0.0", c.error);
    const size_t fds_before = hotswap::test::open_fd_count();
    try {
      loader.load(file, {"counter", "1.0.0", ""});
      FAIL("should have thrown");
    } catch (const LoadError& e) {
      CHECK(e.kind() == LoadError::Kind::CopyFailed);
      CHECK_THAT(e.what(), Catch::Contains(file.string()) && Catch::Contains(c.text) &&
                               Catch::Contains(hotswap::os::errno_text(c.error)));
    }
    CHECK(hotswap::test::open_fd_count() == fds_before);
    CHECK(loader.load(file, {"counter", "1.0.0", ""})->close());  // one failure only
  }
}
