/*
 * What every front end of fifolock._fifolock shares, and nothing that is one
 * front end's own: exceptions, the module state of a type, mode entries
 * (ModeEntry), the holds mapping type (HoldsView) over whatever a lock
 * supplies, the refusal of awaitable answers, and the parsing of lock()'s
 * n and timeout. Declared in module.h. It calls no front end and no front
 * end's file: the module (fifolock_module.c) and the locks (async_lock.c,
 * thread_lock.c) call it.
 */
#include "module.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <time.h>

/* ---- exceptions and module state --------------------------------------------- */

PyObject *take_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;

    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL)
        return NULL;
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

void restore_exception(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
#endif
}

void report_unraisable(PyObject *exc, PyObject *where)
{
    if (exc == NULL)
        return;
    restore_exception(exc);
    PyErr_WriteUnraisable(where);
}

void set_engine_error(int rc)
{
    if (rc == ENOMEM)
        PyErr_NoMemory();
    else if (rc == EAGAIN)
        PyErr_SetString(PyExc_OverflowError, fifolock_strerror(rc));
    else
        PyErr_Format(PyExc_SystemError, "fifolock: %s (error %d)", fifolock_strerror(rc), rc);
}

/* The module's definition, by which state_of_type() knows our types: set
   once by PyInit__fifolock(), before any of them exists. */
static PyModuleDef *module_def;

void module_def_set(PyModuleDef *def)
{
    module_def = def;
}

modstate *state_of_type(PyTypeObject *type)
{
#if PY_VERSION_HEX >= 0x030B0000
    PyObject *m = PyType_GetModuleByDef(type, module_def);
    return m ? PyModule_GetState(m) : NULL;
#else
    for (PyTypeObject *t = type; t != NULL; t = t->tp_base) {
        if (PyType_HasFeature(t, Py_TPFLAGS_HEAPTYPE)) {
            PyObject *m = PyType_GetModule(t);
            if (m != NULL && PyModule_GetDef(m) == module_def)
                return PyModule_GetState(m);
            PyErr_Clear();
        }
    }
    PyErr_SetString(PyExc_TypeError, "not a fifolock type");
    return NULL;
#endif
}

/* ---- mode entries ------------------------------------------------------- */

EntryObject *entry_alloc(modstate *st, PyObject *cls)
{
    EntryObject *e = PyObject_GC_New(EntryObject, st->entry_type);

    if (e == NULL)
        return NULL;
    e->own.is_compatible = NULL;
    e->own.name = NULL; /* the class's tp_name may be replaced: not kept */
    e->own.limit = 0;
    e->mode = &e->own;
    e->cls = Py_NewRef(cls);
    e->func = NULL;
    e->kind = KIND_C;
    e->lock = NULL;
    PyObject_GC_Track(e);
    return e;
}

/* The raw is_compatible attribute in the class's MRO (new ref), NULL if none. */
static PyObject *find_is_compatible(modstate *st, PyTypeObject *cls)
{
    PyObject *mro = cls->tp_mro;

    if (mro == NULL || !PyTuple_Check(mro))
        return NULL;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(mro); i++) {
        PyTypeObject *base = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
#if PY_VERSION_HEX >= 0x030C0000
        PyObject *dict = PyType_GetDict(base);
#else
        PyObject *dict = Py_XNewRef(base->tp_dict);
#endif
        PyObject *raw;

        if (dict == NULL)
            continue;
        raw = PyDict_GetItemWithError(dict, st->str_is_compatible);
        Py_XINCREF(raw);
        Py_DECREF(dict);
        if (raw != NULL || PyErr_Occurred())
            return raw;
    }
    return NULL;
}

EntryObject *entry_new_python(modstate *st, PyObject *cls, entry_predicate *is_compatible)
{
    PyObject *raw, *func = NULL;
    EntryObject *e;
    int kind;

    if (!PyType_Check(cls)) {
        PyErr_Format(PyExc_TypeError,
                     "a lock mode must be a class (an asyncio.Future subclass with "
                     "is_compatible), not a '%.200s' instance",
                     Py_TYPE(cls)->tp_name);
        return NULL;
    }
    raw = find_is_compatible(st, (PyTypeObject *)cls);
    if (raw == NULL) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_TypeError, "lock mode %R has no is_compatible(holds) method",
                         cls);
        return NULL;
    }
    if (PyObject_TypeCheck(raw, &PyStaticMethod_Type) ||
        PyObject_TypeCheck(raw, &PyClassMethod_Type)) {
        kind = KIND_CALL;
        func = PyObject_GetAttr(cls, st->str_is_compatible);
        if (func == NULL) {
            Py_DECREF(raw);
            return NULL;
        }
    } else {
        kind = KIND_PLAIN; /* a method of instances: bound when first needed */
        func = Py_NewRef(raw);
    }
    Py_DECREF(raw);
    if (!PyCallable_Check(func)) {
        PyErr_Format(PyExc_TypeError, "is_compatible of lock mode %R is not callable", cls);
        Py_DECREF(func);
        return NULL;
    }
    if (kind == KIND_PLAIN)
        Py_CLEAR(func);
    e = entry_alloc(st, cls);
    if (e == NULL) {
        Py_XDECREF(func);
        return NULL;
    }
    e->own.is_compatible = is_compatible;
    e->func = func;
    e->kind = kind;
    return e;
}

