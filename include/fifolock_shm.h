/*
 * fifolock_shm: the fifolock for processes on one machine (Linux).
 *
 * The same first-in-first-out lock as fifolock.h, with modes defined by the
 * user, kept in a file that every participating process maps: prefork
 * servers, worker pools, unrelated programs sharing a cache or a device.
 * Requests are granted strictly in the order they are queued, across all
 * processes, by the engine's own rule (src/rule.c). A process that dies at
 * any instant, SIGKILL included, loses its holds and its requests and the
 * lock goes on: no supervisor, no stuck lock.
 *
 *     const fifolock_mode *modes[] = { &fifolock_read, &fifolock_write };
 *     fifolock_shm lock;
 *     int rc = fifolock_shm_open(&lock, "/run/myapp/cache.lock", modes, 2);
 *     rc = fifolock_shm_acquire(&lock, &fifolock_write);
 *     if (rc == EOWNERDEAD) { ...a writer died holding it: repair, see below... }
 *     ...
 *     fifolock_shm_release(&lock, &fifolock_write);
 *     fifolock_shm_close(&lock);
 *
 * Modes cross the process boundary by name and limit. Every process passes
 * its modes to fifolock_shm_open(); the file keeps a table of (name, limit)
 * and, for every pair of modes that some process knew, what their predicates
 * answered ("may one holder of A join one holder of B?", "may A join
 * nobody?"). A process whose predicates answer differently for the same
 * names is refused at open (EPROTO): that is the disagreement that can be
 * detected. Every ready-made mode (fifolock_mutex, _read, _write,
 * _upgradable, the intention modes, and a FIFOLOCK_SEMAPHORE of any size)
 * is known to every process, whether it passed it or not; a mode of the
 * user's own that a process did not pass is unknown to it, and its entries
 * are never granted past by that process (src/rule.c); the processes that
 * know the mode grant it. A mode of the user's own may not take a
 * ready-made mode's name and limit (EPROTO).
 * Predicates must be monotone: fewer holders never make a mode incompatible
 * (true of every ready-made mode), because who holds is recomputed from the
 * queue after each change (see src/shm.c). They run under the lock's
 * internal lock, in whichever process changes the queue, so they must be
 * quick and pure and must not call any fifolock_shm_* function.
 *
 * Holders and deaths. Holds and requests belong to the handle (one
 * fifolock_shm_open() in one process): any thread of that process may
 * release a hold the handle took, and the holds die with the process.
 * After a holder died, every request granted gets EOWNERDEAD instead of 0
 * (it holds the lock, and fifolock_shm_dead_holders() tells which processes
 * died holding which modes), until a holder of a mode that may write
 * declares the data repaired with fifolock_shm_consistent(). The lock itself
 * is exact again at once; what may not be is the data the dead process was
 * changing: roll back or replay a journal kept beside the data, recheck a
 * checksum, or rebuild the cache, then call fifolock_shm_consistent(). So
 * three readers granted together after a dead writer are all told, and
 * every later grant too until somebody repairs; a reader that was told
 * cannot repair (its mode only reads) and may not declare it done. A holder
 * of a mode declared read-only (fifolock_read, fifolock_is, fifolock_s, and
 * those listed in fifolock_shm_config.read_only) changed nothing: its
 * death is not reported at all. Dead waiters leave the queue silently. A
 * death is found when somebody needs it found: a request that the dead
 * process's holds block finds it (within a tick), so a request its holds
 * do not block may be granted beside it, untold, before that.
 *
 * Trust. Who takes part is who can open the file for reading and writing.
 * Such a process can do anything to the lock (it may write the file, as
 * with any shared memory): give write access only to programs that use the
 * lock. A process that can only read the file can look (map it, see who
 * holds), take byte locks and flock(2) locks on it, and wake waiters
 * spuriously (they tolerate that). The library is built so that it can
 * never
 *  - make two holders: a handle is alive only while it holds a write lock
 *    on its liveness byte, and only a descriptor open for writing can take
 *    one;
 *  - keep a dead holder alive: liveness is asked with a read lock, which
 *    only a write lock conflicts with, so a read lock that a reader put on a
 *    dead holder's byte does not count;
 *  - make a wait overrun its deadline: the library takes no flock(2) and no
 *    blocking byte lock; an open waits only for the internal lock, which
 *    only writers hold, and only for a few hundred instructions;
 *  - fill the file: it cannot write a handle, a request or a mode.
 * One denial of service is left to it, as flock(1) leaves one on a readable
 * file: by read-locking the liveness bytes of free handles it can stop new
 * handles from registering (fifolock_shm_open() then fails at once with
 * EACCES, and fifolock_shm_last_error() says why); handles already open go
 * on. Against that, make the file unreadable to others:
 * fifolock_shm_config.permissions 0600 or 0660 (fifolock(1): --file-mode).
 * The path is opened with O_NOFOLLOW (a symbolic link is ELOOP), and an
 * existing file is used only if it is a whole lock file: a new one is made
 * with no name (O_TMPFILE), laid out, and only then linked at the path, so
 * there is never a half-made lock file, and no need to lock one to make it.
 *
 * fork(): a child does not inherit its parent's holds or requests. It may
 * use an inherited handle: on first use the child registers as a new holder
 * of its own (and a release of a hold its parent took is EPERM). exec() and
 * process exit drop every hold of the process (the file descriptor is
 * close-on-exec). A thread's exit drops nothing: holds belong to processes.
 *
 * Errors are positive errno values returned by the function; errno itself is
 * never touched, nothing is printed and nothing aborts. Deadlines are
 * absolute CLOCK_MONOTONIC times.
 *
 * Why this design, and why it is correct
 * --------------------------------------
 * Studied before designing:
 *  - Robust futexes (the kernel's per-thread robust list, glibc's robust
 *    pthread mutexes): the kernel marks a futex word FUTEX_OWNER_DIED and wakes
 *    one waiter when its owner exits. Exact and instant, but only for a word
 *    that holds one owner's thread id: exclusive locks only, the owner is a
 *    thread (a thread's exit releases it), and the next owner must repair
 *    whatever was half done. Taken: the internal lock over the shared state
 *    is such a mutex, held only for a few hundred instructions of our own
 *    code, whose every update is repairable (src/shm.c, "Repair"). Avoided:
 *    any hold of the user's lock in a futex word: a shared mode has many
 *    owners.
 *  - LMDB's reader table: a slot per reader process with its pid, checked
 *    with kill(pid, 0) (mdb_reader_check) and locked-out stale readers with
 *    fcntl locks. Taken: a table of handles in the file, each with an owner.
 *    Avoided: pid liveness alone: a pid is reused, a zombie answers
 *    kill(pid, 0), processes in other pid namespaces have other pids.
 *  - SQLite's shared memory (the -shm file, unix VFS): fcntl byte-range locks
 *    as a dead-man switch, released by the kernel when the process dies.
 *    Taken: each handle holds a write lock on one byte of the lock file
 *    (far beyond its end) for as long as it lives; a handle is dead exactly
 *    when that byte is unlocked. We use open file description (OFD) locks,
 *    not process-associated ones, so that closing another descriptor of the
 *    file (the classic POSIX-lock trap SQLite works around with its inode
 *    table) drops nothing. They are released when the process exits or
 *    execs (the descriptor is close-on-exec), never by a thread's exit; they
 *    do not care about pid reuse or pid namespaces; a zombie holds none.
 *  - pidfd: exact identity, but a pidfd is only good in the process that
 *    opened it, and the file would have to name processes by pid first;
 *    every waiter would need a pidfd per holder. The byte lock gives the same
 *    exactness with one descriptor per handle.
 * fork() and the byte lock: a child shares its parent's open file
 * description, through the descriptor and through the mapping (a mapping
 * keeps the description it was made from open), which would keep a dead
 * parent's byte locked. So in the child (pthread_atfork) every handle's
 * descriptor is replaced by a fresh open of the same file (/proc/self/fd),
 * a new description holding no lock, and the mapping is remade from it in
 * place (MAP_FIXED: same address, same bytes); the child then registers a
 * slot of its own when it first uses the handle. A
 * process that forks with a raw clone() skips that step: its child keeps the
 * parent's handles alive until it execs or exits.
 *
 * Why it is FIFO: the file keeps the queue of requests, each with a sequence
 * number taken under the internal lock; holders are always a prefix of it,
 * and after every change the process that made it asks the engine's rule how
 * long that prefix is (src/rule.c) and tells the newly granted. A request
 * never overtakes an earlier one because the rule grants only from the head.
 *
 * Why a death never blocks the living: a dead process can block others in
 * three ways. (1) It held the internal lock: the robust mutex hands it to the
 * next process with EOWNERDEAD, which repairs the half-done update (every
 * update is one final store, or repairable by recomputation). (2) It held
 * the user's lock or queued ahead: every waiter sleeps on its futex at most
 * a tick (20 ms), then checks the byte locks of the processes ahead of it
 * and removes the dead ones' entries; the grants that follow are made at
 * once. (3) It was about to grant: grants are recomputed from the queue by
 * whoever changes it next, and a waiter's tick does that too. A death while
 * holding the fast path's word is found the same way (2). The spin model
 * tests/model/fifolock_shm.pml checks these with death as a step allowed
 * anywhere.
 *
 * Limits: the file's size, hence the number of open handles and of queued
 * requests, is fixed at creation (fifolock_shm_config.capacity, default
 * 4096); at most FIFOLOCK_SHM_MAX_MODES modes are in use at once (a
 * mode-table entry no live handle, queued request or pending report uses
 * is reclaimed). A full file is EUSERS, never a hang, and
 * fifolock_shm_last_error() says what is full. A file truncated by somebody while mapped
 * makes the processes that map it fault (SIGBUS), as with any shared
 * mapping; permissions are the defence.
 */
