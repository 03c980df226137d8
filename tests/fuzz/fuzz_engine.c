/*
 * Fuzz target for the engine (include/fifolock.h).
 *
 * An input is a program of lock operations. A reference model kept here (an
 * array queue and an array of hold counts per lock, with its own
 * compatibility functions, written apart from src/modes.c) runs the same
 * program; after every operation, and inside every grant callback, the engine
 * and the model must agree on the holds of every mode, the total, the list of
 * held modes, the queue and its order, which waiters are queued, and the
 * engine's own invariant check. Any difference aborts, so libFuzzer reports
 * it. At the end of every input all waiters are cancelled, all holds are
 * released and fifolock_destroy() must return 0 (nothing left allocated).
 *
 * The model knows weighted requests and conversions too: a request of n is
 * granted when n holders of its mode may join, asked one after another with
 * those before counted; a conversion switches at once when `to` may join the
 * holders but one hold of `from`, and otherwise waits at the head of the
 * queue, ahead of everybody, keeping that hold of `from` (a release of it is
 * EPERM; a second conversion that would wait is EDEADLK). A request (or a
 * conversion's `to`) that a lock nobody holds would refuse is EDEADLK at
 * once, queueing nothing.
 *
 * Input layout:
 *
 *   bytes 0..11   four custom modes, 3 bytes each: a 15-bit mask of the pool
 *                 modes it may join (lo, then bits 0..6 of hi; bit 7 of hi:
 *                 it also needs at least one holder of pool mode `need`),
 *                 then a byte with limit = b & 3 (0: no limit on its own
 *                 holders), need = (b >> 2 & 31) mod the pool size, and bit
 *                 7: its predicate answers for a weighted request at once
 *                 (it reads fifolock_asked()) instead of once per hold.
 *   then          operations, one byte each plus argument bytes:
 *                 bits 0..3 name it (see step(), or with bit 6 set
 *                 step_weighted()), bit 4 makes an acquired waiter's
 *                 callback quiet (it issues no operations), bit 5 makes an
 *                 acquire's or a conversion's allocation fail (below), bit 6
 *                 picks the weighted and converting operations, bit 7 picks
 *                 lock 0 or 1.
 *
 * A grant callback reads one more byte: how many operations (0..3) it issues
 * itself, on either lock, before it returns. Missing bytes read as 0.
 *
 * The engine's allocations come here, through the library's one seam
 * (fifolock__alloc), and an acquire, try_acquire or conversion with bit 5
 * set makes it fail: the call must then return ENOMEM and change nothing.
 *
 * Built with -fsanitize=fuzzer it is a libFuzzer target. Built with
 * -DFIFOLOCK_FUZZ_MAIN it is a plain program that runs the files and
 * directories named on its command line once each (the corpus regression).
 * Either way, FIFOLOCK_FUZZ_TRACE=1 in the environment prints every call.
 */
#if defined(FIFOLOCK_FUZZ_MAIN) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include "internal.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
void *fifolock_fuzz_realloc(void *p, size_t n);

#define FUZZ_ASSERT(cond, ...)                                                           \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: %s: ", __FILE__, __LINE__, #cond);                   \
            fprintf(stderr, __VA_ARGS__);                                                \
            fputc('\n', stderr);                                                         \
            abort();                                                                     \
        }                                                                                \
    } while (0)

/* FIFOLOCK_FUZZ_TRACE=1 in the environment prints every call and its result. */
static int trace = -1;

#define EXPECT_RC(got, want, what)                                                       \
    do {                                                                                 \
        int got_ = (got), want_ = (want);                                                \
        if (trace > 0)                                                                   \
            fprintf(stderr, "%*s  %s: %d\n", F.depth * 4, "", what, got_);                \
        FUZZ_ASSERT(got_ == want_, "%s returned %d, the model expects %d", what, got_,   \
                    want_);                                                              \
    } while (0)

/* ---- modes --------------------------------------------------------------- */

enum {
    M_MUTEX, M_READ, M_WRITE, M_SEM2, M_SEM3, M_IS, M_IX, M_S, M_SIX, M_X,
    M_C0, M_C1, M_C2, M_C3, M_UPG,
    N_MODES,                /* real modes: the pool */
    M_NULL = N_MODES,       /* a NULL mode pointer */
    M_NOPRED,               /* a mode without predicate */
    N_MODE_CHOICES
};
#define N_CUSTOM 4
#define N_LOCKS 2
#define N_WAITERS 12
#define MAX_DEPTH 4

struct custom_cfg {
    uint16_t may_join; /* bit j: may join holders of pool mode j */
    uint8_t limit;     /* at most this many holders of itself; 0: no limit */
    int need;          /* pool mode that must be held, or -1 */
    int asks;          /* its predicate reads fifolock_asked() */
};

static struct custom_cfg cfg[N_CUSTOM];

static bool custom_is_compatible(const fifolock_mode *self, const fifolock_holds *holds);

static const fifolock_mode sem2 = FIFOLOCK_SEMAPHORE(2);
static const fifolock_mode sem3 = FIFOLOCK_SEMAPHORE(3);
static const fifolock_mode custom[N_CUSTOM] = {
    { custom_is_compatible, "c0", 0 },
    { custom_is_compatible, "c1", 1 },
    { custom_is_compatible, "c2", 2 },
    { custom_is_compatible, "c3", 3 },
};
static const fifolock_mode nopred = { NULL, "no predicate", 0 };

static const fifolock_mode *const pool[N_MODE_CHOICES] = {
    [M_MUTEX] = &fifolock_mutex, [M_READ] = &fifolock_read, [M_WRITE] = &fifolock_write,
    [M_SEM2] = &sem2, [M_SEM3] = &sem3,
    [M_IS] = &fifolock_is, [M_IX] = &fifolock_ix, [M_S] = &fifolock_s,
    [M_SIX] = &fifolock_six, [M_X] = &fifolock_x,
    [M_C0] = &custom[0], [M_C1] = &custom[1], [M_C2] = &custom[2], [M_C3] = &custom[3],
    [M_UPG] = &fifolock_upgradable, [M_NULL] = NULL, [M_NOPRED] = &nopred,
};

