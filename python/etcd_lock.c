/*
 * fifolock._fifolock._EtcdSession: a session of the etcd lock of the C
 * library (fifolock_etcd, src/etcd/) for Python, and
 * fifolock.LockLostError. fifolock.EtcdSession (python/fifolock/_beyond.py)
 * builds the `with` and `async with` contexts on it.
 *
 * Modes: a session knows every ready-made mode by name (a Semaphore(n) as
 * semaphore of n); a mode of the user's own must be given when the session
 * opens (`modes`), and crosses by its `name` and `limit` (cross_mode.h).
 *
 * Lock order: the library's internal locks, then the GIL. Every
 * fifolock_etcd_* call that may wait is made with the GIL released; the
 * lost callback (on the session's background thread) takes the GIL to call
 * `on_lost`, so close() (which stops that thread) runs with it released.
 *
 * Without the library, fifolock_etcd built in (libcurl or json-c missing
 * when the extension was built), the type is not made and EtcdSession says
 * so on use.
 */
#include "cross_mode.h"

#ifdef FIFOLOCK_PY_ETCD
#include <errno.h>
#include <string.h>
#include <time.h>

#include "fifolock_etcd.h"

#include <structmember.h>

/* etcd's names of modes need no more than the shared-memory lock's */
#define ETCD_NAME_MAX CROSS_NAME_MAX

typedef struct ReqObject ReqObject;

typedef struct {
    PyObject_HEAD
    fifolock_etcd *s;         /* NULL once closed */
    struct cross_table table;
    PyObject *on_lost;        /* callable(name, token, reason) or None */
    PyObject *lost_error;     /* fifolock.LockLostError */
    Py_ssize_t busy;          /* calls under way with the GIL released */
    PyObject *pending;        /* set: the async requests not yet reported */
    ReqObject *done_head;     /* reported by done() inside process(), in order */
    ReqObject **done_tail;
    PyObject *weakreflist;
} EtcdObject;

/*
 * An async request (fifolock_etcd_acquire_async()). The session's
 * `pending` set keeps it alive until it is reported or cancelled. done()
 * runs inside fifolock_etcd_process(), which process() calls with the GIL
 * released: it only records the outcome and links the request into the
 * session's done list (no Python); process() hands the list to Python once
 * the library's call has returned (decide, then call out).
 */
enum { REQ_PENDING, REQ_REPORTED, REQ_CANCELLED, REQ_CLOSED };

struct ReqObject {
    PyObject_HEAD
    fifolock_etcd_request *req; /* the library's, while REQ_PENDING */
    EtcdObject *session;        /* strong */
    int state;
    int err;                    /* once reported: 0 granted, else the error */
    int64_t token;
    PyObject *name, *mode;      /* for messages */
    size_t n;
    ReqObject *next_done;
};

static void pending_closed(EtcdObject *so);

/* The session's background thread: a hold was lost. */
static void etcd_lost(fifolock_etcd *session, const char *name, int64_t token, int reason,
                      void *arg)
{
    EtcdObject *so = arg;
    PyGILState_STATE g;
    PyObject *r;

    (void)session;
    if (!Py_IsInitialized())
        return;
    g = PyGILState_Ensure();
    if (so->on_lost != NULL && so->on_lost != Py_None) {
        r = PyObject_CallFunction(so->on_lost, "sLi", name, (long long)token, reason);
        if (r == NULL)
            PyErr_WriteUnraisable(so->on_lost);
        Py_XDECREF(r);
    }
    PyGILState_Release(g);
}

static void etcd_error(EtcdObject *so, int rc, const char *detail, PyObject *cls, size_t n)
{
    const char *sep = detail[0] ? ": " : "";
    PyObject *msg, *exc;

    switch (rc) {
    case EDEADLK:
        PyErr_Format(so->table.st->deadlock_error,
                     "%zu of lock mode %R can never be granted: even a lock that nobody holds "
                     "refuses them",
                     n, cls ? cls : Py_None);
        return;
    case EINVAL:
        PyErr_Format(PyExc_ValueError, "fifolock_etcd: %s%s%s", fifolock_etcd_strerror(rc), sep,
                     detail);
        return;
    case EPERM:
        PyErr_Format(PyExc_RuntimeError, "fifolock_etcd: %s%s%s", fifolock_etcd_strerror(rc),
                     sep, detail);
        return;
    case ENOLCK:
        PyErr_Format(so->lost_error, "fifolock_etcd: %s%s%s", fifolock_etcd_strerror(rc), sep,
                     detail);
        return;
    case ENOMEM:
        PyErr_NoMemory();
        return;
    default:
        /* OSError with its errno: ConnectionRefusedError, TimeoutError, ... */
        msg = PyUnicode_FromFormat("fifolock_etcd: %s%s%s", fifolock_etcd_strerror(rc), sep,
                                   detail);
        exc = msg ? PyObject_CallFunction(PyExc_OSError, "iN", rc, msg) : NULL;
        if (exc != NULL) {
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
            Py_DECREF(exc);
        }
        return;
    }
}