#ifndef FIFOLOCK_SHM_H
#define FIFOLOCK_SHM_H

#include "fifolock.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

struct timespec; /* <time.h> declares it only for POSIX builds */

/** Bytes of a mode's name in the file, its terminating NUL included. */
#define FIFOLOCK_SHM_NAME_MAX 32
/** Distinct (name, limit) modes one lock file can know. */
#define FIFOLOCK_SHM_MAX_MODES 32
/** Modes one fifolock_shm_open() may pass. */
#define FIFOLOCK_SHM_MAX_OPEN_MODES FIFOLOCK_SHM_MAX_MODES
/** Deaths one EOWNERDEAD can report in detail (more are counted). */
#define FIFOLOCK_SHM_REPORT_MAX 8
/** Default capacity: queued requests, and open handles, at once. */
#define FIFOLOCK_SHM_DEFAULT_CAPACITY 4096
/** Largest capacity. */
#define FIFOLOCK_SHM_MAX_CAPACITY 65536
/** Most holds one weighted request may ask for. */
#define FIFOLOCK_SHM_MAX_N 65535

typedef struct fifolock_shm fifolock_shm;

/** A handle on a lock file. Caller-allocated; all fields private. */
struct fifolock_shm {
    /* private */
    struct fifolock_shm__handle *handle;
};