/*
 * The engine's view of a custom mode: reads the lock's counts. A custom
 * mode's `limit` field (a free parameter) is its index in cfg[], which holds
 * its actual limit on holders of itself.
 *
 * One that `asks` answers for all n of a weighted request at once, as the n
 * single questions would: n more within its limit, and more than one only
 * if it may join itself (each of the n joins the ones before). Its need is
 * met by its own holders only if there is one before the first of the n.
 */
static bool custom_is_compatible(const fifolock_mode *self, const fifolock_holds *holds)
{
    const struct custom_cfg *c = &cfg[self->limit];
    size_t n = c->asks ? fifolock_asked(holds) : 1, j;

    if (c->limit != 0 && fifolock_held(holds, self) + n > c->limit)
        return false;
    if (n > 1 && !(c->may_join >> (M_C0 + self->limit) & 1))
        return false;
    for (j = 0; j < N_MODES; j++)
        if (!(c->may_join >> j & 1) && fifolock_held(holds, pool[j]) != 0)
            return false;
    return c->need < 0 || fifolock_held(holds, pool[c->need]) != 0;
}

/* ---- the reference model ------------------------------------------------- */

enum { W_FRESH, W_WAITING, W_GRANTED, W_IDLE };

struct model_waiter {
    int state;
    int lock;         /* meaningful unless W_FRESH */
    int mode;         /* the mode asked for (a conversion's `to`) */
    int quiet;        /* which callback it was queued with */
    uintptr_t token;  /* the arg it was queued with */
    unsigned n;       /* holds asked for */
    int from;         /* a conversion's `from`, or -1 */
};

struct model_lock {
    int queue[N_WAITERS]; /* waiter indices, oldest first */
    size_t len;
    uint32_t held[N_MODES];
    int in_callback; /* one of this lock's grant callbacks is running */
    int may_grant;   /* release/cancel/convert calls on this lock in progress */
};

static struct {
    const uint8_t *p, *end;
    fifolock lock[N_LOCKS];
    fifolock_waiter w[N_WAITERS];
    struct model_lock m[N_LOCKS];
    struct model_waiter mw[N_WAITERS];
    uintptr_t tokens;
    int depth;
    int cleaning;
    int fail_alloc;  /* the next realloc() fails */
    int alloc_failed; /* one did, in the current call */
    int in_call[N_WAITERS]; /* passed to a call that has not returned: left alone */
    int current;     /* the waiter whose callback runs now, or -1 */
} F;

/* The engine's allocations, through its one seam (fifolock__alloc). */
void *fifolock_fuzz_realloc(void *p, size_t n)
{
    if (n == 0) {
        free(p);
        return NULL;
    }
    if (F.fail_alloc) {
        F.fail_alloc = 0;
        F.alloc_failed = 1;
        return NULL;
    }
    return realloc(p, n);
}

/* Before an acquire or try_acquire: `fail` makes its allocation fail, if any. */
static void alloc_arm(int fail)
{
    F.fail_alloc = fail;
    F.alloc_failed = 0;
}

/*
 * After it: the result is ENOMEM exactly when an allocation failed, which may
 * only happen in a call that would otherwise succeed (the model expects
 * `want`). Returns 1 for ENOMEM: then nothing may have changed.
 */
static int alloc_check_busy(int rc, int want, int busy_ok)
{
    int failed = F.alloc_failed;

    F.fail_alloc = F.alloc_failed = 0;
    if (trace > 0 && (rc == ENOMEM || failed))
        fprintf(stderr, "%*s  %d (allocation failed: %d)\n", F.depth * 4, "", rc, failed);
    if (rc == ENOMEM || failed) {
        FUZZ_ASSERT(rc == ENOMEM && failed &&
                        (want == 0 || want == FIFOLOCK_WAITING ||
                         (busy_ok && (want == EBUSY || want == EDEADLK))),
                    "rc %d, allocation failed %d, the model expects %d", rc, failed, want);
        return 1;
    }
    return 0;
}

static int alloc_check(int rc, int want)
{
    return alloc_check_busy(rc, want, 0);
}

/* The intention matrix as a table of its own: row may join column. */
static const char intention_ok[5][6] = {
    /*         IS IX S SIX X */
    /* IS  */ "yyyyn",
    /* IX  */ "yynnn",
    /* S   */ "ynynn",
    /* SIX */ "ynnnn",
    /* X   */ "nnnnn",
};

static bool model_compatible(const struct model_lock *m, int mode)
{
    const uint32_t *h = m->held;
    int j;

    switch (mode) {
    case M_MUTEX:
        return h[M_MUTEX] == 0;
    case M_READ:
        return h[M_WRITE] == 0;
    case M_WRITE:
        return h[M_READ] == 0 && h[M_WRITE] == 0 && h[M_UPG] == 0;
    case M_UPG:
        return h[M_WRITE] == 0 && h[M_UPG] == 0;
    case M_SEM2:
        return h[M_SEM2] < 2;
    case M_SEM3:
        return h[M_SEM3] < 3;
    case M_IS:
    case M_IX:
    case M_S:
    case M_SIX:
    case M_X:
        for (j = 0; j < 5; j++)
            if (h[M_IS + j] != 0 && intention_ok[mode - M_IS][j] != 'y')
                return false;
        return true;
    default: {
        const struct custom_cfg *c = &cfg[mode - M_C0];
        if (c->limit != 0 && h[mode] >= c->limit)
            return false;
        for (j = 0; j < N_MODES; j++)
            if (h[j] != 0 && !(c->may_join & (1u << j)))
                return false;
        return c->need < 0 || h[c->need] != 0;
    }
    }
}

