/*
 * Randomized model-based test of the engine.
 *
 * Random sequences of acquire, try_acquire, release, cancel and destroy, over
 * twelve modes (read, write, mutex, a semaphore of 2, the five intention
 * modes and three custom ones), run on a real lock and, step by step, on a
 * reference model kept deliberately simple: an array for the queue, an array
 * of hold counts, and compatibility rules written here again from the
 * documentation, not taken from src/modes.c.
 *
 * Grant callbacks issue random calls of their own on the same lock. The
 * model decides which request must be granted next; every callback must be
 * that one (FIFO, grant rule), must not run inside another callback, and
 * must come from a release or cancel; when a call returns, the model must
 * have nothing left to grant (no lost grant). After every call, nested ones
 * included, holds, the queue and the waiting count must equal the model's,
 * and fifolock__check_invariants() must pass.
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
    M_ALONE, M_POOL, M_FEW, N_MODES
};

static const char *const mode_name[N_MODES] = {
    "read", "write", "mutex", "sem2", "IS", "IX", "S", "SIX", "X", "alone", "pool", "few",
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

/* May join while fewer than `limit` other modes are held. */
static bool few_is_compatible(const fifolock_mode *self, const fifolock_holds *holds)
{
    size_t others = fifolock_holds_list(holds, NULL, NULL, 0);

    if (fifolock_held(holds, self) > 0)
        others--;
    return others < self->limit;
}

static const fifolock_mode sem2_mode = FIFOLOCK_SEMAPHORE(2);
static const fifolock_mode alone_mode = { alone_is_compatible, "alone", 0 };
static const fifolock_mode pool_mode = { pool_is_compatible, "pool", 3 };
static const fifolock_mode few_mode = { few_is_compatible, "few", 2 };

static const fifolock_mode *const mode_of[N_MODES] = {
    &fifolock_read, &fifolock_write, &fifolock_mutex, &sem2_mode, &fifolock_is,
    &fifolock_ix, &fifolock_s, &fifolock_six, &fifolock_x, &alone_mode, &pool_mode,
    &few_mode,
};

/* ---- the reference model ------------------------------------------------------ */

#define N_WAITERS 24

enum { W_IDLE, W_WAITING, W_GRANTED };

struct model {
    int queue[N_WAITERS]; /* waiter ids, oldest first */
    int len;
    unsigned held[N_MODES];
    int state[N_WAITERS];
    int mode[N_WAITERS];
};

/* The intention matrix, from the documentation: row may join column. */
static const char *const matrix[5] = { "yyyyn", "yynnn", "ynynn", "ynnnn", "nnnnn" };

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
        return c[M_READ] == 0 && c[M_WRITE] == 0;
    case M_MUTEX:
        return c[M_MUTEX] == 0;
    case M_SEM2:
        return c[M_SEM2] < 2;
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
    case M_FEW:
        return distinct_others < 2;
    }
    return false;
}

static int model_acquire(struct model *m, int id, int mode)
{
    if (m->state[id] == W_WAITING)
        return EINVAL;
    if (m->len == 0 && model_compatible(m, mode)) {
        m->held[mode]++;
        m->state[id] = W_GRANTED;
        m->mode[id] = mode;
        return 0;
    }
    m->queue[m->len++] = id;
    m->state[id] = W_WAITING;
    m->mode[id] = mode;
    return FIFOLOCK_WAITING;
}

static int model_try(struct model *m, int mode)
{
    if (m->len != 0 || !model_compatible(m, mode))
        return EBUSY;
    m->held[mode]++;
    return 0;
}

