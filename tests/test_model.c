/*
 * Randomized model-based test of the engine.
 *
 * Random sequences of acquire, try_acquire, release, cancel and destroy, and
 * of their weighted forms (acquire_n, try_acquire_n, release_n) and of
 * conversions (convert, try_convert, and cancelling a waiting conversion),
 * over fifteen modes (read, write, upgradable, mutex, semaphores of 2 and 5,
 * the five intention modes and four custom ones, one of which answers for a
 * weighted request at once through fifolock_asked()), run on a real lock
 * and, step by step, on a reference model kept deliberately simple: an array
 * for the queue, an array of hold counts, and compatibility rules written
 * here again from the documentation, not taken from src/modes.c.
 *
 * The model's grant rule, from the documentation: a request of n is granted
 * when n holders of its mode may join, asked one after another with the ones
 * before counted; a conversion from -> to when `to` may join the holders
 * but one hold of `from`. A conversion that can't switch at once waits at the
 * head of the queue, ahead of everybody, keeping its hold of `from` (which a
 * release may not drop: EPERM); a second one that would wait is EDEADLK.
 * The head, conversion or not, is granted when it fits, and nothing behind
 * it is granted before it.
 *
 * Grant callbacks issue random calls of their own on the same lock (they
 * release what they got, convert it with their own waiter, or anything
 * else). The model decides which request must be granted next; every
 * callback must be that one (FIFO, grant rule), must not run inside another
 * callback, and must come from a release, a cancel or a conversion that
 * switched at once; when a call returns, the model must have nothing left to
 * grant (no lost grant). After every call, nested ones included, holds, the
 * queue and the waiting count must equal the model's, and
 * fifolock__check_invariants() must pass.
 *
 * Reproducible: each sequence runs from a fixed seed, printed on failure.
 *   FIFOLOCK_MODEL_SEQUENCES=n  number of sequences (default 1500)
 *   FIFOLOCK_MODEL_SEED=s       run only the sequence of seed s
 *   FIFOLOCK_MODEL_TRACE=1      print every call (when it returns; the grants
 *                               it made are printed above it)
 */
#include "check.h"
#include "internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <string.h>

/* ---- the modes ------------------------------------------------------------ */

enum {
    M_READ, M_WRITE, M_MUTEX, M_SEM2, M_IS, M_IX, M_S, M_SIX, M_X,
    M_ALONE, M_POOL, M_FEW, M_UPG, M_SEM5, M_POOLN, N_MODES
};

static const char *const mode_name[N_MODES] = {
    "read", "write", "mutex", "sem2", "IS", "IX", "S", "SIX", "X", "alone", "pool", "few",
    "upgradable", "sem5", "pool_n",
};

/* Custom modes, as a user would write them. */
static bool alone_is_compatible(const fifolock_mode *self, const fifolock_holds *holds)
{
    (void)self;
    return fifolock_held_total(holds) == 0;
}

/* Up to `limit` at once, but never beside a write or an X. */
static bool pool_is_compatible(const fifolock_mode *self, const fifolock_holds *holds)
{
    return fifolock_held(holds, self) < self->limit && fifolock_held(holds, &fifolock_write) == 0 &&
           fifolock_held(holds, &fifolock_x) == 0;
}

/*
 * The same rule answering for all of a weighted request at once. It reads
 * fifolock_asked() only past the first test, so a refusal before it leaves
 * the engine with an answer that did not read it (a "no" for the first of n).
 */
static bool pool_n_is_compatible(const fifolock_mode *self, const fifolock_holds *holds)
{
    if (fifolock_held(holds, &fifolock_write) != 0 || fifolock_held(holds, &fifolock_x) != 0)
        return false;
    return fifolock_held(holds, self) + fifolock_asked(holds) <= self->limit;
}

/* May join while fewer than `limit` other modes are held. */
static bool few_is_compatible(const fifolock_mode *self, const fifolock_holds *holds)
{
    size_t others = fifolock_holds_list(holds, NULL, NULL, 0);

    if (fifolock_held(holds, self) > 0)
        others--;
    return others < self->limit;
}

static const fifolock_mode sem2_mode = FIFOLOCK_SEMAPHORE(2);
static const fifolock_mode sem5_mode = FIFOLOCK_SEMAPHORE(5);
static const fifolock_mode alone_mode = { alone_is_compatible, "alone", 0 };
static const fifolock_mode pool_mode = { pool_is_compatible, "pool", 3 };
static const fifolock_mode pool_n_mode = { pool_n_is_compatible, "pool_n", 3 };
static const fifolock_mode few_mode = { few_is_compatible, "few", 2 };
static const fifolock_mode no_predicate = { NULL, "no predicate", 0 };