/* n holders of `mode`, asked one after another with those before counted. */
static bool model_admits(struct model_lock *m, int mode, unsigned n)
{
    unsigned k;
    bool ok = true;

    for (k = 0; k < n && ok; k++) {
        ok = model_compatible(m, mode);
        m->held[mode]++;
    }
    m->held[mode] -= k;
    return ok;
}

/*
 * Refused even by a lock nobody holds: never granted, so refused at once
 * with EDEADLK. (Custom modes with a `need` are such: they break the rule
 * that predicates are monotone, which the engine does not rely on for
 * safety, and are refused as it says.)
 */
static bool model_never_fits(int mode, unsigned n)
{
    struct model_lock empty;

    memset(&empty, 0, sizeof empty);
    return !model_admits(&empty, mode, n);
}

/* `to` may join the holders but one hold of `from`. */
static bool model_converts(struct model_lock *m, int from, int to)
{
    bool ok;

    m->held[from]--;
    ok = model_compatible(m, to);
    m->held[from]++;
    return ok;
}

static bool model_fits(struct model_lock *m, int wi)
{
    const struct model_waiter *mw = &F.mw[wi];

    return mw->from >= 0 ? model_converts(m, mw->from, mw->mode)
                         : model_admits(m, mw->mode, mw->n);
}

/* The waiter of the conversion waiting on `m` (at its head), or -1. */
static int model_conversion(const struct model_lock *m)
{
    return m->len != 0 && F.mw[m->queue[0]].from >= 0 ? m->queue[0] : -1;
}

/* Holds of `mode` a call may drop or convert: all but one a waiting conversion keeps. */
static uint32_t model_available(const struct model_lock *m, int mode)
{
    int c = model_conversion(m);

    return m->held[mode] - (c >= 0 && F.mw[c].from == mode);
}

static void model_unlink(struct model_lock *m, int wi)
{
    size_t k;

    for (k = 0; k < m->len && m->queue[k] != wi; k++)
        ;
    FUZZ_ASSERT(k < m->len, "waiter %d is not in the model queue", wi);
    memmove(&m->queue[k], &m->queue[k + 1], (m->len - k - 1) * sizeof m->queue[0]);
    m->len--;
}

/* ---- comparing engine and model ------------------------------------------ */

static void check_lock(int L)
{
    const fifolock *lk = &F.lock[L];
    const struct model_lock *m = &F.m[L];
    const fifolock_holds *h = fifolock_holds_of(lk);
    const fifolock_mode *lm[N_MODES + 1];
    size_t lc[N_MODES + 1], total = 0, nheld = 0, n, k;
    const fifolock_waiter *w;
    const char *err;
    unsigned seen = 0;
    int j;

    FUZZ_ASSERT(h != NULL, "lock %d", L);
    FUZZ_ASSERT(fifolock_waiting(lk) == m->len, "lock %d: waiting %zu, model %zu", L,
                fifolock_waiting(lk), m->len);
    for (j = 0; j < N_MODES; j++) {
        FUZZ_ASSERT(fifolock_held(h, pool[j]) == m->held[j],
                    "lock %d: %s held %zu times, model %u", L, pool[j]->name,
                    fifolock_held(h, pool[j]), (unsigned)m->held[j]);
        total += m->held[j];
        nheld += m->held[j] != 0;
    }
    FUZZ_ASSERT(fifolock_held(h, NULL) == 0, "lock %d", L);
    FUZZ_ASSERT(fifolock_held(h, &nopred) == 0, "lock %d", L);
    FUZZ_ASSERT(fifolock_held_total(h) == total, "lock %d: total %zu, model %zu", L,
                fifolock_held_total(h), total);

    n = fifolock_holds_list(h, lm, lc, N_MODES + 1);
    FUZZ_ASSERT(n == nheld, "lock %d: holds_list lists %zu modes, model %zu", L, n, nheld);
    for (k = 0; k < n; k++) {
        for (j = 0; j < N_MODES && pool[j] != lm[k]; j++)
            ;
        FUZZ_ASSERT(j < N_MODES, "lock %d: holds_list names a mode never used", L);
        FUZZ_ASSERT(!(seen >> j & 1), "lock %d: holds_list names %s twice", L, pool[j]->name);
        seen |= 1u << j;
        FUZZ_ASSERT(lc[k] == m->held[j], "lock %d: holds_list says %s x%zu, model %u", L,
                    pool[j]->name, lc[k], (unsigned)m->held[j]);
    }

    /* The queue, in order (private fields, read-only). */
    w = lk->head;
    for (k = 0; k < m->len; k++) {
        FUZZ_ASSERT(w == &F.w[m->queue[k]], "lock %d: queue position %zu is not waiter %d",
                    L, k, m->queue[k]);
        w = w->next;
    }
    FUZZ_ASSERT(w == NULL, "lock %d: queue longer than the model's %zu", L, m->len);

    err = fifolock__check_invariants(lk);
    FUZZ_ASSERT(err == NULL, "lock %d: %s", L, err);

    /* No lost grant: outside its callbacks, a lock's head does not fit. */
    if (!m->in_callback && m->len != 0)
        FUZZ_ASSERT(!model_fits(&F.m[L], m->queue[0]),
                    "lock %d: head (waiter %d, %s) fits but still waits", L,
                    m->queue[0], pool[F.mw[m->queue[0]].mode]->name);
    FUZZ_ASSERT(fifolock_asked(h) == 1, "lock %d: fifolock_asked() outside a question", L);
}

static void check_all(void)
{
    int i;

    for (i = 0; i < N_LOCKS; i++)
        check_lock(i);
    for (i = 0; i < N_WAITERS; i++)
        FUZZ_ASSERT(!!fifolock__waiter_is_queued(&F.w[i]) == (F.mw[i].state == W_WAITING),
                    "waiter %d: queued %d, model state %d", i,
                    fifolock__waiter_is_queued(&F.w[i]), F.mw[i].state);
}

/* ---- operations ----------------------------------------------------------- */