/**
 * The options of fifolock_shm_open_ex(), as in release 1.0 (kept so that
 * programs built against it run unchanged): zero fields take the defaults.
 * New programs use fifolock_shm_config, which can grow.
 */
typedef struct fifolock_shm_options {
    size_t capacity;    /* when creating: handles open, and requests queued, at once */
    mode_t permissions; /* when creating: the file's mode, before the umask (0666) */
} fifolock_shm_options;

/**
 * Options of fifolock_shm_open_config(). Start from FIFOLOCK_SHM_CONFIG_INIT:
 * `size` says which fields the caller knows, so that fields added later
 * take their defaults in programs built before them. Zero fields take the
 * defaults.
 */
typedef struct fifolock_shm_config {
    size_t size;        /* sizeof(fifolock_shm_config) as the caller was built */
    size_t capacity;    /* when creating: handles open, and requests queued, at once
                           (FIFOLOCK_SHM_DEFAULT_CAPACITY) */
    mode_t permissions; /* when creating: the file's mode, before the umask (0666) */
    /*
     * Modes of this open (each also in `modes`) whose holders only read the
     * data: a holder of one that dies leaves nothing to repair, so its death
     * is not reported (no EOWNERDEAD), and holding one does not allow
     * fifolock_shm_consistent(). fifolock_read, fifolock_is and fifolock_s
     * are read-only without being listed. Every process must declare a mode
     * the same way (else EPROTO).
     */
    const fifolock_mode *const *read_only;
    size_t nread_only;
} fifolock_shm_config;

