/*
 * fifolock.FifoLock: the asyncio front end of the engine, registered by the
 * module (fifolock_module.c) through async_lock_init() (front_ends.h); the
 * mode entries and the holds mapping it shares with the other front ends
 * are in shared.c (module.h).
 *
 * The engine (src/engine.c) does all the queueing and granting; this module
 * only tells asyncio about it. Each waiting acquisition is an Acquire object
 * that embeds the engine's fifolock_waiter, and waits on an ordinary asyncio
 * future that the grant callback resolves with set_result().
 *
 * Objects
 *
 *   FifoLock      embeds a `fifolock`. lock(Mode) returns a LockContext.
 *   ModeEntry     one engine mode per mode class: a fifolock_mode plus the
 *                 class. Ready-made modes (registered by the package, kept in
 *                 module state) point at the engine's C modes; any other class
 *                 gets an entry in the lock's own `modes` dict whose predicate
 *                 is py_is_compatible(), a trampoline into is_compatible().
 *                 Entries live as long as the lock (or the module), so they
 *                 outlive every hold and waiter that names them.
 *   LockContext   what lock(Mode, n) returns: (lock, entry, n), and what
 *                 `async with ... as held` gives. It counts its users
 *                 (pending, holding) so that one may be used by several
 *                 tasks at once; entered by one, it keeps the mode that
 *                 entry holds after a conversion (`cur`).
 *   Acquire       what __aenter__() and held.convert() return; acquires or
 *                 converts when first awaited.
 *   Holds         the read-only mapping passed to Python predicates: a
 *                 HoldsView (module.h, shared.c) over this lock's counts.
 *
 *   `async with lock(Mode)` makes a LockContext and an Acquire each time: the
 *   lock keeps the memory of its last dead one of each for the next
 *   (context_dealloc, acquire_dealloc), as CPython's own free lists do.
 *
 * Who may run Python code when
 *
 *   A Python predicate runs inside the engine's acquire or grant loop, where
 *   the engine must not be entered again. `in_predicate` marks that time:
 *   acquiring or releasing from there raises RuntimeError, and an Acquire
 *   abandoned from there (its owner dropped during the predicate, say) is put
 *   on `deferred` and finished once the outer engine call has returned.
 *   Grant callbacks (on_granted) may run Python code (set_result schedules
 *   the waiter's task with call_soon) and may re-enter the engine: the engine
 *   allows acquire, release and cancel from its callbacks.
 *
 * A predicate that raises
 *
 *   py_is_compatible() keeps the exception on the lock and answers "yes", so
 *   the engine grants the waiter it was asked about at once. For a waiter
 *   taken from the queue, on_granted() runs next, finds the exception, hands
 *   the hold straight back and makes the waiter's task raise it; for an
 *   acquire that found the lock free, Acquire does the same when the engine
 *   returns. The waiter leaves the queue at its turn, as if cancelled, and
 *   the grant loop goes on in order: the exception reaches the task whose
 *   mode raised it, and nobody else (not the task whose release ran the
 *   predicate, not the waiters behind). Answering "no" instead would leave
 *   the waiter at the head, blocking everybody behind it, until the next
 *   release asks again. The hold taken to carry the exception is never seen:
 *   it is given back before any other code runs. An answer that is an
 *   awaitable or a generator (an `async def is_compatible`) is refused the
 *   same way, as a TypeError (refuse_awaitable in shared.c), its coroutine closed first.
 *
 * Weighted requests and conversions
 *
 *   lock(Mode, n) takes n holds in one request (fifolock_acquire_n); the
 *   engine asks a Python predicate once per hold, with those before counted,
 *   and a raise for any of them fails the whole request as above (the
 *   questions left are answered "yes" without calling Python, and all n are
 *   handed back). held.convert(To) is an Acquire that calls
 *   fifolock_convert() from the context's mode. The context's mode changes
 *   when the switch is made (at once, or in on_granted), so its exit
 *   releases what is held, and a switch its task will not take (cancelled
 *   after it, closed, dropped) is turned back with fifolock_try_convert()
 *   when that can be done at once (convert_back).
 *
 *   A raising predicate can't answer "yes" for a conversion: that would
 *   switch it, and switching back may be impossible. So a question about a
 *   conversion answers "no" and keeps the exception in `conv_exc`: the
 *   conversion stays at the head, holding `from`, and engine_done(), after
 *   the engine call, withdraws it with fifolock_cancel() (its task keeps
 *   `from`; the grant loop of the cancel lets the queue go on) and raises
 *   the exception in its task. A question is about a conversion when it is
 *   the first one of a fifolock_convert() call whose `to` is a Python mode
 *   (`convert_first`: the engine asks `to` before anything else), or the
 *   second after a "no" to the first (the engine then asks whether `to`
 *   could ever fit, on an empty lock, and returns), or when a conversion
 *   waits at the head of the queue and no new request is being made
 *   (`asking_new`: fifolock_acquire_n() asks only about the request it
 *   makes; the grant loops ask nothing but the head).
 *
 * Requests that can never be granted
 *
 *   A request its mode refuses on an empty lock is refused by the engine
 *   with EDEADLK (DeadlockError) instead of queueing: the engine asks its
 *   predicate once more, with the lock's own (emptied) hold table, when the
 *   normal question said no or others wait. A raise there is kept like any
 *   other: an acquire is queued (a raise answers yes) and withdrawn at once
 *   by acquire_start, which raises it; a conversion's is raised by
 *   convert_start.
 *
 * One event loop, one thread
 *
 *   A waiter is woken by set_result() on a future of its loop, which only
 *   that loop's thread may call: called from another thread, the loop is
 *   not told and the wakeup is lost. So a lock is bound, for ever:
 *
 *   - to the thread of its first acquire (`thread`): an acquire or a release
 *     from any other thread is a RuntimeError (check_thread), raised before
 *     the engine is entered, so every engine call that may grant, and so
 *     every set_result(), runs on that thread. This check is a compare of
 *     thread idents on every call; asking asyncio for the running loop
 *     instead would cost a getpid() system call on each one.
 *   - to the loop of its first wait (`loop`), as asyncio's own primitives
 *     bind themselves (mixins._LoopBoundMixin), even once that loop has
 *     closed: a request that must wait under another loop is a RuntimeError
 *     (bound_loop), and it leaves the queue it had just joined. Once bound
 *     to an asyncio.BaseEventLoop, a wait asks that loop whether it runs in
 *     this thread (loop_runs_here) rather than asyncio for the running loop
 *     (a getpid() system call each time in 3.11), and makes its future with
 *     asyncio.Future(loop=) when the loop's create_future() is the base one.
 *
 *   So, within its thread, a lock is as strict as asyncio.Lock, no more: an
 *   uncontended acquire under a later loop is allowed, as there. Two ways in
 *   are not checked, as they must give back what they have from whatever
 *   thread or loop they run: abandon() (a waiting acquire cancelled, closed
 *   or collected) and a release on the way out of a coroutine that is being
 *   closed (GeneratorExit). A waiter they grant from another thread is woken
 *   through its loop's call_soon_threadsafe() (wake_from_elsewhere), so that
 *   wakeup is not lost either. Reading `holds`, `waiting` or repr() is
 *   allowed from anywhere.
 */
#include "front_ends.h"

#include <structmember.h>

#include <errno.h>
#include <stddef.h>
#include <string.h>

typedef struct LockObject LockObject;
typedef struct AcquireObject AcquireObject;
typedef struct ContextObject ContextObject;

/* ---- objects ------------------------------------------------------------- */

struct LockObject {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    fifolock lock;
    modstate *st;              /* the module outlives us: our type holds it */
    PyObject *modes;           /* dict: class -> ModeEntry, this lock's own modes */
    EntryObject *last;         /* lock(cls) cache: the entry of the last class */
    PyObject *view;            /* the `holds` argument of Python predicates */
    ContextObject *spare;      /* a dead LockContext kept for the next lock(mode)
                                  (see context_dealloc): no type reference, no
                                  fields, untracked; freed with the lock */
    AcquireObject *spare_acq;  /* the same for Acquire (see acquire_dealloc) */
    AcquireObject *queued;     /* every queued Acquire (we own a reference to
                                  each), for the garbage collector only: the
                                  engine keeps the queue */
    AcquireObject *deferred;   /* abandoned during a predicate; finish later */
    PyObject *pred_exc;        /* raised by a predicate, for the waiter it was
                                  asked about */
    PyObject *conv_exc;        /* raised by the predicate of a conversion; see
                                  "Weighted requests and conversions" at
                                  the top */
    AcquireObject *conv;       /* the conversion waiting at the head, if ours
                                  (borrowed: it is in `queued`) */
    int convert_first;         /* the next Python question is about the
                                  conversion being requested (and, after a
                                  "no", the one after: whether it could ever
                                  fit) */
    int asking_new;            /* inside fifolock_acquire_n(): every question
                                  is about the request being made */
    int in_predicate;          /* a Python predicate is running */
    PyObject *loop;            /* the event loop of the first wait, for ever;
                                  NULL until then (see the top) */
    int loop_plain;            /* loop_is_plain(loop) */
    unsigned long thread;      /* the thread of the first acquire, for ever */
    int thread_bound;          /* `thread` is set */
    PyObject *weakreflist;
};

