/**
 * @file fifolock_etcd.h
 * fifolock_etcd: the same first-in-first-out locks, with user-defined modes,
 * kept on an etcd v3 cluster so that processes on many machines share them.
 *
 * A session (one etcd lease, kept alive by a background thread) asks for
 * locks by name. Each request is one key under the lock's queue prefix,
 * attached to the session's lease; the queue's order is etcd's create
 * revision. Every client decides for itself, with the engine's own grant
 * rule (src/rule.c), whether its request holds: it holds when it is in the
 * granted prefix of the queue, oldest first (every entry ahead of it holds,
 * and its mode fits them). A compatible request still queues behind a
 * waiting one: strict FIFO, nobody starves.
 *
 * The protocol, its steps (J, D, W, M, X, R, L) and why a lost reply, a
 * death or a pause cannot break it are written at the top of
 * src/etcd/lock.c; docs/etcd.md has the design and its costs. In short:
 *
 *   E1  a request has one key, created at most once (a transaction compares
 *       its create revision with 0), so retrying a join whose reply was lost
 *       finds the same entry: joining is idempotent;
 *   E2  entries only ever leave the part of the queue ahead of a request
 *       (new ones join behind, with larger revisions);
 *   E3  a request that held at some revision holds at every later revision
 *       while its key exists, because predicates are monotone (below): all
 *       clients that believe they hold are, together, a granted prefix;
 *   E4  a waiter watches exactly what can change its answer: the entry just
 *       ahead of it while that one waits, or every entry ahead once they all
 *       hold. O(1) etcd requests and watch events per change that concerns
 *       it, however long the queue; nobody polls.
 *
 * Modes cross the wire by name and limit. Every participant of one lock
 * must agree on what a (name, limit) means. A session knows the ready-made
 * modes (mutex, read, write, upgradable, is, ix, s, six, x, semaphore of any
 * size) and the table given to fifolock_etcd_open(); an entry whose mode it
 * does not know is never granted past (treated as incompatible with
 * everything), so a client never lets its own request overtake it.
 *
 * Predicates must be MONOTONE: if a mode may join some holders, it may join
 * any subset of them (fewer holders never make a mode incompatible). Each
 * client recomputes the granted prefix from the queue as it is now, not
 * step by step as one engine would; with a monotone predicate an entry that
 * held keeps holding after others leave, so a grant is never taken back
 * (E3). All ready-made modes are monotone. A predicate such as "only when
 * exactly two readers hold" is not, and must not be used here.
 *
 * Fencing token: the entry's create revision, handed to the holder. It
 * grows with grant order (a later grant has a larger token; holders granted
 * together have distinct tokens in queue order). A storage service that
 * remembers the largest token it has seen for a lock, and refuses writes
 * with a smaller one, cannot be corrupted by a holder that lost its lock
 * without noticing (a pause, a partition). With etcd as the storage, guard
 * the write with a transaction: compare the create revision of the writer's
 * entry key (fifolock_etcd_key()) with its token, then put. For shared
 * writing modes (several holders at once) the token only orders grants: two
 * current holders may write in any order, so the service must accept every
 * token not smaller than the oldest current holder's, and cannot fence a
 * stale holder among them; see docs/etcd.md.
 *
 * A lost lock is never silent: when the lease expires (the process was
 * paused or cut off longer than the TTL) or the entry is deleted, the lost
 * callback of the options runs (on the session's background thread) and
 * fifolock_etcd_check() says so. Before the cluster can say so, the holder
 * knows its own local bound: fifolock_etcd_safe_until() is the send time of
 * the last keepalive etcd acknowledged plus the TTL; past it, check()
 * reports ETIMEDOUT.
 *
 * Deadlines are absolute CLOCK_MONOTONIC times, as fifolock_mt takes them;
 * NULL waits for ever. Errors are positive errno values returned, errno is
 * never touched, nothing is printed, nothing aborts. fifolock_etcd_strerror()
 * says what a code means here, fifolock_etcd_last_error() gives the detail
 * (the server's or libcurl's words) of the calling thread's last failure.
 *
 * Every function of a session is thread-safe, except fifolock_etcd_close(),
 * which must not run while another call on the same session runs.
 */
