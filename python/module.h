/*
 * What every file of fifolock._fifolock shares: the module state, the mode
 * entries, the holds mapping, and the helpers for exceptions, predicates'
 * answers and lock()'s arguments, all defined in shared.c. The files:
 *
 *   fifolock_module.c  the module: init, the ready-made modes' registration,
 *                      module functions; it registers each front end
 *                      (front_ends.h)
 *   async_lock.c       FifoLock, the asyncio lock, on the engine (fifolock.h)
 *   thread_lock.c      ThreadFifoLock, the thread lock, on fifolock_mt.h
 *   shared.c           this header's functions; it includes no front end
 *
 * Arrows run one way: fifolock_module.c -> the front ends -> shared.c.
 * Only the library's installed headers (include/) are used. Internal to the
 * extension (built with hidden visibility), never API.
 */
#ifndef FIFOLOCK_PY_MODULE_H
#define FIFOLOCK_PY_MODULE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdbool.h>
#include <stddef.h>

#include "fifolock.h"

#define CONTAINER_OF(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

typedef struct EntryObject EntryObject;
typedef struct TLockObject TLockObject;

typedef struct {
    PyTypeObject *lock_type;
    PyTypeObject *context_type;
    PyTypeObject *acquire_type;
    PyTypeObject *entry_type;
    PyTypeObject *holds_type;
    PyTypeObject *done_type;
    PyTypeObject *tlock_type;    /* ThreadFifoLock */
    PyTypeObject *tcontext_type; /* ThreadLockContext */
    PyTypeObject *tholds_type;   /* ThreadHolds */
    PyObject *done;              /* the awaitable __aexit__ returns */
    PyObject *builtin;           /* dict: ready-made mode class -> ModeEntry */
    PyObject *get_running_loop;  /* asyncio.get_running_loop */
    PyObject *defaultdict;       /* collections.defaultdict */
    PyObject *invalid_state;     /* asyncio.InvalidStateError */
    PyObject *base_event_loop;   /* asyncio.BaseEventLoop */
    PyObject *future_type;       /* asyncio.Future */
    PyObject *kw_loop;           /* ("loop",): the keyword names of Future(loop=) */
    PyObject *str_is_compatible;
    PyObject *str_create_future;
    PyObject *str_set_result;
    PyObject *str_blocking;      /* "_asyncio_future_blocking" */
    PyObject *str_get_loop;
    PyObject *str_is_closed;
    PyObject *str_done;
    PyObject *str_call_soon_threadsafe;
    PyObject *str_thread_id;     /* "_thread_id" of BaseEventLoop */
    PyObject *wake;              /* _wake, for wake_from_elsewhere() */
    PyObject *deadlock_error;    /* DeadlockError: a second conversion would wait */
    TLockObject *tlocks;         /* every ThreadFifoLock alive (fork hooks) */
    TLockObject **forking;       /* those whose internal lock a fork holds */
    Py_ssize_t nforking;
} modstate;

enum { KIND_C, KIND_CALL, KIND_PLAIN };

/*
 * One mode class as a lock sees it. Ready-made classes have one entry for
 * every lock (modstate.builtin), whose `mode` is the engine's C mode; any
 * other class gets an entry per lock, whose predicate is Python code.
 */
struct EntryObject {
    PyObject_HEAD
    fifolock_mode own;         /* user and semaphore modes: the engine's key */
    const fifolock_mode *mode; /* what the engine sees: &own or a C mode */
    PyObject *cls;             /* the mode class */
    PyObject *func;            /* Python predicate, called with the holds view */
    int kind;                  /* KIND_*: KIND_PLAIN binds func on first use */
    void *lock;                /* a Python mode's: the lock whose `modes` keeps it
                                  (borrowed), the only one that asks `own`; else NULL */
};

/* The predicate of a fifolock_mode. */
typedef bool entry_predicate(const fifolock_mode *self, const fifolock_holds *holds);

/*
 * The holds mapping of every lock (fifolock.Holds, fifolock.ThreadHolds):
 * one set of mapping methods (shared.c) over what each lock
 * supplies. A view reads its lock live; the lock clears `lock` when it goes,
 * and the view then reads as empty.
 */