enum { ST_INIT, ST_QUEUED, ST_GRANTED, ST_FAILED, ST_DONE };

/*
 * One acquisition. INIT until first awaited; then DONE at once if the lock
 * was free, else QUEUED (in the engine's queue; the lock owns a reference).
 * on_granted() moves it to GRANTED (holding; the task was woken) or FAILED
 * (its predicate raised; the exception waits in `ex`). The task's next step
 * takes it to DONE. If the task is cancelled (throw) or dropped (close,
 * finalizer) first, abandon() gives back what it has: leaves the queue,
 * or releases the hold.
 */
struct AcquireObject {
    PyObject_HEAD
    fifolock_waiter w;
    LockObject *lock;
    EntryObject *entry;        /* the mode asked for (of a conversion: `to`) */
    EntryObject *from;         /* a conversion: the mode it turns; else NULL */
    ContextObject *ctx;        /* the context it acquires or converts for */
    size_t n;                  /* holds asked for */
    PyObject *fut;             /* the future the task waits on */
    PyObject *ex;              /* FAILED: the exception to raise */
    AcquireObject *qprev, *qnext;   /* in lock->queued while QUEUED */
    AcquireObject *defer_next;      /* in lock->deferred */
    unsigned char state;
    unsigned char abandoned;   /* nobody will take the hold any more */
    unsigned char deferred;
    unsigned char counted;     /* an acquire counted in ctx->pending */
    unsigned char convert;     /* a conversion of ctx's hold, not an acquire */
};

/*
 * lock(Mode, n): what `async with` enters. Entered by one task at a time (the
 * usual case), it is that task's `held`: convert() turns its hold into
 * another mode, and exit releases the mode held then (`cur`). Entered by
 * several tasks at once it keeps no state of its own but counts, and
 * converting is refused (whose hold would it be?).
 */
struct ContextObject {
    PyObject_HEAD
    LockObject *lock;
    EntryObject *entry;        /* the mode asked for */
    EntryObject *cur;          /* after a conversion: the mode held now; else NULL */
    size_t n;                  /* holds taken on entry, released on exit */
    Py_ssize_t pending;        /* acquires started, not yet holding nor given up */
    Py_ssize_t holding;        /* entries holding, not yet exited */
    int converting;            /* a conversion of its hold is in progress */
};

static bool py_is_compatible(const fifolock_mode *self, const fifolock_holds *holds);

/* ---- mode entries of this lock ------------------------------------------- */

/* The entry of `cls` on `lk`: borrowed, NULL if none (check PyErr_Occurred). */
static EntryObject *entry_lookup(LockObject *lk, PyObject *cls)
{
    if (lk->last != NULL && lk->last->cls == cls)
        return lk->last;
    return entry_find(lk->st, lk->modes, cls);
}

/* The entry of `cls` on `lk`, made if needed (new reference). */
static EntryObject *entry_get(LockObject *lk, PyObject *cls)
{
    EntryObject *e = entry_lookup(lk, cls);

    if (e != NULL) {
        Py_INCREF(e);
    } else {
        if (PyErr_Occurred())
            return NULL;
        e = entry_make(lk->st, lk->modes, cls, py_is_compatible, lk);
        if (e == NULL)
            return NULL;
    }
    if (lk->last != e)
        Py_XSETREF(lk->last, (EntryObject *)Py_NewRef(e));
    return e;
}

/* The entry whose engine mode is `mode` (borrowed), for introspection. */
static EntryObject *entry_of_mode(LockObject *lk, const fifolock_mode *mode)
{
    if (mode->is_compatible == py_is_compatible)
        return CONTAINER_OF(mode, EntryObject, own);
    return entry_of_ready_mode(lk->st, mode);
}

/* ---- the holds mapping ---------------------------------------------------- */

/* {mode class: holders} for the modes held now. */
static PyObject *holds_snapshot(LockObject *lk)
{
    const fifolock_holds *h;
    const fifolock_mode **modes;
    size_t *counts, n;
    PyObject *d = PyDict_New();

    if (d == NULL || lk == NULL)
        return d;
    h = fifolock_holds_of(&lk->lock);
    n = fifolock_holds_list(h, NULL, NULL, 0);
    if (n == 0)
        return d;
    modes = PyMem_Malloc(n * sizeof *modes);
    counts = PyMem_Malloc(n * sizeof *counts);
    if (modes == NULL || counts == NULL) {
        PyMem_Free(modes);
        PyMem_Free(counts);
        Py_DECREF(d);
        return PyErr_NoMemory();
    }
    n = fifolock_holds_list(h, modes, counts, n);
    /* Entries are alive while held, and hashing a class may run code: the
       lists were copied first, so that code may change the lock. */
    for (size_t i = 0; i < n; i++) {
        EntryObject *e = entry_of_mode(lk, modes[i]);
        PyObject *v;
        int rc;

        if (e == NULL || e->cls == NULL)
            continue;
        v = PyLong_FromSize_t(counts[i]);
        rc = v ? PyDict_SetItem(d, e->cls, v) : -1;
        Py_XDECREF(v);
        if (rc < 0) {
            Py_CLEAR(d);
            break;
        }
    }
    PyMem_Free(modes);
    PyMem_Free(counts);
    return d;
}

/* Holders of `cls` on `lk` now: the lock's source of a Holds view. */
static Py_ssize_t lock_holds_count(void *lock, PyObject *cls)
{
    LockObject *lk = lock;
    EntryObject *e = entry_lookup(lk, cls);

    if (e == NULL)
        return PyErr_Occurred() ? -1 : 0;
    return (Py_ssize_t)fifolock_held(fifolock_holds_of(&lk->lock), e->mode);
}

static PyObject *lock_holds_dict(void *lock)
{
    return holds_snapshot(lock);
}

static Py_ssize_t lock_holds_length(void *lock)
{
    LockObject *lk = lock;

    return (Py_ssize_t)fifolock_holds_list(fifolock_holds_of(&lk->lock), NULL, NULL, 0);
}

static const holds_source lock_holds_source = {
    "fifolock.Holds", lock_holds_dict, lock_holds_count, lock_holds_length,
};

PyDoc_STRVAR(holds_doc,
"The current holders of a lock, per mode, as passed to is_compatible(holds).\n"
"\n"
"holds[Mode] is the number of holders of exactly Mode right now, 0 for a\n"
"mode nobody holds (like a defaultdict(int)). Iteration, len(), `in`,\n"
"get(), keys(), values() and items() see only the modes held now (a\n"
"defaultdict would keep every mode ever looked up, with 0). Read-only; it\n"
"reads the lock's counts live. copy() is a defaultdict(int) snapshot.");

/* ---- the predicate trampoline ------------------------------------------- */

/*
 * The engine's predicate for modes written in Python: an entry of this
 * lock's own `modes`, asked only by this lock's engine (e->lock).
 * Everything that may run Python code (the call, bool(), dropping
 * references) happens while `in_predicate` is set.
 */
static bool py_is_compatible(const fifolock_mode *mode, const fifolock_holds *holds)
{
    EntryObject *e = CONTAINER_OF(mode, EntryObject, own);
    LockObject *lk = e->lock;
    PyObject *saved;
    int ok, about_conversion;

    (void)holds; /* Python predicates read lk->view */
    /* Asked again for the rest of a weighted request whose first question
       raised: that waiter carries the exception and gives everything back.
       Likewise whether a conversion whose question raised could ever fit:
       "yes", so that it is withdrawn and raises (convert_start). */
    if (lk->pred_exc != NULL || (lk->convert_first && lk->conv_exc != NULL))
        return true;
    about_conversion = lk->convert_first ||
                       (!lk->asking_new && fifolock_converting(&lk->lock));
    saved = PyErr_Occurred() ? take_exception() : NULL;
    lk->in_predicate++;
    ok = entry_ask(e, lk->view);
    if (ok < 0 && about_conversion) {
        /* "No": the conversion stays where it is, holding `from`, until
           engine_done() withdraws it and raises this in its task. */
        PyObject *exc = take_exception();
        if (lk->conv_exc == NULL)
            lk->conv_exc = exc;
        else
            Py_XDECREF(exc); /* never: one conversion waits at a time */
        ok = 0;
    } else if (ok < 0) {
        /* Kept for the waiter just asked about, which takes it at once. */
        PyObject *exc = take_exception();
        if (lk->pred_exc == NULL)
            lk->pred_exc = exc;
        else
            Py_XDECREF(exc); /* never: the first one is taken first */
        ok = 1; /* grant it, so the waiter leaves the queue; see the top */
    }
    /* After a "yes" the grant loop may ask about others; after a "no" the
       engine asks this conversion once more, on an empty lock, and returns. */
    if (ok != 0)
        lk->convert_first = 0;
    lk->in_predicate--;
    if (saved != NULL)
        restore_exception(saved);
    return ok != 0;
}

