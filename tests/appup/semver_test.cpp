#include <hotswap/appup/semver.hpp>

#include <catch2/catch.hpp>

using hotswap::appup::compare;
using hotswap::appup::is_valid_name;
using hotswap::appup::is_valid_version;
using hotswap::appup::Version;

namespace {

Version v(const char* text) {
  const auto version = Version::parse(text);
  REQUIRE(version);
  return *version;
}

}  // namespace

TEST_CASE("Version::parse splits core, prerelease and build", "[semver]") {
  const Version version = v("1.22.333-rc.1-x+build.5");
  CHECK(version.major == 1);
  CHECK(version.minor == 22);
  CHECK(version.patch == 333);
  CHECK(version.prerelease == "rc.1-x");
  CHECK(version.build == "build.5");
  CHECK(version.str() == "1.22.333-rc.1-x+build.5");
  CHECK(v("0.0.0").str() == "0.0.0");
  CHECK(v("18446744073709551615.0.0").major == 18446744073709551615ull);
}

TEST_CASE("Version::parse rejects anything that is not a whole semantic version", "[semver]") {
  const char* invalid = GENERATE("", "1", "1.2", "1.2.3.4", "01.2.3", "1.02.3", "1.2.03", "v1.2.3", "1.2.3-", "1.2.3+",
                                 "1.2.3-rc..1", "1.2.3-01", "1.2.3-rc_1", "1.2.3+b..1", " 1.2.3", "1.2.3 ", "1.-2.3",
                                 "1.2.x", "18446744073709551616.0.0", "../1.2.3", "1.2.3/x");
  CAPTURE(invalid);
  CHECK_FALSE(Version::parse(invalid));
  CHECK_FALSE(is_valid_version(invalid));
}

TEST_CASE("Version::parse accepts leading zeros in build metadata only", "[semver]") {
  CHECK(is_valid_version("1.2.3+001"));
  CHECK(is_valid_version("1.2.3-0.a.0"));
  CHECK_FALSE(is_valid_version("1.2.3-001"));
}

TEST_CASE("compare orders major, minor and patch numerically", "[semver]") {
  CHECK(v("1.0.0") < v("2.0.0"));
  CHECK(v("2.0.0") < v("2.1.0"));
  CHECK(v("2.1.0") < v("2.1.1"));
  CHECK(v("1.10.0") > v("1.9.0"));
  CHECK(v("1.2.3") == v("1.2.3"));
  CHECK(compare(v("1.2.3"), v("1.2.4")) < 0);
  CHECK(compare(v("1.2.4"), v("1.2.3")) > 0);
}

TEST_CASE("compare follows semver prerelease precedence", "[semver]") {
  // The example chain from semver.org, item 11.
  const char* chain[] = {"1.0.0-alpha",  "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
                         "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1",       "1.0.0"};
  for (size_t i = 0; i + 1 < std::size(chain); ++i) {
    CAPTURE(chain[i], chain[i + 1]);
    CHECK(v(chain[i]) < v(chain[i + 1]));
    CHECK(v(chain[i + 1]) > v(chain[i]));
  }
  CHECK(v("1.0.0-rc.1") < v("1.0.0"));
  CHECK(v("1.0.0-99999999999999999999999") < v("1.0.0-100000000000000000000000"));
}

TEST_CASE("compare ignores build metadata", "[semver]") {
  CHECK(v("1.0.0+a") == v("1.0.0+b"));
  CHECK(compare(v("1.0.0-rc.1+x"), v("1.0.0-rc.1")) == 0);
}

TEST_CASE("is_valid_name accepts lowercase names of up to 64 characters", "[semver]") {
  CHECK(is_valid_name("counter"));
  CHECK(is_valid_name("a"));
  CHECK(is_valid_name("9lives"));
  CHECK(is_valid_name("chat_room-2"));
  CHECK(is_valid_name(std::string(64, 'x')));
}

TEST_CASE("is_valid_name rejects empty, path-like, uppercase and overlong names", "[semver]") {
  const std::string invalid = GENERATE(as<std::string>{}, "", "../x", "a/b", "..", ".", "Counter", "COUNTER", "-x",
                                       "_x", "a b", "a.b", "a\\b", std::string(65, 'x'));
  CAPTURE(invalid);
  CHECK_FALSE(is_valid_name(invalid));
}
