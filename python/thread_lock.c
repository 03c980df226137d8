/*
 * fifolock.ThreadFifoLock: the thread lock of the C library (fifolock_mt,
 * src/mt.c) for Python threads. fifolock_mt queues, grants and parks
 * threads; this file only passes Python modes to it and keeps the rules
 * below. There is no second FIFO algorithm here.
 *
 * Objects
 *
 *   ThreadFifoLock     embeds a fifolock_mt. lock(Mode, n, timeout) returns
 *                      a ThreadLockContext: `with lock(Mode):`.
 *   ThreadLockContext  (lock, entry, n, timeout) and the holds taken by its
 *                      entries that have not exited yet.
 *   ThreadHolds        the `holds` passed to Python predicates: the
 *                      HoldsView of shared.c over tholds_dict() and
 *                      tholds_count().
 *   ticket             one request of a Python mode (below).
 *
 * Lock order: L (the internal lock of the fifolock_mt), then the GIL
 *
 *   A Python predicate runs inside fifolock_mt under L, in whichever thread
 *   made the engine call (its own acquire, or another thread's release or
 *   withdrawal), and needs the GIL: tpy_is_compatible() takes it with
 *   PyGILState_Ensure(). So a thread may wait for the GIL while it holds L.
 *   The converse must never happen: no thread waits for L while it holds
 *   the GIL. Every call into fifolock_mt that may take L is therefore made
 *   with the GIL released (Py_BEGIN_ALLOW_THREADS): acquire, release,
 *   waiting, and the snapshots of `holds` (which take L through
 *   fifolock_mt_inspect()). With that, a cycle would need a thread
 *   that holds the GIL and waits for L, and there is none: the thread under
 *   L that waits for the GIL gets it once its holder releases it, which it
 *   does within the switch interval or when it calls in here. The release
 *   in __exit__ and in the fast path count as "may take L" too: the fast
 *   path of fifolock_mt (F1/F2, one CAS) is not reachable on its own, and
 *   its fallback takes L. Two exceptions, each safe for its own reason:
 *   - dealloc of a lock: no other thread can use it (nobody has a reference),
 *     so nobody holds its L or waits for it.
 *   - the fork hooks: they take L with the GIL released, and hold it (and
 *     then the GIL) until the fork is done; no predicate can be running then
 *     (predicates run under L), so nobody under L wants the GIL.
 *   A predicate must not acquire or release the lock it is asked about (it
 *   holds that lock's L: RuntimeError, raised before L is wanted), and must
 *   not use another ThreadFifoLock either (two predicates doing that in
 *   opposite directions would hold one L each and wait for the other).
 *
 * Tickets: whose question raised?
 *
 *   The engine asks the head's predicate in whichever thread runs the grant
 *   loop, and an exception must reach the thread whose request was asked
 *   about, not the one that happened to release. So each request of a
 *   Python mode is its own engine mode: a `ticket`, allocated per request,
 *   whose fifolock_mode the engine counts and asks (tpy_is_compatible()
 *   finds the ticket, the entry and the lock from its arguments). A raise
 *   answers "yes" (as in the asyncio lock: the request leaves the queue in
 *   its turn and the ones behind go on) and is kept on the ticket; the
 *   questions left of a weighted request answer "yes" without calling
 *   Python. The requesting thread, once granted, finds the exception on its
 *   ticket, hands the holds back at once and raises it. `holds[Mode]` adds
 *   up the tickets of Mode, so a predicate sees one count per class, as in
 *   the asyncio lock. A ticket lives until its holds are released (or, if
 *   its context is dropped while holding, until the lock goes), so the
 *   engine never counts a mode that is gone. Ready-made modes need none:
 *   their C predicates never raise.
 *
 * Conversions
 *
 *   held.convert(To, timeout) is fifolock_mt_convert_interruptible() from
 *   the mode the context holds (its ticket, or a ready-made mode) to To (a
 *   new ticket, or a ready-made mode), GIL released as for an acquire; on
 *   success the context's one hold is To (`cur`) and its exit releases that.
 *   A raise of To's predicate can't answer "yes" (that would switch, and
 *   switching back may be impossible): the ticket of a conversion answers
 *   "no" and keeps the exception, and the converting thread, asked before
 *   each sleep (interrupted(), as for a signal), withdraws the request and
 *   raises it, keeping the old mode. A context that converts, or holds a
 *   converted mode, can't be entered again, and one entered by more than
 *   one thread at once (or by one while another waits in it) can't convert.
 *
 * Interrupts
 *
 *   Waits use fifolock_mt_acquire_interruptible(): before each sleep (at
 *   most 50 ms) its hook takes the GIL and runs PyErr_CheckSignals(). If a
 *   signal handler raised (KeyboardInterrupt, or anything a handler
 *   raises), the request is withdrawn as at a timeout (EINTR) and the
 *   exception is raised; if the grant won that race, the holds are given
 *   back first. Either way the queue keeps no trace of it.
 *
 * fork()
 *
 *   The fork hooks (os.register_at_fork) take L of every lock before the
 *   fork and drop it after, in the parent and in the child
 *   (fifolock_mt_before_fork(), fifolock_mt_after_fork()): the child never
 *   inherits an L that a thread it does not have was holding, and every
 *   lock's queue and counts are whole. As with threading.Lock, what other
 *   threads held or waited for stays held or queued in the child (those
 *   threads do not exist there); what the forking thread held, it holds.
 */
#include "front_ends.h"

#include <structmember.h>

#include <errno.h>
#include <math.h>
#include <string.h>
#include <time.h>

#include "fifolock_mt.h"

struct ticket {
    fifolock_mode mode;  /* the engine's key for this one request */
    EntryObject *entry;  /* the class's entry (strong reference) */
    PyObject *exc;       /* its predicate raised (written under L and the GIL) */
    int convert;         /* the `to` of a conversion: a raise answers "no" */
    struct ticket *next; /* in its context's `held`, or the lock's `orphans` */
    TLockObject *lock;   /* whose engine counts it (borrowed: it outlives us) */
};

