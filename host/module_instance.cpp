#include "module_instance.hpp"

#include <spdlog/spdlog.h>

#include <chrono>

#include "module_registry.hpp"

namespace hotswap::host {
namespace {

hotswap::host::ModuleRegistry& registry_of(hotswap_host_ctx* ctx) { return *ctx->registry; }

// ---- the host function table (C ABI: nothing here may throw) ----

void api_log(hotswap_host_ctx* ctx, hotswap_log_level level, const char* message) {
  static const spdlog::level::level_enum levels[] = {spdlog::level::trace, spdlog::level::debug, spdlog::level::info,
                                                     spdlog::level::warn, spdlog::level::err};
  spdlog::level::level_enum lvl = (level >= 0 && level <= 4) ? levels[level] : spdlog::level::info;
  try {
    spdlog::log(lvl, "[{}] {}", ctx ? ctx->module_name : "?", message ? message : "");
  } catch (...) {
  }
}

hotswap_status api_buffer_append(hotswap_buffer* buffer, const void* data, size_t size) {
  if (buffer == nullptr || (data == nullptr && size > 0)) return HOTSWAP_BAD_ARGUMENT;
  if (size > buffer->limit - std::min(buffer->limit, buffer->bytes.size())) return HOTSWAP_LIMIT;
  try {
    buffer->bytes.append(static_cast<const char*>(data), size);
  } catch (...) {
    return HOTSWAP_LIMIT;
  }
  return HOTSWAP_OK;
}

hotswap_status api_send(hotswap_host_ctx* ctx, hotswap_conn_id conn, const void* data, size_t size) {
  if (ctx == nullptr || (data == nullptr && size > 0)) return HOTSWAP_BAD_ARGUMENT;
  std::string_view message(static_cast<const char*>(data), size);
  try {
    if (ctx->staged) {
      HeldEffect e;
      e.kind = HeldEffect::Kind::Send;
      e.conn = conn;
      e.bytes.assign(message);
      ctx->held.push_back(std::move(e));
      return HOTSWAP_OK;
    }
    return registry_of(ctx).services().send(conn, message);
  } catch (...) {
    return HOTSWAP_LIMIT;
  }
}

hotswap_status api_broadcast(hotswap_host_ctx* ctx, const hotswap_conn_id* conns, size_t count, const void* data,
                             size_t size) {
  if (ctx == nullptr || (conns == nullptr && count > 0)) return HOTSWAP_BAD_ARGUMENT;
  for (size_t i = 0; i < count; ++i) {
    hotswap_status st = api_send(ctx, conns[i], data, size);
    if (st == HOTSWAP_BAD_ARGUMENT) return st;
  }
  return HOTSWAP_OK;
}

hotswap_status api_close(hotswap_host_ctx* ctx, hotswap_conn_id conn, const char* reason) {
  if (ctx == nullptr) return HOTSWAP_BAD_ARGUMENT;
  try {
    std::string_view why = reason ? reason : "closed by module";
    if (ctx->staged) {
      HeldEffect e;
      e.kind = HeldEffect::Kind::Close;
      e.conn = conn;
      e.bytes.assign(why);
      ctx->held.push_back(std::move(e));
      return HOTSWAP_OK;
    }
    return registry_of(ctx).services().close(conn, why);
  } catch (...) {
    return HOTSWAP_LIMIT;
  }
}

hotswap_status api_timer_start(hotswap_host_ctx* ctx, uint64_t delay_ms, uint64_t repeat_ms, uint64_t tag,
                               hotswap_timer_id* out_id) {
  if (ctx == nullptr || out_id == nullptr) return HOTSWAP_BAD_ARGUMENT;
  try {
    hotswap_timer_id id = registry_of(ctx).allocate_timer_id();
    if (ctx->staged || ctx->slot == nullptr) {
      HeldEffect e;
      e.kind = HeldEffect::Kind::TimerStart;
      e.timer = id;
      e.delay_ms = delay_ms;
      e.repeat_ms = repeat_ms;
      e.tag = tag;
      ctx->held.push_back(std::move(e));
    } else {
      registry_of(ctx).arm_timer(*ctx->slot, id, delay_ms, repeat_ms, tag);
    }
    *out_id = id;
    return HOTSWAP_OK;
  } catch (...) {
    return HOTSWAP_LIMIT;
  }
}

hotswap_status api_timer_cancel(hotswap_host_ctx* ctx, hotswap_timer_id id) {
  if (ctx == nullptr) return HOTSWAP_BAD_ARGUMENT;
  try {
    if (ctx->staged || ctx->slot == nullptr) {
      HeldEffect e;
      e.kind = HeldEffect::Kind::TimerCancel;
      e.timer = id;
      ctx->held.push_back(std::move(e));
      return HOTSWAP_OK;
    }
    return registry_of(ctx).cancel_timer(*ctx->slot, id) ? HOTSWAP_OK : HOTSWAP_NOT_FOUND;
  } catch (...) {
    return HOTSWAP_LIMIT;
  }
}

uint64_t api_monotonic_ms(hotswap_host_ctx*) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

const hotswap_host_api kHostApi = {
    HOTSWAP_ABI_VERSION, sizeof(hotswap_host_api), api_log,          api_buffer_append, api_send, api_broadcast,
    api_close,           api_timer_start,          api_timer_cancel, api_monotonic_ms,
};

struct ErrorBuffer {
  char text[kErrorCapacity] = {};
  hotswap_error err{text, sizeof text};
};

hotswap_bytes as_bytes(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

}  // namespace

const hotswap_host_api& host_api_table() { return kHostApi; }

ModuleInstance::ModuleInstance(std::shared_ptr<LoadedLibrary> library, ModuleRegistry& registry,
                               std::string_view config_json, bool staged)
    : library_(std::move(library)) {
  ctx_.registry = &registry;
  ctx_.module_name = library_->name();
  ctx_.staged = staged;
  std::string config(config_json.empty() ? "null" : config_json);
  hotswap_create_args args{sizeof(hotswap_create_args), &kHostApi, &ctx_, config.c_str()};
  ErrorBuffer e;
  handle_ = descriptor().create(&args, &e.err);
  if (handle_ == nullptr) fail("create", HOTSWAP_ERROR, e.text);
}

ModuleInstance::~ModuleInstance() {
  if (handle_ != nullptr) descriptor().destroy(handle_);
}

void ModuleInstance::fail(const char* callback, hotswap_status status, const char* message) const {
  std::string why = (message && *message)           ? message
                    : status == HOTSWAP_UNSUPPORTED ? "not implemented by this module"
                                                    : "no reason given";
  throw ModuleCallError(library_->name() + " " + library_->version() + ": " + callback + " failed: " + why);
}

std::string ModuleInstance::export_state() const {
  hotswap_buffer out;
  out.limit = kMaxStateBytes;
  if (descriptor().export_state == nullptr) return {};
  ErrorBuffer e;
  hotswap_status st = descriptor().export_state(handle_, &out, &e.err);
  if (st != HOTSWAP_OK) fail("export_state", st, e.text);
  return std::move(out.bytes);
}

void ModuleInstance::import_state(uint32_t schema, std::string_view state) {
  if (descriptor().import_state == nullptr) {
    if (state.empty()) return;
    fail("import_state", HOTSWAP_UNSUPPORTED, nullptr);
  }
  ErrorBuffer e;
  hotswap_status st = descriptor().import_state(handle_, schema, as_bytes(state), &e.err);
  if (st != HOTSWAP_OK) fail("import_state", st, e.text);
}

void ModuleInstance::migrate_up(const std::string& from_version, uint32_t from_schema, std::string_view state,
                                const std::string& extra_json) {
  if (descriptor().migrate_up == nullptr) fail("migrate_up", HOTSWAP_UNSUPPORTED, nullptr);
  hotswap_migrate_up_args args{sizeof(hotswap_migrate_up_args), from_version.c_str(), from_schema, as_bytes(state),
                               extra_json.c_str()};
  ErrorBuffer e;
  hotswap_status st = descriptor().migrate_up(handle_, &args, &e.err);
  if (st != HOTSWAP_OK) fail("migrate_up", st, e.text);
}

std::string ModuleInstance::migrate_down(const std::string& to_version, uint32_t to_schema,
                                         const std::string& extra_json) const {
  if (descriptor().migrate_down == nullptr) fail("migrate_down", HOTSWAP_UNSUPPORTED, nullptr);
  hotswap_buffer out;
  out.limit = kMaxStateBytes;
  hotswap_migrate_down_args args{sizeof(hotswap_migrate_down_args), to_version.c_str(), to_schema, extra_json.c_str(),
                                 &out};
  ErrorBuffer e;
  hotswap_status st = descriptor().migrate_down(handle_, &args, &e.err);
  if (st != HOTSWAP_OK) fail("migrate_down", st, e.text);
  return std::move(out.bytes);
}

std::string ModuleInstance::run_task(const std::string& name, const std::string& args_json) {
  if (descriptor().run_task == nullptr) fail("run_task", HOTSWAP_UNSUPPORTED, ("unknown task '" + name + "'").c_str());
  hotswap_buffer out;
  out.limit = kMaxTaskResultBytes;
  ErrorBuffer e;
  hotswap_status st = descriptor().run_task(handle_, name.c_str(), args_json.c_str(), &out, &e.err);
  if (st != HOTSWAP_OK) fail(("run_task '" + name + "'").c_str(), st, e.text);
  return std::move(out.bytes);
}

void ModuleInstance::config_changed(const std::string& config_json) {
  if (descriptor().on_config_change == nullptr) return;
  ErrorBuffer e;
  hotswap_status st = descriptor().on_config_change(handle_, config_json.c_str(), &e.err);
  if (st != HOTSWAP_OK) fail("on_config_change", st, e.text);
}

void ModuleInstance::stop() {
  if (descriptor().on_stop == nullptr) return;
  ErrorBuffer e;
  hotswap_status st = descriptor().on_stop(handle_, &e.err);
  if (st != HOTSWAP_OK) fail("on_stop", st, e.text);
}

void ModuleInstance::commit(ModuleSlot& slot) {
  ctx_.slot = &slot;
  ctx_.staged = false;
  std::vector<HeldEffect> held;
  held.swap(ctx_.held);
  ModuleRegistry& registry = *ctx_.registry;
  for (HeldEffect& e : held) {
    switch (e.kind) {
      case HeldEffect::Kind::Send:
        registry.services().send(e.conn, e.bytes);
        break;
      case HeldEffect::Kind::Close:
        registry.services().close(e.conn, e.bytes);
        break;
      case HeldEffect::Kind::TimerStart:
        registry.arm_timer(slot, e.timer, e.delay_ms, e.repeat_ms, e.tag);
        break;
      case HeldEffect::Kind::TimerCancel:
        registry.cancel_timer(slot, e.timer);
        break;
    }
  }
}

}  // namespace hotswap::host
