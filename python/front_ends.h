/*
 * The front ends of fifolock._fifolock, each in its own file, and what the
 * module (fifolock_module.c) calls to register them: every *_init() makes its
 * types in `module` and adds the public ones (0, or -1 with an exception);
 * module functions that belong to one front end are named after it.
 */
#ifndef FIFOLOCK_PY_FRONT_ENDS_H
#define FIFOLOCK_PY_FRONT_ENDS_H

#include "module.h"

/* async_lock.c: FifoLock, LockContext, Holds (and its Acquire, Done). */
int async_lock_init(PyObject *module, modstate *st);
/* _wake(fut): fut.set_result(None) unless fut is done (module function). */
PyObject *async_lock_wake(PyObject *module, PyObject *fut);

#ifndef FIFOLOCK_NO_THREAD_LOCK
/* thread_lock.c: ThreadFifoLock, ThreadLockContext, ThreadHolds. */
int thread_lock_init(PyObject *module, modstate *st);
/* os.register_at_fork hooks (module functions). */
PyObject *thread_lock_fork_before(PyObject *module, PyObject *unused);
PyObject *thread_lock_fork_parent(PyObject *module, PyObject *unused);
PyObject *thread_lock_fork_child(PyObject *module, PyObject *unused);
#ifdef FIFOLOCK_PY_SHM
/* process_lock.c: _ShmLock, the core of fifolock.ProcessFifoLock (Linux). */
int process_lock_init(PyObject *module, modstate *st);
#endif
/* etcd_lock.c: LockLostError, and _EtcdSession (the core of
   fifolock.EtcdSession) where the etcd lock is built in. */
int etcd_lock_init(PyObject *module, modstate *st);

#endif

#ifdef FIFOLOCK_PY_SHM
/* process_lock.c: _ShmLock, the core of fifolock.ProcessFifoLock (Linux). */
int process_lock_init(PyObject *module, modstate *st);
#endif
/* etcd_lock.c: LockLostError, and _EtcdSession (the core of
   fifolock.EtcdSession) where the etcd lock is built in. */
int etcd_lock_init(PyObject *module, modstate *st);

#endif
