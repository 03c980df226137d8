/*
 * fifolock._fifolock._ShmLock: the shared-memory lock of the C library
 * (fifolock_shm, src/shm.c; Linux) for Python. fifolock_shm queues, grants
 * and finds the dead; this file passes Python modes to it (cross_mode.c)
 * and turns its answers into Python's. fifolock.ProcessFifoLock
 * (python/fifolock/_beyond.py) builds the `with` and `async with`
 * contexts on it.
 *
 * Modes and the handle
 *
 *   A handle knows the modes it was opened with, for good. The lock opens
 *   one with every ready-made mode but the semaphores, and the classes
 *   given to ProcessFifoLock(path, modes). A request of a mode the handle
 *   does not know (a Semaphore(n), a mode of the user's own) opens a new
 *   handle that knows it too and closes the old one, but only while this
 *   object holds and waits for nothing (`busy` == 0: holds belong to the
 *   handle); else it is ValueError, saying to pass the mode up front.
 *   `mu` serialises those reopenings, taken with the GIL released.
 *
 * Lock order: the library's internal lock, then the GIL (cross_mode.h).
 *   Every fifolock_shm_* call is made with the GIL released.
 *
 * Interrupts
 *
 *   A wait asks interrupted() before each sleep (at most 50 ms): it takes
 *   the GIL and runs the signal handlers (PyErr_CheckSignals(): Ctrl-C
 *   raises KeyboardInterrupt) or, for a wait of an asyncio task on its
 *   worker thread, reads the task's `cancel` event. Interrupted, the
 *   request leaves the queue without a trace (EINTR); a grant that won the
 *   race is given back before the exception is raised.
 */
#include "cross_mode.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "fifolock_shm.h"

#include <pythread.h>
#include <structmember.h>

typedef struct {
    PyObject_HEAD
    fifolock_shm *shm;        /* NULL once closed */
    struct cross_table table; /* modes [0, nopen) are the handle's */
    size_t nopen;
    Py_ssize_t busy;          /* requests waiting or holding, of this object */
    PyObject *path;           /* str */
    PyObject *read_only;      /* tuple of classes declared read-only */
    size_t capacity;
    unsigned permissions;
    PyThread_type_lock mu;    /* (re)opening */
    PyObject *weakreflist;
} ShmLockObject;

/* What a waiting thread is asked before each sleep. */
struct shm_wait {
    PyObject *cancel; /* an object with is_set(), or NULL: signals */
};

static int shm_interrupted(void *arg)
{
    struct shm_wait *w = arg;
    PyGILState_STATE g = PyGILState_Ensure();
    int r = PyErr_Occurred() != NULL;

    if (!r && w->cancel == NULL) {
        r = PyErr_CheckSignals() < 0;
    } else if (!r) {
        PyObject *set = PyObject_CallMethod(w->cancel, "is_set", NULL);
        r = set == NULL || PyObject_IsTrue(set) != 0;
        Py_XDECREF(set);
    }
    PyGILState_Release(g); /* the exception stays with this thread's state */
    return r;
}

/* Raises the exception for error `rc` of a fifolock_shm_* call, with its
   detail (fifolock_shm_last_error() of this thread, read by the caller). */
static void shm_error(modstate *st, int rc, const char *detail, PyObject *cls, size_t n)
{
    const char *sep = detail[0] ? ": " : "";

    switch (rc) {
    case EDEADLK:
        PyErr_Format(st->deadlock_error,
                     "%zu of lock mode %R can never be granted: even a lock that nobody holds "
                     "refuses them",
                     n, cls ? cls : Py_None);
        break;
    case EINVAL:
        PyErr_Format(PyExc_ValueError, "fifolock_shm: %s%s%s", fifolock_strerror(rc), sep,
                     detail);
        break;
    case EPERM:
        PyErr_Format(PyExc_RuntimeError, "fifolock_shm: %s%s%s", fifolock_strerror(rc), sep,
                     detail);
        break;
    case ENOMEM:
        PyErr_NoMemory();
        break;
    default: {
        /* an OSError whose errno is right, for `except OSError as e: e.errno` */
        PyObject *msg = PyUnicode_FromFormat("fifolock_shm: %s%s%s", fifolock_strerror(rc), sep,
                                             detail);
        PyObject *exc = msg ? PyObject_CallFunction(PyExc_OSError, "iN", rc, msg) : NULL;
        if (exc != NULL) {
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
            Py_DECREF(exc);
        }
        break;
    }
    }
}

