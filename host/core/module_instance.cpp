#include "core/module_instance.hpp"

#include <dlfcn.h>
#include <link.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <iterator>

#include "core/module_call.hpp"
#include "core/module_registry.hpp"

namespace hotswap::host {
namespace {

struct ErrorBuffer {
  char text[kErrorCapacity] = {};
  hotswap_error err{text, sizeof text};
};

hotswap_bytes as_bytes(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

}  // namespace

ModuleInstance::ModuleInstance(std::shared_ptr<LoadedLibrary> library, ModuleRegistry& registry,
                               std::string_view config_json, bool staged)
    : library_(std::move(library)), label_(intern_module_label(library_->name(), library_->version())) {
  ctx_.registry = &registry;
  ctx_.module_name = library_->name();
  ctx_.staged = staged;
  std::string config(config_json.empty() ? "null" : config_json);
  hotswap_create_args args{sizeof(hotswap_create_args), &host_api_table(), &ctx_, config.c_str()};
  ErrorBuffer e;
  const auto create = descriptor().create;
  hotswap_status st = call_module(call_site("create"), &e.err, [&] {
    handle_ = create(&args, &e.err);
    return handle_ != nullptr ? HOTSWAP_OK : HOTSWAP_ERROR;
  });
  if (st != HOTSWAP_OK) fail("create", st, e.text);
}

ModuleInstance::~ModuleInstance() {
  detach();
  if (handle_ == nullptr) return;
  const auto destroy = descriptor().destroy;
  hotswap_instance* handle = handle_;
  ErrorBuffer e;
  if (call_module(call_site("destroy"), &e.err, [&] {
        destroy(handle);
        return HOTSWAP_OK;
      }) != HOTSWAP_OK)
    spdlog::warn("module {} {}: destroy {}", library_->name(), library_->version(), e.text);
}

void ModuleInstance::detach() {
  ctx_.detached = true;
  ctx_.staged = false;
  ctx_.registry = nullptr;
  ctx_.slot = nullptr;
  ctx_.held.clear();
}

void ModuleInstance::fail(const char* callback, hotswap_status status, const char* message) const {
  std::string why = (message && *message)           ? message
                    : status == HOTSWAP_UNSUPPORTED ? "not implemented by this module"
                                                    : "no reason given";
  throw ModuleCallError(library_->name() + " " + library_->version() + ": " + callback + " failed: " + why);
}

std::string ModuleInstance::export_state() const {
  hotswap_buffer out;
  export_state_into(out);
  return std::move(out.bytes);
}

void ModuleInstance::export_state_into(hotswap_buffer& out) const {
  out.limit = kMaxStateBytes;
  if (descriptor().export_state == nullptr) return;
  ErrorBuffer e;
  hotswap_status st =
      call_module(call_site("export_state"), &e.err, [&] { return descriptor().export_state(handle_, &out, &e.err); });
  if (st != HOTSWAP_OK) fail("export_state", st, e.text);
}

void ModuleInstance::import_state(uint32_t schema, std::string_view state) {
  if (descriptor().import_state == nullptr) {
    if (state.empty()) return;
    fail("import_state", HOTSWAP_UNSUPPORTED, nullptr);
  }
  ErrorBuffer e;
  hotswap_status st = call_module(call_site("import_state"), &e.err,
                                  [&] { return descriptor().import_state(handle_, schema, as_bytes(state), &e.err); });
  if (st != HOTSWAP_OK) fail("import_state", st, e.text);
}

void ModuleInstance::migrate_up(const std::string& from_version, uint32_t from_schema, std::string_view state,
                                const std::string& extra_json) {
  if (descriptor().migrate_up == nullptr) fail("migrate_up", HOTSWAP_UNSUPPORTED, nullptr);
  hotswap_migrate_up_args args{sizeof(hotswap_migrate_up_args), from_version.c_str(), from_schema, as_bytes(state),
                               extra_json.c_str()};
  ErrorBuffer e;
  hotswap_status st =
      call_module(call_site("migrate_up"), &e.err, [&] { return descriptor().migrate_up(handle_, &args, &e.err); });
  if (st != HOTSWAP_OK) fail("migrate_up", st, e.text);
}

std::string ModuleInstance::migrate_down(const std::string& to_version, uint32_t to_schema,
                                         const std::string& extra_json) const {
  hotswap_buffer out;
  migrate_down_into(out, to_version, to_schema, extra_json);
  return std::move(out.bytes);
}

void ModuleInstance::migrate_down_into(hotswap_buffer& out, const std::string& to_version, uint32_t to_schema,
                                       const std::string& extra_json) const {
  if (descriptor().migrate_down == nullptr) fail("migrate_down", HOTSWAP_UNSUPPORTED, nullptr);
  out.limit = kMaxStateBytes;
  hotswap_migrate_down_args args{sizeof(hotswap_migrate_down_args), to_version.c_str(), to_schema, extra_json.c_str(),
                                 &out};
  ErrorBuffer e;
  hotswap_status st =
      call_module(call_site("migrate_down"), &e.err, [&] { return descriptor().migrate_down(handle_, &args, &e.err); });
  if (st != HOTSWAP_OK) fail("migrate_down", st, e.text);
}

std::string ModuleInstance::run_task(const std::string& name, const std::string& args_json) {
  if (descriptor().run_task == nullptr) fail("run_task", HOTSWAP_UNSUPPORTED, ("unknown task '" + name + "'").c_str());
  hotswap_buffer out;
  out.limit = kMaxTaskResultBytes;
  ErrorBuffer e;
  hotswap_status st = call_module(call_site("run_task"), &e.err, [&] {
    return descriptor().run_task(handle_, name.c_str(), args_json.c_str(), &out, &e.err);
  });
  if (st != HOTSWAP_OK) fail(("run_task '" + name + "'").c_str(), st, e.text);
  return std::move(out.bytes);
}

void ModuleInstance::config_changed(const std::string& config_json) {
  if (descriptor().on_config_change == nullptr) return;
  ErrorBuffer e;
  hotswap_status st = call_module(call_site("on_config_change"), &e.err,
                                  [&] { return descriptor().on_config_change(handle_, config_json.c_str(), &e.err); });
  if (st != HOTSWAP_OK) fail("on_config_change", st, e.text);
}

void ModuleInstance::stop() {
  if (descriptor().on_stop == nullptr) return;
  ErrorBuffer e;
  hotswap_status st = call_module(call_site("on_stop"), &e.err, [&] { return descriptor().on_stop(handle_, &e.err); });
  if (st != HOTSWAP_OK) fail("on_stop", st, e.text);
}

uint64_t ModuleInstance::state_fingerprint() const {
  const hotswap_module_descriptor& d = descriptor();
  return HOTSWAP_DESCRIPTOR_HAS(&d, state_fingerprint) ? d.state_fingerprint : 0;
}

bool ModuleInstance::supports_adoption() const {
  const hotswap_module_descriptor& d = descriptor();
  return HOTSWAP_DESCRIPTOR_HAS(&d, adopt_state) && d.state_fingerprint != 0 && d.release_state != nullptr &&
         d.adopt_state != nullptr;
}

void* ModuleInstance::release_state() {
  if (!supports_adoption()) fail("release_state", HOTSWAP_UNSUPPORTED, nullptr);
  const auto release = descriptor().release_state;
  void* state = nullptr;
  ErrorBuffer e;
  hotswap_status st = call_module(&e.err, [&] {
    state = release(handle_);
    return HOTSWAP_OK;
  });
  if (st != HOTSWAP_OK) fail("release_state", st, e.text);
  if (state == nullptr) fail("release_state", HOTSWAP_ERROR, "returned no state (the instance holds none)");
  return state;
}

void ModuleInstance::adopt_state(void* state, const ModuleInstance& from,
                                 const std::vector<hotswap_address_range>& old_code) {
  if (!supports_adoption()) fail("adopt_state", HOTSWAP_UNSUPPORTED, nullptr);
  hotswap_adopt_state_args args{sizeof(hotswap_adopt_state_args),
                                from.version().c_str(),
                                from.library().state_schema(),
                                from.state_fingerprint(),
                                state,
                                old_code.empty() ? nullptr : old_code.data(),
                                old_code.size()};
  ErrorBuffer e;
  hotswap_status st = call_module(&e.err, [&] { return descriptor().adopt_state(handle_, &args, &e.err); });
  if (st != HOTSWAP_OK) fail("adopt_state", st, e.text);
}

namespace {

struct RangeSearch {
  uintptr_t load_base = 0;
  std::vector<hotswap_address_range>* out = nullptr;
};

int collect_ranges(struct dl_phdr_info* info, size_t, void* data) {
  auto* search = static_cast<RangeSearch*>(data);
  if (info->dlpi_addr != search->load_base) return 0;
  for (ElfW(Half) i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD) continue;
    uintptr_t begin = search->load_base + ph.p_vaddr;
    search->out->push_back({begin, begin + ph.p_memsz});
  }
  return 1;
}

}  // namespace

std::vector<hotswap_address_range> library_mapped_ranges(const LoadedLibrary& library) {
  std::vector<hotswap_address_range> ranges;
  if (library.closed()) return ranges;
  Dl_info info{};
  struct link_map* map = nullptr;
  void* inside = reinterpret_cast<void*>(library.descriptor().create);
  if (inside == nullptr || ::dladdr1(inside, &info, reinterpret_cast<void**>(&map), RTLD_DL_LINKMAP) == 0 ||
      map == nullptr)
    return ranges;
  RangeSearch search{static_cast<uintptr_t>(map->l_addr), &ranges};
  ::dl_iterate_phdr(&collect_ranges, &search);
  return ranges;
}

void ModuleInstance::inherit_held_effects(ModuleInstance& earlier) {
  std::vector<HeldEffect> merged = std::move(earlier.ctx_.held);
  earlier.ctx_.held.clear();
  merged.insert(merged.end(), std::make_move_iterator(ctx_.held.begin()), std::make_move_iterator(ctx_.held.end()));
  ctx_.held = std::move(merged);
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
        registry.services().send(ctx_.module_name, e.conn, e.bytes);
        break;
      case HeldEffect::Kind::Close:
        registry.services().close(ctx_.module_name, e.conn, e.bytes);
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
