/*
 * hotswap module ABI: the only header a module must include.
 *
 * A module is a shared object that exports two symbols: HOTSWAP_ENTRY_SYMBOL,
 * returning a static hotswap_module_descriptor, and HOTSWAP_ABI_SYMBOL, the
 * ABI tag (HOTSWAP_DEFINE_ABI_TAG; module.hpp's HOTSWAP_MODULE defines both). The host
 * hands each instance a hotswap_host_api table; a module never links against
 * host symbols and never sees another module.
 *
 * Compatibility rules (after Redis modules and SQLite extensions):
 *  - Both structs start with { abi_version, struct_size }. Fields are only ever
 *    appended; a reader uses a field only when struct_size says it is present.
 *  - No C++ exception, STL type or object with a vtable crosses this boundary.
 *    Every callback returns a hotswap_status and, on failure, writes a message
 *    into the hotswap_error the host passed.
 *  - Byte buffers the host passes in are valid only for the duration of the
 *    call. Output bytes are appended to a host-owned hotswap_buffer through
 *    hotswap_host_api.buffer_append.
 *  - Every callback is called on the host's event-loop thread, never
 *    concurrently for one instance. One exception: an instance created only
 *    to run a release task (`hotswap task`, a pre-upgrade task) serves no
 *    traffic and may be created, run and destroyed on a worker thread.
 *  - A callback must not let a C++ exception escape (the C++ layer of
 *    module.hpp catches everything at the edge). The host still guards every
 *    call: an exception that escapes counts as a failed callback with the
 *    message "threw a C++ exception across the C ABI" (a migration rolls back;
 *    a data-path event is counted and logged as failed).
 *  - Enums grow: a module must tolerate values it does not know (a newer host
 *    may pass a hotswap_disconnect_reason or hotswap_log_level added after the
 *    module was built) and treat them like the closest general case.
 *  - Static constructors and destructors of a module library (and of the
 *    libraries it links) run inside dlopen and dlclose, on whichever host
 *    thread loads or unloads the library: today the main thread at boot, the
 *    upgrade worker thread for an upgrade's check phase and purge, and the
 *    thread that stops the host at shutdown. They never run concurrently with
 *    a callback of that library, but they are often NOT on the event-loop
 *    thread: they must not depend on it, must not throw, and cannot call host
 *    functions (there is no hotswap_host_ctx outside an instance).
 *  - Live rehearsal: before an upgrade or downgrade, the host forks itself and
 *    runs the plan (migrations, self_check) in the child, which serves no
 *    traffic and has only the forking thread. A thread the module started
 *    does not exist there, and a lock it held at the fork stays held: a
 *    migration or self_check that takes such a lock hangs in the child and
 *    refuses the upgrade (a timeout). Host functions work there but reach no one.
 *  - A module built against a newer header may run on an older host: check a
 *    host function with HOTSWAP_HOST_HAS before calling it (module.hpp does).
 *    Likewise a host reads a descriptor field appended after ABI 1's first
 *    layout (state adoption) only when HOTSWAP_DESCRIPTOR_HAS says the
 *    module's struct_size covers it. A C module that fills its descriptor
 *    positionally should zero the fields it does not use (or use designated
 *    initializers): -Wmissing-field-initializers flags the new ones.
 */
#ifndef HOTSWAP_MODULE_H
#define HOTSWAP_MODULE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI this header describes. The host accepts modules whose abi_version is
 * in [HOTSWAP_ABI_VERSION_MIN, its own HOTSWAP_ABI_VERSION]. */
#define HOTSWAP_ABI_VERSION 1u
#define HOTSWAP_ABI_VERSION_MIN 1u

/* The entry symbol: `const hotswap_module_descriptor* hotswap_module_entry(void)`. */
#define HOTSWAP_ENTRY_SYMBOL "hotswap_module_entry"

#if defined(__GNUC__)
#define HOTSWAP_EXPORT __attribute__((visibility("default")))
#define HOTSWAP_USED_ __attribute__((used))
#else
#define HOTSWAP_EXPORT
#define HOTSWAP_USED_
#endif

