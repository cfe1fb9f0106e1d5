// hotswap check and the offline hotswap plan (host/check/): a good release
// passes; each broken copy of it is refused with a problem naming the file and
// the field; the offline plan is the live host's plan and refusal.
#include <stdlib.h>
#include <sys/wait.h>

#include <boost/filesystem.hpp>
#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <hotswap/appup/json_reader.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "check/offline_plan.hpp"
#include "check/release_check.hpp"
#include "core/module_probe.hpp"
#include "core/sha256.hpp"
#include "upgrade/upgrade_check.hpp"

namespace fs = boost::filesystem;
using hotswap::host::CheckProblem;
using hotswap::host::ChildProcessProbe;
using hotswap::host::LibraryLoader;
using hotswap::host::ReleaseCheck;
using nlohmann::json;

namespace {

const fs::path kReleases = HOTSWAP_TEST_RELEASES_DIR;
const fs::path kModules = HOTSWAP_TEST_MODULES_DIR;

// A loader as `hotswap check` makes one: every library goes through the probe child first.
std::unique_ptr<LibraryLoader> scratch_loader() {
  return std::make_unique<LibraryLoader>(fs::path(), hotswap::os::real_os_sys_calls(),
                                         std::make_shared<ChildProcessProbe>(HOTSWAP_BINARY));
}

class TempFolder {
 public:
  TempFolder() {
    std::string pattern = (fs::temp_directory_path() / "check-tests-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~TempFolder() {
    boost::system::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void copy_folder(const fs::path& from, const fs::path& to) {
  fs::create_directories(to);
  for (fs::recursive_directory_iterator it(from), end; it != end; ++it) {
    const fs::path target = to / it->path().lexically_relative(from);
    if (fs::is_directory(it->path()))
      fs::create_directories(target);
    else
      fs::copy_file(it->path(), target);
  }
}

json read_json(const fs::path& file) {
  std::ifstream in(file.string());
  return json::parse(in);
}

void write_text(const fs::path& file, const std::string& text) {
  std::ofstream out(file.string(), std::ios::trunc);
  out << text;
  REQUIRE(out.good());
}

void write_json(const fs::path& file, const json& document) { write_text(file, document.dump(2) + "\n"); }

// A copy of a good release (counter-VERSION) that a test then breaks. Without
// bin/hotswap: the manifest does not name it, nothing checks it, and it is big.
struct ReleaseCopy {
  explicit ReleaseCopy(const std::string& version) : dir(temp.path() / ("counter-" + version)) {
    copy_folder(kReleases / ("counter-" + version), dir);
    fs::remove_all(dir / "bin");
  }
  fs::path appup() const { return dir / "appups" / ("counter-" + version() + ".appup.json"); }
  fs::path library() const { return dir / "modules" / ("counter-" + version() + ".so"); }
  std::string version() const { return read_json(dir / "manifest.json")["version"]; }
  // Puts the library's real hash back in the manifest, after a test replaced the library.
  void rehash() const {
    json manifest = read_json(dir / "manifest.json");
    manifest["modules"][0]["sha256"] = hotswap::host::sha256_file(library());
    write_json(dir / "manifest.json", manifest);
  }

  TempFolder temp;
  fs::path dir;
};

// The problem reported for `file` and `field`, or nullptr.
const CheckProblem* find_problem(const ReleaseCheck& check, const std::string& file, const std::string& field) {
  for (const CheckProblem& problem : check.problems)
    if (problem.file == file && problem.field == field) return &problem;
  return nullptr;
}

std::string all_problems(const ReleaseCheck& check) { return check.describe(); }

struct Run {
  int code;
  std::string out;  // stdout
};

// Runs a shell command line; stdout only (stderr goes to the test log).
Run run_command(const std::string& command) {
  FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string out;
  char buffer[4096];
  while (size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) out.append(buffer, n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// Runs the real `hotswap` binary.
Run run_hotswap(const std::string& arguments) { return run_command(std::string(HOTSWAP_BINARY) + " " + arguments); }

}  // namespace

TEST_CASE("check accepts the good releases, folder and tarball", "[check]") {
  auto loader = scratch_loader();
  const ReleaseCheck folder = hotswap::host::check_release(kReleases / "counter-1.0.0", *loader);
  INFO(all_problems(folder));
  CHECK(folder.ok());
  CHECK(folder.warnings.empty());
  CHECK(folder.name == "counter");
  CHECK(folder.version == "1.0.0");
  REQUIRE(folder.modules.size() == 1);
  CHECK(folder.modules[0].loaded);
  CHECK(folder.modules[0].state_schema == 1);
  CHECK(folder.modules[0].abi_version == HOTSWAP_ABI_VERSION);

  // The tarball is unpacked into a temporary folder of its own, gone once the check is done.
  TempFolder tmp;
  const char* previous = std::getenv("TMPDIR");
  const std::string saved = previous ? previous : "";
  ::setenv("TMPDIR", tmp.path().c_str(), 1);
  const ReleaseCheck tarball = hotswap::host::check_release(kReleases / "counter-2.0.0.tar.gz", *loader,
                                                            {kReleases / "counter-1.0.0", kReleases / "counter-1.1.0"});
  previous ? ::setenv("TMPDIR", saved.c_str(), 1) : ::unsetenv("TMPDIR");
  INFO(all_problems(tarball));
  CHECK(tarball.ok());
  CHECK(tarball.version == "2.0.0");
  REQUIRE(tarball.modules.size() == 1);
  CHECK(tarball.modules[0].state_schema == 2);
  CHECK(tarball.plans.size() == 4);  // up from and down to each of the two
  CHECK(fs::is_empty(tmp.path()));
}

TEST_CASE("check refuses an appup that is not valid JSON (a trailing comma)", "[check]") {
  ReleaseCopy release("1.1.0");
  write_text(release.appup(),
             R"({"module": "counter", "version": "1.1.0", "up": [{"from": "1.0.0", "instructions": [{"op": "load_module"},]}]})");
  const ReleaseCheck check = hotswap::host::check_release(release.dir, *scratch_loader());
  CHECK_FALSE(check.ok());
  // Invalid JSON has no field to name; the message gives the line and column.
  const CheckProblem* problem = find_problem(check, "appups/counter-1.1.0.appup.json", "");
  REQUIRE(problem != nullptr);
  CHECK_THAT(problem->message, Catch::StartsWith("invalid JSON: ") && Catch::Contains("line 1, column"));
}

TEST_CASE("check refuses an appup whose version is not the module's", "[check]") {
  ReleaseCopy release("1.1.0");
  json appup = read_json(release.appup());
  appup["version"] = "1.0.9";
  write_json(release.appup(), appup);
  const ReleaseCheck check = hotswap::host::check_release(release.dir, *scratch_loader());
  INFO(all_problems(check));
  REQUIRE(check.problems.size() == 1);
  const CheckProblem* problem = find_problem(check, "appups/counter-1.1.0.appup.json", "version");
  REQUIRE(problem != nullptr);
  // The planner's own words, as a live upgrade would refuse it.
  CHECK(problem->message == "is 1.0.9 but the release ships this appup with counter 1.1.0");
}

TEST_CASE("check refuses a library without the entry symbol", "[check]") {
  ReleaseCopy release("1.1.0");
  fs::copy_file(kModules / "no-entry" / "counter-2.0.0.so", release.library(), fs::copy_options::overwrite_existing);
  release.rehash();
  const ReleaseCheck check = hotswap::host::check_release(release.dir, *scratch_loader());
  INFO(all_problems(check));
  REQUIRE(check.problems.size() == 1);
  const CheckProblem* problem = find_problem(check, "modules/counter-1.1.0.so", "hotswap_module_entry");
  REQUIRE(problem != nullptr);
  CHECK_THAT(problem->message, Catch::Contains("has no entry symbol hotswap_module_entry"));
  CHECK_FALSE(check.modules.at(0).loaded);
}

TEST_CASE("check refuses a library whose sha256 differs from the manifest's", "[check]") {
  ReleaseCopy release("1.1.0");
  json manifest = read_json(release.dir / "manifest.json");
  const std::string wrong(64, 'a');
  manifest["modules"][0]["sha256"] = wrong;
  write_json(release.dir / "manifest.json", manifest);
  const ReleaseCheck check = hotswap::host::check_release(release.dir, *scratch_loader());
  INFO(all_problems(check));
  REQUIRE(check.problems.size() == 1);
  const CheckProblem* problem = find_problem(check, "manifest.json", "modules[0].sha256");
  REQUIRE(problem != nullptr);
  CHECK(problem->message == "is " + wrong + ", but modules/counter-1.1.0.so has sha256 " +
                                hotswap::host::sha256_file(release.library()));
  // The library is still checked for everything else.
  CHECK(check.modules.at(0).loaded);
}

TEST_CASE("check refuses a corrupt library", "[check]") {
  ReleaseCopy release("1.1.0");
  // Cut in half: the ELF header's tables now reach past the end of the file.
  const auto size = fs::file_size(release.library());
  fs::resize_file(release.library(), size / 2);
  release.rehash();
  const ReleaseCheck check = hotswap::host::check_release(release.dir, *scratch_loader());
  INFO(all_problems(check));
  REQUIRE(check.problems.size() == 1);
  const CheckProblem* problem = find_problem(check, "modules/counter-1.1.0.so", "ELF image");
  REQUIRE(problem != nullptr);
  CHECK_THAT(problem->message, Catch::Contains("counter-1.1.0.so"));
}

TEST_CASE("check refuses a load_module across a state schema change, in the live host's words", "[check]") {
  ReleaseCopy release("2.0.0");  // counter 2.0.0 has state schema 2, 1.0.0 has 1
  json appup = read_json(release.appup());
  appup["up"][0]["instructions"] = json::array({{{"op", "load_module"}}});
  write_json(release.appup(), appup);
  auto loader = scratch_loader();
  // Alone, a release has one schema per module: nothing to compare.
  CHECK(hotswap::host::check_release(release.dir, *loader).ok());

  const ReleaseCheck check = hotswap::host::check_release(release.dir, *loader, {kReleases / "counter-1.0.0"});
  INFO(all_problems(check));
  REQUIRE(check.problems.size() == 1);
  const CheckProblem* problem = find_problem(check, "appups/counter-2.0.0.appup.json", "up[0].instructions[0]");
  REQUIRE(problem != nullptr);
  CHECK(problem->message ==
        "step 'load_module counter 1.0.0 -> 2.0.0': " + hotswap::host::load_module_schema_refusal(1, 2));
}

TEST_CASE("check refuses appup entries that can never apply", "[check]") {
  ReleaseCopy release("1.1.0");
  json appup = read_json(release.appup());
  appup["up"][0]["from"] = "1.2.0";                                          // newer than 1.1.0
  appup["up"].push_back({{"from", "1.0.1"}, {"instructions", {{{"op", "add_module"}, {"module", "chat"}}}}});
  write_json(release.appup(), appup);
  const ReleaseCheck check = hotswap::host::check_release(release.dir, *scratch_loader());
  INFO(all_problems(check));
  CHECK(check.problems.size() == 3);
  const CheckProblem* newer = find_problem(check, "appups/counter-1.1.0.appup.json", "up[0].from");
  REQUIRE(newer != nullptr);
  CHECK_THAT(newer->message, Catch::StartsWith("names 1.2.0, which is not older than counter 1.1.0"));
  const CheckProblem* unknown = find_problem(check, "appups/counter-1.1.0.appup.json", "up[1].instructions[0]");
  REQUIRE(unknown != nullptr);
  CHECK(unknown->message == "adds chat, which this release does not have");
  CHECK(find_problem(check, "appups/counter-1.1.0.appup.json", "up[1].instructions") != nullptr);
}

TEST_CASE("check reports every problem of a release, not only the first", "[check]") {
  ReleaseCopy release("1.1.0");
  json manifest = read_json(release.dir / "manifest.json");
  manifest["modules"][0]["sha256"] = std::string(64, 'b');
  write_json(release.dir / "manifest.json", manifest);
  json appup = read_json(release.appup());
  appup["version"] = "1.0.9";
  write_json(release.appup(), appup);
  json config = read_json(release.dir / "runtime.json");
  config["listeners"][0]["module"] = "chat";
  write_json(release.dir / "runtime.json", config);
  const ReleaseCheck check = hotswap::host::check_release(release.dir, *scratch_loader());
  INFO(all_problems(check));
  CHECK(check.problems.size() == 3);
  CHECK(find_problem(check, "manifest.json", "modules[0].sha256") != nullptr);
  CHECK(find_problem(check, "appups/counter-1.1.0.appup.json", "version") != nullptr);
  CHECK(find_problem(check, "runtime.json", "listeners.main.module") != nullptr);
}

TEST_CASE("check refuses what is not a release", "[check]") {
  TempFolder tmp;
  auto loader = scratch_loader();
  const ReleaseCheck missing = hotswap::host::check_release(tmp.path() / "nothing", *loader);
  REQUIRE(missing.problems.size() == 1);
  CHECK_THAT(missing.problems[0].message, Catch::Contains("no such release folder or tarball"));

  const ReleaseCheck empty = hotswap::host::check_release(tmp.path(), *loader);
  REQUIRE(empty.problems.size() == 1);
  CHECK(empty.problems[0].file == "manifest.json");
  CHECK_THAT(empty.problems[0].message, Catch::StartsWith("cannot read"));

  write_text(tmp.path() / "not-a-tarball.tar.gz", "hello");
  const ReleaseCheck garbage = hotswap::host::check_release(tmp.path() / "not-a-tarball.tar.gz", *loader);
  REQUIRE(garbage.problems.size() == 1);
  CHECK_THAT(garbage.problems[0].message, Catch::Contains("not-a-tarball.tar.gz"));
}

TEST_CASE("check unpacks a tarball with the release store's rules", "[check]") {
  // Only what the refusal needs: tarring a whole release (its host binary) takes long.
  TempFolder tmp;
  const fs::path release = tmp.path() / "counter-1.0.0";
  fs::create_directories(release);
  fs::copy_file(kReleases / "counter-1.0.0" / "manifest.json", release / "manifest.json");
  fs::create_symlink("/etc/passwd", release / "passwd");
  const fs::path tarball = tmp.path() / "counter-1.0.0.tar.gz";
  const Run tar = run_command("tar czf '" + tarball.string() + "' -C '" + release.string() + "' .");
  REQUIRE(tar.code == 0);
  const ReleaseCheck check = hotswap::host::check_release(tarball, *scratch_loader());
  REQUIRE(check.problems.size() == 1);
  CHECK(check.problems[0].file == tarball.string());
  CHECK_THAT(check.problems[0].message, Catch::Contains("entry './passwd': symbolic link to '/etc/passwd'"));
}

TEST_CASE("the offline plan is the live host's plan, either way", "[check][plan]") {
  auto loader = scratch_loader();
  const auto up = hotswap::host::plan_offline(kReleases / "counter-1.0.0", kReleases / "counter-1.1.0.tar.gz", *loader);
  INFO(up.error);
  REQUIRE(up.ok());
  REQUIRE(up.plan);
  CHECK(up.plan->direction == hotswap::appup::Direction::Upgrade);
  REQUIRE(up.plan->steps.size() == 1);
  CHECK(up.plan->steps[0].describe() == "load_module counter 1.0.0 -> 1.1.0");

  const auto down = hotswap::host::plan_offline(kReleases / "counter-2.0.0", kReleases / "counter-1.1.0", *loader);
  INFO(down.error);
  REQUIRE(down.ok());
  CHECK(down.plan->direction == hotswap::appup::Direction::Downgrade);
  REQUIRE(down.plan->steps.size() == 1);
  CHECK(down.plan->steps[0].describe() == "update counter 2.0.0 -> 1.1.0");
  CHECK(down.to_json()["plan"]["direction"] == "downgrade");
}

TEST_CASE("the offline plan refuses what the live host would refuse", "[check][plan]") {
  ReleaseCopy release("2.0.0");
  json appup = read_json(release.appup());
  appup["up"][0]["instructions"] = json::array({{{"op", "load_module"}}});
  write_json(release.appup(), appup);
  auto loader = scratch_loader();
  const auto schema = hotswap::host::plan_offline(kReleases / "counter-1.0.0", release.dir, *loader);
  CHECK_FALSE(schema.ok());
  CHECK(schema.plan);  // planned, then refused by the check phase
  CHECK(schema.error == "step 'load_module counter 1.0.0 -> 2.0.0': " + hotswap::host::load_module_schema_refusal(1, 2));
  REQUIRE(schema.problems.size() == 1);
  // Outside hotswap check, files are named by their path.
  CHECK(schema.problems[0].file == (release.dir / "appups" / "counter-2.0.0.appup.json").string());
  CHECK(schema.problems[0].field == "up[0].instructions[0]");

  // The same release twice: the planner's refusal.
  const auto same = hotswap::host::plan_offline(kReleases / "counter-1.0.0", kReleases / "counter-1.0.0", *loader);
  CHECK_FALSE(same.ok());
  CHECK_THAT(same.error, Catch::StartsWith("already at release counter 1.0.0"));

  // A listener change needs a blue-green handover, offline as live: refused
  // for a release without a host binary to hand over to (ReleaseCopy drops bin/).
  ReleaseCopy moved("1.1.0");
  json config = read_json(moved.dir / "runtime.json");
  config["listeners"][0]["max_frame_bytes"] = 2048;
  write_json(moved.dir / "runtime.json", config);
  const auto listeners = hotswap::host::plan_offline(kReleases / "counter-1.0.0", moved.dir, *loader);
  CHECK_FALSE(listeners.ok());
  CHECK(listeners.error == "release 1.1.0 needs a blue-green handover (the listeners change: the target's runtime "
                           "config changes " + config["listeners"][0]["name"].get<std::string>() +
                           "), but it has no bin/hotswap to hand over to");
}

TEST_CASE("the offline plan shows a blue-green handover and why", "[check][plan]") {
  auto loader = scratch_loader();
  ReleaseCopy moved("1.1.0");
  fs::create_directories(moved.dir / "bin");
  fs::copy_file(kReleases / "counter-1.1.0" / "bin" / "hotswap", moved.dir / "bin" / "hotswap");
  json config = read_json(moved.dir / "runtime.json");
  json added = config["listeners"][0];
  added["name"] = "second";
  config["listeners"].push_back(added);
  write_json(moved.dir / "runtime.json", config);
  const auto listeners = hotswap::host::plan_offline(kReleases / "counter-1.0.0", moved.dir, *loader);
  INFO(listeners.error);
  REQUIRE(listeners.ok());
  CHECK(listeners.handover_reasons ==
        std::vector<std::string>{"the listeners change: the target's runtime config adds second"});
  CHECK_THAT(listeners.describe(), Catch::Contains("1. load_module counter 1.0.0 -> 1.1.0") &&
                                       Catch::Contains("by a blue-green handover") &&
                                       Catch::Contains("  - the listeners change: the target's runtime config adds "
                                                       "second\n"));
  CHECK(listeners.to_json()["blue_green"] == true);
  CHECK(listeners.to_json()["blue_green_reasons"] == json::array({listeners.handover_reasons[0]}));

  // An appup blue_green instruction, and another host binary in the target.
  ReleaseCopy marked("1.1.0");
  json appup = read_json(marked.appup());
  appup["up"][0]["instructions"] = json::array({{{"op", "blue_green"}, {"reason", "new wire format"}}});
  write_json(marked.appup(), appup);
  fs::create_directories(marked.dir / "bin");
  write_text(marked.dir / "bin" / "hotswap", "#!/bin/sh\n");
  const auto marked_plan = hotswap::host::plan_offline(kReleases / "counter-1.0.0", marked.dir, *loader);
  INFO(marked_plan.error);
  REQUIRE(marked_plan.ok());
  REQUIRE(marked_plan.handover_reasons.size() == 2);
  CHECK(marked_plan.handover_reasons[0] == "module counter: " + marked_plan.to + "/appups/counter-1.1.0.appup.json "
                                           "up[0].instructions[0] requires a blue-green handover (new wire format)");
  CHECK_THAT(marked_plan.handover_reasons[1], Catch::StartsWith("the host binary changes (sha256 "));

  // A module built for a newer module ABI than this host's (its ABI tag, read
  // without loading it): only the target's own host can run it.
  ReleaseCopy newer_abi("1.1.0");
  fs::create_directories(newer_abi.dir / "bin");
  fs::copy_file(kReleases / "counter-1.1.0" / "bin" / "hotswap", newer_abi.dir / "bin" / "hotswap");
  fs::copy_file(kModules / "abi-too-new" / "counter-2.0.0.so", newer_abi.dir / "modules" / "counter-1.1.0.so",
                fs::copy_option::overwrite_if_exists);
  const auto abi_plan = hotswap::host::plan_offline(kReleases / "counter-1.0.0", newer_abi.dir, *loader);
  INFO(abi_plan.error);
  REQUIRE(abi_plan.ok());
  CHECK(abi_plan.handover_reasons ==
        std::vector<std::string>{"module counter 1.1.0 is built for module ABI 99, newer than this host supports "
                                 "(1..1)"});
  fs::remove_all(newer_abi.dir / "bin");
  const auto abi_refused = hotswap::host::plan_offline(kReleases / "counter-1.0.0", newer_abi.dir, *loader);
  CHECK(abi_refused.error == "release 1.1.0 needs a blue-green handover (module counter 1.1.0 is built for module ABI "
                             "99, newer than this host supports (1..1)), but it has no bin/hotswap to hand over to");

  // The same in place: no handover, no reasons.
  const auto plain = hotswap::host::plan_offline(kReleases / "counter-1.0.0", kReleases / "counter-1.1.0", *loader);
  REQUIRE(plain.ok());
  CHECK(plain.handover_reasons.empty());
  CHECK(plain.to_json()["blue_green"] == false);
  CHECK_THAT(plain.describe(), !Catch::Contains("blue-green"));
}

TEST_CASE("the hotswap binary: check and plan --from --to, exit status and --json", "[check][cli]") {
  const Run ok = run_hotswap("check " + (kReleases / "counter-1.1.0.tar.gz").string() + " --json");
  CHECK(ok.code == 0);
  const json ok_json = json::parse(ok.out);
  CHECK(ok_json["ok"] == true);
  CHECK(ok_json["problems"].empty());

  ReleaseCopy release("1.1.0");
  json appup = read_json(release.appup());
  appup["version"] = "1.0.9";
  write_json(release.appup(), appup);
  const Run bad = run_hotswap("check " + release.dir.string() + " --json");
  CHECK(bad.code == 1);
  const json bad_json = json::parse(bad.out);
  CHECK(bad_json["ok"] == false);
  REQUIRE(bad_json["problems"].size() == 1);
  CHECK(bad_json["problems"][0] == json{{"file", "appups/counter-1.1.0.appup.json"},
                                        {"field", "version"},
                                        {"message", "is 1.0.9 but the release ships this appup with counter 1.1.0"}});
  const Run text = run_hotswap("check " + release.dir.string() + " 2>&1");
  CHECK(text.code == 1);
  CHECK_THAT(text.out, Catch::Contains("error: appups/counter-1.1.0.appup.json: version: is 1.0.9"));

  // Folders from here on: unpacking a tarball costs more (it carries the host binary).
  const std::string good = (kReleases / "counter-1.1.0").string();
  const Run against = run_hotswap("check " + good + " --against " + (kReleases / "counter-1.0.0").string() +
                                  " --against " + (kReleases / "counter-2.0.0").string() + " --json");
  CHECK(against.code == 0);
  CHECK(json::parse(against.out)["plans"].size() == 4);

  const Run plan = run_hotswap("plan --from " + (kReleases / "counter-1.0.0").string() + " --to " + good);
  CHECK(plan.code == 0);
  CHECK_THAT(plan.out, Catch::Contains("1. load_module counter 1.0.0 -> 1.1.0"));
  const Run plan_json = run_hotswap("plan --json --from " + good + " --to " + (kReleases / "counter-1.0.0").string());
  CHECK(plan_json.code == 0);
  CHECK(json::parse(plan_json.out)["plan"]["direction"] == "downgrade");
  CHECK(run_hotswap("plan --from " + good + " 2>/dev/null").code == 64);
  CHECK(run_hotswap("plan 1.0.0 --from " + good + " --to " + good + " 2>/dev/null").code == 64);
  CHECK(run_hotswap("check 2>/dev/null").code == 64);
  const Run nothing = run_hotswap("plan 2>&1");
  CHECK(nothing.code == 64);
  CHECK_THAT(nothing.out, Catch::Contains("VSN") && Catch::Contains("--from"));
}

TEST_CASE("check warns of a blue_green entry: the upgrade through it is a handover, not a refusal", "[check]") {
  ReleaseCopy release("1.1.0");
  json appup = read_json(release.appup());
  appup["up"][0]["instructions"] = json::array({{{"op", "blue_green"}, {"reason", "new wire format"}}});
  write_json(release.appup(), appup);
  const ReleaseCheck check = hotswap::host::check_release(release.dir, *scratch_loader());
  INFO(all_problems(check));
  CHECK(check.ok());  // an entry of only blue_green changes the code (green loads it)
  REQUIRE(check.warnings.size() == 1);
  CHECK(check.warnings[0].file == "appups/counter-1.1.0.appup.json");
  CHECK(check.warnings[0].field == "up[0].instructions[0]");
  CHECK(check.warnings[0].message ==
        "requires a blue-green handover (new wire format): an upgrade through this entry is made by handing the "
        "listeners, connections and module state over to a new process on the target release (its bin/hotswap)");
  CHECK_THAT(check.describe(), !Catch::Contains("cannot perform"));
}