static int check_open(EtcdObject *so)
{
    if (so->s == NULL) {
        PyErr_SetString(PyExc_ValueError, "the EtcdSession is closed");
        return -1;
    }
    return 0;
}

/* The session's C mode of `cls`: a ready-made one, or one given at open. */
static const fifolock_mode *etcd_mode_of(EtcdObject *so, PyObject *cls)
{
    struct cross_mode *cm = cross_table_find(&so->table, cls);
    PyObject *e;

    if (cm != NULL)
        return cm->mode;
    e = PyDict_GetItemWithError(so->table.st->builtin, cls);
    if (e != NULL)
        return ((EntryObject *)e)->mode;
    if (!PyErr_Occurred())
        PyErr_Format(PyExc_ValueError,
                     "lock mode %R is not known to this EtcdSession: a session knows the "
                     "ready-made modes and those given when it opens, "
                     "EtcdSession(endpoints, modes=[...])",
                     cls);
    return NULL;
}

static int etcd_parse_n(PyObject *obj, size_t *n)
{
    if (obj == NULL) {
        *n = 1;
        return 0;
    }
    *n = PyLong_Check(obj) ? PyLong_AsSize_t(obj) : (size_t)-1;
    if (*n == (size_t)-1 || *n == 0 || *n > 65536) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "n must be an int from 1 to 65536, not %R", obj);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(etcd_acquire_doc,
"acquire(name, mode, n=1, timeout=None)\n--\n\n"
"Takes n holds of mode on the lock `name`, waiting with the GIL released;\n"
"returns the fencing token. TimeoutError at the timeout, InterruptedError\n"
"if interrupt() ended the wait: nothing is left queued either way.");

static PyObject *etcd_acquire(EtcdObject *so, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = { "name", "mode", "n", "timeout", NULL };
    PyObject *cls, *n_obj = NULL, *timeout_obj = NULL;
    const fifolock_mode *mode;
    struct timespec deadline;
    const char *name;
    char detail[256];
    int64_t token = 0;
    double timeout;
    size_t n;
    int rc;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "sO|OO:acquire", kwlist, &name, &cls, &n_obj,
                                     &timeout_obj))
        return NULL;
    if (etcd_parse_n(n_obj, &n) < 0 || parse_timeout(timeout_obj, &timeout) < 0 ||
        check_open(so) < 0)
        return NULL;
    mode = etcd_mode_of(so, cls);
    if (mode == NULL)
        return NULL;
    if (timeout >= 0)
        deadline_in(timeout, &deadline);
    so->busy++;
    Py_BEGIN_ALLOW_THREADS
    rc = fifolock_etcd_acquire_n(so->s, name, mode, n, timeout >= 0 ? &deadline : NULL, &token);
    snprintf(detail, sizeof detail, "%s", rc ? fifolock_etcd_last_error() : "");
    Py_END_ALLOW_THREADS
    so->busy--;
    if (rc == 0)
        return PyLong_FromLongLong((long long)token);
    if (rc == ETIMEDOUT) {
        PyObject *secs = PyFloat_FromDouble(timeout);
        if (secs != NULL)
            PyErr_Format(PyExc_TimeoutError, "lock mode %R of %s not granted within %R seconds",
                         cls, name, secs);
        Py_XDECREF(secs);
        return NULL;
    }
    if (rc == EINTR) {
        PyErr_SetString(PyExc_InterruptedError, "the wait was interrupted");
        return NULL;
    }
    etcd_error(so, rc, detail, cls, n);
    return NULL;
}