/* The ABI tag: `const uint32_t hotswap_module_abi`, exported, holding the
 * HOTSWAP_ABI_VERSION the module was built against (the same number as its
 * descriptor's abi_version). The host reads it from the file's dynamic symbol
 * table without loading the library, so before an upgrade it knows whether
 * its own code can run the module at all: a module built for a newer ABI makes
 * the upgrade a blue-green handover to the target release's bin/hotswap
 * instead of a load that would fail. A host also refuses a module whose tag
 * it does not support before running any of the module's code.
 *
 * Write HOTSWAP_DEFINE_ABI_TAG(); once at file scope in one source file of the
 * module (module.hpp's HOTSWAP_MODULE does it for you). A module built before
 * the tag existed has none; its ABI is then checked only when it is loaded. */
#define HOTSWAP_ABI_SYMBOL "hotswap_module_abi"
#ifdef __cplusplus
#define HOTSWAP_DEFINE_ABI_TAG() \
  extern "C" HOTSWAP_EXPORT HOTSWAP_USED_ const uint32_t hotswap_module_abi = HOTSWAP_ABI_VERSION
#else
#define HOTSWAP_DEFINE_ABI_TAG() HOTSWAP_EXPORT HOTSWAP_USED_ const uint32_t hotswap_module_abi = HOTSWAP_ABI_VERSION
#endif

typedef enum hotswap_status {
  HOTSWAP_OK = 0,
  HOTSWAP_ERROR = 1,         /* the callback failed; hotswap_error says why */
  HOTSWAP_UNSUPPORTED = 2,   /* the module does not implement this callback/task */
  HOTSWAP_BAD_ARGUMENT = 3,  /* a host function was called with invalid arguments */
  HOTSWAP_NOT_FOUND = 4,     /* unknown connection, timer or task */
  HOTSWAP_LIMIT = 5          /* a host limit was hit (e.g. output queue full) */
} hotswap_status;

typedef enum hotswap_log_level {
  HOTSWAP_LOG_TRACE = 0,
  HOTSWAP_LOG_DEBUG = 1,
  HOTSWAP_LOG_INFO = 2,
  HOTSWAP_LOG_WARN = 3,
  HOTSWAP_LOG_ERROR = 4
} hotswap_log_level;

/* A connection id is stable for the connection's whole life, across code swaps. 0 is never used. */
typedef uint64_t hotswap_conn_id;
/* A timer id is stable across code swaps: timers belong to the module slot, not to one instance. */
typedef uint64_t hotswap_timer_id;

/* Opaque handles. hotswap_instance is the module's own object; the others are host-owned. */
typedef struct hotswap_instance hotswap_instance;
typedef struct hotswap_host_ctx hotswap_host_ctx;
typedef struct hotswap_buffer hotswap_buffer;

/* Where a callback reports failure: the module copies at most capacity-1 bytes
 * of its message into `message` and NUL-terminates it. */
typedef struct hotswap_error {
  char* message;
  size_t capacity;
} hotswap_error;

/* A read-only view of bytes owned by the caller, valid during the call only. */
typedef struct hotswap_bytes {
  const uint8_t* data;
  size_t size;
} hotswap_bytes;

/* One entry of list_connections. `listener` is the listener's name (from the
 * runtime config), owned by the host: valid until the callback that called
 * list_connections returns. */
typedef struct hotswap_conn_entry {
  hotswap_conn_id id;
  const char* listener;
} hotswap_conn_entry;

/* ---------------------------------------------------------------------------
 * Host functions. Every function takes the hotswap_host_ctx the instance got in
 * create(). They never throw and never call back into the module re-entrantly.
 * While an instance is staged for an upgrade that has not committed (a
 * migrated instance, or the copy of the live instance an appup `apply` task
 * runs on), effects on the outside world (send, close, broadcast, timers) are
 * held by the host and happen only if the upgrade commits.
 * After an instance is detached (see destroy()), they return HOTSWAP_NOT_FOUND.
 * ------------------------------------------------------------------------- */
