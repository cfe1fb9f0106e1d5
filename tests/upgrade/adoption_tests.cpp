// State adoption (issue 12, DESIGN.md "State in place"): a code-only swap
// hands the state object to the new code as one pointer; rollback hands the
// same pointer back; anything that rules adoption out falls back to
// export/import, and the report says which path each step took and why.
//
// The state size is a parameter: HOTSWAP_TEST_STATE_BYTES (default 8 MiB, so
// that the suite stays fast; run with 268435456 for the 256 MiB).
#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>

#include "../host/test_support.hpp"
#include "upgrade/upgrade_executor.hpp"

using hotswap::appup::StepKind;
using hotswap::host::LibraryLoader;
using hotswap::host::ModuleRegistry;
using hotswap::host::ModuleSlot;
using hotswap::host::UpgradeExecutor;
using hotswap::host::UpgradeReport;
using hotswap::test::plan_of;
using hotswap::test::step;

namespace {

size_t state_bytes() {
  const char* env = std::getenv("HOTSWAP_TEST_STATE_BYTES");
  return env != nullptr && *env != '\0' ? std::stoull(env) : size_t(8) << 20;
}

// A registry serving bigstate <version> (from test-modules/<variant>) with a filled state.
struct Fixture {
  LibraryLoader loader;
  hotswap::test::RecordingServices services;
  ModuleRegistry registry{services};
  UpgradeExecutor executor{registry, loader};
  std::string checksum, address;

  explicit Fixture(const std::string& version = "1.0.0", const std::string& variant = "good") {
    registry.start(
        loader.load(hotswap::test::module_file(variant, "bigstate", version), {"bigstate", version, ""}));
    task("fill", std::to_string(state_bytes()));
    checksum = task("checksum");
    address = task("address");
  }
  ModuleSlot& slot() { return *registry.find("bigstate"); }
  std::string task(const std::string& name, const std::string& args = "null") {
    return slot().active().run_task(name, args);
  }
  std::string version() { return slot().active().version(); }
};

}  // namespace

TEST_CASE("a load_module of opted-in versions adopts the state in place") {
  Fixture f;
  UpgradeReport r = f.executor.run(plan_of({step(StepKind::LoadModule, "bigstate", "1.0.0", "1.1.0")}));
  INFO(r.summary());
  REQUIRE(r.committed());
  REQUIRE(r.steps.size() == 1);
  CHECK(r.steps[0].state_path == "adopt");
  CHECK(r.steps[0].fallback.empty());
  CHECK(r.to_json()["steps"][0]["state_path"] == "adopt");
  CHECK(f.version() == "1.1.0");
  CHECK(f.task("version") == "1.1.0");  // the new code serves
  CHECK(f.task("address") == f.address);  // the same object, not a copy
  CHECK(f.task("checksum") == f.checksum);
  CHECK(r.leaked.empty());
  // Nothing was exported: the reused export buffer was never needed.
  CHECK(f.executor.export_buffer_capacity() < state_bytes());
}

TEST_CASE("a same-schema update adopts too, in both directions") {
  Fixture f;
  UpgradeReport up = f.executor.run(plan_of({step(StepKind::Update, "bigstate", "1.0.0", "1.1.0")}));
  INFO(up.summary());
  REQUIRE(up.committed());
  CHECK(up.steps[0].state_path == "adopt");
  UpgradeReport down = f.executor.run(plan_of({step(StepKind::Update, "bigstate", "1.1.0", "1.0.0")}));
  INFO(down.summary());
  REQUIRE(down.committed());
  CHECK(down.steps[0].state_path == "adopt");
  CHECK(f.version() == "1.0.0");
  CHECK(f.task("address") == f.address);
  CHECK(f.task("checksum") == f.checksum);
}

TEST_CASE("a rollback after an adoption gives the old instance the same state back") {
  Fixture f;
  // A second module whose migration fails makes the whole plan roll back
  // after bigstate's state has already moved.
  f.registry.start(f.loader.load(hotswap::test::module_file("good", "counter", "1.0.0"), {"counter", "1.0.0", ""}));
  UpgradeReport r = f.executor.run(plan_of({step(StepKind::LoadModule, "bigstate", "1.0.0", "1.1.0"),
                                            step(StepKind::Update, "counter", "1.0.0", "2.0.0", "migrate-error")}));
  INFO(r.summary());
  REQUIRE(r.outcome == UpgradeReport::Outcome::RolledBack);
  REQUIRE(r.steps.size() == 2);
  CHECK(r.steps[0].ok);
  CHECK(r.steps[0].state_path == "adopt");
  CHECK_FALSE(r.steps[1].ok);
  CHECK(f.version() == "1.0.0");
  CHECK(f.task("version") == "1.0.0");
  CHECK(f.task("address") == f.address);
  CHECK(f.task("checksum") == f.checksum);
  // And it can give it away again.
  UpgradeReport again = f.executor.run(plan_of({step(StepKind::LoadModule, "bigstate", "1.0.0", "1.1.0")}));
  INFO(again.summary());
  REQUIRE(again.committed());
  CHECK(f.task("address") == f.address);
  CHECK(f.task("checksum") == f.checksum);
}

