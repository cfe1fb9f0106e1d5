// One live instance of a module's code: a created hotswap_instance plus the
// host context it was given. Control-plane calls throw ModuleCallError; data-path
// calls never throw (the registry logs their failures). Every call into the
// module goes through call_module (core/module_call.hpp).
//
// An instance's context goes through three states: staged (its effects are
// held), serving a slot (commit), and detached (before destroy(): the host
// functions it calls are no-ops returning HOTSWAP_NOT_FOUND).
#pragma once

#include <hotswap/module.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/crash_trace.hpp"
#include "core/library_loader.hpp"

namespace hotswap::host {

class ModuleRegistry;
class ModuleSlot;

class ModuleCallError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A host function's effect held back while its instance is staged (created for
// an upgrade that has not committed). Applied on commit, dropped on rollback.
struct HeldEffect {
  enum class Kind { Send, Close, TimerStart, TimerCancel } kind = Kind::Send;
  hotswap_conn_id conn = 0;
  std::string bytes;  // message or close reason
  hotswap_timer_id timer = 0;
  uint64_t delay_ms = 0, repeat_ms = 0, tag = 0;
};

}  // namespace hotswap::host

// The opaque handles of module.h, defined by the host.
struct hotswap_host_ctx {
  hotswap::host::ModuleRegistry* registry = nullptr;  // null once detached
  hotswap::host::ModuleSlot* slot = nullptr;          // null until the instance serves a slot, and once detached
  std::string module_name;
  bool staged = false;
  // The instance no longer serves (retired, removed, rolled back, stopping):
  // host functions reach nothing, so a destroy() that runs after the slot is
  // gone, or after a newer instance took it over, cannot touch either.
  bool detached = false;
  std::vector<hotswap::host::HeldEffect> held;
};

struct hotswap_buffer {
  std::string bytes;
  size_t limit = 0;
};

namespace hotswap::host {

// The host function table handed to every module.
const hotswap_host_api& host_api_table();

class ModuleInstance {
 public:
  // Creates an instance with fresh state. `staged` holds its outside effects until commit().
  // Throws ModuleCallError when create() fails.
  ModuleInstance(std::shared_ptr<LoadedLibrary> library, ModuleRegistry& registry, std::string_view config_json,
                 bool staged);
  ~ModuleInstance();  // detach(), then destroy()
  ModuleInstance(const ModuleInstance&) = delete;
  ModuleInstance& operator=(const ModuleInstance&) = delete;

  const LoadedLibrary& library() const { return *library_; }
  std::shared_ptr<LoadedLibrary> library_ptr() const { return library_; }
  const hotswap_module_descriptor& descriptor() const { return library_->descriptor(); }
  const std::string& version() const { return library_->version(); }
  hotswap_instance* handle() const { return handle_; }
  hotswap_host_ctx& context() { return ctx_; }
  bool staged() const { return ctx_.staged; }

  // Where a call into this instance's code is made (call_module records it for
  // the crash trace and the watchdog). `callback` is a string literal.
  CallSite call_site(const char* callback) const { return {label_, callback, false, 0}; }
  CallSite call_site(const char* callback, hotswap_conn_id conn) const { return {label_, callback, true, conn}; }

  // Control plane (throw ModuleCallError naming the module, version and callback).
  std::string export_state() const;
  // The same into `out` (appended; its limit is set to kMaxStateBytes), so a
  // caller can reuse one buffer's memory across swaps.
  void export_state_into(hotswap_buffer& out) const;
  void migrate_down_into(hotswap_buffer& out, const std::string& to_version, uint32_t to_schema,
                         const std::string& extra_json) const;
  void import_state(uint32_t schema, std::string_view state);
  void migrate_up(const std::string& from_version, uint32_t from_schema, std::string_view state,
                  const std::string& extra_json);
  std::string migrate_down(const std::string& to_version, uint32_t to_schema, const std::string& extra_json) const;
  std::string run_task(const std::string& name, const std::string& args_json);
  void config_changed(const std::string& config_json);
  void stop();

  // State adoption (module.h, "The adoption rule"): whether the module's
  // descriptor has release_state/adopt_state and a non-zero state_fingerprint
  // (an older descriptor ends before them: 0 / false).
  uint64_t state_fingerprint() const;
  bool supports_adoption() const;
  // Hands the whole state out and leaves the instance empty. Throws
  // ModuleCallError when the module does not opt in or returns no state.
  void* release_state();
  // Takes `state` (from release_state of `from`) in place of its own. Throws
  // ModuleCallError (the instance then does not own `state`). `old_code`: the
  // releasing library's mapped segments, for the SDK's debug check.
  void adopt_state(void* state, const ModuleInstance& from, const std::vector<hotswap_address_range>& old_code);

  // Makes the instance serve `slot` and applies its held effects.
  void commit(ModuleSlot& slot);

  // A staged instance that replaces `earlier` (staged for the same module
  // earlier in the plan) takes over its held effects, before its own: the plan
  // commits as a whole, so what the earlier step did must still happen.
  void inherit_held_effects(ModuleInstance& earlier);

  // Cuts the instance off from its slot and registry, for good; its held
  // effects are dropped. Called when it stops serving, before destroy().
  void detach();

 private:
  [[noreturn]] void fail(const char* callback, hotswap_status status, const char* message) const;

  std::shared_ptr<LoadedLibrary> library_;
  const ModuleLabel* label_;  // the library's name and version, interned
  hotswap_host_ctx ctx_;
  hotswap_instance* handle_ = nullptr;
};

// The mapped segments (PT_LOAD) of a loaded module library, found from the
// address of its descriptor's create() through dladdr1 and dl_iterate_phdr.
// Empty when they cannot be found. Any thread; takes the dynamic loader's lock.
std::vector<hotswap_address_range> library_mapped_ranges(const LoadedLibrary& library);

// Largest state an export may produce, and largest task result.
constexpr size_t kMaxStateBytes = size_t(1) << 30;
constexpr size_t kMaxTaskResultBytes = size_t(16) << 20;
// Size of the message buffer every callback gets for its error.
constexpr size_t kErrorCapacity = 1024;

}  // namespace hotswap::host