static PyObject *etcd_release(EtcdObject *so, PyObject *args)
{
    const char *name;
    long long token;
    char detail[256];
    int rc;

    if (!PyArg_ParseTuple(args, "sL:release", &name, &token) || check_open(so) < 0)
        return NULL;
    so->busy++;
    Py_BEGIN_ALLOW_THREADS
    rc = fifolock_etcd_release(so->s, name, (int64_t)token);
    snprintf(detail, sizeof detail, "%s", rc ? fifolock_etcd_last_error() : "");
    Py_END_ALLOW_THREADS
    so->busy--;
    if (rc != 0) {
        etcd_error(so, rc, detail, NULL, 0);
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(etcd_convert_doc,
"convert(name, token, to_mode, timeout=None)\n--\n\n"
"Turns the hold of name granted with token into one of to_mode without\n"
"letting go (fifolock_etcd_timed_convert), waiting with the GIL released;\n"
"returns the hold's new fencing token. TimeoutError, InterruptedError,\n"
"DeadlockError, RuntimeError (no such hold): the old mode is still held\n"
"under the old token. LockLostError: nothing is held.");

static PyObject *etcd_convert(EtcdObject *so, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = { "name", "token", "to_mode", "timeout", NULL };
    PyObject *cls, *timeout_obj = NULL;
    const fifolock_mode *mode;
    struct timespec deadline;
    long long token;
    int64_t new_token = 0;
    const char *name;
    char detail[256];
    double timeout;
    int rc;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "sLO|O:convert", kwlist, &name, &token, &cls,
                                     &timeout_obj))
        return NULL;
    if (parse_timeout(timeout_obj, &timeout) < 0 || check_open(so) < 0)
        return NULL;
    mode = etcd_mode_of(so, cls);
    if (mode == NULL)
        return NULL;
    if (timeout >= 0)
        deadline_in(timeout, &deadline);
    so->busy++;
    Py_BEGIN_ALLOW_THREADS
    rc = fifolock_etcd_timed_convert(so->s, name, (int64_t)token, mode,
                                     timeout >= 0 ? &deadline : NULL, &new_token);
    snprintf(detail, sizeof detail, "%s", rc ? fifolock_etcd_last_error() : "");
    Py_END_ALLOW_THREADS
    so->busy--;
    if (rc == 0)
        return PyLong_FromLongLong((long long)new_token);
    if (rc == EINTR) {
        PyErr_SetString(PyExc_InterruptedError, "the conversion was interrupted");
        return NULL;
    }
    if (rc == ETIMEDOUT) {
        PyErr_Format(PyExc_TimeoutError, "conversion to lock mode %R of %s not made in time",
                     cls, name);
        return NULL;
    }
    if (rc == EDEADLK) {
        PyErr_Format(so->table.st->deadlock_error,
                     "conversion to lock mode %R would wait for ever: another conversion "
                     "waits on %s, or %R can never be granted",
                     cls, name, cls);
        return NULL;
    }
    etcd_error(so, rc, detail, cls, 1);
    return NULL;
}

PyDoc_STRVAR(etcd_check_doc,
"check(name, token)\n--\n\n"
"Returns the CLOCK_BOOTTIME second until which the hold is safe, or raises\n"
"LockLostError (lost, or no keepalive acknowledged within the TTL: maybe\n"
"lost). Asks no server.");

