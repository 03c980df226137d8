/*
 * fifolock._fifolock: the module. It makes the module state, registers the
 * ready-made mode classes of the package (_register) and each front end,
 * and holds the module functions:
 *
 *   async_lock.c    FifoLock, the asyncio lock on the engine (fifolock.h)
 *   thread_lock.c   ThreadFifoLock, the thread lock on fifolock_mt.h
 *
 * A front end is one file that module_exec() registers with one call of its
 * *_init() (front_ends.h); what front ends share is in shared.c (module.h),
 * which calls none of them.
 */
#include "front_ends.h"

#include <string.h>

static struct PyModuleDef fifolock_module;

/* ---- module --------------------------------------------------------------- */

static const struct {
    const char *kind;
    const fifolock_mode *mode;
} ready_made[] = {
    { "mutex", &fifolock_mutex }, { "read", &fifolock_read }, { "write", &fifolock_write },
    { "IS", &fifolock_is },       { "IX", &fifolock_ix },     { "S", &fifolock_s },
    { "SIX", &fifolock_six },     { "X", &fifolock_x },       { "upgradable", &fifolock_upgradable },
};

PyDoc_STRVAR(register_doc,
"_register(cls, kind, size=0)\n"
"--\n"
"\n"
"Makes the ready-made mode class cls use the engine's C predicate `kind`\n"
"(mutex, read, write, upgradable, IS, IX, S, SIX, X, or semaphore with `size`) on every\n"
"lock. For the fifolock package itself; its classes must not be in use yet.");

static PyObject *module_register(PyObject *module, PyObject *args)
{
    modstate *st = PyModule_GetState(module);
    PyObject *cls, *size_obj = NULL;
    const char *kind;
    size_t size = 0;
    EntryObject *e;
    int rc;

    if (!PyArg_ParseTuple(args, "Os|O!:_register", &cls, &kind, &PyLong_Type, &size_obj))
        return NULL;
    if (size_obj != NULL) {
        /* any size a C size_t holds: the engine's semaphore takes that */
        size = PyLong_AsSize_t(size_obj);
        if (size == (size_t)-1 && PyErr_Occurred()) {
            if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
                PyErr_Clear();
                PyErr_Format(PyExc_OverflowError,
                             "semaphore size %R is more than a C size_t holds (at most %zu)",
                             size_obj, (size_t)-1);
            }
            return NULL;
        }
    }
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "_register() needs a class");
        return NULL;
    }
    rc = PyDict_Contains(st->builtin, cls);
    if (rc != 0) {
        if (rc > 0)
            PyErr_Format(PyExc_ValueError, "%R is already registered", cls);
        return NULL;
    }
    e = entry_alloc(st, cls);
    if (e == NULL)
        return NULL;
    if (strcmp(kind, "semaphore") == 0) {
        if (size < 1) {
            Py_DECREF(e);
            PyErr_SetString(PyExc_ValueError, "a semaphore needs size >= 1");
            return NULL;
        }
        e->own = (fifolock_mode)FIFOLOCK_SEMAPHORE(size);
        e->mode = &e->own;
    } else {
        e->mode = NULL;
        for (size_t i = 0; i < sizeof ready_made / sizeof ready_made[0]; i++)
            if (strcmp(kind, ready_made[i].kind) == 0)
                e->mode = ready_made[i].mode;
        if (e->mode == NULL) {
            Py_DECREF(e);
            PyErr_Format(PyExc_ValueError, "unknown ready-made mode %s", kind);
            return NULL;
        }
    }
    rc = PyDict_SetItem(st->builtin, cls, (PyObject *)e);
    Py_DECREF(e);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    { "_register", module_register, METH_VARARGS, register_doc },
    { "_wake", async_lock_wake, METH_O,
      "_wake(fut)\n--\n\nfut.set_result(None) unless fut is done (the lock's own)." },