struct TLockObject {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    fifolock_mt mt;
    modstate *st;             /* the module outlives us: our type holds it */
    PyObject *modes;          /* dict: class -> EntryObject, this lock's Python modes */
    PyObject *view;           /* the ThreadHolds passed to predicates */
    struct ticket *orphans;   /* held by contexts that are gone */
    unsigned long pred_thread; /* the thread running a predicate under L ... */
    int in_pred;              /* ... while this is nonzero (both: GIL and L) */
    int fork_held;            /* the fork hooks hold L */
    TLockObject *next, *prev; /* in modstate.tlocks */
    PyObject *weakreflist;
};

typedef struct {
    PyObject_HEAD
    TLockObject *lock;
    EntryObject *entry;
    size_t n;
    double timeout;           /* seconds; < 0: none */
    struct ticket *held;      /* Python mode: one ticket per entry not yet exited */
    Py_ssize_t nheld;         /* ready-made mode: entries not yet exited */
    EntryObject *cur;         /* after convert(): the mode held now; else NULL */
    Py_ssize_t pending;       /* entries waiting in the engine (GIL released) */
    int converting;           /* a convert() of its hold waits (GIL released) */
} TContextObject;


static bool tpy_is_compatible(const fifolock_mode *mode, const fifolock_holds *holds);

/* ---- tickets -------------------------------------------------------------- */

static struct ticket *ticket_new(TLockObject *lk, EntryObject *e)
{
    struct ticket *t = PyMem_Malloc(sizeof *t);

