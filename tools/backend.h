/*
 * The command line's backends: where the lock lives. One file each
 * (backend_shm.c: a lock file on this machine; backend_etcd.c: a lock on an
 * etcd cluster, built only when the etcd library is). The main program
 * (fifolock.c) parses the command line, asks a backend for the lock, runs
 * the command and gives the lock back.
 */
#ifndef FIFOLOCK_TOOL_BACKEND_H
#define FIFOLOCK_TOOL_BACKEND_H

#include "fifolock.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/* What the command line says beyond the lock and its mode (etcd only). */
struct tool_options {
    const char *endpoints; /* --etcd */
    const char *cacert, *cert, *key; /* --cacert, --cert, --key */
    const char *user, *password;     /* --user, FIFOLOCK_ETCD_PASSWORD */
    int ttl;                         /* --ttl; 0: the library's default */
    size_t capacity;                 /* --capacity (lock files); 0: the default */
    unsigned file_mode;              /* --file-mode (lock files); 0: 0666 & ~umask */
};

struct backend {
    const char *name;
    /*
     * Parses MODE as the command line spells it into *mode (a ready-made
     * mode, or `storage` filled for a semaphore). Returns 0 or EINVAL.
     */
    int (*parse_mode)(const char *text, fifolock_mode *storage, const fifolock_mode **mode);
    /*
     * Opens `lock` (a file path for shm, a name for etcd) for use with
     * `mode`, and takes it, giving up at `deadline` (NULL: wait for ever; a
     * deadline already passed: only if it can be held at once). Returns 0,
     * EOWNERDEAD (held; a previous holder died: `dead` then describes who, as
     * text "PID:MODE ..."), ETIMEDOUT, EINTR (see interrupt), or another errno with a message in
     * `err`. *token grows with the order of grants.
     */
    int (*acquire)(void **state, const struct tool_options *opt, const char *lock,
                   const fifolock_mode *mode, const struct timespec *deadline,
                   uint64_t *token, char *dead, size_t dead_size, char *err, size_t err_size);
    /*
     * Ends a wait of `acquire` that runs now, or the next one: it then
     * withdraws its request and returns EINTR. Called from a signal handler
     * (SIGINT, SIGTERM, SIGHUP while the lock is awaited), on any thread:
     * async-signal-safe. NULL: the backend's waits cannot be interrupted,
     * and those signals keep their default action.
     */
    void (*interrupt)(void);
    /*
     * The command now runs as `pid`: a backend that can lose the lock while
     * it runs sends it SIGTERM then (at once if already lost). May be NULL.
     */
    void (*started)(void *state, pid_t pid);
    /*
     * After the command ended: 0 if the lock was held all along, else
     * nonzero with the reason in `why`. May be NULL (never lost).
     */
    int (*lost)(void *state, char *why, size_t why_size);
    /* Gives the lock back and closes it. Returns 0 or an errno, with a
     * message in `err`. */
    int (*release)(void *state, const fifolock_mode *mode, char *err, size_t err_size);
    /*
     * How the command keeps the lock if this program dies first. Non-NULL:
     * returns a new descriptor (not close-on-exec) that keeps the hold alive
     * while open, or -1 with a message in `err`; the command inherits it, so
     * the hold lasts until both this program and the command are gone, as
     * with flock(1). NULL (a lock this program alone can keep, e.g. by an
     * etcd lease it keeps alive): the command is killed (SIGKILL) when this
     * program dies, before the lock can pass to anyone else.
     */
    int (*keepalive_fd)(void *state, char *err, size_t err_size);
    /*
     * The command was told that a holder died (acquire returned EOWNERDEAD)
     * and exited 0 holding a mode that may write: it repaired what the dead
     * left, and later holders are no longer told. NULL: nothing to declare.
     */
    void (*repaired)(void *state);
};

extern const struct backend fifolock_tool_shm_backend;
#ifdef FIFOLOCK_TOOL_ETCD
extern const struct backend fifolock_tool_etcd_backend;
#endif

#endif