/* ---- the lock's bookkeeping of Acquire objects ------------------------- */

static void queued_link(LockObject *lk, AcquireObject *a)
{
    Py_INCREF(a);
    a->qprev = NULL;
    a->qnext = lk->queued;
    if (lk->queued != NULL)
        lk->queued->qprev = a;
    lk->queued = a;
}

/* The caller takes over the lock's reference. */
static void queued_unlink(LockObject *lk, AcquireObject *a)
{
    if (a->qprev != NULL)
        a->qprev->qnext = a->qnext;
    else
        lk->queued = a->qnext;
    if (a->qnext != NULL)
        a->qnext->qprev = a->qprev;
    a->qprev = a->qnext = NULL;
}

static void abandon_now(AcquireObject *a);

/* Finishes the Acquires abandoned while a predicate ran. */
static void flush_deferred(LockObject *lk)
{
    PyObject *saved;

    if (lk->deferred == NULL || lk->in_predicate)
        return;
    saved = PyErr_Occurred() ? take_exception() : NULL;
    while (lk->deferred != NULL && !lk->in_predicate) {
        AcquireObject *a = lk->deferred;
        lk->deferred = a->defer_next;
        a->defer_next = NULL;
        a->deferred = 0;
        abandon_now(a);
        Py_DECREF(a);
    }
    if (saved != NULL)
        restore_exception(saved);
}

static void fail_conversion(LockObject *lk);

/* After every engine call: nothing may be left behind on the lock. */
static void engine_done_slow(LockObject *lk)
{
    while (lk->conv_exc != NULL && !lk->in_predicate)
        fail_conversion(lk);
    if (lk->pred_exc != NULL) {
        PyObject *exc = lk->pred_exc;
        lk->pred_exc = NULL;
        report_unraisable(exc, (PyObject *)lk);
    }
    flush_deferred(lk);
}

static inline void engine_done(LockObject *lk)
{
    if (lk->conv_exc != NULL || lk->pred_exc != NULL || lk->deferred != NULL)
        engine_done_slow(lk);
}

static int check_not_in_predicate(LockObject *lk)
{
    if (lk->in_predicate) {
        PyErr_SetString(PyExc_RuntimeError,
                        "is_compatible() must not acquire or release the lock it is asked about");
        return -1;
    }
    return 0;
}

/*
 * 0 if this lock may be used from the calling thread, else -1 with
 * RuntimeError set. `bind`: bind an unbound lock to this thread (an
 * acquire; a release leaves it unbound: it holds nothing to release).
 * See "One event loop, one thread" at the top.
 */
static int check_thread(LockObject *lk, int bind)
{
    unsigned long me = PyThread_get_thread_ident();

    if (!lk->thread_bound) {
        if (bind) {
            lk->thread = me;
            lk->thread_bound = 1;
        }
    } else if (me != lk->thread) {
        PyErr_Format(PyExc_RuntimeError,
                     "%R is bound to a different event loop (in another thread)", lk);
        return -1;
    }
    return 0;
}

/*
 * Whether `loop` is an asyncio.BaseEventLoop whose create_future() is the
 * base one: then a future is made by calling asyncio.Future directly, and
 * the loop tells cheaply whether it runs in this thread (loop_runs_here).
 * -1 with an exception.
 */
static int loop_is_plain(modstate *st, PyObject *loop)
{
    PyObject *mine, *base;
    int plain = PyObject_IsInstance(loop, st->base_event_loop);

    if (plain <= 0)
        return plain;
    /* the bound method, so that one set on the instance counts too */
    mine = PyObject_GetAttr(loop, st->str_create_future);
    base = mine ? PyObject_GetAttr(st->base_event_loop, st->str_create_future) : NULL;
    plain = base == NULL ? -1 : PyMethod_Check(mine) && PyMethod_GET_FUNCTION(mine) == base;
    Py_XDECREF(mine);
    Py_XDECREF(base);
    return plain;
}

/*
 * Whether the lock's loop runs in this thread, so is the running loop (a
 * thread runs one loop at a time), told without asyncio.get_running_loop():
 * in Python 3.11 that makes a getpid() system call, which costs more than
 * the rest of a wait on a virtual machine. BaseEventLoop.run_forever()
 * keeps the ident of the thread that runs it in `_thread_id` for exactly as
 * long as it is the running loop there. Any doubt answers 0: the caller
 * asks asyncio.
 */