/*
 * A plain-method predicate is called on an instance of the mode, as in the
 * original package; one instance per entry serves every call (modes hold
 * configuration, not state). Made inside the acquiring task, as the
 * original does for every request.
 */
int entry_bind(modstate *st, EntryObject *e)
{
    PyObject *inst, *func;

    if (e->func != NULL || e->cls == NULL)
        return 0;
    inst = PyObject_CallNoArgs(e->cls);
    if (inst == NULL)
        return -1;
    func = PyObject_GetAttr(inst, st->str_is_compatible);
    Py_DECREF(inst);
    if (func == NULL)
        return -1;
    if (e->func == NULL)
        e->func = func;
    else
        Py_DECREF(func);
    return 0;
}

static int entry_traverse(EntryObject *e, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(e));
    Py_VISIT(e->cls);
    Py_VISIT(e->func);
    return 0;
}

static int entry_clear(EntryObject *e)
{
    Py_CLEAR(e->func);
    Py_CLEAR(e->cls);
    return 0;
}

static void entry_dealloc(EntryObject *e)
{
    PyTypeObject *tp = Py_TYPE(e);

    PyObject_GC_UnTrack(e);
    entry_clear(e);
    tp->tp_free(e);
    Py_DECREF(tp);
}

static PyObject *entry_repr(EntryObject *e)
{
    return PyUnicode_FromFormat("<fifolock mode %R (%s)>", e->cls ? e->cls : Py_None,
                                e->kind == KIND_C ? "C predicate" : "Python predicate");
}

static PyType_Slot entry_slots[] = {
    { Py_tp_dealloc, entry_dealloc },
    { Py_tp_traverse, entry_traverse },
    { Py_tp_clear, entry_clear },
    { Py_tp_repr, entry_repr },
    { 0, NULL },
};

static PyType_Spec entry_spec = {
    .name = "fifolock._fifolock.ModeEntry",
    .basicsize = sizeof(EntryObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = entry_slots,
};

PyTypeObject *entry_type_new(PyObject *module)
{
    return (PyTypeObject *)PyType_FromModuleAndSpec(module, &entry_spec, NULL);
}

EntryObject *entry_find(modstate *st, PyObject *modes, PyObject *cls)
{
    PyObject *e = PyDict_GetItemWithError(st->builtin, cls);

    if (e == NULL && !PyErr_Occurred() && modes != NULL)
        e = PyDict_GetItemWithError(modes, cls);
    return (EntryObject *)e;
}

EntryObject *entry_make(modstate *st, PyObject *modes, PyObject *cls,
                        entry_predicate *is_compatible, void *lock)
{
    EntryObject *e;

    if (modes == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "this lock was cleared");
        return NULL;
    }
    e = entry_new_python(st, cls, is_compatible);
    if (e == NULL)
        return NULL;
    e->lock = lock;
    if (PyDict_SetItem(modes, cls, (PyObject *)e) < 0) {
        Py_DECREF(e);
        return NULL;
    }
    return e;
}

EntryObject *entry_of_ready_mode(modstate *st, const fifolock_mode *mode)
{
    PyObject *key, *value;
    Py_ssize_t pos = 0;

    if (mode->is_compatible == fifolock_semaphore_is_compatible)
        return CONTAINER_OF(mode, EntryObject, own); /* each Semaphore(n) its own */
    while (PyDict_Next(st->builtin, &pos, &key, &value))
        if (((EntryObject *)value)->mode == mode)
            return (EntryObject *)value;
    return NULL;
}


/* ---- the holds mapping of either lock (HoldsView) ------------------------- */

static PyObject *view_dict(HoldsView *v)
{
    return v->lock != NULL ? v->src->dict(v->lock) : PyDict_New();
}

static Py_ssize_t view_count(HoldsView *v, PyObject *cls)
{
    if (v->lock == NULL)
        return PyObject_Hash(cls) == -1 ? -1 : 0; /* a key like any other */
    return v->src->count(v->lock, cls);
}

static PyObject *view_subscript(HoldsView *v, PyObject *cls)
{
    Py_ssize_t n = view_count(v, cls);

    return n < 0 ? NULL : PyLong_FromSsize_t(n);
}