/** The defaults, with `size` set: `fifolock_shm_config o = FIFOLOCK_SHM_CONFIG_INIT;` */
#define FIFOLOCK_SHM_CONFIG_INIT { sizeof(fifolock_shm_config), 0, 0, NULL, 0 }

/** One holder that died, as fifolock_shm_dead_holders() reports it. */
struct fifolock_shm_death {
    pid_t pid;                         /* the dead process, as its pid namespace named it */
    const fifolock_mode *mode;         /* the mode it held, NULL if this process does not know it */
    char name[FIFOLOCK_SHM_NAME_MAX];  /* that mode's name in the file */
    size_t limit;                      /* and its limit */
    size_t n;                          /* holds of it that died */
};

/**
 * Opens the lock in the file at `path`, creating the file if it does not
 * exist (then with the default options), and registers this process as one
 * of its users. `modes` lists the `nmodes` modes (1 to
 * FIFOLOCK_SHM_MAX_OPEN_MODES) this handle will use; each needs a predicate
 * and a name (shorter than FIFOLOCK_SHM_NAME_MAX), and no two may have the
 * same name and limit. They must stay valid and unchanged until close.
 *
 * Returns 0, or, with nothing open: EINVAL (NULL lock or path, bad mode
 * table); EBADMSG if the file is not a fifolock lock file, is corrupt, or was
 * made by an incompatible build (other version, word size or pthread ABI);
 * EPROTO if a mode's name and limit are known to the file with a predicate
 * that answers differently from this process's (or declared read-only
 * otherwise); EUSERS if the file's mode table or its table of handles is
 * full ("lock file full", see fifolock_shm_last_error()); EACCES if the
 * file's permissions do not let this user read and write it, or if every
 * free liveness byte is read-locked by a process that may only read the
 * file (see "Trust" above); ELOOP if `path` is a symbolic link; ENOMEM; or
 * the errno of open(2), ftruncate(2), linkat(2) or mmap(2). An existing file
 * is never made a lock file: an empty or foreign one is EBADMSG. Never
 * waits on anything another process could hold for long (no flock(2)).
 * Thread-safe; the predicates run here.
 */
FIFOLOCK_API int fifolock_shm_open(fifolock_shm *lock, const char *path,
                                   const fifolock_mode *const *modes, size_t nmodes);

/**
 * As fifolock_shm_open(), with options for a file this call creates (an
 * existing file keeps its own); `options` may be NULL. EINVAL also for a
 * capacity above FIFOLOCK_SHM_MAX_CAPACITY or permissions beyond 0777.
 */
FIFOLOCK_API int fifolock_shm_open_config(fifolock_shm *lock, const char *path,
                                          const fifolock_mode *const *modes, size_t nmodes,
                                          const fifolock_shm_config *options);

/**
 * The same with release 1.0's options (capacity and permissions only);
 * `options` may be NULL.
 */
FIFOLOCK_API int fifolock_shm_open_ex(fifolock_shm *lock, const char *path,
                                      const fifolock_mode *const *modes, size_t nmodes,
                                      const fifolock_shm_options *options);

/**
 * Closes the handle. Returns 0; EBUSY if this handle (in this process) holds
 * or waits for the lock (nothing changes); EINVAL for a NULL or closed lock.
 * Once it returned 0 the handle may not be used again until reopened. In a
 * child process after fork() it closes the child's copy and never touches
 * the parent's. The file stays: remove it when no process uses it.
 */
FIFOLOCK_API int fifolock_shm_close(fifolock_shm *lock);