    if (t == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    t->mode.is_compatible = tpy_is_compatible;
    t->mode.name = NULL;
    t->mode.limit = 0;
    t->entry = (EntryObject *)Py_NewRef(e);
    t->exc = NULL;
    t->convert = 0;
    t->next = NULL;
    t->lock = lk;
    return t;
}

/* With the GIL; the engine no longer counts or queues it. */
static void ticket_free(struct ticket *t)
{
    if (t == NULL)
        return;
    Py_CLEAR(t->entry);
    Py_CLEAR(t->exc);
    PyMem_Free(t);
}

/* ---- who is asking --------------------------------------------------------- */

/* Nonzero if this thread runs a predicate of `lk` now, so holds L: the
   engine may be read directly, and must not be entered (L is not reentrant). */
static int in_own_predicate(TLockObject *lk)
{
    return lk->in_pred && lk->pred_thread == PyThread_get_thread_ident();
}

static int check_not_in_predicate(TLockObject *lk)
{
    if (in_own_predicate(lk)) {
        PyErr_SetString(PyExc_RuntimeError,
                        "is_compatible() must not acquire or release the lock it is asked about");
        return -1;
    }
    return 0;
}

/* ---- reading the holds ------------------------------------------------------ */

/*
 * A copy of the holds. A ticket's mode is read only under L, while the
 * engine counts it (its memory goes once its holds are released, which
 * takes L): the copy keeps its entry instead, which the lock's `modes`
 * keeps alive as long as the lock.
 */
struct hold_list {
    const fifolock_mode **modes; /* NULL where entries[i] is set */
    EntryObject **entries;       /* the entry of a ticket, borrowed; else NULL */
    size_t *counts;
    size_t n;
};

static void hold_list_free(struct hold_list *l)
{
    PyMem_RawFree(l->modes);
    PyMem_RawFree(l->entries);
    PyMem_RawFree(l->counts);
    l->modes = NULL;
    l->entries = NULL;
    l->counts = NULL;
    l->n = 0;
}

/* Copies the holds of `engine`, read under L. Without the GIL: raw memory
   only. -1 if out of memory. */
static int hold_list_fill(const fifolock *engine, struct hold_list *l)
{
    const fifolock_holds *h = fifolock_holds_of(engine);
    size_t n = fifolock_holds_list(h, NULL, NULL, 0);

    l->n = 0;
    l->modes = NULL;
    l->entries = NULL;
    l->counts = NULL;
    if (n == 0)
        return 0;
    l->modes = PyMem_RawMalloc(n * sizeof *l->modes);
    l->entries = PyMem_RawMalloc(n * sizeof *l->entries);
    l->counts = PyMem_RawMalloc(n * sizeof *l->counts);
    if (l->modes == NULL || l->entries == NULL || l->counts == NULL) {
        hold_list_free(l);
        return -1;
    }
    l->n = fifolock_holds_list(h, l->modes, l->counts, n);
    for (size_t i = 0; i < l->n; i++) {
        l->entries[i] = NULL;
        if (l->modes[i]->is_compatible == tpy_is_compatible) {
            l->entries[i] = CONTAINER_OF(l->modes[i], struct ticket, mode)->entry;
            l->modes[i] = NULL;
        }
    }
    return 0;
}

struct hold_list_call {
    struct hold_list *l;
    int rc;
};

/* fifolock_mt_inspect()'s callback: under L. */
static void hold_list_inspect(const fifolock *engine, void *arg)
{
    struct hold_list_call *call = arg;

    call->rc = hold_list_fill(engine, call->l);
}

/*
 * The holds of `lk` now. Inside its own predicate this thread holds L and
 * reads them directly; anywhere else it takes L (fifolock_mt_inspect()),
 * with the GIL released (see the lock order at the top). 0, or -1 with
 * MemoryError.
 */
static int hold_list_get(TLockObject *lk, struct hold_list *l)
{
    struct hold_list_call call = { l, 0 };
    int rc;

    if (in_own_predicate(lk)) {
        rc = hold_list_fill(fifolock_mt_engine(&lk->mt), l);
    } else {
        Py_BEGIN_ALLOW_THREADS
        if (fifolock_mt_inspect(&lk->mt, hold_list_inspect, &call) != 0) {
            l->n = 0; /* a destroyed lock: nobody holds it */
            l->modes = NULL;
            l->entries = NULL;
            l->counts = NULL;
        }
        rc = call.rc;
        Py_END_ALLOW_THREADS
    }
    if (rc < 0)
        PyErr_NoMemory();
    return rc;
}

/* The class of the i-th hold of `l` (borrowed), NULL if unknown. */
static PyObject *class_of_hold(TLockObject *lk, const struct hold_list *l, size_t i)
{
    EntryObject *e = l->entries[i];

    if (e == NULL)
        e = entry_of_ready_mode(lk->st, l->modes[i]);
    return e != NULL ? e->cls : NULL;
}

/* {class: holders} now, one count per class (a class's tickets added up). */
static PyObject *tholds_dict(TLockObject *lk)
{
    struct hold_list l;
    PyObject *d = PyDict_New();

    if (d == NULL || lk == NULL)
        return d;
    if (hold_list_get(lk, &l) < 0) {
        Py_DECREF(d);
        return NULL;
    }
    for (size_t i = 0; i < l.n; i++) {
        PyObject *cls = class_of_hold(lk, &l, i), *old, *v;
        size_t count = l.counts[i];
        int rc;

        if (cls == NULL)
            continue;
        old = PyDict_GetItemWithError(d, cls);
        if (old == NULL && PyErr_Occurred()) {
            Py_CLEAR(d);
            break;
        }
        if (old != NULL)
            count += PyLong_AsSize_t(old);
        v = PyLong_FromSize_t(count);
        rc = v ? PyDict_SetItem(d, cls, v) : -1;
        Py_XDECREF(v);
        if (rc < 0) {
            Py_CLEAR(d);
            break;
        }
    }
    hold_list_free(&l);
    return d;
}

/* Holders of class `cls` on `lk` now; -1 on error. */
static Py_ssize_t tholds_count(TLockObject *lk, PyObject *cls)
{
    struct hold_list l;
    PyObject *e;
    size_t sum = 0;

    if (lk == NULL)
        return PyObject_Hash(cls) == -1 ? -1 : 0;
    e = PyDict_GetItemWithError(lk->st->builtin, cls);
    if (e == NULL && PyErr_Occurred())
        return -1;
    if (e == NULL && PyObject_Hash(cls) == -1)
        return -1; /* a key like any other */
    if (e != NULL && in_own_predicate(lk))
        return (Py_ssize_t)fifolock_held(fifolock_holds_of(fifolock_mt_engine(&lk->mt)),
                                         ((EntryObject *)e)->mode);
    if (hold_list_get(lk, &l) < 0)
        return -1;
    for (size_t i = 0; i < l.n; i++)
        if (e != NULL ? l.modes[i] == ((EntryObject *)e)->mode
                      : (l.entries[i] != NULL && l.entries[i]->cls == cls))
            sum += l.counts[i];
    hold_list_free(&l);
    return (Py_ssize_t)sum;
}

static PyObject *tholds_dict_of(void *lock)
{
    return tholds_dict(lock);
}

static Py_ssize_t tholds_count_of(void *lock, PyObject *cls)
{
    return tholds_count(lock, cls);
}

static const holds_source tlock_holds_source = {
    "fifolock.ThreadHolds", tholds_dict_of, tholds_count_of, NULL,
};

static const char tholds_doc[] =
    "The current holders of a ThreadFifoLock per mode, as passed to\n"
    "is_compatible(holds): holds[Mode] is 0 for a mode nobody holds.\n"
    "Read-only. Inside a predicate it reads the lock's counts as the\n"
    "predicate is asked; elsewhere each read is a snapshot.";

/* ---- the predicate trampoline and the interrupt hook ---------------------- */

/*
 * The engine's predicate for a request of a Python mode: runs under L, in
 * the thread of the engine call, which released the GIL and takes it here
 * (L, then the GIL: see the top). A ticket is asked only by the engine of
 * its own lock, so `holds` is that lock's (fifolock_mt_engine()'s).
 */
static bool tpy_is_compatible(const fifolock_mode *mode, const fifolock_holds *holds)
{
    struct ticket *t = CONTAINER_OF(mode, struct ticket, mode);
    TLockObject *lk = t->lock;
    EntryObject *e = t->entry;
    PyGILState_STATE g;
    PyObject *saved;
    unsigned long outer_thread;
    int ok, outer;

    (void)holds; /* Python predicates read them through lk->view */
    /* The rest of a weighted request whose question raised (t->exc is
       written only here, under L): it takes its holds and gives them back. */
    if (t->exc != NULL)
        return !t->convert;
    g = PyGILState_Ensure();
    /* This thread may be withdrawing its own request with an exception
       pending (an interrupt): keep it aside. */
    saved = PyErr_Occurred() ? take_exception() : NULL;
    outer = lk->in_pred;
    outer_thread = lk->pred_thread;
    lk->in_pred = 1;
    lk->pred_thread = PyThread_get_thread_ident();
    ok = entry_ask(e, lk->view);
    if (ok < 0) {
        t->exc = take_exception(); /* for the thread of this request */
        /* So that it leaves the queue in its turn; but "yes" would switch a
           conversion, and switching back may be impossible: "no" keeps it
           at the head, holding `from`, until its thread sees the exception
           (interrupted()) and withdraws it. */
        ok = !t->convert;
    }
    lk->in_pred = outer;
    lk->pred_thread = outer_thread;
    if (saved != NULL)
        restore_exception(saved);
    PyGILState_Release(g);
    return ok != 0;
}

/* Asked by a waiting thread before each sleep, under no lock, GIL released.
   `arg`: the ticket of the request (a conversion's `to`, or an acquire's),
   whose predicate may have raised, or NULL. */
static int interrupted(void *arg)
{
    PyGILState_STATE g = PyGILState_Ensure();
    struct ticket *t = arg;
    int r;

    r = (t != NULL && t->exc != NULL) || PyErr_Occurred() != NULL ||
        PyErr_CheckSignals() < 0;
    PyGILState_Release(g); /* the exception stays with this thread's state */
    return r;
}


/* ---- the context ------------------------------------------------------------ */

/* Gives back n holds of `mode`, GIL released (it may take L). */
static int release_holds(TLockObject *lk, const fifolock_mode *mode, size_t n)
{
    int rc;

    Py_BEGIN_ALLOW_THREADS
    rc = fifolock_mt_release_n(&lk->mt, mode, n);
    Py_END_ALLOW_THREADS
    return rc;
}

static PyObject *tcontext_enter(TContextObject *c, PyObject *unused)
{
    TLockObject *lk = c->lock;
    EntryObject *e = c->entry;
    struct ticket *t = NULL;
    struct ticket *asked = NULL; /* for interrupted() */
    const fifolock_mode *mode;
    struct timespec deadline;
    int rc;

    (void)unused;
    if (lk == NULL || e == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "this lock context was cleared");
        return NULL;
    }
    if (check_not_in_predicate(lk) < 0)
        return NULL;
    if (c->cur != NULL || c->converting) {
        PyErr_Format(PyExc_RuntimeError,
                     "%R holds a converted mode, or converts: it can't be entered again "
                     "before its exit; use a new lock(mode)",
                     c);
        return NULL;
    }
    if (e->kind == KIND_C) {
        mode = e->mode;
    } else {
        if (e->kind == KIND_PLAIN && e->func == NULL && entry_bind(lk->st, e) < 0)
            return NULL;
        t = ticket_new(lk, e);
        if (t == NULL)
            return NULL;
        mode = &t->mode;
        /* Its predicate may raise when asked, as it queues, whether it could
           ever fit: it is then withdrawn at its next look, not at its turn. */
        asked = t;
    }
    if (c->timeout >= 0)
        deadline_in(c->timeout, &deadline);
    c->pending++;
    Py_BEGIN_ALLOW_THREADS
    rc = fifolock_mt_acquire_interruptible(&lk->mt, mode, c->n,
                                           c->timeout >= 0 ? &deadline : NULL, interrupted,
                                           asked);
    Py_END_ALLOW_THREADS
    c->pending--;
    if (rc == 0 && ((t != NULL && t->exc != NULL) || PyErr_Occurred())) {
        /* Its predicate raised (then it was granted to leave the queue), or
           an interrupt lost the race to the grant: give the holds back. */
        PyObject *pending = PyErr_Occurred() ? take_exception() : NULL;
        (void)release_holds(lk, mode, c->n);
        if (t != NULL && t->exc != NULL) {
            Py_XDECREF(pending); /* the predicate's comes first; the signal's
                                    handler ran and raised already */
            pending = t->exc;
            t->exc = NULL;
        }
        ticket_free(t);
        restore_exception(pending);
        return NULL;
    }
    if (rc != 0) {
        if (t != NULL && t->exc != NULL) {
            /* Its predicate raised (asked whether it could ever fit): that
               comes first; a signal's handler ran and raised already. */
            PyErr_Clear();
            restore_exception(t->exc);
            t->exc = NULL;
            ticket_free(t);
            return NULL;
        }
        ticket_free(t);
        if (rc == EINTR && PyErr_Occurred())
            return NULL;
        if (rc == EDEADLK) {
            PyErr_Format(lk->st->deadlock_error,
                         "%zu of lock mode %R can never be granted: even a lock that nobody "
                         "holds refuses them, so it would wait for ever (and everybody "
                         "behind it)",
                         c->n, e->cls);
        } else if (rc == ETIMEDOUT) {
            PyObject *secs = PyFloat_FromDouble(c->timeout);
            if (secs != NULL)
                PyErr_Format(PyExc_TimeoutError,
                             "lock mode %R not granted within %R seconds", e->cls, secs);
            Py_XDECREF(secs);
        } else
            set_engine_error(rc);
        return NULL;
    }
    if (t != NULL) {
        t->next = c->held;
        c->held = t;
    } else {
        c->nheld++;
    }
    return Py_NewRef((PyObject *)c);
}