static const fifolock_mode *const mode_of[N_MODES] = {
    &fifolock_read, &fifolock_write, &fifolock_mutex, &sem2_mode, &fifolock_is,
    &fifolock_ix, &fifolock_s, &fifolock_six, &fifolock_x, &alone_mode, &pool_mode,
    &few_mode, &fifolock_upgradable, &sem5_mode, &pool_n_mode,
};

/* ---- the reference model ------------------------------------------------------ */

#define N_WAITERS 24

enum { W_IDLE, W_WAITING, W_GRANTED };

struct model {
    int queue[N_WAITERS]; /* waiter ids, oldest first (a waiting conversion first) */
    int len;
    unsigned held[N_MODES];
    int state[N_WAITERS];
    int mode[N_WAITERS]; /* the mode asked for (a conversion's `to`) */
    unsigned n[N_WAITERS]; /* holds asked for */
    int from[N_WAITERS]; /* a conversion's `from`, or -1 */
};

/* The intention matrix, from the documentation: row may join column. */
static const char *const matrix[5] = { "yyyyn", "yynnn", "ynynn", "ynnnn", "nnnnn" };

/* Whether one more holder of `mode` may join the holders counted in m->held. */
static bool model_compatible(const struct model *m, int mode)
{
    const unsigned *c = m->held;
    unsigned sum = 0, distinct_others = 0;
    int j;

    for (j = 0; j < N_MODES; j++) {
        sum += c[j];
        if (j != mode && c[j] > 0)
            distinct_others++;
    }
    switch (mode) {
    case M_READ:
        return c[M_WRITE] == 0;
    case M_WRITE:
        return c[M_READ] == 0 && c[M_WRITE] == 0 && c[M_UPG] == 0;
    case M_UPG:
        return c[M_WRITE] == 0 && c[M_UPG] == 0;
    case M_MUTEX:
        return c[M_MUTEX] == 0;
    case M_SEM2:
        return c[M_SEM2] < 2;
    case M_SEM5:
        return c[M_SEM5] < 5;
    case M_IS:
    case M_IX:
    case M_S:
    case M_SIX:
    case M_X:
        for (j = 0; j < 5; j++)
            if (c[M_IS + j] > 0 && matrix[mode - M_IS][j] == 'n')
                return false;
        return true;
    case M_ALONE:
        return sum == 0;
    case M_POOL:
        return c[M_POOL] < 3 && c[M_WRITE] == 0 && c[M_X] == 0;
    case M_POOLN:
        return c[M_POOLN] < 3 && c[M_WRITE] == 0 && c[M_X] == 0;
    case M_FEW:
        return distinct_others < 2;
    }
    return false;
}

/* n holders of `mode`, asked one after another with those before counted. */
static bool model_admits(struct model *m, int mode, unsigned n)
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

/* `to` may join the holders but one hold of `from`. */
static bool model_converts(struct model *m, int from, int to)
{
    bool ok;

    m->held[from]--;
    ok = model_compatible(m, to);
    m->held[from]++;
    return ok;
}

static bool model_fits(struct model *m, int id)
{
    return m->from[id] >= 0 ? model_converts(m, m->from[id], m->mode[id])
                            : model_admits(m, m->mode[id], m->n[id]);
}

static bool model_conversion_waits(const struct model *m)
{
    return m->len > 0 && m->from[m->queue[0]] >= 0;
}

/* Holds of `mode` a call may drop or convert: all but the one a waiting conversion keeps. */
static unsigned model_available(const struct model *m, int mode)
{
    return m->held[mode] - (model_conversion_waits(m) && m->from[m->queue[0]] == mode);
}

/* Refused even by a lock nobody holds: never granted, so refused at once (EDEADLK). */
static bool model_never_fits(int mode, unsigned n)
{
    static struct model empty; /* all zero */

    return !model_admits(&empty, mode, n);
}

static int model_acquire(struct model *m, int id, int mode, unsigned n)
{
    bool now;

    if (m->state[id] == W_WAITING)
        return EINVAL;
    now = m->len == 0 && model_admits(m, mode, n);
    if (!now && model_never_fits(mode, n))
        return EDEADLK; /* the waiter is left as it was */
    m->mode[id] = mode;
    m->n[id] = n;
    m->from[id] = -1;
    if (now) {
        m->held[mode] += n;
        m->state[id] = W_GRANTED;
        return 0;
    }
    m->queue[m->len++] = id;
    m->state[id] = W_WAITING;
    return FIFOLOCK_WAITING;
}