typedef struct {
    const char *name;                               /* for repr(): "fifolock.Holds" */
    PyObject *(*dict)(void *lock);                  /* a new {class: holders} of now */
    Py_ssize_t (*count)(void *lock, PyObject *cls); /* holders of cls now; -1: error */
    Py_ssize_t (*length)(void *lock);               /* classes held now; -1: error */
} holds_source;

typedef struct {
    PyObject_HEAD
    void *lock; /* borrowed; NULL once the lock has gone */
    const holds_source *src;
} HoldsView;

/* A new view of `lock` (new reference), of a type made by holds_view_type(). */
PyObject *holds_view_new(PyTypeObject *type, void *lock, const holds_source *src);
/* The lock is going: the view reads as empty from now on. */
void holds_view_detach(PyObject *view);
/* A holds type named `name`, documented `doc`, in `module` (NULL: error). */
PyTypeObject *holds_view_type(PyObject *module, const char *name, const char *doc);
/* `dict` (stolen) as a new collections.defaultdict(int). */
PyObject *holds_defaultdict(modstate *st, PyObject *dict);

/* ---- exceptions and module state ---- */

/* The pending exception as one object (normalised, with traceback). */
PyObject *take_exception(void);
/* Makes `exc` (stolen) the pending exception, keeping its traceback. */
void restore_exception(PyObject *exc);
/* Reports `exc` (stolen; NULL: nothing) through sys.unraisablehook. */
void report_unraisable(PyObject *exc, PyObject *where);
/* Sets the exception for an unexpected engine error code. */
void set_engine_error(int rc);
/* The module's definition, once, from PyInit__fifolock(): state_of_type()
   knows our types by it. */
void module_def_set(PyModuleDef *def);
/* The module state of one of our types or a subclass (NULL with an exception). */
modstate *state_of_type(PyTypeObject *type);

/* ---- mode entries ---- */

/* The ModeEntry type, in `module` (NULL: error). */
PyTypeObject *entry_type_new(PyObject *module);
/* A new entry for `cls` with a C predicate to set (`own`, `mode`). */
EntryObject *entry_alloc(modstate *st, PyObject *cls);
/* A new entry for a class whose predicate is Python code (TypeError if it
   has none); `is_compatible` is the C trampoline its `own` mode gets (NULL
   for a lock that asks per request, as the thread lock's tickets do). */
EntryObject *entry_new_python(modstate *st, PyObject *cls, entry_predicate *is_compatible);
/* The entry of `cls`: a ready-made one, else the lock's own in `modes`
   (may be NULL). Borrowed; NULL if none (check PyErr_Occurred()). */
EntryObject *entry_find(modstate *st, PyObject *modes, PyObject *cls);
/* entry_new_python() for `lock`, kept in its `modes` (new reference);
   RuntimeError if the lock was cleared (`modes` NULL). */
EntryObject *entry_make(modstate *st, PyObject *modes, PyObject *cls,
                        entry_predicate *is_compatible, void *lock);
/* The ready-made entry whose engine mode is `mode` (a Semaphore(n)'s own,
   or one of st->builtin), borrowed; NULL if it is none of them. */
EntryObject *entry_of_ready_mode(modstate *st, const fifolock_mode *mode);
/* Binds a plain-method predicate to an instance of its class: 0 or -1. */
int entry_bind(modstate *st, EntryObject *e);
/* Asks the Python predicate of `e` about `view`: 1 yes, 0 no, or -1 with
   the exception (it raised, its answer was an awaitable or a generator, a
   TypeError, or its mode can no longer be used). May run any Python code. */
int entry_ask(EntryObject *e, PyObject *view);

/* ---- lock(mode, n=1, timeout=None) ---- */

/* n: an int >= 1, not a bool (NULL: 1). 0, or -1 with TypeError or
   ValueError, or OverflowError beyond what a lock counts (2**32 - 1). */
int parse_n(PyObject *obj, size_t *n);
/* timeout: a number >= 0 or None (also NULL: -1, none). 0, or -1 with
   TypeError or ValueError. */
int parse_timeout(PyObject *obj, double *timeout);
/* The deadline `timeout` seconds (>= 0) from now, on CLOCK_MONOTONIC, as
   every blocking front end takes it. */
void deadline_in(double timeout, struct timespec *deadline);

#endif
