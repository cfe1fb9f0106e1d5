// The host function table of module.h: what a module may ask of the host.
// C ABI: nothing here may throw. A detached context (an instance that no longer
// serves: module.h, destroy()) reaches nothing: HOTSWAP_NOT_FOUND.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <new>
#include <stdexcept>
#include <vector>

#include "core/module_instance.hpp"
#include "core/module_registry.hpp"

namespace hotswap::host {
namespace {

hotswap::host::ModuleRegistry& registry_of(hotswap_host_ctx* ctx) { return *ctx->registry; }

// The status for the exception being handled (call from a catch block): running
// out of memory, or asking for more than a container can hold, is a limit the
// module may hit and back off from; anything else is a host error.
hotswap_status status_of_current_exception() noexcept {
  try {
    throw;
  } catch (const std::bad_alloc&) {
    return HOTSWAP_LIMIT;
  } catch (const std::length_error&) {
    return HOTSWAP_LIMIT;
  } catch (...) {
    return HOTSWAP_ERROR;
  }
}

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
    return status_of_current_exception();
  }
  return HOTSWAP_OK;
}

hotswap_status api_send(hotswap_host_ctx* ctx, hotswap_conn_id conn, const void* data, size_t size) {
  if (ctx == nullptr || (data == nullptr && size > 0)) return HOTSWAP_BAD_ARGUMENT;
  if (ctx->detached) return HOTSWAP_NOT_FOUND;
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
    return registry_of(ctx).services().send(ctx->module_name, conn, message);
  } catch (...) {
    return status_of_current_exception();
  }
}

hotswap_status api_broadcast(hotswap_host_ctx* ctx, const hotswap_conn_id* conns, size_t count, const void* data,
                             size_t size) {
  if (ctx == nullptr || (conns == nullptr && count > 0)) return HOTSWAP_BAD_ARGUMENT;
  if (ctx->detached) return HOTSWAP_NOT_FOUND;
  for (size_t i = 0; i < count; ++i) {
    hotswap_status st = api_send(ctx, conns[i], data, size);
    if (st == HOTSWAP_BAD_ARGUMENT) return st;
  }
  return HOTSWAP_OK;
}

hotswap_status api_close(hotswap_host_ctx* ctx, hotswap_conn_id conn, const char* reason) {
  if (ctx == nullptr) return HOTSWAP_BAD_ARGUMENT;
  if (ctx->detached) return HOTSWAP_NOT_FOUND;
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
    return registry_of(ctx).services().close(ctx->module_name, conn, why);
  } catch (...) {
    return status_of_current_exception();
  }
}

hotswap_status api_timer_start(hotswap_host_ctx* ctx, uint64_t delay_ms, uint64_t repeat_ms, uint64_t tag,
                               hotswap_timer_id* out_id) {
  if (ctx == nullptr || out_id == nullptr) return HOTSWAP_BAD_ARGUMENT;
  if (ctx->detached) return HOTSWAP_NOT_FOUND;
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
    return status_of_current_exception();
  }
}

hotswap_status api_timer_cancel(hotswap_host_ctx* ctx, hotswap_timer_id id) {
  if (ctx == nullptr) return HOTSWAP_BAD_ARGUMENT;
  if (ctx->detached) return HOTSWAP_NOT_FOUND;
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
    return status_of_current_exception();
  }
}

uint64_t api_monotonic_ms(hotswap_host_ctx* ctx) {
  // A detached context has no registry: it still answers, from the system's monotonic clock.
  if (ctx == nullptr || ctx->registry == nullptr) return HostServices::steady_now_ms();
  return registry_of(ctx).services().now_ms();
}

// The connections a (not detached) context's module serves; false for an unknown listener.
bool connections_of(hotswap_host_ctx* ctx, const char* listener, std::vector<HostServices::ConnectionRef>& out) {
  return registry_of(ctx).services().list_connections(ctx->module_name, listener, out);
}

hotswap_status api_broadcast_all(hotswap_host_ctx* ctx, const char* listener, const void* data, size_t size,
                                 size_t* out_sent, size_t* out_skipped) {
  if (out_sent != nullptr) *out_sent = 0;
  if (out_skipped != nullptr) *out_skipped = 0;
  if (ctx == nullptr || (data == nullptr && size > 0)) return HOTSWAP_BAD_ARGUMENT;
  if (ctx->detached) return HOTSWAP_NOT_FOUND;
  try {
    std::vector<HostServices::ConnectionRef> connections;
    if (!connections_of(ctx, listener, connections)) return HOTSWAP_NOT_FOUND;
    size_t sent = 0;
    // One send per connection, each under its own output limit: a connection
    // that cannot take the message costs only itself the message.
    for (const HostServices::ConnectionRef& connection : connections)
      if (api_send(ctx, connection.id, data, size) == HOTSWAP_OK) ++sent;
    if (out_sent != nullptr) *out_sent = sent;
    if (out_skipped != nullptr) *out_skipped = connections.size() - sent;
    return HOTSWAP_OK;
  } catch (...) {
    return status_of_current_exception();
  }
}

// The size of ABI 1's first hotswap_conn_entry: the smallest entry a caller may pass.
constexpr size_t kFirstConnEntrySize = offsetof(hotswap_conn_entry, listener) + sizeof(const char*);

hotswap_status api_list_connections(hotswap_host_ctx* ctx, const char* listener, hotswap_conn_entry* out,
                                    size_t capacity, size_t entry_size, size_t* out_count) {
  if (ctx == nullptr || out_count == nullptr || (out == nullptr && capacity > 0) ||
      entry_size < kFirstConnEntrySize)
    return HOTSWAP_BAD_ARGUMENT;
  *out_count = 0;
  if (ctx->detached) return HOTSWAP_NOT_FOUND;
  try {
    std::vector<HostServices::ConnectionRef> connections;
    if (!connections_of(ctx, listener, connections)) return HOTSWAP_NOT_FOUND;
    const size_t written = std::min(capacity, connections.size());
    auto* bytes = reinterpret_cast<unsigned char*>(out);
    for (size_t i = 0; i < written; ++i) {
      hotswap_conn_entry entry{};
      entry.id = connections[i].id;
      entry.listener = connections[i].listener;
      // Never a byte past what the caller's entry holds; fields it does not know stay untouched.
      std::memcpy(bytes + i * entry_size, &entry, std::min(entry_size, sizeof entry));
    }
    *out_count = connections.size();
    return written == connections.size() ? HOTSWAP_OK : HOTSWAP_LIMIT;
  } catch (...) {
    return status_of_current_exception();
  }
}

const hotswap_host_api kHostApi = {
    HOTSWAP_ABI_VERSION, sizeof(hotswap_host_api), api_log,          api_buffer_append, api_send, api_broadcast,
    api_close,           api_timer_start,          api_timer_cancel, api_monotonic_ms,
    // Appended: connection listing and broadcast.
    api_broadcast_all, api_list_connections,
};

}  // namespace

const hotswap_host_api& host_api_table() { return kHostApi; }

}  // namespace hotswap::host