/**
 * Takes one hold of `mode`, blocking until it is granted: at once if nobody
 * waits and `mode` is compatible with the current holders, else after every
 * earlier request in the queue (of any process) was granted and the holders
 * allow it. The waiting thread spins briefly, then sleeps on a futex in the
 * file, waking at least every 20 ms to remove dead processes' entries ahead
 * of it. Signals do not interrupt the wait.
 *
 * Returns 0 (held), or EOWNERDEAD: held too, and a holder died and nobody
 * has declared the data repaired since (fifolock_shm_consistent()); see
 * fifolock_shm_dead_holders() and the header's comment.
 * Errors, with nothing held or queued: EINVAL (NULL lock or mode, a mode not
 * given to fifolock_shm_open()); EUSERS (the queue is full: "lock file
 * full"); EUSERS or EACCES also if a child process after fork() cannot
 * register (as at open); EDEADLK if `mode` (with its `n`) is refused even
 * by an empty lock, so that it could never be granted; ENOLCK if
 * this process's request was removed as a dead one's (only if something
 * closed the handle's file descriptor behind its back); ENOTRECOVERABLE if
 * the internal lock was left unusable (never, unless a process outside this
 * library touched the file). Thread-safe.
 */
FIFOLOCK_API int fifolock_shm_acquire(fifolock_shm *lock, const fifolock_mode *mode);

/**
 * Takes one hold of `mode` if that can happen now: nobody waits and `mode` is
 * compatible with the holders (after removing dead holders, if any blocked
 * it). Never blocks. Returns 0, EOWNERDEAD (held, as above), EBUSY (nothing
 * changed), or the errors of fifolock_shm_acquire(). Thread-safe.
 */
FIFOLOCK_API int fifolock_shm_try_acquire(fifolock_shm *lock, const fifolock_mode *mode);

/**
 * As fifolock_shm_acquire(), but gives up at `deadline` (absolute,
 * CLOCK_MONOTONIC): ETIMEDOUT, the request left the queue without a trace
 * (those it held back are granted) and nothing is held. If the grant and the
 * deadline race, the grant wins. A deadline already past behaves as
 * fifolock_shm_try_acquire() but reports ETIMEDOUT for EBUSY. EINVAL also for
 * a NULL deadline or a tv_nsec outside [0, 999999999]. Thread-safe.
 */
FIFOLOCK_API int fifolock_shm_timed_acquire(fifolock_shm *lock, const fifolock_mode *mode,
                                            const struct timespec *deadline);

/**
 * Weighted requests: `n` holds of `mode` at once, all or nothing, waiting in
 * one place of the queue (fifolock.h: weighted requests). `deadline` NULL waits for
 * ever. n == 0 or n > FIFOLOCK_SHM_MAX_N is EINVAL. Otherwise as fifolock_shm_timed_acquire().
 * If `token` is not NULL, the request always goes through the queue (never
 * the one-instruction fast path) and *token receives its sequence number: a
 * number that grows with the order of grants across all processes (a
 * fencing token), also on EOWNERDEAD.
 */
FIFOLOCK_API int fifolock_shm_acquire_n(fifolock_shm *lock, const fifolock_mode *mode, size_t n,
                                        const struct timespec *deadline, uint64_t *token);

/**
 * As fifolock_shm_acquire_n() without a token, for a wait that something
 * other than a deadline must be able to end (a signal seen by a language
 * runtime, a cancelled task): `interrupted(arg)` is asked on the waiting
 * thread before each sleep of the wait, under no lock of this library, and
 * no sleep lasts longer than 50 ms (fifolock.h: fifolock_interrupt_fn).
 * `interrupted` NULL: never asked (then exactly fifolock_shm_acquire_n());
 * it is not asked when the request is granted without sleeping.
 *
 * Returns 0 or EOWNERDEAD (held, as fifolock_shm_acquire()); EINTR:
 * `interrupted` answered nonzero, and the request left the queue exactly as
 * at a deadline, without a trace (those it held back are granted), nothing
 * held; if the grant raced the answer, the grant wins (0 or EOWNERDEAD, and
 * the caller holds). ETIMEDOUT at `deadline` (NULL: none), as
 * fifolock_shm_timed_acquire(). Otherwise the errors of
 * fifolock_shm_acquire_n(), with nothing held or queued. Thread-safe.
 */