typedef struct hotswap_host_api {
  uint32_t abi_version;
  uint32_t struct_size;

  /* Logs `message` (NUL-terminated) at `level`, tagged with the module name. */
  void (*log)(hotswap_host_ctx* ctx, hotswap_log_level level, const char* message);

  /* Appends size bytes to a host-owned output buffer. Returns HOTSWAP_LIMIT when
   * the host refuses to grow it. */
  hotswap_status (*buffer_append)(hotswap_buffer* buffer, const void* data, size_t size);

  /* Queues one framed message for connection `conn`. The host adds the framing.
   * HOTSWAP_NOT_FOUND for an unknown or closed connection; HOTSWAP_LIMIT when the
   * connection's output queue is over its limit (the host then closes it). */
  hotswap_status (*send)(hotswap_host_ctx* ctx, hotswap_conn_id conn, const void* data, size_t size);

  /* Sends the same message to each of `count` connections; unknown ids are skipped. */
  hotswap_status (*broadcast)(hotswap_host_ctx* ctx, const hotswap_conn_id* conns, size_t count,
                              const void* data, size_t size);

  /* Closes `conn` after its pending output is written. `reason` is logged. */
  hotswap_status (*close)(hotswap_host_ctx* ctx, hotswap_conn_id conn, const char* reason);

  /* Starts a timer that fires after delay_ms and then every repeat_ms (0: once).
   * `tag` is handed back in on_timer. The id is written to *out_id. */
  hotswap_status (*timer_start)(hotswap_host_ctx* ctx, uint64_t delay_ms, uint64_t repeat_ms,
                                uint64_t tag, hotswap_timer_id* out_id);

  /* Cancels a timer. HOTSWAP_NOT_FOUND when it already fired (one-shot) or never existed. */
  hotswap_status (*timer_cancel)(hotswap_host_ctx* ctx, hotswap_timer_id id);

  /* Milliseconds of a monotonic clock. */
  uint64_t (*monotonic_ms)(hotswap_host_ctx* ctx);

  /* --- Appended after ABI 1's first layout: connection listing and
   * broadcast. A module calls these only when HOTSWAP_HOST_HAS says the host
   * has them (module.hpp does). --- */

  /* Sends one message to every connection this module serves, or, when
   * `listener` is not NULL, to every connection of that listener (a listener
   * name from the runtime config whose connections this module serves).
   * Each connection is handled as by send(), with its own output limit: a
   * connection that cannot take the message (over its output limit, closed
   * meanwhile, or the message does not fit its framing) is skipped and
   * counted, and the others still get it. *out_sent and *out_skipped (either
   * may be NULL) receive the counts. HOTSWAP_NOT_FOUND when `listener` names
   * no listener of this module (nothing is sent); HOTSWAP_OK otherwise, even
   * when some (or all) connections were skipped. While the instance is
   * staged, one send per connection served at the time of the call is held
   * until commit, and *out_sent counts them. */
  hotswap_status (*broadcast_all)(hotswap_host_ctx* ctx, const char* listener, const void* data, size_t size,
                                  size_t* out_sent, size_t* out_skipped);

  /* Lists the connections this module serves (or, when `listener` is not
   * NULL, those of that listener), in ascending id order. Writes at most
   * `capacity` entries into `out`, each `entry_size` bytes apart: the caller
   * passes sizeof(hotswap_conn_entry) as it was built, and the host writes no
   * field past it (entries grow by appending fields, like the structs above).
   * *out_count (required) receives the number of connections there are.
   * HOTSWAP_LIMIT when they do not all fit (the first `capacity` are
   * written): call again with a buffer of *out_count entries, or pass
   * capacity 0 (out may then be NULL) to ask for the count alone.
   * HOTSWAP_NOT_FOUND when `listener` names no listener of this module;
   * HOTSWAP_BAD_ARGUMENT when entry_size is smaller than ABI 1's first entry
   * layout (the id and listener fields). */
  hotswap_status (*list_connections)(hotswap_host_ctx* ctx, const char* listener, hotswap_conn_entry* out,
                                     size_t capacity, size_t entry_size, size_t* out_count);
} hotswap_host_api;


/* Nonzero when the host table `api` (a const hotswap_host_api*) has host
 * function `fn`: the host's struct_size covers the field and the field is set.
 * A module built against a newer header than the host's calls a function only
 * after checking it; the functions of ABI 1's first layout (log to monotonic_ms) are
 * present on every host. */