static PyObject *etcd_check(EtcdObject *so, PyObject *args)
{
    struct timespec until = { 0, 0 };
    const char *name;
    long long token;
    int rc;

    if (!PyArg_ParseTuple(args, "sL:check", &name, &token) || check_open(so) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = fifolock_etcd_check(so->s, name, (int64_t)token, &until);
    Py_END_ALLOW_THREADS
    if (rc == ENOLCK || rc == ETIMEDOUT) {
        PyErr_Format(so->lost_error,
                     rc == ENOLCK ? "the hold of %s (token %lld) was lost: its lease or its "
                                    "entry is gone"
                                  : "the hold of %s (token %lld) may be lost: no keepalive "
                                    "was acknowledged within the lease's TTL",
                     name, token);
        return NULL;
    }
    if (rc != 0) {
        etcd_error(so, rc, "", NULL, 0);
        return NULL;
    }
    return PyFloat_FromDouble((double)until.tv_sec + until.tv_nsec * 1e-9);
}

static PyObject *etcd_key(EtcdObject *so, PyObject *args)
{
    const char *name;
    long long token;
    char buf[1024];
    int rc;

    if (!PyArg_ParseTuple(args, "sL:key", &name, &token) || check_open(so) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = fifolock_etcd_key(so->s, name, (int64_t)token, buf, sizeof buf);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        etcd_error(so, rc, "", NULL, 0);
        return NULL;
    }
    return PyUnicode_FromString(buf);
}

static PyObject *etcd_interrupt(EtcdObject *so, PyObject *unused)
{
    (void)unused;
    if (check_open(so) < 0)
        return NULL;
    (void)fifolock_etcd_interrupt(so->s); /* async-signal-safe: never waits */
    Py_RETURN_NONE;
}

static PyObject *etcd_clear_interrupt(EtcdObject *so, PyObject *unused)
{
    (void)unused;
    if (check_open(so) < 0)
        return NULL;
    (void)fifolock_etcd_clear_interrupt(so->s);
    Py_RETURN_NONE;
}

static PyObject *etcd_close(EtcdObject *so, PyObject *unused)
{
    fifolock_etcd *s = so->s;
    char detail[256];
    int rc;

    (void)unused;
    if (s == NULL)
        Py_RETURN_NONE;
    if (so->busy != 0) {
        PyErr_SetString(PyExc_RuntimeError,
                        "close() of an EtcdSession while a call on it waits");
        return NULL;
    }
    so->s = NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = fifolock_etcd_close(s);
    snprintf(detail, sizeof detail, "%s", rc ? fifolock_etcd_last_error() : "");
    Py_END_ALLOW_THREADS
    pending_closed(so);
    if (rc != 0) {
        /* freed all the same; its entries vanish when the lease expires */
        etcd_error(so, rc, detail, NULL, 0);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *etcd_get_closed(EtcdObject *so, void *unused)
{
    (void)unused;
    return PyBool_FromLong(so->s == NULL);
}

/* A str argument, or NULL for None; -1 with an exception. */
static int opt_str(PyObject *obj, const char **out)
{
    *out = NULL;
    if (obj == NULL || obj == Py_None)
        return 0;
    if (PyUnicode_Check(obj)) {
        *out = PyUnicode_AsUTF8(obj);
        return *out ? 0 : -1;
    }
    if (PyBytes_Check(obj)) {
        *out = PyBytes_AS_STRING(obj);
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "expected a str or None, not %.200s", Py_TYPE(obj)->tp_name);
    return -1;
}

static int etcd_init(EtcdObject *so, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = { "endpoints", "ttl", "cacert", "cert", "key", "user",
                              "password", "modes", "prefix", "timeout_ms", "on_lost", NULL };
    PyObject *endpoints_obj, *cacert = NULL, *cert = NULL, *key = NULL, *user = NULL;
    PyObject *password = NULL, *modes = NULL, *prefix = NULL, *on_lost = NULL, *seq = NULL;
    struct fifolock_etcd_options o;
    const fifolock_mode **table = NULL;
    modstate *st = state_of_type(Py_TYPE(so));
    const char *endpoints;
    char detail[256];
    int ttl = 10, timeout_ms = 0, added, rc;

    memset(&o, 0, sizeof o);
    if (st == NULL)
        return -1;
    if (so->s != NULL || so->table.st != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "EtcdSession.__init__() runs once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|iOOOOOOOiO:EtcdSession", kwlist,
                                     &endpoints_obj, &ttl, &cacert, &cert, &key, &user,
                                     &password, &modes, &prefix, &timeout_ms, &on_lost))
        return -1;
    cross_table_init(&so->table, st);
    so->pending = PySet_New(NULL);
    if (so->pending == NULL)
        return -1;
    so->done_tail = &so->done_head;
    so->lost_error = PyObject_GetAttrString(PyType_GetModule(Py_TYPE(so)), "LockLostError");
    if (so->lost_error == NULL)
        return -1;
    so->on_lost = Py_NewRef(on_lost ? on_lost : Py_None);
    if (PyUnicode_Check(endpoints_obj)) {
        endpoints = PyUnicode_AsUTF8(endpoints_obj);
    } else {
        /* a list of URLs */
        PyObject *comma = PyUnicode_FromString(","), *joined;
        if (comma == NULL)
            return -1;
        joined = PyUnicode_Join(comma, endpoints_obj);
        Py_DECREF(comma);
        if (joined == NULL)
            return -1;
        endpoints = PyUnicode_AsUTF8(joined);
        seq = joined; /* freed once open returned */
    }
    if (endpoints == NULL || opt_str(cacert, &o.cacert) < 0 || opt_str(cert, &o.cert) < 0 ||
        opt_str(key, &o.key) < 0 || opt_str(user, &o.user) < 0 ||
        opt_str(password, &o.password) < 0 || opt_str(prefix, &o.prefix) < 0)
        goto fail;
    if (modes != NULL && modes != Py_None) {
        PyObject *list = PySequence_Fast(modes, "modes must be a sequence of mode classes");
        if (list == NULL)
            goto fail;
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(list); i++) {
            PyObject *cls = PySequence_Fast_GET_ITEM(list, i);
            rc = PyDict_Contains(st->builtin, cls);
            if (rc < 0 || (rc == 0 && cross_table_get(&so->table, cls, ETCD_NAME_MAX,
                                                      &added) == NULL)) {
                Py_DECREF(list);
                goto fail;
            }
        }
        Py_DECREF(list);
    }
    if (so->table.n > 0) {
        table = PyMem_Malloc(so->table.n * sizeof *table);
        if (table == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
        cross_table_modes(&so->table, table);
    }
    o.ttl = ttl;
    o.modes = table;
    o.nmodes = so->table.n;
    o.lost = etcd_lost;
    o.lost_arg = so;
    o.timeout_ms = timeout_ms;
    Py_BEGIN_ALLOW_THREADS
    rc = fifolock_etcd_open(&so->s, endpoints, &o);
    snprintf(detail, sizeof detail, "%s", rc ? fifolock_etcd_last_error() : "");
    Py_END_ALLOW_THREADS
    PyMem_Free(table);
    Py_XDECREF(seq);
    if (rc != 0) {
        so->s = NULL;
        etcd_error(so, rc, detail, NULL, 0);
        return -1;
    }
    return 0;
fail:
    Py_XDECREF(seq);
    return -1;
}

static int etcd_traverse(EtcdObject *so, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(so));
    Py_VISIT(so->on_lost);
    Py_VISIT(so->lost_error);
    Py_VISIT(so->pending);
    return cross_table_traverse(&so->table, visit, arg);
}

static int etcd_clear(EtcdObject *so)
{
    if (so->s == NULL)
        Py_CLEAR(so->on_lost);
    return 0;
}

static void etcd_dealloc(EtcdObject *so)
{
    PyTypeObject *tp = Py_TYPE(so);
    fifolock_etcd *s = so->s;

    PyObject_GC_UnTrack(so);
    if (so->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)so);
    if (s != NULL) {
        so->s = NULL;
        Py_BEGIN_ALLOW_THREADS
        (void)fifolock_etcd_close(s); /* revokes the lease: every hold goes */
        Py_END_ALLOW_THREADS
    }
    Py_CLEAR(so->pending); /* empty: each pending request keeps its session */
    cross_table_clear(&so->table);
    Py_CLEAR(so->on_lost);
    Py_CLEAR(so->lost_error);
    tp->tp_free(so);
    Py_DECREF(tp);
}