/* Opens a handle with every mode of the table (GIL released inside);
   0, or -1 with an exception. On success lk->shm is the new handle. */
static int shm_open_table(ShmLockObject *lk)
{
    modstate *st = lk->table.st;
    size_t n = lk->table.n, nro = 0;
    const fifolock_mode **modes = PyMem_Malloc(n * sizeof *modes);
    const fifolock_mode **ro = NULL;
    fifolock_shm_config cfg = FIFOLOCK_SHM_CONFIG_INIT;
    fifolock_shm *shm = PyMem_RawMalloc(sizeof *shm), *old;
    char detail[256];
    const char *path;
    int rc;

    if (lk->read_only != NULL && PyTuple_GET_SIZE(lk->read_only) > 0)
        ro = PyMem_Malloc((size_t)PyTuple_GET_SIZE(lk->read_only) * sizeof *ro);
    if (modes == NULL || shm == NULL ||
        (ro == NULL && lk->read_only != NULL && PyTuple_GET_SIZE(lk->read_only) > 0)) {
        PyMem_Free(modes);
        PyMem_Free(ro);
        PyMem_RawFree(shm);
        PyErr_NoMemory();
        return -1;
    }
    cross_table_modes(&lk->table, modes);
    for (Py_ssize_t i = 0; lk->read_only != NULL && i < PyTuple_GET_SIZE(lk->read_only); i++) {
        struct cross_mode *cm = cross_table_find(&lk->table, PyTuple_GET_ITEM(lk->read_only, i));
        if (cm != NULL)
            ro[nro++] = cm->mode;
    }
    cfg.capacity = lk->capacity;
    cfg.permissions = (mode_t)lk->permissions;
    cfg.read_only = ro;
    cfg.nread_only = nro;
    path = PyUnicode_AsUTF8(lk->path);
    if (path == NULL) {
        PyMem_Free(modes);
        PyMem_Free(ro);
        PyMem_RawFree(shm);
        return -1;
    }
    (void)st;
    Py_BEGIN_ALLOW_THREADS
    rc = fifolock_shm_open_config(shm, path, modes, n, &cfg);
    snprintf(detail, sizeof detail, "%s", rc ? fifolock_shm_last_error() : "");
    Py_END_ALLOW_THREADS
    PyMem_Free(modes);
    PyMem_Free(ro);
    if (rc != 0) {
        PyMem_RawFree(shm);
        if (PyErr_Occurred())
            return -1;
        if (rc == EPROTO)
            PyErr_Format(PyExc_ValueError,
                         "%R: a mode's name and limit are known to the lock file with a "
                         "predicate that answers differently, or a mode of your own takes a "
                         "ready-made mode's name and limit%s%s",
                         lk->path, detail[0] ? ": " : "", detail);
        else if (rc == ENOENT || rc == EACCES || rc == ELOOP || rc == EISDIR || rc == ENOTDIR) {
            /* FileNotFoundError, PermissionError, ... with the path */
            PyObject *exc = PyObject_CallFunction(PyExc_OSError, "isO", rc, strerror(rc),
                                                  lk->path);
            if (exc != NULL) {
                PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
                Py_DECREF(exc);
            }
        } else
            shm_error(st, rc, detail, NULL, 0);
        return -1;
    }
    old = lk->shm;
    lk->shm = shm;
    lk->nopen = n;
    if (old != NULL) {
        Py_BEGIN_ALLOW_THREADS
        (void)fifolock_shm_close(old); /* busy == 0: it holds and waits for nothing */
        Py_END_ALLOW_THREADS
        PyMem_RawFree(old);
    }
    return 0;
}