static unsigned next(void)
{
    return F.p < F.end ? *F.p++ : 0;
}

static void step(void);

static void granted(fifolock_waiter *waiter, void *arg, int quiet)
{
    struct model_waiter *mw;
    struct model_lock *m;
    unsigned n;
    int i;

    for (i = 0; i < N_WAITERS && waiter != &F.w[i]; i++)
        ;
    FUZZ_ASSERT(i < N_WAITERS, "callback for a waiter outside the pool");
    mw = &F.mw[i];
    FUZZ_ASSERT(mw->state == W_WAITING, "callback for waiter %d, model state %d",
                i, mw->state);
    FUZZ_ASSERT(mw->quiet == quiet, "waiter %d: called back with the wrong function", i);
    FUZZ_ASSERT((uintptr_t)arg == mw->token, "waiter %d: arg %p, expected token %zu",
                i, arg, (size_t)mw->token);
    m = &F.m[mw->lock];
    FUZZ_ASSERT(m->may_grant > 0, "waiter %d granted outside release/cancel", i);
    FUZZ_ASSERT(!m->in_callback, "waiter %d granted inside another callback of lock %d",
                i, mw->lock);
    FUZZ_ASSERT(m->len > 0 && m->queue[0] == i, "waiter %d granted but the head is %d",
                i, m->len ? m->queue[0] : -1);
    FUZZ_ASSERT(model_fits(m, i), "waiter %d granted %s x%u, which does not fit", i,
                pool[mw->mode]->name, mw->n);

    if (trace > 0)
        fprintf(stderr, "%*slock %d: granted waiter %d %s x%u%s%s\n", F.depth * 4, "",
                mw->lock, i, pool[mw->mode]->name, mw->n, mw->from >= 0 ? " from " : "",
                mw->from >= 0 ? pool[mw->from]->name : "");
    model_unlink(m, i);
    m->held[mw->mode] += mw->n;
    if (mw->from >= 0)
        m->held[mw->from]--;
    mw->state = W_GRANTED;
    m->in_callback = 1;
    check_all(); /* the counts include the new holder already */
    if (!quiet && !F.cleaning && F.depth < MAX_DEPTH) {
        int outer = F.current;
        n = next() % 4;
        F.depth++;
        F.current = i; /* its waiter is the callback's again (step_weighted() 15) */
        while (n-- > 0)
            step();
        F.current = outer;
        F.depth--;
    }
    m->in_callback = 0;
}

static void granted_busy(fifolock_waiter *waiter, void *arg)
{
    granted(waiter, arg, 0);
}

static void granted_quiet(fifolock_waiter *waiter, void *arg)
{
    granted(waiter, arg, 1);
}

static const char *mode_name(int mode)
{
    return mode == M_NULL ? "NULL" : pool[mode]->name;
}

/* `weighted`: through fifolock_acquire_n() (n may be 0), else fifolock_acquire() (n is 1). */
static void do_acquire_n(int L, int wi, int mode, unsigned n, int weighted, int quiet, int fail)
{
    struct model_lock *m = &F.m[L];
    fifolock_waiter *w = wi < 0 ? NULL : &F.w[wi];
    fifolock_granted_fn *cb = quiet ? granted_quiet : granted_busy;
    uintptr_t token = ++F.tokens;
    int want, rc;

    if (wi >= 0 && F.in_call[wi])
        return; /* the call that has it still runs (it called back into here) */
    if (wi < 0 || mode >= N_MODES || F.mw[wi].state == W_WAITING || n == 0)
        want = EINVAL;
    else if (m->len == 0 && model_admits(m, mode, n))
        want = 0;
    else if (model_never_fits(mode, n))
        want = EDEADLK; /* nothing changes */
    else
        want = FIFOLOCK_WAITING;

    alloc_arm(fail);
    rc = weighted ? fifolock_acquire_n(&F.lock[L], w, pool[mode], n, cb, (void *)token)
                  : fifolock_acquire(&F.lock[L], w, pool[mode], cb, (void *)token);
    if (trace > 0)
        fprintf(stderr, "%*slock %d: acquire%s %s x%u with waiter %d%s%s\n", F.depth * 4, "",
                L, weighted ? "_n" : "", mode_name(mode), n, wi, quiet ? " (quiet)" : "",
                fail ? " (no memory)" : "");
    /* n > 1 on an idle queue makes room to count them before it asks: ENOMEM
       even where it never fits */
    if (alloc_check_busy(rc, want, n > 1 && m->len == 0))
        return;
    EXPECT_RC(rc, want, "acquire");
    if (rc == 0) {
        m->held[mode] += n;
        F.mw[wi] = (struct model_waiter){ W_GRANTED, L, mode, 0, 0, n, -1 };
    } else if (rc == FIFOLOCK_WAITING) {
        F.mw[wi] = (struct model_waiter){ W_WAITING, L, mode, quiet, token, n, -1 };
        m->queue[m->len++] = wi;
    }
}

static void do_acquire(int L, int wi, int mode, int quiet, int fail)
{
    do_acquire_n(L, wi, mode, 1, 0, quiet, fail);
}

static void do_try_acquire_n(int L, int mode, unsigned n, int weighted, int fail)
{
    struct model_lock *m = &F.m[L];
    int want, rc;

    if (mode >= N_MODES || n == 0)
        want = EINVAL;
    else if (m->len == 0 && model_admits(m, mode, n))
        want = 0;
    else if (model_never_fits(mode, n))
        want = EDEADLK;
    else
        want = EBUSY;
    alloc_arm(fail);
    rc = weighted ? fifolock_try_acquire_n(&F.lock[L], pool[mode], n)
                  : fifolock_try_acquire(&F.lock[L], pool[mode]);
    if (trace > 0)
        fprintf(stderr, "%*slock %d: try_acquire%s %s x%u%s\n", F.depth * 4, "", L,
                weighted ? "_n" : "", mode_name(mode), n, fail ? " (no memory)" : "");
    /* n > 1 makes room to count them before it asks: ENOMEM even where it is busy */
    if (alloc_check_busy(rc, want, n > 1))
        return;
    EXPECT_RC(rc, want, "try_acquire");
    if (rc == 0)
        m->held[mode] += n;
}

