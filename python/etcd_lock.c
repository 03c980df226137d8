/*
 * fifolock._fifolock._EtcdSession: the etcd lock of the C library
 * (fifolock_etcd, src/etcd/) for Python, and fifolock.LockLostError.
 */
#include "cross_mode.h"

int etcd_lock_init(PyObject *module, modstate *st)
{
    PyObject *lost = PyErr_NewExceptionWithDoc(
        "fifolock.LockLostError",
        "A hold beyond this process was lost: the etcd session's lease expired or\n"
        "was revoked, or the lock's entry was deleted. Another holder may have\n"
        "been granted since: stop using what the lock protects.",
        PyExc_RuntimeError, NULL);

    (void)st;
    if (lost == NULL || PyModule_AddObjectRef(module, "LockLostError", lost) < 0) {
        Py_XDECREF(lost);
        return -1;
    }
    Py_DECREF(lost);
    return 0;
}
