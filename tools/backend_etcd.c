/*
 * The etcd backend of the command line: LOCK is a lock name on the cluster
 * at --etcd ENDPOINTS (libfifolock_etcd, include/fifolock_etcd.h).
 *
 * One session per run: open (its lease), acquire, and on release close
 * (which revokes the lease, so nothing is left on the cluster even if the
 * release could not be sent).
 *
 * A lost lock (the lease expired, the entry was deleted) must reach the
 * command as SIGTERM, however the loss and the fork interleave. The lost
 * callback runs on the session's thread, the fork on the main thread; they
 * meet on two words, each written then the other read, all seq_cst:
 *
 *   callback: lost = 1;  if (pid > 0) kill(pid)
 *   started:  pid = P;   if (lost) kill(P)
 *
 * Whichever order, at least one of them sees the other's write (store then
 * load, both sequentially consistent: Dekker's argument), so the command is
 * signalled at least once (twice is harmless). This is the library's
 * fifolock_etcd_kill_on_loss() with atomics: its struct's volatile
 * sig_atomic_t fields order nothing between threads.
 *
 * If this program dies (SIGKILL) while the command runs, nobody keeps the
 * lease alive and etcd grants the lock to the next after the TTL: the
 * command gets SIGKILL at once instead (PR_SET_PDEATHSIG, fifolock.c), long
 * before that, so no second holder runs beside it.
 *
 * A signal while the lock is awaited (SIGINT, SIGTERM, SIGHUP: the main
 * program's handler calls etcd_interrupt) ends the wait with
 * fifolock_etcd_interrupt(), which withdraws the request: nothing is left
 * to block those queued behind until the lease's TTL. The handler may run
 * on any thread not blocking signals, also while the session opens or
 * closes, so it meets the acquiring thread on three words, seq_cst:
 *
 *   handler:  interrupted = 1;  busy++;  s = waiting;  if (s) interrupt(s);  busy--
 *   acquire:  waiting = S;  if (interrupted) interrupt(S);  ...wait...
 *             waiting = NULL;  while (busy) ;  close(S)
 *
 * A signal before the wait is seen by one side or both (Dekker again), and
 * the session is closed only once no handler can still be using it.
 */
#define _GNU_SOURCE
#include "backend.h"
#include "fifolock_etcd.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct etcd_state {
    fifolock_etcd *session;
    const char *name;
    int64_t token;
    pid_t pid;  /* the command, once forked; 0 before (atomic) */
    int lost;   /* set once by the callback (atomic) */
    int reason; /* ENOLCK or ETIMEDOUT, written before lost (atomic) */
};

/* The session's lost callback (see the top of the file). */
static void on_loss(fifolock_etcd *session, const char *name, int64_t token, int reason,
                    void *arg)
{
    struct etcd_state *e = arg;
    pid_t pid;

    (void)session;
    (void)name;
    (void)token;
    __atomic_store_n(&e->reason, reason, __ATOMIC_SEQ_CST);
    if (__atomic_exchange_n(&e->lost, 1, __ATOMIC_SEQ_CST))
        return;
    pid = __atomic_load_n(&e->pid, __ATOMIC_SEQ_CST);
    if (pid > 0)
        kill(pid, SIGTERM);
}

static fifolock_etcd *waiting;  /* the session whose wait a signal ends (atomic) */
static int interrupted;         /* a signal came: no wait from now on (atomic) */
static int busy;                /* handlers using `waiting` now (atomic) */

/* Async-signal-safe: lock-free atomics and fifolock_etcd_interrupt(). */
static void etcd_interrupt(void)
{
    fifolock_etcd *s;

    __atomic_store_n(&interrupted, 1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&busy, 1, __ATOMIC_SEQ_CST);
    s = __atomic_load_n(&waiting, __ATOMIC_SEQ_CST);
    if (s != NULL)
        fifolock_etcd_interrupt(s);
    __atomic_sub_fetch(&busy, 1, __ATOMIC_SEQ_CST);
}

/* Budget of every etcd request, and of opening the session. */
#define ETCD_REQUEST_MS 5000
#define ETCD_MIN_OPEN_MS 1000

/* Milliseconds from now to `deadline`, clamped to [lo, hi]. */
static int ms_until(const struct timespec *deadline, int lo, int hi)
{
    struct timespec now;
    long long ms;

    clock_gettime(CLOCK_MONOTONIC, &now);
    ms = (long long)(deadline->tv_sec - now.tv_sec) * 1000 +
         (deadline->tv_nsec - now.tv_nsec) / 1000000;
    return ms < lo ? lo : ms > hi ? hi : (int)ms;
}

static bool passed(const struct timespec *deadline)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > deadline->tv_sec ||
           (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec);
}