static void do_try_acquire(int L, int mode, int fail)
{
    do_try_acquire_n(L, mode, 1, 0, fail);
}

/* The model changes first: callbacks run inside the call and check against it. */
static void do_release_n(int L, int mode, unsigned n, int weighted)
{
    struct model_lock *m = &F.m[L];
    int want, rc;

    FUZZ_ASSERT(weighted || n == 1, "fifolock_release() drops one hold, not %u", n);
    if (mode == M_NULL || n == 0)
        want = EINVAL;
    else if (mode >= N_MODES || model_available(m, mode) < n)
        want = EPERM; /* not held, or only the hold a waiting conversion keeps */
    else
        want = 0;
    if (want == 0)
        m->held[mode] -= n;
    if (trace > 0)
        fprintf(stderr, "%*slock %d: release%s %s x%u\n", F.depth * 4, "", L,
                weighted ? "_n" : "", mode_name(mode), n);
    m->may_grant++;
    rc = weighted ? fifolock_release_n(&F.lock[L], pool[mode], n)
                  : fifolock_release(&F.lock[L], pool[mode]);
    m->may_grant--;
    EXPECT_RC(rc, want, "release");
}

static void do_release(int L, int mode)
{
    do_release_n(L, mode, 1, 0);
}


/*
 * fifolock_convert() (or, `try`, fifolock_try_convert()) of one hold of
 * `from` to `to` on lock L with waiter wi (-1: NULL). The model changes
 * first, since a switch made at once grants inside the call; an allocation
 * that fails puts it back.
 */
static void do_convert(int L, int wi, int from, int to, int try_, int quiet, int fail)
{
    struct model_lock *m = &F.m[L], saved_m;
    struct model_waiter saved_w = { 0 };
    uintptr_t token = ++F.tokens;
    uint32_t avail = from < N_MODES ? model_available(m, from) : 0;
    int bad_pointer = from == M_NULL || to >= N_MODES; /* NULL, or no predicate */
    int bad_waiter = !try_ && (wi < 0 || F.mw[wi].state == W_WAITING);
    int not_held = from != M_NULL && avail == 0;
    int want, rc;

    /* EPERM and EINVAL at once: which comes first is not specified */
    if (not_held && (bad_pointer || bad_waiter))
        return;
    if ((wi >= 0 && F.in_call[wi]))
        return;
    if (bad_pointer || bad_waiter)
        want = EINVAL;
    else if (not_held)
        want = EPERM;
    else if (model_converts(m, from, to))
        want = 0;
    else if (model_never_fits(to, 1))
        want = EDEADLK; /* it would wait ahead of everybody for ever */
    else if (try_)
        want = EBUSY;
    else if (model_conversion(m) >= 0)
        want = EDEADLK;
    else
        want = FIFOLOCK_WAITING;

    saved_m = *m;
    if (wi >= 0)
        saved_w = F.mw[wi];
    if (want == 0) {
        m->held[from]--;
        m->held[to]++;
        if (!try_)
            F.mw[wi] = (struct model_waiter){ W_GRANTED, L, to, 0, 0, 1, from };
    } else if (want == FIFOLOCK_WAITING) {
        F.mw[wi] = (struct model_waiter){ W_WAITING, L, to, quiet, token, 1, from };
        memmove(&m->queue[1], &m->queue[0], m->len * sizeof m->queue[0]);
        m->queue[0] = wi;
        m->len++;
    }
    if (trace > 0)
        fprintf(stderr, "%*slock %d: %s %s to %s with waiter %d%s%s\n", F.depth * 4, "", L,
                try_ ? "try_convert" : "convert", mode_name(from), mode_name(to), wi,
                quiet ? " (quiet)" : "", fail ? " (no memory)" : "");
    alloc_arm(fail);
    m->may_grant++;
    if (wi >= 0)
        F.in_call[wi]++;
    if (try_)
        rc = fifolock_try_convert(&F.lock[L], pool[from], pool[to]);
    else
        rc = fifolock_convert(&F.lock[L], wi < 0 ? NULL : &F.w[wi], pool[from], pool[to],
                              quiet ? granted_quiet : granted_busy, (void *)token);
    if (wi >= 0)
        F.in_call[wi]--;
    m->may_grant--;
    if (alloc_check(rc, want)) {
        *m = saved_m; /* nothing was granted: the switch failed before the grant loop */
        if (wi >= 0)
            F.mw[wi] = saved_w;
        return;
    }
    EXPECT_RC(rc, want, try_ ? "try_convert" : "convert");
}

static void do_cancel(int L, int wi)
{
    struct model_lock *m = &F.m[L];
    struct model_waiter *mw = wi < 0 ? NULL : &F.mw[wi];
    int want, rc;

    if (wi >= 0 && F.in_call[wi])
        return; /* its fields are written when that call returns */
    if (mw == NULL || mw->state == W_FRESH || mw->lock != L)
        want = EINVAL;
    else if (mw->state == W_GRANTED)
        want = EALREADY;
    else if (mw->state == W_IDLE)
        want = EINVAL;
    else
        want = 0;
    if (want == 0) {
        model_unlink(m, wi);
        mw->state = W_IDLE;
    }
    if (trace > 0)
        fprintf(stderr, "%*slock %d: cancel waiter %d\n", F.depth * 4, "", L, wi);
    m->may_grant++;
    rc = fifolock_cancel(&F.lock[L], wi < 0 ? NULL : &F.w[wi]);
    m->may_grant--;
    EXPECT_RC(rc, want, "cancel");
}