/* ---- the event-loop API: requests that report through process() -------- */

static PyTypeObject *req_type_of(EtcdObject *so)
{
    PyObject *m = PyType_GetModule(Py_TYPE(so));
    PyObject *t = m ? PyObject_GetAttrString(m, "_EtcdRequest") : NULL;

    Py_XDECREF(t); /* the module keeps it */
    return (PyTypeObject *)t;
}

/* Inside fifolock_etcd_process(), GIL released: record, link, no Python. */
static void req_done(fifolock_etcd_request *req, int err, int64_t token, void *arg)
{
    ReqObject *r = arg;
    EtcdObject *so = r->session;

    (void)req;
    r->req = NULL;
    r->state = REQ_REPORTED;
    r->err = err;
    r->token = token;
    r->next_done = NULL;
    *so->done_tail = r;
    so->done_tail = &r->next_done;
}

PyDoc_STRVAR(etcd_acquire_async_doc,
"acquire_async(name, mode, n=1, timeout=None)\n--\n\n"
"Starts a request (fifolock_etcd_acquire_async) and returns it at once;\n"
"process() reports it. Raises at once for what a blocking acquire refuses\n"
"before sending anything (DeadlockError, ValueError, LockLostError).\n"
"One thread at a time (the event loop's) may use this, process() and\n"
"cancel().");