#define HOTSWAP_HOST_HAS(api, fn)                                                                     \
  ((api) != NULL && (size_t)(api)->struct_size >= offsetof(hotswap_host_api, fn) + sizeof((api)->fn) && \
   (api)->fn != NULL)

/* ---------------------------------------------------------------------------
 * Callback arguments passed as structs so that fields can be appended.
 * ------------------------------------------------------------------------- */

/* create(): config_json is the module's own section of the runtime config
 * (a JSON value, "null" when absent). */
typedef struct hotswap_create_args {
  uint32_t struct_size;
  const hotswap_host_api* host;
  hotswap_host_ctx* ctx;
  const char* config_json;
} hotswap_create_args;

/* migrate_up(): called on a freshly created instance of the NEW code with the
 * state exported by the old code. from_schema may equal the module's own schema
 * (an `update` that only changes behaviour). extra_json is the appup's `extra`
 * ("null" when absent). */
typedef struct hotswap_migrate_up_args {
  uint32_t struct_size;
  const char* from_version;
  uint32_t from_schema;
  hotswap_bytes state;
  const char* extra_json;
} hotswap_migrate_up_args;

/* migrate_down(): called on the CURRENT (newer) instance during a downgrade. It
 * must write into `out` its state encoded in the older schema `to_schema` of
 * version `to_version`, and must not change the instance: if the downgrade
 * rolls back, this instance keeps serving. */
typedef struct hotswap_migrate_down_args {
  uint32_t struct_size;
  const char* to_version;
  uint32_t to_schema;
  const char* extra_json;
  hotswap_buffer* out;
} hotswap_migrate_down_args;

typedef struct hotswap_conn_info {
  uint32_t struct_size;
  const char* listener;      /* the listener's name from the runtime config */
  const char* peer_address;  /* "ip:port" */
} hotswap_conn_info;

typedef enum hotswap_disconnect_reason {
  HOTSWAP_DISCONNECT_PEER_CLOSED = 0,
  HOTSWAP_DISCONNECT_CLOSED_BY_MODULE = 1,
  HOTSWAP_DISCONNECT_PROTOCOL_ERROR = 2, /* bad framing or oversized frame */
  HOTSWAP_DISCONNECT_SLOW_READER = 3,    /* output queue over its limit */
  HOTSWAP_DISCONNECT_IO_ERROR = 4,
  HOTSWAP_DISCONNECT_SHUTDOWN = 5
} hotswap_disconnect_reason;

/* [begin, end): one mapped segment of a library. */
typedef struct hotswap_address_range {
  uintptr_t begin;
  uintptr_t end;
} hotswap_address_range;

/* adopt_state(): the state object another instance of this module gave up
 * with release_state.
 *  - from_version / from_schema / from_fingerprint describe the instance that
 *    released it (on a rollback: the newer instance handing it back).
 *  - old_code lists the mapped segments of the releasing instance's library
 *    (old_code_count entries; may be 0, e.g. on a rollback). A debug build of
 *    the SDK refuses a state whose bytes hold an address inside them (see "The
 *    adoption rule" below) and names the offending byte offset. */
typedef struct hotswap_adopt_state_args {
  uint32_t struct_size;
  const char* from_version;
  uint32_t from_schema;
  uint64_t from_fingerprint;
  void* state;
  const hotswap_address_range* old_code;
  size_t old_code_count;
} hotswap_adopt_state_args;