static void do_destroy(int L)
{
    const struct model_lock *m = &F.m[L];
    uint32_t total = 0;
    int j;

    for (j = 0; j < N_MODES; j++)
        total += m->held[j];
    /* 0 leaves the lock as fifolock_init() does: the model doesn't change. */
    if (trace > 0)
        fprintf(stderr, "%*slock %d: destroy\n", F.depth * 4, "", L);
    EXPECT_RC(fifolock_destroy(&F.lock[L]), m->len || total || m->in_callback ? EBUSY : 0,
              "destroy");
}

/* Bad input of every kind: EINVAL (or the documented value) and no change. */
static void do_bad_inputs(int L)
{
    fifolock *lk = &F.lock[L];
    const fifolock_mode *mode = pool[next() % N_MODES];
    int wi = (int)(next() % N_WAITERS);

    if (trace > 0)
        fprintf(stderr, "%*slock %d: bad input (all refused)\n", F.depth * 4, "", L);
    EXPECT_RC(fifolock_acquire(NULL, &F.w[wi], mode, granted_busy, NULL), EINVAL, "acquire");
    EXPECT_RC(fifolock_acquire(lk, NULL, mode, granted_busy, NULL), EINVAL, "acquire");
    EXPECT_RC(fifolock_acquire(lk, &F.w[wi], NULL, granted_busy, NULL), EINVAL, "acquire");
    EXPECT_RC(fifolock_acquire(lk, &F.w[wi], &nopred, granted_busy, NULL), EINVAL, "acquire");
    EXPECT_RC(fifolock_acquire(lk, &F.w[wi], mode, NULL, NULL), EINVAL, "acquire");
    EXPECT_RC(fifolock_try_acquire(NULL, mode), EINVAL, "try_acquire");
    EXPECT_RC(fifolock_try_acquire(lk, NULL), EINVAL, "try_acquire");
    EXPECT_RC(fifolock_try_acquire(lk, &nopred), EINVAL, "try_acquire");
    EXPECT_RC(fifolock_release(NULL, mode), EINVAL, "release");
    EXPECT_RC(fifolock_release(lk, NULL), EINVAL, "release");
    EXPECT_RC(fifolock_release(lk, &nopred), EPERM, "release");
    EXPECT_RC(fifolock_cancel(NULL, &F.w[wi]), EINVAL, "cancel");
    EXPECT_RC(fifolock_cancel(lk, NULL), EINVAL, "cancel");
    EXPECT_RC(fifolock_destroy(NULL), EINVAL, "destroy");
    fifolock_init(NULL);
    FUZZ_ASSERT(fifolock_waiting(NULL) == 0, "waiting(NULL)");
    FUZZ_ASSERT(fifolock_holds_of(NULL) == NULL, "holds_of(NULL)");
    FUZZ_ASSERT(fifolock_held(NULL, mode) == 0, "held(NULL)");
    FUZZ_ASSERT(fifolock_held_total(NULL) == 0, "held_total(NULL)");
    FUZZ_ASSERT(fifolock_holds_list(NULL, NULL, NULL, 0) == 0, "holds_list(NULL)");
    FUZZ_ASSERT(fifolock_strerror((int)next() - 128) != NULL, "strerror");
}

/* holds_list with too little room: fills what fits, counts everything. */
static void do_short_list(int L)
{
    const fifolock_holds *h = fifolock_holds_of(&F.lock[L]);
    const fifolock_mode *lm[2] = { NULL, NULL };
    size_t lc[2] = { 0, 0 }, nheld = 0, max = next() % 3, k;
    int j;

    for (j = 0; j < N_MODES; j++)
        nheld += F.m[L].held[j] != 0;
    FUZZ_ASSERT(fifolock_holds_list(h, NULL, NULL, 0) == nheld, "holds_list(max 0)");
    FUZZ_ASSERT(fifolock_holds_list(h, lm, lc, max) == nheld, "holds_list(max %zu)", max);
    for (k = 0; k < 2; k++) {
        if (k >= max || k >= nheld) {
            FUZZ_ASSERT(lm[k] == NULL && lc[k] == 0, "holds_list wrote past max %zu", max);
            continue;
        }
        for (j = 0; j < N_MODES && pool[j] != lm[k]; j++)
            ;
        FUZZ_ASSERT(j < N_MODES && lc[k] == F.m[L].held[j], "holds_list entry %zu", k);
    }
}

/* A pool index of a waiter in `state` (on lock `L`, or any lock if L < 0), or -1. */
static int pick_waiter(int state, int L, unsigned r)
{
    int cand[N_WAITERS], n = 0, i;

    for (i = 0; i < N_WAITERS; i++)
        if (F.mw[i].state == state && (L < 0 || F.mw[i].lock == L))
            cand[n++] = i;
    return n ? cand[r % (unsigned)n] : -1;
}

/* A count from an argument byte: 0..7 (0 is refused), or, `valid`, 1..4. */
static unsigned count_arg(int valid)
{
    unsigned b = next();

    return valid ? 1 + (b & 3) : b & 7;
}

/* A pool mode of which a call may drop or convert a hold on `m`, or -1. */
static int pick_held(const struct model_lock *m, unsigned r)
{
    int cand[N_MODES], n = 0, j;

    for (j = 0; j < N_MODES; j++)
        if (model_available(m, j) != 0)
            cand[n++] = j;
    return n ? cand[r % (unsigned)n] : -1;
}

/* A waiter that is not queued, nor passed to a call still running, or -1. */
static int pick_free(unsigned r)
{
    int cand[N_WAITERS], n = 0, i;

    for (i = 0; i < N_WAITERS; i++)
        if (F.mw[i].state != W_WAITING && !F.in_call[i])
            cand[n++] = i;
    return n ? cand[r % (unsigned)n] : -1;
}