static PyObject *tcontext_exit(TContextObject *c, PyObject *const *args, Py_ssize_t nargs)
{
    TLockObject *lk = c->lock;
    struct ticket *t;
    int rc;

    (void)args;
    (void)nargs;
    if (lk == NULL || c->entry == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "this lock context was cleared");
        return NULL;
    }
    if (check_not_in_predicate(lk) < 0)
        return NULL;
    if (c->converting) {
        PyErr_Format(PyExc_RuntimeError, "release of lock mode %R while its conversion waits",
                     c->entry->cls);
        return NULL;
    }
    if (c->held == NULL && c->nheld == 0) {
        PyErr_Format(PyExc_RuntimeError, "release of lock mode %R, which this context does "
                     "not hold", c->entry->cls);
        return NULL;
    }
    /* Entries of one context hold the same class and n: any of its tickets
       will do (a predicate counts them per class). */
    t = c->held;
    if (t != NULL)
        c->held = t->next;
    else
        c->nheld--;
    rc = release_holds(lk, t != NULL ? &t->mode : (c->cur != NULL ? c->cur : c->entry)->mode,
                       c->n);
    if (rc != 0) {
        if (t != NULL) {
            t->next = c->held;
            c->held = t;
        } else {
            c->nheld++;
        }
        set_engine_error(rc);
        return NULL;
    }
    ticket_free(t);
    if (c->held == NULL && c->nheld == 0)
        Py_CLEAR(c->cur);
    Py_RETURN_NONE;
}

static int tcontext_traverse(TContextObject *c, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(c));
    Py_VISIT(c->lock);
    Py_VISIT(c->entry);
    Py_VISIT(c->cur);
    for (struct ticket *t = c->held; t != NULL; t = t->next)
        Py_VISIT(t->entry);
    return 0;
}

/* A context that goes while it holds: the holds stay (as a threading.Lock
   acquired and never released), and the lock keeps their tickets. */
static void tcontext_orphan(TContextObject *c)
{
    while (c->held != NULL) {
        struct ticket *t = c->held;
        c->held = t->next;
        t->next = c->lock->orphans;
        c->lock->orphans = t;
    }
    c->nheld = 0;
}

static int tcontext_clear(TContextObject *c)
{
    if (c->held == NULL) {
        Py_CLEAR(c->lock);
        Py_CLEAR(c->entry);
        Py_CLEAR(c->cur);
    }
    return 0;
}

static void tcontext_dealloc(TContextObject *c)
{
    PyTypeObject *tp = Py_TYPE(c);

    PyObject_GC_UnTrack(c);
    if (c->lock != NULL)
        tcontext_orphan(c);
    Py_CLEAR(c->lock);
    Py_CLEAR(c->entry);
    Py_CLEAR(c->cur);
    tp->tp_free(c);
    Py_DECREF(tp);
}

static EntryObject *tentry_get(TLockObject *lk, PyObject *cls);

