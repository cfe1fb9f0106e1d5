// module.h broadcast_all and list_connections at the C ABI and through the
// C++ layer, against a recording HostServices (tests/server/broadcast_tests.cpp
// runs them on a live server).

// module.hpp is meant for modules, which get their name from the build.
#define HOTSWAP_MODULE_NAME "broadcast_api_test"
#define HOTSWAP_MODULE_VERSION "0.0.0"
#include <hotswap/module.hpp>

#include <catch2/catch.hpp>
#include <cstddef>
#include <string>

#include "core/module_instance.hpp"
#include "core/library_loader.hpp"
#include "test_support.hpp"

using hotswap::host::host_api_table;
using hotswap::host::LibraryLoader;
using hotswap::host::ModuleRegistry;
using hotswap::host::ModuleSlot;
using hotswap::test::module_file;
using hotswap::test::RecordingServices;

namespace {

// The caster module's connections 1, 2 (listener a) and 3 (listener b); 9 is another module's.
void serve_caster_connections(RecordingServices& services) {
  services.listeners = {{"a", "caster"}, {"b", "caster"}, {"x", "other"}};
  services.connections = {{1, {"caster", "a"}}, {2, {"caster", "a"}}, {3, {"caster", "b"}}, {9, {"other", "x"}}};
}

// A context of module `name` as the host gives a serving instance (the C functions only read these fields).
hotswap_host_ctx context_of(ModuleRegistry& registry, const std::string& name) {
  hotswap_host_ctx ctx;
  ctx.registry = &registry;
  ctx.module_name = name;
  return ctx;
}

}  // namespace

TEST_CASE("broadcast_all sends to every connection of the module or of one listener, skipping full ones") {
  RecordingServices services;
  serve_caster_connections(services);
  services.full = {2};  // over its output limit
  ModuleRegistry registry(services);
  hotswap_host_ctx ctx = context_of(registry, "caster");
  const hotswap_host_api& api = host_api_table();
  REQUIRE(HOTSWAP_HOST_HAS(&api, broadcast_all));
  size_t sent = 99, skipped = 99;

  CHECK(api.broadcast_all(&ctx, nullptr, "hi", 2, &sent, &skipped) == HOTSWAP_OK);
  CHECK(sent == 2);
  CHECK(skipped == 1);
  CHECK(services.sent_to(1) == std::vector<std::string>{"hi"});
  CHECK(services.sent_to(2).empty());
  CHECK(services.sent_to(3) == std::vector<std::string>{"hi"});
  CHECK(services.sent_to(9).empty());  // another module's connection

  services.sent.clear();
  CHECK(api.broadcast_all(&ctx, "b", "news", 4, &sent, &skipped) == HOTSWAP_OK);
  CHECK((sent == 1 && skipped == 0));
  CHECK(services.sent == std::vector<std::pair<hotswap_conn_id, std::string>>{{3, "news"}});

  // A listener that is not the module's: nothing is sent.
  services.sent.clear();
  CHECK(api.broadcast_all(&ctx, "x", "no", 2, &sent, &skipped) == HOTSWAP_NOT_FOUND);
  CHECK(api.broadcast_all(&ctx, "nope", "no", 2, nullptr, nullptr) == HOTSWAP_NOT_FOUND);
  CHECK((sent == 0 && skipped == 0));
  CHECK(services.sent.empty());
  CHECK(api.broadcast_all(&ctx, nullptr, nullptr, 2, &sent, &skipped) == HOTSWAP_BAD_ARGUMENT);
}

TEST_CASE("a staged instance's broadcast is held until commit, and a detached one reaches nothing") {
  RecordingServices services;
  serve_caster_connections(services);
  ModuleRegistry registry(services);
  hotswap_host_ctx ctx = context_of(registry, "caster");
  const hotswap_host_api& api = host_api_table();
  size_t sent = 0, skipped = 0;
  ctx.staged = true;
  CHECK(api.broadcast_all(&ctx, nullptr, "later", 5, &sent, &skipped) == HOTSWAP_OK);
  CHECK((sent == 3 && skipped == 0));
  CHECK(services.sent.empty());
  REQUIRE(ctx.held.size() == 3);
  CHECK(ctx.held[0].conn == 1);
  CHECK(ctx.held[2].conn == 3);

  ctx.staged = false;
  ctx.detached = true;
  size_t count = 7;
  hotswap_conn_entry entries[4];
  CHECK(api.broadcast_all(&ctx, nullptr, "x", 1, &sent, &skipped) == HOTSWAP_NOT_FOUND);
  CHECK(api.list_connections(&ctx, nullptr, entries, 4, sizeof(hotswap_conn_entry), &count) == HOTSWAP_NOT_FOUND);
  CHECK(count == 0);
  CHECK(services.sent.empty());
}

