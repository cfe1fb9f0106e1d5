// crashy 1.0.0: a module that misbehaves on request, written against the C ABI
// alone (nothing catches at its edge). On each message (one line):
//   "id"     replies "conn <id>" (the host's connection id)
//   "segv"   writes through a null pointer (SIGSEGV)
//   "hang"   never returns (the event loop stays inside on_message)
//   "throw"  throws an int across the C ABI
//   other    replies "ok"
// With {"hang_on_stop": "yes"} in its config, on_stop never returns either.
// Hangs sleep in pause(): they cost no CPU, and a handled signal does not end them.
#include <hotswap/module.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <string_view>

struct hotswap_instance {
  const hotswap_host_api* host;
  hotswap_host_ctx* ctx;
  bool hang_on_stop;
};

namespace {

// Read at run time, so the compiler cannot see the address.
// In the never-mapped first page, but not null: UBSan's null check would end the
// process before the fault happens.
volatile std::uintptr_t g_null_address = 16;

[[noreturn]] void hang_forever() {
  for (;;) ::pause();
}

hotswap_instance* create(const hotswap_create_args* args, hotswap_error*) {
  const char* config = args->config_json != nullptr ? args->config_json : "";
  return new (std::nothrow)
      hotswap_instance{args->host, args->ctx, std::strstr(config, "\"hang_on_stop\":\"yes\"") != nullptr};
}

void destroy(hotswap_instance* instance) { delete instance; }

void reply(hotswap_instance* self, hotswap_conn_id conn, const char* text) {
  self->host->send(self->ctx, conn, text, std::strlen(text));
}

hotswap_status on_message(hotswap_instance* self, hotswap_conn_id conn, hotswap_bytes message, hotswap_error*) {
  const std::string_view text(reinterpret_cast<const char*>(message.data), message.size);
  if (text == "id") {
    char line[64];
    std::snprintf(line, sizeof line, "conn %llu", static_cast<unsigned long long>(conn));
    reply(self, conn, line);
  } else if (text == "segv") {
    *reinterpret_cast<volatile int*>(g_null_address) = 1;
  } else if (text == "hang") {
    hang_forever();
  } else if (text == "throw") {
    throw 42;
  } else {
    reply(self, conn, "ok");
  }
  return HOTSWAP_OK;
}

hotswap_status on_stop(hotswap_instance* self, hotswap_error*) {
  if (self->hang_on_stop) hang_forever();
  return HOTSWAP_OK;
}

hotswap_module_descriptor make_descriptor() {
  hotswap_module_descriptor d{};
  d.abi_version = HOTSWAP_ABI_VERSION;
  d.struct_size = sizeof(hotswap_module_descriptor);
  d.name = HOTSWAP_MODULE_NAME;
  d.version = HOTSWAP_MODULE_VERSION;
  d.state_schema = 1;
  d.create = create;
  d.destroy = destroy;
  d.on_message = on_message;
  d.on_stop = on_stop;
  return d;
}

const hotswap_module_descriptor descriptor = make_descriptor();

}  // namespace

extern "C" HOTSWAP_EXPORT const hotswap_module_descriptor* hotswap_module_entry(void) { return &descriptor; }