/* Converts `from` to `to` (or back: wait false, never waits), GIL released
   (it may take L). A wait asks interrupted(asked) before each sleep. */
static int convert_holds(TLockObject *lk, const fifolock_mode *from, const fifolock_mode *to,
                         const struct timespec *deadline, bool wait, struct ticket *asked)
{
    int rc;

    Py_BEGIN_ALLOW_THREADS
    if (wait)
        rc = fifolock_mt_convert_interruptible(&lk->mt, from, to, deadline, interrupted,
                                               asked);
    else
        rc = fifolock_mt_try_convert(&lk->mt, from, to);
    Py_END_ALLOW_THREADS
    return rc;
}

/* The context's one hold is now of `to` (its ticket `tt`, or a ready-made
   mode if NULL), not of what it held: the engine counts `from` no more. */
static void tcontext_switched(TContextObject *c, EntryObject *to, struct ticket *tt)
{
    ticket_free(c->held); /* one at most: convert() needs a single hold */
    c->held = tt;
    c->nheld = tt != NULL ? 0 : 1;
    Py_XSETREF(c->cur, to == c->entry ? NULL : (EntryObject *)Py_NewRef(to));
}

/*
 * held.convert(mode, timeout=None): one hold of the context's mode becomes
 * one of `mode` without letting go (fifolock_mt_convert()), at once or
 * waiting ahead of the queue with the GIL released. Whatever fails, the
 * context keeps the mode it held.
 */
static PyObject *tcontext_convert(TContextObject *c, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = { "mode", "timeout", NULL };
    TLockObject *lk = c->lock;
    PyObject *mode, *timeout_obj = NULL, *exc;
    struct ticket *asked = NULL; /* for interrupted() */
    const fifolock_mode *from, *to_mode;
    struct ticket *tt = NULL;
    struct timespec deadline;
    EntryObject *to, *held;
    double timeout;
    int rc;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O:convert", kwlist, &mode, &timeout_obj))
        return NULL;
    if (lk == NULL || c->entry == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "this lock context was cleared");
        return NULL;
    }
    if (check_not_in_predicate(lk) < 0 || parse_timeout(timeout_obj, &timeout) < 0)
        return NULL;
    if (c->n != 1) {
        PyErr_Format(PyExc_ValueError,
                     "convert() needs a context of one hold, not n=%zu: convert one of "
                     "lock(mode) instead",
                     c->n);
        return NULL;
    }
    if (c->converting) {
        PyErr_Format(PyExc_RuntimeError, "a conversion of %R is already waiting", c);
        return NULL;
    }
    if (c->held == NULL && c->nheld == 0) {
        PyErr_Format(PyExc_RuntimeError,
                     "convert() of %R outside its with: it holds nothing", c);
        return NULL;
    }
    if ((c->held != NULL ? (c->held->next != NULL || c->nheld != 0) : c->nheld != 1) ||
        c->pending != 0) {
        PyErr_Format(PyExc_RuntimeError,
                     "convert() of %R, which more than one with uses at once: whose hold? "
                     "Use one lock(mode) per with",
                     c);
        return NULL;
    }
    to = tentry_get(lk, mode);
    if (to == NULL)
        return NULL;
    if (to->kind == KIND_PLAIN && to->func == NULL && entry_bind(lk->st, to) < 0) {
        Py_DECREF(to);
        return NULL;
    }
    if (to->kind != KIND_C) {
        tt = ticket_new(lk, to);
        if (tt == NULL) {
            Py_DECREF(to);
            return NULL;
        }
        tt->convert = 1;
        asked = tt;
    }
    held = c->cur != NULL ? c->cur : c->entry;
    from = c->held != NULL ? &c->held->mode : held->mode;
    to_mode = tt != NULL ? &tt->mode : to->mode;
    if (timeout >= 0)
        deadline_in(timeout, &deadline);
    /* A signal that came before the call: raised before anything changes. */
    if (PyErr_CheckSignals() < 0) {
        ticket_free(tt);
        Py_DECREF(to);
        return NULL;
    }
    c->converting = 1;
    rc = convert_holds(lk, from, to_mode, timeout >= 0 ? &deadline : NULL, true, asked);
    c->converting = 0;
    /*
     * A signal is looked for before each sleep of the wait, but the grant
     * may come first: a signal that came during the wait is then still
     * pending here, and raised as the call returns, with `to` held. So it is
     * looked for again now, after the switch, and whatever a handler raises
     * is raised by this call with the old mode held again.
     */
    if (rc == 0 && (PyErr_Occurred() || PyErr_CheckSignals() < 0)) {
        /* An interrupt lost the race to the switch: switch back, and raise
           it. The switch back is made at once: after the switch, the
           holders are those that held beside `from` (fewer, if some left
           while it waited: nothing else is granted while a conversion
           waits ahead of the queue) and those granted since, which `to`
           admitted. `from` admitted the first (it held beside them, and
           the ready-made modes admit each other both ways), and admits the
           second when it admits whatever `to` admits, as in every upgrade
           (Upgradable or Read to Write, IS to S or X): so that switch back
           always fits. Only a switch that let in holders `from` excludes
           (a downgrade, Write to Read with readers queued) can't be undone
           at once: then the context keeps `to`, which its exit releases and
           held.mode shows. A raise of `from`'s predicate then is no answer:
           it is reported, and the context keeps `to`. */
        exc = take_exception();
        if (c->held != NULL)
            c->held->convert = 1;
        if (convert_holds(lk, to_mode, from, NULL, false, NULL) == 0) {
            ticket_free(tt);
        } else {
            if (c->held != NULL && c->held->exc != NULL) {
                PyObject *raised = c->held->exc;
                c->held->exc = NULL;
                report_unraisable(raised, (PyObject *)c);
            }
            tcontext_switched(c, to, tt);
        }
        if (c->held != NULL)
            c->held->convert = 0;
        Py_DECREF(to);
        restore_exception(exc);
        return NULL;
    }
    if (rc == 0) {
        tcontext_switched(c, to, tt);
        Py_DECREF(to);
        Py_RETURN_NONE;
    }
    exc = tt != NULL ? tt->exc : NULL;
    if (exc != NULL) {
        tt->exc = NULL;
        PyErr_Clear(); /* a signal's handler ran and raised already */
    }
    ticket_free(tt);
    if (exc != NULL) {
        restore_exception(exc);
    } else if (rc == EINTR && PyErr_Occurred()) {
        /* raised by a signal handler */
    } else if (rc == ETIMEDOUT) {
        PyObject *secs = PyFloat_FromDouble(timeout);
        if (secs != NULL)
            PyErr_Format(PyExc_TimeoutError,
                         "conversion to lock mode %R not granted within %R seconds; the "
                         "context still holds %R",
                         to->cls, secs, held->cls);
        Py_XDECREF(secs);
    } else if (rc == EDEADLK) {
        PyErr_Format(lk->st->deadlock_error,
                     "conversion to %R can't wait: it can never be granted (even a lock "
                     "that nobody else holds refuses it), or another conversion waits on "
                     "this lock (each would wait for the other for ever); the context "
                     "still holds %R",
                     to->cls, held->cls);
    } else if (rc == EPERM) {
        PyErr_Format(PyExc_RuntimeError,
                     "conversion from lock mode %R, which this context does not hold",
                     held->cls);
    } else {
        set_engine_error(rc);
    }
    Py_DECREF(to);
    return NULL;
}