static void describe(char *err, size_t err_size, const char *what, int rc)
{
    const char *detail = fifolock_etcd_last_error();

    snprintf(err, err_size, "%s: %s%s%s%s", what, fifolock_etcd_strerror(rc),
             detail[0] ? " (" : "", detail, detail[0] ? ")" : "");
}

static int etcd_acquire(void **state, const struct tool_options *opt, const char *lock,
                        const fifolock_mode *mode, const struct timespec *deadline,
                        uint64_t *token, char *dead, size_t dead_size, char *err,
                        size_t err_size)
{
    struct fifolock_etcd_options o;
    struct etcd_state *e = calloc(1, sizeof *e);
    char what[256];
    int rc;

    (void)dead;
    (void)dead_size;
    if (e == NULL) {
        snprintf(err, err_size, "out of memory");
        return ENOMEM;
    }
    e->name = lock;
    memset(&o, 0, sizeof o);
    o.ttl = opt->ttl;
    o.lost = on_loss;
    o.lost_arg = e;
    /* Reaching etcd is bounded by the timeout too (at least a second, so
     * that a busy machine still connects), and by 5 s without one. */
    o.timeout_ms = deadline ? ms_until(deadline, ETCD_MIN_OPEN_MS, ETCD_REQUEST_MS)
                            : ETCD_REQUEST_MS;
    o.cacert = opt->cacert;
    o.cert = opt->cert;
    o.key = opt->key;
    o.user = opt->user;
    o.password = opt->password;
    rc = fifolock_etcd_open(&e->session, opt->endpoints, &o);
    if (rc != 0) {
        /* "cannot reach" only when nothing answered: a refused certificate or
         * password is an answer, and the message says which. */
        snprintf(what, sizeof what, "%s etcd at %s",
                 rc == ECONNREFUSED || rc == ETIMEDOUT ? "cannot reach"
                                                       : "cannot open a session on",
                 opt->endpoints);
        describe(err, err_size, what, rc);
        free(e);
        return rc == ETIMEDOUT ? ECONNREFUSED : rc; /* not "timed out waiting" */
    }
    __atomic_store_n(&waiting, e->session, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&interrupted, __ATOMIC_SEQ_CST))
        fifolock_etcd_interrupt(e->session);
    if (deadline != NULL && passed(deadline)) {
        rc = fifolock_etcd_try_acquire(e->session, lock, mode, &e->token);
        if (rc == EBUSY)
            rc = ETIMEDOUT;
    } else {
        rc = fifolock_etcd_acquire(e->session, lock, mode, deadline, &e->token);
    }
    __atomic_store_n(&waiting, NULL, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&busy, __ATOMIC_SEQ_CST) != 0)
        sched_yield();
    if (rc != 0) {
        if (rc != ETIMEDOUT && rc != EINTR) {
            snprintf(what, sizeof what, "cannot take lock %s on %s", lock, opt->endpoints);
            describe(err, err_size, what, rc);
        }
        fifolock_etcd_close(e->session);
        free(e);
        return rc;
    }
    *token = (uint64_t)e->token;
    *state = e;
    return 0;
}

static void etcd_started(void *state, pid_t pid)
{
    struct etcd_state *e = state;

    __atomic_store_n(&e->pid, pid, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&e->lost, __ATOMIC_SEQ_CST))
        kill(pid, SIGTERM);
}

static int etcd_lost(void *state, char *why, size_t why_size)
{
    struct etcd_state *e = state;

    if (!__atomic_load_n(&e->lost, __ATOMIC_SEQ_CST))
        return 0;
    snprintf(why, why_size, "%s",
             __atomic_load_n(&e->reason, __ATOMIC_SEQ_CST) == ETIMEDOUT
                 ? "etcd acknowledged no keepalive of the session's lease within its TTL, "
                   "so the lease may have expired"
                 : "its entry is gone from etcd (the session's lease expired or was "
                   "revoked, or the key was deleted)");
    return 1;
}

static int etcd_release(void *state, const fifolock_mode *mode, char *err, size_t err_size)
{
    struct etcd_state *e = state;
    int rc, rc2;

    (void)mode;
    rc = fifolock_etcd_release(e->session, e->name, e->token);
    if (rc != 0)
        describe(err, err_size, "release", rc);
    /* Closing revokes the lease: the entry goes even if the release failed. */
    rc2 = fifolock_etcd_close(e->session);
    if (rc == 0 && rc2 != 0) {
        describe(err, err_size, "closing the session", rc2);
        rc = rc2;
    }
    free(e);
    return rc;
}

const struct backend fifolock_tool_etcd_backend = {
    "etcd",    fifolock_etcd_parse_mode, etcd_acquire, etcd_interrupt, etcd_started, etcd_lost,
    etcd_release,
    NULL, /* only this process keeps the lease alive: the command dies with it */
    NULL, /* a dead holder is never reported: nothing to declare repaired */
};