TEST_CASE("list_connections fills the caller's buffer, says how many there are, and never writes past an entry") {
  RecordingServices services;
  serve_caster_connections(services);
  ModuleRegistry registry(services);
  hotswap_host_ctx ctx = context_of(registry, "caster");
  const hotswap_host_api& api = host_api_table();
  REQUIRE(HOTSWAP_HOST_HAS(&api, list_connections));
  size_t count = 0;

  hotswap_conn_entry entries[4] = {};
  CHECK(api.list_connections(&ctx, nullptr, entries, 4, sizeof(hotswap_conn_entry), &count) == HOTSWAP_OK);
  REQUIRE(count == 3);
  CHECK(entries[0].id == 1);
  CHECK(std::string(entries[0].listener) == "a");
  CHECK(entries[2].id == 3);
  CHECK(std::string(entries[2].listener) == "b");
  CHECK(entries[3].id == 0);  // untouched

  // Too small a buffer: the first entries, HOTSWAP_LIMIT and the count to retry with.
  hotswap_conn_entry two[2] = {};
  CHECK(api.list_connections(&ctx, nullptr, two, 2, sizeof(hotswap_conn_entry), &count) == HOTSWAP_LIMIT);
  CHECK(count == 3);
  CHECK((two[0].id == 1 && two[1].id == 2));
  // Capacity 0: the count alone.
  CHECK(api.list_connections(&ctx, "a", nullptr, 0, sizeof(hotswap_conn_entry), &count) == HOTSWAP_LIMIT);
  CHECK(count == 2);

  // An entry of a newer module (a field appended): the host writes its own fields, at the caller's stride.
  struct NewerEntry {
    hotswap_conn_id id;
    const char* listener;
    uint64_t appended;
  };
  NewerEntry newer[3];
  for (NewerEntry& e : newer) e = {0, nullptr, 0xfeedu};
  CHECK(api.list_connections(&ctx, nullptr, reinterpret_cast<hotswap_conn_entry*>(newer), 3, sizeof(NewerEntry),
                             &count) == HOTSWAP_OK);
  CHECK((newer[0].id == 1 && newer[1].id == 2 && newer[2].id == 3));
  CHECK(std::string(newer[2].listener) == "b");
  CHECK((newer[0].appended == 0xfeedu && newer[1].appended == 0xfeedu && newer[2].appended == 0xfeedu));

  // Bad arguments.
  CHECK(api.list_connections(&ctx, nullptr, entries, 4, sizeof(hotswap_conn_id), &count) == HOTSWAP_BAD_ARGUMENT);
  CHECK(api.list_connections(&ctx, nullptr, entries, 4, sizeof(hotswap_conn_entry), nullptr) == HOTSWAP_BAD_ARGUMENT);
  CHECK(api.list_connections(&ctx, nullptr, nullptr, 4, sizeof(hotswap_conn_entry), &count) == HOTSWAP_BAD_ARGUMENT);
  CHECK(api.list_connections(&ctx, "x", entries, 4, sizeof(hotswap_conn_entry), &count) == HOTSWAP_NOT_FOUND);
}

TEST_CASE("the C++ layer broadcasts and lists through the host, however many connections there are") {
  RecordingServices services;
  services.listeners = {{"a", "caster"}, {"b", "caster"}};
  for (hotswap_conn_id id = 1; id <= 100; ++id) services.connections[id] = {"caster", id % 2 == 0 ? "a" : "b"};
  ModuleRegistry registry(services);
  hotswap_host_ctx ctx = context_of(registry, "caster");
  hotswap::Host host(&host_api_table(), &ctx);

  // More than the layer's first buffer (64) holds: it asks again with room for all.
  const std::vector<hotswap::Connection> all = host.connections();
  REQUIRE(all.size() == 100);
  CHECK(all.front().id == 1);
  CHECK(all.front().listener == "b");
  CHECK(all.back().id == 100);
  CHECK(all.back().listener == "a");
  CHECK(host.connections("a").size() == 50);
  CHECK_THROWS_WITH(host.connections("c"), "connections: listener 'c' is not a listener of this module");

  services.full = {4, 5};
  hotswap::BroadcastResult result = host.broadcast("tick");
  CHECK((result.sent == 98 && result.skipped == 2));
  result = host.broadcast("a", "even");
  CHECK((result.sent == 49 && result.skipped == 1));
  CHECK_THROWS_WITH(host.broadcast("c", "x"), "broadcast: listener 'c' is not a listener of this module");
}

TEST_CASE("on a host older than broadcast_all and list_connections, the C++ layer says so instead of calling") {
  hotswap_host_api older = host_api_table();
  older.struct_size = static_cast<uint32_t>(offsetof(hotswap_host_api, broadcast_all));
  older.broadcast_all = nullptr;  // past struct_size: never read; a caller that did would crash here
  older.list_connections = nullptr;
  hotswap::Host host(&older, nullptr);
  CHECK_FALSE(HOTSWAP_HOST_HAS(&older, broadcast_all));
  CHECK_THROWS_WITH(host.broadcast("x"), Catch::Contains("no broadcast_all"));
  CHECK_THROWS_WITH(host.connections(), Catch::Contains("no list_connections"));
}

TEST_CASE("a module's broadcast and listing reach the host through a loaded library") {
  RecordingServices services;
  serve_caster_connections(services);
  services.full = {2};
  ModuleRegistry registry(services);
  LibraryLoader loader;
  ModuleSlot& slot = registry.start(loader.load(module_file("good", "caster", "1.0.0"), {"caster", "1.0.0", ""}));
  registry.deliver_message(slot, 1, "all hello");
  CHECK(services.sent_to(3) == std::vector<std::string>{"hello"});
  CHECK(services.last_to(1) == "sent=2 skipped=1");
  registry.deliver_message(slot, 1, "list");
  CHECK(services.last_to(1) == "conns 1@a 2@a 3@b");
  registry.deliver_message(slot, 1, "list x");
  CHECK(services.last_to(1) == "error connections: listener 'x' is not a listener of this module");
  registry.stop_all();
}
