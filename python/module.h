/*
 * What the two halves of fifolock._fifolock share: the module state, the
 * mode entries, and the helpers for exceptions and predicates.
 * fifolock_module.c is the asyncio lock (FifoLock) and the module itself;
 * thread_lock.c is the thread lock (ThreadFifoLock). Internal to the
 * extension (built with hidden visibility), never API.
 */
#ifndef FIFOLOCK_PY_MODULE_H
#define FIFOLOCK_PY_MODULE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

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
};

/*
 * The holds mapping of either lock (fifolock.Holds, fifolock.ThreadHolds):
 * one set of mapping methods (fifolock_module.c) over what each lock
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

/* The pending exception as one object (normalised, with traceback). */
PyObject *take_exception(void);
/* Makes `exc` (stolen) the pending exception. */
void restore_exception(PyObject *exc);
/* Reports `exc` (stolen; NULL: nothing) through sys.unraisablehook. */
void report_unraisable(PyObject *exc, PyObject *where);
/* Sets the exception for an unexpected engine error code. */
void set_engine_error(int rc);
/* The module state of one of our types (NULL with an exception). */
modstate *state_of_type(PyTypeObject *type);
/* A new entry for a class whose predicate is Python code (TypeError if it
   has none); its `own` mode is the asyncio lock's. */
EntryObject *entry_new_python(modstate *st, PyObject *cls);
/* Binds a plain-method predicate to an instance of its class: 0 or -1. */
int entry_bind(modstate *st, EntryObject *e);
/* -1 with TypeError if `r` is an awaitable or generator, not an answer. */
int refuse_awaitable(EntryObject *e, PyObject *r);

/* thread_lock.c: makes the thread lock's types (0, or -1 with an exception). */
int thread_lock_init(PyObject *module, modstate *st);
/* os.register_at_fork hooks (module functions). */
PyObject *thread_lock_fork_before(PyObject *module, PyObject *unused);
PyObject *thread_lock_fork_parent(PyObject *module, PyObject *unused);
PyObject *thread_lock_fork_child(PyObject *module, PyObject *unused);

/* process_lock.c: makes fifolock._ShmLock (0, or -1 with an exception). */
int process_lock_init(PyObject *module, modstate *st);
/* etcd_lock.c: makes fifolock._EtcdSession and LockLostError (0, or -1). */
int etcd_lock_init(PyObject *module, modstate *st);

#endif