static PyObject *tcontext_repr(TContextObject *c)
{
    return PyUnicode_FromFormat("<fifolock thread context of %R>",
                                c->entry && c->entry->cls ? c->entry->cls : Py_None);
}

static PyObject *tcontext_get_mode(TContextObject *c, void *closure)
{
    EntryObject *e = c->cur != NULL ? c->cur : c->entry;

    (void)closure;
    return Py_NewRef(e && e->cls ? e->cls : Py_None);
}

static PyObject *tcontext_get_lock(TContextObject *c, void *closure)
{
    (void)closure;
    return Py_NewRef(c->lock ? (PyObject *)c->lock : Py_None);
}

static PyObject *tcontext_get_n(TContextObject *c, void *closure)
{
    (void)closure;
    return PyLong_FromSize_t(c->n);
}

static PyObject *tcontext_get_timeout(TContextObject *c, void *closure)
{
    (void)closure;
    return c->timeout < 0 ? Py_NewRef(Py_None) : PyFloat_FromDouble(c->timeout);
}

static PyMethodDef tcontext_methods[] = {
    { "__enter__", (PyCFunction)tcontext_enter, METH_NOARGS,
      "Block until the lock is granted in this mode (first in, first out), the GIL\n"
      "released. TimeoutError when the timeout passes first; an exception from a\n"
      "signal handler (KeyboardInterrupt) ends the wait. Either way the request\n"
      "leaves no trace. DeadlockError at once for a request that can never be\n"
      "granted (its mode refuses even a lock nobody holds)." },
    { "__exit__", (PyCFunction)(void (*)(void))tcontext_exit, METH_FASTCALL,
      "Release the holds and grant the waiters they made room for." },
    { "convert", (PyCFunction)(void (*)(void))tcontext_convert, METH_VARARGS | METH_KEYWORDS,
      "convert(mode, timeout=None)\n--\n\n"
      "Turns this context's hold into one of mode without letting go (Write to\n"
      "Read; Upgradable to Write). At once if mode may join the other holders;\n"
      "else it waits ahead of the whole queue, the GIL released, keeping the old\n"
      "mode. TimeoutError when the timeout passes first, DeadlockError if it would\n"
      "wait and mode can never be granted or another conversion waits on the\n"
      "lock, an exception raised by\n"
      "mode's is_compatible or by a signal handler (KeyboardInterrupt): in each\n"
      "case the context keeps the old mode (a signal that comes as the switch is\n"
      "made is raised by this call, switched back; only if the switch let in\n"
      "holders the old mode excludes, as a downgrade may, does it keep the new\n"
      "one, and held.mode says so). Needs n == 1 (ValueError) and a\n"
      "context entered once (RuntimeError otherwise); held.mode is the mode held\n"
      "now, and its exit releases it." },
    { NULL, NULL, 0, NULL },
};

static PyGetSetDef tcontext_getset[] = {
    { "mode", (getter)tcontext_get_mode, NULL, "The mode class.", NULL },
    { "lock", (getter)tcontext_get_lock, NULL, "The lock.", NULL },
    { "n", (getter)tcontext_get_n, NULL, "The number of holds it takes at once.", NULL },
    { "timeout", (getter)tcontext_get_timeout, NULL,
      "Seconds an entry waits at most; None: no limit.", NULL },
    { NULL, NULL, NULL, NULL, NULL },
};

static PyType_Slot tcontext_slots[] = {
    { Py_tp_doc, (void *)"lock(Mode, n=1, timeout=None): a context manager that holds a\n"
                         "ThreadFifoLock in Mode. Several threads may use one at once, but\n"
                         "then none of them may convert(). `with lock(Mode) as held:` gives\n"
                         "the context itself: held.convert(Other) converts its hold." },
    { Py_tp_dealloc, tcontext_dealloc },
    { Py_tp_traverse, tcontext_traverse },
    { Py_tp_clear, tcontext_clear },
    { Py_tp_repr, tcontext_repr },
    { Py_tp_methods, tcontext_methods },
    { Py_tp_getset, tcontext_getset },
    { 0, NULL },
};