/* Takes `mu`, the GIL released. */
static void take_mu(ShmLockObject *lk)
{
    if (!PyThread_acquire_lock(lk->mu, NOWAIT_LOCK)) {
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(lk->mu, WAIT_LOCK);
        Py_END_ALLOW_THREADS
    }
}

static int check_open(ShmLockObject *lk)
{
    if (lk->shm == NULL) {
        PyErr_SetString(PyExc_ValueError, "the ProcessFifoLock is closed");
        return -1;
    }
    return 0;
}

/*
 * The handle's C mode of class `cls`, reopening the handle if it does not
 * know it yet (only while this object is idle). NULL with an exception.
 * Called with `mu` held.
 */
static const fifolock_mode *mode_of(ShmLockObject *lk, PyObject *cls)
{
    struct cross_mode *cm;
    size_t before = lk->table.n;
    int added;

    if (check_open(lk) < 0)
        return NULL;
    cm = cross_table_get(&lk->table, cls, FIFOLOCK_SHM_NAME_MAX, &added);
    if (cm == NULL)
        return NULL;
    if (!added)
        return cm->mode;
    if (lk->table.n > FIFOLOCK_SHM_MAX_OPEN_MODES) {
        cross_table_truncate(&lk->table, before);
        PyErr_Format(PyExc_ValueError, "a ProcessFifoLock knows at most %d modes",
                     FIFOLOCK_SHM_MAX_OPEN_MODES);
        return NULL;
    }
    if (lk->busy != 0) {
        cross_table_truncate(&lk->table, before);
        PyErr_Format(PyExc_ValueError,
                     "lock mode %R is new to this ProcessFifoLock, which holds or waits in "
                     "another mode now: its handle learns a new mode only when idle; pass "
                     "every mode up front, ProcessFifoLock(path, modes=[...])",
                     cls);
        return NULL;
    }
    if (shm_open_table(lk) < 0) {
        cross_table_truncate(&lk->table, before);
        return NULL;
    }
    return cm->mode;
}

/* The deaths this thread's EOWNERDEAD reported, as a list of tuples
   (pid, class or None, name, limit, n). */
static PyObject *deaths_list(ShmLockObject *lk, const struct fifolock_shm_death *d, size_t n)
{
    PyObject *list = PyList_New(0);

    for (size_t i = 0; list != NULL && i < n; i++) {
        PyObject *cls = d[i].mode ? cross_table_class_of(&lk->table, d[i].mode) : NULL;
        PyObject *item = Py_BuildValue("(lOsnn)", (long)d[i].pid, cls ? cls : Py_None,
                                       d[i].name, (Py_ssize_t)d[i].limit, (Py_ssize_t)d[i].n);
        if (item == NULL || PyList_Append(list, item) < 0)
            Py_CLEAR(list);
        Py_XDECREF(item);
    }
    return list;
}

static int shm_parse_n(PyObject *obj, size_t *n)
{
    if (obj == NULL) {
        *n = 1;
        return 0;
    }
    *n = PyLong_Check(obj) ? PyLong_AsSize_t(obj) : (size_t)-1;
    if (*n == (size_t)-1 || *n == 0 || *n > FIFOLOCK_SHM_MAX_N) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "n must be an int from 1 to %d, not %R",
                     FIFOLOCK_SHM_MAX_N, obj);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(shm_acquire_doc,
"acquire(mode, n=1, timeout=None, cancel=None)\n--\n\n"
"Takes n holds of mode, waiting with the GIL released. Returns None, or\n"
"(deaths, count) when a holder died before this grant (EOWNERDEAD: held\n"
"too): deaths lists (pid, class or None, name, limit, n). Without\n"
"`cancel` signal handlers run while it waits and their exception is\n"
"raised; with it (an object with is_set()), it gives up with\n"
"InterruptedError once cancel.is_set(). Either way nothing is left queued\n"
"or held. TimeoutError at the timeout; DeadlockError if it could never be\n"
"granted.");