/* ---------------------------------------------------------------------------
 * The adoption rule (state that stays in place across a code-only swap).
 *
 * A module that sets state_fingerprint, release_state and adopt_state lets the
 * host hand its state object from the old instance to the new one as one
 * opaque pointer, instead of copying it out with export_state and back in with
 * import_state. The host does so for a `load_module`, and for an `update`
 * whose state schema does not change, when both versions opt in and declare
 * the same non-zero state_fingerprint (checked before anything pauses);
 * otherwise it falls back to export/import and says why in the upgrade report.
 * The swap then costs the same whatever the size of the state.
 *
 * After the swap the old library is unloaded, while the state lives on. So
 * the adopted state must hold NO ADDRESS INSIDE THE OLD LIBRARY, anywhere in
 * it (its own bytes and every heap block it reaches). What breaks:
 *  - an object with virtual functions: its vtable pointer points into the old
 *    library's .rodata (a polymorphic member, or a heap object the state owns
 *    through a base pointer);
 *  - a function pointer, a lambda in a std::function (its invoker and manager
 *    are old code), a std::shared_ptr made with make_shared or with a custom
 *    deleter (the control block has a vtable), any type-erased deleter;
 *  - a string literal (`const char* motd = "welcome"`: the bytes are in the
 *    old library's .rodata; std::string copies them to the heap and is fine),
 *    a pointer to a static or global object of the old library, a
 *    std::string_view of either;
 *  - typeid / std::type_info pointers, std::any, std::error_category
 *    references of the old library's categories;
 *  - memory from a private allocator the old library owns (a static pool, an
 *    arena in .bss).
 * What is fine: plain data, std::string, std::vector, std::map,
 * std::unordered_map, std::unique_ptr with the default deleter to a
 * non-polymorphic type, all allocated from the process heap (operator new or
 * malloc), and pointers inside the state itself.
 *
 * The fingerprint is the author's promise that both versions agree on the
 * state's layout; module.hpp computes it from kStateSchema, sizeof and
 * alignof of the state type, an author-bumped layout tag (kStateLayout) and
 * the standard library's layout flags. Bump kStateLayout when a change keeps
 * the size but moves or retypes fields.
 * ------------------------------------------------------------------------- */

/* ---------------------------------------------------------------------------
 * The descriptor. Optional callbacks may be NULL; the host then treats the
 * event as handled (or the capability as unsupported, for tasks and migrations).
 * ------------------------------------------------------------------------- */
