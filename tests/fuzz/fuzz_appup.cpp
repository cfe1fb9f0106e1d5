// The appup parser and version patterns. The first byte picks what the rest is:
//   'P'   "<expression>\n<version>": a version pattern compiled and matched
//   else  the whole input is an appup file, parsed, then every entry matched
//         against a few versions
#include <hotswap/appup/appup.hpp>
#include <hotswap/appup/error.hpp>
#include <hotswap/appup/json_reader.hpp>
#include <hotswap/appup/semver.hpp>
#include <hotswap/appup/version_pattern.hpp>

#include "fuzz_support.hpp"

namespace {

using namespace hotswap::appup;

void fuzz_pattern(std::string_view input) {
  const size_t newline = input.find('\n');
  const std::string expression(input.substr(0, newline));
  const std::string_view version = newline == std::string_view::npos ? "1.0.0" : input.substr(newline + 1);
  try {
    const VersionPattern pattern = VersionPattern::regex(expression);
    HOTSWAP_FUZZ_CHECK(expression.size() <= VersionPattern::kMaxExpressionLength);
    const bool matched = pattern.matches(version);
    HOTSWAP_FUZZ_CHECK(!matched || version.size() <= kMaxVersionLength);
    HOTSWAP_FUZZ_CHECK(pattern.describe() == "/" + expression + "/");
  } catch (const PatternError&) {
  }
}

void fuzz_appup_file(std::string_view input) {
  try {
    const Appup appup = parse_appup(parse_json_text(input, "fuzz.appup.json"), "fuzz.appup.json");
    HOTSWAP_FUZZ_CHECK(is_valid_name(appup.module));
    HOTSWAP_FUZZ_CHECK(is_valid_version(appup.version));
    for (const char* version : {"1.0.0", "1.1.0-rc.1", "2.0.0+build.5", "0.0.0"}) {
      const AppupEntry* up = appup.find_up(version);
      const AppupEntry* down = appup.find_down(version);
      HOTSWAP_FUZZ_CHECK(up == nullptr || up->versions.matches(version));
      HOTSWAP_FUZZ_CHECK(down == nullptr || down->versions.matches(version));
    }
    for (const AppupEntry& entry : appup.up) {
      for (const Instruction& instruction : entry.instructions) {
        (void)instruction.extra.dump();  // what the executor hands to a migration
        (void)instruction.args.dump();
      }
    }
  } catch (const InputError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input = hotswap::fuzz::as_text(data, size);
  if (!input.empty() && input.front() == 'P') {
    fuzz_pattern(input.substr(1));
  } else {
    fuzz_appup_file(input);
  }
  return 0;
}