#ifndef FIFOLOCK_ETCD_H
#define FIFOLOCK_ETCD_H

#include "fifolock.h"

#include <signal.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

/* This library's exports (libfifolock_etcd, not libfifolock). */
#if defined(FIFOLOCK_BUILDING) && defined(__GNUC__)
#define FIFOLOCK_ETCD_API __attribute__((visibility("default")))
#else
#define FIFOLOCK_ETCD_API
#endif

typedef struct fifolock_etcd fifolock_etcd;

/**
 * Runs once for each held lock that was lost: `reason` is ENOLCK (the lease
 * is gone, or the entry was deleted) or ETIMEDOUT (no keepalive was
 * acknowledged within the TTL: the lease may have expired). It runs on the
 * session's background thread, never inside a call of the caller's; it may
 * call fifolock_etcd_check() and fifolock_etcd_release() (which then returns
 * 0 and only forgets the hold), not fifolock_etcd_close().
 */
typedef void fifolock_etcd_lost_fn(fifolock_etcd *session, const char *name, int64_t token,
                                   int reason, void *arg);

struct fifolock_etcd_options {
    int ttl;                            /* lease TTL, seconds; 0: 10. At least 2. */
    const fifolock_mode *const *modes;  /* modes this process knows, beside the ready-made */
    size_t nmodes;                      /* ones; each needs a name */
    const char *prefix;                 /* key prefix; NULL: "fifolock/" */
    fifolock_etcd_lost_fn *lost;        /* may be NULL */
    void *lost_arg;
    int timeout_ms;                     /* per etcd request, and open's whole budget; 0: 5000 */
    /* TLS, as etcdctl's --cacert, --cert, --key: PEM file paths, NULL for none. */
    const char *cacert;
    const char *cert;
    const char *key;
    /* etcd's user/password auth, as etcdctl's --user: NULL for none. */
    const char *user;
    const char *password;
    /* (As in release 1.0: fields added since are in fifolock_etcd_config.) */
};

/**
 * fifolock_etcd_options and what came after release 1.0, for
 * fifolock_etcd_open_config(). Start from FIFOLOCK_ETCD_CONFIG_INIT: `size`
 * says which fields the caller was built with, so that fields added later
 * take their defaults in programs built before them.
 */
struct fifolock_etcd_config {
    size_t size;                          /* sizeof(struct fifolock_etcd_config) */
    struct fifolock_etcd_options options; /* as fifolock_etcd_open() takes them */
    /*
     * One attempt of a request at one endpoint may take this long before
     * the request moves on to the next endpoint (or tries again after a
     * short pause), within timeout_ms: a member that is dead, paused,
     * cut off or without a leader costs one attempt, not the whole budget.
     * Also how long a new watch may take to start, and a connection to be
     * made. Each round over the endpoints doubles it (up to 8 times), and
     * so does each failed keepalive (up to TTL/3): a cluster that is only
     * slow is still waited for. Every request may be sent again this way;
     * each is idempotent (docs/etcd.md). About etcd's election timeout is
     * right; 0: 1000 (which fifolock_etcd_open() uses).
     */
    int attempt_timeout_ms;
};

/* The defaults: `struct fifolock_etcd_config c = FIFOLOCK_ETCD_CONFIG_INIT;` */
#define FIFOLOCK_ETCD_CONFIG_INIT { sizeof(struct fifolock_etcd_config), { 0 }, 0 }