TEST_CASE("a state fingerprint mismatch falls back to export/import, and the report says so") {
  Fixture f;
  UpgradeReport r = f.executor.run(plan_of({step(StepKind::LoadModule, "bigstate", "1.0.0", "1.2.0")}));
  INFO(r.summary());
  REQUIRE(r.committed());
  CHECK(r.steps[0].state_path == "export_import");
  CHECK_THAT(r.steps[0].fallback, Catch::Contains("state fingerprints differ"));
  CHECK(r.to_json()["steps"][0]["fallback"] == r.steps[0].fallback);
  CHECK(f.task("version") == "1.2.0");
  CHECK(f.task("address") != f.address);  // a copy
  CHECK(f.task("checksum") == f.checksum);
  // The copy went through the reused export buffer, now sized for the next swap.
  CHECK(f.executor.export_buffer_capacity() >= state_bytes());
}

TEST_CASE("a module built before state adoption existed still swaps by export/import") {
  Fixture f("1.0.0", "old-descriptor");
  UpgradeReport r = f.executor.run(plan_of({step(StepKind::LoadModule, "bigstate", "1.0.0", "1.1.0")}));
  INFO(r.summary());
  REQUIRE(r.committed());
  CHECK(r.steps[0].state_path == "export_import");
  CHECK_THAT(r.steps[0].fallback, Catch::Contains("predates state adoption"));
  CHECK(f.task("checksum") == f.checksum);
}

TEST_CASE("a module that does not opt in is swapped by export/import") {
  LibraryLoader loader;
  hotswap::test::RecordingServices services;
  ModuleRegistry registry{services};
  UpgradeExecutor executor{registry, loader};
  registry.start(loader.load(hotswap::test::module_file("good", "counter", "1.0.0"), {"counter", "1.0.0", ""}));
  UpgradeReport r = executor.run(plan_of({step(StepKind::LoadModule, "counter", "1.0.0", "1.1.0")}));
  INFO(r.summary());
  REQUIRE(r.committed());
  CHECK(r.steps[0].state_path == "export_import");
  CHECK_THAT(r.steps[0].fallback, Catch::Contains("does not opt into state adoption"));
}

TEST_CASE("with adoption turned off, the host copies and says why") {
  Fixture f;
  f.executor.set_state_adoption(false);
  UpgradeReport r = f.executor.run(plan_of({step(StepKind::LoadModule, "bigstate", "1.0.0", "1.1.0")}));
  INFO(r.summary());
  REQUIRE(r.committed());
  CHECK(r.steps[0].state_path == "export_import");
  CHECK_THAT(r.steps[0].fallback, Catch::Contains("turned off"));
  CHECK(f.task("checksum") == f.checksum);
}

TEST_CASE("a later apply task on the module rules adoption out for its code swap") {
  Fixture f;
  hotswap::appup::PlanStep apply = step(StepKind::Apply, "bigstate", "", "");
  apply.task = "checksum";
  UpgradeReport r = f.executor.run(plan_of({step(StepKind::LoadModule, "bigstate", "1.0.0", "1.1.0"), apply}));
  INFO(r.summary());
  REQUIRE(r.committed());
  CHECK(r.steps[0].state_path == "export_import");
  CHECK_THAT(r.steps[0].fallback, Catch::Contains("apply task"));
}

TEST_CASE("the debug check refuses adopted state that points into the old library") {
  Fixture f;
  SECTION("a string literal") { f.task("note"); }
  SECTION("an object with a vtable") { f.task("vtable"); }
  UpgradeReport r = f.executor.run(plan_of({step(StepKind::LoadModule, "bigstate", "1.0.0", "1.1.0")}));
  INFO(r.summary());
  CHECK(r.outcome == UpgradeReport::Outcome::RolledBack);
  CHECK_THAT(r.error, Catch::Contains("adopt_state failed") && Catch::Contains("address inside the old library") &&
                          Catch::Contains("byte offset"));
  // The old instance still serves, with the very same state.
  CHECK(f.version() == "1.0.0");
  CHECK(f.task("version") == "1.0.0");
  CHECK(f.task("address") == f.address);
  CHECK(f.task("checksum") == f.checksum);
}

TEST_CASE("the library's mapped ranges cover its code and data") {
  LibraryLoader loader;
  auto library = loader.load(hotswap::test::module_file("good", "bigstate", "1.0.0"), {"bigstate", "1.0.0", ""});
  std::vector<hotswap_address_range> ranges = hotswap::host::library_mapped_ranges(*library);
  REQUIRE(!ranges.empty());
  auto covered = [&](const void* p) {
    auto a = reinterpret_cast<uintptr_t>(p);
    for (const hotswap_address_range& r : ranges)
      if (a >= r.begin && a < r.end) return true;
    return false;
  };
  CHECK(covered(reinterpret_cast<const void*>(library->descriptor().create)));  // .text
  CHECK(covered(library->descriptor().name));                                     // .rodata
  CHECK_FALSE(covered(&ranges));                                                   // not the host's stack
}