static int loop_runs_here(LockObject *lk)
{
    PyObject *tid;
    unsigned long ident;

    if (!lk->loop_plain)
        return 0;
    tid = PyObject_GetAttr(lk->loop, lk->st->str_thread_id);
    if (tid == NULL || !PyLong_CheckExact(tid)) {
        Py_XDECREF(tid);
        PyErr_Clear();
        return 0;
    }
    ident = PyLong_AsUnsignedLong(tid);
    Py_DECREF(tid);
    if (ident == (unsigned long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return ident == PyThread_get_thread_ident();
}

/*
 * The running loop (new reference), binding an unbound lock to it; NULL with
 * RuntimeError set if it is not the lock's. For a request about to wait.
 */
static PyObject *bound_loop(LockObject *lk)
{
    PyObject *loop;
    int plain;

    if (lk->loop != NULL && loop_runs_here(lk))
        return Py_NewRef(lk->loop);
    loop = PyObject_CallNoArgs(lk->st->get_running_loop);
    if (loop == NULL)
        return NULL;
    if (lk->loop == NULL) {
        plain = loop_is_plain(lk->st, loop);
        if (plain < 0) {
            Py_DECREF(loop);
            return NULL;
        }
        lk->loop = Py_NewRef(loop);
        lk->loop_plain = plain;
    } else if (loop != lk->loop) {
        Py_DECREF(loop);
        PyErr_Format(PyExc_RuntimeError, "%R is bound to a different event loop", lk);
        return NULL;
    }
    return loop;
}

/* A new future of the lock's loop `loop`: loop.create_future(), or the same
   without its Python frame when that is asyncio.Future(loop=loop). */
static PyObject *new_future(LockObject *lk, PyObject *loop)
{
    PyObject *args[1] = { loop };

    if (lk->loop_plain)
        return PyObject_Vectorcall(lk->st->future_type, args, 0, lk->st->kw_loop);
    return PyObject_CallMethodNoArgs(loop, lk->st->str_create_future);
}

/* ---- grant callback ------------------------------------------------------ */

static int loop_is_closed(modstate *st, PyObject *fut)
{
    PyObject *loop = PyObject_CallMethodNoArgs(fut, st->str_get_loop), *r;
    int closed = 0;

    if (loop != NULL) {
        r = PyObject_CallMethodNoArgs(loop, st->str_is_closed);
        closed = r != NULL && PyObject_IsTrue(r) == 1;
        Py_XDECREF(r);
        Py_DECREF(loop);
    }
    PyErr_Clear();
    return closed;
}

/*
 * Wakes the waiting task. Returns 0 if it can't be told: its future is
 * already done (cancelled: the task will raise CancelledError instead) or
 * its loop is closed. Other failures are reported as unraisable.
 */
static int wake_from_elsewhere(AcquireObject *a);

static int wake(AcquireObject *a)
{
    modstate *st = a->lock->st;
    PyObject *r, *exc;

    if (a->lock->thread_bound && PyThread_get_thread_ident() != a->lock->thread)
        return wake_from_elsewhere(a);
    r = PyObject_CallMethodOneArg(a->fut, st->str_set_result, Py_None);
    if (r != NULL) {
        Py_DECREF(r);
        return 1;
    }
    if (PyErr_ExceptionMatches(st->invalid_state)) {
        PyErr_Clear();
        return 0;
    }
    exc = take_exception();
    if (loop_is_closed(st, a->fut))
        Py_DECREF(exc);
    else
        report_unraisable(exc, a->fut);
    return 0;
}

/* _wake(fut): fut.set_result(None) unless fut is done; for call_soon_threadsafe. */
PyObject *async_lock_wake(PyObject *self, PyObject *fut)
{
    modstate *st = PyModule_GetState(self);
    PyObject *done = PyObject_CallMethodNoArgs(fut, st->str_done), *r;
    int is_done = done ? PyObject_IsTrue(done) : -1;

    Py_XDECREF(done);
    if (is_done != 0)
        return is_done < 0 ? NULL : Py_NewRef(Py_None);
    r = PyObject_CallMethodOneArg(fut, st->str_set_result, Py_None);
    return r;
}

/*
 * wake() from a thread that is not the lock's: a release or a cancel that
 * had to run there (a coroutine closed by the collector; see the top). A
 * set_result() from here would not wake the loop, so the loop is asked to
 * make it, with call_soon_threadsafe(). If the task is cancelled first, it
 * gives the hold back as after any grant (ST_GRANTED), and _wake does nothing.
 */
static int wake_from_elsewhere(AcquireObject *a)
{
    modstate *st = a->lock->st;
    PyObject *done = PyObject_CallMethodNoArgs(a->fut, st->str_done), *loop = NULL, *r = NULL;
    int is_done = done ? PyObject_IsTrue(done) : -1;

    Py_XDECREF(done);
    if (is_done > 0)
        return 0;
    if (is_done == 0)
        loop = PyObject_CallMethodNoArgs(a->fut, st->str_get_loop);
    if (loop != NULL) {
        r = PyObject_CallMethodObjArgs(loop, st->str_call_soon_threadsafe, st->wake, a->fut,
                                       NULL);
        Py_DECREF(loop);
    }
    if (r != NULL) {
        Py_DECREF(r);
        return 1;
    }
    if (loop_is_closed(st, a->fut))
        PyErr_Clear();
    else
        PyErr_WriteUnraisable(a->fut);
    return 0;
}

/* ---- contexts and conversions ------------------------------------------- */

/* An acquire ends without handing a hold to its task (idempotent). */
static void ctx_uncount(AcquireObject *a)
{
    if (a->counted && a->ctx != NULL) {
        a->counted = 0;
        a->ctx->pending--;
    }
}

/* What the await of `a` returns: an acquire's task holds now and gets the
   context (the `held` of `async with lock(Mode) as held`). */
static PyObject *ctx_handed(AcquireObject *a)
{
    if (a->convert || a->ctx == NULL)
        return Py_NewRef(Py_None);
    if (a->counted) {
        a->counted = 0;
        a->ctx->pending--;
        a->ctx->holding++;
    }
    return Py_NewRef((PyObject *)a->ctx);
}

/* The context holds mode `e` now (one hold: conversions need n == 1). */
static void ctx_set_mode(ContextObject *c, EntryObject *e)
{
    if (c != NULL)
        Py_XSETREF(c->cur, e == c->entry ? NULL : (EntryObject *)Py_NewRef(e));
}

/* A conversion left the queue (granted, withdrawn or failed). */
static void conversion_ended(AcquireObject *a)
{
    if (a->lock->conv == a)
        a->lock->conv = NULL;
    if (a->ctx != NULL)
        a->ctx->converting = 0;
}

/*
 * A conversion was switched but its task will not take it (cancelled after
 * the switch, closed, dropped): turns `to` back into `from` if that can be
 * done at once, so that a cancelled conversion leaves the old mode held.
 * If it can't (another holder, granted since, excludes `from`), the context
 * keeps `to`, which its exit releases and held.mode shows. The switch back
 * asks `from`'s predicate; an exception from it is reported as unraisable.
 */
static void convert_back(AcquireObject *a)
{
    LockObject *lk = a->lock;
    PyObject *before = lk->conv_exc;
    int rc;

    lk->conv_exc = NULL;
    lk->convert_first = a->from->mode->is_compatible == py_is_compatible;
    rc = fifolock_try_convert(&lk->lock, a->entry->mode, a->from->mode);
    lk->convert_first = 0;
    if (rc == 0)
        ctx_set_mode(a->ctx, a->from);
    if (lk->conv_exc != NULL)
        report_unraisable(lk->conv_exc, (PyObject *)lk);
    lk->conv_exc = before;
}

static void on_granted(fifolock_waiter *w, void *arg)
{
    AcquireObject *a = arg;
    LockObject *lk = a->lock;
    PyObject *exc = lk->pred_exc;

    (void)w;
    lk->pred_exc = NULL;
    queued_unlink(lk, a); /* its reference is ours until the end */
    if (a->convert) {
        /* Switched: the context holds `to` from now on. Its predicate never
           raises into here: it answers "no" instead (py_is_compatible). */
        Py_XDECREF(exc);
        conversion_ended(a);
        ctx_set_mode(a->ctx, a->entry);
        a->state = ST_GRANTED;
        if (a->abandoned || (a->fut != NULL && !wake(a))) {
            convert_back(a);
            a->state = ST_DONE;
        }
        Py_DECREF(a);
        return;
    }
    if (exc != NULL || a->abandoned) {
        /* Hand the holds straight back, before anything else can see them. */
        (void)fifolock_release_n(&lk->lock, a->entry->mode, a->n);
        a->state = ST_DONE;
        if (exc != NULL && !a->abandoned) {
            a->ex = exc;
            exc = NULL;
            a->state = ST_FAILED;
        }
        Py_XDECREF(exc);
    } else {
        a->state = ST_GRANTED;
    }
    /* Without a future, the acquire that is making one sees the new state. */
    if ((a->state == ST_GRANTED || a->state == ST_FAILED) && a->fut != NULL && !wake(a)) {
        if (a->state == ST_GRANTED)
            (void)fifolock_release_n(&lk->lock, a->entry->mode, a->n);
        a->state = ST_DONE;
        Py_CLEAR(a->ex);
    }
    if (a->state != ST_GRANTED)
        ctx_uncount(a);
    Py_DECREF(a);
}

/*
 * The predicate of the conversion waiting at the head raised (and answered
 * "no"): withdraw it, so that its task keeps `from` and the queue goes on,
 * and raise the exception in that task.
 */
static void fail_conversion(LockObject *lk)
{
    PyObject *exc = lk->conv_exc;
    AcquireObject *a = lk->conv;

    lk->conv_exc = NULL;
    if (a == NULL || a->state != ST_QUEUED || fifolock_cancel(&lk->lock, &a->w) != 0) {
        report_unraisable(exc, (PyObject *)lk);
        return;
    }
    conversion_ended(a);
    queued_unlink(lk, a);
    a->state = ST_DONE;
    if (!a->abandoned) {
        a->ex = exc;
        exc = NULL;
        a->state = ST_FAILED;
        if (a->fut != NULL && !wake(a)) {
            a->state = ST_DONE;
            Py_CLEAR(a->ex);
        }
    }
    Py_XDECREF(exc);
    Py_DECREF(a);
}

/* ---- Acquire ------------------------------------------------------------ */

/* Gives back what `a` has: its place in the queue or its hold. */
static void abandon_now(AcquireObject *a)
{
    LockObject *lk = a->lock;

    a->abandoned = 1;
    switch (a->state) {
    case ST_QUEUED:
        if (fifolock_cancel(&lk->lock, &a->w) == 0) {
            /* A conversion withdrawn: its context still holds `from`. */
            if (a->convert)
                conversion_ended(a);
            a->state = ST_DONE;
            queued_unlink(lk, a);
            Py_DECREF(a); /* the lock's; the caller still has one */
        }
        break;
    case ST_GRANTED:
        if (a->convert)
            convert_back(a);
        else
            (void)fifolock_release_n(&lk->lock, a->entry->mode, a->n);
        a->state = ST_DONE;
        break;
    case ST_FAILED:
        Py_CLEAR(a->ex);
        a->state = ST_DONE;
        break;
    case ST_INIT:
        a->state = ST_DONE;
        break;
    default:
        break;
    }
    if (a->state == ST_DONE)
        ctx_uncount(a);
}

/* The task will not take what `a` has (cancelled, closed, or dropped). */
static void abandon(AcquireObject *a)
{
    LockObject *lk = a->lock;

    if (lk == NULL)
        return;
    if ((a->state == ST_QUEUED || a->state == ST_GRANTED) && lk->in_predicate) {
        /* The engine is inside this lock's predicate: finish afterwards. A
           queued one that is granted meanwhile gives its hold straight back. */
        a->abandoned = 1;
        if (!a->deferred) {
            a->deferred = 1;
            a->defer_next = lk->deferred;
            lk->deferred = (AcquireObject *)Py_NewRef(a);
        }
        return;
    }
    abandon_now(a);
    engine_done(lk);
}

/* Yields a new future of the lock's loop to the task, unless the lock was
   granted meanwhile. The first wait binds the lock to the running loop. */
static PySendResult acquire_wait(AcquireObject *a, PyObject **result)
{
    modstate *st = a->lock->st;
    PyObject *loop, *fut;

    Py_CLEAR(a->fut);
    loop = bound_loop(a->lock);
    fut = loop ? new_future(a->lock, loop) : NULL;
    Py_XDECREF(loop);
    if (fut != NULL && PyObject_SetAttr(fut, st->str_blocking, Py_True) < 0)
        Py_CLEAR(fut);
    if (fut == NULL) {
        PyObject *exc = take_exception();
        abandon(a);
        restore_exception(exc);
        return PYGEN_ERROR;
    }
    /* Code run above (create_future) may have let the lock be granted. */
    switch (a->state) {
    case ST_QUEUED:
        a->fut = fut;
        *result = Py_NewRef(fut);
        return PYGEN_NEXT;
    case ST_GRANTED:
        Py_DECREF(fut);
        a->state = ST_DONE;
        *result = ctx_handed(a);
        return PYGEN_RETURN;
    case ST_FAILED:
        Py_DECREF(fut);
        a->state = ST_DONE;
        ctx_uncount(a);
        restore_exception(a->ex);
        a->ex = NULL;
        return PYGEN_ERROR;
    default:
        Py_DECREF(fut);
        ctx_uncount(a);
        PyErr_SetString(PyExc_RuntimeError, "lock acquisition was abandoned");
        return PYGEN_ERROR;
    }
}

static PySendResult convert_start(AcquireObject *a, PyObject **result);
static int convert_check(ContextObject *c);

static PySendResult acquire_start(AcquireObject *a, PyObject **result)
{
    LockObject *lk = a->lock;
    EntryObject *e = a->entry;
    ContextObject *c = a->ctx;
    int rc;

    if (lk == NULL || e == NULL || c == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "lock acquisition was cleared");
        return PYGEN_ERROR;
    }
    if (a->convert)
        return convert_start(a, result);
    if (check_thread(lk, 1) < 0 || check_not_in_predicate(lk) < 0)
        return PYGEN_ERROR;
    if (c->cur != NULL) {
        PyErr_Format(PyExc_RuntimeError,
                     "%R holds a converted mode (%R): it can't be entered again before "
                     "its exit; use a new lock(mode)",
                     c, c->cur->cls ? c->cur->cls : Py_None);
        return PYGEN_ERROR;
    }
    if (e->kind == KIND_PLAIN && e->func == NULL && entry_bind(lk->st, e) < 0)
        return PYGEN_ERROR;

    c->pending++;
    a->counted = 1;
    lk->asking_new = 1;
    rc = fifolock_acquire_n(&lk->lock, &a->w, e->mode, a->n, on_granted, a);
    lk->asking_new = 0;
    if (lk->pred_exc != NULL) {
        /* Its own predicate raised: with the lock free, granted to carry it;
           asked whether it could ever fit, queued (a raise answers yes). */
        PyObject *exc = lk->pred_exc;
        lk->pred_exc = NULL;
        if (rc == 0)
            (void)fifolock_release_n(&lk->lock, e->mode, a->n);
        else if (rc == FIFOLOCK_WAITING)
            (void)fifolock_cancel(&lk->lock, &a->w);
        a->state = ST_DONE;
        ctx_uncount(a);
        engine_done(lk);
        restore_exception(exc);
        return PYGEN_ERROR;
    }
    if (rc == 0) {
        a->state = ST_DONE;
        engine_done(lk);
        *result = ctx_handed(a);
        return PYGEN_RETURN;
    }
    if (rc != FIFOLOCK_WAITING) {
        a->state = ST_DONE;
        ctx_uncount(a);
        engine_done(lk);
        if (rc == EDEADLK)
            PyErr_Format(lk->st->deadlock_error,
                         "%zu of lock mode %R can never be granted: even a lock that nobody "
                         "holds refuses them, so it would wait for ever (and everybody "
                         "behind it)",
                         a->n, e->cls ? e->cls : Py_None);
        else
            set_engine_error(rc);
        return PYGEN_ERROR;
    }
    a->state = ST_QUEUED;
    queued_link(lk, a);
    engine_done(lk);
    return acquire_wait(a, result);
}

/*
 * held.convert(to) once awaited: one hold of the context's mode becomes one
 * of `to`, at once or waiting ahead of the queue (fifolock_convert()).
 */
static PySendResult convert_start(AcquireObject *a, PyObject **result)
{
    LockObject *lk = a->lock;
    ContextObject *c = a->ctx;
    EntryObject *to = a->entry;
    PyObject *exc;
    int rc;

    if (check_thread(lk, 1) < 0 || check_not_in_predicate(lk) < 0 || convert_check(c) < 0)
        return PYGEN_ERROR;
    if (to->kind == KIND_PLAIN && to->func == NULL && entry_bind(lk->st, to) < 0)
        return PYGEN_ERROR;
    Py_XSETREF(a->from, (EntryObject *)Py_NewRef(c->cur != NULL ? c->cur : c->entry));

    /* The first question of this call is about the conversion (converts()
       in the engine asks `to` before anything else): if it raises, the
       answer is "no" and the conversion is withdrawn below. */
    lk->convert_first = to->mode->is_compatible == py_is_compatible;
    rc = fifolock_convert(&lk->lock, &a->w, a->from->mode, to->mode, on_granted, a);
    lk->convert_first = 0;
    exc = lk->conv_exc;
    if (exc != NULL && rc != 0) {
        /* Raised about this conversion: the other one that may wait is
           asked only by the grant loop of a switch made at once (rc 0). */
        lk->conv_exc = NULL;
        if (rc == FIFOLOCK_WAITING)
            (void)fifolock_cancel(&lk->lock, &a->w); /* 0: c still holds `from` */
        a->state = ST_DONE;
        engine_done(lk);
        restore_exception(exc);
        return PYGEN_ERROR;
    }
    if (rc == 0) {
        ctx_set_mode(c, to);
        a->state = ST_DONE;
        engine_done(lk);
        *result = Py_NewRef(Py_None);
        return PYGEN_RETURN;
    }
    if (rc != FIFOLOCK_WAITING) {
        a->state = ST_DONE;
        engine_done(lk);
        if (rc == EDEADLK && !fifolock_converting(&lk->lock))
            PyErr_Format(lk->st->deadlock_error,
                         "conversion to %R can never be granted: even a lock that nobody "
                         "else holds refuses it; the context still holds %R",
                         to->cls ? to->cls : Py_None, a->from->cls ? a->from->cls : Py_None);
        else if (rc == EDEADLK)
            PyErr_Format(lk->st->deadlock_error,
                         "conversion to %R would wait while another conversion waits on "
                         "this lock (each would wait for the other for ever); the context "
                         "still holds %R",
                         to->cls ? to->cls : Py_None, a->from->cls ? a->from->cls : Py_None);
        else if (rc == EPERM)
            PyErr_Format(PyExc_RuntimeError,
                         "conversion from lock mode %R, which this context does not hold",
                         a->from->cls ? a->from->cls : Py_None);
        else
            set_engine_error(rc);
        return PYGEN_ERROR;
    }
    a->state = ST_QUEUED;
    lk->conv = a;
    c->converting = 1;
    queued_link(lk, a);
    engine_done(lk);
    return acquire_wait(a, result);
}

static PySendResult acquire_am_send(AcquireObject *a, PyObject *arg, PyObject **result)
{
    (void)arg;
    switch (a->state) {
    case ST_INIT:
        return acquire_start(a, result);
    case ST_QUEUED:
        /* Woken while still queued: someone else resolved our future. */
        return acquire_wait(a, result);
    case ST_GRANTED:
        a->state = ST_DONE;
        Py_CLEAR(a->fut);
        *result = ctx_handed(a);
        return PYGEN_RETURN;
    case ST_FAILED:
        a->state = ST_DONE;
        ctx_uncount(a);
        Py_CLEAR(a->fut);
        restore_exception(a->ex);
        a->ex = NULL;
        return PYGEN_ERROR;
    default:
        PyErr_SetString(PyExc_RuntimeError, "cannot reuse an already awaited lock acquisition");
        return PYGEN_ERROR;
    }
}

/* Raises StopIteration(value) for a value that is not None (stolen);
   None needs no exception (a bare return from iternext). */
static void return_value(PyObject *value)
{
    PyObject *stop;

    if (value == Py_None) {
        Py_DECREF(value);
        return;
    }
    stop = PyObject_CallOneArg(PyExc_StopIteration, value);
    Py_DECREF(value);
    if (stop != NULL) {
        PyErr_SetObject(PyExc_StopIteration, stop);
        Py_DECREF(stop);
    }
}

static PyObject *acquire_iternext(AcquireObject *a)
{
    PyObject *result = NULL;
    PySendResult r = acquire_am_send(a, Py_None, &result);

    if (r == PYGEN_RETURN)
        return_value(result);
    return r == PYGEN_NEXT ? result : NULL;
}

static PyObject *acquire_send(AcquireObject *a, PyObject *arg)
{
    PyObject *result = NULL;
    PySendResult r = acquire_am_send(a, arg, &result);

    if (r == PYGEN_NEXT)
        return result;
    if (r == PYGEN_RETURN) {
        return_value(result);
        if (!PyErr_Occurred())
            PyErr_SetNone(PyExc_StopIteration);
    }
    return NULL;
}

/* throw(value) or throw(type[, value[, traceback]]): give back, then raise. */
static PyObject *acquire_throw(AcquireObject *a, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *type, *value = NULL, *tb = NULL;

    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "throw() takes 1 to 3 arguments");
        return NULL;
    }
    type = args[0];
    if (nargs > 1 && args[1] != Py_None)
        value = args[1];
    if (nargs > 2 && args[2] != Py_None)
        tb = args[2];
    if (tb != NULL && !PyTraceBack_Check(tb)) {
        PyErr_SetString(PyExc_TypeError, "throw() third argument must be a traceback object");
        return NULL;
    }
    abandon(a);
    if (PyExceptionInstance_Check(type)) {
        if (value != NULL) {
            PyErr_SetString(PyExc_TypeError, "instance exception may not have a separate value");
            return NULL;
        }
        value = type;
        type = (PyObject *)Py_TYPE(value);
        PyErr_SetObject(type, value);
    } else if (PyExceptionClass_Check(type)) {
        if (value != NULL)
            PyErr_SetObject(type, value);
        else
            PyErr_SetNone(type);
    } else {
        PyErr_Format(PyExc_TypeError,
                     "exceptions must be classes or instances deriving from BaseException, "
                     "not %s",
                     Py_TYPE(type)->tp_name);
        return NULL;
    }
    if (tb != NULL) {
        PyObject *exc = take_exception();
        if (exc != NULL)
            PyException_SetTraceback(exc, tb);
        restore_exception(exc);
    }
    return NULL;
}