/**
 * Opens a session on the cluster at `endpoints`: a comma-separated list of
 * URLs ("http://10.0.0.1:2379,https://..."), tried in turn. It grants the
 * session's lease (authenticating first when options->user is set) and
 * starts the background thread that keeps the lease alive. `options` may be
 * NULL for the defaults; it is copied (the strings too), except the modes
 * themselves, which must outlive the session.
 *
 * Returns 0 and stores the session in *session, or: EINVAL (NULL pointers,
 * no endpoint, a TTL below 2, a table mode without name or predicate),
 * ECONNREFUSED (no endpoint answered within the timeout), ETIMEDOUT, and,
 * each cause with its own code, all final (they come at once, not at the
 * timeout):
 *   ENOKEY        the server's TLS certificate is not trusted: a wrong
 *                 cacert, or none given for a server the system's CAs do
 *                 not vouch for;
 *   EACCES        etcd refused the client: its certificate (none, or one
 *                 the server does not trust), or the user's permission;
 *   EPROTO        the wrong scheme: https:// to an etcd that speaks plain
 *                 HTTP, or http:// to one that speaks TLS;
 *   EKEYREJECTED  a wrong user name or password;
 *   ENOTSUP       a user was given, but etcd has no authentication enabled;
 * EIO (an answer this library does not understand), ENOMEM, EMFILE or
 * ENFILE (no file descriptor for the session's interrupt, below).
 * On failure nothing is left on the cluster and *session is untouched.
 *
 * The background thread blocks every signal: a process's signal handlers
 * run on the caller's threads, never on the session's.
 */
FIFOLOCK_ETCD_API int fifolock_etcd_open(fifolock_etcd **session, const char *endpoints,
                                    const struct fifolock_etcd_options *options);

/**
 * As fifolock_etcd_open(), with the options of `config` (NULL: the
 * defaults). EINVAL also when config->size is not that of a
 * fifolock_etcd_config of this or a later release.
 */
FIFOLOCK_ETCD_API int fifolock_etcd_open_config(fifolock_etcd **session, const char *endpoints,
                                           const struct fifolock_etcd_config *config);

/**
 * Waits until `n` holds of `mode` on the lock `name` (any non-empty string)
 * are granted, in FIFO order with every other request for that name on the
 * cluster, or until `deadline`. On 0 the fencing token (the entry's create
 * revision) is stored in *token if token is not NULL. `mode` is matched by
 * its name and limit with the session's modes.
 *
 * Returns 0 (held), or: ETIMEDOUT (the deadline passed; the request was
 * withdrawn and leaves no entry), EINTR (the session is interrupted, see
 * fifolock_etcd_interrupt(); withdrawn the same way), EINVAL (NULL session, name or mode, an
 * empty name, n == 0 or above 65536, a mode the session does not know),
 * EDEADLK (n holds of `mode` would be refused even by a lock nobody holds,
 * such as n above a semaphore's size: it could never be granted; nothing is
 * sent), ENOLCK (the session's lease was lost before this call, or the
 * request's entry was deleted by someone else while it waited), EACCES,
 * ECONNREFUSED, EIO, ENOMEM. On every error the request left no entry behind
 * (if etcd could not be reached to delete it, the background thread deletes
 * it later, and the lease bounds its life in any case).
 *
 * A request that is waiting when the session's lease is lost (etcd out of
 * reach longer than the TTL) held nothing: it gives the session a new lease
 * and queues again, at the tail (its place went with its entry), until the
 * deadline. Holds of the old lease stay lost (the lost callback, check()).
 */
FIFOLOCK_ETCD_API int fifolock_etcd_acquire(fifolock_etcd *session, const char *name,
                                       const fifolock_mode *mode,
                                       const struct timespec *deadline, int64_t *token);
FIFOLOCK_ETCD_API int fifolock_etcd_acquire_n(fifolock_etcd *session, const char *name,
                                         const fifolock_mode *mode, size_t n,
                                         const struct timespec *deadline, int64_t *token);