static PyObject *shm_acquire(ShmLockObject *lk, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = { "mode", "n", "timeout", "cancel", NULL };
    PyObject *cls, *n_obj = NULL, *timeout_obj = NULL, *cancel = NULL;
    struct fifolock_shm_death deaths[FIFOLOCK_SHM_REPORT_MAX];
    struct shm_wait w = { NULL };
    const fifolock_mode *mode;
    struct timespec deadline;
    fifolock_shm *shm;
    size_t n, ndeaths = 0;
    char detail[256];
    double timeout;
    int rc;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|OOO:acquire", kwlist, &cls, &n_obj,
                                     &timeout_obj, &cancel))
        return NULL;
    if (shm_parse_n(n_obj, &n) < 0 || parse_timeout(timeout_obj, &timeout) < 0)
        return NULL;
    w.cancel = cancel == Py_None ? NULL : cancel;
    take_mu(lk);
    mode = mode_of(lk, cls);
    if (mode == NULL) {
        PyThread_release_lock(lk->mu);
        return NULL;
    }
    shm = lk->shm;
    lk->busy++; /* from here the handle stays: no reopening while busy */
    PyThread_release_lock(lk->mu);
    if (timeout >= 0)
        deadline_in(timeout, &deadline);
    Py_BEGIN_ALLOW_THREADS
    rc = fifolock_shm_acquire_interruptible(shm, mode, n, timeout >= 0 ? &deadline : NULL,
                                            shm_interrupted, &w);
    if (rc == EOWNERDEAD)
        ndeaths = fifolock_shm_dead_holders(shm, deaths, FIFOLOCK_SHM_REPORT_MAX);
    snprintf(detail, sizeof detail, "%s",
             rc != 0 && rc != EOWNERDEAD ? fifolock_shm_last_error() : "");
    Py_END_ALLOW_THREADS
    if ((rc == 0 || rc == EOWNERDEAD) && PyErr_Occurred()) {
        /* an interrupt lost the race to the grant: give it back */
        Py_BEGIN_ALLOW_THREADS
        (void)fifolock_shm_release_n(shm, mode, n);
        Py_END_ALLOW_THREADS
        lk->busy--;
        return NULL;
    }
    if (rc == 0)
        Py_RETURN_NONE;
    if (rc == EOWNERDEAD) {
        PyObject *list = deaths_list(lk, deaths, ndeaths < FIFOLOCK_SHM_REPORT_MAX
                                                     ? ndeaths : FIFOLOCK_SHM_REPORT_MAX);
        if (list == NULL) {
            Py_BEGIN_ALLOW_THREADS
            (void)fifolock_shm_release_n(shm, mode, n);
            Py_END_ALLOW_THREADS
            lk->busy--;
            return NULL;
        }
        return Py_BuildValue("(Nn)", list, (Py_ssize_t)ndeaths);
    }
    lk->busy--;
    if (PyErr_Occurred())
        return NULL; /* a signal handler raised (EINTR) */
    if (rc == EINTR) {
        PyErr_SetString(PyExc_InterruptedError, "the wait was cancelled");
        return NULL;
    }
    if (rc == ETIMEDOUT) {
        PyObject *secs = PyFloat_FromDouble(timeout);
        if (secs != NULL)
            PyErr_Format(PyExc_TimeoutError, "lock mode %R not granted within %R seconds", cls,
                         secs);
        Py_XDECREF(secs);
        return NULL;
    }
    shm_error(lk->table.st, rc, detail, cls, n);
    return NULL;
}

PyDoc_STRVAR(shm_convert_doc,
"convert(from_mode, to_mode, timeout=None, cancel=None)\n--\n\n"
"Turns one hold of from_mode into one of to_mode without letting go\n"
"(fifolock_shm_convert_interruptible), waiting ahead of the queue with the\n"
"GIL released. Returns (switched, deaths, exc): deaths as acquire()'s\n"
"(None unless a holder died), exc the exception a signal handler raised\n"
"while the switch won the race (raise it after noting the switch).\n"
"Raises, with from_mode still held: TimeoutError, InterruptedError (cancel\n"
"set), DeadlockError (another conversion waits, or to_mode never fits),\n"
"RuntimeError (from_mode not held), or what a signal handler raised.");

