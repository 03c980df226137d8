/*
 * Python mode classes as the C modes of the locks beyond one process
 * (cross_mode.h says what crosses and how).
 */
#include "cross_mode.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

void cross_table_init(struct cross_table *t, modstate *st)
{
    t->st = st;
    t->modes = NULL;
    t->n = 0;
    t->cap = 0;
}

void cross_table_clear(struct cross_table *t)
{
    for (size_t i = 0; i < t->n; i++) {
        Py_CLEAR(t->modes[i]->entry);
        PyMem_RawFree(t->modes[i]);
    }
    PyMem_RawFree(t->modes);
    t->modes = NULL;
    t->n = 0;
    t->cap = 0;
}

int cross_table_traverse(struct cross_table *t, visitproc visit, void *arg)
{
    for (size_t i = 0; i < t->n; i++)
        Py_VISIT(t->modes[i]->entry);
    return 0;
}

struct cross_mode *cross_table_find(struct cross_table *t, PyObject *cls)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->modes[i]->entry != NULL && t->modes[i]->entry->cls == cls)
            return t->modes[i];
    return NULL;
}

PyObject *cross_table_class_of(struct cross_table *t, const fifolock_mode *mode)
{
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    EntryObject *e;

    for (size_t i = 0; i < t->n; i++)
        if (t->modes[i]->mode == mode && t->modes[i]->entry != NULL)
            return t->modes[i]->entry->cls;
    /* a ready-made mode the library made or passed without this table */
    e = entry_of_ready_mode(t->st, mode);
    if (e != NULL)
        return e->cls;
    if (mode->is_compatible != fifolock_semaphore_is_compatible)
        return NULL;
    /* the library's own copy of a semaphore: the class of that size */
    while (PyDict_Next(t->st->builtin, &pos, &key, &value)) {
        const fifolock_mode *m = ((EntryObject *)value)->mode;
        if (m->is_compatible == fifolock_semaphore_is_compatible && m->limit == mode->limit)
            return ((EntryObject *)value)->cls;
    }
    return NULL;
}

void cross_table_truncate(struct cross_table *t, size_t n)
{
    while (t->n > n) {
        struct cross_mode *cm = t->modes[--t->n];
        Py_CLEAR(cm->entry);
        PyMem_RawFree(cm);
    }
}

void cross_table_modes(struct cross_table *t, const fifolock_mode **out)
{
    for (size_t i = 0; i < t->n; i++)
        out[i] = t->modes[i]->mode;
}

