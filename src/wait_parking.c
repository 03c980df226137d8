/*
 * The portable waiting layer (wait.h), for any system with POSIX threads:
 * a thread that waits on an address parks on a condition variable of its
 * own, queued in one of a fixed number of buckets chosen by the address;
 * a wake walks that bucket and wakes the threads parked on that address.
 * WebKit's ParkingLot and Rust's parking_lot_core work this way; here the
 * table never grows (a wait is rare: mt.c spins and yields first).
 *
 * Why no wake is lost: a waiter compares *addr with val holding its bucket's
 * mutex, and stays queued until woken or its deadline; a waker stores to
 * *addr first, then takes the same mutex to look for sleepers. Either the
 * waiter's comparison comes after the store (it sees the new value and does
 * not sleep), or the waiter was queued before the waker looked (it is found).
 *
 * A wake on a freed word finds nobody, or wakes a thread parked on memory
 * reused at that address: a spurious wakeup, which callers tolerate.
 */
#include "wait.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

const char fifolock__wait_layer[] = "parking";

#define BUCKETS 64 /* a power of two */

struct parked {
    uint32_t *addr;
    struct parked *next;
    pthread_cond_t cond;
    bool woken; /* under the bucket's mutex */
};

struct bucket {
    pthread_mutex_t mutex;
    struct parked *head, *tail; /* parked threads, oldest first */
    char pad[64];               /* one bucket per cache line, give or take */
};

static struct bucket table[BUCKETS];
static pthread_condattr_t cond_attr;
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_init(void)
{
    size_t i;

    for (i = 0; i < BUCKETS; i++)
        (void)pthread_mutex_init(&table[i].mutex, NULL);
    (void)pthread_condattr_init(&cond_attr);
#if !defined(__APPLE__)
    /* Deadlines are CLOCK_MONOTONIC times (macOS has no such attribute). */
    (void)pthread_condattr_setclock(&cond_attr, CLOCK_MONOTONIC);
#endif
}

static struct bucket *bucket_of(const uint32_t *addr)
{
    uintptr_t a = (uintptr_t)addr >> 2;

    /* Fibonacci hashing: the top bits of a * 2^64 / phi. */
    return &table[(uint64_t)a * UINT64_C(0x9E3779B97F4A7C15) >> (64 - 6)];
}

static void unlink_parked(struct bucket *b, struct parked *p)
{
    struct parked **link = &b->head, *prev = NULL;

    while (*link != p) {
        prev = *link;
        link = &(*link)->next;
    }
    *link = p->next;
    if (b->tail == p)
        b->tail = prev;
}

#if defined(__APPLE__)
/* The same moment on the realtime clock, for pthread_cond_timedwait. */
static struct timespec realtime_of(const struct timespec *deadline)
{
    struct timespec now_m, now_r, t;
    int64_t left;

    clock_gettime(CLOCK_MONOTONIC, &now_m);
    clock_gettime(CLOCK_REALTIME, &now_r);
    left = (int64_t)(deadline->tv_sec - now_m.tv_sec) * 1000000000 +
           (deadline->tv_nsec - now_m.tv_nsec);
    if (left < 0)
        left = 0;
    t.tv_sec = now_r.tv_sec + (time_t)(left / 1000000000);
    t.tv_nsec = now_r.tv_nsec + (long)(left % 1000000000);
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}
#endif

int fifolock__wait(uint32_t *addr, uint32_t val, const struct timespec *deadline)
{
    struct bucket *b = bucket_of(addr);
    struct parked me;
    int saved = errno, rc = 0;

    (void)pthread_once(&table_once, table_init);
    (void)pthread_mutex_lock(&b->mutex);
    if (__atomic_load_n(addr, __ATOMIC_SEQ_CST) != val) {
        (void)pthread_mutex_unlock(&b->mutex);
        return 0;
    }
    me.addr = addr;
    me.next = NULL;
    me.woken = false;
    (void)pthread_cond_init(&me.cond, &cond_attr);
    if (b->tail)
        b->tail->next = &me;
    else
        b->head = &me;
    b->tail = &me;
    while (!me.woken) {
        const struct timespec *when = deadline;
#if defined(__APPLE__)
        struct timespec until;

        if (deadline != NULL) {
            until = realtime_of(deadline);
            when = &until;
        }
#endif
        if (when == NULL) {
            (void)pthread_cond_wait(&me.cond, &b->mutex);
        } else if (pthread_cond_timedwait(&me.cond, &b->mutex, when) == ETIMEDOUT && !me.woken) {
            unlink_parked(b, &me);
            rc = ETIMEDOUT;
            break;
        }
    }
    /* A waker signals under the mutex, so it is done with me.cond by now. */
    (void)pthread_mutex_unlock(&b->mutex);
    (void)pthread_cond_destroy(&me.cond);
    errno = saved;
    return rc;
}

static void wake(uint32_t *addr, size_t n)
{
    struct bucket *b = bucket_of(addr);
    struct parked **link, *p;
    int saved = errno;

    (void)pthread_once(&table_once, table_init);
    (void)pthread_mutex_lock(&b->mutex);
    link = &b->head;
    p = NULL;
    while (n > 0 && *link != NULL) {
        struct parked *q = *link;

        if (q->addr != addr) {
            p = q;
            link = &q->next;
            continue;
        }
        *link = q->next;
        if (b->tail == q)
            b->tail = p;
        q->woken = true;
        (void)pthread_cond_signal(&q->cond);
        n--;
    }
    (void)pthread_mutex_unlock(&b->mutex);
    errno = saved;
}

void fifolock__wake_one(uint32_t *addr)
{
    wake(addr, 1);
}

void fifolock__wake_all(uint32_t *addr)
{
    wake(addr, (size_t)-1);
}