typedef struct hotswap_module_descriptor {
  uint32_t abi_version; /* HOTSWAP_ABI_VERSION the module was built against */
  uint32_t struct_size; /* sizeof(hotswap_module_descriptor) the module was built with */

  const char* name;     /* [a-z0-9_-]+, matches the release manifest */
  const char* version;  /* semantic version, e.g. "1.2.0" */
  uint32_t state_schema; /* version of the layout export_state produces */

  /* Creates an instance with empty (fresh) state. NULL plus err on failure. */
  hotswap_instance* (*create)(const hotswap_create_args* args, hotswap_error* err);

  /* Destroys an instance. Must release everything the instance allocated. Never fails.
   * The instance is detached from the host before destroy() runs: it no longer
   * serves its module, and its hotswap_host_ctx no longer reaches the module's
   * connections or timers (a newer instance may own them now). During destroy()
   * (and from any destructor it runs), host functions are harmless no-ops:
   * send, broadcast, broadcast_all, list_connections, close, timer_start and
   * timer_cancel return HOTSWAP_NOT_FOUND
   * and do nothing; log still logs and monotonic_ms still answers. So RAII
   * members that cancel their timer or say goodbye are safe, but have no
   * effect: the host itself cancels the timers of a module it removes. */
  void (*destroy)(hotswap_instance* instance);

  /* Appends the instance's state, in schema `state_schema`, to `out`. Must not change the instance. */
  hotswap_status (*export_state)(hotswap_instance* instance, hotswap_buffer* out, hotswap_error* err);

  /* Replaces the (fresh) instance's state with `state`, which is in schema `schema`
   * (always the module's own state_schema when the host calls it). */
  hotswap_status (*import_state)(hotswap_instance* instance, uint32_t schema, hotswap_bytes state,
                                 hotswap_error* err);

  /* See hotswap_migrate_up_args / hotswap_migrate_down_args. */
  hotswap_status (*migrate_up)(hotswap_instance* instance, const hotswap_migrate_up_args* args,
                               hotswap_error* err);
  hotswap_status (*migrate_down)(hotswap_instance* instance, const hotswap_migrate_down_args* args,
                                 hotswap_error* err);

  /* Data path. A failure is logged by the host; the connection stays open. */
  hotswap_status (*on_connect)(hotswap_instance* instance, hotswap_conn_id conn,
                               const hotswap_conn_info* info, hotswap_error* err);
  hotswap_status (*on_message)(hotswap_instance* instance, hotswap_conn_id conn, hotswap_bytes message,
                               hotswap_error* err);
  hotswap_status (*on_disconnect)(hotswap_instance* instance, hotswap_conn_id conn,
                                  hotswap_disconnect_reason reason, hotswap_error* err);
  /* Fixed-rate tick; tick_number counts from 1 and keeps counting across swaps. */
  hotswap_status (*on_tick)(hotswap_instance* instance, uint64_t tick_number, hotswap_error* err);
  hotswap_status (*on_timer)(hotswap_instance* instance, hotswap_timer_id id, uint64_t tag,
                             hotswap_error* err);

  /* Runs the named task (a release task, an appup `apply`, or `hotswap task`).
   * An appup `apply` runs on a staged copy of the live instance (a fresh
   * instance given the live one's export_state through import_state): the
   * live instance is untouched unless the upgrade commits, so a task that is
   * part of an upgrade needs export_state/import_state to cover what it changes.
   * args_json is a JSON value; the task may append a JSON result to `out`.
   * HOTSWAP_UNSUPPORTED for an unknown task name. */
  hotswap_status (*run_task)(hotswap_instance* instance, const char* name, const char* args_json,
                             hotswap_buffer* out, hotswap_error* err);

  /* The module's runtime-config section changed on reload (no code swap). */
  hotswap_status (*on_config_change)(hotswap_instance* instance, const char* config_json,
                                     hotswap_error* err);

  /* The host is stopping gracefully; sends made here are still delivered. */
  hotswap_status (*on_stop)(hotswap_instance* instance, hotswap_error* err);

  /* --- Appended after ABI 1's first layout: state adoption (see "The adoption
   * rule" above). A host reads these only when struct_size covers them; a
   * module built before they existed is swapped by export/import. --- */

  /* Identifies the layout of the state object release_state hands out; 0: the
   * module does not opt in. Adoption needs both versions' fingerprints equal. */
  uint64_t state_fingerprint;

  /* Hands the instance's whole state object out as an opaque pointer and
   * leaves the instance empty: afterwards it receives no event and is either
   * destroyed (it must then free nothing of that state) or given the same
   * pointer back through adopt_state (a rollback). Never fails; NULL only when
   * the instance holds no state (it already gave it away). */
  void* (*release_state)(hotswap_instance* instance);

  /* Takes ownership of args->state, which release_state of another instance
   * of this module (same state_fingerprint) returned, in place of the
   * instance's own (fresh) state. Must not change the state's content: if the
   * upgrade rolls back, the instance that released it takes it back and must
   * find it as it left it. On failure the instance does not take ownership
   * (the host gives the pointer back to the instance that released it). */
  hotswap_status (*adopt_state)(hotswap_instance* instance, const hotswap_adopt_state_args* args,
                                hotswap_error* err);

  /* --- Appended: live rehearsal's self-check. A host reads it only when
   * HOTSWAP_DESCRIPTOR_HAS(d, self_check); NULL: the module has none. --- */

  /* Checks the instance's own invariants after an upgrade or downgrade moved
   * its state in. The host calls it in a rehearsal (a forked copy of the host,
   * serving no traffic), after the plan committed and the old code was
   * unloaded, so it also reads every part of the state: a pointer into the
   * unloaded library faults there, never in the live process. HOTSWAP_OK, or
   * an error whose message says which invariant broke: the upgrade is then
   * refused. Must not change the state. Host functions work as in any other
   * callback, but what it sends or arms reaches no one. */
  hotswap_status (*self_check)(hotswap_instance* instance, hotswap_error* err);
} hotswap_module_descriptor;

/* Nonzero when the descriptor `d` (a const hotswap_module_descriptor*) has
 * field `field`: the module's struct_size covers it. A host reads an appended
 * field only after checking it (an older module's descriptor ends earlier). */
#define HOTSWAP_DESCRIPTOR_HAS(d, field) \
  ((d) != NULL && (size_t)(d)->struct_size >= offsetof(hotswap_module_descriptor, field) + sizeof((d)->field))

/* The entry point every module exports. */
typedef const hotswap_module_descriptor* (*hotswap_entry_fn)(void);

/* ---------------------------------------------------------------------------
 * The layout of ABI version 1, frozen. The host and every module compiled
 * against this header check it at compile time, so a build that would change
 * it (-fpack-struct, a #pragma pack around the #include, -fshort-enums) fails
 * to compile instead of corrupting calls at run time. Checked for LP64
 * targets (x86_64, aarch64 Linux) and compilers with static assertions
 * (C11, C++11); older C compilers skip the check rather than fail.
 * Fields are only appended: these offsets never change.
 * ------------------------------------------------------------------------- */