static PyObject *acquire_close(AcquireObject *a, PyObject *unused)
{
    (void)unused;
    abandon(a);
    Py_RETURN_NONE;
}

static PyObject *acquire_await(AcquireObject *a)
{
    return Py_NewRef(a);
}

static void acquire_finalize(AcquireObject *a)
{
    PyObject *saved;

    if (a->state == ST_DONE || a->lock == NULL)
        return;
    saved = take_exception();
    abandon(a);
    if (saved != NULL)
        restore_exception(saved);
}

static int acquire_traverse(AcquireObject *a, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(a));
    Py_VISIT(a->lock);
    Py_VISIT(a->entry);
    Py_VISIT(a->from);
    Py_VISIT(a->ctx);
    Py_VISIT(a->fut);
    Py_VISIT(a->ex);
    return 0;
}

static int acquire_clear(AcquireObject *a)
{
    Py_CLEAR(a->fut);
    Py_CLEAR(a->ex);
    /* Queued or holding, it needs both to give them back (its finalizer,
       which the collector runs first, normally has). */
    if (a->state != ST_QUEUED && a->state != ST_GRANTED) {
        ctx_uncount(a);
        Py_CLEAR(a->lock);
        Py_CLEAR(a->entry);
        Py_CLEAR(a->from);
        Py_CLEAR(a->ctx);
    }
    return 0;
}

