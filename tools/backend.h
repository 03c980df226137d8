/*
 * The command line's backends: where the lock lives. One file each
 * (backend_shm.c: a lock file on this machine; an etcd backend can join
 * later in its own file, built only when its library is). The main program
 * (fifolock.c) parses the command line, asks a backend for the lock, runs
 * the command and gives the lock back.
 */
#ifndef FIFOLOCK_TOOL_BACKEND_H
#define FIFOLOCK_TOOL_BACKEND_H

#include "fifolock.h"

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct backend {
    const char *name;
    /*
     * Opens `lock` (a file path for shm) for use with `mode`, and takes it,
     * giving up at `deadline` (NULL: wait for ever). Returns 0, EOWNERDEAD
     * (held; a previous holder died: `dead` then describes who, as text
     * "PID:MODE ..."), ETIMEDOUT, or another errno with a message in `err`.
     * *token grows with the order of grants.
     */
    int (*acquire)(void **state, const char *lock, const fifolock_mode *mode,
                   const struct timespec *deadline, uint64_t *token, char *dead,
                   size_t dead_size, char *err, size_t err_size);
    /* Gives the lock back and closes it. Returns 0 or an errno. */
    int (*release)(void *state, const fifolock_mode *mode);
};

extern const struct backend fifolock_tool_shm_backend;

/* Every ready-made mode, for backends that tell other processes about them. */
extern const fifolock_mode *const fifolock_tool_builtin_modes[];
extern const size_t fifolock_tool_builtin_count;

#endif