/* Bad input to the weighted and converting calls: EINVAL, and no change. */
static void do_bad_weighted(int L)
{
    fifolock *lk = &F.lock[L];
    const fifolock_mode *mode = pool[next() % N_MODES];
    int wi = pick_free(next()), from = pick_held(&F.m[L], next());

    if (trace > 0)
        fprintf(stderr, "%*slock %d: bad weighted input (all refused)\n", F.depth * 4, "", L);
    EXPECT_RC(fifolock_try_acquire_n(NULL, mode, 1), EINVAL, "try_acquire_n");
    EXPECT_RC(fifolock_try_acquire_n(lk, mode, 0), EINVAL, "try_acquire_n");
    EXPECT_RC(fifolock_try_acquire_n(lk, &nopred, 2), EINVAL, "try_acquire_n");
    EXPECT_RC(fifolock_release_n(NULL, mode, 1), EINVAL, "release_n");
    EXPECT_RC(fifolock_release_n(lk, NULL, 1), EINVAL, "release_n");
    EXPECT_RC(fifolock_release_n(lk, mode, 0), EINVAL, "release_n");
    EXPECT_RC(fifolock_try_convert(NULL, mode, mode), EINVAL, "try_convert");
    EXPECT_RC(fifolock_try_convert(lk, NULL, mode), EINVAL, "try_convert");
    EXPECT_RC(fifolock_convert(NULL, wi < 0 ? NULL : &F.w[wi], mode, mode, granted_busy, NULL),
              EINVAL, "convert");
    if (wi >= 0) {
        EXPECT_RC(fifolock_acquire_n(NULL, &F.w[wi], mode, 1, granted_busy, NULL), EINVAL,
                  "acquire_n");
        EXPECT_RC(fifolock_acquire_n(lk, &F.w[wi], mode, 0, granted_busy, NULL), EINVAL,
                  "acquire_n");
        EXPECT_RC(fifolock_acquire_n(lk, &F.w[wi], mode, 1, NULL, NULL), EINVAL, "acquire_n");
    }
    EXPECT_RC(fifolock_acquire_n(lk, NULL, mode, 1, granted_busy, NULL), EINVAL, "acquire_n");
    if (from >= 0) {
        /* `from` is held: only the other argument is wrong */
        EXPECT_RC(fifolock_try_convert(lk, pool[from], NULL), EINVAL, "try_convert");
        EXPECT_RC(fifolock_try_convert(lk, pool[from], &nopred), EINVAL, "try_convert");
        EXPECT_RC(fifolock_convert(lk, NULL, pool[from], mode, granted_busy, NULL), EINVAL,
                  "convert");
        if (wi >= 0)
            EXPECT_RC(fifolock_convert(lk, &F.w[wi], pool[from], mode, NULL, NULL), EINVAL,
                      "convert");
    }
    FUZZ_ASSERT(fifolock_asked(NULL) == 1, "asked(NULL)");
}

/* The weighted and converting operations: an operation byte with bit 6 set. */
static void step_weighted(unsigned b)
{
    int L = (int)(b >> 7), quiet = (int)(b >> 4 & 1), nomem = (int)(b >> 5 & 1);
    struct model_lock *m = &F.m[L];
    unsigned r, n;
    int j, from, to;

    switch (b & 15) {
    case 0: /* acquire_n with any waiter, mode and count (queued, NULL, 0: refused) */
        j = (int)(next() % N_WAITERS);
        from = (int)(next() % N_MODE_CHOICES);
        do_acquire_n(L, j, from, count_arg(0), 1, quiet, nomem);
        break;
    case 1:
    case 2: /* acquire_n of a pool mode with a waiter that is not queued */
        j = pick_free(next());
        from = (int)(next() % N_MODES);
        n = count_arg(1);
        if (j >= 0)
            do_acquire_n(L, j, from, n, 1, quiet, nomem);
        break;
    case 3:
        from = (int)(next() % N_MODE_CHOICES);
        do_try_acquire_n(L, from, count_arg(0), 1, nomem);
        break;
    case 4: /* release_n of any mode and count */
        from = (int)(next() % N_MODE_CHOICES);
        do_release_n(L, from, count_arg(0), 1);
        break;
    case 5: /* release_n of a held mode: up to one more than held */
        from = pick_held(m, next());
        r = next();
        if (from >= 0)
            do_release_n(L, from, 1 + r % (m->held[from] + 1), 1);
        break;
    case 6: /* release the mode a waiting conversion keeps a hold of */
        r = next();
        if (model_conversion(m) >= 0)
            do_release_n(L, F.mw[model_conversion(m)].from, (r & 2) ? 1 + (r & 1) : 1,
                         r >> 1 & 1);
        break;
    case 7:
    case 8: /* convert a held mode with a waiter that is not queued */
        from = pick_held(m, next());
        to = (int)(next() % ((b & 15) == 7 ? N_MODES : N_MODE_CHOICES));
        j = pick_free(next());
        if (from >= 0)
            do_convert(L, j, from, to, 0, quiet, nomem);
        break;
    case 9: /* convert with any waiter (or NULL), from and to any mode */
        r = next() % (N_WAITERS + 1);
        from = (int)(next() % N_MODE_CHOICES);
        to = (int)(next() % N_MODE_CHOICES);
        do_convert(L, r == N_WAITERS ? -1 : (int)r, from, to, 0, quiet, nomem);
        break;
    case 10: /* try_convert, any modes */
        from = (int)(next() % N_MODE_CHOICES);
        to = (int)(next() % N_MODE_CHOICES);
        do_convert(L, -1, from, to, 1, 0, nomem);
        break;
    case 11:
    case 12: /* try_convert of a held mode */
        from = pick_held(m, next());
        to = (int)(next() % N_MODES);
        if (from >= 0)
            do_convert(L, -1, from, to, 1, 0, nomem);
        break;
    case 13: /* cancel the head: the waiting conversion, if there is one */
        if (m->len)
            do_cancel(L, m->queue[0]);
        break;
    case 14: /* convert what a granted waiter got, with its own waiter (in its callback) */
        r = next();
        j = F.current >= 0 && !(r & 1) ? F.current : pick_waiter(W_GRANTED, L, r >> 1);
        to = (int)(next() % N_MODES);
        if (j >= 0 && F.mw[j].state == W_GRANTED)
            do_convert(F.mw[j].lock, j, F.mw[j].mode, to, 0, quiet, nomem);
        break;
    case 15:
        do_bad_weighted(L);
        break;
    }
}