/*
 * An Acquire lives for one `async with`: the lock keeps the memory of one
 * dead Acquire for the next, as it does a context's (context_dealloc). Only
 * one whose finalizer never ran: CPython marks a finalized object for good,
 * and would not run the finalizer of the next use. The finalizer has nothing
 * to do for a finished acquisition (acquire_finalize), so one that dies
 * finished by its reference count is not asked to.
 */
static void acquire_dealloc(AcquireObject *a)
{
    PyTypeObject *tp = Py_TYPE(a);
    LockObject *lk = a->lock;

    /* Still tracked, as a resurrected object must be (CPython's generators
       do the same); untracked before anything is cleared. */
    if (a->state != ST_DONE && lk != NULL &&
        PyObject_CallFinalizerFromDealloc((PyObject *)a) < 0)
        return; /* resurrected: deferred until a predicate returns */
    PyObject_GC_UnTrack(a);
    Py_CLEAR(a->fut);
    Py_CLEAR(a->ex);
    ctx_uncount(a);
    Py_CLEAR(a->entry);
    Py_CLEAR(a->from);
    Py_CLEAR(a->ctx);
    if (lk != NULL && lk->spare_acq == NULL && tp == lk->st->acquire_type &&
        !PyObject_GC_IsFinalized((PyObject *)a)) {
        a->lock = NULL;
        lk->spare_acq = a;
        Py_DECREF(lk);
    } else {
        Py_CLEAR(a->lock);
        tp->tp_free(a);
    }
    Py_DECREF(tp);
}

static PyMethodDef acquire_methods[] = {
    { "send", (PyCFunction)acquire_send, METH_O, NULL },
    { "throw", (PyCFunction)(void (*)(void))acquire_throw, METH_FASTCALL, NULL },
    { "close", (PyCFunction)acquire_close, METH_NOARGS, NULL },
    { NULL, NULL, 0, NULL },
};

static PyType_Slot acquire_slots[] = {
    { Py_tp_doc, (void *)"An acquisition of a FifoLock in progress: await it once." },
    { Py_tp_dealloc, acquire_dealloc },
    { Py_tp_finalize, acquire_finalize },
    { Py_tp_traverse, acquire_traverse },
    { Py_tp_clear, acquire_clear },
    { Py_tp_iter, PyObject_SelfIter },
    { Py_tp_iternext, acquire_iternext },
    { Py_tp_methods, acquire_methods },
    { Py_am_await, acquire_await },
    { Py_am_send, acquire_am_send },
    { 0, NULL },
};

static PyType_Spec acquire_spec = {
    .name = "fifolock._fifolock.Acquire",
    .basicsize = sizeof(AcquireObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = acquire_slots,
};

/* ---- Done: what __aexit__ returns --------------------------------------- */

static PyObject *done_await(PyObject *self)
{
    return Py_NewRef(self);
}

static PySendResult done_am_send(PyObject *self, PyObject *arg, PyObject **result)
{
    (void)self;
    (void)arg;
    *result = Py_NewRef(Py_None);
    return PYGEN_RETURN;
}

static PyObject *done_iternext(PyObject *self)
{
    (void)self;
    return NULL;
}

static PyObject *done_send(PyObject *self, PyObject *arg)
{
    (void)self;
    (void)arg;
    PyErr_SetNone(PyExc_StopIteration);
    return NULL;
}

static PyObject *done_close(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    Py_RETURN_NONE;
}

static void done_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef done_methods[] = {
    { "send", (PyCFunction)done_send, METH_O, NULL },
    { "close", (PyCFunction)done_close, METH_NOARGS, NULL },
    { NULL, NULL, 0, NULL },
};

static PyType_Slot done_slots[] = {
    { Py_tp_dealloc, done_dealloc },
    { Py_tp_iter, PyObject_SelfIter },
    { Py_tp_iternext, done_iternext },
    { Py_tp_methods, done_methods },
    { Py_am_await, done_await },
    { Py_am_send, done_am_send },
    { 0, NULL },
};

static PyType_Spec done_spec = {
    .name = "fifolock._fifolock.Done",
    .basicsize = sizeof(PyObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = done_slots,
};

/* ---- LockContext ---------------------------------------------------------- */

static AcquireObject *acquire_new(ContextObject *c, EntryObject *e, int convert)
{
    LockObject *lk = c->lock;
    AcquireObject *a = lk->spare_acq;

    if (a != NULL) {
        lk->spare_acq = NULL;
        (void)PyObject_Init((PyObject *)a, lk->st->acquire_type);
    } else {
        a = PyObject_GC_New(AcquireObject, lk->st->acquire_type);
        if (a == NULL)
            return NULL;
    }
    memset(&a->w, 0, sizeof a->w);
    a->lock = (LockObject *)Py_NewRef(c->lock);
    a->entry = (EntryObject *)Py_NewRef(e);
    a->from = NULL;
    a->ctx = (ContextObject *)Py_NewRef(c);
    a->n = convert ? 1 : c->n;
    a->fut = NULL;
    a->ex = NULL;
    a->qprev = a->qnext = a->defer_next = NULL;
    a->state = ST_INIT;
    a->abandoned = 0;
    a->deferred = 0;
    a->counted = 0;
    a->convert = (unsigned char)convert;
    PyObject_GC_Track(a);
    return a;
}

static PyObject *context_aenter(ContextObject *c, PyObject *unused)
{
    (void)unused;
    if (c->lock == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "this lock context was cleared");
        return NULL;
    }
    return (PyObject *)acquire_new(c, c->entry, 0);
}

/* 0 if the context's hold may be converted now, else -1 with an exception. */
static int convert_check(ContextObject *c)
{
    if (c->lock == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "this lock context was cleared");
        return -1;
    }
    if (c->n != 1) {
        PyErr_Format(PyExc_ValueError,
                     "convert() needs a context of one hold, not n=%zu: convert one of "
                     "lock(mode) instead",
                     c->n);
        return -1;
    }
    if (c->holding == 0) {
        PyErr_Format(PyExc_RuntimeError,
                     "convert() of %R outside its async with: it holds nothing", c);
        return -1;
    }
    if (c->holding != 1 || c->pending != 0) {
        PyErr_Format(PyExc_RuntimeError,
                     "convert() of %R, which more than one async with uses at once: "
                     "whose hold? Use one lock(mode) per async with",
                     c);
        return -1;
    }
    if (c->converting) {
        PyErr_Format(PyExc_RuntimeError, "a conversion of %R is already waiting", c);
        return -1;
    }
    return 0;
}