static int model_try(struct model *m, int mode, unsigned n)
{
    if (m->len != 0 || !model_admits(m, mode, n))
        return model_never_fits(mode, n) ? EDEADLK : EBUSY;
    m->held[mode] += n;
    return 0;
}

static int model_release(struct model *m, int mode, unsigned n)
{
    if (model_available(m, mode) < n)
        return EPERM;
    m->held[mode] -= n;
    return 0;
}

/* A conversion that can switch now does; otherwise it waits ahead of everybody. */
static int model_convert(struct model *m, int id, int from, int to)
{
    if (model_available(m, from) == 0)
        return EPERM;
    if (m->state[id] == W_WAITING)
        return EINVAL;
    if (model_converts(m, from, to)) {
        m->held[from]--;
        m->held[to]++;
        m->state[id] = W_GRANTED;
        m->mode[id] = to;
        m->n[id] = 1;
        m->from[id] = from;
        return 0;
    }
    if (model_never_fits(to, 1) || model_conversion_waits(m))
        return EDEADLK;
    memmove(&m->queue[1], &m->queue[0], (size_t)m->len * sizeof m->queue[0]);
    m->queue[0] = id;
    m->len++;
    m->state[id] = W_WAITING;
    m->mode[id] = to;
    m->n[id] = 1;
    m->from[id] = from;
    return FIFOLOCK_WAITING;
}

static int model_try_convert(struct model *m, int from, int to)
{
    if (model_available(m, from) == 0)
        return EPERM;
    if (!model_converts(m, from, to))
        return model_never_fits(to, 1) ? EDEADLK : EBUSY;
    m->held[from]--;
    m->held[to]++;
    return 0;
}

static int model_cancel(struct model *m, int id)
{
    int i;

    if (m->state[id] == W_GRANTED)
        return EALREADY;
    if (m->state[id] != W_WAITING)
        return EINVAL;
    for (i = 0; m->queue[i] != id; i++)
        ;
    memmove(&m->queue[i], &m->queue[i + 1], (size_t)(m->len - i - 1) * sizeof m->queue[0]);
    m->len--;
    m->state[id] = W_IDLE; /* a conversion keeps its `from` */
    return 0;
}

static bool model_idle(const struct model *m)
{
    int j;

    for (j = 0; j < N_MODES; j++)
        if (m->held[j])
            return false;
    return m->len == 0;
}

/* The id that must be granted now, or -1. */
static int model_next_grant(struct model *m)
{
    return m->len > 0 && model_fits(m, m->queue[0]) ? m->queue[0] : -1;
}

static void model_grant(struct model *m)
{
    int id = m->queue[0];

    memmove(&m->queue[0], &m->queue[1], (size_t)(m->len - 1) * sizeof m->queue[0]);
    m->len--;
    m->held[m->mode[id]] += m->n[id];
    if (m->from[id] >= 0)
        m->held[m->from[id]]--;
    m->state[id] = W_GRANTED;
}

/* ---- the run ------------------------------------------------------------------- */

struct slot {
    fifolock_waiter w;
    int id;
};

static struct {
    fifolock lock;
    fifolock other; /* a second lock, idle: cancelling on it is always EINVAL */
    struct model m;
    struct slot slot[N_WAITERS];
    uint64_t rng;
    uint64_t seed;
    long step;
    int failed;
    int depth;          /* callbacks running right now */
    int may_grant;      /* the outer call is a release, a cancel or a conversion */
    int in_call[N_WAITERS]; /* passed to a call that has not returned: not to be reused */
    int quiet;          /* callbacks do nothing (while draining) */
    int nested_percent; /* how busy callbacks are */
    int trace;
    unsigned long grants, nested_calls, calls;
    /* what the run exercised */
    unsigned long weighted_grants, weighted_asked_grants, conversions_waited,
        conversions_granted, conversions_cancelled, conversions_at_once, edeadlk, kept_eperm,
        nested_conversions;
} R;