static PyObject *etcd_acquire_async(EtcdObject *so, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = { "name", "mode", "n", "timeout", NULL };
    PyObject *name, *cls, *n_obj = NULL, *timeout_obj = NULL;
    PyTypeObject *tp = req_type_of(so);
    const fifolock_mode *mode;
    struct timespec deadline;
    char detail[256];
    const char *text;
    ReqObject *r;
    double timeout;
    size_t n;
    int rc;

    if (tp == NULL ||
        !PyArg_ParseTupleAndKeywords(args, kwargs, "UO|OO:acquire_async", kwlist, &name, &cls,
                                     &n_obj, &timeout_obj))
        return NULL;
    if (etcd_parse_n(n_obj, &n) < 0 || parse_timeout(timeout_obj, &timeout) < 0 ||
        check_open(so) < 0)
        return NULL;
    text = PyUnicode_AsUTF8(name);
    mode = text ? etcd_mode_of(so, cls) : NULL;
    if (mode == NULL)
        return NULL;
    r = PyObject_GC_New(ReqObject, tp);
    if (r == NULL)
        return NULL;
    r->req = NULL;
    r->session = (EtcdObject *)Py_NewRef((PyObject *)so);
    r->state = REQ_PENDING;
    r->err = 0;
    r->token = 0;
    r->name = Py_NewRef(name);
    r->mode = Py_NewRef(cls);
    r->n = n;
    r->next_done = NULL;
    PyObject_GC_Track(r);
    if (timeout >= 0)
        deadline_in(timeout, &deadline);
    Py_BEGIN_ALLOW_THREADS
    rc = fifolock_etcd_acquire_async(so->s, text, mode, n, timeout >= 0 ? &deadline : NULL,
                                     req_done, r, &r->req);
    snprintf(detail, sizeof detail, "%s", rc ? fifolock_etcd_last_error() : "");
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        r->state = REQ_CLOSED;
        Py_DECREF(r);
        etcd_error(so, rc, detail, cls, n);
        return NULL;
    }
    if (PySet_Add(so->pending, (PyObject *)r) < 0) {
        /* can't keep it: withdraw it */
        Py_BEGIN_ALLOW_THREADS
        (void)fifolock_etcd_cancel(so->s, r->req);
        Py_END_ALLOW_THREADS
        r->state = REQ_CANCELLED;
        r->req = NULL;
        Py_DECREF(r);
        return NULL;
    }
    return (PyObject *)r;
}

PyDoc_STRVAR(etcd_process_doc,
"process()\n--\n\n"
"Does the ready work (fifolock_etcd_process), the GIL released; returns\n"
"the requests reported by it, in order.");

static PyObject *etcd_process(EtcdObject *so, PyObject *unused)
{
    PyObject *list;
    ReqObject *r;

    (void)unused;
    if (so->s == NULL)
        return PyList_New(0);
    so->done_head = NULL;
    so->done_tail = &so->done_head;
    Py_BEGIN_ALLOW_THREADS
    (void)fifolock_etcd_process(so->s);
    Py_END_ALLOW_THREADS
    list = PyList_New(0);
    for (r = so->done_head; r != NULL; r = r->next_done) {
        if (list != NULL && PyList_Append(list, (PyObject *)r) < 0)
            Py_CLEAR(list);
        if (PySet_Discard(so->pending, (PyObject *)r) < 0)
            PyErr_Clear();
    }
    so->done_head = NULL;
    return list;
}

