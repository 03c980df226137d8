/*
 * Python modes beyond one process: what the shared-memory lock
 * (process_lock.c) and the etcd lock (etcd_lock.c) both need. Such a lock
 * knows its modes by (name, limit), fixed when its handle or session is
 * opened, and asks their predicates inside the library, under its internal
 * lock, in whichever thread of this process changes the queue.
 *
 * A mode class becomes a cross_mode:
 *   - a ready-made class (Mutex, Read, ..., Semaphore(n)) is the engine's C
 *     mode itself, which every process knows by name;
 *   - a class of the user's own must declare `name` (a str) and may declare
 *     `limit` (an int, default 0); its C mode carries them, and its
 *     predicate is cross_is_compatible(), which takes the GIL and calls the
 *     class's is_compatible(holds) with a collections.defaultdict(int) of
 *     the holds the library shows it (one count per class; an entry of a
 *     mode this process does not know is not in it).
 * A predicate that raises is reported through sys.unraisablehook and
 * answers "no": never a second holder by mistake.
 *
 * Lock order: the library's internal lock, then the GIL. Every call into
 * the library is made with the GIL released, so that no thread holds the
 * GIL while it waits for the internal lock (see thread_lock.c).
 */
#ifndef FIFOLOCK_PY_CROSS_MODE_H
#define FIFOLOCK_PY_CROSS_MODE_H

#include "front_ends.h"

/* Longest name a mode may cross with, its NUL included. */
#define CROSS_NAME_MAX 64

struct cross_table;

struct cross_mode {
    fifolock_mode own;           /* a user mode: trampoline, name, limit */
    const fifolock_mode *mode;   /* what the library gets: &own or a C mode */
    EntryObject *entry;          /* class and predicate (strong reference) */
    struct cross_table *table;   /* the table it is in */
    char name[CROSS_NAME_MAX];
};

/* The modes of one lock or session; the structs never move. */
struct cross_table {
    modstate *st;
    struct cross_mode **modes;
    size_t n, cap;
};

/* An empty table of the module `st`. */
void cross_table_init(struct cross_table *t, modstate *st);
/* Frees every mode; the library must no longer use them. GIL held. */
void cross_table_clear(struct cross_table *t);
int cross_table_traverse(struct cross_table *t, visitproc visit, void *arg);
/*
 * The cross_mode of class `cls` in `t`, NULL if it has none yet (no error).
 */
struct cross_mode *cross_table_find(struct cross_table *t, PyObject *cls);
/*
 * The cross_mode of class `cls`, added to `t` if new (*added set to 1).
 * `name_max`: the longest name the library takes, its NUL included.
 * NULL with TypeError (not a mode class, no `name` on a user mode) or
 * ValueError (an empty or too long name, a bad limit).
 */
struct cross_mode *cross_table_get(struct cross_table *t, PyObject *cls, size_t name_max,
                                   int *added);
/* The class of C mode `mode` as this table knows it (borrowed), or NULL. */
PyObject *cross_table_class_of(struct cross_table *t, const fifolock_mode *mode);
/* Frees the modes added after the first `n` (the library never saw them). */
void cross_table_truncate(struct cross_table *t, size_t n);
/* The C modes of the table, in order, into `out` (room for t->n). */
void cross_table_modes(struct cross_table *t, const fifolock_mode **out);


#endif
