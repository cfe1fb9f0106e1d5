/* A module written against the C ABI alone (no C++ layer), used for the
 * deliberately broken variants: compile definitions pick the defect.
 *   BROKEN_MIGRATE_ERROR  migrate_up returns HOTSWAP_ERROR with a message
 *   DESCRIPTOR_ABI=N      claims module ABI version N (in its descriptor and its ABI tag)
 *   NO_ABI_TAG            exports no ABI tag, as a module built before tags existed
 *   DESCRIPTOR_SHORT      claims a descriptor smaller than ABI 1 requires
 *   DESCRIPTOR_NEWER      built as against a newer header: fields appended after on_stop
 *   NEEDS_MISSING_SYMBOL  calls a function no library defines
 */
#include <hotswap/module.h>

#include <stdio.h>
#include <stdlib.h>

#ifndef DESCRIPTOR_ABI
#define DESCRIPTOR_ABI HOTSWAP_ABI_VERSION
#endif

#ifndef NO_ABI_TAG
/* HOTSWAP_DEFINE_ABI_TAG() with the claimed version. */
HOTSWAP_EXPORT HOTSWAP_USED_ const uint32_t hotswap_module_abi = DESCRIPTOR_ABI;
#endif

#ifdef NEEDS_MISSING_SYMBOL
extern int hotswap_test_symbol_nobody_defines(void);
#endif

struct hotswap_instance {
  int unused;
};

static hotswap_instance* create(const hotswap_create_args* args, hotswap_error* err) {
  (void)args;
  (void)err;
#ifdef NEEDS_MISSING_SYMBOL
  if (hotswap_test_symbol_nobody_defines() < 0) return NULL;
#endif
  return (hotswap_instance*)calloc(1, sizeof(hotswap_instance));
}

static void destroy(hotswap_instance* instance) { free(instance); }

static hotswap_status migrate_up(hotswap_instance* instance, const hotswap_migrate_up_args* args,
                                 hotswap_error* err) {
  (void)instance;
#ifdef BROKEN_MIGRATE_ERROR
  snprintf(err->message, err->capacity, "refusing to migrate from %s: test module always fails", args->from_version);
  return HOTSWAP_ERROR;
#else
  (void)args;
  (void)err;
  return HOTSWAP_OK;
#endif
}

#if defined(DESCRIPTOR_SHORT)
#define DESCRIPTOR_SIZE 16
#elif defined(DESCRIPTOR_NEWER)
/* What a newer module.h would give: ABI 1's descriptor followed by fields a
 * host built against ABI 1 does not know, which it must ignore. */
typedef struct newer_descriptor {
  hotswap_module_descriptor v1;
  hotswap_status (*on_future_event)(hotswap_instance* instance, hotswap_error* err);
  uint64_t future_flags;
} newer_descriptor;
#define DESCRIPTOR_SIZE sizeof(newer_descriptor)
#else
#define DESCRIPTOR_SIZE sizeof(hotswap_module_descriptor)
#endif

#define V1_DESCRIPTOR                                                                              \
  {                                                                                                \
    DESCRIPTOR_ABI, DESCRIPTOR_SIZE, HOTSWAP_MODULE_NAME, HOTSWAP_MODULE_VERSION, 2 /* schema */,  \
        create, destroy, NULL, NULL, migrate_up, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
        0 /* state_fingerprint: no adoption */, NULL, NULL, NULL /* self_check */                     \
  }

#ifdef DESCRIPTOR_NEWER
static hotswap_status on_future_event(hotswap_instance* instance, hotswap_error* err) {
  (void)instance;
  (void)err;
  abort(); /* no ABI 1 host may call it */
}

static const newer_descriptor descriptor = {V1_DESCRIPTOR, on_future_event, 1};

HOTSWAP_EXPORT const hotswap_module_descriptor* hotswap_module_entry(void) { return &descriptor.v1; }
#else
static const hotswap_module_descriptor descriptor = V1_DESCRIPTOR;

HOTSWAP_EXPORT const hotswap_module_descriptor* hotswap_module_entry(void) { return &descriptor; }
#endif