static PyObject *etcd_fd(EtcdObject *so, PyObject *unused)
{
    int fd;

    (void)unused;
    if (check_open(so) < 0)
        return NULL;
    fd = fifolock_etcd_fd(so->s);
    if (fd < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromLong(fd);
}

static PyObject *etcd_timeout(EtcdObject *so, PyObject *unused)
{
    int ms;

    (void)unused;
    if (so->s == NULL)
        return PyLong_FromLong(-1);
    Py_BEGIN_ALLOW_THREADS
    ms = fifolock_etcd_timeout(so->s);
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(ms);
}

PyDoc_STRVAR(req_cancel_doc,
"cancel()\n--\n\n"
"Withdraws the request if it was not reported yet: True (its entry goes,\n"
"a grant not yet reported is let go); False if it was reported (see\n"
"result()) or the session closed.");

static PyObject *req_cancel(ReqObject *r, PyObject *unused)
{
    EtcdObject *so = r->session;
    int rc;

    (void)unused;
    if (r->state != REQ_PENDING || so->s == NULL)
        Py_RETURN_FALSE;
    Py_BEGIN_ALLOW_THREADS
    rc = fifolock_etcd_cancel(so->s, r->req);
    Py_END_ALLOW_THREADS
    if (rc != 0)
        Py_RETURN_FALSE; /* reported meanwhile: never, process() runs here */
    r->state = REQ_CANCELLED;
    r->req = NULL;
    if (PySet_Discard(so->pending, (PyObject *)r) < 0)
        return NULL;
    Py_RETURN_TRUE;
}

PyDoc_STRVAR(req_result_doc,
"result()\n--\n\n"
"The fencing token of a granted request; its error raised if it failed;\n"
"RuntimeError if it was not reported.");

static PyObject *req_result(ReqObject *r, PyObject *unused)
{
    (void)unused;
    if (r->state != REQ_REPORTED) {
        PyErr_SetString(PyExc_RuntimeError, "this request was not reported");
        return NULL;
    }
    if (r->err == 0)
        return PyLong_FromLongLong((long long)r->token);
    if (r->err == ETIMEDOUT) {
        PyErr_Format(PyExc_TimeoutError, "lock mode %R of %U not granted in time", r->mode,
                     r->name);
        return NULL;
    }
    etcd_error(r->session, r->err, "", r->mode, r->n);
    return NULL;
}

static PyObject *req_get_reported(ReqObject *r, void *unused)
{
    (void)unused;
    return PyBool_FromLong(r->state == REQ_REPORTED);
}

static PyObject *req_get_granted(ReqObject *r, void *unused)
{
    (void)unused;
    return PyBool_FromLong(r->state == REQ_REPORTED && r->err == 0);
}

static int req_traverse(ReqObject *r, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(r));
    Py_VISIT(r->session);
    Py_VISIT(r->name);
    Py_VISIT(r->mode);
    return 0;
}

static int req_clear(ReqObject *r)
{
    /* a pending request is kept by its session's set: never cleared here */
    if (r->state != REQ_PENDING)
        Py_CLEAR(r->session);
    Py_CLEAR(r->name);
    Py_CLEAR(r->mode);
    return 0;
}

static void req_dealloc(ReqObject *r)
{
    PyTypeObject *tp = Py_TYPE(r);

    PyObject_GC_UnTrack(r);
    Py_CLEAR(r->session);
    Py_CLEAR(r->name);
    Py_CLEAR(r->mode);
    PyObject_GC_Del(r);
    Py_DECREF(tp);
}

static PyMethodDef req_methods[] = {
    { "cancel", (PyCFunction)req_cancel, METH_NOARGS, req_cancel_doc },
    { "result", (PyCFunction)req_result, METH_NOARGS, req_result_doc },
    { NULL, NULL, 0, NULL },
};

static PyGetSetDef req_getset[] = {
    { "reported", (getter)req_get_reported, NULL, "True once process() reported it.", NULL },
    { "granted", (getter)req_get_granted, NULL, "True if reported granted.", NULL },
    { NULL, NULL, NULL, NULL, NULL },
};

static PyType_Slot req_slots[] = {
    { Py_tp_doc, "A request of _EtcdSession.acquire_async()." },
    { Py_tp_dealloc, req_dealloc },
    { Py_tp_traverse, req_traverse },
    { Py_tp_clear, req_clear },
    { Py_tp_methods, req_methods },
    { Py_tp_getset, req_getset },
    { 0, NULL },
};