/**
 * Ends the session's waits early: every fifolock_etcd_acquire() and
 * fifolock_etcd_acquire_n() of `session` that is waiting now returns EINTR
 * at once (a request to etcd already under way, such as the join, ends
 * first, within the session's timeout_ms). Each first withdraws its request
 * exactly as a timeout does: one delete, so that when EINTR returns the
 * entry is gone and whoever queued behind it has moved up, not after the
 * lease's TTL (if etcd cannot be reached just then, the background thread
 * deletes it later, and the lease bounds its life in any case). A request
 * found granted before the interrupt was seen returns 0 and holds.
 *
 * The interrupt is sticky, so that one that comes just before a wait
 * begins is not lost: until fifolock_etcd_clear_interrupt(), every later
 * acquire and acquire_n returns EINTR at once too, sending nothing. Holds,
 * fifolock_etcd_try_acquire() (which never waits), release, check and close
 * are not affected.
 *
 * Async-signal-safe (it writes to an eventfd that the waits poll, and keeps
 * errno): call it from a signal handler or from any thread, while the
 * session is open, never during or after fifolock_etcd_close(). Returns 0,
 * or EINVAL for NULL. Calling it again while interrupted does nothing more.
 */
FIFOLOCK_ETCD_API int fifolock_etcd_interrupt(fifolock_etcd *session);

/**
 * Ends the interrupt: acquires wait again. An interrupt that comes while
 * this runs either is cleared or stays, whole. Async-signal-safe too.
 * Returns 0, or EINVAL for NULL.
 */
FIFOLOCK_ETCD_API int fifolock_etcd_clear_interrupt(fifolock_etcd *session);

/**
 * Takes the lock only if it can be held at once (nobody waiting ahead, the
 * mode fits the holders). Returns 0 (held, *token set), EBUSY (not granted;
 * the request was withdrawn), or an error as fifolock_etcd_acquire().
 */
FIFOLOCK_ETCD_API int fifolock_etcd_try_acquire(fifolock_etcd *session, const char *name,
                                           const fifolock_mode *mode, int64_t *token);

/**
 * Releases the hold of `name` that was granted with `token`. Returns 0, or:
 * EPERM (this session holds no such lock), EINVAL (NULL pointers), or an
 * error reaching etcd (ECONNREFUSED, ETIMEDOUT, EACCES, EIO), in which case
 * the lock is still held and the call may be repeated (closing the session
 * also lets it go). Releasing a hold that was lost returns 0 and forgets it.
 */
FIFOLOCK_ETCD_API int fifolock_etcd_release(fifolock_etcd *session, const char *name, int64_t token);

/**
 * Is the hold of `name` granted with `token` still safe, now? Returns 0
 * (yes, until *safe_until, on CLOCK_BOOTTIME, if safe_until is not NULL), ENOLCK (it was lost:
 * the lease or the entry is gone), ETIMEDOUT (no keepalive acknowledged
 * within the TTL: it may be lost), EPERM (this session holds no such lock),
 * EINVAL. It asks no server: it reads what the background thread learnt.
 */
FIFOLOCK_ETCD_API int fifolock_etcd_check(fifolock_etcd *session, const char *name, int64_t token,
                                     struct timespec *safe_until);

/**
 * The session's local safety bound: the send time of the last keepalive
 * etcd acknowledged, plus the lease's TTL. Until then no hold of the session
 * can have been lost by expiry. It is a CLOCK_BOOTTIME time, not
 * CLOCK_MONOTONIC like deadlines: a suspended machine's monotonic clock
 * stops while its lease runs out on the cluster. {0, 0} once the session
 * is lost. This function can't fail for a session.
 */
FIFOLOCK_ETCD_API struct timespec fifolock_etcd_safe_until(fifolock_etcd *session);

/**
 * Writes into buf (size bytes, NUL-terminated) the etcd key of the entry of
 * `name` granted with `token`, for a storage service that fences on it.
 * Returns 0, EPERM (no such hold), ERANGE (buf too small), EINVAL.
 */
FIFOLOCK_ETCD_API int fifolock_etcd_key(fifolock_etcd *session, const char *name, int64_t token,
                                   char *buf, size_t size);