static int model_release(struct model *m, int mode)
{
    if (m->held[mode] == 0)
        return EPERM;
    m->held[mode]--;
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
    m->state[id] = W_IDLE;
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
static int model_next_grant(const struct model *m)
{
    return m->len > 0 && model_compatible(m, m->mode[m->queue[0]]) ? m->queue[0] : -1;
}

static void model_grant(struct model *m)
{
    int id = m->queue[0];

    memmove(&m->queue[0], &m->queue[1], (size_t)(m->len - 1) * sizeof m->queue[0]);
    m->len--;
    m->held[m->mode[id]]++;
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
    int may_grant;      /* the outer call is a release or a cancel */
    int quiet;          /* callbacks do nothing (while draining) */
    int nested_percent; /* how busy callbacks are */
    int trace;
    unsigned long grants, nested_calls, calls;
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
        return "WAITING/EPERM";
    case EINVAL:
        return "EINVAL";
    case EBUSY:
        return "EBUSY";
    case EALREADY:
        return "EALREADY";
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

/* One random call, on the model first, then on the engine. */
static void random_call(void)
{
    int roll = below(100), mode = below(N_MODES), id, want, got, j;

    R.calls++;
    if (R.depth > 0)
        R.nested_calls++;
    if (roll < 35) {
        /* acquire: a free waiter, now and then one still queued (EINVAL) */
        id = below(N_WAITERS);
        if (R.m.state[id] == W_WAITING && below(20) != 0)
            for (j = 0; j < N_WAITERS && R.m.state[id] == W_WAITING; j++)
                id = (id + 1) % N_WAITERS;
        want = model_acquire(&R.m, id, mode);
        R.may_grant = 0;
        got = fifolock_acquire(&R.lock, &R.slot[id].w, mode_of[mode], granted, &R.slot[id]);
        trace("acquire", mode_name[mode], id, got);
        EXPECT(got, want, "acquire");
    } else if (roll < 47) {
        want = model_try(&R.m, mode);
        R.may_grant = 0;
        got = fifolock_try_acquire(&R.lock, mode_of[mode]);
        trace("try", mode_name[mode], -1, got);
        EXPECT(got, want, "try_acquire");
    } else if (roll < 77) {
        /* release: mostly a held mode, now and then any (EPERM) */
        if (below(6) != 0)
            for (j = 0; j < N_MODES && R.m.held[mode] == 0; j++)
                mode = (mode + 1) % N_MODES;
        want = model_release(&R.m, mode);
        R.may_grant = 1;
        got = fifolock_release(&R.lock, mode_of[mode]);
        trace("release", mode_name[mode], -1, got);
        EXPECT(got, want, "release");
    } else if (roll < 97) {
        /* cancel: mostly a queued waiter, now and then any (EALREADY, EINVAL) */
        id = R.m.len > 0 && below(5) != 0 ? R.m.queue[below(R.m.len)] : below(N_WAITERS);
        if (below(10) == 0) {
            /* on the wrong lock */
            R.may_grant = 0;
            got = fifolock_cancel(&R.other, &R.slot[id].w);
            trace("cancel on the other lock", "", id, got);
            EXPECT(got, EINVAL, "cancel on the other lock");
        } else {
            want = model_cancel(&R.m, id);
            R.may_grant = 1;
            got = fifolock_cancel(&R.lock, &R.slot[id].w);
            trace("cancel", "", id, got);
            EXPECT(got, want, "cancel");
        }
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
        EXPECT(model_next_grant(&R.m), -1, "lost grant: compatible head left waiting");
    }
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
    model_grant(&R.m);
    compare();
    if (R.quiet || R.failed)
        return;
    R.depth++;
    for (n = 0; n < 3 && below(100) < R.nested_percent && !R.failed; n++) {
        /* half the time, a callback gives back what it just got */
        if (below(2) == 0) {
            int mode = R.m.mode[s->id];
            int want_rc = model_release(&R.m, mode);
            int got = fifolock_release(&R.lock, mode_of[mode]);
            R.calls++;
            R.nested_calls++;
            trace("release own", mode_name[mode], s->id, got);
            EXPECT(got, want_rc, "release from a callback");
            compare();
        } else {
            random_call();
        }
    }
    R.depth--;
    R.may_grant = 1; /* back in the outer release or cancel */
}

static void run_sequence(uint64_t seed, int steps)
{
    int id, j;

    memset(&R.m, 0, sizeof R.m);
    memset(R.slot, 0, sizeof R.slot);
    for (id = 0; id < N_WAITERS; id++) {
        R.slot[id].id = id;
        R.slot[id].w.data = &R.slot[id];
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

    /* drain: cancel every waiter, release every hold; then destroy */
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
            R.m.held[j]--;
            R.may_grant = 1;
            EXPECT(fifolock_release(&R.lock, mode_of[j]), 0, "drain: release");
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
    R.nested_percent = nested_percent;
    R.grants = R.nested_calls = R.calls = 0;
    if (only >= 0) {
        if ((uint64_t)only >= base && (uint64_t)only < base + 1000000)
            run_sequence((uint64_t)only, steps);
        return;
    }
    for (i = 0; i < n && check_failures == before; i++)
        run_sequence(base + (uint64_t)i, steps);
    printf("  %s: %ld sequences, %lu calls (%lu from callbacks), %lu grants\n", check_current,
           i, R.calls, R.nested_calls, R.grants);
    /* the run must have exercised what it claims to */
    CHECK_LT(0, R.grants);
    if (nested_percent > 0)
        CHECK_LT(0, R.nested_calls);
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

RUN_TESTS(TEST(engine_agrees_with_the_model),
          TEST(engine_agrees_with_the_model_under_busy_callbacks),
          TEST(engine_agrees_with_the_model_on_long_sequences))