static void step(void)
{
    unsigned b = next(), r;
    int L = (int)(b >> 7), other = !L, quiet = (int)(b >> 4 & 1), nomem = (int)(b >> 5 & 1);
    int j, n;
    struct model_lock *m = &F.m[L];

    if (b & 0x40) {
        step_weighted(b);
        check_all();
        return;
    }
    switch (b & 15) {
    case 0:
    case 1:
    case 2:
    case 3: { /* acquire with any waiter (queued ones must be refused) */
        int wi = (int)(next() % N_WAITERS);
        do_acquire(L, wi, (int)(next() % N_MODE_CHOICES), quiet, nomem);
        break;
    }
    case 4: /* acquire with a waiter that is not queued anywhere */
        r = next();
        j = pick_waiter((r & 1) ? W_GRANTED : W_FRESH, -1, r >> 1);
        if (j < 0)
            j = pick_waiter(W_IDLE, -1, r >> 1);
        if (j >= 0)
            do_acquire(L, j, (int)(next() % N_MODES), quiet, nomem);
        break;
    case 5:
    case 6: /* release any mode, held or not */
        do_release(L, (int)(next() % N_MODE_CHOICES));
        break;
    case 7: /* release a mode that is held */
        r = next();
        for (j = 0, n = 0; j < N_MODES; j++)
            n += m->held[j] != 0;
        if (n == 0)
            break;
        n = (int)(r % (unsigned)n);
        for (j = 0; m->held[j] == 0 || n-- > 0; j++)
            ;
        do_release(L, j);
        break;
    case 8: /* try_acquire */
        do_try_acquire(L, (int)(next() % N_MODE_CHOICES), nomem);
        break;
    case 9: /* cancel any waiter, or NULL */
        r = next() % (N_WAITERS + 1);
        do_cancel(L, r == N_WAITERS ? -1 : (int)r);
        break;
    case 10: /* cancel a queued waiter of this lock */
        r = next();
        if (m->len)
            do_cancel(L, m->queue[r % m->len]);
        break;
    case 11: /* cancel, on this lock, a waiter queued on (or granted by) the other */
        r = next();
        j = pick_waiter((r & 1) ? W_GRANTED : W_WAITING, other, r >> 1);
        if (j >= 0)
            do_cancel(L, j);
        break;
    case 12: /* reuse a queued waiter: refused */
        r = next();
        j = pick_waiter(W_WAITING, -1, r);
        if (j >= 0)
            do_acquire(L, j, (int)(next() % N_MODES), quiet, nomem);
        break;
    case 13:
        do_destroy(L);
        break;
    case 14:
        do_bad_inputs(L);
        break;
    case 15:
        do_short_list(L);
        break;
    }
    check_all();
}

/* Cancels every waiter (granting some on the way) and releases every hold. */
static void cleanup(void)
{
    int L, j;

    F.cleaning = 1;
    for (L = 0; L < N_LOCKS; L++) {
        struct model_lock *m = &F.m[L];
        while (m->len != 0) {
            do_cancel(L, m->queue[0]);
            check_all();
        }
        for (j = 0; j < N_MODES; j++)
            while (m->held[j] != 0) {
                do_release(L, j);
                check_all();
            }
        EXPECT_RC(fifolock_destroy(&F.lock[L]), 0, "destroy at the end");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int i, L;

    if (trace < 0)
        trace = getenv("FIFOLOCK_FUZZ_TRACE") != NULL;
    memset(&F, 0, sizeof F);
    fifolock__alloc = fifolock_fuzz_realloc;
    F.current = -1;
    F.p = data;
    F.end = data + size;
    for (i = 0; i < N_CUSTOM; i++) {
        unsigned lo = next(), hi = next(), b = next();
        cfg[i].may_join = (uint16_t)((lo | (hi & 0x7f) << 8) & ((1u << N_MODES) - 1));
        cfg[i].limit = (uint8_t)(b & 3);
        cfg[i].need = (hi & 0x80) ? (int)((b >> 2 & 31) % N_MODES) : -1;
        cfg[i].asks = b >> 7;
    }
    for (L = 0; L < N_LOCKS; L++)
        fifolock_init(&F.lock[L]);
    check_all();
    while (F.p < F.end)
        step();
    cleanup();
    check_all();
    return 0;
}

#ifdef FIFOLOCK_FUZZ_MAIN
/* The corpus regression without libFuzzer: runs each file once. */
#include <dirent.h>
#include <sys/stat.h>

static int run_file(const char *path)
{
    static uint8_t buf[1 << 20];
    FILE *f = fopen(path, "rb");
    size_t n;

    if (f == NULL) {
        perror(path);
        return 1;
    }
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    return 0;
}

int main(int argc, char **argv)
{
    int i, runs = 0, bad = 0;

    for (i = 1; i < argc; i++) {
        struct stat st;
        DIR *d;
        struct dirent *e;

        if (stat(argv[i], &st) != 0 || !S_ISDIR(st.st_mode)) {
            bad += run_file(argv[i]);
            runs++;
            continue;
        }
        d = opendir(argv[i]);
        if (d == NULL) {
            perror(argv[i]);
            bad++;
            continue;
        }
        while ((e = readdir(d)) != NULL) {
            char path[4096];
            if (e->d_name[0] == '.')
                continue;
            snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
            bad += run_file(path);
            runs++;
        }
        closedir(d);
    }
    /* A failing input aborts; only unreadable files are counted here. */
    printf("%d passed, %d failed\n", runs - bad, bad);
    return bad || runs == 0;
}
#endif