static PyObject *shm_convert(ShmLockObject *lk, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = { "from_mode", "to_mode", "timeout", "cancel", NULL };
    PyObject *from_cls, *to_cls, *timeout_obj = NULL, *cancel = NULL, *deaths_obj, *exc;
    struct fifolock_shm_death deaths[FIFOLOCK_SHM_REPORT_MAX];
    struct shm_wait w = { NULL };
    struct cross_mode *from_cm;
    const fifolock_mode *from, *to;
    struct timespec deadline;
    fifolock_shm *shm;
    size_t ndeaths = 0;
    char detail[256];
    double timeout;
    int rc;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|OO:convert", kwlist, &from_cls, &to_cls,
                                     &timeout_obj, &cancel))
        return NULL;
    if (parse_timeout(timeout_obj, &timeout) < 0 || check_open(lk) < 0)
        return NULL;
    w.cancel = cancel == Py_None ? NULL : cancel;
    from_cm = cross_table_find(&lk->table, from_cls);
    if (from_cm == NULL || lk->busy == 0) {
        PyErr_Format(PyExc_RuntimeError, "convert() from lock mode %R, which this "
                     "ProcessFifoLock does not hold", from_cls);
        return NULL;
    }
    from = from_cm->mode;
    take_mu(lk);
    to = mode_of(lk, to_cls); /* busy: never reopens, ValueError for a new mode */
    PyThread_release_lock(lk->mu);
    if (to == NULL)
        return NULL;
    shm = lk->shm;
    if (timeout >= 0)
        deadline_in(timeout, &deadline);
    Py_BEGIN_ALLOW_THREADS
    rc = fifolock_shm_convert_interruptible(shm, from, to, timeout >= 0 ? &deadline : NULL,
                                            shm_interrupted, &w);
    if (rc == EOWNERDEAD)
        ndeaths = fifolock_shm_dead_holders(shm, deaths, FIFOLOCK_SHM_REPORT_MAX);
    snprintf(detail, sizeof detail, "%s",
             rc != 0 && rc != EOWNERDEAD ? fifolock_shm_last_error() : "");
    Py_END_ALLOW_THREADS
    if (rc == 0 || rc == EOWNERDEAD) {
        /* switched; an exception a signal handler raised meanwhile goes to
           the caller, who notes the switch first */
        exc = PyErr_Occurred() ? take_exception() : Py_NewRef(Py_None);
        deaths_obj = Py_NewRef(Py_None);
        if (rc == EOWNERDEAD) {
            PyObject *list = deaths_list(lk, deaths, ndeaths < FIFOLOCK_SHM_REPORT_MAX
                                                         ? ndeaths : FIFOLOCK_SHM_REPORT_MAX);
            Py_DECREF(deaths_obj);
            deaths_obj = list ? Py_BuildValue("(Nn)", list, (Py_ssize_t)ndeaths) : NULL;
            if (deaths_obj == NULL) {
                PyErr_Clear();
                deaths_obj = Py_NewRef(Py_None);
            }
        }
        return Py_BuildValue("(ONN)", Py_True, deaths_obj, exc);
    }
    if (PyErr_Occurred())
        return NULL; /* a signal handler raised (EINTR): from_mode still held */
    if (rc == EINTR) {
        PyErr_SetString(PyExc_InterruptedError, "the conversion was cancelled");
        return NULL;
    }
    if (rc == ETIMEDOUT) {
        PyObject *secs = PyFloat_FromDouble(timeout);
        if (secs != NULL)
            PyErr_Format(PyExc_TimeoutError, "conversion to lock mode %R not made within %R "
                         "seconds", to_cls, secs);
        Py_XDECREF(secs);
        return NULL;
    }
    if (rc == EDEADLK) {
        PyErr_Format(lk->table.st->deadlock_error,
                     "conversion to lock mode %R would wait for ever: another conversion "
                     "waits on this lock, or %R can never be granted",
                     to_cls, to_cls);
        return NULL;
    }
    if (rc == EPERM) {
        PyErr_Format(PyExc_RuntimeError, "convert() from lock mode %R, which this "
                     "ProcessFifoLock does not hold", from_cls);
        return NULL;
    }
    shm_error(lk->table.st, rc, detail, to_cls, 1);
    return NULL;
}