static PyType_Spec tcontext_spec = {
    .name = "fifolock.ThreadLockContext",
    .basicsize = sizeof(TContextObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = tcontext_slots,
};

/* ---- the lock ------------------------------------------------------------------ */

/* The entry of `cls` on `lk` (new reference). */
static EntryObject *tentry_get(TLockObject *lk, PyObject *cls)
{
    EntryObject *e = entry_find(lk->st, lk->modes, cls);

    if (e != NULL)
        return (EntryObject *)Py_NewRef(e);
    if (PyErr_Occurred())
        return NULL;
    /* no predicate of its own: each request is a ticket (see the top) */
    return entry_make(lk->st, lk->modes, cls, NULL, lk);
}

static PyObject *tlock_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf,
                                  PyObject *kwnames)
{
    TLockObject *lk = (TLockObject *)self;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t nkw = kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;
    PyObject *n_obj = NULL, *timeout_obj = NULL;
    TContextObject *c;
    EntryObject *e;
    size_t n;
    double timeout;

    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError,
                        "lock(mode, n=1, timeout=None) takes the mode class, n and timeout");
        return NULL;
    }
    if (nargs > 1)
        n_obj = args[1];
    if (nargs > 2)
        timeout_obj = args[2];
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *k = PyTuple_GET_ITEM(kwnames, i);
        PyObject **slot = PyUnicode_CompareWithASCIIString(k, "n") == 0         ? &n_obj
                          : PyUnicode_CompareWithASCIIString(k, "timeout") == 0 ? &timeout_obj
                                                                                 : NULL;
        if (slot == NULL || *slot != NULL) {
            PyErr_Format(PyExc_TypeError, "lock() got an unexpected or repeated argument %R", k);
            return NULL;
        }
        *slot = args[nargs + i];
    }
    if (parse_n(n_obj, &n) < 0 || parse_timeout(timeout_obj, &timeout) < 0)
        return NULL;
    e = tentry_get(lk, args[0]);
    if (e == NULL)
        return NULL;
    c = PyObject_GC_New(TContextObject, lk->st->tcontext_type);
    if (c == NULL) {
        Py_DECREF(e);
        return NULL;
    }
    c->lock = (TLockObject *)Py_NewRef(lk);
    c->entry = e;
    c->n = n;
    c->timeout = timeout;
    c->held = NULL;
    c->nheld = 0;
    c->cur = NULL;
    c->pending = 0;
    c->converting = 0;
    PyObject_GC_Track(c);
    return (PyObject *)c;
}

static PyObject *tlock_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    modstate *st = state_of_type(type);
    TLockObject *lk;

    if (st == NULL)
        return NULL;
    if (PyTuple_GET_SIZE(args) != 0 || (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0)) {
        if (type->tp_new != tlock_new || type->tp_init == PyBaseObject_Type.tp_init) {
            PyErr_Format(PyExc_TypeError, "%.200s() takes no arguments", type->tp_name);
            return NULL;
        }
    }
    lk = (TLockObject *)type->tp_alloc(type, 0);
    if (lk == NULL)
        return NULL;
    lk->vectorcall = tlock_vectorcall;
    (void)fifolock_mt_init(&lk->mt);
    lk->st = st;
    lk->modes = PyDict_New();
    lk->view = holds_view_new(st->tholds_type, lk, &tlock_holds_source);
    lk->next = st->tlocks;
    lk->prev = NULL;
    if (st->tlocks != NULL)
        st->tlocks->prev = lk;
    st->tlocks = lk;
    if (lk->modes == NULL || lk->view == NULL) {
        Py_DECREF(lk);
        return NULL;
    }
    return (PyObject *)lk;
}

static int tlock_traverse(TLockObject *lk, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(lk));
    Py_VISIT(lk->modes);
    for (struct ticket *t = lk->orphans; t != NULL; t = t->next)
        Py_VISIT(t->entry);
    return 0;
}

static int tlock_clear(TLockObject *lk)
{
    /* Tickets keep their own entries: the modes dict may go. */
    Py_CLEAR(lk->modes);
    return 0;
}

/* One mode held, if nobody waits (fifolock_mt_inspect()'s callback). */
struct some_hold {
    const fifolock_mode *mode;
    size_t count;
};

static void some_hold_inspect(const fifolock *engine, void *arg)
{
    struct some_hold *h = arg;

    if (fifolock_waiting(engine) != 0 ||
        fifolock_holds_list(fifolock_holds_of(engine), &h->mode, &h->count, 1) == 0)
        h->mode = NULL;
}

static void tlock_dealloc(TLockObject *lk)
{
    PyTypeObject *tp = Py_TYPE(lk);
    struct some_hold h;

    PyObject_GC_UnTrack(lk);
    if (lk->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)lk);
    /* Nobody else can use the lock now (nobody has a reference, and a
       thread inside a call has one): so nobody holds its L or waits for it,
       and its holds, left by contexts that went without exiting, are
       dropped here with the GIL held. Nobody waits either. */
    while (fifolock_mt_inspect(&lk->mt, some_hold_inspect, &h) == 0 && h.mode != NULL)
        (void)fifolock_mt_release_n(&lk->mt, h.mode, h.count);
    (void)fifolock_mt_destroy(&lk->mt);
    while (lk->orphans != NULL) {
        struct ticket *t = lk->orphans;
        lk->orphans = t->next;
        ticket_free(t);
    }
    holds_view_detach(lk->view);
    Py_CLEAR(lk->view);
    if (lk->st != NULL) {
        if (lk->prev != NULL)
            lk->prev->next = lk->next;
        else if (lk->st->tlocks == lk)
            lk->st->tlocks = lk->next;
        if (lk->next != NULL)
            lk->next->prev = lk->prev;
    }
    Py_CLEAR(lk->modes);
    tp->tp_free(lk);
    Py_DECREF(tp);
}

static PyObject *tlock_get_holds(TLockObject *lk, void *closure)
{
    (void)closure;
    return holds_defaultdict(lk->st, tholds_dict(lk));
}

static PyObject *tlock_get_waiting(TLockObject *lk, void *closure)
{
    size_t n;

    (void)closure;
    if (in_own_predicate(lk))
        return PyLong_FromSize_t(fifolock_waiting(fifolock_mt_engine(&lk->mt)));
    Py_BEGIN_ALLOW_THREADS
    n = fifolock_mt_waiting(&lk->mt);
    Py_END_ALLOW_THREADS
    return PyLong_FromSize_t(n);
}

static PyObject *tlock_repr(TLockObject *lk)
{
    PyObject *d = tholds_dict(lk), *r, *w;

    if (d == NULL)
        return NULL;
    w = tlock_get_waiting(lk, NULL);
    r = w ? PyUnicode_FromFormat("<%s holds=%R waiting=%S>", Py_TYPE(lk)->tp_name, d, w) : NULL;
    Py_XDECREF(w);
    Py_DECREF(d);
    return r;
}