static int view_contains(HoldsView *v, PyObject *cls)
{
    Py_ssize_t n = view_count(v, cls);

    return n < 0 ? -1 : n != 0;
}

static Py_ssize_t view_length(HoldsView *v)
{
    PyObject *d;
    Py_ssize_t n;

    if (v->lock == NULL)
        return 0;
    if (v->src->length != NULL)
        return v->src->length(v->lock);
    d = view_dict(v);
    if (d == NULL)
        return -1;
    n = PyDict_GET_SIZE(d);
    Py_DECREF(d);
    return n;
}

static PyObject *view_iter(HoldsView *v)
{
    PyObject *d = view_dict(v), *it;

    if (d == NULL)
        return NULL;
    it = PyObject_GetIter(d);
    Py_DECREF(d);
    return it;
}

static PyObject *view_get(HoldsView *v, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t n;

    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get() takes a mode and an optional default");
        return NULL;
    }
    n = view_count(v, args[0]);
    if (n < 0)
        return NULL;
    if (n != 0)
        return PyLong_FromSsize_t(n);
    return Py_NewRef(nargs > 1 ? args[1] : Py_None);
}

static PyObject *view_call(HoldsView *v, const char *method)
{
    PyObject *d = view_dict(v), *r;

    if (d == NULL)
        return NULL;
    r = PyObject_CallMethod(d, method, NULL);
    Py_DECREF(d);
    return r;
}

static PyObject *view_keys(HoldsView *v, PyObject *unused)
{
    (void)unused;
    return view_call(v, "keys");
}

static PyObject *view_values(HoldsView *v, PyObject *unused)
{
    (void)unused;
    return view_call(v, "values");
}

static PyObject *view_items(HoldsView *v, PyObject *unused)
{
    (void)unused;
    return view_call(v, "items");
}

PyObject *holds_defaultdict(modstate *st, PyObject *dict)
{
    PyObject *r;

    if (dict == NULL)
        return NULL;
    r = PyObject_CallFunctionObjArgs(st->defaultdict, (PyObject *)&PyLong_Type, dict, NULL);
    Py_DECREF(dict);
    return r;
}

static PyObject *view_copy(HoldsView *v, PyObject *unused)
{
    modstate *st = state_of_type(Py_TYPE(v));

    (void)unused;
    return st ? holds_defaultdict(st, view_dict(v)) : NULL;
}

static PyObject *view_repr(HoldsView *v)
{
    PyObject *d = view_dict(v), *r;

    if (d == NULL)
        return NULL;
    r = PyUnicode_FromFormat("%s(%R)", v->src->name, d);
    Py_DECREF(d);
    return r;
}

/* As a dict of the holds now (another view: a dict's comparison defers to
   the view's own, reflected). */
static PyObject *view_richcompare(HoldsView *v, PyObject *other, int op)
{
    PyObject *d, *r;

    if (op != Py_EQ && op != Py_NE)
        Py_RETURN_NOTIMPLEMENTED;
    d = view_dict(v);
    if (d == NULL)
        return NULL;
    r = PyObject_RichCompare(d, other, op);
    Py_DECREF(d);
    return r;
}

static void view_dealloc(HoldsView *v)
{
    PyTypeObject *tp = Py_TYPE(v);

    tp->tp_free(v);
    Py_DECREF(tp);
}

PyObject *holds_view_new(PyTypeObject *type, void *lock, const holds_source *src)
{
    HoldsView *v = PyObject_New(HoldsView, type);

    if (v != NULL) {
        v->lock = lock;
        v->src = src;
    }
    return (PyObject *)v;
}

void holds_view_detach(PyObject *view)
{
    if (view != NULL)
        ((HoldsView *)view)->lock = NULL;
}

static PyMethodDef view_methods[] = {
    { "get", (PyCFunction)(void (*)(void))view_get, METH_FASTCALL,
      "get(mode, default=None)\n--\n\nThe number of holders of mode, or default if none." },
    { "keys", (PyCFunction)view_keys, METH_NOARGS, "The modes held now." },
    { "values", (PyCFunction)view_values, METH_NOARGS, "The counts of the modes held now." },
    { "items", (PyCFunction)view_items, METH_NOARGS, "(mode, holders) for the modes held now." },
    { "copy", (PyCFunction)view_copy, METH_NOARGS,
      "A new collections.defaultdict(int) {mode: holders} of the modes held now." },
    { NULL, NULL, 0, NULL },
};