PyDoc_STRVAR(shm_release_doc,
"release(mode, n=1)\n--\n\n"
"Gives back n holds of mode that this object took. RuntimeError if it\n"
"holds fewer (nothing changes).");

static PyObject *shm_release(ShmLockObject *lk, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = { "mode", "n", NULL };
    PyObject *cls, *n_obj = NULL;
    struct cross_mode *cm;
    fifolock_shm *shm;
    size_t n;
    int rc;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O:release", kwlist, &cls, &n_obj))
        return NULL;
    if (shm_parse_n(n_obj, &n) < 0 || check_open(lk) < 0)
        return NULL;
    cm = cross_table_find(&lk->table, cls);
    if (cm == NULL || lk->busy == 0) {
        PyErr_Format(PyExc_RuntimeError, "release of lock mode %R, which this ProcessFifoLock "
                     "does not hold", cls);
        return NULL;
    }
    shm = lk->shm;
    Py_BEGIN_ALLOW_THREADS
    rc = fifolock_shm_release_n(shm, cm->mode, n);
    Py_END_ALLOW_THREADS
    if (rc == EPERM) {
        PyErr_Format(PyExc_RuntimeError, "release of %zu of lock mode %R: this ProcessFifoLock "
                     "holds fewer", n, cls);
        return NULL;
    }
    if (rc != 0) {
        shm_error(lk->table.st, rc, "", cls, n);
        return NULL;
    }
    lk->busy--;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(shm_consistent_doc,
"consistent()\n--\n\n"
"Declares the data repaired after a holder died: later grants no longer\n"
"report owner_dead. Call it holding a mode that may write. RuntimeError if\n"
"this object holds no such mode (nothing changes).");

static PyObject *shm_consistent(ShmLockObject *lk, PyObject *unused)
{
    fifolock_shm *shm;
    int rc;

    (void)unused;
    if (check_open(lk) < 0)
        return NULL;
    shm = lk->shm;
    Py_BEGIN_ALLOW_THREADS
    rc = fifolock_shm_consistent(shm);
    Py_END_ALLOW_THREADS
    if (rc == EPERM) {
        PyErr_SetString(PyExc_RuntimeError,
                        "consistent() needs a hold of a mode that may write (not Read, IS, S "
                        "or a mode declared read-only)");
        return NULL;
    }
    if (rc != 0) {
        shm_error(lk->table.st, rc, "", NULL, 0);
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(shm_close_doc,
"close()\n--\n\n"
"Closes the handle; a closed lock's close() does nothing. RuntimeError if\n"
"this object holds or waits (nothing changes). The file stays.");

static PyObject *shm_close(ShmLockObject *lk, PyObject *unused)
{
    fifolock_shm *shm;
    int rc;

    (void)unused;
    take_mu(lk);
    shm = lk->shm;
    if (shm == NULL) {
        PyThread_release_lock(lk->mu);
        Py_RETURN_NONE;
    }
    if (lk->busy != 0) {
        PyThread_release_lock(lk->mu);
        PyErr_SetString(PyExc_RuntimeError,
                        "close() of a ProcessFifoLock that holds or waits: release first");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = fifolock_shm_close(shm);
    Py_END_ALLOW_THREADS
    if (rc == 0) {
        lk->shm = NULL;
        PyMem_RawFree(shm);
    }
    PyThread_release_lock(lk->mu);
    if (rc != 0) {
        shm_error(lk->table.st, rc, "", NULL, 0);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *shm_waiting(ShmLockObject *lk, PyObject *unused)
{
    fifolock_shm *shm = lk->shm;
    size_t n = 0;

    (void)unused;
    if (check_open(lk) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    n = fifolock_shm_waiting(shm);
    Py_END_ALLOW_THREADS
    return PyLong_FromSize_t(n);
}

static PyObject *shm_held(ShmLockObject *lk, PyObject *cls)
{
    struct cross_mode *cm;
    fifolock_shm *shm = lk->shm;
    size_t n = 0;

    if (check_open(lk) < 0)
        return NULL;
    cm = cross_table_find(&lk->table, cls);
    if (cm == NULL)
        return PyLong_FromLong(0);
    Py_BEGIN_ALLOW_THREADS
    n = fifolock_shm_held(shm, cm->mode);
    Py_END_ALLOW_THREADS
    return PyLong_FromSize_t(n);
}

static int shm_init(ShmLockObject *lk, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = { "path", "modes", "capacity", "permissions", "read_only", NULL };
    PyObject *path, *modes = NULL, *read_only = NULL, *seq = NULL, *key, *value;
    Py_ssize_t capacity = 0, pos = 0;
    unsigned permissions = 0;
    modstate *st = state_of_type(Py_TYPE(lk));
    int added, rc = -1;

    if (st == NULL)
        return -1;
    if (lk->path != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ProcessFifoLock.__init__() runs once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&|OnIO:ProcessFifoLock", kwlist,
                                     PyUnicode_FSDecoder, &path, &modes, &capacity,
                                     &permissions, &read_only))
        return -1;
    lk->path = path;
    if (capacity < 0 || capacity > FIFOLOCK_SHM_MAX_CAPACITY || permissions > 0777) {
        PyErr_Format(PyExc_ValueError, "capacity must be 0 (the default) to %d, permissions "
                                       "0 (0o666) to 0o777",
                     FIFOLOCK_SHM_MAX_CAPACITY);
        return -1;
    }
    lk->capacity = (size_t)capacity;
    lk->permissions = permissions;
    lk->read_only = read_only && read_only != Py_None ? PySequence_Tuple(read_only)
                                                       : PyTuple_New(0);
    if (lk->read_only == NULL)
        return -1;
    cross_table_init(&lk->table, st);
    /* every ready-made mode but the semaphores, then the caller's */
    while (PyDict_Next(st->builtin, &pos, &key, &value))
        if (((EntryObject *)value)->mode->is_compatible != fifolock_semaphore_is_compatible &&
            cross_table_get(&lk->table, key, FIFOLOCK_SHM_NAME_MAX, &added) == NULL)
            return -1;
    if (modes != NULL && modes != Py_None) {
        seq = PySequence_Fast(modes, "modes must be a sequence of mode classes");
        if (seq == NULL)
            return -1;
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++)
            if (cross_table_get(&lk->table, PySequence_Fast_GET_ITEM(seq, i),
                                FIFOLOCK_SHM_NAME_MAX, &added) == NULL)
                goto out;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(lk->read_only); i++)
        if (cross_table_get(&lk->table, PyTuple_GET_ITEM(lk->read_only, i),
                            FIFOLOCK_SHM_NAME_MAX, &added) == NULL)
            goto out;
    if (lk->table.n > FIFOLOCK_SHM_MAX_OPEN_MODES) {
        PyErr_Format(PyExc_ValueError, "a ProcessFifoLock knows at most %d modes",
                     FIFOLOCK_SHM_MAX_OPEN_MODES);
        goto out;
    }
    take_mu(lk);
    rc = shm_open_table(lk);
    PyThread_release_lock(lk->mu);
out:
    Py_XDECREF(seq);
    return rc;
}

static PyObject *shm_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    ShmLockObject *lk = (ShmLockObject *)type->tp_alloc(type, 0);

    (void)args;
    (void)kwargs;
    if (lk == NULL)
        return NULL;
    lk->mu = PyThread_allocate_lock();
    if (lk->mu == NULL) {
        Py_DECREF(lk);
        PyErr_NoMemory();
        return NULL;
    }
    return (PyObject *)lk;
}

static int shm_traverse(ShmLockObject *lk, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(lk));
    Py_VISIT(lk->path);
    Py_VISIT(lk->read_only);
    return cross_table_traverse(&lk->table, visit, arg);
}

static int shm_clear(ShmLockObject *lk)
{
    Py_CLEAR(lk->read_only);
    return 0;
}

static void shm_dealloc(ShmLockObject *lk)
{
    PyTypeObject *tp = Py_TYPE(lk);
    fifolock_shm *shm = lk->shm;

    PyObject_GC_UnTrack(lk);
    if (lk->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)lk);
    if (shm != NULL) {
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = fifolock_shm_close(shm);
        Py_END_ALLOW_THREADS
        /* Held by a context that is gone: the handle stays open, and its
           holds with it, until the process exits; its modes too. */
        if (rc != 0)
            lk->table.modes = NULL, lk->table.n = 0;
        else
            PyMem_RawFree(shm);
    }
    cross_table_clear(&lk->table);
    Py_CLEAR(lk->path);
    Py_CLEAR(lk->read_only);
    if (lk->mu != NULL)
        PyThread_free_lock(lk->mu);
    tp->tp_free(lk);
    Py_DECREF(tp);
}

static PyObject *shm_get_path(ShmLockObject *lk, void *unused)
{
    (void)unused;
    return Py_NewRef(lk->path ? lk->path : Py_None);
}

static PyObject *shm_get_closed(ShmLockObject *lk, void *unused)
{
    (void)unused;
    return PyBool_FromLong(lk->shm == NULL);
}

static PyMethodDef shm_methods[] = {
    { "acquire", (PyCFunction)(void (*)(void))shm_acquire, METH_VARARGS | METH_KEYWORDS,
      shm_acquire_doc },
    { "release", (PyCFunction)(void (*)(void))shm_release, METH_VARARGS | METH_KEYWORDS,
      shm_release_doc },
    { "convert", (PyCFunction)(void (*)(void))shm_convert, METH_VARARGS | METH_KEYWORDS,
      shm_convert_doc },
    { "consistent", (PyCFunction)shm_consistent, METH_NOARGS, shm_consistent_doc },
    { "close", (PyCFunction)shm_close, METH_NOARGS, shm_close_doc },
    { "waiting", (PyCFunction)shm_waiting, METH_NOARGS,
      "waiting()\n--\n\nRequests waiting right now, of all processes." },
    { "held", (PyCFunction)shm_held, METH_O,
      "held(mode)\n--\n\nHolds of mode right now, of all processes." },
    { NULL, NULL, 0, NULL },
};

static PyGetSetDef shm_getset[] = {
    { "path", (getter)shm_get_path, NULL, "The lock file's path.", NULL },
    { "closed", (getter)shm_get_closed, NULL, "True once close() ran.", NULL },
    { NULL, NULL, NULL, NULL, NULL },
};

static PyMemberDef shm_members[] = {
    { "__weaklistoffset__", T_PYSSIZET, offsetof(ShmLockObject, weakreflist), READONLY, NULL },
    { NULL, 0, 0, 0, NULL },
};

static PyType_Slot shm_slots[] = {
    { Py_tp_doc, "_ShmLock(path, modes=(), capacity=0, permissions=0, read_only=())\n--\n\n"
                 "The shared-memory lock file at path (fifolock_shm): the core of\n"
                 "fifolock.ProcessFifoLock." },
    { Py_tp_new, shm_new },
    { Py_tp_init, shm_init },
    { Py_tp_dealloc, shm_dealloc },
    { Py_tp_traverse, shm_traverse },
    { Py_tp_clear, shm_clear },
    { Py_tp_methods, shm_methods },
    { Py_tp_getset, shm_getset },
    { Py_tp_members, shm_members },
    { 0, NULL },
};

static PyType_Spec shm_spec = {
    .name = "fifolock._fifolock._ShmLock",
    .basicsize = sizeof(ShmLockObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = shm_slots,
};

int process_lock_init(PyObject *module, modstate *st)
{
    PyTypeObject *tp = (PyTypeObject *)PyType_FromModuleAndSpec(module, &shm_spec, NULL);
    int rc;

    (void)st;
    if (tp == NULL)
        return -1;
    rc = PyModule_AddType(module, tp);
    Py_DECREF(tp);
    return rc;
}