#if defined(__LP64__) || defined(_LP64)
#if defined(__cplusplus) && __cplusplus >= 201103L
#define HOTSWAP_LAYOUT_CHECK_(cond, what) static_assert(cond, what)
#elif !defined(__cplusplus) && defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define HOTSWAP_LAYOUT_CHECK_(cond, what) _Static_assert(cond, what)
#endif
#endif

#ifdef HOTSWAP_LAYOUT_CHECK_
#define HOTSWAP_OFFSET_CHECK_(type, field, offset) \
  HOTSWAP_LAYOUT_CHECK_(offsetof(type, field) == (offset), "hotswap ABI 1 layout: " #type "." #field " moved")
HOTSWAP_LAYOUT_CHECK_(sizeof(hotswap_status) == 4, "hotswap ABI 1 layout: enums are 4 bytes (no -fshort-enums)");
HOTSWAP_LAYOUT_CHECK_(sizeof(hotswap_log_level) == 4, "hotswap ABI 1 layout: enums are 4 bytes (no -fshort-enums)");
HOTSWAP_LAYOUT_CHECK_(sizeof(hotswap_disconnect_reason) == 4,
                      "hotswap ABI 1 layout: enums are 4 bytes (no -fshort-enums)");
HOTSWAP_OFFSET_CHECK_(hotswap_error, message, 0);
HOTSWAP_OFFSET_CHECK_(hotswap_error, capacity, 8);
HOTSWAP_OFFSET_CHECK_(hotswap_bytes, data, 0);
HOTSWAP_OFFSET_CHECK_(hotswap_bytes, size, 8);
HOTSWAP_OFFSET_CHECK_(hotswap_host_api, abi_version, 0);
HOTSWAP_OFFSET_CHECK_(hotswap_host_api, struct_size, 4);
HOTSWAP_OFFSET_CHECK_(hotswap_host_api, log, 8);
HOTSWAP_OFFSET_CHECK_(hotswap_host_api, buffer_append, 16);
HOTSWAP_OFFSET_CHECK_(hotswap_host_api, send, 24);
HOTSWAP_OFFSET_CHECK_(hotswap_host_api, broadcast, 32);
HOTSWAP_OFFSET_CHECK_(hotswap_host_api, close, 40);
HOTSWAP_OFFSET_CHECK_(hotswap_host_api, timer_start, 48);
HOTSWAP_OFFSET_CHECK_(hotswap_host_api, timer_cancel, 56);
HOTSWAP_OFFSET_CHECK_(hotswap_host_api, monotonic_ms, 64);
/* Appended host functions (connection listing and broadcast). */
HOTSWAP_OFFSET_CHECK_(hotswap_host_api, broadcast_all, 72);
HOTSWAP_OFFSET_CHECK_(hotswap_host_api, list_connections, 80);
HOTSWAP_OFFSET_CHECK_(hotswap_conn_entry, id, 0);
HOTSWAP_OFFSET_CHECK_(hotswap_conn_entry, listener, 8);
HOTSWAP_OFFSET_CHECK_(hotswap_create_args, struct_size, 0);
HOTSWAP_OFFSET_CHECK_(hotswap_create_args, host, 8);
HOTSWAP_OFFSET_CHECK_(hotswap_create_args, ctx, 16);
HOTSWAP_OFFSET_CHECK_(hotswap_create_args, config_json, 24);
HOTSWAP_OFFSET_CHECK_(hotswap_migrate_up_args, struct_size, 0);
HOTSWAP_OFFSET_CHECK_(hotswap_migrate_up_args, from_version, 8);
HOTSWAP_OFFSET_CHECK_(hotswap_migrate_up_args, from_schema, 16);
HOTSWAP_OFFSET_CHECK_(hotswap_migrate_up_args, state, 24);
HOTSWAP_OFFSET_CHECK_(hotswap_migrate_up_args, extra_json, 40);
HOTSWAP_OFFSET_CHECK_(hotswap_migrate_down_args, struct_size, 0);
HOTSWAP_OFFSET_CHECK_(hotswap_migrate_down_args, to_version, 8);
HOTSWAP_OFFSET_CHECK_(hotswap_migrate_down_args, to_schema, 16);
HOTSWAP_OFFSET_CHECK_(hotswap_migrate_down_args, extra_json, 24);
HOTSWAP_OFFSET_CHECK_(hotswap_migrate_down_args, out, 32);
HOTSWAP_OFFSET_CHECK_(hotswap_conn_info, struct_size, 0);
HOTSWAP_OFFSET_CHECK_(hotswap_conn_info, listener, 8);
HOTSWAP_OFFSET_CHECK_(hotswap_conn_info, peer_address, 16);
HOTSWAP_OFFSET_CHECK_(hotswap_module_descriptor, abi_version, 0);
HOTSWAP_OFFSET_CHECK_(hotswap_module_descriptor, struct_size, 4);
HOTSWAP_OFFSET_CHECK_(hotswap_module_descriptor, name, 8);
HOTSWAP_OFFSET_CHECK_(hotswap_module_descriptor, version, 16);
HOTSWAP_OFFSET_CHECK_(hotswap_module_descriptor, state_schema, 24);
HOTSWAP_OFFSET_CHECK_(hotswap_module_descriptor, create, 32);
HOTSWAP_OFFSET_CHECK_(hotswap_module_descriptor, destroy, 40);
HOTSWAP_OFFSET_CHECK_(hotswap_module_descriptor, export_state, 48);
HOTSWAP_OFFSET_CHECK_(hotswap_module_descriptor, import_state, 56);
HOTSWAP_OFFSET_CHECK_(hotswap_module_descriptor, migrate_up, 64);
HOTSWAP_OFFSET_CHECK_(hotswap_module_descriptor, migrate_down, 72);
HOTSWAP_OFFSET_CHECK_(hotswap_module_descriptor, on_connect, 80);
HOTSWAP_OFFSET_CHECK_(hotswap_module_descriptor, on_message, 88);
HOTSWAP_OFFSET_CHECK_(hotswap_module_descriptor, on_disconnect, 96);
HOTSWAP_OFFSET_CHECK_(hotswap_module_descriptor, on_tick, 104);
HOTSWAP_OFFSET_CHECK_(hotswap_module_descriptor, on_timer, 112);
HOTSWAP_OFFSET_CHECK_(hotswap_module_descriptor, run_task, 120);
HOTSWAP_OFFSET_CHECK_(hotswap_module_descriptor, on_config_change, 128);
HOTSWAP_OFFSET_CHECK_(hotswap_module_descriptor, on_stop, 136);
/* Appended fields (state adoption). */
HOTSWAP_OFFSET_CHECK_(hotswap_module_descriptor, state_fingerprint, 144);
HOTSWAP_OFFSET_CHECK_(hotswap_module_descriptor, release_state, 152);
HOTSWAP_OFFSET_CHECK_(hotswap_module_descriptor, adopt_state, 160);
/* Appended field (live rehearsal). */
HOTSWAP_OFFSET_CHECK_(hotswap_module_descriptor, self_check, 168);
HOTSWAP_OFFSET_CHECK_(hotswap_address_range, begin, 0);
HOTSWAP_OFFSET_CHECK_(hotswap_address_range, end, 8);
HOTSWAP_OFFSET_CHECK_(hotswap_adopt_state_args, struct_size, 0);
HOTSWAP_OFFSET_CHECK_(hotswap_adopt_state_args, from_version, 8);
HOTSWAP_OFFSET_CHECK_(hotswap_adopt_state_args, from_schema, 16);
HOTSWAP_OFFSET_CHECK_(hotswap_adopt_state_args, from_fingerprint, 24);
HOTSWAP_OFFSET_CHECK_(hotswap_adopt_state_args, state, 32);
HOTSWAP_OFFSET_CHECK_(hotswap_adopt_state_args, old_code, 40);
HOTSWAP_OFFSET_CHECK_(hotswap_adopt_state_args, old_code_count, 48);
#undef HOTSWAP_OFFSET_CHECK_
#undef HOTSWAP_LAYOUT_CHECK_
#endif

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* HOTSWAP_MODULE_H */