static uint64_t rnd(void)
{
    /* splitmix64 */
    uint64_t z = (R.rng += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static int below(int n)
{
    return (int)(rnd() % (uint64_t)n);
}

static void fail_at(const char *what, const char *values)
{
    fflush(stdout);
    if (!R.failed)
        fprintf(stderr,
                "model: seed %" PRIu64 " step %ld depth %d: %s%s\n"
                "  reproduce with FIFOLOCK_MODEL_SEED=%" PRIu64 " FIFOLOCK_MODEL_TRACE=1\n",
                R.seed, R.step, R.depth, what, values, R.seed);
    R.failed = 1;
}

static void fail(const char *what, long long got, long long want)
{
    char values[80];

    snprintf(values, sizeof values, " (got %lld, want %lld)", got, want);
    fail_at(what, values);
}

#define EXPECT(got, want, what)                                                          \
    do {                                                                                 \
        long long e_got_ = (long long)(got), e_want_ = (long long)(want);                \
        if (e_got_ != e_want_)                                                           \
            fail(what, e_got_, e_want_);                                                 \
    } while (0)

/* (a) holds, (d) waiting, the queue's order and the engine's invariants. */
static void compare(void)
{
    const fifolock_holds *h = fifolock_holds_of(&R.lock);
    const fifolock_mode *listed[N_MODES + 1];
    size_t counts[N_MODES + 1], n, i, total = 0;
    int j, distinct = 0, seen[N_MODES] = { 0 };
    const fifolock_waiter *w;
    const char *broken;

    for (j = 0; j < N_MODES; j++) {
        EXPECT(fifolock_held(h, mode_of[j]), R.m.held[j], mode_name[j]);
        total += R.m.held[j];
        distinct += R.m.held[j] > 0;
    }
    EXPECT(fifolock_held_total(h), total, "held_total");
    n = fifolock_holds_list(h, listed, counts, N_MODES + 1);
    EXPECT(n, distinct, "holds_list: number of modes");
    for (i = 0; i < n && i < N_MODES + 1; i++) {
        for (j = 0; j < N_MODES && mode_of[j] != listed[i]; j++)
            ;
        if (j == N_MODES) {
            fail("holds_list: a mode never used", (long long)i, -1);
            continue;
        }
        EXPECT(seen[j]++, 0, "holds_list: a mode listed twice");
        EXPECT(counts[i], R.m.held[j], "holds_list: count");
    }
    EXPECT(fifolock_waiting(&R.lock), R.m.len, "waiting");
    /* the queue, read through the private links */
    for (i = 0, w = R.lock.head; w != NULL && i < (size_t)R.m.len; w = w->next, i++)
        EXPECT(((const struct slot *)w->data)->id, R.m.queue[i], "queue order");
    EXPECT(i, R.m.len, "queue length");
    broken = fifolock__check_invariants(&R.lock);
    if (broken != NULL)
        fail_at(broken, " (fifolock__check_invariants)");
    /* outside callbacks nothing asks: fifolock_asked() reads 1 */
    EXPECT(fifolock_asked(h), 1, "fifolock_asked() outside a question");
    /* the other lock is never used: nothing done to this one may reach it */
    EXPECT(fifolock_waiting(&R.other), 0, "other lock: waiting");
    EXPECT(fifolock_held_total(fifolock_holds_of(&R.other)), 0, "other lock: held");
}

static void granted(fifolock_waiter *w, void *arg);

static const char *rc_name(int rc)
{
    switch (rc) {
    case 0:
        return "0";
    case FIFOLOCK_WAITING:
        return "WAITING";
    case EPERM:
        return "EPERM";
    case EINVAL:
        return "EINVAL";
    case EBUSY:
        return "EBUSY";
    case EALREADY:
        return "EALREADY";
    case EDEADLK:
        return "EDEADLK";
    default:
        return "?";
    }
}

static void trace(const char *op, const char *arg, int id, int rc)
{
    if (R.trace && id >= 0)
        printf("%*s%ld: %s %s #%d -> %s\n", 2 * R.depth, "", R.step, op, arg, id, rc_name(rc));
    else if (R.trace)
        printf("%*s%ld: %s %s -> %s\n", 2 * R.depth, "", R.step, op, arg, rc_name(rc));
}

/* How many holds a weighted call asks for: mostly 1, often 2-3, now and then up to 6. */
static unsigned random_n(void)
{
    int r = below(100);

    return r < 55 ? 1 : r < 90 ? 2 + (unsigned)below(2) : 4 + (unsigned)below(3);
}

/* A mode with a hold a call may drop or convert, or any mode if none (or now and then). */
static int held_mode(int mode)
{
    int j;

    if (below(6) != 0)
        for (j = 0; j < N_MODES && model_available(&R.m, mode) == 0; j++)
            mode = (mode + 1) % N_MODES;
    return mode;
}

/* Conversions people make, and any pair now and then. */
static void conversion_pair(int *from, int *to)
{
    static const int useful[][2] = {
        { M_UPG, M_WRITE }, { M_WRITE, M_READ }, { M_WRITE, M_UPG }, { M_UPG, M_READ },
        { M_READ, M_WRITE }, { M_READ, M_UPG }, { M_X, M_S }, { M_S, M_X }, { M_SIX, M_X },
        { M_IX, M_X }, { M_SEM2, M_MUTEX }, { M_POOL, M_POOLN },
    };
    int k = below((int)(sizeof useful / sizeof useful[0])), j;

    if (below(4) == 0) {
        *from = held_mode(below(N_MODES));
        *to = below(N_MODES);
        return;
    }
    /* a useful pair whose `from` is held, if there is one */
    for (j = 0; j < (int)(sizeof useful / sizeof useful[0]); j++) {
        int c = (k + j) % (int)(sizeof useful / sizeof useful[0]);
        if (model_available(&R.m, useful[c][0]) > 0) {
            k = c;
            break;
        }
    }
    *from = useful[k][0];
    *to = useful[k][1];
}

static void count_conversion(int rc)
{
    if (rc == FIFOLOCK_WAITING)
        R.conversions_waited++;
    else if (rc == 0)
        R.conversions_at_once++;
    else if (rc == EDEADLK)
        R.edeadlk++;
}

/*
 * A waiter to pass to acquire or convert: one not queued (or, if `free` is
 * false, any), never one passed to a call still running; -1 if none.
 */
static int pick_waiter(bool free)
{
    int id = below(N_WAITERS), j;

    for (j = 0; j < N_WAITERS; j++, id = (id + 1) % N_WAITERS)
        if (!R.in_call[id] && (!free || R.m.state[id] != W_WAITING))
            return id;
    return -1;
}

/* One random call, on the model first, then on the engine. */
static void random_call(void)
{
    int roll = below(100), mode = below(N_MODES), id, want, got, from, to;
    unsigned n;

    R.calls++;
    if (R.depth > 0)
        R.nested_calls++;
    if (roll < 25) {
        /* acquire (n holds): a free waiter, now and then one still queued (EINVAL) */
        n = random_n();
        id = pick_waiter(below(20) != 0);
        if (id < 0)
            return;
        want = model_acquire(&R.m, id, mode, n);
        R.may_grant = 0;
        got = n == 1 && below(2) ? fifolock_acquire(&R.lock, &R.slot[id].w, mode_of[mode],
                                                    granted, &R.slot[id])
                                 : fifolock_acquire_n(&R.lock, &R.slot[id].w, mode_of[mode], n,
                                                      granted, &R.slot[id]);
        trace(n == 1 ? "acquire" : "acquire_n", mode_name[mode], id, got);
        EXPECT(got, want, "acquire_n");
    } else if (roll < 34) {
        n = random_n();
        want = model_try(&R.m, mode, n);
        R.may_grant = 0;
        got = n == 1 && below(2) ? fifolock_try_acquire(&R.lock, mode_of[mode])
                                 : fifolock_try_acquire_n(&R.lock, mode_of[mode], n);
        trace("try_acquire_n", mode_name[mode], (int)n, got);
        EXPECT(got, want, "try_acquire_n");
    } else if (roll < 55) {
        /* release: mostly what is held, now and then more (EPERM), a kept hold included */
        mode = held_mode(mode);
        n = 1;
        if (R.m.held[mode] > 1 && below(3) == 0)
            n = 1 + (unsigned)below((int)R.m.held[mode] + (below(4) == 0));
        if (R.m.held[mode] > model_available(&R.m, mode) && model_available(&R.m, mode) < n)
            R.kept_eperm++;
        want = model_release(&R.m, mode, n);
        R.may_grant = 1;
        got = n == 1 && below(2) ? fifolock_release(&R.lock, mode_of[mode])
                                 : fifolock_release_n(&R.lock, mode_of[mode], n);
        trace("release_n", mode_name[mode], (int)n, got);
        EXPECT(got, want, "release_n");
    } else if (roll < 70) {
        /* cancel: mostly a queued waiter (the waiting conversion often), now and then any */
        id = R.m.len > 0 && below(5) != 0 ? R.m.queue[below(3) == 0 ? 0 : below(R.m.len)]
                                          : below(N_WAITERS);
        if (R.in_call[id])
            return; /* passed to the call this callback runs in: its state is that call's */
        if (below(10) == 0) {
            /* on the wrong lock */
            R.may_grant = 0;
            got = fifolock_cancel(&R.other, &R.slot[id].w);
            trace("cancel on the other lock", "", id, got);
            EXPECT(got, EINVAL, "cancel on the other lock");
        } else {
            if (R.m.state[id] == W_WAITING && R.m.from[id] >= 0)
                R.conversions_cancelled++;
            want = model_cancel(&R.m, id);
            R.may_grant = 1;
            got = fifolock_cancel(&R.lock, &R.slot[id].w);
            trace("cancel", "", id, got);
            EXPECT(got, want, "cancel");
        }
    } else if (roll < 84) {
        /* convert with a waiter that is not queued, now and then with one that is (EINVAL) */
        conversion_pair(&from, &to);
        id = pick_waiter(below(20) != 0 || model_available(&R.m, from) == 0);
        if (id < 0)
            return;
        if (R.m.state[id] == W_WAITING && model_available(&R.m, from) == 0)
            return; /* EPERM and EINVAL at once: the order is not specified */
        want = model_convert(&R.m, id, from, to);
        R.may_grant = 1;
        R.in_call[id]++; /* callbacks run inside this call: they must not take it */
        got = fifolock_convert(&R.lock, &R.slot[id].w, mode_of[from], mode_of[to], granted,
                               &R.slot[id]);
        R.in_call[id]--;
        trace("convert", mode_name[from], id, got);
        EXPECT(got, want, "convert");
        count_conversion(got);
    } else if (roll < 92) {
        conversion_pair(&from, &to);
        want = model_try_convert(&R.m, from, to);
        R.may_grant = 1;
        got = fifolock_try_convert(&R.lock, mode_of[from], mode_of[to]);
        trace("try_convert", mode_name[from], to, got);
        EXPECT(got, want, "try_convert");
    } else if (roll < 95) {
        /* bad input: refused, nothing changes */
        id = below(N_WAITERS);
        R.may_grant = 0;
        if (R.m.state[id] != W_WAITING)
            EXPECT(fifolock_acquire_n(&R.lock, &R.slot[id].w, mode_of[mode], 0, granted,
                                      &R.slot[id]),
                   EINVAL, "acquire_n of 0");
        EXPECT(fifolock_try_acquire_n(&R.lock, mode_of[mode], 0), EINVAL, "try_acquire_n of 0");
        EXPECT(fifolock_release_n(&R.lock, mode_of[mode], 0), EINVAL, "release_n of 0");
        EXPECT(fifolock_try_convert(&R.lock, mode_of[mode], &no_predicate), EINVAL,
               "try_convert to a mode without predicate");
        EXPECT(fifolock_try_convert(&R.lock, NULL, mode_of[mode]), EINVAL,
               "try_convert from NULL");
        if (R.m.state[id] != W_WAITING && model_available(&R.m, mode) > 0)
            EXPECT(fifolock_convert(&R.lock, &R.slot[id].w, mode_of[mode], mode_of[mode], NULL,
                                    NULL),
                   EINVAL, "convert without a callback");
        trace("bad input", mode_name[mode], id, EINVAL);
    } else {
        want = model_idle(&R.m) && R.depth == 0 ? 0 : EBUSY;
        R.may_grant = 0;
        got = fifolock_destroy(&R.lock);
        trace("destroy", "", -1, got);
        EXPECT(got, want, "destroy");
        if (got == 0)
            fifolock_init(&R.lock);
    }
    R.may_grant = 0;
    compare();
    if (R.depth == 0) {
        /* (c) the call granted all it should have */
        EXPECT(model_next_grant(&R.m), -1, "lost grant: the head fits but still waits");
    }
}

/* A callback gives back what it just got, or converts it with its own waiter. */
static void own_call(struct slot *s)
{
    int id = s->id, mode = R.m.mode[id], got, want, to;
    unsigned n = R.m.n[id];

    R.calls++;
    R.nested_calls++;
    if (below(3) != 0) {
        if (n > 1 && below(2))
            n = 1 + (unsigned)below((int)n);
        want = model_release(&R.m, mode, n);
        got = fifolock_release_n(&R.lock, mode_of[mode], n);
        trace("release own", mode_name[mode], id, got);
        EXPECT(got, want, "release_n from a callback");
        compare();
        return;
    }
    /* the waiter is the caller's again: convert one hold of what it got with it */
    to = mode == M_UPG ? M_WRITE : mode == M_WRITE ? (below(2) ? M_READ : M_UPG)
                                                   : below(N_MODES);
    want = model_convert(&R.m, id, mode, to);
    R.in_call[id]++;
    got = fifolock_convert(&R.lock, &s->w, mode_of[mode], mode_of[to], granted, s);
    R.in_call[id]--;
    trace("convert own", mode_name[to], id, got);
    EXPECT(got, want, "convert from a callback");
    count_conversion(got);
    R.nested_conversions++;
    compare();
}

/* (b) every grant is the one the model says, at a time it may happen. */
static void granted(fifolock_waiter *w, void *arg)
{
    struct slot *s = arg;
    int want = model_next_grant(&R.m), n;

    R.grants++;
    if (R.trace)
        printf("%*s  granted #%d\n", 2 * R.depth, "", s->id);
    EXPECT(w == &s->w, 1, "callback: waiter and arg differ");
    EXPECT(R.depth, 0, "callback inside a callback");
    EXPECT(R.may_grant, 1, "callback from an acquire, try_acquire or destroy");
    EXPECT(s->id, want, "grant order");
    if (R.failed)
        return;
    if (R.m.from[s->id] >= 0)
        R.conversions_granted++;
    else if (R.m.n[s->id] > 1 && (R.m.mode[s->id] == M_POOLN || R.m.mode[s->id] == M_SEM2 ||
                                  R.m.mode[s->id] == M_SEM5))
        R.weighted_asked_grants++;
    else if (R.m.n[s->id] > 1)
        R.weighted_grants++;
    model_grant(&R.m);
    compare();
    if (R.quiet || R.failed)
        return;
    R.depth++;
    for (n = 0; n < 3 && below(100) < R.nested_percent && !R.failed; n++) {
        /* half the time, a callback releases or converts what it just got */
        if (below(2) == 0 && R.m.state[s->id] == W_GRANTED)
            own_call(s);
        else
            random_call();
    }
    R.depth--;
    R.may_grant = 1; /* back in the outer call */
}

static void run_sequence(uint64_t seed, int steps)
{
    int id, j;

    memset(&R.m, 0, sizeof R.m);
    memset(R.slot, 0, sizeof R.slot);
    memset(R.in_call, 0, sizeof R.in_call);
    for (id = 0; id < N_WAITERS; id++) {
        R.slot[id].id = id;
        R.slot[id].w.data = &R.slot[id];
        R.m.from[id] = -1;
    }
    R.seed = seed;
    R.rng = seed;
    R.failed = 0;
    R.depth = 0;
    R.quiet = 0;
    fifolock_init(&R.lock);
    fifolock_init(&R.other);
    for (R.step = 0; R.step < steps && !R.failed; R.step++)
        random_call();

    /* drain: cancel every waiter (the conversion keeps its hold), release every hold */
    R.quiet = 1;
    while (!R.failed && R.m.len > 0) {
        id = R.m.queue[R.m.len - 1];
        EXPECT(model_cancel(&R.m, id), 0, "model cancel");
        R.may_grant = 1;
        EXPECT(fifolock_cancel(&R.lock, &R.slot[id].w), 0, "drain: cancel");
        R.may_grant = 0;
        compare();
    }
    for (j = 0; j < N_MODES && !R.failed; j++)
        while (!R.failed && R.m.held[j] > 0) {
            unsigned n = 1 + (unsigned)below((int)R.m.held[j]);
            R.m.held[j] -= n;
            R.may_grant = 1;
            EXPECT(fifolock_release_n(&R.lock, mode_of[j], n), 0, "drain: release_n");
            R.may_grant = 0;
            compare();
        }
    if (!R.failed)
        EXPECT(fifolock_destroy(&R.lock), 0, "destroy after draining");
    if (!R.failed)
        EXPECT(fifolock_destroy(&R.other), 0, "destroy the other lock");
    if (R.failed) {
        check_failures++;
        fprintf(stderr, "model: sequence of seed %" PRIu64 " failed\n", seed);
        /* leave the broken lock; memory it owns is lost on purpose */
    }
}

static long env_long(const char *name, long dflt)
{
    const char *s = getenv(name);
    return s && *s ? strtol(s, NULL, 0) : dflt;
}

static void run_many(uint64_t base, int nested_percent, int steps)
{
    long n = env_long("FIFOLOCK_MODEL_SEQUENCES", 1500), i;
    long only = env_long("FIFOLOCK_MODEL_SEED", -1);
    int before = check_failures;

    R.trace = (int)env_long("FIFOLOCK_MODEL_TRACE", 0);
    if (R.trace)
        setvbuf(stdout, NULL, _IONBF, 0); /* the trace up to an assertion in the engine */
    R.nested_percent = nested_percent;
    R.grants = R.nested_calls = R.calls = 0;
    R.weighted_grants = R.weighted_asked_grants = R.conversions_waited = 0;
    R.conversions_granted = R.conversions_cancelled = R.conversions_at_once = 0;
    R.edeadlk = R.kept_eperm = R.nested_conversions = 0;
    if (only >= 0) {
        if ((uint64_t)only >= base && (uint64_t)only < base + 1000000)
            run_sequence((uint64_t)only, steps);
        return;
    }
    for (i = 0; i < n && check_failures == before; i++)
        run_sequence(base + (uint64_t)i, steps);
    printf("  %s: %ld sequences, %lu calls (%lu from callbacks), %lu grants\n"
           "    weighted grants %lu (%lu answered at once), conversions: %lu at once, "
           "%lu waited, %lu granted, %lu cancelled, %lu EDEADLK, %lu from callbacks; "
           "%lu releases of a kept hold refused\n",
           check_current, i, R.calls, R.nested_calls, R.grants, R.weighted_grants,
           R.weighted_asked_grants, R.conversions_at_once, R.conversions_waited,
           R.conversions_granted, R.conversions_cancelled, R.edeadlk, R.nested_conversions,
           R.kept_eperm);
    /* the run must have exercised what it claims to */
    CHECK_LT(0, R.grants);
    CHECK_LT(0, R.weighted_grants);
    CHECK_LT(0, R.weighted_asked_grants);
    CHECK_LT(0, R.conversions_at_once);
    CHECK_LT(0, R.conversions_waited);
    CHECK_LT(0, R.conversions_granted);
    CHECK_LT(0, R.conversions_cancelled);
    CHECK_LT(0, R.edeadlk);
    CHECK_LT(0, R.kept_eperm);
    if (nested_percent > 0) {
        CHECK_LT(0, R.nested_calls);
        CHECK_LT(0, R.nested_conversions);
    }
}

/* Calls from callbacks now and then. */
static void engine_agrees_with_the_model(void)
{
    run_many(1000000, 25, 120);
}

/* Busy callbacks: most grants trigger more calls. */
static void engine_agrees_with_the_model_under_busy_callbacks(void)
{
    run_many(2000000, 80, 120);
}

/* Quiet callbacks, longer sequences, deeper queues. */
static void engine_agrees_with_the_model_on_long_sequences(void)
{
    run_many(3000000, 0, 400);
}

static void ignore_grant(fifolock_waiter *w, void *arg)
{
    (void)w;
    (void)arg;
}

/*
 * An upgradable reader waits to become the writer, keeping its upgradable
 * hold; that hold is the conversion's, so converting it (here to a read)
 * must be refused as releasing it is.
 */
static void converting_the_hold_a_waiting_conversion_keeps_is_eperm(void)
{
    fifolock lock;
    fifolock_waiter c = FIFOLOCK_WAITER_INIT, d = FIFOLOCK_WAITER_INIT;

    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_upgradable), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_convert(&lock, &c, &fifolock_upgradable, &fifolock_write, ignore_grant,
                              NULL),
             FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_release(&lock, &fifolock_upgradable), EPERM);
    CHECK_EQ(fifolock_try_convert(&lock, &fifolock_upgradable, &fifolock_read), EPERM);
    CHECK_EQ(fifolock_convert(&lock, &d, &fifolock_upgradable, &fifolock_read, ignore_grant,
                              NULL),
             EPERM);
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &fifolock_upgradable), 1);
    CHECK_NULL_STR(fifolock__check_invariants(&lock));
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0); /* the conversion is granted */
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &fifolock_write), 1);
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &fifolock_upgradable), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

RUN_TESTS(TEST(engine_agrees_with_the_model),
          TEST(engine_agrees_with_the_model_under_busy_callbacks),
          TEST(engine_agrees_with_the_model_on_long_sequences),
          TEST(converting_the_hold_a_waiting_conversion_keeps_is_eperm))
