/* A valid shared object that is not a hotswap module: no entry symbol. */
__attribute__((visibility("default"))) int some_other_function(void) { return 42; }