FIFOLOCK_API int fifolock_shm_acquire_interruptible(fifolock_shm *lock, const fifolock_mode *mode,
                                                    size_t n, const struct timespec *deadline,
                                                    fifolock_interrupt_fn *interrupted, void *arg);

/**
 * Turns one hold of `from` that this handle took (in this process) into one
 * hold of `to` without letting go (fifolock.h: fifolock_convert()): a writer
 * downgrades to a reader, an upgradable reader upgrades to a writer.
 *
 * If `to` may join the holders other than this one hold of `from`, the
 * switch is made now, and the waiters `from` held back are granted inside
 * this call. Otherwise the conversion waits ahead of every queued request of
 * every process (this handle keeps `from` meanwhile; nothing else is granted,
 * new requests queue behind it) until the other holders make room. At most
 * one conversion waits per lock file.
 *
 * Returns 0 (holds `to`, not `from`) or EOWNERDEAD: the switch made while
 * a holder's death is unrepaired, reported exactly as a grant would be
 * (fifolock_shm_acquire(); fifolock_shm_dead_holders() says who); it holds
 * `to`. Errors, with `from` still held and nothing queued: EPERM (this
 * handle holds no `from` in this process that it may convert: a hold whose
 * acquire has not yet returned, or one this handle's other waiting
 * conversion converts, does not count); EDEADLK if the switch can't be made
 * now and `to` can never be granted (an empty lock refuses it) or another
 * conversion already waits on the lock (in any process: two upgrading
 * readers would wait for each other for ever); EINVAL (NULL arguments,
 * a mode not given to open); EUSERS (the queue is full); ENOLCK,
 * ENOTRECOVERABLE as fifolock_shm_acquire().
 *
 * While the conversion waits, this handle's other threads cannot release the
 * holds of the request that `from` is taken from (EPERM): with a weighted
 * hold, all of them. A process that dies while its conversion waits loses
 * both, as any dead process's holds and requests; the lock goes on (its
 * hold of `from` is reported as any death of a holder). Thread-safe.
 */
FIFOLOCK_API int fifolock_shm_convert(fifolock_shm *lock, const fifolock_mode *from,
                                      const fifolock_mode *to);

/**
 * As fifolock_shm_convert() if the switch can be made now (after removing
 * dead holders, if any stood in the way); never waits. Returns 0,
 * EOWNERDEAD, EBUSY (`from` still held, nothing changed), or the errors of
 * fifolock_shm_convert(); EDEADLK only for a `to` that can never be granted.
 */
FIFOLOCK_API int fifolock_shm_try_convert(fifolock_shm *lock, const fifolock_mode *from,
                                          const fifolock_mode *to);

/**
 * As fifolock_shm_convert(), but gives up at `deadline` (absolute,
 * CLOCK_MONOTONIC): ETIMEDOUT, the caller still holds `from`, the
 * conversion left no trace (the waiters it held back are granted). If the
 * switch and the deadline race, exactly one wins: 0 with `to` held, or
 * ETIMEDOUT with `from` held. A deadline already past behaves as
 * fifolock_shm_try_convert() but says ETIMEDOUT instead of EBUSY. EINVAL
 * also for a NULL deadline or a tv_nsec outside [0, 999999999].
 */
FIFOLOCK_API int fifolock_shm_timed_convert(fifolock_shm *lock, const fifolock_mode *from,
                                            const fifolock_mode *to,
                                            const struct timespec *deadline);

/**
 * As fifolock_shm_timed_convert() (`deadline` NULL: none), asking
 * `interrupted(arg)` before each sleep as fifolock_shm_acquire_interruptible()
 * does (`interrupted` NULL: never asked): EINTR when it answers nonzero, and
 * the caller still holds `from`, the conversion withdrawn without a trace;
 * if the switch won the race, its result (0 or EOWNERDEAD, `to` held).
 */