static PyGetSetDef tlock_getset[] = {
    { "holds", (getter)tlock_get_holds, NULL,
      "A new collections.defaultdict(int) {mode class: number of holders} of the\n"
      "modes held now (0 for a mode not held). A snapshot.", NULL },
    { "waiting", (getter)tlock_get_waiting, NULL,
      "The number of requests waiting in the queue now (a snapshot).", NULL },
    { NULL, NULL, NULL, NULL, NULL },
};

static PyMemberDef tlock_members[] = {
    { "__weaklistoffset__", T_PYSSIZET, offsetof(TLockObject, weakreflist), READONLY, NULL },
    { "__vectorcalloffset__", T_PYSSIZET, offsetof(TLockObject, vectorcall), READONLY, NULL },
    { NULL, 0, 0, 0, NULL },
};

PyDoc_STRVAR(tlock_doc,
"ThreadFifoLock()\n"
"--\n"
"\n"
"A first-in-first-out lock for threads whose modes you define.\n"
"\n"
"    with lock(Mode):                 # blocks this thread until granted\n"
"        ...\n"
"    with lock(Mode, timeout=0.5):    # TimeoutError when 0.5 s pass first\n"
"        ...\n"
"    with lock(Semaphore(10), n=3):   # 3 holds at once\n"
"        ...\n"
"\n"
"The modes are those of FifoLock: the ready-made ones (their predicates in\n"
"C) and any class with is_compatible(holds) (it need not be an\n"
"asyncio.Future); is_compatible must be pure and monotone (fewer holders\n"
"never make a mode incompatible): a request that even a lock nobody holds\n"
"refuses can never be granted, and raises DeadlockError at once instead of\n"
"blocking for ever. A waiting thread releases the GIL. A request that times\n"
"out or is interrupted (KeyboardInterrupt) leaves the queue without a trace.\n"
"An exception raised by is_compatible is raised in the thread whose request\n"
"it was asked about, and the queue goes on. is_compatible runs under the\n"
"lock's internal lock: it must not use this lock or any other\n"
"ThreadFifoLock. Holds belong to the lock, not to a thread: any thread may\n"
"exit a context another entered. After os.fork() the child's locks are\n"
"whole: what the forking thread held it holds; what other threads held or\n"
"waited for stays held or queued, as with threading.Lock.");

static PyType_Slot tlock_slots[] = {
    { Py_tp_doc, (void *)tlock_doc },
    { Py_tp_new, tlock_new },
    { Py_tp_dealloc, tlock_dealloc },
    { Py_tp_traverse, tlock_traverse },
    { Py_tp_clear, tlock_clear },
    { Py_tp_call, PyVectorcall_Call },
    { Py_tp_repr, tlock_repr },
    { Py_tp_getset, tlock_getset },
    { Py_tp_members, tlock_members },
    { 0, NULL },
};

static PyType_Spec tlock_spec = {
    .name = "fifolock.ThreadFifoLock",
    .basicsize = sizeof(TLockObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_HAVE_VECTORCALL,
    .slots = tlock_slots,
};

/* ---- fork ------------------------------------------------------------------- */

/*
 * Before os.fork(): takes L of every lock, with the GIL released while it
 * waits (see the top), so that no thread is inside an engine call when the
 * process is copied. Locks made meanwhile are taken in a further round.
 */
PyObject *thread_lock_fork_before(PyObject *module, PyObject *unused)
{
    modstate *st = PyModule_GetState(module);

    (void)unused;
    for (;;) {
        Py_ssize_t n = 0, k = 0;
        TLockObject **batch, **all;

        for (TLockObject *lk = st->tlocks; lk != NULL; lk = lk->next)
            n += !lk->fork_held;
        if (n == 0)
            return Py_NewRef(Py_None);
        batch = PyMem_Malloc((size_t)n * sizeof *batch);
        all = PyMem_Realloc(st->forking, (size_t)(st->nforking + n) * sizeof *all);
        if (batch == NULL || all == NULL) {
            PyMem_Free(batch);
            if (all != NULL)
                st->forking = all;
            return PyErr_NoMemory();
        }
        st->forking = all;
        for (TLockObject *lk = st->tlocks; lk != NULL; lk = lk->next)
            if (!lk->fork_held) {
                lk->fork_held = 1;
                batch[k++] = (TLockObject *)Py_NewRef(lk);
            }
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < k; i++)
            (void)fifolock_mt_before_fork(&batch[i]->mt); /* 0: alive as we are */
        Py_END_ALLOW_THREADS
        memcpy(st->forking + st->nforking, batch, (size_t)k * sizeof *batch);
        st->nforking += k;
        PyMem_Free(batch);
    }
}

/* After the fork, in either process: drops what the hook above took. */
static PyObject *fork_after(PyObject *module)
{
    modstate *st = PyModule_GetState(module);
    TLockObject **all = st->forking;
    Py_ssize_t n = st->nforking;

    st->forking = NULL;
    st->nforking = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        (void)fifolock_mt_after_fork(&all[i]->mt); /* never waits; 0: ours */
        all[i]->fork_held = 0;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        Py_DECREF(all[i]);
    PyMem_Free(all);
    return Py_NewRef(Py_None);
}

PyObject *thread_lock_fork_parent(PyObject *module, PyObject *unused)
{
    (void)unused;
    return fork_after(module);
}

PyObject *thread_lock_fork_child(PyObject *module, PyObject *unused)
{
    (void)unused;
    return fork_after(module);
}

/* ---- module ------------------------------------------------------------------ */

int thread_lock_init(PyObject *module, modstate *st)
{
    st->tlock_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &tlock_spec, NULL);
    if (st->tlock_type == NULL)
        return -1;
    st->tcontext_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &tcontext_spec, NULL);
    if (st->tcontext_type == NULL)
        return -1;
    st->tholds_type = holds_view_type(module, "fifolock.ThreadHolds", tholds_doc);
    if (st->tholds_type == NULL)
        return -1;
    if (PyModule_AddType(module, st->tlock_type) < 0 ||
        PyModule_AddType(module, st->tcontext_type) < 0 ||
        PyModule_AddType(module, st->tholds_type) < 0)
        return -1;
    return 0;
}