static PyType_Spec req_spec = {
    .name = "fifolock._fifolock._EtcdRequest",
    .basicsize = sizeof(ReqObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = req_slots,
};

/* The session closed: its pending requests were freed without a report. */
static void pending_closed(EtcdObject *so)
{
    PyObject *it, *item;

    if (so->pending == NULL)
        return;
    it = PyObject_GetIter(so->pending);
    while (it != NULL && (item = PyIter_Next(it)) != NULL) {
        ((ReqObject *)item)->state = REQ_CLOSED;
        ((ReqObject *)item)->req = NULL;
        Py_DECREF(item);
    }
    Py_XDECREF(it);
    PyErr_Clear();
    PySet_Clear(so->pending);
}


static PyMethodDef etcd_methods[] = {
    { "acquire", (PyCFunction)(void (*)(void))etcd_acquire, METH_VARARGS | METH_KEYWORDS,
      etcd_acquire_doc },
    { "release", (PyCFunction)etcd_release, METH_VARARGS,
      "release(name, token)\n--\n\nReleases the hold of name granted with token." },
    { "check", (PyCFunction)etcd_check, METH_VARARGS, etcd_check_doc },
    { "convert", (PyCFunction)(void (*)(void))etcd_convert, METH_VARARGS | METH_KEYWORDS,
      etcd_convert_doc },
    { "key", (PyCFunction)etcd_key, METH_VARARGS,
      "key(name, token)\n--\n\nThe etcd key of the entry of that hold." },
    { "interrupt", (PyCFunction)etcd_interrupt, METH_NOARGS,
      "interrupt()\n--\n\nEnds every wait of the session with InterruptedError, "
      "and every later one, until clear_interrupt()." },
    { "clear_interrupt", (PyCFunction)etcd_clear_interrupt, METH_NOARGS,
      "clear_interrupt()\n--\n\nWaits wait again." },
    { "acquire_async", (PyCFunction)(void (*)(void))etcd_acquire_async,
      METH_VARARGS | METH_KEYWORDS, etcd_acquire_async_doc },
    { "process", (PyCFunction)etcd_process, METH_NOARGS, etcd_process_doc },
    { "fd", (PyCFunction)etcd_fd, METH_NOARGS,
      "fd()\n--\n\nThe descriptor to watch for reading: process() has work." },
    { "timeout", (PyCFunction)etcd_timeout, METH_NOARGS,
      "timeout()\n--\n\nMilliseconds until process() is due anyway; -1: nothing due." },
    { "close", (PyCFunction)etcd_close, METH_NOARGS,
      "close()\n--\n\nRevokes the lease (everything held goes) and ends the session." },
    { NULL, NULL, 0, NULL },
};

static PyGetSetDef etcd_getset[] = {
    { "closed", (getter)etcd_get_closed, NULL, "True once close() ran.", NULL },
    { NULL, NULL, NULL, NULL, NULL },
};

static PyMemberDef etcd_members[] = {
    { "__weaklistoffset__", T_PYSSIZET, offsetof(EtcdObject, weakreflist), READONLY, NULL },
    { NULL, 0, 0, 0, NULL },
};

static PyType_Slot etcd_slots[] = {
    { Py_tp_doc, "_EtcdSession(endpoints, ttl=10, cacert=None, cert=None, key=None, "
                 "user=None, password=None, modes=(), prefix=None, timeout_ms=0, "
                 "on_lost=None)\n--\n\n"
                 "A session of the etcd lock (fifolock_etcd): the core of\n"
                 "fifolock.EtcdSession." },
    { Py_tp_new, PyType_GenericNew },
    { Py_tp_init, etcd_init },
    { Py_tp_dealloc, etcd_dealloc },
    { Py_tp_traverse, etcd_traverse },
    { Py_tp_clear, etcd_clear },
    { Py_tp_methods, etcd_methods },
    { Py_tp_getset, etcd_getset },
    { Py_tp_members, etcd_members },
    { 0, NULL },
};

static PyType_Spec etcd_spec = {
    .name = "fifolock._fifolock._EtcdSession",
    .basicsize = sizeof(EtcdObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = etcd_slots,
};
#endif /* FIFOLOCK_PY_ETCD */

int etcd_lock_init(PyObject *module, modstate *st)
{
    PyObject *lost = PyErr_NewExceptionWithDoc(
        "fifolock.LockLostError",
        "A hold beyond this process was lost: the etcd session's lease expired or\n"
        "was revoked, or the lock's entry was deleted (or, no keepalive was\n"
        "acknowledged within the lease's TTL, so it may be). Another holder may\n"
        "have been granted since: stop using what the lock protects.",
        PyExc_RuntimeError, NULL);
    int rc;

    (void)st;
    if (lost == NULL)
        return -1;
    rc = PyModule_AddObjectRef(module, "LockLostError", lost);
    Py_DECREF(lost);
    if (rc < 0)
        return -1;
#ifdef FIFOLOCK_PY_ETCD
    {
        PyTypeObject *tp = (PyTypeObject *)PyType_FromModuleAndSpec(module, &etcd_spec, NULL);
        if (tp == NULL)
            return -1;
        rc = PyModule_AddType(module, tp);
        Py_DECREF(tp);
    }
    if (rc == 0) {
        PyTypeObject *tp = (PyTypeObject *)PyType_FromModuleAndSpec(module, &req_spec, NULL);
        if (tp == NULL)
            return -1;
        rc = PyModule_AddType(module, tp);
        Py_DECREF(tp);
    }
#endif
    return rc;
}