FIFOLOCK_API int fifolock_shm_convert_interruptible(fifolock_shm *lock, const fifolock_mode *from,
                                                    const fifolock_mode *to,
                                                    const struct timespec *deadline,
                                                    fifolock_interrupt_fn *interrupted,
                                                    void *arg);

/**
 * Drops one hold of `mode` that this handle took (in this process) and grants
 * the waiters it held back; they are told inside this call. Returns 0; EPERM
 * if this handle holds no `mode` (nothing changes; a hold whose grant the
 * acquiring thread has not yet returned from does not count); EINVAL (NULL
 * lock or unknown mode). Any thread of the process may release. Thread-safe.
 */
FIFOLOCK_API int fifolock_shm_release(fifolock_shm *lock, const fifolock_mode *mode);

/** Drops `n` holds of `mode` at once (EPERM if the handle holds fewer). */
FIFOLOCK_API int fifolock_shm_release_n(fifolock_shm *lock, const fifolock_mode *mode, size_t n);

/**
 * After an acquire returned EOWNERDEAD in this thread: stores up to `max`
 * reports of the holders whose death it told (oldest first) in `out` and
 * returns how many deaths there were (which may exceed `max`, or
 * FIFOLOCK_SHM_REPORT_MAX). Returns 0 if this thread's last EOWNERDEAD was
 * not from this lock. Reads only thread-local memory; can't fail.
 */
FIFOLOCK_API size_t fifolock_shm_dead_holders(const fifolock_shm *lock,
                                              struct fifolock_shm_death *out, size_t max);

/**
 * Stores in *fd a new descriptor, not close-on-exec, that keeps this handle
 * alive while it is open, in this process or in any process that inherits
 * it: the handle's holds stay held (and its requests queued) until both this
 * process has died (or closed the handle) and every copy of the descriptor is
 * closed. For a program that runs another under the lock, as flock(1) does:
 * the child inherits the descriptor across fork() and exec(), and if the
 * parent is killed the child keeps the hold until it exits; nobody else is
 * granted meanwhile. Close it in the parent after the fork. A hold that dies
 * this way (the handle's process died first) is reported as a death when the
 * last copy closes. Returns 0; EINVAL (NULL argument); EPERM if this handle
 * is not registered in this process (a child after fork() that has not used
 * it yet); or the errno of fcntl(2) (EMFILE). Thread-safe.
 */
FIFOLOCK_API int fifolock_shm_keepalive_fd(fifolock_shm *lock, int *fd);

/**
 * Declares the data the lock protects consistent again after a death: from
 * now on, grants are no longer told EOWNERDEAD (until the next death of a
 * holder of a mode that may write). Call it while holding the lock in a mode
 * not declared read-only, once you have repaired what the dead left (a
 * reader that was told cannot repair, and cannot call this). Returns 0 (also
 * when no death was pending); EPERM if this handle holds no such mode now
 * (nothing changes); EINVAL (NULL or closed lock); ENOTRECOVERABLE as the
 * acquires. Thread-safe.
 */
FIFOLOCK_API int fifolock_shm_consistent(fifolock_shm *lock);

/**
 * The detail of the last error a fifolock_shm_* call of this thread
 * returned, for a person to read ("lock file full: 4096 handles"), or ""
 * when there is none to add to fifolock_strerror(). Thread-local; meaningful
 * right after the failed call. Can't fail.
 */
FIFOLOCK_API const char *fifolock_shm_last_error(void);

/**
 * Requests waiting right now, of all processes, a waiting conversion
 * included (0 for NULL). Can't fail.
 */
FIFOLOCK_API size_t fifolock_shm_waiting(fifolock_shm *lock);

/**
 * Holds of `mode` right now, of all processes (0 for NULL or an unknown
 * mode). A snapshot; dead holders not yet found count. Can't fail.
 */
FIFOLOCK_API size_t fifolock_shm_held(fifolock_shm *lock, const fifolock_mode *mode);

#ifdef __cplusplus
}
#endif

#endif /* FIFOLOCK_SHM_H */
