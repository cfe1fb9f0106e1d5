/* A module written against the C ABI alone (no C++ layer), used for the
 * deliberately broken variants: compile definitions pick the defect.
 *   BROKEN_MIGRATE_ERROR  migrate_up returns HOTSWAP_ERROR with a message
 *   DESCRIPTOR_ABI=N      claims module ABI version N
 *   DESCRIPTOR_SHORT      claims a descriptor smaller than ABI 1 requires
 *   NEEDS_MISSING_SYMBOL  calls a function no library defines
 */
#include <hotswap/module.h>

#include <stdio.h>
#include <stdlib.h>

#ifndef DESCRIPTOR_ABI
#define DESCRIPTOR_ABI HOTSWAP_ABI_VERSION
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

static const hotswap_module_descriptor descriptor = {
    DESCRIPTOR_ABI,
#ifdef DESCRIPTOR_SHORT
    16,
#else
    sizeof(hotswap_module_descriptor),
#endif
    HOTSWAP_MODULE_NAME, HOTSWAP_MODULE_VERSION,
    2, /* state schema */
    create, destroy, NULL, NULL, migrate_up, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};

HOTSWAP_EXPORT const hotswap_module_descriptor* hotswap_module_entry(void) { return &descriptor; }
