/*
 * The engine as the fuzz target builds it: src/engine.c with its realloc()
 * routed through fifolock_fuzz_realloc() (fuzz_engine.c), which fails when
 * an input asks, to reach the ENOMEM paths in any state.
 */
#define realloc fifolock_fuzz_realloc
#include "../../src/engine.c"