/**
 * Revokes the lease: everything this session held or asked for is gone at
 * once, on the whole cluster. Stops the background thread and frees the
 * session; no lost callback runs for the holds let go here. Returns 0, or
 * the error of the revoke (ECONNREFUSED, ETIMEDOUT...), in which case the
 * session is freed all the same and its entries vanish when the lease
 * expires. NULL is EINVAL.
 */
FIFOLOCK_ETCD_API int fifolock_etcd_close(fifolock_etcd *session);

/**
 * Parses a mode as the command line spells it: mutex, read, write,
 * upgradable, is, ix, s, six, x, or semaphore:N (N from 1). For a
 * ready-made mode *mode points to it; for a semaphore, *storage is filled
 * and *mode points to it (storage must outlive its use). Returns 0, or
 * EINVAL (NULL pointers, an unknown name, a bad N).
 */
FIFOLOCK_ETCD_API int fifolock_etcd_parse_mode(const char *text, fifolock_mode *storage,
                                          const fifolock_mode **mode);

/**
 * A ready-made lost callback for a program that runs a command under the
 * lock (the `fifolock --etcd` command line): pass it as options.lost with a
 * struct fifolock_etcd_kill as lost_arg. On a loss it records the reason
 * and sends `signal` to `pid` (if pid > 0), once. Async-signal-safe,
 * allocation-free: it only stores and calls kill(). A program that sets
 * `pid` after the session is open (after fork()) must store it with
 * __atomic_store_n(..., __ATOMIC_SEQ_CST) and then read `lost` the same way:
 * if `lost` is already set, the loss may have missed the pid, and the
 * program signals the command itself. Read `lost` and `reason` atomically.
 */
struct fifolock_etcd_kill {
    pid_t pid;                  /* set before or after open; 0: nobody to signal */
    int signal;                 /* e.g. SIGTERM */
    volatile sig_atomic_t lost; /* read-only: nonzero once a hold was lost */
    volatile sig_atomic_t reason;
};
FIFOLOCK_ETCD_API void fifolock_etcd_kill_on_loss(fifolock_etcd *session, const char *name,
                                             int64_t token, int reason, void *arg);

/* A message a person can read for an error code of this library. */
FIFOLOCK_ETCD_API const char *fifolock_etcd_strerror(int err);

/**
 * The detail of the calling thread's last failed fifolock_etcd call: the
 * server's message or libcurl's, e.g. "etcdserver: authentication failed,
 * invalid user ID or password". Empty if there is none. Valid until the
 * thread's next fifolock_etcd call.
 */
FIFOLOCK_ETCD_API const char *fifolock_etcd_last_error(void);

/* ---- For event loops: a non-blocking acquire ---------------------------- */

/**
 * A request of fifolock_etcd_acquire_async(): opaque, owned by the session.
 * Valid from the call that made it until its done callback has been called,
 * or fifolock_etcd_cancel() returned 0 for it; never after.
 */
typedef struct fifolock_etcd_request fifolock_etcd_request;

/**
 * Tells how a request ended: `err` 0 when it is granted (`token` is then
 * its fencing token, and the hold is the session's exactly as a blocking
 * acquire's: fifolock_etcd_release(), fifolock_etcd_check() and
 * fifolock_etcd_key() take it), else the error fifolock_etcd_acquire_n()
 * would return (ETIMEDOUT, ENOLCK, ECONNREFUSED, EACCES, EIO, ENOMEM...;
 * `token` 0), with no entry left behind. It runs only inside
 * fifolock_etcd_process(), once per request; `req` is freed when it
 * returns. It may call every function of the session except
 * fifolock_etcd_close() (a new acquire_async, a cancel of another request,
 * release: all fine).
 */
typedef void fifolock_etcd_done_fn(fifolock_etcd_request *req, int err, int64_t token,
                                   void *arg);

