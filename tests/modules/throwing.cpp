// counter 2.0.0 impostor written in C++ against the C ABI alone (no module.hpp,
// so nothing catches at the edge), which lets exceptions escape its callbacks
// as a careless module would: migrate_up, on_message, on_tick and run_task
// all `throw 42`. The host must contain each one. Built with THROW_EVERYWHERE
// (variant "throws-all"), every other callback but create throws too,
// destroy included.
#include <hotswap/module.h>

struct hotswap_instance {
  int unused;
};

namespace {

hotswap_instance* create(const hotswap_create_args*, hotswap_error*) { return new hotswap_instance{0}; }

#ifdef THROW_EVERYWHERE
void destroy(hotswap_instance* instance) {
  delete instance;
  throw 42;
}
hotswap_status export_state(hotswap_instance*, hotswap_buffer*, hotswap_error*) { throw 42; }
hotswap_status import_state(hotswap_instance*, uint32_t, hotswap_bytes, hotswap_error*) { throw 42; }
hotswap_status migrate_down(hotswap_instance*, const hotswap_migrate_down_args*, hotswap_error*) { throw 42; }
hotswap_status on_connect(hotswap_instance*, hotswap_conn_id, const hotswap_conn_info*, hotswap_error*) { throw 42; }
hotswap_status on_disconnect(hotswap_instance*, hotswap_conn_id, hotswap_disconnect_reason, hotswap_error*) {
  throw 42;
}
hotswap_status on_timer(hotswap_instance*, hotswap_timer_id, uint64_t, hotswap_error*) { throw 42; }
hotswap_status on_config_change(hotswap_instance*, const char*, hotswap_error*) { throw 42; }
hotswap_status on_stop(hotswap_instance*, hotswap_error*) { throw 42; }
#else
void destroy(hotswap_instance* instance) { delete instance; }
#endif

hotswap_status migrate_up(hotswap_instance*, const hotswap_migrate_up_args*, hotswap_error*) { throw 42; }

hotswap_status on_message(hotswap_instance*, hotswap_conn_id, hotswap_bytes, hotswap_error*) { throw 42; }

hotswap_status on_tick(hotswap_instance*, uint64_t, hotswap_error*) { throw 42; }

hotswap_status run_task(hotswap_instance*, const char*, const char*, hotswap_buffer*, hotswap_error*) { throw 42; }

hotswap_module_descriptor make_descriptor() {
  hotswap_module_descriptor d{};
  d.abi_version = HOTSWAP_ABI_VERSION;
  d.struct_size = sizeof(hotswap_module_descriptor);
  d.name = HOTSWAP_MODULE_NAME;
  d.version = HOTSWAP_MODULE_VERSION;
  d.state_schema = 2;
  d.create = create;
  d.destroy = destroy;
  d.migrate_up = migrate_up;
  d.on_message = on_message;
  d.on_tick = on_tick;
  d.run_task = run_task;
#ifdef THROW_EVERYWHERE
  d.export_state = export_state;
  d.import_state = import_state;
  d.migrate_down = migrate_down;
  d.on_connect = on_connect;
  d.on_disconnect = on_disconnect;
  d.on_timer = on_timer;
  d.on_config_change = on_config_change;
  d.on_stop = on_stop;
#endif
  return d;
}

const hotswap_module_descriptor descriptor = make_descriptor();

}  // namespace

extern "C" HOTSWAP_EXPORT const hotswap_module_descriptor* hotswap_module_entry(void) { return &descriptor; }