#ifndef FIFOLOCK_NO_THREAD_LOCK
    { "_fork_before", thread_lock_fork_before, METH_NOARGS,
      "Before os.fork(): takes the internal lock of every ThreadFifoLock." },
    { "_fork_parent", thread_lock_fork_parent, METH_NOARGS,
      "After os.fork(), in the parent: drops them." },
    { "_fork_child", thread_lock_fork_child, METH_NOARGS,
      "After os.fork(), in the child: drops them." },
#endif
    { NULL, NULL, 0, NULL },
};

static int module_exec(PyObject *module)
{
    modstate *st = PyModule_GetState(module);
    PyObject *asyncio, *collections;

    /*
     * The main interpreter only. A predicate runs in whichever thread makes
     * the engine call (for the thread lock, another thread's release), and
     * the interrupt check of a wait runs in the waiting thread with the GIL
     * released: both take the GIL with PyGILState_Ensure(), which knows the
     * main interpreter alone. In a subinterpreter a predicate would run in
     * the main interpreter, and a wait's Ctrl-C would be lost. Refused here,
     * with the reason (docs/porting.md), for Pythons before 3.12 too.
     */
    if (PyInterpreterState_Get() != PyInterpreterState_Main()) {
        PyErr_SetString(PyExc_ImportError,
                        "fifolock._fifolock does not support subinterpreters: import it "
                        "in the main interpreter (its predicates and waits take the GIL "
                        "with PyGILState_Ensure(), which knows the main interpreter only)");
        return -1;
    }

    st->entry_type = entry_type_new(module);
    if (st->entry_type == NULL)
        return -1;

#define INTERN(field, text)                               \
    do {                                                  \
        st->field = PyUnicode_InternFromString(text);     \
        if (st->field == NULL)                            \
            return -1;                                    \
    } while (0)
    INTERN(str_is_compatible, "is_compatible");
    INTERN(str_create_future, "create_future");
    INTERN(str_set_result, "set_result");
    INTERN(str_blocking, "_asyncio_future_blocking");
    INTERN(str_get_loop, "get_loop");
    INTERN(str_is_closed, "is_closed");
    INTERN(str_done, "done");
    INTERN(str_call_soon_threadsafe, "call_soon_threadsafe");
    INTERN(str_thread_id, "_thread_id");
#undef INTERN

    st->builtin = PyDict_New();
    if (st->builtin == NULL)
        return -1;

    asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL)
        return -1;
    st->get_running_loop = PyObject_GetAttrString(asyncio, "get_running_loop");
    st->invalid_state = PyObject_GetAttrString(asyncio, "InvalidStateError");
    st->base_event_loop = PyObject_GetAttrString(asyncio, "BaseEventLoop");
    st->future_type = PyObject_GetAttrString(asyncio, "Future");
    Py_DECREF(asyncio);
    if (st->get_running_loop == NULL || st->invalid_state == NULL ||
        st->base_event_loop == NULL || st->future_type == NULL)
        return -1;
    st->kw_loop = Py_BuildValue("(s)", "loop");
    if (st->kw_loop == NULL)
        return -1;
    collections = PyImport_ImportModule("collections");
    if (collections == NULL)
        return -1;
    st->defaultdict = PyObject_GetAttrString(collections, "defaultdict");
    Py_DECREF(collections);
    if (st->defaultdict == NULL)
        return -1;
    st->wake = PyObject_GetAttrString(module, "_wake");
    if (st->wake == NULL)
        return -1;
    st->deadlock_error = PyErr_NewExceptionWithDoc(
        "fifolock.DeadlockError",
        "A request that would wait for ever (EDEADLK): one that can never be\n"
        "granted, as its mode refuses even a lock nobody holds (Semaphore(2) with\n"
        "n=3, Write with n=2, or a conversion to such a mode); or a conversion\n"
        "that would have to wait while another conversion already waits on the\n"
        "same lock (each would wait for the other). Nothing changed: nothing was\n"
        "queued, and a converting context still holds its mode.",
        PyExc_RuntimeError, NULL);
    if (st->deadlock_error == NULL || PyModule_AddObjectRef(module, "DeadlockError",
                                                            st->deadlock_error) < 0)
        return -1;

    /* The front ends (front_ends.h), each in its own file. */
    if (async_lock_init(module, st) < 0)
        return -1;
