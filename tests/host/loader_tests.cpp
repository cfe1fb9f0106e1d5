#include <dlfcn.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>

#include "../os/faulty_os_sys_calls.hpp"
#include "core/library_loader.hpp"
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
  // A failed load leaves no copy behind.
  CHECK(fs::is_empty(loader.scratch_dir()));
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

TEST_CASE("loader copies every load to a fresh path so the same file loads twice independently") {
  LibraryLoader loader;
  fs::path file = module_file("good", "counter", "1.0.0");
  auto a = loader.load(file);
  auto b = loader.load(file);
  // Distinct copies are distinct libraries: their code lives at different addresses.
  CHECK(a->descriptor().create != b->descriptor().create);
  size_t copies = 0;
  for (auto it = fs::directory_iterator(loader.scratch_dir()); it != fs::directory_iterator(); ++it) ++copies;
  CHECK(copies == 2);
}

TEST_CASE("loader verifies the library is unmapped after close and deletes the copy") {
  LibraryLoader loader;
  auto lib = loader.load(module_file("good", "counter", "1.0.0"));
  CHECK(lib->close());
  CHECK(fs::is_empty(loader.scratch_dir()));
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
  os.fail_dl("dlopen", "/counter-", "fake: cannot map segment from shared object");
  const fs::path file = module_file("good", "counter", "1.0.0");
  try {
    loader.load(file, {"counter", "1.0.0", ""});
    FAIL("loading " << file << " should have failed");
  } catch (const LoadError& e) {
    CHECK(e.kind() == LoadError::Kind::DlopenFailed);
    CHECK_THAT(e.what(), Catch::Contains(file.string()) &&
                             Catch::Contains("fake: cannot map segment from shared object"));
  }
  CHECK(fs::is_empty(loader.scratch_dir()));
  CHECK(loader.load(file, {"counter", "1.0.0", ""})->name() == "counter");  // one failure only
}

TEST_CASE("a failing dlclose is reported as a leak and the library is never reused") {
  hotswap::test::FaultyOsSysCalls os;
  LibraryLoader loader({}, os);
  const fs::path file = module_file("good", "counter", "1.0.0");
  auto lib = loader.load(file, {"counter", "1.0.0", ""});
  os.fail_dl("dlclose", "/counter-", "fake: dlclose failed");
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

TEST_CASE("loader refuses a file that is not a library") {
  expect_load_error("not-a-library", LoadError::Kind::NotSharedObject, "not an ELF file");
}

TEST_CASE("loader refuses a library without the entry symbol") {
  expect_load_error("no-entry", LoadError::Kind::MissingEntry, "hotswap_module_entry");
}

TEST_CASE("loader refuses a library with unresolved symbols") {
  expect_load_error("unresolved", LoadError::Kind::UnresolvedSymbol, "hotswap_test_symbol_nobody_defines");
}

TEST_CASE("loader refuses a module built for a newer ABI") {
  expect_load_error("abi-too-new", LoadError::Kind::AbiTooNew, "module ABI 99");
}

TEST_CASE("loader refuses a module built for an older ABI") {
  expect_load_error("abi-too-old", LoadError::Kind::AbiTooOld, "module ABI 0");
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
    CHECK_THAT(e.what(), Catch::Contains("other users can write it"));
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
  CHECK(fs::is_empty(loader.scratch_dir()));
}