/**
 * Starts a request for `n` holds of `mode` on the lock `name`, as
 * fifolock_etcd_acquire_n() would make it (the same queue, the same FIFO
 * order with every other request, blocking or not, of every session), and
 * returns at once: the outcome comes later, by `done`, from
 * fifolock_etcd_process(). `deadline` (absolute, CLOCK_MONOTONIC; NULL: none)
 * gives ETIMEDOUT by `done` once passed, the request withdrawn first. A
 * request that is waiting when the session's lease is lost queues again
 * with a new lease, as a blocking one does, while its deadline allows.
 *
 * Returns 0 and stores the request in *req, or at once, without calling
 * `done`: EINVAL (NULL session, done or req, and every argument error of
 * fifolock_etcd_acquire_n()), EDEADLK (it could never be granted), ENOLCK
 * (the session is lost), ENOMEM, EMFILE or ENFILE (no descriptor for the
 * session's fifolock_etcd_fd()). Nothing is sent in those cases.
 *
 * fifolock_etcd_interrupt() does not end async requests: cancel them.
 * A non-blocking call except for one step that is rare: when etcd says the
 * session's auth token expired, process() gets a new one before it goes on
 * (up to the session's timeout_ms).
 *
 * Thread-safety of this section: fifolock_etcd_acquire_async(),
 * fifolock_etcd_cancel(), fifolock_etcd_fd(), fifolock_etcd_timeout() and
 * fifolock_etcd_process() of one session must be called from one thread at
 * a time (the event loop's). The blocking calls may run on other threads
 * beside them, and the session's background thread keeps its lease alive
 * and watches every hold, async or not. All async requests of a session
 * share one libcurl multi handle and its connections: no thread per
 * request. fifolock_etcd_close() frees the requests still pending without
 * calling their `done` (their entries go with the session's lease).
 */
FIFOLOCK_ETCD_API int fifolock_etcd_acquire_async(fifolock_etcd *session, const char *name,
                                                  const fifolock_mode *mode, size_t n,
                                                  const struct timespec *deadline,
                                                  fifolock_etcd_done_fn *done, void *arg,
                                                  fifolock_etcd_request **req);

/**
 * Withdraws a request that has not been reported yet: returns 0, and its
 * `done` will not run. If it was granted but not yet reported, the hold is
 * let go as a release would. Its entry is deleted by the session's
 * background thread right after (the caller does not wait for etcd), and
 * whoever queued behind it moves up then. Returns EINVAL for NULL, or a
 * request that is not pending on this session (already reported, already
 * cancelled, or another session's), and changes nothing.
 */
FIFOLOCK_ETCD_API int fifolock_etcd_cancel(fifolock_etcd *session, fifolock_etcd_request *req);

/**
 * The one descriptor an event loop polls for POLLIN (level-triggered) for
 * every async request of the session: it is readable when
 * fifolock_etcd_process() has work. It stays the same for the session's
 * life and is closed by fifolock_etcd_close(); do not read it or close it.
 * Returns it, or -1 with errno set: EINVAL (NULL), ENOMEM, EMFILE, ENFILE.
 */
FIFOLOCK_ETCD_API int fifolock_etcd_fd(fifolock_etcd *session);

/**
 * How long, in milliseconds, until fifolock_etcd_process() is due even if
 * the descriptor stays quiet (a transfer's timer, a deadline, a retry, the
 * watches' periodic look for a failed member): 0 for at once, -1 when
 * nothing is due (no request pending). Ask again after every call of this
 * section. This function can't fail; NULL gives -1.
 */
FIFOLOCK_ETCD_API int fifolock_etcd_timeout(fifolock_etcd *session);

/**
 * Does the work that is ready, without waiting: reads the answers that
 * arrived, sends the next steps, withdraws the requests whose deadline
 * passed, then runs the done callbacks of the requests that ended. Call it
 * when the descriptor is readable or the timeout passed (calling it more
 * often is harmless). Returns 0, or EINVAL for NULL; a request's failure
 * is told to its callback, never here.
 */
FIFOLOCK_ETCD_API int fifolock_etcd_process(fifolock_etcd *session);

#ifdef __cplusplus
}
#endif

#endif