#ifndef FIFOLOCK_NO_THREAD_LOCK
    if (thread_lock_init(module, st) < 0)
        return -1;
#endif
#ifdef FIFOLOCK_PY_SHM
    if (process_lock_init(module, st) < 0)
        return -1;
#endif
    if (etcd_lock_init(module, st) < 0)
        return -1;
    if (PyModule_AddStringConstant(module, "ENGINE_VERSION", FIFOLOCK_VERSION_STRING) < 0)
        return -1;
    return 0;
}

static int module_traverse(PyObject *module, visitproc visit, void *arg)
{
    modstate *st = PyModule_GetState(module);

    if (st == NULL)
        return 0;
    Py_VISIT(st->lock_type);
    Py_VISIT(st->context_type);
    Py_VISIT(st->acquire_type);
    Py_VISIT(st->entry_type);
    Py_VISIT(st->holds_type);
    Py_VISIT(st->done_type);
    Py_VISIT(st->tlock_type);
    Py_VISIT(st->tcontext_type);
    Py_VISIT(st->tholds_type);
    Py_VISIT(st->done);
    Py_VISIT(st->builtin);
    Py_VISIT(st->get_running_loop);
    Py_VISIT(st->defaultdict);
    Py_VISIT(st->wake);
    Py_VISIT(st->deadlock_error);
    Py_VISIT(st->invalid_state);
    Py_VISIT(st->base_event_loop);
    Py_VISIT(st->future_type);
    return 0;
}

static int module_clear(PyObject *module)
{
    modstate *st = PyModule_GetState(module);

    if (st == NULL)
        return 0;
    Py_CLEAR(st->lock_type);
    Py_CLEAR(st->context_type);
    Py_CLEAR(st->acquire_type);
    Py_CLEAR(st->entry_type);
    Py_CLEAR(st->holds_type);
    Py_CLEAR(st->done_type);
    Py_CLEAR(st->tlock_type);
    Py_CLEAR(st->tcontext_type);
    Py_CLEAR(st->tholds_type);
    Py_CLEAR(st->done);
    Py_CLEAR(st->builtin);
    Py_CLEAR(st->get_running_loop);
    Py_CLEAR(st->defaultdict);
    Py_CLEAR(st->invalid_state);
    Py_CLEAR(st->base_event_loop);
    Py_CLEAR(st->future_type);
    Py_CLEAR(st->kw_loop);
    Py_CLEAR(st->str_is_compatible);
    Py_CLEAR(st->str_create_future);
    Py_CLEAR(st->str_set_result);
    Py_CLEAR(st->str_blocking);
    Py_CLEAR(st->str_get_loop);
    Py_CLEAR(st->str_is_closed);
    Py_CLEAR(st->str_done);
    Py_CLEAR(st->str_call_soon_threadsafe);
    Py_CLEAR(st->str_thread_id);
    Py_CLEAR(st->wake);
    Py_CLEAR(st->deadlock_error);
    return 0;
}

static void module_free(void *module)
{
    module_clear((PyObject *)module);
}

static PyModuleDef_Slot module_slots[] = {
    { Py_mod_exec, module_exec },
#ifdef Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED
    /* 3.12 and later say so before exec: see module_exec() */
    { Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED },
#endif
    { 0, NULL },
};

PyDoc_STRVAR(module_doc,
"The C core of the fifolock package: FifoLock on the fifolock engine\n"
"(async_lock.c), and ThreadFifoLock on its thread lock (thread_lock.c).\n"
"Import fifolock, not this module.");

static struct PyModuleDef fifolock_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "fifolock._fifolock",
    .m_doc = module_doc,
    .m_size = sizeof(modstate),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__fifolock(void);

PyMODINIT_FUNC PyInit__fifolock(void)
{
    module_def_set(&fifolock_module);
    return PyModuleDef_Init(&fifolock_module);
}