/* {class: holders} of `holds` as a defaultdict(int); NULL with an exception. */
static PyObject *holds_as_dict(struct cross_table *t, const fifolock_holds *holds)
{
    size_t n = fifolock_holds_list(holds, NULL, NULL, 0), got;
    const fifolock_mode **modes = NULL;
    size_t *counts = NULL;
    PyObject *d = PyDict_New();

    if (d == NULL || n == 0)
        return holds_defaultdict(t->st, d);
    modes = PyMem_Malloc(n * sizeof *modes);
    counts = PyMem_Malloc(n * sizeof *counts);
    if (modes == NULL || counts == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    got = fifolock_holds_list(holds, modes, counts, n);
    for (size_t i = 0; i < got && i < n; i++) {
        PyObject *cls = cross_table_class_of(t, modes[i]), *old, *v;
        size_t count = counts[i];
        int rc;

        if (cls == NULL)
            continue; /* a mode this process does not know */
        old = PyDict_GetItemWithError(d, cls);
        if (old == NULL && PyErr_Occurred())
            goto fail;
        if (old != NULL)
            count += PyLong_AsSize_t(old);
        v = PyLong_FromSize_t(count);
        rc = v ? PyDict_SetItem(d, cls, v) : -1;
        Py_XDECREF(v);
        if (rc < 0)
            goto fail;
    }
    PyMem_Free(modes);
    PyMem_Free(counts);
    return holds_defaultdict(t->st, d);
fail:
    PyMem_Free(modes);
    PyMem_Free(counts);
    Py_XDECREF(d);
    return NULL;
}

/*
 * The library's predicate for a mode of the user's own: runs under the
 * library's internal lock, in the thread of the library call, which
 * released the GIL; takes it here (the internal lock, then the GIL).
 */
static bool cross_is_compatible(const fifolock_mode *mode, const fifolock_holds *holds)
{
    struct cross_mode *cm = CONTAINER_OF(mode, struct cross_mode, own);
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *saved, *view;
    int ok = -1;

    /* A waiting thread may withdraw its request with an exception pending
       (an interrupt): keep it aside. */
    saved = PyErr_Occurred() ? take_exception() : NULL;
    if (cm->entry == NULL) {
        PyErr_Format(PyExc_RuntimeError, "lock mode %s can no longer be used", cm->name);
    } else {
        view = holds_as_dict(cm->table, holds);
        if (view != NULL) {
            ok = entry_ask(cm->entry, view);
            Py_DECREF(view);
        }
    }
    if (ok < 0) {
        /* "no" is the safe answer: it can never make a second holder. */
        PyObject *where = cm->entry != NULL ? Py_NewRef(cm->entry->cls) : NULL;
        report_unraisable(take_exception(), where);
        Py_XDECREF(where);
        ok = 0;
    }
    if (saved != NULL)
        restore_exception(saved);
    PyGILState_Release(g);
    return ok != 0;
}

/* `name` and `limit` of a user's mode class into cm; -1 with an exception. */
static int user_name(struct cross_table *t, struct cross_mode *cm, PyObject *cls, size_t name_max)
{
    PyObject *name = PyObject_GetAttrString(cls, "name"), *limit;
    const char *text;
    Py_ssize_t len;
    size_t lim = 0;

    if (name == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return -1;
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError,
                     "lock mode %R has no name: a mode crosses processes by the name it "
                     "declares (a class attribute, name = \"...\"), which every process "
                     "of the lock must give the same meaning",
                     cls);
        return -1;
    }
    if (!PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "the name of lock mode %R must be a str, not %.200s",
                     cls, Py_TYPE(name)->tp_name);
        Py_DECREF(name);
        return -1;
    }
    text = PyUnicode_AsUTF8AndSize(name, &len);
    if (text == NULL || len == 0 || (size_t)len >= name_max || strlen(text) != (size_t)len) {
        if (text != NULL)
            PyErr_Format(PyExc_ValueError,
                         "the name of lock mode %R must be 1 to %zu bytes (UTF-8) without "
                         "NUL, not %R",
                         cls, name_max - 1, name);
        Py_DECREF(name);
        return -1;
    }
    memcpy(cm->name, text, (size_t)len + 1);
    Py_DECREF(name);
    limit = PyObject_GetAttrString(cls, "limit");
    if (limit == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return -1;
        PyErr_Clear();
    } else {
        lim = PyLong_Check(limit) ? PyLong_AsSize_t(limit) : (size_t)-1;
        if (lim == (size_t)-1) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError,
                         "the limit of lock mode %R must be an int from 0 to %zu, not %R",
                         cls, (size_t)-1 - 1, limit);
            Py_DECREF(limit);
            return -1;
        }
        Py_DECREF(limit);
    }
    for (size_t i = 0; i < t->n; i++) {
        const fifolock_mode *m = t->modes[i]->mode;
        if (m->name != NULL && strcmp(m->name, cm->name) == 0 && m->limit == lim) {
            PyErr_Format(PyExc_ValueError,
                         "lock modes %R and %R have the same name '%s' and limit %zu: "
                         "another process could not tell them apart",
                         t->modes[i]->entry->cls, cls, cm->name, lim);
            return -1;
        }
    }
    cm->own.is_compatible = cross_is_compatible;
    cm->own.name = cm->name;
    cm->own.limit = lim;
    cm->mode = &cm->own;
    return 0;
}

struct cross_mode *cross_table_get(struct cross_table *t, PyObject *cls, size_t name_max,
                                   int *added)
{
    struct cross_mode *cm = cross_table_find(t, cls);
    PyObject *builtin;
    EntryObject *e;

    *added = 0;
    if (cm != NULL)
        return cm;
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16;
        struct cross_mode **modes = PyMem_RawRealloc(t->modes, cap * sizeof *modes);
        if (modes == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        t->modes = modes;
        t->cap = cap;
    }
    cm = PyMem_RawCalloc(1, sizeof *cm);
    if (cm == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    cm->table = t;
    builtin = PyDict_GetItemWithError(t->st->builtin, cls);
    if (builtin == NULL && PyErr_Occurred())
        goto fail;
    if (builtin != NULL) {
        e = (EntryObject *)Py_NewRef(builtin);
        cm->mode = e->mode;
        snprintf(cm->name, sizeof cm->name, "%s", e->mode->name ? e->mode->name : "");
    } else {
        e = entry_new_python(t->st, cls, NULL);
        if (e == NULL)
            goto fail;
        if (e->kind == KIND_PLAIN && entry_bind(t->st, e) < 0) {
            Py_DECREF(e);
            goto fail;
        }
        if (user_name(t, cm, cls, name_max) < 0) {
            Py_DECREF(e);
            goto fail;
        }
    }
    cm->entry = e;
    t->modes[t->n++] = cm;
    *added = 1;
    return cm;
fail:
    PyMem_RawFree(cm);
    return NULL;
}