static PyObject *context_convert(ContextObject *c, PyObject *mode)
{
    EntryObject *e;
    AcquireObject *a;

    if (convert_check(c) < 0)
        return NULL;
    e = entry_get(c->lock, mode);
    if (e == NULL)
        return NULL;
    a = acquire_new(c, e, 1);
    Py_DECREF(e);
    return (PyObject *)a;
}

static PyObject *context_aexit(ContextObject *c, PyObject *const *args, Py_ssize_t nargs)
{
    LockObject *lk = c->lock;
    EntryObject *e = c->cur != NULL ? c->cur : c->entry;
    int rc;

    if (lk == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "this lock context was cleared");
        return NULL;
    }
    /* A coroutine closed (GeneratorExit) by the collector or by hand, with
       whatever loop running or none, gives its hold back all the same. */
    if (!(nargs >= 1 && PyExceptionClass_Check(args[0]) &&
          PyErr_GivenExceptionMatches(args[0], PyExc_GeneratorExit)) &&
        check_thread(lk, 0) < 0)
        return NULL;
    if (check_not_in_predicate(lk) < 0)
        return NULL;
    rc = fifolock_release_n(&lk->lock, e->mode, c->n);
    if (rc == 0 && c->holding > 0 && --c->holding == 0)
        Py_CLEAR(c->cur);
    engine_done(lk);
    if (rc == EPERM) {
        PyErr_Format(PyExc_RuntimeError,
                     c->converting ? "release of lock mode %R while its conversion waits"
                                   : "release of lock mode %R, which is not held",
                     e->cls ? e->cls : Py_None);
        return NULL;
    }
    if (rc != 0) {
        set_engine_error(rc);
        return NULL;
    }
    return Py_NewRef(lk->st->done);
}

static int context_traverse(ContextObject *c, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(c));
    Py_VISIT(c->lock);
    Py_VISIT(c->entry);
    Py_VISIT(c->cur);
    return 0;
}

static int context_clear(ContextObject *c)
{
    Py_CLEAR(c->lock);
    Py_CLEAR(c->entry);
    Py_CLEAR(c->cur);
    return 0;
}

/*
 * `async with lock(mode)` makes a context per use: the lock keeps the memory
 * of one dead context for the next lock(mode), as CPython's free lists do
 * (a context has no finalizer whose "already run" mark would stay behind).
 * Parked before the context drops its lock reference, so the lock is alive
 * to take it; freed by the lock.
 */
static void context_dealloc(ContextObject *c)
{
    PyTypeObject *tp = Py_TYPE(c);
    LockObject *lk = c->lock;

    PyObject_GC_UnTrack(c);
    if (lk != NULL && tp == lk->st->context_type) {
        c->lock = NULL; /* our reference, kept across the clear */
        context_clear(c);
        /* only now: the clear may have run code that freed another context */
        if (lk->spare == NULL)
            lk->spare = c;
        else
            tp->tp_free(c);
        Py_DECREF(lk);
    } else {
        context_clear(c);
        tp->tp_free(c);
    }
    Py_DECREF(tp);
}

static PyObject *context_repr(ContextObject *c)
{
    return PyUnicode_FromFormat("<fifolock context of %R>",
                                c->entry && c->entry->cls ? c->entry->cls : Py_None);
}

static PyObject *context_get_mode(ContextObject *c, void *closure)
{
    EntryObject *e = c->cur != NULL ? c->cur : c->entry;

    (void)closure;
    return Py_NewRef(e && e->cls ? e->cls : Py_None);
}

static PyObject *context_get_n(ContextObject *c, void *closure)
{
    (void)closure;
    return PyLong_FromSize_t(c->n);
}

static PyObject *context_get_lock(ContextObject *c, void *closure)
{
    (void)closure;
    return Py_NewRef(c->lock ? (PyObject *)c->lock : Py_None);
}

static PyMethodDef context_methods[] = {
    { "__aenter__", (PyCFunction)context_aenter, METH_NOARGS,
      "Wait for the lock in this mode, first in first out." },
    { "__aexit__", (PyCFunction)(void (*)(void))context_aexit, METH_FASTCALL,
      "Release the holds of the mode held now and grant the waiters they made room for." },
    { "convert", (PyCFunction)context_convert, METH_O,
      "convert(mode)\n--\n\n"
      "Awaitable: turns this context's hold into one of mode without letting go\n"
      "(Write to Read; Upgradable to Write). At once if mode may join the other\n"
      "holders; else it waits ahead of the whole queue, keeping the old mode.\n"
      "Cancelled or failed, the context keeps the old mode. DeadlockError if it\n"
      "would wait and mode can never be granted (a lock nobody else holds\n"
      "refuses it) or another conversion waits on the lock. Needs n == 1\n"
      "(ValueError) and a context entered once (RuntimeError otherwise)." },
    { NULL, NULL, 0, NULL },
};

static PyGetSetDef context_getset[] = {
    { "mode", (getter)context_get_mode, NULL,
      "The mode class this context holds (or asks for): after convert(), the new one.",
      NULL },
    { "n", (getter)context_get_n, NULL, "The number of holds it takes at once.", NULL },
    { "lock", (getter)context_get_lock, NULL, "The lock.", NULL },
    { NULL, NULL, NULL, NULL, NULL },
};

static PyType_Slot context_slots[] = {
    { Py_tp_doc, (void *)"lock(Mode, n=1): an async context manager that holds lock in Mode\n"
                         "(n holds at once). `async with lock(Mode) as held:` gives the\n"
                         "context itself: held.convert(Other) converts its hold, held.mode\n"
                         "tells the mode held. Several tasks may use one context at once,\n"
                         "but then none of them may convert." },
    { Py_tp_dealloc, context_dealloc },
    { Py_tp_traverse, context_traverse },
    { Py_tp_clear, context_clear },
    { Py_tp_repr, context_repr },
    { Py_tp_methods, context_methods },
    { Py_tp_getset, context_getset },
    { 0, NULL },
};

static PyType_Spec context_spec = {
    .name = "fifolock._fifolock.LockContext",
    .basicsize = sizeof(ContextObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = context_slots,
};

/* ---- FifoLock ------------------------------------------------------------ */

static PyObject *lock_context(LockObject *lk, PyObject *cls, size_t n)
{
    EntryObject *e = entry_get(lk, cls);
    ContextObject *c;

    if (e == NULL)
        return NULL;
    if (lk->spare != NULL) {
        c = lk->spare;
        lk->spare = NULL;
        (void)PyObject_Init((PyObject *)c, lk->st->context_type);
    } else {
        c = PyObject_GC_New(ContextObject, lk->st->context_type);
        if (c == NULL) {
            Py_DECREF(e);
            return NULL;
        }
    }
    c->lock = (LockObject *)Py_NewRef(lk);
    c->entry = e;
    c->cur = NULL;
    c->n = n;
    c->pending = 0;
    c->holding = 0;
    c->converting = 0;
    PyObject_GC_Track(c);
    return (PyObject *)c;
}


static PyObject *lock_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf,
                                 PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t nkw = kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;
    size_t n;

    if (nargs == 1 && nkw == 0)
        return lock_context((LockObject *)self, args[0], 1);
    if (nargs + nkw != 2 || nargs < 1 ||
        (nkw == 1 && PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "n") != 0)) {
        PyErr_SetString(PyExc_TypeError,
                        "lock(mode, n=1) takes the mode class and an optional n");
        return NULL;
    }
    if (parse_n(args[1], &n) < 0)
        return NULL;
    return lock_context((LockObject *)self, args[0], n);
}