PyTypeObject *holds_view_type(PyObject *module, const char *name, const char *doc)
{
    PyType_Slot slots[] = {
        { Py_tp_doc, (void *)doc },
        { Py_tp_dealloc, view_dealloc },
        { Py_tp_repr, view_repr },
        { Py_tp_iter, view_iter },
        { Py_tp_richcompare, view_richcompare },
        { Py_tp_hash, PyObject_HashNotImplemented },
        { Py_tp_methods, view_methods },
        { Py_mp_subscript, view_subscript },
        { Py_mp_length, view_length },
        { Py_sq_contains, view_contains },
        { 0, NULL },
    };
    PyType_Spec spec = {
        .name = name,
        .basicsize = sizeof(HoldsView),
        .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE |
                 Py_TPFLAGS_DISALLOW_INSTANTIATION | Py_TPFLAGS_MAPPING,
        .slots = slots,
    };

    return (PyTypeObject *)PyType_FromModuleAndSpec(module, &spec, NULL);
}

/* ---- predicates' answers ---------------------------------------------------- */

/*
 * An answer that is awaitable (what an `async def is_compatible` returns) or
 * a generator is no answer: it is true whatever the predicate meant. Refused
 * with TypeError (returns -1), after closing a coroutine or generator, so
 * that it does not warn "never awaited" when it is freed. 0: an answer.
 */
static int refuse_awaitable(EntryObject *e, PyObject *r)
{
    PyTypeObject *tp = Py_TYPE(r);
    PyObject *close_exc = NULL;

    if (!(tp->tp_as_async != NULL && tp->tp_as_async->am_await != NULL) && !PyGen_Check(r) &&
        !PyAsyncGen_CheckExact(r))
        return 0;
    if (PyCoro_CheckExact(r) || PyGen_Check(r)) {
        PyObject *closed = PyObject_CallMethod(r, "close", NULL);
        if (closed == NULL)
            close_exc = take_exception(); /* its own finally blocks raised */
        Py_XDECREF(closed);
    }
    PyErr_Format(PyExc_TypeError,
                 "is_compatible() of lock mode %R returned a '%.200s' object, which is "
                 "awaitable or a generator, not an answer: a predicate must answer at "
                 "once (not be an async def)",
                 e->cls ? e->cls : Py_None, tp->tp_name);
    if (close_exc != NULL) {
        PyObject *type_error = take_exception();
        PyException_SetContext(type_error, close_exc);
        restore_exception(type_error);
    }
    return -1;
}

int entry_ask(EntryObject *e, PyObject *view)
{
    PyObject *func = e->func, *r;
    int ok;

    if (func == NULL) {
        PyErr_Format(PyExc_RuntimeError, "lock mode %R can no longer be used",
                     e->cls ? e->cls : Py_None);
        return -1;
    }
    Py_INCREF(func);
    r = PyObject_CallOneArg(func, view);
    if (r == Py_True || r == Py_False)
        ok = r == Py_True; /* the usual answer, at once */
    else
        ok = r == NULL || refuse_awaitable(e, r) < 0 ? -1 : PyObject_IsTrue(r);
    Py_XDECREF(r);
    Py_DECREF(func);
    return ok;
}

/* ---- arguments of lock(mode, n=1, timeout=None) ------------------------------ */

int parse_n(PyObject *obj, size_t *n)
{
    unsigned long long v;

    if (obj == NULL) {
        *n = 1;
        return 0;
    }
    if (PyBool_Check(obj) || !PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "n must be an int, not %.200s", Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (PyObject_RichCompareBool(obj, Py_False, Py_LE) != 0) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_ValueError, "n must be at least 1, not %R", obj);
        return -1;
    }
    v = PyLong_AsUnsignedLongLong(obj);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    if (v > UINT32_MAX) {
        PyErr_Format(PyExc_OverflowError, "n=%R is more holds than a lock counts", obj);
        return -1;
    }
    *n = (size_t)v;
    return 0;
}

int parse_timeout(PyObject *obj, double *timeout)
{
    double t;

    if (obj == NULL || obj == Py_None) {
        *timeout = -1;
        return 0;
    }
    if (PyBool_Check(obj) || !(PyFloat_Check(obj) || PyLong_Check(obj))) {
        PyErr_Format(PyExc_TypeError, "timeout must be a number or None, not %.200s",
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    t = PyFloat_AsDouble(obj);
    if (t == -1.0 && PyErr_Occurred())
        return -1;
    if (isnan(t) || t < 0) {
        PyErr_Format(PyExc_ValueError, "timeout must be None or >= 0, not %R", obj);
        return -1;
    }
    *timeout = t;
    return 0;
}

void deadline_in(double timeout, struct timespec *deadline)
{
    double whole, frac;

    clock_gettime(CLOCK_MONOTONIC, deadline);
    frac = modf(timeout, &whole);
    if (whole > 1e15)
        whole = 1e15; /* thirty million years */
    deadline->tv_sec += (time_t)whole;
    deadline->tv_nsec += (long)(frac * 1e9);
    if (deadline->tv_nsec >= 1000000000L) {
        deadline->tv_sec++;
        deadline->tv_nsec -= 1000000000L;
    }
}
