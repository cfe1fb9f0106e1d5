// The release manifest parser. A manifest it accepts must survive a round
// trip: to_json() parses back to the same manifest.
#include <hotswap/appup/error.hpp>
#include <hotswap/appup/json_reader.hpp>
#include <hotswap/appup/manifest.hpp>
#include <hotswap/appup/semver.hpp>

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hotswap::appup;
  const std::string_view input = hotswap::fuzz::as_text(data, size);
  const boost::filesystem::path release_dir = "/releases/fuzz";
  try {
    const ReleaseManifest manifest =
        parse_manifest(parse_json_text(input, "manifest.json"), release_dir, "manifest.json");
    HOTSWAP_FUZZ_CHECK(is_valid_name(manifest.name) && is_valid_version(manifest.version));
    for (const ModuleEntry& module : manifest.modules) {
      HOTSWAP_FUZZ_CHECK(manifest.find(module.name) == &module);
      // Every path stays inside the release folder.
      HOTSWAP_FUZZ_CHECK(module.file.lexically_relative(release_dir).string().rfind("..", 0) != 0);
    }
    const nlohmann::json written = manifest.to_json();
    const ReleaseManifest again = parse_manifest(written, release_dir, "manifest.json");
    HOTSWAP_FUZZ_CHECK(again.to_json() == written);
  } catch (const InputError&) {
  }
  return 0;
}