static PyObject *lock_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    modstate *st = state_of_type(type);
    LockObject *lk;

    if (st == NULL)
        return NULL;
    /* object's own rule (object_new): arguments are for a subclass's
       __init__; a __new__ of its own must not pass them up. */
    if (PyTuple_GET_SIZE(args) != 0 || (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0)) {
        if (type->tp_new != lock_new) {
            PyErr_SetString(PyExc_TypeError,
                            "FifoLock.__new__() takes exactly one argument (the type to "
                            "instantiate)");
            return NULL;
        }
        if (type->tp_init == PyBaseObject_Type.tp_init) {
            PyErr_Format(PyExc_TypeError, "%.200s() takes no arguments", type->tp_name);
            return NULL;
        }
    }
    lk = (LockObject *)type->tp_alloc(type, 0);
    if (lk == NULL)
        return NULL;
    lk->vectorcall = lock_vectorcall;
    lk->thread_bound = 0;
    fifolock_init(&lk->lock);
    lk->st = st;
    lk->modes = PyDict_New();
    lk->view = holds_view_new(st->holds_type, lk, &lock_holds_source);
    if (lk->modes == NULL || lk->view == NULL) {
        Py_DECREF(lk);
        return NULL;
    }
    return (PyObject *)lk;
}

/* Drops holds nobody can give back any more (the lock is going away). */
static void lock_drop_holds(LockObject *lk)
{
    const fifolock_mode *mode;
    size_t count;

    if (fifolock_waiting(&lk->lock) != 0)
        return; /* never: waiters keep the lock alive */
    while (fifolock_holds_list(fifolock_holds_of(&lk->lock), &mode, &count, 1) != 0)
        while (count-- > 0)
            (void)fifolock_release(&lk->lock, mode);
}

static int lock_traverse(LockObject *lk, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(lk));
    Py_VISIT(lk->modes);
    Py_VISIT(lk->last);
    Py_VISIT(lk->pred_exc);
    Py_VISIT(lk->conv_exc);
    Py_VISIT(lk->loop);
    for (AcquireObject *a = lk->queued; a != NULL; a = a->qnext)
        Py_VISIT(a);
    for (AcquireObject *a = lk->deferred; a != NULL; a = a->defer_next)
        Py_VISIT(a);
    return 0;
}

static int lock_clear(LockObject *lk)
{
    Py_CLEAR(lk->last);
    Py_CLEAR(lk->pred_exc);
    Py_CLEAR(lk->conv_exc);
    Py_CLEAR(lk->loop); /* garbage: nobody acquires it any more */
    /* Queued Acquires need their entries (the collector has run their
       finalizers, which left the queue, before it clears anything). */
    if (lk->queued == NULL && lk->deferred == NULL && fifolock_waiting(&lk->lock) == 0) {
        lock_drop_holds(lk);
        Py_CLEAR(lk->modes);
    }
    return 0;
}

static void lock_dealloc(LockObject *lk)
{
    PyTypeObject *tp = Py_TYPE(lk);

    PyObject_GC_UnTrack(lk);
    if (lk->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)lk);
    holds_view_detach(lk->view);
    Py_CLEAR(lk->view);
    if (fifolock_waiting(&lk->lock) == 0) {
        lock_drop_holds(lk);
        (void)fifolock_destroy(&lk->lock);
    }
    Py_CLEAR(lk->last);
    Py_CLEAR(lk->pred_exc);
    Py_CLEAR(lk->conv_exc);
    Py_CLEAR(lk->loop);
    Py_CLEAR(lk->modes);
    if (lk->spare != NULL)
        PyObject_GC_Del(lk->spare);
    if (lk->spare_acq != NULL)
        PyObject_GC_Del(lk->spare_acq);
    tp->tp_free(lk);
    Py_DECREF(tp);
}

static PyObject *lock_get_holds(LockObject *lk, void *closure)
{
    (void)closure;
    return holds_defaultdict(lk->st, holds_snapshot(lk));
}

static PyObject *lock_get_waiting(LockObject *lk, void *closure)
{
    (void)closure;
    return PyLong_FromSize_t(fifolock_waiting(&lk->lock));
}

static PyObject *lock_repr(LockObject *lk)
{
    PyObject *d = holds_snapshot(lk), *r;

    if (d == NULL)
        return NULL;
    r = PyUnicode_FromFormat("<%s holds=%R waiting=%zu>", Py_TYPE(lk)->tp_name, d,
                             fifolock_waiting(&lk->lock));
    Py_DECREF(d);
    return r;
}

static PyGetSetDef lock_getset[] = {
    { "holds", (getter)lock_get_holds, NULL,
      "A new collections.defaultdict(int) {mode class: number of holders} of the\n"
      "modes held now: like the holds of is_compatible, it reads 0 for a mode\n"
      "not held. A snapshot: changing it does not change the lock.", NULL },
    { "waiting", (getter)lock_get_waiting, NULL,
      "The number of requests waiting in the queue now.", NULL },
    { NULL, NULL, NULL, NULL, NULL },
};

static PyMemberDef lock_members[] = {
    { "__weaklistoffset__", T_PYSSIZET, offsetof(LockObject, weakreflist), READONLY, NULL },
    { "__vectorcalloffset__", T_PYSSIZET, offsetof(LockObject, vectorcall), READONLY, NULL },
    { NULL, 0, 0, 0, NULL },
};

PyDoc_STRVAR(lock_doc,
"FifoLock()\n"
"--\n"
"\n"
"A first-in-first-out lock whose modes you define.\n"
"\n"
"lock(Mode) is an async context manager that holds the lock in Mode:\n"
"\n"
"    async with lock(Mode):\n"
"        ...\n"
"\n"
"lock(Mode, n=3) takes 3 holds in one request and releases them on exit.\n"
"`async with lock(Upgradable) as held:` gives the context, and\n"
"`await held.convert(Write)` turns its hold into Write without letting go\n"
"(held.mode is the mode held now; see LockContext.convert).\n"
"\n"
"A mode is a class (an asyncio.Future subclass, as in the fifolock package)\n"
"with is_compatible(holds), a staticmethod, classmethod or plain method,\n"
"that answers whether one more holder of Mode may join the current ones;\n"
"holds[M] is the number of holders of M. It must be pure and monotone:\n"
"fewer holders never make a mode incompatible. A request that even a lock\n"
"nobody holds refuses (lock(Semaphore(2), n=3), Write with n=2) can never\n"
"be granted: DeadlockError at once, nothing queued (is_compatible is asked\n"
"once more, with empty holds, when the usual question says no or others\n"
"wait). Requests are granted strictly in the order they were made. A task\n"
"cancelled while waiting leaves the queue;\n"
"one cancelled after the grant but before it resumed gives the hold back.\n"
"An exception raised by is_compatible is raised in the task whose request\n"
"it was asked about; that request leaves the queue and the lock goes on.\n"
"So is a TypeError for an is_compatible that returns an awaitable (an\n"
"async def): a predicate must answer at once.\n"
"\n"
"A lock belongs to one event loop. Its first acquire binds it to its\n"
"thread: acquiring or releasing it from another thread raises RuntimeError\n"
"and changes nothing. Its first wait binds it to the running loop for\n"
"ever, even once that loop has closed, as asyncio.Lock binds itself: a\n"
"request that must wait under another loop raises RuntimeError. Make one\n"
"lock per loop; holds, waiting and repr() may be read from anywhere.");

static PyType_Slot lock_slots[] = {
    { Py_tp_doc, (void *)lock_doc },
    { Py_tp_new, lock_new },
    { Py_tp_dealloc, lock_dealloc },
    { Py_tp_traverse, lock_traverse },
    { Py_tp_clear, lock_clear },
    { Py_tp_call, PyVectorcall_Call },
    { Py_tp_repr, lock_repr },
    { Py_tp_getset, lock_getset },
    { Py_tp_members, lock_members },
    { 0, NULL },
};

static PyType_Spec lock_spec = {
    .name = "fifolock.FifoLock",
    .basicsize = sizeof(LockObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_HAVE_VECTORCALL,
    .slots = lock_slots,
};

/* ---- registration ---------------------------------------------------------- */

int async_lock_init(PyObject *module, modstate *st)
{
#define NEW_TYPE(field, spec)                                                        \
    do {                                                                             \
        st->field = (PyTypeObject *)PyType_FromModuleAndSpec(module, &(spec), NULL); \
        if (st->field == NULL)                                                       \
            return -1;                                                               \
    } while (0)
    NEW_TYPE(lock_type, lock_spec);
    NEW_TYPE(context_type, context_spec);
    NEW_TYPE(acquire_type, acquire_spec);
    st->holds_type = holds_view_type(module, "fifolock.Holds", holds_doc);
    if (st->holds_type == NULL)
        return -1;
    NEW_TYPE(done_type, done_spec);
#undef NEW_TYPE
    st->done = PyObject_New(PyObject, st->done_type);
    if (st->done == NULL)
        return -1;
    if (PyModule_AddType(module, st->lock_type) < 0 ||
        PyModule_AddType(module, st->holds_type) < 0 ||
        PyModule_AddType(module, st->context_type) < 0)
        return -1;
    return 0;
}
