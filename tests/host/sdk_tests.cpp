// The C++ layer (module.hpp) on its own: parsed JSON for config and `extra`,
// and what a state layout mismatch says.

// module.hpp is meant for modules, which get their name from the build.
#define HOTSWAP_MODULE_NAME "sdk_test"
#define HOTSWAP_MODULE_VERSION "1.0.0"
#include <hotswap/module.hpp>

#include <catch2/catch.hpp>
#include <string>

#include "core/module_instance.hpp"

namespace {

// Remembers what its handlers saw of the parsed JSON.
class JsonModule : public hotswap::Module<JsonModule> {
 public:
  static constexpr uint32_t kStateSchema = 1;
  explicit JsonModule(hotswap::Host host, std::string_view config_json)
      : Module(host, config_json), limit(config().value("limit", 0)) {}
  void on_config_change(std::string_view config_json) {
    raw_seen = std::string(config_json);
    limit = config().at("limit").get<int>();
  }
  void migrate_up(const hotswap::MigrationFrom& from, hotswap::StateReader& in) {
    label = from.extra().value("label", "");
    import_state(in);
  }
  int limit = 0;
  std::string raw_seen, label;
};

char error_text[256];
hotswap_error error_out() {
  error_text[0] = '\0';
  return {error_text, sizeof error_text};
}

hotswap_create_args create_args(const char* config) {
  hotswap_create_args args{};
  args.struct_size = sizeof args;
  args.host = &hotswap::host::host_api_table();
  args.ctx = nullptr;
  args.config_json = config;
  return args;
}

}  // namespace

TEST_CASE("config and extra arrive parsed, and text that is not JSON is a module error, not an exception") {
  static const hotswap_module_descriptor d = hotswap::detail::make_descriptor<JsonModule>("json", "1.0.0");
  hotswap_error err = error_out();

  const hotswap_create_args good = create_args(R"({"limit": 5})");
  hotswap_instance* instance = d.create(&good, &err);
  REQUIRE(instance != nullptr);
  auto* module = reinterpret_cast<JsonModule*>(instance);
  CHECK(module->limit == 5);
  CHECK(module->config_json() == R"({"limit": 5})");  // the raw text stays available

  // on_config_change: config() is the new section while the handler runs.
  CHECK(d.on_config_change(instance, R"({"limit": 7})", &err) == HOTSWAP_OK);
  CHECK(module->limit == 7);
  CHECK(module->raw_seen == R"({"limit": 7})");
  CHECK(d.on_config_change(instance, "{limit: 8}", &err) == HOTSWAP_ERROR);
  CHECK_THAT(error_text, Catch::StartsWith("the module's runtime config section is not valid JSON: "));

  hotswap_migrate_up_args up{};
  up.struct_size = sizeof up;
  up.from_version = "0.9.0";
  up.from_schema = 1;
  up.state = {nullptr, 0};
  up.extra_json = R"({"label": "live"})";
  err = error_out();
  CHECK(d.migrate_up(instance, &up, &err) == HOTSWAP_OK);
  CHECK(module->label == "live");
  up.extra_json = R"({"label": )";
  CHECK(d.migrate_up(instance, &up, &err) == HOTSWAP_ERROR);
  CHECK_THAT(error_text, Catch::StartsWith("the appup's extra is not valid JSON: "));
  d.destroy(instance);

  const hotswap_create_args bad = create_args("[1,");
  err = error_out();
  CHECK(d.create(&bad, &err) == nullptr);
  CHECK_THAT(error_text, Catch::StartsWith("the module's runtime config section is not valid JSON: "));

  // The parsers on their own.
  CHECK(hotswap::parse_json("null", "x").is_null());
  CHECK_THROWS_AS(hotswap::parse_json("", "empty text"), hotswap::JsonError);
  CHECK_THROWS_WITH(hotswap::parse_json("{", "the task's args"), Catch::StartsWith("the task's args is not valid JSON"));
  CHECK((hotswap::MigrationTo{"1.0.0", 1, R"([1, 2])"}.extra() == nlohmann::json{1, 2}));
}

TEST_CASE("trailing state bytes name the likely cause: a layout change without a new kStateSchema") {
  const uint8_t bytes[] = {1, 2, 3, 4};
  hotswap::StateReader in(hotswap_bytes{bytes, sizeof bytes});
  CHECK(in.u8() == 1);
  CHECK_THROWS_WITH(in.expect_end(),
                    Catch::Contains("state has 3 unexpected trailing bytes") &&
                        Catch::Contains("the state layout changed without a new kStateSchema?"));
  (void)in.u8();
  (void)in.u8();
  (void)in.u8();
  CHECK_NOTHROW(in.expect_end());
}
