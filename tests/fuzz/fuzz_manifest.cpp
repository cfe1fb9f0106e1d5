// The release manifest parser. A manifest it accepts must survive a round
// trip: to_json() parses back to the same manifest.
#include <hotswap/appup/error.hpp>
#include <hotswap/appup/json_reader.hpp>
#include <hotswap/appup/manifest.hpp>
#include <hotswap/appup/semver.hpp>

#include "fuzz_support.hpp"

namespace {

// Inside means: below the folder, with no ".." element on the way. A name that
// merely begins with two dots ("..4../x") is an ordinary file inside it.
bool stays_inside(const boost::filesystem::path& path, const boost::filesystem::path& folder) {
  const boost::filesystem::path relative = path.lexically_relative(folder);
  if (relative.empty()) return false;
  for (const boost::filesystem::path& part : relative) {
    if (part == "..") return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hotswap::appup;
  const std::string_view input = hotswap::fuzz::as_text(data, size);
  const boost::filesystem::path release_dir = "/releases/fuzz";
  try {
    const ReleaseManifest manifest =
        parse_manifest(parse_json_text(input, "manifest.json"), release_dir, "manifest.json");
    HOTSWAP_FUZZ_CHECK(is_valid_name(manifest.name) && is_valid_version(manifest.version));
    if (!manifest.config.empty()) HOTSWAP_FUZZ_CHECK(stays_inside(manifest.config, release_dir));
    for (const ModuleEntry& module : manifest.modules) {
      HOTSWAP_FUZZ_CHECK(manifest.find(module.name) == &module);
      HOTSWAP_FUZZ_CHECK(stays_inside(module.file, release_dir));
      if (!module.appup.empty()) HOTSWAP_FUZZ_CHECK(stays_inside(module.appup, release_dir));
    }
    const nlohmann::json written = manifest.to_json();
    const ReleaseManifest again = parse_manifest(written, release_dir, "manifest.json");
    HOTSWAP_FUZZ_CHECK(again.to_json() == written);
  } catch (const InputError&) {
  }
  return 0;
}
